//! Telegram updates as botwatch events: a message (text or caption, photo, document)
//! or a button press (`callback_query`, its data as the text) becomes an inbound
//! `message` event of the user who sent it. Other updates are passed on, not recorded.
//!
//! Each event's id is `tg-{update_id}`: an update Telegram offers again (a webhook it
//! retries, a `getUpdates` answer read twice) is recorded once.

use botwatch_event::{Attachment, Event, Limits, Media};
use serde::Deserialize;
use serde_json::{Value, json};

use super::PROVIDER;

/// The parts of an update (https://core.telegram.org/bots/api#update) botwatch reads.
#[derive(Debug, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    message: Option<TgMessage>,
    #[serde(default)]
    edited_message: Option<TgMessage>,
    #[serde(default)]
    callback_query: Option<CallbackQuery>,
}

#[derive(Debug, Deserialize)]
struct TgMessage {
    #[serde(default)]
    from: Option<TgUser>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    caption: Option<String>,
    #[serde(default)]
    photo: Vec<PhotoSize>,
    #[serde(default)]
    document: Option<Document>,
    #[serde(default)]
    date: Option<i64>,
}

#[derive(Debug, Deserialize)]
struct TgUser {
    id: i64,
    #[serde(default)]
    first_name: Option<String>,
    #[serde(default)]
    last_name: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    language_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct PhotoSize {
    file_id: String,
    #[serde(default)]
    file_size: Option<u64>,
    #[serde(default)]
    width: u32,
}

#[derive(Debug, Deserialize)]
struct Document {
    file_id: String,
    #[serde(default)]
    file_name: Option<String>,
    #[serde(default)]
    mime_type: Option<String>,
    #[serde(default)]
    file_size: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    from: TgUser,
    #[serde(default)]
    data: Option<String>,
}

impl Update {
    /// The user the update is from (whose mode decides whether the bot sees it).
    pub fn user_id(&self) -> Option<String> {
        let from = match (&self.message, &self.edited_message, &self.callback_query) {
            (Some(m), _, _) | (None, Some(m), _) => m.from.as_ref(),
            (None, None, Some(q)) => Some(&q.from),
            _ => None,
        };
        from.map(|u| u.id.to_string())
    }

    /// The inbound event of `bot` this update is, if it is one botwatch records; file
    /// addresses start with `files` (botwatch fetches them from Telegram on request).
    pub fn to_event(&self, bot: &str, files: &str, limits: &Limits) -> Option<Event> {
        let (from, text, attachments, date) = match (&self.message, &self.edited_message) {
            (Some(m), _) | (None, Some(m)) => {
                let mut attachments = Vec::new();
                // The largest size Telegram offers of a photo.
                if let Some(p) = m.photo.iter().max_by_key(|p| p.width) {
                    attachments.push(Attachment::Image(Media {
                        url: format!("{files}/{}", p.file_id),
                        name: None,
                        mime: Some("image/jpeg".to_owned()),
                        size: p.file_size,
                    }));
                }
                if let Some(d) = &m.document {
                    attachments.push(Attachment::File(Media {
                        url: format!("{files}/{}", d.file_id),
                        name: d.file_name.clone(),
                        mime: d.mime_type.clone(),
                        size: d.file_size,
                    }));
                }
                let text = m.text.clone().or_else(|| m.caption.clone());
                (m.from.as_ref()?, text, attachments, m.date)
            }
            (None, None) => {
                let q = self.callback_query.as_ref()?;
                (&q.from, q.data.clone(), Vec::new(), None)
            }
        };
        let name = [from.first_name.as_deref(), from.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        let name = if name.is_empty() {
            from.username.clone()
        } else {
            Some(name)
        };
        let ts = date
            .and_then(|d| chrono::DateTime::from_timestamp(d, 0))
            .map(|t| t.to_rfc3339());
        let raw = json!({
            "id": format!("tg-{}", self.update_id),
            "bot": bot,
            "type": "message",
            "direction": "in",
            "provider": PROVIDER,
            "user": {"id": from.id.to_string(), "name": name, "lang": from.language_code},
            "text": text,
            "attachments": attachments,
            "ts": ts,
        });
        let raw = strip_nulls(raw);
        botwatch_event::parse_event_value(raw, 0, chrono::Utc::now(), limits).ok()
    }
}

/// Removes null members, at any depth (the event's optional fields are left out, not
/// null).
pub(super) fn strip_nulls(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_nulls).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(v: Value) -> Update {
        serde_json::from_value(v).expect("update")
    }

    #[test]
    fn messages_photos_documents_and_button_presses_are_recorded() {
        let limits = Limits::default();
        let text = update(
            json!({"update_id": 7, "message": {"message_id": 1, "date": 1_764_000_000,
            "chat": {"id": 5532, "type": "private"},
            "from": {"id": 5532, "is_bot": false, "first_name": "Олена", "last_name": "К.", "language_code": "uk"},
            "text": "Where is my order?"}}),
        );
        let e = text
            .to_event("shop", "http://h/f", &limits)
            .expect("recorded");
        assert_eq!(e.id, "tg-7");
        assert_eq!(e.user.id, "5532");
        assert_eq!(e.user.name.as_deref(), Some("Олена К."));
        assert_eq!(e.user.lang.as_deref(), Some("uk"));
        assert_eq!(e.text.as_deref(), Some("Where is my order?"));
        assert_eq!(e.ts.timestamp(), 1_764_000_000);

        let photo = update(
            json!({"update_id": 8, "message": {"from": {"id": 1, "username": "ann"},
            "caption": "this one", "photo": [
                {"file_id": "small", "width": 90, "height": 90},
                {"file_id": "big", "width": 1280, "height": 960, "file_size": 120000}]}}),
        );
        let e = photo
            .to_event("shop", "http://h/f", &limits)
            .expect("recorded");
        assert_eq!(e.user.name.as_deref(), Some("ann"));
        assert_eq!(e.text.as_deref(), Some("this one"));
        match &e.attachments[..] {
            [Attachment::Image(m)] => assert_eq!(m.url, "http://h/f/big"),
            other => panic!("{other:?}"),
        }

        let document = update(json!({"update_id": 9, "message": {"from": {"id": 1},
            "document": {"file_id": "doc", "file_name": "cv.pdf", "mime_type": "application/pdf"}}}));
        let e = document
            .to_event("shop", "http://h/f", &limits)
            .expect("recorded");
        assert!(
            matches!(&e.attachments[..], [Attachment::File(m)] if m.name.as_deref() == Some("cv.pdf"))
        );

        let press = update(json!({"update_id": 10, "callback_query": {"id": "q",
            "from": {"id": 2, "first_name": "Bob"}, "data": "track:12"}}));
        assert_eq!(press.user_id().as_deref(), Some("2"));
        let e = press
            .to_event("shop", "http://h/f", &limits)
            .expect("recorded");
        assert_eq!(e.text.as_deref(), Some("track:12"));

        let member = update(json!({"update_id": 11, "my_chat_member": {}}));
        assert_eq!(member.user_id(), None);
        assert!(member.to_event("shop", "http://h/f", &limits).is_none());
    }
}
