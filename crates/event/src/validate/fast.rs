//! The fast path of event validation: a typed parse that borrows from the input,
//! then the rules of the slow path as plain yes/no checks.
//!
//! [`parse`] answers either "valid, and this is the event" or "don't know"; on
//! "don't know" the caller runs the slow path ([`super::parse_event_value`] on a
//! [`serde_json::Value`]), which decides and names every fault. So the fast path
//! may decline anything, but it must never accept an event that the slow path
//! would refuse or find malformed, and what it accepts must be the very event the
//! slow path makes. Why it holds:
//!
//! 1. **The same parser over the same text.** Both run `serde_json` over the same
//!    `&str`, and every value the fast path takes is read by the deserializer
//!    method that `Value` uses for it: strings by the string parser (same
//!    unescaping, same refusal of lone surrogate escapes and control characters),
//!    objects and arrays through the same recursion-limit accounting, so an
//!    object or array is at the same depth in both. A member the fast path does
//!    not know is parsed *as a `Value`* (literally the slow path's code, at the
//!    same depth) and dropped, so whatever would make it malformed for the slow
//!    path (nesting beyond the limit, a lone surrogate, a number out of range)
//!    makes the fast parse fail too.
//! 2. **Only the shapes the slow path reads.** An object is taken only from a JSON
//!    object (serde's derive also takes an array of the values, or any map-like
//!    input for an internally tagged enum); a string only from a JSON string; a
//!    size only from an integer literal that fits `u64` (exactly the numbers for
//!    which `Number::as_u64` is `Some`); `null` only where the slow path treats
//!    null as absent. Anything else fails the parse, and the fast path declines.
//! 3. **The same member is looked at.** The slow path's `Map` keeps the last of
//!    duplicate keys; the fast path declines an object that repeats a member it
//!    reads. Keys are compared after unescaping, as `Map` does. It also declines any
//!    unknown key starting with `$`: `Value` parses an object whose first key is
//!    serde_json's private token `$serde_json::private::RawValue` as the JSON
//!    text in that member's string, not as an object.
//! 4. **The same rules.** Character ranges, [`is_slug`], [`is_url`],
//!    [`event_time`] and the limits are shared with the slow path; the rest is
//!    mirrored rule by rule below, and each rule that the slow path would fault
//!    is a [`Decline`] here.
//! 5. **The same normalisation.** A server-made `id` when absent, `ts` truncated
//!    to milliseconds (`now` when absent), no sender kept for inbound messages,
//!    [`Sender::Bot`] for outbound messages without one, absent or null
//!    attachments and buttons as empty lists. Members that the slow path does not
//!    read in context (e.g. `buttons` on a file, `id` of a bot sender) are dropped
//!    as it does; the fast parse of them succeeded, so they are well-formed.
//!
//! `differential.rs` runs both paths over the test events and many mutations of
//! them and checks exactly this.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, RangeInclusive};

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};

use super::{
    BUTTON_TITLE_CHARS, CARD_TITLE_CHARS, FILE_NAME_CHARS, GENDER_CHARS, ID_CHARS, LANG_CHARS,
    Limits, MAX_ATTACHMENTS, MAX_BUTTONS, MIME_CHARS, PAYLOAD_CHARS, SLUG_CHARS, SUBTITLE_CHARS,
    URL_CHARS, USER_ID_CHARS, USER_NAME_CHARS, event_time, is_slug, is_url, truncate_to_millis,
};
use crate::model::{
    Attachment, Button, Card, Direction, Event, EventKind, Media, Sender, UserInfo,
};

/// The event in `raw` (one event's JSON text), when it is valid and the fast path
/// can vouch for it; `None` means "ask the slow path", not "invalid".
pub(crate) fn parse(raw: &str, now: DateTime<Utc>, limits: &Limits) -> Option<Event> {
    parse_with(raw, now, limits, || uuid::Uuid::now_v7().to_string())
}

