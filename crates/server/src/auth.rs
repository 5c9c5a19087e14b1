//! Who is asking, and whether they may: every route's rule is in [`crate::routes`], and
//! [`guard`] enforces it before any handler runs.
//!
//! Credentials, in order: `Authorization: Bearer` with `BOTWATCH_ADMIN_TOKEN` or an API
//! token (scoped to one bot), else the session cookie. A state-changing request made
//! with the cookie must carry `X-Botwatch-CSRF` (the value the login answered).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use botwatch_accounts::{AccountStore, Role, Scope, Session, User, digest};
use botwatch_event::is_slug;
use chrono::Utc;
use subtle::ConstantTimeEq;
use tracing::warn;

use crate::AppState;
use crate::error::ApiError;

/// The session cookie.
pub const COOKIE: &str = "botwatch_session";
/// The header that carries the CSRF value on state-changing cookie requests.
pub const CSRF_HEADER: &str = "x-botwatch-csrf";

/// Who a request comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// `BOTWATCH_ADMIN_TOKEN`: every right.
    AdminToken,
    /// A dashboard user logged in with a session (`session` is the digest of its id).
    User {
        name: String,
        role: Role,
        session: String,
    },
    /// An API token: its scope, for its one bot.
    Token {
        id: String,
        bot: String,
        scope: Scope,
    },
}

/// What a route (or a step of a handler) needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any valid credentials (what they may see is filtered or checked further on).
    Authenticated,
    /// Ingest events (for the bots named in the events; checked per event).
    Ingest,
    /// Read the bot's figures, dialogs and audience.
    Read,
    /// Act for the bot: modes, messages to users, audience edits.
    Operate,
    /// Change the bot's settings.
    Configure,
    /// Manage users and tokens, read the audit log.
    Accounts,
    /// End one's own dashboard session: only the session cookie has one (tokens are
    /// revoked with `botwatch tokens remove`).
    Session,
}

impl Principal {
    /// Whether this principal has `access` to `bot` (or, with `None`, to some bot).
    pub fn may(&self, access: Access, bot: Option<&str>) -> bool {
        match self {
            Principal::AdminToken => access != Access::Session,
            Principal::User { role, .. } => match access {
                Access::Public | Access::Authenticated | Access::Read | Access::Session => true,
                Access::Operate => *role >= Role::Operator,
                Access::Ingest | Access::Configure | Access::Accounts => *role == Role::Admin,
            },
            Principal::Token {
                bot: own, scope, ..
            } => {
                let own_bot = bot.is_none_or(|b| b == own);
                own_bot
                    && match access {
                        Access::Public | Access::Authenticated => true,
                        Access::Ingest => matches!(scope, Scope::Ingest | Scope::Admin),
                        Access::Read => matches!(scope, Scope::Read | Scope::Admin),
                        Access::Operate | Access::Configure => *scope == Scope::Admin,
                        Access::Accounts | Access::Session => false,
                    }
            }
        }
    }

    pub fn may_read(&self, bot: &str) -> bool {
        self.may(Access::Read, Some(bot))
    }

    pub fn may_ingest(&self, bot: &str) -> bool {
        self.may(Access::Ingest, Some(bot))
    }

    /// How the audit log names this principal.
    pub fn actor(&self) -> String {
        match self {
            Principal::AdminToken => "admin-token".into(),
            Principal::User { name, .. } => format!("user:{name}"),
            Principal::Token { id, .. } => format!("token:{id}"),
        }
    }
}

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// A session unused this long ends.
    pub idle: Duration,
    /// Every session ends this long after its login.
    pub absolute: Duration,
}

