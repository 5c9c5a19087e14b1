//! The web chat botwatch serves itself, so the whole loop (a user, the bot, an
//! operator taking over) can be tried in two browser tabs.
//!
//! - `GET /chat/{bot}`: the page (`page.html`, `chat.js`, `chat.css`, embedded), only
//!   for a bot whose settings enable it (`channels.webchat.enabled`).
//! - `GET /chat/{bot}/live?user=wc-<32 hex>&name=…`: the user's WebSocket. The user id
//!   is made by the page at random and kept in the browser: knowing it is what lets
//!   one read the dialog, and the `wc-` shape keeps it apart from other providers' ids.
//!   The socket first sends the dialog's latest messages (`{"messages":[…]}`), then
//!   every new one (`{"message":…}`, from the dialog's live topic, so what is written
//!   on any node arrives). The user sends `{"text":…}` (at most 4,096 characters,
//!   five a second).
//! - What the user writes is recorded as an inbound `message` (provider `webchat`) and,
//!   while the dialog is in Auto, POSTed to the bot's `webhook_url`, signed like
//!   `mode_changed`: `{"type":"message","bot","user":{"id","name"},"provider":"webchat",
//!   "id","text","ts"}`. The bot answers through the ingest API like any bot
//!   (`direction: out`, `provider: webchat`, that user's id). In Manual it is not sent.
//! - An operator's message is delivered once it is stored: the user reads the dialog
//!   from botwatch.

use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use botwatch_event::{Event, Mode};
use botwatch_log::EventLog;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tracing::{Instrument, info, info_span, warn};

use super::{Channel, Outgoing, Undelivered};
use crate::AppState;
use crate::error::{ApiError, Query};
use crate::history::Message;

/// The provider name of web chat users.
pub const PROVIDER: &str = "webchat";
/// The messages a user sees when the chat opens.
const LATEST: usize = 50;
const MAX_TEXT_CHARS: usize = 4096;
/// At most this many messages a second from one chat.
const MESSAGES_PER_SECOND: u32 = 5;
/// At most this many chats open at once from one address (a flood from one place
/// never takes the node's whole pool).
pub const CHATS_PER_ADDRESS: usize = 20;

type OpenChats = std::collections::HashMap<std::net::IpAddr, usize>;

/// The chats open on this node, per client address.
#[derive(Default)]
pub struct ChatsPerAddress(std::sync::Mutex<OpenChats>);

/// One open chat of an address; closing it (dropping this) gives its place back.
pub struct ChatPlace {
    chats: std::sync::Arc<ChatsPerAddress>,
    addr: std::net::IpAddr,
}

impl ChatsPerAddress {
    fn lock(&self) -> std::sync::MutexGuard<'_, OpenChats> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for one more chat from `addr`, unless it has as many as it may.
    pub fn take(chats: &std::sync::Arc<Self>, addr: std::net::IpAddr) -> Option<ChatPlace> {
        let mut open = chats.lock();
        let n = open.entry(addr).or_default();
        if *n >= CHATS_PER_ADDRESS {
            return None;
        }
        *n += 1;
        Some(ChatPlace {
            chats: chats.clone(),
            addr,
        })
    }
}

impl Drop for ChatPlace {
    fn drop(&mut self) {
        let mut open = self.chats.lock();
        if let Some(n) = open.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.addr);
            }
        }
    }
}

const PAGE: &str = include_str!("page.html");
const SCRIPT: &str = include_str!("chat.js");
const STYLE: &str = include_str!("chat.css");

pub struct WebChatChannel;

impl Channel for WebChatChannel {
    async fn deliver(&self, _state: &AppState, _message: &Outgoing) -> Result<(), Undelivered> {
        Ok(())
    }
}

/// Whether `bot` has the web chat on; 404 otherwise.
async fn enabled(state: &AppState, bot: &str) -> Result<(), ApiError> {
    let doc = super::settings_of(state, bot)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.0))?;
    if doc.channels.webchat.enabled {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("bot {bot:?} has no web chat (channels.webchat.enabled in its settings)"),
        ))
    }
}

