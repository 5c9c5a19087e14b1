//! Operator messages out through the Bot API: `sendMessage` (text; a card without an
//! image, its buttons as an inline keyboard), `sendPhoto` (a picture, or a card with
//! an image: caption and keyboard) and `sendDocument` (any other file).
//!
//! Telegram's answers are obeyed: `429` waits `parameters.retry_after` seconds (as
//! long as the whole delivery stays within [`GIVE_UP_AFTER`]); a call that could not
//! connect is tried again after 1, 2, 4 s; any other refusal ends it with Telegram's
//! own words (`Forbidden: bot was blocked by the user`). A 5xx or a call that went out
//! without an answer is not tried again — Telegram may have sent the message, and a
//! second call could send it twice — and fails saying so.

use std::time::Duration;

use botwatch_event::{Attachment, Button, Card, Media};
use serde::Deserialize;
use serde_json::{Value, json};
use tracing::{info, warn};

use crate::AppState;
use crate::channels::{Channel, Outgoing, Undelivered};

/// A delivery that has not succeeded in this time fails.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(120);
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Tries of a call that could not connect (nothing was sent): 1, 2, 4 s apart.
const CONNECT_ATTEMPTS: u32 = 4;
/// Bot API limits: message text and captions, in characters; callback data in bytes.
const TEXT_CHARS: usize = 4096;
const CAPTION_CHARS: usize = 1024;
const CALLBACK_BYTES: usize = 64;

/// Sends as one bot: the Bot API's base address and the bot's token.
pub struct TelegramSender {
    api: String,
    token: String,
}

/// The Bot API's answer (https://core.telegram.org/bots/api#making-requests).
#[derive(Debug, Deserialize)]
struct Answer {
    ok: bool,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Parameters>,
}

#[derive(Debug, Deserialize)]
struct Parameters {
    #[serde(default)]
    retry_after: Option<u64>,
}

