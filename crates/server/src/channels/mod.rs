//! How an operator's message reaches a user: one [`Channel`] per way botwatch
//! delivers, each in its own module.
//!
//! - [`telegram`]: botwatch calls the Bot API itself (and takes Telegram's webhook and
//!   the bot's Bot API calls in, through its proxy);
//! - [`webhook`]: any other provider: the message is POSTed to the bot's `webhook_url`
//!   as `operator_message`, for the bot to deliver;
//! - [`webchat`]: the chat page botwatch serves itself.
//!
//! A channel delivers or says why not ([`Undelivered`]); trying again within its
//! provider's rules (Telegram's `retry_after`, a webhook's 5xx) is the channel's own
//! business, bounded in time. Whether a message goes out at all, and only once, is
//! the outbox's (`crate::outbox`).

pub mod telegram;
pub mod webchat;
pub mod webhook;

use std::future::Future;

use botwatch_event::{Attachment, Card, Event, Media};
use botwatch_log::{FileStore, SettingsStore, StoredFile};

use crate::AppState;
use crate::settings::{SettingsDoc, TELEGRAM_TOKEN};

/// Why a message did not reach the user, in words an operator can act on (shown on
/// the message in the dialog view).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Undelivered(pub String);

/// One way to a user.
pub trait Channel: Send + Sync {
    /// Delivers `message` (an operator's outbound message event) to its user.
    fn deliver(
        &self,
        state: &AppState,
        message: &Outgoing,
    ) -> impl Future<Output = Result<(), Undelivered>> + Send;
}

/// An operator message as channels send it: the event (its text), its card, and its
/// file with the bytes read from botwatch's storage.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub event: Event,
    pub card: Option<Card>,
    pub file: Option<(Media, StoredFile)>,
}

impl Outgoing {
    /// What `event` asks to send, with the bytes of a file botwatch keeps.
    pub async fn of(state: &AppState, event: Event) -> Result<Outgoing, Undelivered> {
        let mut card = None;
        let mut file = None;
        for a in &event.attachments {
            match a {
                Attachment::Card(c) => card = Some(c.clone()),
                Attachment::File(m) | Attachment::Image(m) => {
                    let id = crate::outbox::file_id(&m.url).ok_or_else(|| {
                        Undelivered(format!("{} is not a file botwatch keeps", m.url))
                    })?;
                    let stored = state
                        .log
                        .file(id)
                        .await
                        .map_err(|e| Undelivered(format!("cannot read the file: {e}")))?
                        .ok_or_else(|| Undelivered("the file is no longer stored".to_owned()))?;
                    file = Some((m.clone(), stored));
                }
                _ => {}
            }
        }
        Ok(Outgoing { event, card, file })
    }
}

/// The channels botwatch can deliver through.
pub enum AnyChannel {
    Telegram(telegram::TelegramSender),
    Webhook(webhook::WebhookChannel),
    WebChat(webchat::WebChatChannel),
}

impl Channel for AnyChannel {
    async fn deliver(&self, state: &AppState, message: &Outgoing) -> Result<(), Undelivered> {
        match self {
            AnyChannel::Telegram(c) => c.deliver(state, message).await,
            AnyChannel::Webhook(c) => c.deliver(state, message).await,
            AnyChannel::WebChat(c) => c.deliver(state, message).await,
        }
    }
}

/// The channel to `bot`'s users on `provider`, by the bot's settings: Telegram with a
/// token, the web chat, else the bot's webhook; `Err` names what is missing.
pub async fn channel_for(
    state: &AppState,
    bot: &str,
    provider: &str,
) -> Result<AnyChannel, Undelivered> {
    let doc = settings_of(state, bot).await?;
    if provider == webchat::PROVIDER {
        if !doc.channels.webchat.enabled {
            return Err(Undelivered(
                "the bot's web chat is off (channels.webchat.enabled in Settings): nobody can \
                 read the message there"
                    .to_owned(),
            ));
        }
        return Ok(AnyChannel::WebChat(webchat::WebChatChannel));
    }
    if provider == telegram::PROVIDER
        && let Some(sealed) = doc.channels.telegram.token.as_deref()
    {
        let token = state
            .vault
            .open(bot, TELEGRAM_TOKEN, sealed)
            .ok_or_else(|| {
                Undelivered(
                    "the Telegram token cannot be opened (was BOTWATCH_SECRET_KEY changed?)"
                        .to_owned(),
                )
            })?;
        return Ok(AnyChannel::Telegram(telegram::TelegramSender::new(
            state.telegram_api.clone(),
            token,
        )));
    }
    match webhook::WebhookChannel::of(state, bot, &doc) {
        Some(channel) => Ok(AnyChannel::Webhook(channel)),
        None => Err(Undelivered(format!(
            "botwatch does not deliver to {provider} itself{} and the bot has no webhook_url \
             to hand the message to (Settings)",
            if provider == telegram::PROVIDER {
                " without a Telegram token"
            } else {
                ""
            }
        ))),
    }
}

/// A bot's settings (the defaults when it has none).
pub async fn settings_of(state: &AppState, bot: &str) -> Result<SettingsDoc, Undelivered> {
    match state.log.settings(bot).await {
        Ok(Some(json)) => Ok(SettingsDoc::parse(&json).unwrap_or_default()),
        Ok(None) => Ok(SettingsDoc::default()),
        Err(e) => Err(Undelivered(format!("cannot read the bot's settings: {e}"))),
    }
}
