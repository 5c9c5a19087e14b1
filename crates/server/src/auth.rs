//! Who is asking. For now the one admin token of `BOTWATCH_ADMIN_TOKEN`; accounts,
//! sessions and scoped tokens plug in here.

use axum::http::StatusCode;
use axum::http::{HeaderMap, header};
use botwatch_event::is_slug;
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
}

impl Principal {
    /// Whether this principal may ingest events for `bot`.
    pub fn may_ingest(&self, _bot: &str) -> bool {
        matches!(self, Principal::Admin)
    }

    /// Whether this principal may read the data of `bot`.
    pub fn may_read(&self, _bot: &str) -> bool {
        matches!(self, Principal::Admin)
    }
}

pub struct Auth {
    admin_token: Option<Vec<u8>>,
}

impl Auth {
    pub fn new(admin_token: Option<String>) -> Auth {
        Auth {
            admin_token: admin_token.map(String::into_bytes),
        }
    }

    /// The principal of a request about `bot`, when it may read that bot's data:
    /// 401 without credentials, 400 for a name that is no bot's, 403 without access.
    pub fn reader(&self, headers: &HeaderMap, bot: &str) -> Result<Principal, ApiError> {
        let principal = self.authenticate(headers)?;
        if !is_slug(bot) {
            return Err(ApiError::bad_parameter("bot", "not a bot slug"));
        }
        if !principal.may_read(bot) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("no read access to bot {bot:?}"),
            ));
        }
        Ok(principal)
    }

    /// The principal behind the request's credentials, or 401.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or_else(ApiError::unauthorized)?;
        match &self.admin_token {
            Some(admin) if bool::from(admin.as_slice().ct_eq(presented.as_bytes())) => {
                Ok(Principal::Admin)
            }
            _ => Err(ApiError::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("header"),
        );
        h
    }

    #[test]
    fn only_the_admin_token_is_admitted() {
        let auth = Auth::new(Some("0123456789abcdef".into()));
        assert_eq!(
            auth.authenticate(&headers("Bearer 0123456789abcdef")).ok(),
            Some(Principal::Admin)
        );
        assert_eq!(
            auth.authenticate(&headers("bearer 0123456789abcdef")).ok(),
            Some(Principal::Admin)
        );
        assert!(
            auth.authenticate(&headers("Bearer 0123456789abcdeX"))
                .is_err()
        );
        assert!(
            auth.authenticate(&headers("Bearer 0123456789abcde"))
                .is_err()
        );
        assert!(
            auth.authenticate(&headers("Basic 0123456789abcdef"))
                .is_err()
        );
        assert!(auth.authenticate(&HeaderMap::new()).is_err());
    }

    #[test]
    fn without_an_admin_token_nobody_is_admitted() {
        let auth = Auth::new(None);
        assert!(auth.authenticate(&headers("Bearer ")).is_err());
        assert!(auth.authenticate(&headers("Bearer anything")).is_err());
    }
}
