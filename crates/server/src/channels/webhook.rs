//! Any provider botwatch does not talk to itself: the operator's message is POSTed to
//! the bot's `webhook_url` as `{"type":"operator_message", …}`, signed like
//! `mode_changed` (see `crate::webhook`), and the bot delivers it. The bot's 2xx
//! answer means delivered; a file is given by its address, which the bot fetches.

use botwatch_event::Sender;

use super::{Channel, Outgoing, Undelivered};
use crate::AppState;
use crate::settings::SettingsDoc;
use crate::webhook::Webhook;

pub struct WebhookChannel(Webhook);

impl WebhookChannel {
    pub fn of(state: &AppState, bot: &str, doc: &SettingsDoc) -> Option<WebhookChannel> {
        Webhook::of(state, bot, doc).map(WebhookChannel)
    }
}

impl Channel for WebhookChannel {
    async fn deliver(&self, state: &AppState, message: &Outgoing) -> Result<(), Undelivered> {
        let e = &message.event;
        let operator = match &e.sender {
            Some(Sender::Operator { id }) => Some(id.as_str()),
            _ => None,
        };
        let body = serde_json::json!({
            "type": "operator_message",
            "bot": e.bot,
            "user": e.user.id,
            "provider": e.provider,
            "id": e.id,
            "text": e.text,
            "attachments": e.attachments,
            "operator": operator,
            "ts": crate::figures::rfc3339(e.ts_millis()),
        });
        self.0.call(&state.http, &body).await.map_err(Undelivered)
    }
}
