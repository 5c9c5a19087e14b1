//! The rules of this module said in JSON Schema, for the API's OpenAPI document: what
//! an ingest request may hold, built from the same limits the validator checks, so the
//! document cannot promise more or less than the validator keeps.
//!
//! What JSON Schema cannot say is said in the descriptions: limits in bytes (a schema
//! counts characters, and a text of multi-byte characters reaches its byte limit
//! sooner), the size of an event and of a whole body, and that `ts` may lie at most
//! five minutes after the moment the server receives it.

use std::borrow::Cow;
use std::ops::RangeInclusive;

use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::{Ref, RefOr};

use super::{
    BUTTON_TITLE_CHARS, CARD_TITLE_CHARS, FILE_NAME_CHARS, GENDER_CHARS, ID_CHARS, LANG_CHARS,
    Limits, MAX_ATTACHMENTS, MAX_BUTTONS, MAX_URL_BYTES, MIME_CHARS, PAYLOAD_CHARS, SUBTITLE_CHARS,
    USER_ID_CHARS, USER_NAME_CHARS,
};
use crate::model::Attachment;

/// The characters `char::is_control` is true of (general category Cc), for a regular
/// expression's character class. Patterns here use only `\uXXXX` escapes, which the
/// ECMAScript, Python and Rust regular expressions that read the document all know.
pub const CONTROL: &str = r"\u0000-\u001f\u007f-\u009f";
/// The characters `char::is_whitespace` is true of (White_Space) that are not control
/// characters: what `str::trim` takes off besides those.
pub const SPACE: &str = r"\u0020\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// White_Space as a whole (tab to carriage return and U+0085 are control characters).
pub const WHITE_SPACE: &str =
    r"\u0009-\u000d\u0020\u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";

/// [`super::is_slug`]: bot and provider names.
pub const SLUG_PATTERN: &str = "^[a-z0-9][a-z0-9_-]{0,63}$";

/// [`super::is_url`]: `http://` or `https://`, a host, no white space or control
/// character (and at most 2,048 bytes, which the schema's `maxLength` counts in
/// characters).
pub fn url_pattern() -> String {
    format!(r"^https?://[^/?#{WHITE_SPACE}{CONTROL}][^{WHITE_SPACE}{CONTROL}]*$")
}

/// Text with a character that is not white space: what `str::trim` leaves something of.
pub fn not_blank_pattern() -> String {
    format!("[^{WHITE_SPACE}]")
}

/// A string of `chars` characters.
pub fn text(chars: &RangeInclusive<usize>) -> ObjectBuilder {
    let text = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(*chars.end()));
    if *chars.start() > 0 {
        text.min_length(Some(*chars.start()))
    } else {
        text
    }
}

/// The same as `schema`, or null (the validator reads null as absent).
pub fn or_null(schema: ObjectBuilder) -> ObjectBuilder {
    let built = schema.build();
    let mut types = match &built.schema_type {
        SchemaType::Type(t) => vec![t.clone()],
        SchemaType::Array(ts) => ts.clone(),
        SchemaType::AnyValue => return ObjectBuilder::from(built),
    };
    types.push(Type::Null);
    ObjectBuilder::from(built).schema_type(SchemaType::Array(types))
}

/// One of a few words.
pub fn word(words: &[&str]) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(words.iter().copied()))
}

/// An http(s) address, as the validator takes it.
/// A message's text: at most `max_text` bytes of UTF-8, or null (events, operator
/// messages and broadcasts alike).
pub fn message_text(max_text: usize) -> ObjectBuilder {
    or_null(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(max_text)),
    )
    .description(Some(format!("At most {max_text} bytes of UTF-8")))
}

pub fn url() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_URL_BYTES))
        .pattern(Some(url_pattern()))
        .description(Some(format!(
            "http:// or https:// and a host; no white space or control characters; at \
             most {MAX_URL_BYTES} bytes of UTF-8"
        )))
}

fn schema_ref(name: &str) -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(name))
}

/// `user`: who the event is about.
fn user() -> Schema {
    ObjectBuilder::new()
        .description(Some("The bot's user the event is about"))
        .property("id", text(&USER_ID_CHARS))
        .required("id")
        .property("name", or_null(text(&USER_NAME_CHARS)))
        .property("avatar", or_null(url()))
        .property("gender", or_null(text(&GENDER_CHARS)))
        .property("lang", or_null(text(&LANG_CHARS)))
        .into()
}

/// `sender` of a message: the bot, or an operator with an id.
fn sender() -> Schema {
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property("kind", word(&["bot"]))
                .required("kind"),
        )
        .item(
            ObjectBuilder::new()
                .property("kind", word(&["operator"]))
                .required("kind")
                .property("id", text(&USER_ID_CHARS))
                .required("id"),
        )
        .description(Some(
            "Who wrote an outbound message (on an inbound one it is checked, then dropped)",
        ))
        .into()
}

/// A button of a card; `nullable_buttons` says whether the card's `buttons` may be
/// null (the validator's reading) or must be a list (serde's, on operator requests).
fn card(nullable_buttons: bool) -> ObjectBuilder {
    let button = ObjectBuilder::new()
        .property("title", text(&BUTTON_TITLE_CHARS))
        .required("title")
        .property("payload", or_null(text(&PAYLOAD_CHARS)))
        .property("url", or_null(url()));
    let buttons = ArrayBuilder::new()
        .items(button)
        .max_items(Some(MAX_BUTTONS));
    let buttons = if nullable_buttons {
        buttons.schema_type(SchemaType::Array(vec![Type::Array, Type::Null]))
    } else {
        buttons
    };
    ObjectBuilder::new()
        .property("title", text(&CARD_TITLE_CHARS))
        .required("title")
        .property("subtitle", or_null(text(&SUBTITLE_CHARS)))
        .property("image", or_null(url()))
        .property("buttons", buttons)
}

