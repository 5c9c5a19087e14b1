//! The Redis backend, every key under the deployment's prefix:
//! - `accounts:users` (hash: name → user JSON), `accounts:tokens` (hash: digest → token JSON);
//! - `session:{digest}` (session JSON, expiring with the session);
//! - `login-failures:{key}` (a counter expiring with its window);
//! - `audit` (a stream of `entry` JSON, trimmed to about [`AUDIT_KEEP`] entries).

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;

use crate::{AccountsError, AuditEntry, Session, Token, User};

/// Audit entries kept in Redis (about: the stream is trimmed approximately).
pub const AUDIT_KEEP: usize = 1_000_000;

pub struct RedisStore {
    con: ConnectionManager,
    prefix: String,
}

impl RedisStore {
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisStore, AccountsError> {
        let client = redis::Client::open(url)
            .map_err(|e| AccountsError::Invalid(format!("bad Redis URL: {:?}", e.kind())))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let con = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| AccountsError::Unavailable(format!("cannot reach Redis: {e}")))?;
        Ok(RedisStore {
            con,
            prefix: prefix.to_string(),
        })
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    pub async fn users(&self) -> Result<Vec<User>, AccountsError> {
        let all: Vec<String> = self.con.clone().hvals(self.key("accounts:users")).await?;
        all.iter().map(|j| parse(j)).collect()
    }

    pub async fn user(&self, name: &str) -> Result<Option<User>, AccountsError> {
        let json: Option<String> = self
            .con
            .clone()
            .hget(self.key("accounts:users"), name)
            .await?;
        json.as_deref().map(parse).transpose()
    }

    pub async fn put_user(&self, user: User, replace: bool) -> Result<(), AccountsError> {
        let json = to_json(&user)?;
        // HSETNX to add; for a replacement, a script so a removal in between is not undone.
        let written: bool = if replace {
            redis::Script::new(
                "if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then \
                   redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return 1 end return 0",
            )
            .key(self.key("accounts:users"))
            .arg(&user.name)
            .arg(&json)
            .invoke_async(&mut self.con.clone())
            .await?
        } else {
            self.con
                .clone()
                .hset_nx(self.key("accounts:users"), &user.name, &json)
                .await?
        };
        match (written, replace) {
            (true, _) => Ok(()),
            (false, false) => Err(AccountsError::Exists(format!("user {:?}", user.name))),
            (false, true) => Err(AccountsError::NotFound(format!("user {:?}", user.name))),
        }
    }

    pub async fn remove_user(&self, name: &str) -> Result<bool, AccountsError> {
        let removed: u32 = self
            .con
            .clone()
            .hdel(self.key("accounts:users"), name)
            .await?;
        Ok(removed > 0)
    }

    pub async fn tokens(&self) -> Result<Vec<Token>, AccountsError> {
        let all: Vec<String> = self.con.clone().hvals(self.key("accounts:tokens")).await?;
        all.iter().map(|j| parse(j)).collect()
    }

    pub async fn token(&self, digest: &str) -> Result<Option<Token>, AccountsError> {
        let json: Option<String> = self
            .con
            .clone()
            .hget(self.key("accounts:tokens"), digest)
            .await?;
        json.as_deref().map(parse).transpose()
    }

    pub async fn add_token(&self, token: Token) -> Result<(), AccountsError> {
        let json = to_json(&token)?;
        let () = self
            .con
            .clone()
            .hset(self.key("accounts:tokens"), &token.digest, json)
            .await?;
        Ok(())
    }

    pub async fn remove_token(&self, id: &str) -> Result<bool, AccountsError> {
        for token in self.tokens().await? {
            if token.id == id {
                let removed: u32 = self
                    .con
                    .clone()
                    .hdel(self.key("accounts:tokens"), &token.digest)
                    .await?;
                return Ok(removed > 0);
            }
        }
        Ok(false)
    }

    pub async fn session(&self, digest: &str) -> Result<Option<Session>, AccountsError> {
        let json: Option<String> = self
            .con
            .clone()
            .get(self.key(&format!("session:{digest}")))
            .await?;
        json.as_deref().map(parse).transpose()
    }

    pub async fn put_session(
        &self,
        digest: &str,
        session: &Session,
        ttl: Duration,
    ) -> Result<(), AccountsError> {
        let millis = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let () = self
            .con
            .clone()
            .pset_ex(
                self.key(&format!("session:{digest}")),
                to_json(session)?,
                millis,
            )
            .await?;
        Ok(())
    }

    pub async fn end_session(&self, digest: &str) -> Result<(), AccountsError> {
        let _: u32 = self
            .con
            .clone()
            .del(self.key(&format!("session:{digest}")))
            .await?;
        Ok(())
    }

    pub async fn add_failure(&self, key: &str, window: Duration) -> Result<u32, AccountsError> {
        // The window starts at the first failure and is not extended by later ones.
        let count: u32 = redis::Script::new(
            "local n = redis.call('INCR', KEYS[1]) \
             if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end return n",
        )
        .key(self.key(&format!("login-failures:{key}")))
        .arg(u64::try_from(window.as_millis()).unwrap_or(u64::MAX).max(1))
        .invoke_async(&mut self.con.clone())
        .await?;
        Ok(count)
    }

    pub async fn failures(&self, key: &str) -> Result<u32, AccountsError> {
        let count: Option<u32> = self
            .con
            .clone()
            .get(self.key(&format!("login-failures:{key}")))
            .await?;
        Ok(count.unwrap_or(0))
    }

    pub async fn clear_failures(&self, key: &str) -> Result<(), AccountsError> {
        let _: u32 = self
            .con
            .clone()
            .del(self.key(&format!("login-failures:{key}")))
            .await?;
        Ok(())
    }

    pub async fn record(&self, entry: &AuditEntry) -> Result<(), AccountsError> {
        let _: String = redis::cmd("XADD")
            .arg(self.key("audit"))
            .arg("MAXLEN")
            .arg("~")
            .arg(AUDIT_KEEP)
            .arg("*")
            .arg("entry")
            .arg(to_json(entry)?)
            .query_async(&mut self.con.clone())
            .await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, AccountsError> {
        let reply: redis::streams::StreamRangeReply = self
            .con
            .clone()
            .xrevrange_count(self.key("audit"), "+", "-", limit)
            .await?;
        reply
            .ids
            .iter()
            .map(|entry| {
                let json: String = entry.get("entry").ok_or_else(|| {
                    AccountsError::Corrupt(format!("audit entry {} has no `entry`", entry.id))
                })?;
                parse(&json)
            })
            .collect()
    }
}

fn parse<T: DeserializeOwned>(json: &str) -> Result<T, AccountsError> {
    serde_json::from_str(json).map_err(|e| AccountsError::Corrupt(e.to_string()))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, AccountsError> {
    serde_json::to_string(value).map_err(|e| AccountsError::Invalid(e.to_string()))
}