/// [`parse`], with `make_id` giving the id of an event that has none.
pub(crate) fn parse_with(
    raw: &str,
    now: DateTime<Utc>,
    limits: &Limits,
    make_id: impl FnOnce() -> String,
) -> Option<Event> {
    let input: EventIn<'_> = serde_json::from_str(raw).ok()?;
    input.into_event(now, limits, make_id).ok()
}

/// The fast path cannot vouch for this event: it is invalid, or valid in a way
/// left to the slow path.
#[derive(Debug)]
struct Decline;

type Verdict<T> = Result<T, Decline>;

// ---------------------------------------------------------------------------
// The rules, mirroring `parse_event_value` and `Checker`
// ---------------------------------------------------------------------------

/// An optional string member of `chars` characters (`Checker::string`): absent
/// or null is `None`.
fn string(member: Member<Str<'_>>, chars: RangeInclusive<usize>) -> Verdict<Option<String>> {
    match member.flatten() {
        None => Ok(None),
        Some(s) if chars_within(&s, &chars) => Ok(Some(s.into_string())),
        Some(_) => Err(Decline),
    }
}

/// Whether `s` has a number of characters in `chars`, i.e.
/// `chars.contains(&s.chars().count())`, counting only when the length in bytes
/// does not settle it: a character is 1 to 4 bytes, so `⌈bytes / 4⌉ ≤ chars ≤ bytes`.
pub(super) fn chars_within(s: &str, chars: &RangeInclusive<usize>) -> bool {
    let bytes = s.len();
    (bytes <= *chars.end() && bytes.div_ceil(4) >= *chars.start())
        || chars.contains(&s.chars().count())
}

/// A required string member (`Checker::required_string`).
fn required(member: Member<Str<'_>>, chars: RangeInclusive<usize>) -> Verdict<String> {
    string(member, chars)?.ok_or(Decline)
}

/// A bot or provider name (`Checker::slug`).
fn slug(member: Member<Str<'_>>) -> Verdict<String> {
    required(member, SLUG_CHARS).and_then(|s| if is_slug(&s) { Ok(s) } else { Err(Decline) })
}

/// An optional http(s) URL (`Checker::url`).
fn url(member: Member<Str<'_>>) -> Verdict<Option<String>> {
    match string(member, URL_CHARS)? {
        Some(s) if !is_url(&s) => Err(Decline),
        other => Ok(other),
    }
}

/// An optional list of at most `max` items (`Checker::array`).
fn list<T>(member: Member<Vec<T>>, max: usize) -> Verdict<Vec<T>> {
    match member.flatten() {
        None => Ok(Vec::new()),
        Some(items) if items.len() <= max => Ok(items),
        Some(_) => Err(Decline),
    }
}

/// An optional member that must be one of the `names` of a closed set. Where the
/// slow path first checks a character range (`DIRECTION_CHARS`, `KIND_CHARS`),
/// every name fits it (a test checks), so being one of the names is the whole rule.
fn one_of<T: Copy>(member: Member<Str<'_>>, names: &[(&str, T)]) -> Verdict<Option<T>> {
    match member.flatten() {
        None => Ok(None),
        Some(s) => names
            .iter()
            .find(|(name, _)| **name == *s)
            .map(|(_, value)| Some(*value))
            .ok_or(Decline),
    }
}

pub(super) const DIRECTIONS: [(&str, Direction); 2] =
    [("in", Direction::In), ("out", Direction::Out)];

#[derive(Clone, Copy)]
pub(super) enum SenderKind {
    Bot,
    Operator,
}

pub(super) const SENDER_KINDS: [(&str, SenderKind); 2] =
    [("bot", SenderKind::Bot), ("operator", SenderKind::Operator)];

#[derive(Clone, Copy)]
pub(super) enum AttachmentKind {
    Media(fn(Media) -> Attachment),
    Card,
}

