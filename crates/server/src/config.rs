use std::net::SocketAddr;
use std::time::Duration;

use botwatch_log::StorageConfig;

/// Everything `serve` needs, validated before any port is bound.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub storage: StorageConfig,
    /// `BOTWATCH_ADMIN_TOKEN`: a bearer token with every right. `None`: nobody is
    /// admitted by token (accounts and scoped tokens come with their own issue).
    pub admin_token: Option<String>,
    /// How long requests in flight may run on after a shutdown signal.
    pub shutdown_grace: Duration,
    /// How long a client may take to send a request body (408 after).
    pub body_timeout: Duration,
    /// The aggregator snapshots after this many events (and when the server stops).
    pub snapshot_every: u64,
    /// Retention (Redis only): after each snapshot, trim the stream to about this many
    /// entries, never below what a snapshot or a live node still needs. `None`: never.
    pub retain_events: Option<u64>,
    /// Origins (`scheme://host[:port]`) whose pages may open live WebSockets, besides
    /// the server's own.
    pub allowed_origins: Vec<String>,
    /// How long login sessions last.
    pub sessions: crate::auth::SessionPolicy,
    /// How failed logins are slowed down and refused.
    pub logins: crate::auth::LoginThrottle,
    /// `BOTWATCH_SECRET_KEY`: 32 bytes (base64url or hex) that seal secrets in settings;
    /// the same on every node.
    pub secret_key: Option<String>,
    /// Proxies (addresses or networks) whose forwarded headers name the client.
    pub trusted_proxies: Vec<String>,
    /// `BOTWATCH_PUBLIC_URL`: the address users and bots reach this server at (the
    /// files operators send are linked under it); the request's `Host` when unset.
    pub public_url: Option<String>,
    /// `BOTWATCH_TELEGRAM_API`: the Bot API's base address.
    pub telegram_api: String,
    /// `BOTWATCH_GA_ENDPOINT`: Google Analytics' Measurement Protocol base address.
    pub ga_endpoint: String,
    /// `BOTWATCH_MIXPANEL_ENDPOINT`: Mixpanel's API base address.
    pub mixpanel_endpoint: String,
}

/// Telegram's Bot API.
pub const TELEGRAM_API: &str = "https://api.telegram.org";
/// Google Analytics' Measurement Protocol.
pub const GA_ENDPOINT: &str = "https://www.google-analytics.com";
/// Mixpanel's API.
pub const MIXPANEL_ENDPOINT: &str = "https://api.mixpanel.com";

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("storage", &self.storage)
            .field("admin_token", &self.admin_token.as_ref().map(|_| "***"))
            .field("shutdown_grace", &self.shutdown_grace)
            .field("body_timeout", &self.body_timeout)
            .field("snapshot_every", &self.snapshot_every)
            .field("retain_events", &self.retain_events)
            .field("allowed_origins", &self.allowed_origins)
            .field("sessions", &self.sessions)
            .field("logins", &self.logins)
            .field("secret_key", &self.secret_key.as_ref().map(|_| "***"))
            .field("trusted_proxies", &self.trusted_proxies)
            .field("public_url", &self.public_url)
            .field("telegram_api", &self.telegram_api)
            .field("ga_endpoint", &self.ga_endpoint)
            .field("mixpanel_endpoint", &self.mixpanel_endpoint)
            .finish()
    }
}

impl Config {
    pub fn new(listen: SocketAddr, storage: StorageConfig) -> Config {
        Config {
            listen,
            storage,
            admin_token: None,
            shutdown_grace: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            snapshot_every: 1_000_000,
            retain_events: None,
            allowed_origins: Vec::new(),
            sessions: crate::auth::SessionPolicy::default(),
            logins: crate::auth::LoginThrottle::default(),
            secret_key: None,
            trusted_proxies: Vec::new(),
            public_url: None,
            telegram_api: TELEGRAM_API.to_owned(),
            ga_endpoint: GA_ENDPOINT.to_owned(),
            mixpanel_endpoint: MIXPANEL_ENDPOINT.to_owned(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(token) = &self.admin_token {
            if token.len() < MIN_TOKEN_LEN {
                return Err(ConfigError::WeakAdminToken);
            }
            if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ConfigError::AdminTokenCharacters);
            }
        }
        if self
            .secret_key
            .as_deref()
            .is_some_and(|k| crate::vault::parse_key(k).is_none())
        {
            return Err(ConfigError::SecretKey);
        }
        if let Some(bad) = self
            .trusted_proxies
            .iter()
            .find(|n| crate::client::Network::parse(n).is_none())
        {
            return Err(ConfigError::TrustedProxy(bad.clone()));
        }
        if let Some(bad) = self.allowed_origins.iter().find(|o| !is_origin(o)) {
            return Err(ConfigError::Origin(bad.clone()));
        }
        match (self.retain_events, &self.storage) {
            (Some(0), _) => return Err(ConfigError::RetainNothing),
            (Some(_), StorageConfig::Embedded { .. }) => {
                return Err(ConfigError::RetentionNeedsRedis);
            }
            _ => {}
        }
        match &self.storage {
            StorageConfig::Embedded { dir } if dir.as_os_str().is_empty() => {
                Err(ConfigError::EmptyDataDir)
            }
            StorageConfig::Redis(redis) => {
                if !(redis.url.starts_with("redis://")
                    || redis.url.starts_with("rediss://")
                    || redis.url.starts_with("unix://"))
                {
                    return Err(ConfigError::RedisUrl(botwatch_log::redact_url(&redis.url)));
                }
                if redis.prefix.is_empty() || redis.prefix.contains(char::is_whitespace) {
                    return Err(ConfigError::RedisPrefix(redis.prefix.clone()));
                }
                Ok(())
            }
            StorageConfig::Embedded { .. } => Ok(()),
        }
    }
}

