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
    business_message: Option<TgMessage>,
    #[serde(default)]
    edited_business_message: Option<TgMessage>,
    #[serde(default)]
    callback_query: Option<CallbackQuery>,
    /// Every other kind of update (inline queries, poll answers, reactions, payments,
    /// join requests, …): not recorded, but whose user it is still decides whether
    /// the bot may see it.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct TgMessage {
    #[serde(default)]
    from: Option<TgUser>,
    #[serde(default)]
    text: Option<String>,
    /// The kinds of content told in words when there is no text (what the operator
    /// sees of a voice note, a sticker, …).
    #[serde(default)]
    voice: Option<Value>,
    #[serde(default)]
    audio: Option<Value>,
    #[serde(default)]
    video: Option<Value>,
    #[serde(default)]
    video_note: Option<Value>,
    #[serde(default)]
    sticker: Option<Value>,
    #[serde(default)]
    animation: Option<Value>,
    #[serde(default)]
    location: Option<Value>,
    #[serde(default)]
    contact: Option<Value>,
    #[serde(default)]
    poll: Option<Value>,
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
    /// The message it carries, of any of the kinds that carry one.
    fn message(&self) -> Option<&TgMessage> {
        self.message
            .as_ref()
            .or(self.edited_message.as_ref())
            .or(self.business_message.as_ref())
            .or(self.edited_business_message.as_ref())
    }

    /// The user the update is from (whose mode decides whether the bot sees it), for
    /// every kind of update that names one (`from` or `user` of its object).
    pub fn user_id(&self) -> Option<String> {
        if let Some(from) = self.message().and_then(|m| m.from.as_ref()) {
            return Some(from.id.to_string());
        }
        if let Some(q) = &self.callback_query {
            return Some(q.from.id.to_string());
        }
        self.other.values().find_map(|v| {
            let user = v.get("from").or_else(|| v.get("user"))?;
            user.get("id")?.as_i64().map(|id| id.to_string())
        })
    }

    /// The inbound event of `bot` this update is, if it is one botwatch records; file
    /// addresses start with `files` (botwatch fetches them from Telegram on request).
    pub fn to_event(&self, bot: &str, files: &str, limits: &Limits) -> Option<Event> {
        let (from, text, attachments, date) = match self.message() {
            Some(m) => {
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
                        // A name the event takes (1 to 256 characters).
                        name: d
                            .file_name
                            .as_deref()
                            .map(|n| n.chars().take(256).collect::<String>())
                            .filter(|n| !n.is_empty()),
                        mime: d.mime_type.clone(),
                        size: d.file_size,
                    }));
                }
                let text = m
                    .text
                    .clone()
                    .or_else(|| m.caption.clone())
                    .or_else(|| m.told().map(str::to_owned));
                (m.from.as_ref()?, text, attachments, m.date)
            }
            None => {
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
        match botwatch_event::parse_event_value(raw, 0, chrono::Utc::now(), limits) {
            Ok(event) => Some(event),
            Err(faults) => {
                tracing::warn!(
                    update = self.update_id,
                    ?faults,
                    "a Telegram update does not make an event; not recorded"
                );
                None
            }
        }
    }
}

impl TgMessage {
    /// A message without text, said in words.
    fn told(&self) -> Option<&'static str> {
        [
            (&self.voice, "[voice message]"),
            (&self.audio, "[audio]"),
            (&self.video, "[video]"),
            (&self.video_note, "[video message]"),
            (&self.sticker, "[sticker]"),
            (&self.animation, "[GIF]"),
            (&self.location, "[location]"),
            (&self.contact, "[contact]"),
            (&self.poll, "[poll]"),
        ]
        .into_iter()
        .find_map(|(part, said)| part.is_some().then_some(said))
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
    use proptest::prelude::*;

    use super::*;

    /// Any JSON, shaped like an update or not.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            any::<f64>().prop_map(|n| json!(n)),
            ".{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(
                    prop_oneof![
                        Just("update_id".to_owned()),
                        Just("message".to_owned()),
                        Just("callback_query".to_owned()),
                        Just("from".to_owned()),
                        Just("chat".to_owned()),
                        Just("id".to_owned()),
                        Just("text".to_owned()),
                        Just("caption".to_owned()),
                        Just("photo".to_owned()),
                        Just("document".to_owned()),
                        Just("file_id".to_owned()),
                        Just("data".to_owned()),
                        ".{1,12}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Whatever Telegram (or someone with the webhook's secret) sends, reading it
        /// as an update answers or refuses, never panics.
        #[test]
        fn any_json_is_read_or_refused_never_a_panic(v in any_json()) {
            if let Ok(u) = serde_json::from_value::<Update>(v) {
                let _ = u.user_id();
                let _ = u.to_event("shop", "http://h/files", &Limits::default());
            }
        }
    }

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

        // Other kinds still name their user (so a Manual user's are held back).
        let poll =
            update(json!({"update_id": 12, "poll_answer": {"poll_id": "p", "user": {"id": 77}}}));
        assert_eq!(poll.user_id().as_deref(), Some("77"));
        let inline = update(
            json!({"update_id": 13, "inline_query": {"id": "q", "from": {"id": 78}, "query": "x"}}),
        );
        assert_eq!(inline.user_id().as_deref(), Some("78"));
        assert!(
            inline.to_event("shop", "http://h/f", &limits).is_none(),
            "not a message"
        );
        let business = update(
            json!({"update_id": 14, "business_message": {"from": {"id": 79}, "text": "hi"}}),
        );
        assert_eq!(
            business
                .to_event("shop", "http://h/f", &limits)
                .map(|e| e.user.id)
                .as_deref(),
            Some("79")
        );
        // A voice note is told in words; a long file name is clipped, not refused.
        let voice = update(
            json!({"update_id": 15, "message": {"from": {"id": 1}, "voice": {"file_id": "v"}}}),
        );
        assert_eq!(
            voice
                .to_event("shop", "http://h/f", &limits)
                .and_then(|e| e.text)
                .as_deref(),
            Some("[voice message]")
        );
        let long = update(json!({"update_id": 16, "message": {"from": {"id": 1},
            "document": {"file_id": "d", "file_name": "x".repeat(300)}}}));
        assert!(long.to_event("shop", "http://h/f", &limits).is_some());
    }
}
