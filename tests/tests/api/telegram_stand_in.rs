//! A stand-in for Telegram's Bot API on 127.0.0.1: it records every call (method,
//! JSON fields or multipart fields and files) and answers as a test scripts it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::{FromRequest, Multipart, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

pub const TOKEN: &str = "123456:TEST-stand-in-token_abc";

/// One call the stand-in received.
#[derive(Debug, Clone)]
pub struct Call {
    pub token: String,
    pub method: String,
    /// The JSON body, or the multipart text fields as an object.
    pub fields: Value,
    /// Multipart files: (field, file name, type, bytes).
    pub files: Vec<(String, String, String, Vec<u8>)>,
}

/// An answer the test wants given to the next call of a method.
pub type Scripted = (String, u16, Value);

#[derive(Clone, Default)]
pub struct StandIn {
    calls: Arc<Mutex<Vec<Call>>>,
    script: Arc<Mutex<VecDeque<Scripted>>>,
    /// Every update offered; `getUpdates` returns those at or after its `offset`.
    updates: Arc<Mutex<Vec<Value>>>,
    sent: Arc<Mutex<i64>>,
    /// Chats whose messages are refused, with the refusal.
    refused: Arc<Mutex<std::collections::HashMap<String, (u16, Value)>>>,
}

impl StandIn {
    /// Starts one; its base address is what `BOTWATCH_TELEGRAM_API` is set to.
    pub async fn start() -> (String, StandIn) {
        let stand_in = StandIn::default();
        let app = axum::Router::new()
            .route("/{bot_token}/{method}", post(answer).get(answer))
            .with_state(stand_in.clone());
        let url = super::serve_stand_in(app).await;
        (url, stand_in)
    }

    /// The next call of `method` gets `status` with `body`.
    pub fn script(&self, method: &str, status: u16, body: Value) {
        self.script
            .lock()
            .expect("script")
            .push_back((method.to_owned(), status, body));
    }

    /// Every `send*` to `chat` gets `status` with `body`.
    pub fn refuse_chat(&self, chat: &str, status: u16, body: Value) {
        self.refused
            .lock()
            .expect("refused")
            .insert(chat.to_owned(), (status, body));
    }

    /// The chats `send*` calls went to, in order.
    pub fn chats_sent_to(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.method.starts_with("send"))
            .map(|c| match &c.fields["chat_id"] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect()
    }

    /// Offers an update to the bot (through `getUpdates`).
    pub fn offer(&self, update: Value) {
        self.updates.lock().expect("updates").push(update);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("calls").clone()
    }

    pub fn calls_of(&self, method: &str) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| c.method == method)
            .collect()
    }
}

async fn answer(
    State(stand_in): State<StandIn>,
    Path((bot_token, method)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(token) = bot_token.strip_prefix("bot") else {
        return (StatusCode::NOT_FOUND, "no such path").into_response();
    };
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut fields = serde_json::Map::new();
    let mut files = Vec::new();
    if multipart {
        let mut form = Multipart::from_request(request, &())
            .await
            .expect("multipart");
        while let Some(field) = form.next_field().await.expect("field") {
            let name = field.name().unwrap_or_default().to_owned();
            match field.file_name().map(str::to_owned) {
                Some(file_name) => {
                    let mime = field.content_type().unwrap_or_default().to_owned();
                    let bytes = field.bytes().await.expect("bytes").to_vec();
                    files.push((name, file_name, mime, bytes));
                }
                None => {
                    let text = field.text().await.expect("text");
                    fields.insert(name, Value::String(text));
                }
            }
        }
    } else {
        let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
            .await
            .expect("body");
        if let Ok(Value::Object(map)) = serde_json::from_slice(&bytes) {
            fields = map;
        } else {
            for (k, v) in form_urlencoded::parse(&bytes) {
                fields.insert(k.into_owned(), Value::String(v.into_owned()));
            }
        }
    }
    stand_in.calls.lock().expect("calls").push(Call {
        token: token.to_owned(),
        method: method.clone(),
        fields: Value::Object(fields),
        files,
    });
    if token != TOKEN {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"ok": false, "error_code": 401, "description": "Unauthorized"})),
        )
            .into_response();
    }
    let scripted = {
        let mut script = stand_in.script.lock().expect("script");
        let at = script.iter().position(|(m, _, _)| *m == method);
        at.and_then(|i| script.remove(i))
    };
    let chat = stand_in
        .calls
        .lock()
        .expect("calls")
        .last()
        .map(|c| match &c.fields["chat_id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
    let refused = chat.and_then(|c| stand_in.refused.lock().expect("refused").get(&c).cloned());
    if let Some((status, body)) = refused.filter(|_| method.starts_with("send")) {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(body)).into_response();
    }
    if let Some((_, status, body)) = scripted {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, axum::Json(body)).into_response();
    }
    let call = stand_in.calls.lock().expect("calls").last().cloned();
    let fields = call.map(|c| c.fields).unwrap_or_default();
    let number = |v: &Value| {
        v.as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let result = match method.as_str() {
        "getUpdates" => {
            let offset = number(&fields["offset"]).unwrap_or(0);
            let pending: Vec<Value> = stand_in
                .updates
                .lock()
                .expect("updates")
                .iter()
                .filter(|u| u["update_id"].as_i64().is_some_and(|id| id >= offset))
                .cloned()
                .collect();
            if pending.is_empty() {
                // A short long poll.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Value::Array(pending)
        }
        "getMe" => json!({"id": 123456, "is_bot": true, "first_name": "Stand-in",
                          "username": "stand_in_bot", "can_join_groups": true,
                          "can_read_all_group_messages": false, "supports_inline_queries": false}),
        m if m.starts_with("send") => {
            let message_id = {
                let mut sent = stand_in.sent.lock().expect("sent");
                *sent += 1;
                *sent
            };
            let chat = number(&fields["chat_id"]).unwrap_or(0);
            let mut message = json!({"message_id": message_id, "date": chrono::Utc::now().timestamp(),
                                     "chat": {"id": chat, "type": "private"}});
            if let Some(text) = fields.get("text") {
                message["text"] = text.clone();
            }
            message
        }
        _ => json!(true),
    };
    axum::Json(json!({"ok": true, "result": result})).into_response()
}