/// An origin as browsers send it: `http(s)://host[:port]`, nothing after.
fn is_origin(o: &str) -> bool {
    let Some(rest) = o
        .strip_prefix("https://")
        .or_else(|| o.strip_prefix("http://"))
    else {
        return false;
    };
    !rest.is_empty() && !rest.contains(['/', '?', '#', ' ', '*'])
}

/// The shortest admin token accepted: long enough not to be guessed.
pub const MIN_TOKEN_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("BOTWATCH_ADMIN_TOKEN must be at least {MIN_TOKEN_LEN} characters long")]
    WeakAdminToken,
    #[error("BOTWATCH_ADMIN_TOKEN must not contain spaces or control characters")]
    AdminTokenCharacters,
    #[error("BOTWATCH_SECRET_KEY must be 32 bytes, as 43 base64url or 64 hex characters")]
    SecretKey,
    #[error("BOTWATCH_TRUSTED_PROXIES: {0:?} is not an address or a network (e.g. 10.0.0.0/8)")]
    TrustedProxy(String),
    #[error("the data directory must not be empty")]
    EmptyDataDir,
    #[error("not a Redis URL: {0:?} (expected redis://HOST:PORT[/DB], rediss:// or unix://)")]
    RedisUrl(String),
    #[error("the Redis key prefix {0:?} must be non-empty and without spaces")]
    RedisPrefix(String),
    #[error(
        "BOTWATCH_RETAIN_EVENTS (--retain-events) must be at least 1 (leave it unset to keep every event)"
    )]
    RetainNothing,
    #[error(
        "BOTWATCH_RETAIN_EVENTS (--retain-events) needs Redis (--redis): the embedded store keeps every event"
    )]
    RetentionNeedsRedis,
    #[error(
        "BOTWATCH_ALLOWED_ORIGINS: {0:?} is not an origin (expected http(s)://host[:port], no path)"
    )]
    Origin(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use botwatch_log::RedisConfig;

    fn embedded() -> Config {
        Config::new(
            "127.0.0.1:0".parse().expect("addr"),
            StorageConfig::Embedded { dir: "data".into() },
        )
    }

    #[test]
    fn short_or_spaced_admin_tokens_are_refused() {
        let mut c = embedded();
        c.admin_token = Some("short".into());
        assert_eq!(c.validate(), Err(ConfigError::WeakAdminToken));
        c.admin_token = Some("a long token with spaces".into());
        assert_eq!(c.validate(), Err(ConfigError::AdminTokenCharacters));
        c.admin_token = Some("0123456789abcdef".into());
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn redis_urls_are_checked() {
        let mut c = embedded();
        c.storage = StorageConfig::Redis(RedisConfig::new("http://127.0.0.1:6379"));
        assert!(matches!(c.validate(), Err(ConfigError::RedisUrl(_))));
        c.storage = StorageConfig::Redis(RedisConfig::new("redis://127.0.0.1:6379/2"));
        assert_eq!(c.validate(), Ok(()));
    }

    #[test]
    fn retention_needs_redis_and_keeps_something() {
        let mut c = embedded();
        c.retain_events = Some(1000);
        assert_eq!(c.validate(), Err(ConfigError::RetentionNeedsRedis));
        c.storage = StorageConfig::Redis(RedisConfig::new("redis://127.0.0.1:6379"));
        assert_eq!(c.validate(), Ok(()));
        c.retain_events = Some(0);
        assert_eq!(c.validate(), Err(ConfigError::RetainNothing));
    }

    #[test]
    fn allowed_origins_are_origins() {
        let mut c = embedded();
        c.allowed_origins = vec![
            "https://dash.example.com".into(),
            "http://127.0.0.1:3000".into(),
        ];
        assert_eq!(c.validate(), Ok(()));
        for bad in ["dash.example.com", "https://x/app", "*", "https://"] {
            c.allowed_origins = vec![bad.into()];
            assert_eq!(c.validate(), Err(ConfigError::Origin(bad.into())), "{bad}");
        }
    }
}
