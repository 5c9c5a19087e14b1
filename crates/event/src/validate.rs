//! Validation of incoming events: every fault of every event is named, so a client
//! can fix a whole batch in one go.

use std::ops::RangeInclusive;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::model::{
    Attachment, AudienceChange, BroadcastInfo, Button, Card, Delivery, DeliveryState, Direction,
    Event, EventKind, Media, Mode, Sender, UserInfo,
};

/// A payload that knows its limits.
trait Checked {
    fn problem(&self) -> Option<(String, String)>;
}

impl Checked for AudienceChange {
    fn problem(&self) -> Option<(String, String)> {
        AudienceChange::problem(self)
    }
}

impl Checked for BroadcastInfo {
    fn problem(&self) -> Option<(String, String)> {
        BroadcastInfo::problem(self)
    }
}

pub(crate) mod fast;
pub mod schema;

/// The limits of API.md → Event, version 1.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_text_bytes: usize,
    pub max_event_bytes: usize,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
    /// How far in the future an event time may lie (clock skew allowance).
    pub max_future: Duration,
    /// Whether events botwatch writes itself (`mode_changed`) are valid: when reading
    /// its own log back, never for what bots and adapters send.
    pub own_kinds: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_text_bytes: 16 * 1024,
            max_event_bytes: 64 * 1024,
            max_batch_events: 1_000,
            max_batch_bytes: 4 * 1024 * 1024,
            max_future: Duration::minutes(5),
            own_kinds: false,
        }
    }
}

const MAX_URL_BYTES: usize = 2048;
const MAX_ATTACHMENTS: usize = 10;
const MAX_BUTTONS: usize = 10;

// How many characters each string member may have. Both the slow path (which
// names the fault) and the fast path (which only decides) read them from here.
const ID_CHARS: RangeInclusive<usize> = 1..=128;
const SLUG_CHARS: RangeInclusive<usize> = 1..=64;
const USER_ID_CHARS: RangeInclusive<usize> = 1..=256;
const USER_NAME_CHARS: RangeInclusive<usize> = 0..=256;
const GENDER_CHARS: RangeInclusive<usize> = 0..=32;
const LANG_CHARS: RangeInclusive<usize> = 0..=35;
const DIRECTION_CHARS: RangeInclusive<usize> = 1..=8;
/// `sender.kind` and `attachments[i].type`.
const KIND_CHARS: RangeInclusive<usize> = 1..=16;
const URL_CHARS: RangeInclusive<usize> = 1..=MAX_URL_BYTES;
const FILE_NAME_CHARS: RangeInclusive<usize> = 1..=256;
/// `delivery.reason`: a provider's error, said in words.
const REASON_CHARS: RangeInclusive<usize> = 1..=1024;
const MIME_CHARS: RangeInclusive<usize> = 3..=127;
const CARD_TITLE_CHARS: RangeInclusive<usize> = 1..=256;
const SUBTITLE_CHARS: RangeInclusive<usize> = 0..=1024;
const BUTTON_TITLE_CHARS: RangeInclusive<usize> = 1..=64;
const PAYLOAD_CHARS: RangeInclusive<usize> = 0..=1024;

/// Whether a fault makes the event invalid (400) or breaks a size limit (413).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    Invalid,
    TooLarge,
}

/// One fault: which event of the batch, which field (absent when the fault is the
/// event as a whole), and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub reason: String,
    #[serde(skip)]
    #[schema(ignore)]
    pub problem: Problem,
}

/// Why a batch was refused. Nothing of a refused batch may be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("malformed json: {0}")]
    Malformed(String),
    #[error("{} event(s) over the limits", .0.len())]
    TooLarge(Vec<FieldError>),
    #[error("{} fault(s) in the events", .0.len())]
    Invalid(Vec<FieldError>),
}

