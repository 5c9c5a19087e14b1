//! `POST /api/v1/events`: one event or a batch; all valid and stored, or nothing.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use botwatch_event::{BatchError, parse_batch};
use botwatch_log::EventLog;
use chrono::Utc;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Serialize;
use tracing::{Span, instrument};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IngestAnswer {
    pub accepted: usize,
    /// For every user of the batch: whether the bot may answer (auto) or an operator
    /// has taken over (manual).
    pub dialogs: BTreeMap<String, DialogMode>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DialogMode {
    pub mode: &'static str,
}

#[instrument(name = "ingest", skip_all, fields(events, stored, duplicates))]
#[utoipa::path(post, operation_id = "ingest_ingest", path = "/api/v1/events", tag = "ingest", request_body(content = botwatch_event::schema::IngestBody, description = "One event or an array of up to 1,000 (4 MiB); `id` and `ts` may be left out"), responses((status = 202, body = crate::ingest::IngestAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 408, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn ingest(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<IngestAnswer>), ApiError> {
    // Bounds the memory held by bodies in flight; others wait here, unread.
    let _slot = state.ingest_slots.acquire().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is stopping",
        )
    })?;
    let max = state.limits.max_batch_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > max) {
        state.metrics.reject("too_large", 1);
        return Err(too_large(max));
    }
    let bytes = match Limited::new(body, max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            state.metrics.reject("too_large", 1);
            return Err(too_large(max));
        }
        Err(e) if caused_by_timeout(e.as_ref()) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the body did not arrive within {} ms",
                    state.body_timeout.as_millis()
                ),
            ));
        }
        Err(e) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read the request body: {e}"),
            ));
        }
    };

    // A large body takes milliseconds to parse: off the async workers.
    let parsed = if bytes.len() > BLOCKING_PARSE_BYTES {
        let limits = state.limits.clone();
        tokio::task::spawn_blocking(move || parse_batch(&bytes, Utc::now(), &limits))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; it has been logged",
                )
            })?
    } else {
        parse_batch(&bytes, Utc::now(), &state.limits)
    };
    let events = parsed.map_err(|e| {
        let (status, code, reason, details) = match e {
            BatchError::Malformed(m) => {
                state.metrics.reject("malformed", 1);
                return ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not a JSON event or array of events: {m}"),
                );
            }
            BatchError::TooLarge(d) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large", "too_large", d),
            BatchError::Invalid(d) => (StatusCode::BAD_REQUEST, "invalid_events", "invalid", d),
        };
        let mut faulty: Vec<usize> = details.iter().map(|d| d.index).collect();
        faulty.dedup();
        state.metrics.reject(reason, faulty.len() as u64);
        ApiError {
            status,
            code,
            message: format!(
                "{} event(s) refused; nothing of this batch was stored",
                faulty.len()
            ),
            details,
            retry_after: None,
        }
    })?;

    if let Some(bot) = events
        .iter()
        .map(|e| e.bot.as_str())
        .find(|b| !principal.may_ingest(b))
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!("this token may not ingest events for bot {bot:?}"),
        ));
    }

    let accepted = events.len();
    let users: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.bot.clone(), e.user.id.clone()))
        .collect();
    let asking = crate::handoff::askers(&state, &events).await;
    let receipt = state.log.append(events).await?;
    crate::handoff::flag_soon(&state, asking);
    // Who answers each user right now: a bot must not answer one in Manual mode.
    let modes = crate::figures::modes(&state, users.clone()).await?;
    let dialogs = users
        .into_iter()
        .zip(modes)
        .map(|((_, user), mode)| {
            (
                user,
                DialogMode {
                    mode: mode.as_str(),
                },
            )
        })
        .collect();
    let span = Span::current();
    span.record("events", accepted);
    span.record("stored", receipt.stored);
    span.record("duplicates", receipt.duplicates);
    state.metrics.events_accepted.inc_by(accepted as u64);
    state.metrics.events_duplicate.inc_by(receipt.duplicates);
    Ok((
        StatusCode::ACCEPTED,
        Json(IngestAnswer { accepted, dialogs }),
    ))
}

/// Whether the body timeout is somewhere in the error's chain (axum wraps it).
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(err) = cause {
        if err.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = err.source();
    }
    false
}

/// Bodies larger than this are parsed on the blocking pool.
const BLOCKING_PARSE_BYTES: usize = 64 * 1024;

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!("the body is larger than {max} bytes"),
    )
}
