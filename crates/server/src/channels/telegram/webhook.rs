//! `POST /channels/telegram/{bot}/webhook`: Telegram's webhook, pointed at botwatch
//! (`setWebhook` with `secret_token` = the bot's `channels.telegram.webhook_secret`).
//!
//! Each update is checked (the secret header, compared in constant time), recorded as
//! an inbound event, and then: for a user in Auto, passed on unchanged to the bot's
//! `forward_url` (the bot's answer, which may carry a Bot API call, is passed back to
//! Telegram); for a user in Manual, held back — the bot never sees it. When the bot's
//! webhook fails, Telegram gets 502 and offers the update again; it is recorded once.
//!
//! `GET /channels/telegram/{bot}/files/{file_id}` serves a file a user sent, fetched
//! from Telegram with the bot's token (which never leaves botwatch).

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use botwatch_event::Mode;
use botwatch_log::EventLog;
use subtle::ConstantTimeEq;
use tracing::{info, instrument, warn};

use super::update::Update;
use crate::AppState;
use crate::channels::settings_of;
use crate::error::ApiError;
use crate::settings::{TELEGRAM_SECRET, TELEGRAM_TOKEN};

/// The header Telegram sends the webhook's `secret_token` in.
pub const SECRET_HEADER: &str = "x-telegram-bot-api-secret-token";
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);
/// Telegram's own limit on files bots download.
const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// How long fetching a file from Telegram may take.
const FILE_TIMEOUT: Duration = Duration::from_secs(30);

#[instrument(name = "telegram.webhook", skip(state, client, headers, body))]
#[utoipa::path(post, operation_id = "telegram_webhook", path = "/channels/telegram/{bot}/webhook", tag = "telegram",
    params(("bot" = String, Path, description = "The bot (a slug)")),
    request_body(content = String, description = "A Telegram Update, as Telegram sends it", content_type = "application/json"),
    responses((status = 200, description = "Recorded (and passed on in Auto; what the bot answered is passed back)"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody), (status = 503, body = crate::error::ErrorBody)))]
pub async fn webhook(
    State(state): State<AppState>,
    client: crate::client::Client,
    Path(bot): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let doc = settings_of(&state, &bot)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.0))?;
    let tg = &doc.channels.telegram;
    let expected = tg
        .webhook_secret
        .as_deref()
        .and_then(|sealed| state.vault.open(&bot, TELEGRAM_SECRET, sealed));
    let given = headers.get(SECRET_HEADER).map(|v| v.as_bytes());
    let matches = match (&expected, given) {
        (Some(e), Some(g)) => bool::from(e.as_bytes().ct_eq(g)),
        _ => false,
    };
    if !matches {
        return Err(ApiError::unauthorized());
    }
    let update: Update = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_update",
            format!("not a Telegram update: {e}"),
        )
    })?;
    let files = format!(
        "{}/channels/telegram/{bot}/files",
        crate::outbox::public_base(&state, &headers, client)
    );
    if let Some(event) = update.to_event(&bot, &files, &state.limits) {
        let events = vec![event];
        let asking = crate::handoff::askers(&state, &events).await;
        state.log.append(events).await?;
        crate::handoff::flag_soon(&state, asking);
    }
    let user = update.user_id();
    if let Some(user) = &user
        && crate::figures::mode_of(&state, &bot, user).await? == Mode::Manual
    {
        info!(
            update = update.update_id,
            user, "held back from the bot: the dialog is in Manual"
        );
        return Ok(StatusCode::OK.into_response());
    }
    let Some(forward) = tg.forward_url.as_deref() else {
        return Ok(StatusCode::OK.into_response());
    };
    let mut request = state
        .http
        .post(forward)
        .timeout(FORWARD_TIMEOUT)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(secret) = headers.get(SECRET_HEADER) {
        request = request.header(SECRET_HEADER, secret.clone());
    }
    let bad_gateway = |said: String| {
        warn!(
            update = update.update_id,
            said, "the bot's webhook did not take the update"
        );
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "bot_unavailable",
            format!(
                "the bot's webhook did not take the update ({said}); Telegram will offer it again"
            ),
        )
    };
    let answer = request
        .send()
        .await
        .map_err(|e| bad_gateway(e.to_string()))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(bad_gateway(status.to_string()));
    }
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| bad_gateway(e.to_string()))?;
    info!(update = update.update_id, "passed on to the bot");
    // A bot may answer the webhook with a Bot API call: Telegram makes it.
    let mut response = (StatusCode::OK, bytes).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    Ok(response)
}

#[instrument(name = "telegram.file", skip(state))]
#[utoipa::path(get, operation_id = "telegram_file", path = "/channels/telegram/{bot}/files/{file_id}", tag = "telegram",
    params(("bot" = String, Path, description = "The bot (a slug)"), ("file_id" = String, Path, description = "Telegram's file_id")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream"), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 502, body = crate::error::ErrorBody)))]
pub async fn file(
    State(state): State<AppState>,
    Path((bot, file_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let not_found = |why: &str| ApiError::new(StatusCode::NOT_FOUND, "not_found", why.to_owned());
    if file_id.is_empty()
        || file_id.len() > 256
        || !file_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(not_found("not a Telegram file id"));
    }
    let doc = settings_of(&state, &bot)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.0))?;
    let token = doc
        .channels
        .telegram
        .token
        .as_deref()
        .and_then(|sealed| state.vault.open(&bot, TELEGRAM_TOKEN, sealed))
        .ok_or_else(|| not_found("the bot has no Telegram token"))?;
    let api = state.telegram_api.trim_end_matches('/');
    let gateway = |said: String| ApiError::new(StatusCode::BAD_GATEWAY, "telegram", said);
    let info: serde_json::Value = state
        .http
        .post(format!("{api}/bot{token}/getFile"))
        .timeout(FILE_TIMEOUT)
        .json(&serde_json::json!({ "file_id": file_id }))
        .send()
        .await
        .map_err(|e| gateway(super::unreachable(e)))?
        .json()
        .await
        .map_err(|e| gateway(format!("Telegram's answer: {}", e.without_url())))?;
    let path = info["result"]["file_path"]
        .as_str()
        .ok_or_else(|| not_found("Telegram does not have this file"))?;
    let file = state
        .http
        .get(format!("{api}/file/bot{token}/{path}"))
        .timeout(FILE_TIMEOUT)
        .send()
        .await
        .map_err(|e| gateway(super::unreachable(e)))?;
    if !file.status().is_success() {
        return Err(gateway(format!("Telegram answered {}", file.status())));
    }
    if file
        .content_length()
        .is_some_and(|n| n > MAX_FILE_BYTES as u64)
    {
        return Err(gateway(
            "the file is larger than Telegram lets bots fetch".to_owned(),
        ));
    }
    let bytes = file
        .bytes()
        .await
        .map_err(|e| gateway(super::unreachable(e)))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(gateway(
            "the file is larger than Telegram lets bots fetch".to_owned(),
        ));
    }
    let mime = crate::outbox::sniff(&bytes);
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CONTENT_DISPOSITION, "attachment".to_owned()),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
            (header::CACHE_CONTROL, "private, max-age=3600".to_owned()),
        ],
        bytes,
    )
        .into_response())
}
