/// Why the log could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// The storage does not answer (Redis down or paused, a timeout): retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The embedded store failed (disk full, IO error, corruption).
    #[error("embedded store: {0}")]
    Embedded(String),
    /// Redis answered with an error.
    #[error("redis: {0}")]
    Redis(String),
    /// An entry in the log could not be decoded.
    #[error("corrupt log entry at {position}: {reason}")]
    Corrupt { position: String, reason: String },
    #[error("the log is closed")]
    Closed,
}

impl LogError {
    /// Whether the caller may retry the same request later with a chance of success.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, LogError::Unavailable(_) | LogError::Closed)
    }
}

/// Redis error codes that mean "not now": loading a dataset after a restart, a
/// failover under way, a busy script, out of memory.
const TRANSIENT_CODES: [&str; 6] = [
    "LOADING",
    "MASTERDOWN",
    "TRYAGAIN",
    "READONLY",
    "BUSY",
    "OOM",
];

impl From<redis::RedisError> for LogError {
    fn from(e: redis::RedisError) -> LogError {
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_unrecoverable_error()
            || e.code().is_some_and(|code| TRANSIENT_CODES.contains(&code))
        {
            LogError::Unavailable(e.to_string())
        } else {
            LogError::Redis(e.to_string())
        }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for LogError {
            fn from(e: $t) -> LogError {
                LogError::Embedded(e.to_string())
            }
        }
    )*};
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
