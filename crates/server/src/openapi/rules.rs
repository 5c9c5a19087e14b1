//! The pieces of the document that say what the handlers check, built from the
//! constants they check against: query parameters (page sizes, dates, words, cursors),
//! the headers of a WebSocket upgrade and the shapes of names. The handlers' and types'
//! annotations use them, so a rule is written once in code and once here, side by side.

use botwatch_event::schema::{CONTROL, SPACE};
pub(crate) use botwatch_event::schema::{or_null, text, word};
use serde_json::{Value, json};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Required, Schema};

/// A parameter in `place` named `name`.
pub(crate) fn parameter(
    place: ParameterIn,
    name: &str,
    required: bool,
    description: &str,
    schema: impl Into<RefOr<Schema>>,
) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(if required {
            Required::True
        } else {
            Required::False
        })
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An optional query parameter whose empty value (`limit=`, as a form sends a field
/// left blank) means the same as leaving it out: OpenAPI's `allowEmptyValue`, which
/// utoipa has no field for.
pub(crate) fn empty_means_absent(mut parameter: Parameter) -> Parameter {
    parameter
        .extensions
        .get_or_insert_with(Extensions::default)
        .insert("allowEmptyValue".to_owned(), json!(true));
    parameter
}

/// `limit`: a page of 1 to `max` items, `default` when absent or empty
/// ([`crate::error::ApiError::limit`]).
pub(crate) fn page_limit(default: usize, max: usize) -> Parameter {
    empty_means_absent(parameter(
        ParameterIn::Query,
        "limit",
        false,
        &format!("Items per page, 1 to {max}; {default} when absent or empty"),
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(max)),
    ))
}

/// A query parameter that may be repeated (`tag=a&tag=b`), each value of `item` (an
/// empty one, which a form sends for a field left blank, is passed over).
pub(crate) fn repeated(name: &str, description: &str, item: ObjectBuilder) -> Parameter {
    let mut parameter = parameter(
        ParameterIn::Query,
        name,
        false,
        description,
        ArrayBuilder::new().items(item),
    );
    parameter.style = Some(ParameterStyle::Form);
    parameter.explode = Some(true);
    parameter
}

/// A day as the figures' handlers read it (`figures::date`): `YYYY-MM-DD` of the years
/// 1970 to 9999, a day that exists.
pub(crate) fn date() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Date)))
        .pattern(Some(r"^(19[7-9][0-9]|[2-9][0-9]{3})-[0-9]{2}-[0-9]{2}$"))
}

/// The hex digits of any UTF-8 text, two per byte, as cursors carry a user's id
/// (`users::hex`): the byte sequences UTF-8 allows and nothing else, so that a cursor
/// the schema takes decodes to text.
pub(crate) const UTF8_HEX: &str = concat!(
    "(?:",
    "[0-7][0-9a-fA-F]",
    "|[cC][2-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[dD][0-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[eE]0[abAB][0-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[eE][1-9a-cA-CeEfF][89abAB][0-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[eE][dD][89][0-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[fF]0[9abAB][0-9a-fA-F][89abAB][0-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[fF][1-3][89abAB][0-9a-fA-F][89abAB][0-9a-fA-F][89abAB][0-9a-fA-F]",
    "|[fF]48[0-9a-fA-F][89abAB][0-9a-fA-F][89abAB][0-9a-fA-F]",
    ")*"
);

/// A cursor: an opaque string of the shape `pattern`, `next` of an earlier page.
pub(crate) fn cursor(name: &str, description: &str, pattern: String) -> Parameter {
    empty_means_absent(parameter(
        ParameterIn::Query,
        name,
        false,
        description,
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(pattern)),
    ))
}

/// A role's or tag's name (`botwatch_event::audience::name_problem`): no white space at
/// either end, no control character; its length is the caller's.
pub(crate) fn name_pattern() -> String {
    format!("^[^{SPACE}{CONTROL}](?:[^{CONTROL}]*[^{SPACE}{CONTROL}])?$")
}

/// A string of 1 to `max` characters that [`name_pattern`] takes.
pub(crate) fn name(min: usize, max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(name_pattern()))
}

/// An object with `member`, not null: a branch of an `anyOf` or `oneOf` that says which
/// members a request gives (their shapes are the object's own schema's).
pub(crate) fn given(member: &str) -> ObjectBuilder {
    let not_null = with_keyword(
        ObjectBuilder::new().schema_type(utoipa::openapi::schema::SchemaType::AnyValue),
        "not",
        json!({"type": "null"}),
    );
    ObjectBuilder::new()
        .property(member, not_null)
        .required(member)
}

/// A JSON Schema keyword utoipa has no builder for (`dependentRequired`, `not`, …),
/// added to an object schema.
pub(crate) fn with_keyword(schema: ObjectBuilder, keyword: &str, value: Value) -> ObjectBuilder {
    let mut built = schema.build();
    built
        .extensions
        .get_or_insert_with(Extensions::default)
        .insert(keyword.to_owned(), value);
    ObjectBuilder::from(built)
}

/// The headers a WebSocket upgrade needs, as axum's `WebSocketUpgrade` checks them: a
/// request without them is answered 400.
pub(crate) struct UpgradeHeaders;

impl utoipa::IntoParams for UpgradeHeaders {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        upgrade_headers()
    }
}

fn upgrade_headers() -> Vec<Parameter> {
    let header = |name: &str, description: &str, schema: ObjectBuilder| {
        parameter(ParameterIn::Header, name, true, description, schema)
    };
    let text = || ObjectBuilder::new().schema_type(Type::String);
    vec![
        header(
            "Connection",
            "Holds `upgrade`, in any case (axum looks for the word anywhere in it)",
            text().pattern(Some("[uU][pP][gG][rR][aA][dD][eE]")),
        ),
        header(
            "Upgrade",
            "`websocket` (any case)",
            text().pattern(Some("^[wW][eE][bB][sS][oO][cC][kK][eE][tT]$")),
        ),
        header(
            "Sec-WebSocket-Version",
            "The WebSocket protocol's version",
            word(&["13"]),
        ),
        header(
            "Sec-WebSocket-Key",
            "Any value: the answer's Sec-WebSocket-Accept is made from it",
            text(),
        ),
    ]
}
