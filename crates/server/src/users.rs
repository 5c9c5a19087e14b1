//! The users table (`GET /api/v1/bots/{bot}/users`) and one user's profile
//! (`GET /api/v1/bots/{bot}/users/{user}`).

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use botwatch_aggregator::{
    CursorKey, Mode, UserCursor, UserFigures, UserFilter, UserSort, UsersQuery,
};
use serde::Serialize;
use serde_json::json;
use tracing::instrument;

use crate::AppState;
use crate::error::ApiError;
use crate::figures::{no_bot, rfc3339, stopped};

/// Rows of a page when the client does not say.
const DEFAULT_LIMIT: usize = 50;
/// The most rows one page may ask for.
const MAX_LIMIT: usize = 200;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UserItem {
    id: String,
    name: Option<String>,
    avatar: Option<String>,
    provider: Option<String>,
    gender: Option<String>,
    role: Option<String>,
    tags: Vec<String>,
    subscriber: bool,
    /// `auto` or `manual`.
    #[schema(value_type = String)]
    mode: Mode,
    /// Information fields operators keep (phone, email, custom ones).
    fields: BTreeMap<String, String>,
    messages: u64,
    sessions: u64,
    last: Option<String>,
    first_seen: Option<String>,
}

impl From<UserFigures> for UserItem {
    fn from(f: UserFigures) -> UserItem {
        UserItem {
            id: f.id,
            name: f.name,
            avatar: f.avatar,
            provider: f.provider,
            gender: f.gender,
            role: f.role,
            tags: f.tags,
            subscriber: f.subscriber,
            mode: f.mode,
            fields: f.fields.into_iter().collect(),
            messages: f.messages,
            sessions: f.sessions,
            last: f.last_ms.map(rfc3339),
            first_seen: f.first_seen_ms.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FacetsItem {
    provider: BTreeMap<String, u64>,
    tag: BTreeMap<String, u64>,
    role: BTreeMap<String, u64>,
    subscriber: u64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsersAnswer {
    items: Vec<UserItem>,
    total: u64,
    next: Option<String>,
    facets: FacetsItem,
}

fn sort_name(sort: UserSort) -> &'static str {
    match sort {
        UserSort::Last => "last",
        UserSort::Messages => "messages",
        UserSort::Sessions => "sessions",
        UserSort::Name => "name",
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Opaque to clients: the sort and order it belongs to, the row's key and its user.
fn encode_cursor(sort: UserSort, descending: bool, c: &UserCursor) -> String {
    let key = match &c.key {
        CursorKey::Number(n) => format!("n{n}"),
        CursorKey::Text(t) => format!("t{}", hex(t)),
    };
    let order = if descending { "desc" } else { "asc" };
    format!(
        "{}.{order}.{key}.{}",
        sort_name(sort),
        hex(c.user.as_bytes())
    )
}

fn decode_cursor(s: &str, sort: UserSort, descending: bool) -> Result<UserCursor, ApiError> {
    let bad = || ApiError::bad_parameter("cursor", "not a cursor returned as `next`");
    let mut parts = s.split('.');
    let (Some(cursor_sort), Some(order), Some(key), Some(user), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(bad());
    };
    if cursor_sort != sort_name(sort) || order != if descending { "desc" } else { "asc" } {
        return Err(ApiError::bad_parameter(
            "cursor",
            "belongs to another sort or order; start again without a cursor",
        ));
    }
    // Names sort by text, everything else by number.
    let key = match (key.get(..1), key.get(1..), sort == UserSort::Name) {
        (Some("n"), Some(n), false) => CursorKey::Number(n.parse().map_err(|_| bad())?),
        (Some("t"), Some(t), true) => CursorKey::Text(unhex(t).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    let user = unhex(user)
        .and_then(|u| String::from_utf8(u).ok())
        .ok_or_else(bad)?;
    Ok(UserCursor { key, user })
}

/// The filter parameters of the users table (the rest are sort and paging).
const FILTERS: [&str; 6] = ["search", "provider", "tag", "role", "subscriber", "mode"];

/// [`filter_from_json`]'s filter, as the document states it: each of [`FILTERS`] a
/// value, null, or a list of values (text or true/false); `subscriber` and `mode` take
/// their parameters' words.
pub(crate) fn filter_schema() -> utoipa::openapi::schema::ObjectBuilder {
    use crate::openapi::rules::word;
    use utoipa::openapi::schema::{
        AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type,
    };
    use utoipa::openapi::{RefOr, Schema};
    let values = |one: RefOr<Schema>| {
        AnyOfBuilder::new()
            .item(one.clone())
            .item(ObjectBuilder::new().schema_type(Type::Null))
            .item(ArrayBuilder::new().items(one))
    };
    let any = || -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::Array(vec![Type::String, Type::Boolean]))
            .into()
    };
    let subscriber: RefOr<Schema> = ObjectBuilder::new()
        .schema_type(SchemaType::Array(vec![Type::String, Type::Boolean]))
        .enum_values(Some([
            json!(true),
            json!(false),
            json!("true"),
            json!("false"),
            json!(""),
        ]))
        .into();
    let mut filter = ObjectBuilder::new()
        .description(Some(
            "The users table's filters: each a value or a list of values (repeated, they OR)",
        ))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    for name in FILTERS {
        let one = match name {
            "subscriber" => subscriber.clone(),
            "mode" => word(&["auto", "manual", ""]).into(),
            _ => any(),
        };
        filter = filter.property(name, values(one));
    }
    filter
}

/// A filter given as JSON (bulk edits, broadcasts): `{"provider":"telegram"}` or
/// `{"tag":["a","b"],"subscriber":true}`, the same names and rules as the users table's
/// parameters.
pub(crate) fn filter_from_json(value: &serde_json::Value) -> Result<UserFilter, ApiError> {
    let serde_json::Value::Object(map) = value else {
        return Err(ApiError::bad_parameter("filter", "expected an object"));
    };
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in map {
        if !FILTERS.contains(&name.as_str()) {
            return Err(ApiError::bad_parameter(
                "filter",
                format!(
                    "unknown filter {name:?}; expected one of {}",
                    FILTERS.join(", ")
                ),
            ));
        }
        let values = match value {
            serde_json::Value::Array(values) => values.clone(),
            serde_json::Value::Null => Vec::new(),
            one => vec![one.clone()],
        };
        for v in values {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Bool(b) => b.to_string(),
                other => {
                    return Err(ApiError::bad_parameter(
                        "filter",
                        format!("{name}: expected text or true/false, found {other}"),
                    ));
                }
            };
            query.append_pair(name, &text);
        }
    }
    Ok(parse_query(Some(&query.finish()))?.filter)
}

/// The users table's filters as the document states them ([`parse_query`] reads them).
pub struct FilterParams;

impl utoipa::IntoParams for FilterParams {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::openapi::rules::{empty_means_absent, parameter, repeated, word};
        use utoipa::openapi::path::ParameterIn::Query;
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        let text = || ObjectBuilder::new().schema_type(Type::String);
        vec![
            parameter(
                Query,
                "search",
                false,
                "Any part of the name, any case",
                text(),
            ),
            repeated("provider", "Repeat to OR", text()),
            repeated("tag", "A tag's name; repeat to OR", text()),
            repeated("role", "A role's name; repeat to OR", text()),
            empty_means_absent(parameter(
                Query,
                "subscriber",
                false,
                "Only subscribers (true) or only the others (false)",
                ObjectBuilder::new().schema_type(Type::Boolean),
            )),
            repeated("mode", "Repeat to OR", word(&["auto", "manual", ""])),
        ]
    }
}

/// The users table's filters, sort and paging.
pub struct UsersParams;

impl utoipa::IntoParams for UsersParams {
    fn into_params(
        parameter_in: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::openapi::rules::{
            UTF8_HEX, cursor, empty_means_absent, page_limit, parameter, word,
        };
        use utoipa::openapi::path::ParameterIn::Query;
        let mut params = FilterParams::into_params(parameter_in);
        params.extend([
            empty_means_absent(parameter(
                Query,
                "sort",
                false,
                "last when absent or empty",
                word(&["last", "messages", "sessions", "name"]),
            )),
            empty_means_absent(parameter(
                Query,
                "order",
                false,
                "When absent or empty: asc for name, desc for the others",
                word(&["asc", "desc"]),
            )),
            page_limit(DEFAULT_LIMIT, MAX_LIMIT),
            // `encode_cursor`: sort, order, the row's key (a number, or for names text
            // in hex) and the user's id in hex. It is taken only with the sort and order
            // it was made for, which a schema cannot tie to those parameters.
            cursor(
                "cursor",
                "Where the previous page ended: its `next`, as it was given, with the same \
                 `sort` and `order`",
                format!(
                    r"^(?:name\.(?:asc|desc)\.t(?:[0-9a-fA-F]{{2}})*|(?:last|messages|sessions)\.(?:asc|desc)\.n-?[0-9]{{1,18}})\.{UTF8_HEX}$"
                ),
            ),
        ]);
        params
    }
}

/// Reads the users table's parameters; repeated filter parameters OR together.
pub(crate) fn parse_query(raw: Option<&str>) -> Result<UsersQuery, ApiError> {
    let mut filter = UserFilter::default();
    let (mut sort, mut order, mut limit, mut cursor) = (None, None, None, None);
    for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let value = value.into_owned();
        match &*name {
            "search" => filter.search = Some(value).filter(|v| !v.trim().is_empty()),
            "provider" if !value.is_empty() => filter.providers.push(value),
            "tag" if !value.is_empty() => filter.tags.push(value),
            "role" if !value.is_empty() => filter.roles.push(value),
            "subscriber" => {
                filter.subscriber = match &*value {
                    "" => None,
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => {
                        return Err(ApiError::bad_parameter(
                            "subscriber",
                            "expected true or false",
                        ));
                    }
                }
            }
            "mode" => match &*value {
                "" => {}
                "auto" => filter.modes.push(Mode::Auto),
                "manual" => filter.modes.push(Mode::Manual),
                _ => return Err(ApiError::bad_parameter("mode", "expected auto or manual")),
            },
            // An empty value (a form sending every field) means the default.
            "sort" | "order" | "limit" if value.is_empty() => {}
            "sort" => {
                sort = Some(match &*value {
                    "last" => UserSort::Last,
                    "messages" => UserSort::Messages,
                    "sessions" => UserSort::Sessions,
                    "name" => UserSort::Name,
                    _ => {
                        return Err(ApiError::bad_parameter(
                            "sort",
                            "expected last, messages, sessions or name",
                        ));
                    }
                })
            }
            "order" => {
                order = Some(match &*value {
                    "asc" => false,
                    "desc" => true,
                    _ => return Err(ApiError::bad_parameter("order", "expected asc or desc")),
                })
            }
            "limit" => limit = Some(ApiError::limit(Some(&value), DEFAULT_LIMIT, MAX_LIMIT)?),
            "cursor" => cursor = Some(value).filter(|c| !c.is_empty()),
            _ => {}
        }
    }
    let sort = sort.unwrap_or(UserSort::Last);
    // Names read A to Z; figures and times biggest and latest first.
    let descending = order.unwrap_or(sort != UserSort::Name);
    let after = cursor
        .map(|c| decode_cursor(&c, sort, descending))
        .transpose()?;
    Ok(UsersQuery {
        filter,
        sort,
        descending,
        limit: limit.unwrap_or(DEFAULT_LIMIT),
        after,
    })
}

/// `GET /api/v1/bots/{bot}/users?search=&provider=&tag=&role=&subscriber=&mode=
/// &sort=&order=&limit=&cursor=`: a page of the users table, the total that match and
/// the facet counts.
#[instrument(name = "users", skip(state, raw))]
#[utoipa::path(get, operation_id = "users_users", path = "/api/v1/bots/{bot}/users", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), crate::users::UsersParams), responses((status = 200, body = crate::users::UsersAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn users(
    State(state): State<AppState>,
    Path(bot): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<UsersAnswer>, ApiError> {
    let query = parse_query(raw.as_deref())?;
    let (sort, descending) = (query.sort, query.descending);
    let b = bot.clone();
    let page = state
        .aggregator
        .query(move |a| a.bot(&b).map(|f| f.users(&query)))
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(&bot))?;
    Ok(Json(UsersAnswer {
        items: page.items.into_iter().map(UserItem::from).collect(),
        total: page.total,
        next: page
            .next
            .as_ref()
            .map(|c| encode_cursor(sort, descending, c)),
        facets: FacetsItem {
            provider: page.facets.provider.into_iter().collect(),
            tag: page.facets.tag.into_iter().collect(),
            role: page.facets.role.into_iter().collect(),
            subscriber: page.facets.subscriber,
        },
    }))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProfileAnswer {
    #[serde(flatten)]
    user: UserItem,
    lang: Option<String>,
    auto_mode: bool,
}

/// `GET /api/v1/bots/{bot}/users/{user}`: one user's profile, as bots read it.
#[instrument(name = "user", skip(state))]
#[utoipa::path(get, operation_id = "users_user", path = "/api/v1/bots/{bot}/users/{user}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id")), responses((status = 200, body = crate::users::ProfileAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn user(
    State(state): State<AppState>,
    Path((bot, user)): Path<(String, String)>,
) -> Result<Json<ProfileAnswer>, ApiError> {
    let figures = crate::figures::known_user(&state, &bot, &user).await?;
    Ok(Json(ProfileAnswer::from(figures)))
}

impl From<UserFigures> for ProfileAnswer {
    fn from(figures: UserFigures) -> ProfileAnswer {
        let lang = figures.lang.clone();
        let auto_mode = figures.mode == Mode::Auto;
        ProfileAnswer {
            user: UserItem::from(figures),
            lang,
            auto_mode,
        }
    }
}

/// Rows an export takes from the figures at once (between them, ingest goes on).
const EXPORT_CHUNK: usize = 2_000;

/// The export's fixed columns; the information fields of the users exported follow.
const CSV_COLUMNS: [&str; 12] = [
    "id",
    "name",
    "provider",
    "gender",
    "role",
    "tags",
    "subscriber",
    "mode",
    "messages",
    "sessions",
    "last",
    "first_seen",
];

/// A cell as a spreadsheet may read it: text that would start a formula (`=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading apostrophe, so it stays text.
fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}").into()
    } else {
        cell.into()
    }
}

