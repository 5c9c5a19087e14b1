//! One error type for every handler, with stable error codes. Internals are logged,
//! never shown to clients.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use botwatch_event::FieldError;
use botwatch_log::LogError;
use serde::Serialize;
use tracing::error;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on it.
    pub code: &'static str,
    pub message: String,
    pub details: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (503 has 1 unless told).
    pub retry_after: Option<u64>,
}

/// Every error answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody<'a> {
    error: &'static str,
    message: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    details: &'a [FieldError],
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
        }
    }

    pub fn retry_after(mut self, after: std::time::Duration) -> ApiError {
        self.retry_after = Some(after.as_secs().max(1));
        self
    }

    /// A fault of ours: logged, and a 500 without details for the client.
    pub fn internal(what: &str) -> ApiError {
        error!(what, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error (see the server log)",
        )
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid credentials: log in, or send Authorization: Bearer <token>",
        )
    }

    /// A page size: `default` when absent or empty, else a whole number from 1 to `max`.
    pub fn limit(value: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
        match value {
            None | Some("") => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_parameter(
                        "limit",
                        format!("expected a whole number from 1 to {max}"),
                    )
                }),
        }
    }

    pub fn bad_parameter(name: &str, reason: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{name}: {reason}"),
        )
    }
}

impl From<botwatch_accounts::AccountsError> for ApiError {
    fn from(e: botwatch_accounts::AccountsError) -> ApiError {
        use botwatch_accounts::AccountsError as E;
        match e {
            E::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", m),
            e @ E::Exists(_) => ApiError::new(StatusCode::CONFLICT, "exists", e.to_string()),
            e @ E::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, "not_found", e.to_string()),
            E::Unavailable(m) | E::Corrupt(m) => {
                error!(error = %m, "accounts storage");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "the accounts storage does not answer",
                )
            }
        }
    }
}

impl From<LogError> for ApiError {
    fn from(e: LogError) -> ApiError {
        if e.is_unavailable() {
            error!(error = %e, "storage unavailable");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "the storage does not answer; retry shortly",
            )
        } else {
            error!(error = %e, "storage error");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; it has been logged",
            )
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code,
            message: &self.message,
            details: &self.details,
        };
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        match self.status {
            StatusCode::UNAUTHORIZED => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            StatusCode::SERVICE_UNAVAILABLE if self.retry_after.is_none() => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// axum's `Query`, refused the way the API refuses everything (JSON, `invalid_parameter`)
/// instead of with axum's plain text: a query string serde cannot read, such as a
/// parameter given twice.
pub struct Query<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(query)| Query(query))
            .map_err(|r| ApiError::new(r.status(), "invalid_parameter", r.body_text()))
    }
}

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; it has been logged",
    )
    .into_response()
}