#[tracing::instrument(name = "webchat.page", skip(state))]
#[utoipa::path(get, operation_id = "webchat_page", path = "/chat/{bot}", tag = "webchat",
    params(("bot" = String, Path, description = "The bot (a slug)")),
    responses((status = 200, description = "The chat page", content_type = "text/html"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn page(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Response, ApiError> {
    enabled(&state, &bot).await?;
    Ok(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response())
}

#[utoipa::path(get, operation_id = "webchat_asset", path = "/chat/assets/{file}", tag = "webchat",
    params(("file" = String, Path, description = "chat.js or chat.css")),
    responses((status = 200, description = "The page's script or style"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn asset(Path(file): Path<String>) -> Result<Response, ApiError> {
    let (body, mime) = match file.as_str() {
        "chat.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "chat.css" => (STYLE, "text/css; charset=utf-8"),
        _ => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such file",
            ));
        }
    };
    Ok((
        [
            (header::CONTENT_TYPE, mime),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChatQuery {
    /// `wc-` and 32 hex digits, made by the page.
    #[param(pattern = "^wc-[0-9a-fA-F]{32}$")]
    user: String,
    /// The name the user goes by (at most 64 characters).
    name: Option<String>,
}

#[tracing::instrument(name = "webchat.live", skip(state, client, headers, ws, query))]
#[utoipa::path(get, operation_id = "webchat_live", path = "/chat/{bot}/live", tag = "webchat",
    params(("bot" = String, Path, description = "The bot (a slug)"), ChatQuery, crate::openapi::rules::UpgradeHeaders),
    responses((status = 101, description = "The chat's WebSocket"), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn live(
    State(state): State<AppState>,
    client: crate::client::Client,
    Path(bot): Path<String>,
    Query(query): Query<ChatQuery>,
    headers: HeaderMap,
    crate::live::Upgrade(ws): crate::live::Upgrade,
) -> Result<Response, ApiError> {
    enabled(&state, &bot).await?;
    crate::live::check_origin(&state, &headers)?;
    let user = query.user;
    let id_ok = user
        .strip_prefix("wc-")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if !id_ok {
        return Err(ApiError::bad_parameter("user", "wc- and 32 hex digits"));
    }
    let name = query
        .name
        .map(|n| {
            n.chars()
                .filter(|c| !c.is_control())
                .take(64)
                .collect::<String>()
        })
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| format!("Guest {}", &user[user.len() - 4..]));
    let Some(place) = ChatsPerAddress::take(&state.chats_per_address, client.addr) else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_chats",
            format!("at most {CHATS_PER_ADDRESS} chats at once from one address"),
        ));
    };
    // Their own pool: anonymous chats never take the dashboards' live connections.
    let Ok(slot) = state.chat_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this node holds as many web chats as it may",
        ));
    };
    let span = info_span!("webchat.connection", bot, user);
    Ok(ws.max_message_size(64 * 1024).on_upgrade(move |socket| {
        async move {
            Chat {
                state,
                bot,
                user,
                name,
            }
            .run(socket)
            .await;
            drop(slot);
            drop(place);
        }
        .instrument(span)
    }))
}

struct Chat {
    state: AppState,
    bot: String,
    user: String,
    name: String,
}