/// One Bot API call to make: the method and what it is given.
enum Call {
    Json(&'static str, Value),
    /// A multipart upload: the method, its plain fields, the file field's name and the
    /// file (name, type, bytes).
    Upload(
        &'static str,
        Vec<(&'static str, String)>,
        &'static str,
        Media,
        Vec<u8>,
    ),
}

impl TelegramSender {
    pub fn new(api: String, token: String) -> TelegramSender {
        TelegramSender { api, token }
    }

    fn url(&self, method: &str) -> String {
        format!(
            "{}/bot{}/{method}",
            self.api.trim_end_matches('/'),
            self.token
        )
    }

    /// The calls that deliver `message` to chat `chat`, in order.
    fn calls(chat: &str, message: &Outgoing) -> Result<Vec<Call>, Undelivered> {
        let mut calls = Vec::new();
        let text = message
            .event
            .text
            .as_deref()
            .filter(|t| !t.trim().is_empty());
        if let Some((media, stored)) = &message.file {
            let caption = text.map(|t| clip(t, CAPTION_CHARS));
            let is_image = message
                .event
                .attachments
                .iter()
                .any(|a| matches!(a, Attachment::Image(_)));
            // sendPhoto takes the photo formats only; any other file is a document.
            let photo = matches!(
                stored.mime.as_str(),
                "image/jpeg" | "image/png" | "image/webp"
            );
            let (method, field) = if is_image && photo {
                ("sendPhoto", "photo")
            } else {
                ("sendDocument", "document")
            };
            let mut fields = vec![("chat_id", chat.to_owned())];
            fields.extend(caption.map(|c| ("caption", c)));
            let media = Media {
                name: media.name.clone().or_else(|| Some(stored.name.clone())),
                mime: Some(stored.mime.clone()),
                ..media.clone()
            };
            calls.push(Call::Upload(
                method,
                fields,
                field,
                media,
                stored.bytes.clone(),
            ));
        } else if let Some(text) = text {
            calls.push(Call::Json(
                "sendMessage",
                json!({"chat_id": chat, "text": clip(text, TEXT_CHARS)}),
            ));
        }
        if let Some(card) = &message.card {
            calls.push(card_call(chat, card)?);
        }
        if calls.is_empty() {
            return Err(Undelivered("nothing to send".to_owned()));
        }
        Ok(calls)
    }

    /// Makes one call, obeying Telegram's `retry_after` and trying again on 5xx, until
    /// `deadline`.
    async fn call(
        &self,
        http: &reqwest::Client,
        call: &Call,
        deadline: tokio::time::Instant,
    ) -> Result<(), Undelivered> {
        let method = match call {
            Call::Json(m, _) | Call::Upload(m, ..) => *m,
        };
        let mut connect_errors = 0;
        let mut wait = Duration::from_secs(1);
        loop {
            let request = match call {
                Call::Json(m, body) => http.post(self.url(m)).json(body),
                Call::Upload(m, fields, field, media, bytes) => {
                    let mut form = reqwest::multipart::Form::new();
                    for (name, value) in fields {
                        form = form.text(*name, value.clone());
                    }
                    let mut part = reqwest::multipart::Part::bytes(bytes.clone())
                        .file_name(media.name.clone().unwrap_or_else(|| "file".to_owned()));
                    if let Some(mime) = &media.mime {
                        part = part
                            .mime_str(mime)
                            .map_err(|e| Undelivered(format!("bad file type {mime}: {e}")))?;
                    }
                    http.post(self.url(m)).multipart(form.part(*field, part))
                }
            };
            let sent = request.timeout(CALL_TIMEOUT).send().await;
            let retry_in = match sent {
                Ok(response) => {
                    let status = response.status();
                    let answer: Option<Answer> = response.json().await.ok();
                    match answer {
                        Some(a) if a.ok && status.is_success() => {
                            info!(method, "sent through Telegram");
                            return Ok(());
                        }
                        _ if status.as_u16() == 429 => {
                            let after = answer
                                .as_ref()
                                .and_then(|a| a.parameters.as_ref())
                                .and_then(|p| p.retry_after)
                                .unwrap_or(1);
                            warn!(method, retry_after = after, "Telegram asks to slow down");
                            Duration::from_secs(after.max(1))
                        }
                        // Telegram may have sent it before failing: trying again could
                        // send it twice, so it is not tried again.
                        _ if status.is_server_error() => {
                            return Err(Undelivered(format!(
                                "Telegram failed ({status}); it may or may not have reached the user"
                            )));
                        }
                        a => {
                            let said = a
                                .and_then(|a| a.description)
                                .unwrap_or_else(|| status.to_string());
                            return Err(Undelivered(format!("Telegram refused it: {said}")));
                        }
                    }
                }
                // Not connected: nothing was sent, so it is tried again.
                Err(e) if e.is_connect() => {
                    connect_errors += 1;
                    if connect_errors >= CONNECT_ATTEMPTS {
                        return Err(Undelivered(super::unreachable(e)));
                    }
                    wait *= 2;
                    wait / 2
                }
                // Sent, but no answer (a timeout, a broken connection): it may have
                // reached the user, so it is not sent again.
                Err(e) => {
                    return Err(Undelivered(format!(
                        "{}; it may or may not have reached the user",
                        super::unreachable(e)
                    )));
                }
            };
            if tokio::time::Instant::now() + retry_in > deadline {
                return Err(Undelivered(format!(
                    "Telegram did not take it within {} s",
                    GIVE_UP_AFTER.as_secs()
                )));
            }
            tokio::time::sleep(retry_in).await;
        }
    }
}

impl Channel for TelegramSender {
    async fn deliver(&self, state: &AppState, message: &Outgoing) -> Result<(), Undelivered> {
        let deadline = tokio::time::Instant::now() + GIVE_UP_AFTER;
        for call in Self::calls(&message.event.user.id, message)? {
            self.call(&state.http, &call, deadline).await?;
        }
        Ok(())
    }
}

/// A card: `sendPhoto` with caption and keyboard when it has an image, else a message
/// with the keyboard.
fn card_call(chat: &str, card: &Card) -> Result<Call, Undelivered> {
    let mut text = card.title.clone();
    if let Some(sub) = card.subtitle.as_deref().filter(|s| !s.is_empty()) {
        text.push('\n');
        text.push_str(sub);
    }
    let keyboard = keyboard(&card.buttons)?;
    let mut body = match &card.image {
        Some(image) => {
            json!({"chat_id": chat, "photo": image, "caption": clip(&text, CAPTION_CHARS)})
        }
        None => json!({"chat_id": chat, "text": clip(&text, TEXT_CHARS)}),
    };
    if let Some(k) = keyboard {
        body["reply_markup"] = k;
    }
    Ok(Call::Json(
        if card.image.is_some() {
            "sendPhoto"
        } else {
            "sendMessage"
        },
        body,
    ))
}

/// An inline keyboard, a button per row: a link button for a button with `url`, else a
/// callback button whose data is the payload (or the title).
fn keyboard(buttons: &[Button]) -> Result<Option<Value>, Undelivered> {
    if buttons.is_empty() {
        return Ok(None);
    }
    let rows = buttons
        .iter()
        .map(|b| match &b.url {
            Some(url) => Ok(json!([{"text": b.title, "url": url}])),
            None => {
                let data = b.payload.as_deref().unwrap_or(&b.title);
                if data.len() > CALLBACK_BYTES {
                    return Err(Undelivered(format!(
                        "the button {:?} carries {} bytes; Telegram takes at most {CALLBACK_BYTES}",
                        b.title,
                        data.len()
                    )));
                }
                Ok(json!([{"text": b.title, "callback_data": data}]))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(json!({ "inline_keyboard": rows })))
}

fn clip(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}
