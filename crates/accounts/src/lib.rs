//! Who may use botwatch: dashboard users with roles, API tokens scoped to one bot,
//! login sessions, login throttling and the audit log of what people did — and where
//! each is kept: files in the embedded data directory, or Redis.
//!
//! Nothing secret is kept in clear: passwords as Argon2id hashes, tokens and session
//! ids as SHA-256 digests (they are long random strings, so a fast digest suffices).
//! The command line (`botwatch users …`, `botwatch tokens …`) and a running server
//! work on the same store at the same time: on the embedded store the accounts file is
//! replaced whole under a lock, and the server notices the new file on its next read.

mod error;
mod file;
mod redis_store;
mod secret;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use error::AccountsError;
pub use secret::{digest, hash_password, new_secret, verify_password};

/// What a dashboard user may do; each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also switches modes, writes to users and edits the audience.
    Operator,
    /// Also changes settings, users and tokens.
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = AccountsError;
    fn from_str(s: &str) -> Result<Role, AccountsError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                AccountsError::Invalid(format!("no role {s:?}: viewer, operator or admin"))
            })
    }
}

/// What an API token may do, for its one bot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Ingest events for the bot.
    Ingest,
    /// Read the bot's figures, dialogs and audience.
    Read,
    /// Everything about the bot: ingest, read, operate, settings.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Ingest, Scope::Read, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = AccountsError;
    fn from_str(s: &str) -> Result<Scope, AccountsError> {
        Scope::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AccountsError::Invalid(format!("no scope {s:?}: ingest, read or admin")))
    }
}

/// A dashboard user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    pub role: Role,
    /// The Argon2id hash in PHC form (`$argon2id$v=19$m=19456,t=2,p=1$…`).
    pub password: String,
    pub created: DateTime<Utc>,
    /// Grows when the password or the role changes: sessions made before no longer count.
    pub generation: u64,
}

impl User {
    /// A new user with a password hash (from [`hash_password`]).
    pub fn new(name: &str, role: Role, password_hash: String) -> User {
        User {
            name: name.to_string(),
            role,
            password: password_hash,
            created: Utc::now(),
            generation: 0,
        }
    }

    /// A new password: the sessions made before it no longer count.
    pub fn set_password(&mut self, password_hash: String) {
        self.password = password_hash;
        self.generation += 1;
    }

    /// A new role: the sessions made before it no longer count.
    pub fn set_role(&mut self, role: Role) {
        self.role = role;
        self.generation += 1;
    }
}

/// The longest user name.
pub const MAX_NAME: usize = 64;

/// A user name: 1–64 letters, digits, `.`, `_`, `-` or `@`.
pub fn check_name(name: &str) -> Result<(), AccountsError> {
    let ok = !name.is_empty()
        && name.chars().count() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(AccountsError::Invalid(format!(
            "bad user name {name:?}: 1–{MAX_NAME} letters, digits, '.', '_', '-' or '@'"
        )))
    }
}

/// Passwords shorter than this are refused.
pub const MIN_PASSWORD: usize = 10;
/// Longer ones too: hashing is costly and nobody types more.
pub const MAX_PASSWORD: usize = 1024;

pub fn check_password(password: &str) -> Result<(), AccountsError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(AccountsError::Invalid(format!(
            "the password is too short: at least {MIN_PASSWORD} characters"
        )));
    }
    if password.len() > MAX_PASSWORD {
        return Err(AccountsError::Invalid(format!(
            "the password is too long: at most {MAX_PASSWORD} bytes"
        )));
    }
    Ok(())
}

/// An API token; the token itself is shown once, when it is made, and kept only as
/// its digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// A short public name for lists and removal: the first 12 hex digits of the digest.
    pub id: String,
    pub bot: String,
    pub scope: Scope,
    /// SHA-256 of the token, hex.
    pub digest: String,
    pub created: DateTime<Utc>,
}

impl Token {
    /// A new token for `bot`: the record to keep and the token to show once.
    pub fn issue(bot: &str, scope: Scope) -> Result<(Token, String), AccountsError> {
        if !botwatch_event::is_slug(bot) {
            return Err(AccountsError::Invalid(format!("{bot:?} is not a bot slug")));
        }
        let secret = format!("bwt_{}", new_secret()?);
        let digest = digest(&secret);
        let token = Token {
            id: digest[..12].to_string(),
            bot: bot.to_string(),
            scope,
            digest,
            created: Utc::now(),
        };
        Ok((token, secret))
    }
}

/// A login session, kept under the digest of its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub user: String,
    /// The user's generation at login.
    pub generation: u64,
    pub created: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// One thing an operator or admin did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    /// `user:NAME`, `token:ID` or `admin-token`.
    pub actor: String,
    /// What was done, e.g. `mode.switch`, `settings.update`, `user.add`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
    /// What it was done to and with (never a secret).
    #[serde(default)]
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