/// An attachment of an ingested message: a file, image, audio or video at an
/// address, or a card.
fn attachment() -> Schema {
    let media_types: Vec<&str> = Attachment::TYPES
        .iter()
        .copied()
        .filter(|t| *t != "card")
        .collect();
    let media = ObjectBuilder::new()
        .property("type", word(&media_types))
        .required("type")
        .property("url", url())
        .required("url")
        .property("name", or_null(text(&FILE_NAME_CHARS)))
        .property("mime", or_null(text(&MIME_CHARS)))
        .property(
            "size",
            ObjectBuilder::new()
                .schema_type(SchemaType::Array(vec![Type::Integer, Type::Null]))
                .minimum(Some(0))
                .maximum(Some(u64::MAX))
                .description(Some("Bytes, written as an integer: 512, not 512.0")),
        );
    let card = card(true)
        .property("type", word(&["card"]))
        .required("type");
    OneOfBuilder::new().item(media).item(card).into()
}

/// The members both kinds of event share.
fn common(kind: &str) -> ObjectBuilder {
    let id = or_null(text(&ID_CHARS)).description(Some(
        "Idempotency key, unique per bot: the same (bot, id) is counted once; made by \
         the server when absent",
    ));
    let ts = ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Null]))
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .pattern(Some("^(?:19[7-9][0-9]|[2-9][0-9]{3})-"))
        .description(Some(
            "RFC 3339, not before 1970-01-01T00:00:00Z and at most 5 minutes after the \
             server receives it (a rule of the moment, which a schema cannot state); the \
             time of receipt when absent",
        ));
    let slug = || {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(SLUG_PATTERN))
    };
    ObjectBuilder::new()
        .property("id", id)
        .property("bot", slug())
        .required("bot")
        .property("type", word(&[kind]))
        .required("type")
        .property(
            "provider",
            slug().description(Some("The channel: telegram, web, …")),
        )
        .required("provider")
        .property("user", schema_ref("IngestUser"))
        .required("user")
        .property("ts", ts)
}

/// A `message`: text and attachments between a user and the bot.
fn message(limits: &Limits) -> Schema {
    let max_text = limits.max_text_bytes;
    common("message")
        .description(Some("A message between a user and the bot"))
        .property("direction", word(&["in", "out"]))
        .required("direction")
        .property("text", message_text(max_text))
        .property(
            "attachments",
            ArrayBuilder::new()
                .schema_type(SchemaType::Array(vec![Type::Array, Type::Null]))
                .items(schema_ref("IngestAttachment"))
                .max_items(Some(MAX_ATTACHMENTS)),
        )
        .property(
            "sender",
            AnyOfBuilder::new()
                .item(schema_ref("IngestSender"))
                .item(ObjectBuilder::new().schema_type(Type::Null)),
        )
        .into()
}

/// A `user` event: a profile update without a message (no direction, text,
/// attachments or sender).
fn profile() -> Schema {
    let nothing = || ObjectBuilder::new().schema_type(Type::Null);
    common("user")
        .description(Some(
            "A profile update: the fields of `user`, without a message",
        ))
        .property("direction", nothing())
        .property("text", nothing())
        .property(
            "attachments",
            ArrayBuilder::new()
                .schema_type(SchemaType::Array(vec![Type::Array, Type::Null]))
                .max_items(Some(0)),
        )
        .property("sender", nothing())
        .into()
}

/// The body of `POST /api/v1/events`: one event, or an array of them. Members the
/// validator does not read are ignored.
pub struct IngestBody;

impl utoipa::PartialSchema for IngestBody {
    fn schema() -> RefOr<Schema> {
        let limits = Limits::default();
        OneOfBuilder::new()
            .item(schema_ref("IngestEvent"))
            .item(
                ArrayBuilder::new()
                    .items(schema_ref("IngestEvent"))
                    .min_items(Some(1))
                    .max_items(Some(limits.max_batch_events)),
            )
            .description(Some(format!(
                "One event, or an array of 1 to {} events; at most {} bytes per event \
                 and {} bytes per request (413 beyond)",
                limits.max_batch_events, limits.max_event_bytes, limits.max_batch_bytes
            )))
            .into()
    }
}

impl utoipa::ToSchema for IngestBody {
    fn name() -> Cow<'static, str> {
        "IngestBody".into()
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        let limits = Limits::default();
        let event = OneOfBuilder::new()
            .item(schema_ref("IngestMessage"))
            .item(schema_ref("IngestProfile"))
            .description(Some("An event as bots and adapters send it"));
        for (name, schema) in [
            ("IngestEvent", Schema::from(event)),
            ("IngestMessage", message(&limits)),
            ("IngestProfile", profile()),
            ("IngestUser", user()),
            ("IngestSender", sender()),
            ("IngestAttachment", attachment()),
        ] {
            schemas.push((name.to_owned(), RefOr::T(schema)));
        }
    }
}

/// A card an operator sends (`POST …/messages`, a broadcast): what serde reads and the
/// validator then checks.
pub struct OperatorCard;

impl utoipa::PartialSchema for OperatorCard {
    fn schema() -> RefOr<Schema> {
        RefOr::T(card(false).into())
    }
}

impl utoipa::ToSchema for OperatorCard {
    fn name() -> Cow<'static, str> {
        "OperatorCard".into()
    }
}
