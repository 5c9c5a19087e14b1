//! `POST|GET|DELETE /api/v1/session` (log in, who am I, log out) and the audit log.

use std::time::Duration;

use axum::Json;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use botwatch_accounts::{AuditEntry, MAX_PASSWORD, digest};
use serde::{Deserialize, Serialize};
use tracing::{info, instrument};

use crate::AppState;
use crate::auth::{COOKIE, Principal, cookie, csrf_of};
use crate::client::Client;
use crate::error::{ApiError, Query};

#[derive(Deserialize, utoipa::ToSchema)]
pub struct Login {
    username: String,
    password: String,
}

/// What the login and `GET /api/v1/session` answer.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionInfo {
    user: Option<String>,
    role: &'static str,
    /// Present for cookie sessions: send it as `X-Botwatch-CSRF` on changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    csrf: Option<String>,
}

/// The biggest login body read.
const MAX_LOGIN_BODY: usize = 4 * 1024;

#[instrument(name = "login", skip_all)]
#[utoipa::path(post, operation_id = "session_login", path = "/api/v1/session", tag = "accounts", request_body = crate::session::Login, responses((status = 200, body = crate::session::SessionInfo, description = "Logged in; sets the `botwatch_session` cookie"), (status = 401, body = crate::error::ErrorBody), (status = 415, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    client: Client,
    request: Request,
) -> Result<Response, ApiError> {
    let from = client.addr;
    let previous = cookie(request.headers(), COOKIE).map(digest);
    // JSON only: a page elsewhere can post a form (text/plain shaped like JSON) without
    // asking, but not application/json, so nobody is logged in by another site.
    let json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
        });
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "json_only",
            "log in with Content-Type: application/json",
        ));
    }
    let body = axum::body::to_bytes(request.into_body(), MAX_LOGIN_BODY + MAX_PASSWORD)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                "the login body is too large",
            )
        })?;
    let login: Login = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("expected {{\"username\",\"password\"}}: {e}"),
        )
    })?;
    let (id, user) = state
        .auth
        .login(&login.username, login.password, from)
        .await?;
    // A new id at every login; a session the browser held before ends.
    if let Some(previous) = previous {
        state.auth.logout(&previous).await?;
    }
    info!(user = %user.name, from = %from, "logged in");
    let who = Principal::User {
        name: user.name.clone(),
        role: user.role,
        session: digest(&id),
    };
    audit(
        &state,
        &who,
        "session.login",
        None,
        serde_json::json!({ "from": from.to_string() }),
    )
    .await?;
    let policy = state.auth.policy();
    let mut response = Json(SessionInfo {
        user: Some(user.name),
        role: user.role.as_str(),
        csrf: Some(csrf_of(&id)),
    })
    .into_response();
    set_session_cookie(&mut response, &id, policy.absolute, client.https)?;
    Ok(response)
}

#[utoipa::path(get, operation_id = "session_current", path = "/api/v1/session", tag = "accounts", responses((status = 200, body = crate::session::SessionInfo), (status = 401, body = crate::error::ErrorBody)))]
pub async fn current(
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
) -> Json<SessionInfo> {
    Json(match principal {
        Principal::AdminToken => SessionInfo {
            user: None,
            role: "admin",
            csrf: None,
        },
        Principal::User { name, role, .. } => SessionInfo {
            user: Some(name),
            role: role.as_str(),
            csrf: cookie(&headers, COOKIE).map(csrf_of),
        },
        Principal::Token { scope, .. } => SessionInfo {
            user: None,
            role: scope.as_str(),
            csrf: None,
        },
    })
}

#[instrument(name = "logout", skip_all)]
#[utoipa::path(delete, operation_id = "session_logout", path = "/api/v1/session", tag = "accounts", responses((status = 204, description = "Logged out; the cookie is cleared"), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody, description = "Not a session: tokens are revoked with `botwatch tokens remove`")))]
pub async fn logout(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    client: Client,
) -> Result<Response, ApiError> {
    // The route's rule (`Access::Session`) lets only sessions through.
    let Principal::User { name, session, .. } = &principal else {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "only a session logs out",
        ));
    };
    state.auth.logout(session).await?;
    info!(user = %name, "logged out");
    audit(
        &state,
        &principal,
        "session.logout",
        None,
        serde_json::json!({}),
    )
    .await?;
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_session_cookie(&mut response, "", Duration::ZERO, client.https)?;
    Ok(response)
}

#[derive(Deserialize)]
pub struct AuditQuery {
    limit: Option<String>,
}

/// Entries the audit log answers when the client does not say, and at most.
const AUDIT_LIMIT: (usize, usize) = (100, 1000);

impl utoipa::IntoParams for AuditQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        vec![crate::openapi::rules::page_limit(
            AUDIT_LIMIT.0,
            AUDIT_LIMIT.1,
        )]
    }
}

/// `GET /api/v1/audit?limit=`: what operators and admins did, newest first.
#[utoipa::path(get, operation_id = "session_audit_log", path = "/api/v1/audit", tag = "accounts", params(crate::session::AuditQuery), responses((status = 200, body = Vec<botwatch_accounts::AuditEntry>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn audit_log(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditEntry>>, ApiError> {
    let limit = ApiError::limit(query.limit.as_deref(), AUDIT_LIMIT.0, AUDIT_LIMIT.1)?;
    Ok(Json(state.auth.accounts().audit_log(limit).await?))
}

/// Records what a principal did (a failure to record is logged, never hidden).
pub async fn audit(
    state: &AppState,
    principal: &Principal,
    action: &str,
    bot: Option<&str>,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let entry = AuditEntry::now(principal.actor(), action, bot, detail);
    Ok(state.auth.accounts().record(&entry).await?)
}

/// Sets the session cookie to `id` for `max_age` (an empty id and zero clear it);
/// Secure when the client came over https.
fn set_session_cookie(
    response: &mut Response,
    id: &str,
    max_age: Duration,
    secure: bool,
) -> Result<(), ApiError> {
    let secure = if secure { "; Secure" } else { "" };
    let value = format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    );
    let value = HeaderValue::from_str(&value).map_err(|_| ApiError::internal("cookie header"))?;
    response.headers_mut().append(header::SET_COOKIE, value);
    Ok(())
}