impl Default for SessionPolicy {
    fn default() -> SessionPolicy {
        SessionPolicy {
            idle: Duration::from_secs(8 * 3600),
            absolute: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// A session's last use is written at most this often (or every half idle timeout,
/// when that is shorter, so a session in use never times out).
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// How failed logins are throttled, per user name and per client address.
#[derive(Debug, Clone, Copy)]
pub struct LoginThrottle {
    /// Failures within `window` after which answers slow down…
    pub slow_after: u32,
    /// …doubling from this delay (at most 16 times it)…
    pub first_delay: Duration,
    /// …and after which logins are refused with 429 until the window ends.
    pub refuse_after: u32,
    /// Counted from the first failure.
    pub window: Duration,
}

impl Default for LoginThrottle {
    fn default() -> LoginThrottle {
        LoginThrottle {
            slow_after: 3,
            first_delay: Duration::from_millis(500),
            refuse_after: 10,
            window: Duration::from_secs(15 * 60),
        }
    }
}

pub struct Auth {
    admin_token: Option<Vec<u8>>,
    accounts: Arc<AccountStore>,
    policy: SessionPolicy,
    throttle: LoginThrottle,
    /// Verified against when the user does not exist, so both take as long; made at
    /// the first such login, not at start-up (Argon2 takes tens of milliseconds).
    dummy_hash: tokio::sync::OnceCell<String>,
}

/// Credentials that were checked, and how they came.
pub struct Authenticated {
    pub principal: Principal,
    /// The CSRF value when they came as the session cookie.
    pub csrf: Option<String>,
}

impl Auth {
    pub fn new(
        admin_token: Option<String>,
        accounts: Arc<AccountStore>,
        policy: SessionPolicy,
        throttle: LoginThrottle,
    ) -> Auth {
        Auth {
            admin_token: admin_token.map(String::into_bytes),
            accounts,
            policy,
            throttle,
            dummy_hash: tokio::sync::OnceCell::new(),
        }
    }

    async fn dummy_hash(&self) -> Result<String, ApiError> {
        let hash = self
            .dummy_hash
            .get_or_try_init(|| async {
                tokio::task::spawn_blocking(|| {
                    botwatch_accounts::hash_password("not anybody's password")
                })
                .await
                .map_err(|_| ApiError::internal("hashing task failed"))?
                .map_err(ApiError::from)
            })
            .await?;
        Ok(hash.clone())
    }

    pub fn accounts(&self) -> &AccountStore {
        &self.accounts
    }

    /// The principal behind the request's credentials; `None` without any.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<Authenticated>, ApiError> {
        if let Some(presented) = bearer(headers) {
            if let Some(admin) = &self.admin_token
                && bool::from(admin.as_slice().ct_eq(presented.as_bytes()))
            {
                return Ok(Some(Authenticated {
                    principal: Principal::AdminToken,
                    csrf: None,
                }));
            }
            // A digest lookup: nothing secret is compared byte by byte.
            return match self.accounts.token(&digest(presented)).await? {
                Some(t) => Ok(Some(Authenticated {
                    principal: Principal::Token {
                        id: t.id,
                        bot: t.bot,
                        scope: t.scope,
                    },
                    csrf: None,
                })),
                None => Err(ApiError::unauthorized()),
            };
        }
        let Some(id) = cookie(headers, COOKIE) else {
            return Ok(None);
        };
        let session_digest = digest(id);
        match self.live_session(&session_digest).await? {
            Some(user) => Ok(Some(Authenticated {
                principal: Principal::User {
                    name: user.name,
                    role: user.role,
                    session: session_digest,
                },
                csrf: Some(csrf_of(id)),
            })),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// The user of a session that is still valid (not expired, idle, ended, nor made
    /// before its user's password or role changed), marking it used.
    pub async fn live_session(&self, session_digest: &str) -> Result<Option<User>, ApiError> {
        let Some(mut session) = self.accounts.session(session_digest).await? else {
            return Ok(None);
        };
        let now = Utc::now();
        let age = (now - session.created).to_std().unwrap_or_default();
        let idle = (now - session.last_seen).to_std().unwrap_or_default();
        let user = self.accounts.user(&session.user).await?;
        let valid = age < self.policy.absolute
            && idle < self.policy.idle
            && user
                .as_ref()
                .is_some_and(|u| u.generation == session.generation);
        if !valid {
            self.accounts.end_session(session_digest).await?;
            return Ok(None);
        }
        if idle >= TOUCH_EVERY.min(self.policy.idle / 2) {
            session.last_seen = now;
            let left = self.policy.absolute.saturating_sub(age);
            self.accounts
                .put_session(session_digest, &session, left)
                .await?;
        }
        Ok(user)
    }

    /// Checks a login: throttled per user and per address, the same time for unknown
    /// users. Answers the new session's id (to set as the cookie) and the user.
    pub async fn login(
        &self,
        username: &str,
        password: String,
        from: IpAddr,
    ) -> Result<(String, User), ApiError> {
        // The name as a digest: it may be a password typed in the wrong field.
        let keys = [
            format!("user:{}", &digest(username)[..32]),
            format!("addr:{from}"),
        ];
        let mut failures = 0;
        for key in &keys {
            failures = failures.max(self.accounts.failures(key).await?);
        }
        let throttle = self.throttle;
        if failures >= throttle.refuse_after {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_logins",
                "too many failed logins: try again later",
            )
            .retry_after(throttle.window));
        }
        if failures >= throttle.slow_after {
            // 0.5 s, 1 s, 2 s, … at most 8 s: guessing gets slow long before it is refused.
            let exp = (failures - throttle.slow_after).min(4);
            tokio::time::sleep(throttle.first_delay * (1 << exp)).await;
        }
        let user = self.accounts.user(username).await?;
        let hash = match &user {
            Some(u) => u.password.clone(),
            None => self.dummy_hash().await?,
        };
        let verified = tokio::task::spawn_blocking(move || {
            botwatch_accounts::verify_password(&password, &hash)
        })
        .await
        .map_err(|_| ApiError::internal("password check failed"))?;
        let user = match user {
            Some(user) if verified => user,
            known => {
                for key in &keys {
                    self.accounts.add_failure(key, throttle.window).await?;
                }
                // A name that is nobody's may be a password typed in the wrong field.
                let name = if known.is_some() {
                    username
                } else {
                    "(unknown)"
                };
                warn!(user = name, from = %from, "failed login");
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "bad_login",
                    "unknown user or wrong password",
                ));
            }
        };
        // The user's count starts afresh; the address's does not (one account of one's
        // own must not reset the count of guesses at others).
        self.accounts.clear_failures(&keys[0]).await?;
        let id = botwatch_accounts::new_secret()?;
        let now = Utc::now();
        let session = Session {
            user: user.name.clone(),
            generation: user.generation,
            created: now,
            last_seen: now,
        };
        self.accounts
            .put_session(&digest(&id), &session, self.policy.absolute)
            .await?;
        Ok((id, user))
    }