/// Parses an ingest body: one event object or an array of them. Either every event
/// is valid and all are returned in order, or the error names every fault.
pub fn parse_batch(
    body: &[u8],
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Vec<Event>, BatchError> {
    if body.len() > limits.max_batch_bytes {
        return Err(BatchError::TooLarge(vec![FieldError {
            index: 0,
            field: None,
            reason: format!(
                "body is {} bytes; at most {} bytes per request",
                body.len(),
                limits.max_batch_bytes
            ),
            problem: Problem::TooLarge,
        }]));
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let raws: Vec<&RawValue> = match first {
        Some(b'[') => {
            serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?
        }
        Some(b'{') => {
            vec![serde_json::from_slice(body).map_err(|e| BatchError::Malformed(e.to_string()))?]
        }
        Some(_) => {
            // Valid JSON that is neither an object nor an array is still refused as
            // malformed for this endpoint; say which.
            return Err(BatchError::Malformed(
                match serde_json::from_slice::<&RawValue>(body) {
                    Ok(_) => "expected an event object or an array of events".to_owned(),
                    Err(e) => e.to_string(),
                },
            ));
        }
        None => return Err(BatchError::Malformed("empty body".to_owned())),
    };
    if raws.is_empty() {
        return Err(BatchError::Invalid(vec![FieldError {
            index: 0,
            field: None,
            reason: "the batch holds no events".to_owned(),
            problem: Problem::Invalid,
        }]));
    }
    if raws.len() > limits.max_batch_events {
        return Err(BatchError::TooLarge(vec![FieldError {
            index: limits.max_batch_events,
            field: None,
            reason: format!(
                "batch has {} events; at most {} per request",
                raws.len(),
                limits.max_batch_events
            ),
            problem: Problem::TooLarge,
        }]));
    }

    let mut events = Vec::with_capacity(raws.len());
    let mut errors = Vec::new();
    for (index, raw) in raws.iter().enumerate() {
        let raw = raw.get();
        let parsed = if raw.len() > limits.max_event_bytes {
            parse_event(raw.as_bytes(), index, now, limits)
        } else if let Some(event) = fast::parse(raw, now, limits) {
            // The common case: a valid event, vouched for by the fast path (see
            // `fast` for why it accepts exactly what the code below would accept).
            Ok(event)
        } else {
            // The body passed as JSON above, but only for its syntax: a value nested
            // deeper than serde_json parses, or a string with a lone surrogate escape,
            // fails only here, and is still malformed JSON rather than an invalid event.
            let value: Value =
                serde_json::from_str(raw).map_err(|e| BatchError::Malformed(e.to_string()))?;
            parse_event_value(value, index, now, limits)
        };
        match parsed {
            Ok(event) => events.push(event),
            Err(mut faults) => errors.append(&mut faults),
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else if errors.iter().any(|e| e.problem == Problem::TooLarge) {
        Err(BatchError::TooLarge(errors))
    } else {
        Err(BatchError::Invalid(errors))
    }
}

/// Parses and validates one event given as JSON bytes; `index` is its place in the
/// batch, used in the faults.
pub fn parse_event(
    raw: &[u8],
    index: usize,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Event, Vec<FieldError>> {
    if raw.len() > limits.max_event_bytes {
        return Err(vec![FieldError {
            index,
            field: None,
            reason: format!(
                "event is {} bytes; at most {} bytes",
                raw.len(),
                limits.max_event_bytes
            ),
            problem: Problem::TooLarge,
        }]);
    }
    let value: Value = serde_json::from_slice(raw).map_err(|e| {
        vec![FieldError {
            index,
            field: None,
            reason: format!("not valid JSON: {e}"),
            problem: Problem::Invalid,
        }]
    })?;
    parse_event_value(value, index, now, limits)
}

/// Parses and validates one event read back from a stream: like [`parse_event`],
/// but an absent `id` is made by `make_id`, so that every reader of the same entry
/// derives the same event. The common, valid case takes the fast path.
pub fn parse_event_with_id(
    raw: &[u8],
    now: DateTime<Utc>,
    limits: &Limits,
    make_id: impl Fn() -> String,
) -> Result<Event, Vec<FieldError>> {
    if raw.len() <= limits.max_event_bytes
        && let Ok(text) = std::str::from_utf8(raw)
        && let Some(event) = fast::parse_with(text, now, limits, &make_id)
    {
        return Ok(event);
    }
    let fault = |reason: String, problem| {
        vec![FieldError {
            index: 0,
            field: None,
            reason,
            problem,
        }]
    };
    if raw.len() > limits.max_event_bytes {
        return Err(fault(
            format!(
                "event is {} bytes; at most {} bytes",
                raw.len(),
                limits.max_event_bytes
            ),
            Problem::TooLarge,
        ));
    }
    let value: Value = serde_json::from_slice(raw)
        .map_err(|e| fault(format!("not valid JSON: {e}"), Problem::Invalid))?;
    parse_event_value_with_id(value, 0, now, limits, make_id)
}

/// Validates one event already parsed as a JSON value.
pub fn parse_event_value(
    value: Value,
    index: usize,
    now: DateTime<Utc>,
    limits: &Limits,
) -> Result<Event, Vec<FieldError>> {
    parse_event_value_with_id(value, index, now, limits, || {
        uuid::Uuid::now_v7().to_string()
    })
}

pub(crate) fn parse_event_value_with_id(
    value: Value,
    index: usize,
    now: DateTime<Utc>,
    limits: &Limits,
    make_id: impl FnOnce() -> String,
) -> Result<Event, Vec<FieldError>> {
    let mut c = Checker {
        index,
        errors: Vec::new(),
    };
    let Value::Object(mut obj) = value else {
        c.fault(
            None,
            format!("expected an object, found {}", kind_of(&value)),
        );
        return Err(c.errors);
    };

    let id = c
        .string(&mut obj, "id", "id", ID_CHARS)
        .unwrap_or_else(make_id);
    let bot = c.slug(&mut obj, "bot", "bot");
    let provider = c.slug(&mut obj, "provider", "provider");
    let kind = match obj.remove("type") {
        None | Some(Value::Null) => {
            c.fault(Some("type"), "is required".to_owned());
            None
        }
        Some(Value::String(s)) => match EventKind::ALL.iter().find(|(name, _)| *name == s) {
            Some((_, kind)) => Some(*kind),
            None if limits.own_kinds && s == "mode_changed" => Some(EventKind::ModeChanged),
            None if limits.own_kinds && s == "delivery" => Some(EventKind::Delivery),
            None if limits.own_kinds && s == "handoff" => Some(EventKind::Handoff),
            None if limits.own_kinds && s == "audience" => Some(EventKind::Audience),
            None if limits.own_kinds && s == "broadcast" => Some(EventKind::Broadcast),
            None => {
                let allowed: Vec<&str> = EventKind::ALL.iter().map(|(n, _)| *n).collect();
                c.fault(
                    Some("type"),
                    format!("unknown type {s:?}; expected one of {}", allowed.join(", ")),
                );
                None
            }
        },
        Some(other) => {
            c.fault(
                Some("type"),
                format!("expected a string, found {}", kind_of(&other)),
            );
            None
        }
    };
    // botwatch's own payloads, read with serde and checked against their limits.
    let audience =
        c.payload::<AudienceChange>(&mut obj, "audience", kind == Some(EventKind::Audience));
    let broadcast =
        c.payload::<BroadcastInfo>(&mut obj, "broadcast", kind == Some(EventKind::Broadcast));
    let about_bot =
        kind == Some(EventKind::Broadcast) || matches!(audience, Some(AudienceChange::Label(_)));
    let user = if about_bot {
        obj.remove("user");
        Some(UserInfo::default())
    } else {
        c.user(&mut obj)
    };
    let direction = match c
        .string(&mut obj, "direction", "direction", DIRECTION_CHARS)
        .as_deref()
    {
        None => None,
        Some("in") => Some(Direction::In),
        Some("out") => Some(Direction::Out),
        Some(other) => {
            c.fault(
                Some("direction"),
                format!("expected \"in\" or \"out\", found {other:?}"),
            );
            None
        }
    };
    let text = match obj.remove("text") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() > limits.max_text_bytes => {
            c.push(
                Some("text"),
                format!(
                    "is {} bytes; at most {} bytes",
                    s.len(),
                    limits.max_text_bytes
                ),
                Problem::TooLarge,
            );
            None
        }
        Some(Value::String(s)) => Some(s),
        Some(other) => {
            c.fault(
                Some("text"),
                format!("expected a string, found {}", kind_of(&other)),
            );
            None
        }
    };
    let attachments = c.attachments(&mut obj);
    let sender = c.sender(&mut obj);
    // Read on `mode_changed` only; any other kind ignores the field, as it ignores
    // every field it does not know.
    let raw_mode = obj
        .remove("mode")
        .filter(|_| kind == Some(EventKind::ModeChanged));
    let mode = match raw_mode {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s == "auto" => Some(Mode::Auto),
        Some(Value::String(s)) if s == "manual" => Some(Mode::Manual),
        Some(other) => {
            c.fault(
                Some("mode"),
                format!("expected \"auto\" or \"manual\", found {other}"),
            );
            None
        }
    };
    // Only botwatch writes deliveries: what bots and adapters send is read without it.
    let delivery = match obj.remove("delivery").filter(|_| limits.own_kinds) {
        None | Some(Value::Null) => None,
        Some(value) => c.delivery(value),
    };
    let ts = match obj.remove("ts") {
        None | Some(Value::Null) => Some(now),
        Some(Value::String(s)) => match event_time(&s, now, limits) {
            Ok(t) => Some(t),
            Err(reason) => {
                c.fault(Some("ts"), reason);
                None
            }
        },
        Some(other) => {
            c.fault(
                Some("ts"),
                format!("expected a string, found {}", kind_of(&other)),
            );
            None
        }
    };

    // Rules that tie fields together.
    let mut sender = sender;
    match kind {
        Some(EventKind::Message) => match direction {
            None if !c.has_fault("direction") => c.fault(
                Some("direction"),
                "is required for type \"message\"".to_owned(),
            ),
            // API.md's own example sends `"sender": {"kind": "bot"}` on an inbound
            // message, so it is accepted; the author of an inbound message is the
            // user, so there is no sender to store.
            Some(Direction::In) => sender = None,
            Some(Direction::Out) if sender.is_none() && !c.has_fault("sender") => {
                sender = Some(Sender::Bot)
            }
            _ => {}
        },
        Some(EventKind::User) => {
            for (present, field) in [
                (direction.is_some(), "direction"),
                (text.is_some(), "text"),
                (!attachments.is_empty(), "attachments"),
                (sender.is_some(), "sender"),
            ] {
                if present {
                    c.fault(Some(field), "is only for type \"message\"".to_owned());
                }
            }
        }
        Some(EventKind::ModeChanged) if mode.is_none() && !c.has_fault("mode") => {
            c.fault(
                Some("mode"),
                "is required for type \"mode_changed\"".to_owned(),
            );
        }
        Some(EventKind::Audience) if audience.is_none() && !c.has_fault("audience") => {
            c.fault(
                Some("audience"),
                "is required for type \"audience\"".to_owned(),
            );
        }
        Some(EventKind::Broadcast) if broadcast.is_none() && !c.has_fault("broadcast") => {
            c.fault(
                Some("broadcast"),
                "is required for type \"broadcast\"".to_owned(),
            );
        }
        Some(EventKind::Delivery) => match &delivery {
            Some(d) if d.message.is_none() || d.state == DeliveryState::Pending => c.fault(
                Some("delivery"),
                "a delivery names its message and is \"sent\" or \"failed\"".to_owned(),
            ),
            None if !c.has_fault("delivery") => c.fault(
                Some("delivery"),
                "is required for type \"delivery\"".to_owned(),
            ),
            _ => {}
        },
        _ => {}
    }
    if let Some(d) = &delivery
        && kind == Some(EventKind::Message)
        && (d.state != DeliveryState::Pending
            || d.message.is_some()
            || !matches!(sender, Some(Sender::Operator { .. })))
    {
        c.fault(
            Some("delivery"),
            "on a message, only an operator's and only \"pending\"".to_owned(),
        );
    }
    match (bot, provider, kind, user, ts) {
        (Some(bot), Some(provider), Some(kind), Some(user), Some(ts)) if c.errors.is_empty() => {
            Ok(Event {
                id,
                bot,
                kind,
                direction,
                provider,
                user,
                text,
                attachments,
                sender,
                mode,
                delivery,
                audience,
                broadcast,
                ts: truncate_to_millis(ts),
            })
        }
        _ => Err(c.errors),
    }
}

/// `[a-z0-9][a-z0-9_-]{0,63}`: the shape of bot and provider names.
pub fn is_slug(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_' || *b == b'-')
}

/// The rule for `ts` given as a string: an RFC 3339 time, not before 1970 and at
/// most `limits.max_future` after `now`; in UTC, not yet truncated.
fn event_time(s: &str, now: DateTime<Utc>, limits: &Limits) -> Result<DateTime<Utc>, String> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| format!("is not an RFC 3339 time: {e}"))?
        .with_timezone(&Utc);
    if t > now + limits.max_future {
        Err(format!(
            "is more than {} minutes in the future",
            limits.max_future.num_minutes()
        ))
    } else if t.timestamp() < 0 {
        Err("is before 1970-01-01".to_owned())
    } else {
        Ok(t)
    }
}

fn truncate_to_millis(ts: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ts.timestamp_millis()).unwrap_or(ts)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn is_url(s: &str) -> bool {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"));
    // A host must follow the scheme: "https://" alone is no URL.
    rest.and_then(|r| r.split(['/', '?', '#']).next())
        .is_some_and(|host| !host.is_empty())
        && s.len() <= MAX_URL_BYTES
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

struct Checker {
    index: usize,
    errors: Vec<FieldError>,
}

impl Checker {
    fn push(&mut self, field: Option<&str>, reason: String, problem: Problem) {
        self.errors.push(FieldError {
            index: self.index,
            field: field.map(str::to_owned),
            reason,
            problem,
        });
    }

    fn fault(&mut self, field: Option<&str>, reason: String) {
        self.push(field, reason, Problem::Invalid);
    }

    fn has_fault(&self, field: &str) -> bool {
        self.errors
            .iter()
            .any(|e| e.field.as_deref() == Some(field))
    }

    /// An optional string field of `chars` characters; `None` when absent or null.
    fn string(
        &mut self,
        obj: &mut Map<String, Value>,
        key: &str,
        path: &str,
        chars: RangeInclusive<usize>,
    ) -> Option<String> {
        match obj.remove(key) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                let count = s.chars().count();
                if count < *chars.start() {
                    self.fault(Some(path), "must not be empty".to_owned());
                    None
                } else if count > *chars.end() {
                    let max = chars.end();
                    self.fault(Some(path), format!("is {count} characters; at most {max}"));
                    None
                } else {
                    Some(s)
                }
            }
            Some(other) => {
                self.fault(
                    Some(path),
                    format!("expected a string, found {}", kind_of(&other)),
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        obj: &mut Map<String, Value>,
        key: &str,
        path: &str,
        chars: RangeInclusive<usize>,
    ) -> Option<String> {
        let present = matches!(obj.get(key), Some(v) if !v.is_null());
        let value = self.string(obj, key, path, chars);
        if !present {
            self.fault(Some(path), "is required".to_owned());
        }
        value
    }

    fn slug(&mut self, obj: &mut Map<String, Value>, key: &str, path: &str) -> Option<String> {
        let s = self.required_string(obj, key, path, SLUG_CHARS)?;
        if is_slug(&s) {
            Some(s)
        } else {
            self.fault(
                Some(path),
                format!("{s:?} is not a slug: lower-case letters, digits, '_' and '-', starting with a letter or digit"),
            );
            None
        }
    }

    fn url(&mut self, obj: &mut Map<String, Value>, key: &str, path: &str) -> Option<String> {
        let s = self.string(obj, key, path, URL_CHARS)?;
        if is_url(&s) {
            Some(s)
        } else {
            self.fault(
                Some(path),
                "must be an http(s) URL without spaces".to_owned(),
            );
            None
        }
    }

    fn object(
        &mut self,
        value: Option<Value>,
        path: &str,
        required: bool,
    ) -> Option<Map<String, Value>> {
        match value {
            None | Some(Value::Null) => {
                if required {
                    self.fault(Some(path), "is required".to_owned());
                }
                None
            }
            Some(Value::Object(map)) => Some(map),
            Some(other) => {
                self.fault(
                    Some(path),
                    format!("expected an object, found {}", kind_of(&other)),
                );
                None
            }
        }
    }

    fn array(&mut self, value: Option<Value>, path: &str, max: usize) -> Vec<Value> {
        match value {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if items.len() > max => {
                self.fault(
                    Some(path),
                    format!("has {} items; at most {max}", items.len()),
                );
                Vec::new()
            }
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.fault(
                    Some(path),
                    format!("expected an array, found {}", kind_of(&other)),
                );
                Vec::new()
            }
        }
    }

    fn user(&mut self, obj: &mut Map<String, Value>) -> Option<UserInfo> {
        let mut user = self.object(obj.remove("user"), "user", true)?;
        let id = self.required_string(&mut user, "id", "user.id", USER_ID_CHARS);
        let name = self.string(&mut user, "name", "user.name", USER_NAME_CHARS);
        let avatar = self.url(&mut user, "avatar", "user.avatar");
        let gender = self.string(&mut user, "gender", "user.gender", GENDER_CHARS);
        let lang = self.string(&mut user, "lang", "user.lang", LANG_CHARS);
        Some(UserInfo {
            id: id?,
            name,
            avatar,
            gender,
            lang,
        })
    }

    fn delivery(&mut self, value: Value) -> Option<Delivery> {
        let mut d = self.object(Some(value), "delivery", false)?;
        let message = self.string(&mut d, "message", "delivery.message", ID_CHARS);
        let state = match self
            .required_string(&mut d, "state", "delivery.state", KIND_CHARS)
            .as_deref()
        {
            Some("pending") => DeliveryState::Pending,
            Some("sent") => DeliveryState::Sent,
            Some("failed") => DeliveryState::Failed,
            Some("skipped") => DeliveryState::Skipped,
            Some(other) => {
                self.fault(
                    Some("delivery.state"),
                    format!(
                        "expected \"pending\", \"sent\", \"failed\" or \"skipped\", found {other:?}"
                    ),
                );
                return None;
            }
            None => return None,
        };
        let reason = self.string(&mut d, "reason", "delivery.reason", REASON_CHARS);
        let broadcast = self.string(&mut d, "broadcast", "delivery.broadcast", ID_CHARS);
        Some(Delivery {
            message,
            state,
            reason,
            broadcast,
        })
    }

    /// One of botwatch's own payloads (`audience`, `broadcast`), on its own kind only:
    /// read with serde, then checked against its limits.
    fn payload<T: serde::de::DeserializeOwned + Checked>(
        &mut self,
        obj: &mut Map<String, Value>,
        key: &str,
        wanted: bool,
    ) -> Option<T> {
        let value = obj.remove(key).filter(|_| wanted)?;
        if value.is_null() {
            return None;
        }
        match serde_json::from_value::<T>(value) {
            Ok(p) => match p.problem() {
                None => Some(p),
                Some((field, reason)) => {
                    self.fault(Some(&format!("{key}.{field}")), reason);
                    None
                }
            },
            Err(e) => {
                self.fault(Some(key), e.to_string());
                None
            }
        }
    }

    fn sender(&mut self, obj: &mut Map<String, Value>) -> Option<Sender> {
        let mut sender = self.object(obj.remove("sender"), "sender", false)?;
        match self
            .required_string(&mut sender, "kind", "sender.kind", KIND_CHARS)
            .as_deref()
        {
            Some("bot") => Some(Sender::Bot),
            Some("operator") => {
                let id = self.required_string(&mut sender, "id", "sender.id", USER_ID_CHARS)?;
                Some(Sender::Operator { id })
            }
            Some(other) => {
                self.fault(
                    Some("sender.kind"),
                    format!("expected \"bot\" or \"operator\", found {other:?}"),
                );
                None
            }
            None => None,
        }
    }

    fn attachments(&mut self, obj: &mut Map<String, Value>) -> Vec<Attachment> {
        let items = self.array(obj.remove("attachments"), "attachments", MAX_ATTACHMENTS);
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let path = format!("attachments[{i}]");
            if let Some(a) = self.attachment(item, &path) {
                out.push(a);
            }
        }
        out
    }

    fn attachment(&mut self, item: Value, path: &str) -> Option<Attachment> {
        let mut a = self.object(Some(item), path, true)?;
        let type_path = format!("{path}.type");
        let kind = self.required_string(&mut a, "type", &type_path, KIND_CHARS)?;
        if kind == "card" {
            return self.card(a, path).map(Attachment::Card);
        }
        let make: fn(Media) -> Attachment = match kind.as_str() {
            "file" => Attachment::File,
            "image" => Attachment::Image,
            "audio" => Attachment::Audio,
            "video" => Attachment::Video,
            other => {
                self.fault(
                    Some(&type_path),
                    format!(
                        "unknown attachment type {other:?}; expected one of {}",
                        Attachment::TYPES.join(", ")
                    ),
                );
                return None;
            }
        };
        let url_path = format!("{path}.url");
        let present = matches!(a.get("url"), Some(v) if !v.is_null());
        let url = self.url(&mut a, "url", &url_path);
        if !present {
            self.fault(Some(&url_path), "is required".to_owned());
        }
        let name = self.string(&mut a, "name", &format!("{path}.name"), FILE_NAME_CHARS);
        let mime = self.string(&mut a, "mime", &format!("{path}.mime"), MIME_CHARS);
        let size = match a.remove("size") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
            Some(other) => {
                self.fault(
                    Some(&format!("{path}.size")),
                    format!("expected a whole number of bytes, found {other}"),
                );
                None
            }
        };
        Some(make(Media {
            url: url?,
            name,
            mime,
            size,
        }))
    }

    fn card(&mut self, mut a: Map<String, Value>, path: &str) -> Option<Card> {
        let title =
            self.required_string(&mut a, "title", &format!("{path}.title"), CARD_TITLE_CHARS);
        let subtitle = self.string(
            &mut a,
            "subtitle",
            &format!("{path}.subtitle"),
            SUBTITLE_CHARS,
        );
        let image = self.url(&mut a, "image", &format!("{path}.image"));
        let buttons_path = format!("{path}.buttons");
        let items = self.array(a.remove("buttons"), &buttons_path, MAX_BUTTONS);
        let mut buttons = Vec::with_capacity(items.len());
        for (i, item) in items.into_iter().enumerate() {
            let bpath = format!("{buttons_path}[{i}]");
            let Some(mut b) = self.object(Some(item), &bpath, true) else {
                continue;
            };
            let title = self.required_string(
                &mut b,
                "title",
                &format!("{bpath}.title"),
                BUTTON_TITLE_CHARS,
            );
            let payload = self.string(
                &mut b,
                "payload",
                &format!("{bpath}.payload"),
                PAYLOAD_CHARS,
            );
            let url = self.url(&mut b, "url", &format!("{bpath}.url"));
            if let Some(title) = title {
                buttons.push(Button {
                    title,
                    payload,
                    url,
                });
            }
        }
        Some(Card {
            title: title?,
            subtitle,
            image,
            buttons,
        })
    }
}

#[cfg(test)]
#[path = "validate/tests.rs"]
mod tests;

#[cfg(test)]
#[path = "validate/differential.rs"]
mod differential;
