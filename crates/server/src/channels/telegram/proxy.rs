//! The Bot API proxy: a bot framework that changes nothing but its API base address
//! (`…/channels/telegram/{bot}/api`) calls Telegram through botwatch.
//!
//! `…/api/bot<TOKEN>/<METHOD>` is passed to `BOTWATCH_TELEGRAM_API/bot<TOKEN>/<METHOD>`
//! as it came (method, query, body, content type) and the answer passed back, with two
//! exceptions:
//! - what the bot sends (`sendMessage`, `sendPhoto`, `sendDocument`, any `send*`), once
//!   Telegram took it, is recorded as an outbound message (id `tgout-{chat}-{message_id}`,
//!   so it is recorded once);
//! - what it fetches with `getUpdates` is recorded as inbound (id `tg-{update_id}`,
//!   recorded once however often Telegram offers it), and the updates of users in
//!   Manual are removed from the answer. When that leaves nothing, botwatch asks
//!   Telegram again past them (`offset` = the last removed + 1: everything below was
//!   either removed or already confirmed by the bot's own offset), so the bot's long
//!   poll stays a long poll instead of spinning on updates it will never see.
//!
//! Only the bot's own token is admitted (the one in its settings, compared in
//! constant time): the proxy is not an open relay.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use botwatch_event::{Event, Mode};
use botwatch_log::EventLog;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;
use tracing::{info, instrument, warn};

use super::update::Update;
use crate::AppState;
use crate::channels::settings_of;
use crate::settings::TELEGRAM_TOKEN;

/// Long polls last up to the bot's `timeout` (Telegram allows 50 s); a little more.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// Uploads through the proxy (Telegram takes 50 MB from bots).
pub const MAX_BODY_BYTES: usize = 50 * 1024 * 1024;
/// How often one `getUpdates` asks again past removed updates.
const REFETCHES: usize = 5;

/// Telegram's own way to say no, so frameworks report it as they would.
fn refusal(status: StatusCode, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"ok": false, "error_code": status.as_u16(), "description": description})),
    )
        .into_response()
}

// The token is in the path: never a field of the span (it would be in every log line).
#[instrument(name = "telegram.proxy", skip(state, client, bot_token, headers, query, request), fields(method = %method_name))]
#[utoipa::path(post, operation_id = "telegram_proxy", path = "/channels/telegram/{bot}/api/{bot_token}/{method_name}", tag = "telegram",
    params(("bot" = String, Path, description = "The bot (a slug)"), ("bot_token" = String, Path, description = "`bot` followed by the bot's Bot API token"), ("method_name" = String, Path, description = "A Bot API method")),
    responses((status = 200, description = "Telegram's answer, passed back (getUpdates without Manual users' updates)"), (status = 401, description = "Not the bot's token")))]
