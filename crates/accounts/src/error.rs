/// What can go wrong with accounts.
#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    /// Bad input: a name, a role, a password that does not fit the rules.
    #[error("{0}")]
    Invalid(String),
    #[error("{0} already exists")]
    Exists(String),
    #[error("{0} does not exist")]
    NotFound(String),
    /// The storage did not answer (Redis down, a file that cannot be read).
    #[error("accounts storage unavailable: {0}")]
    Unavailable(String),
    /// The storage answered with something that is not what botwatch wrote.
    #[error("accounts storage is damaged: {0}")]
    Corrupt(String),
}

impl From<redis::RedisError> for AccountsError {
    fn from(e: redis::RedisError) -> AccountsError {
        AccountsError::Unavailable(e.to_string())
    }
}