    /// Ends the session with this digest.
    pub async fn logout(&self, session_digest: &str) -> Result<(), ApiError> {
        Ok(self.accounts.end_session(session_digest).await?)
    }

    pub fn policy(&self) -> SessionPolicy {
        self.policy
    }
}

/// The CSRF value of a session: derived from its secret id, so it need not be stored
/// and cannot be guessed without the cookie.
pub fn csrf_of(session_id: &str) -> String {
    digest(&format!("csrf:{session_id}"))[..32].to_string()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The one place that decides, in front of every route with that route's rule (see
/// `routes`): authenticates, checks CSRF on cookie requests that change state, checks
/// the principal's access to the route's `{bot}`, and hands the principal to the
/// handler as an extension.
pub async fn guard(
    State((state, rule)): State<(AppState, Access)>,
    params: RawPathParams,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let method = request.method().clone();
    if rule == Access::Public {
        return Ok(next.run(request).await);
    }
    let Some(who) = state.auth.authenticate(request.headers()).await? else {
        return Err(ApiError::unauthorized());
    };
    if let Some(expected) = &who.csrf
        && changes_state(&method)
    {
        let presented = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !bool::from(expected.as_bytes().ct_eq(presented.as_bytes())) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf",
                format!("a request that changes something must carry {CSRF_HEADER} from the login"),
            ));
        }
    }
    let bot = params.iter().find(|(k, _)| *k == "bot").map(|(_, v)| v);
    if let Some(bot) = bot
        && !is_slug(bot)
    {
        return Err(ApiError::bad_parameter("bot", "not a bot slug"));
    }
    if !who.principal.may(rule, bot) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            match (bot, rule) {
                (_, Access::Session) => {
                    "only a session logs out; tokens are revoked with `botwatch tokens remove`"
                        .to_owned()
                }
                (Some(bot), _) => format!("no {rule:?} access to bot {bot:?}").to_lowercase(),
                (None, _) => format!("no {rule:?} access").to_lowercase(),
            },
        ));
    }
    request.extensions_mut().insert(who.principal);
    Ok(next.run(request).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_and_scopes_decide() {
        let user = |role| Principal::User {
            name: "ann".into(),
            role,
            session: "d".into(),
        };
        let token = |scope| Principal::Token {
            id: "t".into(),
            bot: "shop".into(),
            scope,
        };
        assert!(user(Role::Viewer).may(Access::Read, Some("any")));
        assert!(!user(Role::Viewer).may(Access::Operate, Some("any")));
        assert!(user(Role::Operator).may(Access::Operate, Some("any")));
        assert!(!user(Role::Operator).may(Access::Configure, Some("any")));
        assert!(user(Role::Admin).may(Access::Accounts, None));
        assert!(token(Scope::Ingest).may(Access::Ingest, Some("shop")));
        assert!(!token(Scope::Ingest).may(Access::Ingest, Some("other")));
        assert!(!token(Scope::Ingest).may(Access::Read, Some("shop")));
        assert!(token(Scope::Read).may(Access::Read, Some("shop")));
        assert!(!token(Scope::Read).may(Access::Read, Some("other")));
        assert!(token(Scope::Admin).may(Access::Configure, Some("shop")));
        assert!(!token(Scope::Admin).may(Access::Accounts, None));
        // Only a session logs out.
        assert!(user(Role::Viewer).may(Access::Session, None));
        assert!(!token(Scope::Admin).may(Access::Session, None));
        assert!(!Principal::AdminToken.may(Access::Session, None));
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; botwatch_session=xyz; b=2".parse().expect("header"),
        );
        assert_eq!(cookie(&h, COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