impl AuditEntry {
    /// What `actor` did now.
    pub fn now(
        actor: String,
        action: &str,
        bot: Option<&str>,
        detail: serde_json::Value,
    ) -> AuditEntry {
        AuditEntry {
            at: Utc::now(),
            actor,
            action: action.to_string(),
            bot: bot.map(str::to_string),
            detail,
        }
    }
}

/// Where accounts are kept.
#[derive(Clone)]
pub enum Location {
    /// Files in the embedded data directory.
    Dir(PathBuf),
    /// Redis, every key under `prefix`.
    Redis { url: String, prefix: String },
}

impl std::fmt::Display for Location {
    /// Without the Redis URL, which may hold a password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Dir(dir) => write!(f, "files in {}", dir.display()),
            Location::Redis { prefix, .. } => write!(f, "Redis, keys {prefix}*"),
        }
    }
}

impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The store: one of the backends, the same operations on each.
pub enum AccountStore {
    File(file::FileStore),
    Redis(redis_store::RedisStore),
}

macro_rules! each {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AccountStore::File($s) => $e,
            AccountStore::Redis($s) => $e,
        }
    };
}

impl AccountStore {
    pub async fn open(location: &Location) -> Result<AccountStore, AccountsError> {
        Ok(match location {
            Location::Dir(dir) => AccountStore::File(file::FileStore::open(dir.clone()).await?),
            Location::Redis { url, prefix } => {
                AccountStore::Redis(redis_store::RedisStore::connect(url, prefix).await?)
            }
        })
    }

    pub async fn users(&self) -> Result<Vec<User>, AccountsError> {
        each!(self, s => s.users().await)
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, AccountsError> {
        each!(self, s => s.user(name).await)
    }

    /// Adds a user; [`AccountsError::Exists`] when the name is taken.
    pub async fn add_user(&self, user: User) -> Result<(), AccountsError> {
        check_name(&user.name)?;
        each!(self, s => s.put_user(user, false).await)
    }

    /// Replaces an existing user; [`AccountsError::NotFound`] when there is none.
    pub async fn update_user(&self, user: User) -> Result<(), AccountsError> {
        each!(self, s => s.put_user(user, true).await)
    }

    /// Whether there was such a user. Their sessions end with them.
    pub async fn remove_user(&self, name: &str) -> Result<bool, AccountsError> {
        each!(self, s => s.remove_user(name).await)
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, AccountsError> {
        each!(self, s => s.tokens().await)
    }

    /// The token with this digest.
    pub async fn token(&self, digest: &str) -> Result<Option<Token>, AccountsError> {
        each!(self, s => s.token(digest).await)
    }

    pub async fn add_token(&self, token: Token) -> Result<(), AccountsError> {
        each!(self, s => s.add_token(token).await)
    }

    /// Whether there was a token with this id.
    pub async fn remove_token(&self, id: &str) -> Result<bool, AccountsError> {
        each!(self, s => s.remove_token(id).await)
    }

    /// The session kept under this digest, if it has not expired.
    pub async fn session(&self, digest: &str) -> Result<Option<Session>, AccountsError> {
        each!(self, s => s.session(digest).await)
    }

    /// Keeps a session for at most `ttl` from now.
    pub async fn put_session(
        &self,
        digest: &str,
        session: &Session,
        ttl: Duration,
    ) -> Result<(), AccountsError> {
        each!(self, s => s.put_session(digest, session, ttl).await)
    }

    pub async fn end_session(&self, digest: &str) -> Result<(), AccountsError> {
        each!(self, s => s.end_session(digest).await)
    }

    /// Counts a failed login under `key` (a user or an address) and gives the failures
    /// within the current `window`.
    pub async fn add_failure(&self, key: &str, window: Duration) -> Result<u32, AccountsError> {
        each!(self, s => s.add_failure(key, window).await)
    }

    /// Failures counted under `key` within its window.
    pub async fn failures(&self, key: &str) -> Result<u32, AccountsError> {
        each!(self, s => s.failures(key).await)
    }

    pub async fn clear_failures(&self, key: &str) -> Result<(), AccountsError> {
        each!(self, s => s.clear_failures(key).await)
    }

    /// Appends to the audit log (durably, before it returns).
    pub async fn record(&self, entry: &AuditEntry) -> Result<(), AccountsError> {
        each!(self, s => s.record(entry).await)
    }

    /// The latest `limit` audit entries, newest first.
    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, AccountsError> {
        each!(self, s => s.audit_log(limit).await)
    }
}