fn csv_row(f: &UserFigures, fields: &[String]) -> Vec<String> {
    let mut row = vec![
        f.id.clone(),
        f.name.clone().unwrap_or_default(),
        f.provider.clone().unwrap_or_default(),
        f.gender.clone().unwrap_or_default(),
        f.role.clone().unwrap_or_default(),
        f.tags.join("; "),
        f.subscriber.to_string(),
        f.mode.as_str().to_owned(),
        f.messages.to_string(),
        f.sessions.to_string(),
        f.last_ms.map(rfc3339).unwrap_or_default(),
        f.first_seen_ms.map(rfc3339).unwrap_or_default(),
    ];
    row.extend(
        fields
            .iter()
            .map(|k| f.fields.get(k).cloned().unwrap_or_default()),
    );
    row.into_iter()
        .map(|c| spreadsheet_safe(&c).into_owned())
        .collect()
}

fn csv_line(cells: &[String]) -> Result<Vec<u8>, csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(cells)?;
    w.into_inner().map_err(|e| e.into_error().into())
}

/// `GET /api/v1/bots/{bot}/users.csv?<the users table's filters>`: every user the
/// filters let through, as CSV (UTF-8 with a byte-order mark, for spreadsheets),
/// streamed in chunks.
#[instrument(name = "users.csv", skip(state, raw))]
#[utoipa::path(get, operation_id = "users_csv", path = "/api/v1/bots/{bot}/users.csv", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), crate::users::FilterParams), responses((status = 200, description = "The selection as CSV", content_type = "text/csv"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn users_csv(
    State(state): State<AppState>,
    Path(bot): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    use futures_util::StreamExt;
    let filter = parse_query(raw.as_deref())?.filter;
    let b = bot.clone();
    let (ids, fields) = state
        .aggregator
        .query(move |a| {
            let f = a.bot(&b)?;
            let ids = f.select(&filter);
            let mut fields = std::collections::BTreeSet::new();
            for id in &ids {
                if let Some(u) = f.user(id) {
                    fields.extend(u.fields.into_keys());
                }
            }
            Some((ids, fields.into_iter().collect::<Vec<String>>()))
        })
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(&bot))?;
    let mut header: Vec<String> = CSV_COLUMNS.iter().map(|c| (*c).to_owned()).collect();
    header.extend(fields.iter().map(|f| spreadsheet_safe(f).into_owned()));
    let mut first = "\u{feff}".as_bytes().to_vec();
    first.extend(csv_line(&header).map_err(|e| ApiError::internal(&e.to_string()))?);
    let rows = ids.len();
    // A slug: safe in a header as it is.
    let disposition = format!("attachment; filename=\"{bot}-users.csv\"");
    let aggregator = state.aggregator.clone();
    let chunks = futures_util::stream::iter(
        ids.chunks(EXPORT_CHUNK)
            .map(<[String]>::to_vec)
            .collect::<Vec<_>>(),
    )
    .then(move |chunk| {
        let (aggregator, bot, fields) = (aggregator.clone(), bot.clone(), fields.clone());
        async move {
            let users = aggregator
                .query(move |a| {
                    let f = a.bot(&bot);
                    chunk
                        .iter()
                        .filter_map(|id| f.and_then(|f| f.user(id)))
                        .collect::<Vec<_>>()
                })
                .await
                .map_err(|_| std::io::Error::other("the server is stopping"))?;
            let mut out = Vec::new();
            for u in &users {
                out.extend(csv_line(&csv_row(u, &fields)).map_err(std::io::Error::other)?);
            }
            Ok::<_, std::io::Error>(bytes::Bytes::from(out))
        }
    });
    let body =
        futures_util::stream::once(async move { Ok(bytes::Bytes::from(first)) }).chain(chunks);
    tracing::info!(rows, "users exported");
    Ok((
        [
            (
                axum::http::header::CONTENT_TYPE,
                "text/csv; charset=utf-8".to_owned(),
            ),
            (axum::http::header::CONTENT_DISPOSITION, disposition),
        ],
        axum::body::Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_belong_to_their_sort() {
        for (sort, key) in [
            (UserSort::Messages, CursorKey::Number(-5)),
            (UserSort::Name, CursorKey::Text("олена".as_bytes().to_vec())),
        ] {
            let c = UserCursor {
                key,
                user: "a.b&c=Олена".to_owned(),
            };
            let s = encode_cursor(sort, false, &c);
            assert_eq!(decode_cursor(&s, sort, false).ok(), Some(c));
            assert!(decode_cursor(&s, sort, true).is_err());
            let other = if sort == UserSort::Name {
                UserSort::Messages
            } else {
                UserSort::Name
            };
            assert!(decode_cursor(&s, other, false).is_err());
        }
        // A key of the wrong kind for its sort is refused, not read as the start.
        assert!(decode_cursor("name.asc.n5.00", UserSort::Name, false).is_err());
        assert!(decode_cursor("last.desc.t61.00", UserSort::Last, true).is_err());
        for bad in [
            "",
            "name.asc",
            "name.asc.x1.00",
            "name.asc.n1.0",
            "name.asc.n1.00.00",
        ] {
            assert!(decode_cursor(bad, UserSort::Name, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn filters_repeat_and_defaults_follow_the_sort() {
        let q = parse_query(Some(
            "provider=telegram&provider=viber&search=%D0%9E%D0%BB&sort=name",
        ))
        .expect("valid");
        assert_eq!(q.filter.providers, ["telegram", "viber"]);
        assert_eq!(q.filter.search.as_deref(), Some("Ол"));
        assert!(!q.descending, "names A to Z by default");
        assert!(parse_query(None).expect("valid").descending);
        let blank = parse_query(Some("sort=&order=&limit=&search=")).expect("defaults");
        assert_eq!(
            (blank.sort, blank.limit, blank.descending),
            (UserSort::Last, 50, true)
        );
        for bad in [
            "limit=0",
            "limit=201",
            "sort=age",
            "order=up",
            "subscriber=yes",
            "mode=x",
        ] {
            assert!(parse_query(Some(bad)).is_err(), "{bad}");
        }
    }
}