pub(super) const ATTACHMENT_KINDS: [(&str, AttachmentKind); 5] = [
    ("file", AttachmentKind::Media(Attachment::File)),
    ("image", AttachmentKind::Media(Attachment::Image)),
    ("audio", AttachmentKind::Media(Attachment::Audio)),
    ("video", AttachmentKind::Media(Attachment::Video)),
    ("card", AttachmentKind::Card),
];

impl EventIn<'_> {
    fn into_event(
        self,
        now: DateTime<Utc>,
        limits: &Limits,
        make_id: impl FnOnce() -> String,
    ) -> Verdict<Event> {
        // `type` has no length rule of its own in the slow path: the known names.
        let kind = one_of(self.kind, &EventKind::ALL)?.ok_or(Decline)?;
        let bot = slug(self.bot)?;
        let provider = slug(self.provider)?;
        let id = string(self.id, ID_CHARS)?;
        let direction = one_of(self.direction, &DIRECTIONS)?;
        let user = self.user.flatten().ok_or(Decline)?.into_user()?;
        let text = match self.text.flatten() {
            None => None,
            Some(text) if text.len() <= limits.max_text_bytes => Some(text.into_string()),
            // Too large: a 413 fault in the slow path.
            Some(_) => return Err(Decline),
        };
        let attachments = list(self.attachments, MAX_ATTACHMENTS)?
            .into_iter()
            .map(AttachmentIn::into_attachment)
            .collect::<Verdict<Vec<_>>>()?;
        // Checked even where it is not kept (inbound messages), as the slow path does.
        let sender = match self.sender.flatten() {
            None => None,
            Some(sender) => Some(sender.into_sender()?),
        };
        let ts = match self.ts.flatten() {
            None => now,
            Some(ts) => event_time(&ts, now, limits).map_err(|_| Decline)?,
        };

        // Rules that tie fields together.
        let sender = match (kind, direction) {
            (EventKind::Message, None) => return Err(Decline),
            (EventKind::Message, Some(Direction::In)) => None,
            (EventKind::Message, Some(Direction::Out)) => Some(sender.unwrap_or(Sender::Bot)),
            (EventKind::User, _) => {
                if direction.is_some()
                    || text.is_some()
                    || !attachments.is_empty()
                    || sender.is_some()
                {
                    return Err(Decline);
                }
                None
            }
            // Never one of `EventKind::ALL`: the full path judges them.
            (
                EventKind::ModeChanged
                | EventKind::Delivery
                | EventKind::Handoff
                | EventKind::Audience
                | EventKind::Broadcast,
                _,
            ) => {
                return Err(Decline);
            }
        };

        Ok(Event {
            // Made last, so that a declined event costs no id.
            id: id.unwrap_or_else(make_id),
            bot,
            kind,
            direction,
            provider,
            user,
            text,
            attachments,
            sender,
            mode: None,
            delivery: None,
            audience: None,
            broadcast: None,
            ts: truncate_to_millis(ts),
        })
    }
}

impl UserIn<'_> {
    fn into_user(self) -> Verdict<UserInfo> {
        Ok(UserInfo {
            id: required(self.id, USER_ID_CHARS)?,
            name: string(self.name, USER_NAME_CHARS)?,
            avatar: url(self.avatar)?,
            gender: string(self.gender, GENDER_CHARS)?,
            lang: string(self.lang, LANG_CHARS)?,
        })
    }
}

impl SenderIn<'_> {
    fn into_sender(self) -> Verdict<Sender> {
        match one_of(self.kind, &SENDER_KINDS)?.ok_or(Decline)? {
            // The slow path does not read `id` for a bot.
            SenderKind::Bot => Ok(Sender::Bot),
            SenderKind::Operator => Ok(Sender::Operator {
                id: required(self.id, USER_ID_CHARS)?,
            }),
        }
    }
}