pub async fn proxy(
    State(state): State<AppState>,
    client: crate::client::Client,
    Path((bot, bot_token, method_name)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let Some(token) = bot_token.strip_prefix("bot") else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: expected bot<TOKEN>",
        );
    };
    // Bot API methods are names: nothing else is passed on (no path to walk).
    if method_name.is_empty()
        || method_name.len() > 64
        || !method_name.bytes().all(|b| b.is_ascii_alphanumeric())
    {
        return refusal(StatusCode::NOT_FOUND, "Not Found: not a Bot API method");
    }
    let expected = match settings_of(&state, &bot).await {
        Ok(doc) => doc
            .channels
            .telegram
            .token
            .as_deref()
            .and_then(|sealed| state.vault.open(&bot, TELEGRAM_TOKEN, sealed)),
        Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, &e.0),
    };
    if !expected.is_some_and(|e| bool::from(e.as_bytes().ct_eq(token.as_bytes()))) {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "Unauthorized: not this bot's token (channels.telegram.token in its settings)",
        );
    }
    let http_method = request.method().clone();
    let body = match Bytes::from_request(request, &state).await {
        Ok(b) => b,
        Err(e) => return refusal(StatusCode::PAYLOAD_TOO_LARGE, &e.body_text()),
    };
    let call = Upstream {
        url: format!(
            "{}/bot{token}/{method_name}",
            state.telegram_api.trim_end_matches('/')
        ),
        http_method,
        query,
        content_type: headers.get(header::CONTENT_TYPE).cloned(),
        body,
    };
    let (status, content_type, answer) = match call.send(&state.http).await {
        Ok(a) => a,
        Err(e) => {
            return refusal(StatusCode::BAD_GATEWAY, &super::unreachable(e));
        }
    };
    let files = format!(
        "{}/channels/telegram/{bot}/files",
        crate::outbox::public_base(&state, &headers, client)
    );
    let answer = if method_name.eq_ignore_ascii_case("getUpdates") && status.is_success() {
        match updates(&state, &bot, &files, &call, answer).await {
            Ok(a) => a,
            Err(e) => return refusal(StatusCode::SERVICE_UNAVAILABLE, &e),
        }
    } else {
        let sends = method_name
            .get(..4)
            .is_some_and(|m| m.eq_ignore_ascii_case("send"));
        if status.is_success() && sends {
            record_sent(&state, &bot, &files, &method_name, &call, &answer).await;
        }
        answer
    };
    let mut response = (status, answer).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

/// [`proxy`] for calls made with GET (some frameworks fetch that way).
#[utoipa::path(get, operation_id = "telegram_proxy_get", path = "/channels/telegram/{bot}/api/{bot_token}/{method_name}", tag = "telegram",
    params(("bot" = String, Path, description = "The bot (a slug)"), ("bot_token" = String, Path, description = "`bot` followed by the bot's Bot API token"), ("method_name" = String, Path, description = "A Bot API method")),
    responses((status = 200, description = "Telegram's answer, passed back (getUpdates without Manual users' updates)"), (status = 401, description = "Not the bot's token")))]
pub async fn proxy_get(
    state: State<AppState>,
    client: crate::client::Client,
    path: Path<(String, String, String)>,
    query: RawQuery,
    headers: HeaderMap,
    request: Request,
) -> Response {
    proxy(state, client, path, query, headers, request).await
}

/// The bot's call as it came, to pass on.
struct Upstream {
    url: String,
    http_method: Method,
    query: Option<String>,
    content_type: Option<axum::http::HeaderValue>,
    body: Bytes,
}

impl Upstream {
    async fn send(
        &self,
        http: &reqwest::Client,
    ) -> Result<(StatusCode, Option<axum::http::HeaderValue>, Bytes), reqwest::Error> {
        let url = match &self.query {
            Some(q) => format!("{}?{q}", self.url),
            None => self.url.clone(),
        };
        let mut request = http
            .request(self.http_method.clone(), url)
            .timeout(CALL_TIMEOUT)
            .body(self.body.clone());
        if let Some(ct) = &self.content_type {
            request = request.header(header::CONTENT_TYPE, ct.clone());
        }
        let answer = request.send().await?;
        let status = answer.status();
        let ct = answer.headers().get(header::CONTENT_TYPE).cloned();
        Ok((status, ct, answer.bytes().await?))
    }