impl Chat {
    async fn run(self, mut socket: WebSocket) {
        let topic = format!("bot/{}/dialog/{}", self.bot, self.user);
        let mut frames = self.state.hub.attach(&topic, None).frames;
        if self.send_latest(&mut socket).await.is_err() {
            return;
        }
        let mut sent_at = tokio::time::Instant::now();
        let mut budget = MESSAGES_PER_SECOND;
        let stop = self.state.live_stop.clone();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                frame = frames.recv() => match frame {
                    Ok(frame) => {
                        if let Some(message) = message_of(&frame.text())
                            && socket.send(WsMessage::Text(json!({"message": message}).to_string().into())).await.is_err()
                        {
                            return;
                        }
                    }
                    // Behind: the latest messages again (the page keeps each once).
                    Err(RecvError::Lagged(_)) => {
                        if self.send_latest(&mut socket).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Closed) => return,
                },
                incoming = socket.recv() => {
                    let text = match incoming {
                        Some(Ok(WsMessage::Text(t))) => t,
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                        Some(Ok(_)) => continue,
                    };
                    if sent_at.elapsed() >= Duration::from_secs(1) {
                        sent_at = tokio::time::Instant::now();
                        budget = MESSAGES_PER_SECOND;
                    }
                    if budget == 0 {
                        let _ = socket.send(WsMessage::Text(json!({"error": "slow down: at most 5 messages a second"}).to_string().into())).await;
                        continue;
                    }
                    budget -= 1;
                    if let Err(e) = self.take(text.as_str()).await {
                        let _ = socket.send(WsMessage::Text(json!({"error": e}).to_string().into())).await;
                    }
                }
            }
        }
    }

    /// The dialog's latest messages, oldest first.
    async fn send_latest(&self, socket: &mut WebSocket) -> Result<(), ()> {
        let page = self
            .state
            .log
            .history(&self.bot, &self.user, None, LATEST)
            .await
            .map_err(|e| warn!(error = %e, "cannot read the chat's history"))?;
        let mut messages: Vec<Value> = page
            .entries
            .into_iter()
            .map(|e| as_seen(serde_json::to_value(Message::from(e.event)).unwrap_or_default()))
            .collect();
        messages.reverse();
        socket
            .send(WsMessage::Text(
                json!({ "messages": messages }).to_string().into(),
            ))
            .await
            .map_err(|_| ())
    }

    /// Records what the user wrote and, in Auto, hands it to the bot.
    async fn take(&self, text: &str) -> Result<(), String> {
        #[derive(Deserialize)]
        struct Said {
            text: String,
        }
        let said: Said =
            serde_json::from_str(text).map_err(|_| r#"expected {"text": "…"}"#.to_owned())?;
        let text = said.text.trim();
        if text.is_empty() || text.chars().count() > MAX_TEXT_CHARS {
            return Err(format!("a message has 1 to {MAX_TEXT_CHARS} characters"));
        }
        let raw = json!({
            "id": format!("wc-{}", uuid::Uuid::now_v7().simple()),
            "bot": self.bot, "type": "message", "direction": "in", "provider": PROVIDER,
            "user": {"id": self.user, "name": self.name}, "text": text,
        });
        let event =
            botwatch_event::parse_event_value(raw, 0, chrono::Utc::now(), &self.state.limits)
                .map_err(|f| format!("{f:?}"))?;
        let asking = crate::handoff::askers(&self.state, std::slice::from_ref(&event)).await;
        self.state
            .log
            .append(vec![event.clone()])
            .await
            .map_err(|e| format!("not recorded: {e}"))?;
        crate::handoff::flag_soon(&self.state, asking);
        let mode = crate::figures::mode_of(&self.state, &self.bot, &self.user)
            .await
            .unwrap_or(Mode::Auto);
        if mode == Mode::Auto {
            hand_to_bot(&self.state, event);
        } else {
            info!("held back from the bot: the dialog is in Manual");
        }
        Ok(())
    }
}

/// POSTs what a chat user wrote to the bot's webhook, in the background.
fn hand_to_bot(state: &AppState, event: Event) {
    let body = json!({
        "type": "message", "bot": event.bot, "provider": PROVIDER, "id": event.id,
        "user": {"id": event.user.id, "name": event.user.name},
        "text": event.text, "ts": crate::figures::rfc3339(event.ts_millis()),
    });
    crate::webhook::notify(state, &event.bot, "message", body);
}

/// The message of a dialog topic's frame, if it carries one, as a chat user sees it.
fn message_of(frame: &[u8]) -> Option<Value> {
    let mut v: Value = serde_json::from_slice(frame).ok()?;
    let message = v.get_mut("data")?.get_mut("message")?.take();
    (!message.is_null()).then(|| as_seen(message))
}

/// A message as a chat user sees it: who wrote (bot or operator), not the operator's
/// account.
fn as_seen(mut message: Value) -> Value {
    if let Some(sender) = message.get_mut("sender").and_then(Value::as_object_mut) {
        sender.remove("id");
    }
    message
}