impl AttachmentIn<'_> {
    fn into_attachment(self) -> Verdict<Attachment> {
        // The members of the other kind are not read, as in the slow path.
        match one_of(self.kind, &ATTACHMENT_KINDS)?.ok_or(Decline)? {
            AttachmentKind::Media(make) => Ok(make(Media {
                url: url(self.url)?.ok_or(Decline)?,
                name: string(self.name, FILE_NAME_CHARS)?,
                mime: string(self.mime, MIME_CHARS)?,
                size: self.size.flatten().map(|size| size.0),
            })),
            AttachmentKind::Card => Ok(Attachment::Card(Card {
                title: required(self.title, CARD_TITLE_CHARS)?,
                subtitle: string(self.subtitle, SUBTITLE_CHARS)?,
                image: url(self.image)?,
                buttons: list(self.buttons, MAX_BUTTONS)?
                    .into_iter()
                    .map(ButtonIn::into_button)
                    .collect::<Verdict<Vec<_>>>()?,
            })),
        }
    }
}

impl ButtonIn<'_> {
    fn into_button(self) -> Verdict<Button> {
        Ok(Button {
            title: required(self.title, BUTTON_TITLE_CHARS)?,
            payload: string(self.payload, PAYLOAD_CHARS)?,
            url: url(self.url)?,
        })
    }
}

// ---------------------------------------------------------------------------
// The input, as the fast path parses it
// ---------------------------------------------------------------------------

/// A member of an input object: `None` when absent, `Some(None)` when null.
type Member<T> = Option<Option<T>>;

#[derive(Default)]
struct EventIn<'a> {
    id: Member<Str<'a>>,
    bot: Member<Str<'a>>,
    kind: Member<Str<'a>>,
    direction: Member<Str<'a>>,
    provider: Member<Str<'a>>,
    user: Member<UserIn<'a>>,
    text: Member<Str<'a>>,
    attachments: Member<Vec<AttachmentIn<'a>>>,
    sender: Member<SenderIn<'a>>,
    ts: Member<Str<'a>>,
}

#[derive(Default)]
struct UserIn<'a> {
    id: Member<Str<'a>>,
    name: Member<Str<'a>>,
    avatar: Member<Str<'a>>,
    gender: Member<Str<'a>>,
    lang: Member<Str<'a>>,
}

#[derive(Default)]
struct SenderIn<'a> {
    kind: Member<Str<'a>>,
    id: Member<Str<'a>>,
}

/// Any attachment: its `type` may come after the other members, so the members of
/// every kind are taken and sorted out afterwards.
#[derive(Default)]
struct AttachmentIn<'a> {
    kind: Member<Str<'a>>,
    // Media.
    url: Member<Str<'a>>,
    name: Member<Str<'a>>,
    mime: Member<Str<'a>>,
    size: Member<Size>,
    // Card.
    title: Member<Str<'a>>,
    subtitle: Member<Str<'a>>,
    image: Member<Str<'a>>,
    buttons: Member<Vec<ButtonIn<'a>>>,
}

#[derive(Default)]
struct ButtonIn<'a> {
    title: Member<Str<'a>>,
    payload: Member<Str<'a>>,
    url: Member<Str<'a>>,
}

impl<'de> Object<'de> for EventIn<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "id" => read_once(&mut self.id, map),
            "bot" => read_once(&mut self.bot, map),
            "type" => read_once(&mut self.kind, map),
            "direction" => read_once(&mut self.direction, map),
            "provider" => read_once(&mut self.provider, map),
            "user" => read_once(&mut self.user, map),
            "text" => read_once(&mut self.text, map),
            "attachments" => read_once(&mut self.attachments, map),
            "sender" => read_once(&mut self.sender, map),
            "ts" => read_once(&mut self.ts, map),
            // Read only in botwatch's own log, by the slow path.
            "delivery" => Err(de::Error::custom("a key left to the slow path")),
            _ => skip_unknown(key, map),
        }
    }
}

impl<'de> Object<'de> for UserIn<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "id" => read_once(&mut self.id, map),
            "name" => read_once(&mut self.name, map),
            "avatar" => read_once(&mut self.avatar, map),
            "gender" => read_once(&mut self.gender, map),
            "lang" => read_once(&mut self.lang, map),
            _ => skip_unknown(key, map),
        }
    }
}