    /// The call's parameters, however the framework sent them: query string, JSON,
    /// a form, or multipart (text fields only; files are left out).
    async fn params(&self, state: &AppState) -> Map<String, Value> {
        let mut params = Map::new();
        if let Some(q) = &self.query {
            for (k, v) in form_urlencoded::parse(q.as_bytes()) {
                params.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
        let ct = self
            .content_type
            .as_ref()
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if ct.starts_with("application/json") {
            if let Ok(Value::Object(map)) = serde_json::from_slice(&self.body) {
                params.extend(map);
            }
        } else if ct.starts_with("application/x-www-form-urlencoded") {
            for (k, v) in form_urlencoded::parse(&self.body) {
                params.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        } else if ct.starts_with("multipart/form-data") {
            let request = axum::http::Request::builder()
                .header(header::CONTENT_TYPE, ct)
                .body(axum::body::Body::from(self.body.clone()));
            if let Ok(request) = request
                && let Ok(mut form) = Multipart::from_request(request, state).await
            {
                while let Ok(Some(field)) = form.next_field().await {
                    let (name, is_file) =
                        (field.name().map(str::to_owned), field.file_name().is_some());
                    if let (Some(name), false) = (name, is_file)
                        && let Ok(text) = field.text().await
                    {
                        params.insert(name, Value::String(text));
                    }
                }
            }
        }
        params
    }
}

/// Records the updates of a `getUpdates` answer and removes those of Manual users;
/// asks Telegram again past them when nothing is left.
async fn updates(
    state: &AppState,
    bot: &str,
    files: &str,
    call: &Upstream,
    mut answer: Bytes,
) -> Result<Bytes, String> {
    // One long poll's worth of time for all of it: the bot's own `timeout` (Telegram
    // allows 50 s), after which it gets an empty answer and polls again itself.
    let params = call.params(state).await;
    let timeout = params
        .get("timeout")
        .and_then(|t| {
            t.as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0)
        .min(50);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
    for round in 0..REFETCHES {
        let Some(Updates {
            mut parsed,
            events,
            users,
            last_id,
        }) = read_updates(&answer, bot, files, &state.limits)
        else {
            return Ok(answer);
        };
        if !events.is_empty() {
            let asking = crate::handoff::askers(state, &events).await;
            state.log.append(events).await.map_err(|e| e.to_string())?;
            crate::handoff::flag_soon(state, asking);
        }
        let manual = manual_users(state, bot, &users).await?;
        let mut left = 0;
        if let Some(items) = parsed.get_mut("result").and_then(Value::as_array_mut) {
            let mut i = 0;
            items.retain(|_| {
                let keep = !manual[i];
                i += 1;
                keep
            });
            left = items.len();
        }
        let removed = manual.iter().filter(|m| **m).count();
        if removed > 0 {
            info!(removed, "Manual users' updates kept from the bot");
        }
        if left > 0 || removed == 0 {
            return Ok(Bytes::from(serde_json::to_vec(&parsed).unwrap_or_default()));
        }
        // Everything was removed: ask again past them, with the bot's other parameters
        // and what is left of its time (the last round is not asked: its answer could
        // not be used).
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if round + 1 == REFETCHES {
            break;
        }
        let mut params = params.clone();
        params.insert("offset".to_owned(), json!(last_id + 1));
        params.insert("timeout".to_owned(), json!(left.as_secs()));
        let again = Upstream {
            url: call.url.clone(),
            http_method: Method::POST,
            query: None,
            content_type: Some(axum::http::HeaderValue::from_static("application/json")),
            body: Bytes::from(serde_json::to_vec(&params).unwrap_or_default()),
        };
        match again.send(&state.http).await {
            Ok((status, _, bytes)) if status.is_success() => answer = bytes,
            Ok((status, _, _)) => return Err(format!("Telegram answered {status}")),
            Err(e) => return Err(super::unreachable(e)),
        }
    }
    // Still nothing for the bot: an empty answer, and it polls again.
    Ok(Bytes::from_static(br#"{"ok":true,"result":[]}"#))
}

/// What a `getUpdates` answer holds: the answer parsed, the events its updates make,
/// each item's user (`None` for an item that is no update, or names nobody), and the
/// greatest update id.
pub(crate) struct Updates {
    pub(crate) parsed: Value,
    pub(crate) events: Vec<Event>,
    pub(crate) users: Vec<Option<String>>,
    pub(crate) last_id: i64,
}

/// Reads a `getUpdates` answer; `None` when it holds no updates (it goes to the bot as
/// it came).
pub(crate) fn read_updates(
    answer: &[u8],
    bot: &str,
    files: &str,
    limits: &botwatch_event::Limits,
) -> Option<Updates> {
    let parsed = serde_json::from_slice::<Value>(answer).ok()?;
    let items = parsed.get("result").and_then(Value::as_array)?;
    if items.is_empty() {
        return None;
    }
    let mut events = Vec::new();
    let mut users = Vec::new();
    let mut last_id = i64::MIN;
    for item in items {
        if let Ok(update) = serde_json::from_value::<Update>(item.clone()) {
            last_id = last_id.max(update.update_id);
            events.extend(update.to_event(bot, files, limits));
            users.push(update.user_id());
        } else {
            users.push(None);
        }
    }
    Some(Updates {
        parsed,
        events,
        users,
        last_id,
    })
}

/// For each update's user, whether the dialog is in Manual (one query); an update
/// that names no user is the bot's.
async fn manual_users(
    state: &AppState,
    bot: &str,
    users: &[Option<String>],
) -> Result<Vec<bool>, String> {
    let named: Vec<(String, String)> = users
        .iter()
        .flatten()
        .map(|u| (bot.to_owned(), u.clone()))
        .collect();
    let mut modes = crate::figures::modes(state, named)
        .await
        .map_err(|e| e.message)?
        .into_iter();
    Ok(users
        .iter()
        .map(|u| u.is_some() && modes.next() == Some(Mode::Manual))
        .collect())
}

/// Records a message Telegram took from the bot as outbound.
async fn record_sent(
    state: &AppState,
    bot: &str,
    files: &str,
    method: &str,
    call: &Upstream,
    answer: &[u8],
) {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return;
    };
    let result = &answer["result"];
    let (Some(chat), Some(message_id)) =
        (result["chat"]["id"].as_i64(), result["message_id"].as_i64())
    else {
        return;
    };
    let params = call.params(state).await;
    let text = params
        .get("text")
        .or_else(|| params.get("caption"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| result["text"].as_str().map(str::to_owned))
        .or_else(|| result["caption"].as_str().map(str::to_owned));
    let mut attachments = Vec::new();
    if let Some(photo) = result["photo"].as_array().and_then(|p| p.last()) {
        if let Some(id) = photo["file_id"].as_str() {
            attachments.push(json!({"type": "image", "url": format!("{files}/{id}")}));
        }
    } else if let Some(id) = result["document"]["file_id"].as_str() {
        let name = result["document"]["file_name"].as_str();
        attachments.push(json!({"type": "file", "url": format!("{files}/{id}"), "name": name}));
    }
    if let Some(markup) = params.get("reply_markup") {
        let markup: Value = match markup {
            Value::String(s) => serde_json::from_str(s).unwrap_or(Value::Null),
            other => other.clone(),
        };
        let buttons: Vec<Value> = markup["inline_keyboard"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|row| row.as_array().cloned().unwrap_or_default())
            .filter_map(|b| {
                Some(json!({"title": b["text"].as_str()?, "payload": b["callback_data"], "url": b["url"]}))
            })
            .collect();
        if !buttons.is_empty() {
            let title = text
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "Buttons".to_owned());
            attachments.push(json!({"type": "card", "title": title, "buttons": buttons}));
        }
    }
    let raw = json!({
        "id": format!("tgout-{chat}-{message_id}"),
        "bot": bot,
        "type": "message",
        "direction": "out",
        "provider": super::PROVIDER,
        "user": {"id": chat.to_string()},
        "text": text,
        "attachments": attachments,
        "sender": {"kind": "bot"},
    });
    let raw = super::update::strip_nulls(raw);
    match botwatch_event::parse_event_value(raw, 0, chrono::Utc::now(), &state.limits) {
        Ok(event) => append(state, event, method).await,
        Err(faults) => warn!(
            method,
            ?faults,
            "a message the bot sent does not make an event"
        ),
    }
}

async fn append(state: &AppState, event: Event, method: &str) {
    if let Err(e) = state.log.append(vec![event]).await {
        warn!(method, error = %e, "a message the bot sent was not recorded");
    }
}