impl<'de> Object<'de> for SenderIn<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "kind" => read_once(&mut self.kind, map),
            "id" => read_once(&mut self.id, map),
            _ => skip_unknown(key, map),
        }
    }
}

impl<'de> Object<'de> for AttachmentIn<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "type" => read_once(&mut self.kind, map),
            "url" => read_once(&mut self.url, map),
            "name" => read_once(&mut self.name, map),
            "mime" => read_once(&mut self.mime, map),
            "size" => read_once(&mut self.size, map),
            "title" => read_once(&mut self.title, map),
            "subtitle" => read_once(&mut self.subtitle, map),
            "image" => read_once(&mut self.image, map),
            "buttons" => read_once(&mut self.buttons, map),
            _ => skip_unknown(key, map),
        }
    }
}

impl<'de> Object<'de> for ButtonIn<'de> {
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "title" => read_once(&mut self.title, map),
            "payload" => read_once(&mut self.payload, map),
            "url" => read_once(&mut self.url, map),
            _ => skip_unknown(key, map),
        }
    }
}

impl<'de> Deserialize<'de> for EventIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

impl<'de> Deserialize<'de> for UserIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

impl<'de> Deserialize<'de> for SenderIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

impl<'de> Deserialize<'de> for AttachmentIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

impl<'de> Deserialize<'de> for ButtonIn<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        object(d)
    }
}

// ---------------------------------------------------------------------------
// Parsing machinery: objects only from JSON objects, strings only from JSON
// strings, sizes only from unsigned integers
// ---------------------------------------------------------------------------

/// An input object, read member by member from a JSON object and nothing else.
trait Object<'de>: Default {
    /// Reads the value of the member `key` (already unescaped) from `map`.
    fn member<A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

/// Deserializes an [`Object`] from a JSON object; any other JSON value is an error.
fn object<'de, D: Deserializer<'de>, T: Object<'de>>(d: D) -> Result<T, D::Error> {
    struct ObjectVisitor<T>(PhantomData<T>);

    impl<'de, T: Object<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<T, A::Error> {
            let mut object = T::default();
            while let Some(key) = map.next_key::<Str<'de>>()? {
                object.member(&key, &mut map)?;
            }
            Ok(object)
        }
    }

    d.deserialize_map(ObjectVisitor(PhantomData))
}

/// Reads a member's value into `slot`; a second member of the same name is an error
/// (the slow path would take the last one).
fn read_once<'de, A, T>(slot: &mut Member<T>, map: &mut A) -> Result<(), A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de>,
{
    if slot.is_some() {
        return Err(de::Error::custom("duplicate member"));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

/// A member the fast path does not read: parsed as the slow path parses it, as a
/// [`serde_json::Value`] (so it is well-formed and within the nesting limit for the
/// slow path too), and dropped. Keys starting with `$` are refused: `Value` treats
/// serde_json's private `$serde_json::…` tokens specially.
fn skip_unknown<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<(), A::Error> {
    if key.starts_with('$') {
        return Err(de::Error::custom("a key left to the slow path"));
    }
    map.next_value::<serde_json::Value>().map(drop)
}

/// A JSON string, borrowed from the input unless it had escapes.
struct Str<'a>(Cow<'a, str>);

impl Str<'_> {
    fn into_string(self) -> String {
        self.0.into_owned()
    }
}

impl Deref for Str<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;

        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(s.to_owned())))
            }
        }

        d.deserialize_str(StrVisitor)
    }
}

/// `attachments[i].size`: an integer literal that fits `u64`. serde_json calls
/// `visit_u64` for exactly those (never for `1.0`, `1e3`, `-0` or beyond `u64`),
/// and they are exactly the numbers for which the slow path's `as_u64` is `Some`.
struct Size(u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SizeVisitor;

        impl Visitor<'_> for SizeVisitor {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a whole number of bytes")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Size, E> {
                Ok(Size(n))
            }
        }

        d.deserialize_u64(SizeVisitor)
    }
}
