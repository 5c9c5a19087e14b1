//! Editing the audience: a user's profile, role, tags, Subscriber flag and Auto mode
//! (`PATCH …/users/{user}`), the same for many users at once (`POST …/users/bulk`),
//! and the bot's roles and tags (`…/roles`, `…/tags`).
//!
//! Every edit is an `audience` event in the log (a switch of mode a `mode_changed`), so
//! it replays, reaches every node and is audited; the figures apply it like any event.
//! Users and edits name roles and tags by a key that never changes; the API speaks
//! their names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_aggregator::{LabelInfo, Mode, UserFilter};
use botwatch_event::audience::{LABEL_NAME_CHARS, name_problem};
use botwatch_event::{AudienceChange, Event, EventKind, Label, LabelOf, UserEdit};
use botwatch_log::EventLog;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{info, instrument};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::figures::{no_bot, stopped};
use crate::users::ProfileAnswer;

/// How long a request waits for this node's figures to show its own edit.
const APPLIED_WITHIN: Duration = Duration::from_secs(3);
/// Events a bulk edit appends at once.
const BULK_CHUNK: usize = 1_000;
/// Ids one bulk request may name.
const MAX_BULK_IDS: usize = 100_000;

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

fn body<T: for<'de> Deserialize<'de>>(bytes: &[u8], shape: &str) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| bad("bad_request", format!("expected {shape}: {e}")))
}

/// A new `audience` event of botwatch's.
fn audience_event(bot: &str, provider: &str, user: &str, change: AudienceChange) -> Event {
    let id = format!("aud-{}", uuid::Uuid::now_v7());
    Event {
        audience: Some(change),
        ..Event::about_dialog(id, EventKind::Audience, bot, provider, user)
    }
}

/// Waits (a bounded time) until this node's figures applied audience event `id`.
async fn wait_until_applied(state: &AppState, bot: &str, id: &str) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + APPLIED_WITHIN;
    loop {
        let (b, i) = (bot.to_owned(), id.to_owned());
        let seen = state
            .aggregator
            .query(move |a| a.bot(&b).is_some_and(|f| f.saw_audience_event(&i)))
            .await
            .map_err(|_| stopped())?;
        if seen || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The bot's roles or tags, or 404 for a bot botwatch does not know.
async fn labels(state: &AppState, bot: &str, of: LabelOf) -> Result<Vec<LabelInfo>, ApiError> {
    let b = bot.to_owned();
    state
        .aggregator
        .query(move |a| a.bot(&b).map(|f| f.labels(of)))
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(bot))
}

/// The key a new use of `name` gets: the lowest of the labels with that name (the list
/// is sorted by name, then key).
fn key_of(labels: &[LabelInfo], name: &str) -> Option<String> {
    labels
        .iter()
        .find(|l| l.name == name)
        .map(|l| l.key.clone())
}

/// Every key named `name` (two labels may share a name when created at once).
fn keys_of(labels: &[LabelInfo], name: &str) -> Vec<String> {
    labels
        .iter()
        .filter(|l| l.name == name)
        .map(|l| l.key.clone())
        .collect()
}

fn what(of: LabelOf) -> &'static str {
    match of {
        LabelOf::Role => "role",
        LabelOf::Tag => "tag",
    }
}

/// A change of many users, in the API's words (names, not keys).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkSet {
    /// A role's name; null or empty: no role.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<String>)]
    role: Option<Option<String>>,
    subscriber: Option<bool>,
    auto_mode: Option<bool>,
}

/// Tells a member given as null (`Some(None)`) from one left out (`None`).
fn some_or_null<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// `PATCH …/users/{user}`: every member present is set.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Stands over the name channels send; empty or null: theirs again.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(schema_with = profile_name)]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(schema_with = profile_gender)]
    gender: Option<Option<String>>,
    /// A role's name (one of `GET …/roles`); null or empty: no role.
    #[serde(default, deserialize_with = "some_or_null")]
    #[schema(value_type = Option<String>)]
    role: Option<Option<String>>,
    /// The user's tags, whole (names of `GET …/tags`).
    tags: Option<Vec<String>>,
    subscriber: Option<bool>,
    auto_mode: Option<bool>,
    /// Information fields (phone, email, custom ones) to set; null or empty removes one.
    #[schema(schema_with = information_fields)]
    fields: Option<BTreeMap<String, Option<String>>>,
}

/// Text an operator sets over a channel's, as `UserEdit::problem` takes it: at most
/// `max` characters and no control character; null or empty gives the channels' back.
fn profile_text(max: usize) -> utoipa::openapi::schema::ObjectBuilder {
    use botwatch_event::schema::CONTROL;
    crate::openapi::rules::or_null(
        crate::openapi::rules::text(&(0..=max)).pattern(Some(format!("^[^{CONTROL}]*$"))),
    )
}

fn profile_name() -> utoipa::openapi::schema::ObjectBuilder {
    profile_text(botwatch_event::audience::PROFILE_NAME_CHARS)
}

fn profile_gender() -> utoipa::openapi::schema::ObjectBuilder {
    profile_text(botwatch_event::audience::PROFILE_GENDER_CHARS)
}

/// `fields` of a patch, as `UserEdit::problem` takes them: names like a label's, values
/// of up to 1,024 characters without control characters (a line break is allowed), at
/// most 50 (counted with the user's own, which a schema cannot see).
fn information_fields() -> utoipa::openapi::schema::ObjectBuilder {
    use crate::openapi::rules::{name, or_null, text};
    use botwatch_event::audience::{FIELD_NAME_CHARS, FIELD_VALUE_CHARS, MAX_FIELDS};
    use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder};
    let value = or_null(
        text(&FIELD_VALUE_CHARS).pattern(Some(r"^[^\u0000-\u0009\u000b-\u001f\u007f-\u009f]*$")),
    );
    or_null(
        ObjectBuilder::new()
            .property_names(Some(name(
                *FIELD_NAME_CHARS.start(),
                *FIELD_NAME_CHARS.end(),
            )))
            .additional_properties(Some(AdditionalProperties::RefOr(value.into())))
            .max_properties(Some(MAX_FIELDS)),
    )
}

/// A well-formed request that names what the bot does not have (yet): 409, as the
/// request conflicts with what is stored, not with the API's rules.
fn unknown(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// The role's key for a name given (`Some(None)`: no role); 409 for a role the bot
/// does not have.
fn role_key(roles: &[LabelInfo], role: Option<Option<String>>) -> Result<Option<String>, ApiError> {
    Ok(match role {
        None => None,
        Some(None) => Some(String::new()),
        Some(Some(name)) if name.is_empty() => Some(String::new()),
        Some(Some(name)) => Some(key_of(roles, &name).ok_or_else(|| {
            unknown(
                "unknown_role",
                format!("the bot has no role {name:?}; create it first (POST …/roles)"),
            )
        })?),
    })
}

fn tag_keys(tags: &[LabelInfo], names: &[String]) -> Result<Vec<String>, ApiError> {
    names
        .iter()
        .map(|name| {
            key_of(tags, name).ok_or_else(|| {
                unknown(
                    "unknown_tag",
                    format!("the bot has no tag {name:?}; create it first (POST …/tags)"),
                )
            })
        })
        .collect()
}

fn checked(edit: UserEdit) -> Result<UserEdit, ApiError> {
    match edit.problem() {
        None => Ok(edit),
        Some((field, reason)) => Err(bad("bad_request", format!("{field}: {reason}"))),
    }
}

/// Edits one user; answers the profile as it now stands.
#[instrument(name = "user.patch", skip(state, principal, bytes))]
#[utoipa::path(patch, operation_id = "users_patch", path = "/api/v1/bots/{bot}/users/{user}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id")), request_body(content = crate::audience::UserPatch), responses((status = 200, body = crate::users::ProfileAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn patch_user(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bot, user)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<ProfileAnswer>, ApiError> {
    let patch: UserPatch = body(
        &bytes,
        "an object of name, gender, role, tags, subscriber, auto_mode, fields",
    )?;
    let known = crate::figures::known_user(&state, &bot, &user).await?;
    let roles = labels(&state, &bot, LabelOf::Role).await?;
    let tags = labels(&state, &bot, LabelOf::Tag).await?;
    let mut edit = UserEdit {
        name: patch.name.map(Option::unwrap_or_default),
        gender: patch.gender.map(Option::unwrap_or_default),
        role: role_key(&roles, patch.role)?,
        subscriber: patch.subscriber,
        fields: patch
            .fields
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect(),
        ..UserEdit::default()
    };
    if let Some(wanted) = &patch.tags {
        tag_keys(&tags, wanted)?;
        // The keys the user carries: a name is kept under the key it has.
        let (b, u) = (bot.clone(), user.clone());
        let current: BTreeSet<String> = state
            .aggregator
            .query(move |a| a.bot(&b).map(|f| f.tag_keys(&u)).unwrap_or_default())
            .await
            .map_err(|_| stopped())?
            .into_iter()
            .collect();
        let wanted: BTreeSet<String> = wanted
            .iter()
            .filter_map(|name| {
                let mine = keys_of(&tags, name)
                    .into_iter()
                    .find(|k| current.contains(k));
                mine.or_else(|| key_of(&tags, name))
            })
            .collect();
        edit.add_tags = wanted.difference(&current).cloned().collect();
        edit.remove_tags = current.difference(&wanted).cloned().collect();
    }
    let fields_after = known
        .fields
        .keys()
        .chain(edit.fields.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|k| edit.fields.get(*k).is_none_or(|v| !v.is_empty()))
        .count();
    if fields_after > botwatch_event::audience::MAX_FIELDS {
        return Err(bad(
            "bad_request",
            format!(
                "fields: a user may have {} at most; this would make {fields_after}",
                botwatch_event::audience::MAX_FIELDS
            ),
        ));
    }
    let edit = checked(edit)?;
    let provider = known.provider.as_deref().unwrap_or("botwatch");
    if edit != UserEdit::default() {
        let event = crate::outbox::checked_own(
            &state,
            audience_event(&bot, provider, &user, AudienceChange::Edit(edit)),
        )?;
        let id = event.id.clone();
        state.log.append(vec![event]).await?;
        wait_until_applied(&state, &bot, &id).await?;
    }
    if let Some(auto) = patch.auto_mode {
        let mode = if auto { Mode::Auto } else { Mode::Manual };
        if known.mode != mode {
            crate::modes::switch(
                &state,
                &principal,
                &bot,
                &user,
                known.provider.clone(),
                mode,
            )
            .await?;
        }
    }
    info!(bot, user, operator = principal.actor(), "user edited");
    let detail = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
    crate::session::audit(
        &state,
        &principal,
        "user.edit",
        Some(&bot),
        json!({ "user": user, "set": detail }),
    )
    .await?;
    Ok(Json(ProfileAnswer::from(
        crate::figures::known_user(&state, &bot, &user).await?,
    )))
}

/// `POST …/users/bulk`: which users, and what to change.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// These users (unknown ids are passed over)…
    ids: Option<Vec<String>>,
    /// …or every user this filter lets through (the users table's filters: each a
    /// value or a list of values).
    filter: Option<serde_json::Value>,
    #[serde(default)]
    set: BulkSet,
    /// Tags' names.
    #[serde(default)]
    add_tags: Vec<String>,
    #[serde(default)]
    remove_tags: Vec<String>,
}

impl utoipa::PartialSchema for BulkRequest {
    /// Its members; then either `ids` or `filter`, and something to change (`set` with a
    /// role, or a Subscriber flag or a mode, or tags to add or remove).
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use crate::openapi::rules::{given, or_null};
        use utoipa::openapi::schema::{
            AdditionalProperties, AllOfBuilder, AnyOfBuilder, ArrayBuilder, ObjectBuilder,
            OneOfBuilder, SchemaType, Type,
        };
        let names = || {
            ArrayBuilder::new()
                .items(ObjectBuilder::new().schema_type(Type::String))
                .max_items(Some(botwatch_event::audience::MAX_TAGS_PER_EDIT))
        };
        let members = ObjectBuilder::new()
            .property(
                "ids",
                ArrayBuilder::new()
                    .schema_type(utoipa::openapi::schema::SchemaType::Array(vec![
                        Type::Array,
                        Type::Null,
                    ]))
                    .items(ObjectBuilder::new().schema_type(Type::String))
                    .max_items(Some(MAX_BULK_IDS))
                    .description(Some(
                        "These users (ids the bot does not have are passed over)…",
                    )),
            )
            .property(
                "filter",
                or_null(crate::users::filter_schema())
                    .description(Some("…or every user this filter lets through")),
            )
            .property("set", utoipa::openapi::Ref::from_schema_name("BulkSet"))
            .property(
                "add_tags",
                names().description(Some(
                    "Tags' names (each one the bot has: 409 otherwise), none also in remove_tags",
                )),
            )
            .property("remove_tags", names().description(Some("Tags' names")))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let null = || ObjectBuilder::new().schema_type(Type::Null);
        let whom = OneOfBuilder::new()
            .item(given("ids").property("filter", null()))
            .item(given("filter").property("ids", null()));
        let any = || ObjectBuilder::new().schema_type(SchemaType::AnyValue);
        let set = ObjectBuilder::new()
            .property(
                "set",
                AnyOfBuilder::new()
                    .item(
                        ObjectBuilder::new()
                            .property("role", any())
                            .required("role"),
                    )
                    .item(given("subscriber"))
                    .item(given("auto_mode")),
            )
            .required("set");
        let some_tags = |member: &str| {
            ObjectBuilder::new()
                .property(
                    member,
                    ArrayBuilder::new()
                        .items(ObjectBuilder::new().schema_type(Type::String))
                        .min_items(Some(1)),
                )
                .required(member)
        };
        let change = AnyOfBuilder::new()
            .item(set)
            .item(some_tags("add_tags"))
            .item(some_tags("remove_tags"));
        AllOfBuilder::new()
            .item(members)
            .item(whom)
            .item(change)
            .into()
    }
}

impl utoipa::ToSchema for BulkRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push(("BulkSet".to_owned(), BulkSet::schema()));
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BulkAnswer {
    /// Users the change was applied to.
    updated: u64,
}

/// The users a bulk request or a broadcast names: ids that the bot has, in the order
/// given, or those `filter` lets through.
pub(crate) async fn chosen_users(
    state: &AppState,
    bot: &str,
    ids: Option<Vec<String>>,
    filter: Option<UserFilter>,
) -> Result<Vec<(String, Option<String>, Mode)>, ApiError> {
    let b = bot.to_owned();
    state
        .aggregator
        .query(move |a| {
            let f = a.bot(&b)?;
            let ids = match (ids, filter) {
                (Some(ids), _) => ids,
                (None, Some(filter)) => f.select(&filter),
                (None, None) => f.select(&UserFilter::default()),
            };
            let mut seen = BTreeSet::new();
            Some(
                ids.into_iter()
                    .filter(|id| seen.insert(id.clone()))
                    .filter_map(|id| {
                        let (provider, mode) = f.provider_and_mode(&id)?;
                        Some((id, provider, mode))
                    })
                    .collect(),
            )
        })
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(bot))
}

/// Changes many users at once.
#[instrument(name = "users.bulk", skip(state, principal, bytes))]
#[utoipa::path(post, operation_id = "users_bulk", path = "/api/v1/bots/{bot}/users/bulk", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), request_body(content = crate::audience::BulkRequest), responses((status = 200, body = crate::audience::BulkAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn bulk(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(bot): Path<String>,
    bytes: Bytes,
) -> Result<Json<BulkAnswer>, ApiError> {
    let request: BulkRequest = body(
        &bytes,
        r#"{"ids":[…]} or {"filter":{…}}, with "set", "add_tags", "remove_tags""#,
    )?;
    let filter = match (&request.ids, &request.filter) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(bad("bad_request", "give either ids or filter"));
        }
        (Some(ids), None) if ids.len() > MAX_BULK_IDS => {
            return Err(bad(
                "bad_request",
                format!("at most {MAX_BULK_IDS} ids; use a filter for more"),
            ));
        }
        (_, Some(f)) => Some(crate::users::filter_from_json(f)?),
        (Some(_), None) => None,
    };
    let roles = labels(&state, &bot, LabelOf::Role).await?;
    let tags = labels(&state, &bot, LabelOf::Tag).await?;
    if let Some(both) = request
        .add_tags
        .iter()
        .find(|t| request.remove_tags.contains(t))
    {
        return Err(bad(
            "bad_request",
            format!("{both:?} is both in add_tags and in remove_tags"),
        ));
    }
    tag_keys(&tags, &request.remove_tags)?;
    let edit = checked(UserEdit {
        role: role_key(&roles, request.set.role)?,
        subscriber: request.set.subscriber,
        add_tags: tag_keys(&tags, &request.add_tags)?,
        // Every label of each name (two may share one).
        remove_tags: request
            .remove_tags
            .iter()
            .flat_map(|name| keys_of(&tags, name))
            .collect(),
        ..UserEdit::default()
    })?;
    let mode = request
        .set
        .auto_mode
        .map(|auto| if auto { Mode::Auto } else { Mode::Manual });
    if edit == UserEdit::default() && mode.is_none() {
        return Err(bad(
            "bad_request",
            "nothing to change: give set, add_tags or remove_tags",
        ));
    }
    let users = chosen_users(&state, &bot, request.ids, filter).await?;
    let mut last = None;
    for chunk in users.chunks(BULK_CHUNK) {
        let mut events = Vec::with_capacity(chunk.len() * 2);
        for (user, provider, current) in chunk {
            let provider = provider.as_deref().unwrap_or("botwatch");
            if edit != UserEdit::default() {
                let event = crate::outbox::checked_own(
                    &state,
                    audience_event(&bot, provider, user, AudienceChange::Edit(edit.clone())),
                )?;
                last = Some(event.id.clone());
                events.push(event);
            }
            if let Some(mode) = mode.filter(|m| m != current) {
                events.push(crate::modes::mode_event(
                    &principal, &bot, user, provider, mode,
                ));
            }
        }
        let switched: Vec<Event> = events
            .iter()
            .filter(|e| e.kind == EventKind::ModeChanged)
            .cloned()
            .collect();
        state.log.append(events).await?;
        for e in &switched {
            crate::modes::announce(&state, &principal, e);
        }
    }
    if let Some(id) = last {
        wait_until_applied(&state, &bot, &id).await?;
    }
    let updated = users.len() as u64;
    info!(
        bot,
        updated,
        operator = principal.actor(),
        "users edited in bulk"
    );
    let detail = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
    crate::session::audit(
        &state,
        &principal,
        "users.bulk",
        Some(&bot),
        json!({ "request": detail, "updated": updated }),
    )
    .await?;
    Ok(Json(BulkAnswer { updated }))
}

/// A role or tag as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LabelItem {
    name: String,
    /// Users who carry it.
    users: u64,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    #[schema(schema_with = label_name)]
    name: String,
}

/// A role's or tag's name as [`check_name`] takes it.
fn label_name() -> utoipa::openapi::schema::ObjectBuilder {
    crate::openapi::rules::name(*LABEL_NAME_CHARS.start(), *LABEL_NAME_CHARS.end())
        .description(Some("No white space at either end, no control characters"))
}

async fn list(state: &AppState, bot: &str, of: LabelOf) -> Result<Vec<LabelItem>, ApiError> {
    let b = bot.to_owned();
    let (labels, counts) = state
        .aggregator
        .query(move |a| {
            let f = a.bot(&b)?;
            let facets = f
                .users(&botwatch_aggregator::UsersQuery {
                    filter: UserFilter::default(),
                    sort: botwatch_aggregator::UserSort::Last,
                    descending: true,
                    limit: 0,
                    after: None,
                })
                .facets;
            let counts = match of {
                LabelOf::Role => facets.role,
                LabelOf::Tag => facets.tag,
            };
            Some((f.labels(of), counts.into_iter().collect::<BTreeMap<_, _>>()))
        })
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(bot))?;
    let mut items: Vec<LabelItem> = labels
        .into_iter()
        .map(|l| LabelItem {
            users: counts.get(&l.name).copied().unwrap_or(0),
            name: l.name,
        })
        .collect();
    // Two labels sharing a name are one to readers.
    items.dedup_by(|a, b| a.name == b.name);
    Ok(items)
}

/// Appends label events (define, rename, delete; one per key) and waits to see them
/// applied.
async fn change_labels(
    state: &AppState,
    principal: &Principal,
    bot: &str,
    labels: Vec<Label>,
    action: &str,
    detail: serde_json::Value,
) -> Result<(), ApiError> {
    let events = labels
        .into_iter()
        .map(|label| {
            let event = audience_event(bot, "botwatch", "", AudienceChange::Label(label));
            crate::outbox::checked_own(state, event)
        })
        .collect::<Result<Vec<Event>, ApiError>>()?;
    let last = events.last().map(|e| e.id.clone());
    state.log.append(events).await?;
    if let Some(id) = last {
        wait_until_applied(state, bot, &id).await?;
    }
    crate::session::audit(state, principal, action, Some(bot), detail).await
}

fn check_name(name: &str) -> Result<(), ApiError> {
    match name_problem(name, LABEL_NAME_CHARS) {
        None => Ok(()),
        Some(reason) => Err(bad("bad_request", format!("name: {reason}"))),
    }
}

async fn create(
    state: AppState,
    principal: Principal,
    bot: String,
    of: LabelOf,
    bytes: Bytes,
) -> Result<(StatusCode, Json<LabelItem>), ApiError> {
    let LabelRequest { name } = body(&bytes, r#"{"name":…}"#)?;
    check_name(&name)?;
    let existing = labels(&state, &bot, of).await?;
    if key_of(&existing, &name).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("the bot already has a {} {name:?}", what(of)),
        ));
    }
    let prefix = if of == LabelOf::Role { "r" } else { "t" };
    let key = format!("{prefix}-{}", uuid::Uuid::new_v4().simple());
    let label = Label {
        of,
        key,
        name: Some(name.clone()),
    };
    let action = format!("{}.create", what(of));
    change_labels(
        &state,
        &principal,
        &bot,
        vec![label],
        &action,
        json!({ "name": name }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(LabelItem { name, users: 0 })))
}

/// The keys of the label named in the path (one, or more when two share the name), or
/// 404.
async fn existing_keys(
    state: &AppState,
    bot: &str,
    of: LabelOf,
    name: &str,
) -> Result<Vec<String>, ApiError> {
    let keys = keys_of(&labels(state, bot, of).await?, name);
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the bot has no {} {name:?}", what(of)),
        ));
    }
    Ok(keys)
}

async fn rename(
    state: AppState,
    principal: Principal,
    (bot, name): (String, String),
    of: LabelOf,
    bytes: Bytes,
) -> Result<Json<LabelItem>, ApiError> {
    let LabelRequest { name: new } = body(&bytes, r#"{"name":…}"#)?;
    check_name(&new)?;
    let keys = existing_keys(&state, &bot, of, &name).await?;
    let existing = labels(&state, &bot, of).await?;
    if new != name && key_of(&existing, &new).is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "exists",
            format!("the bot already has a {} {new:?}", what(of)),
        ));
    }
    let renamed = keys
        .into_iter()
        .map(|key| Label {
            of,
            key,
            name: Some(new.clone()),
        })
        .collect();
    let action = format!("{}.rename", what(of));
    change_labels(
        &state,
        &principal,
        &bot,
        renamed,
        &action,
        json!({ "from": name, "to": new }),
    )
    .await?;
    let users = list(&state, &bot, of)
        .await?
        .into_iter()
        .find(|l| l.name == new)
        .map_or(0, |l| l.users);
    Ok(Json(LabelItem { name: new, users }))
}

async fn delete(
    state: AppState,
    principal: Principal,
    (bot, name): (String, String),
    of: LabelOf,
) -> Result<StatusCode, ApiError> {
    let deleted = existing_keys(&state, &bot, of, &name)
        .await?
        .into_iter()
        .map(|key| Label {
            of,
            key,
            name: None,
        })
        .collect();
    let action = format!("{}.delete", what(of));
    change_labels(
        &state,
        &principal,
        &bot,
        deleted,
        &action,
        json!({ "name": name }),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The bot's roles, with how many users carry each.
#[instrument(name = "roles.list", skip(state))]
#[utoipa::path(get, operation_id = "roles_list", path = "/api/v1/bots/{bot}/roles", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), responses((status = 200, body = Vec<crate::audience::LabelItem>), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn roles(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Json<Vec<LabelItem>>, ApiError> {
    Ok(Json(list(&state, &bot, LabelOf::Role).await?))
}

/// The bot's tags, with how many users carry each.
#[instrument(name = "tags.list", skip(state))]
#[utoipa::path(get, operation_id = "tags_list", path = "/api/v1/bots/{bot}/tags", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), responses((status = 200, body = Vec<crate::audience::LabelItem>), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn tags(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Json<Vec<LabelItem>>, ApiError> {
    Ok(Json(list(&state, &bot, LabelOf::Tag).await?))
}

/// Creates a role.
#[instrument(name = "roles.create", skip(state, principal, bytes))]
#[utoipa::path(post, operation_id = "roles_create", path = "/api/v1/bots/{bot}/roles", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), request_body(content = crate::audience::LabelRequest), responses((status = 201, body = crate::audience::LabelItem), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_role(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(bot): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<LabelItem>), ApiError> {
    create(state, principal, bot, LabelOf::Role, bytes).await
}

/// Creates a tag.
#[instrument(name = "tags.create", skip(state, principal, bytes))]
#[utoipa::path(post, operation_id = "tags_create", path = "/api/v1/bots/{bot}/tags", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), request_body(content = crate::audience::LabelRequest), responses((status = 201, body = crate::audience::LabelItem), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn create_tag(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(bot): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<LabelItem>), ApiError> {
    create(state, principal, bot, LabelOf::Tag, bytes).await
}

/// Renames a role: every user who has it keeps it under the new name.
#[instrument(name = "roles.rename", skip(state, principal, bytes))]
#[utoipa::path(patch, operation_id = "roles_rename", path = "/api/v1/bots/{bot}/roles/{name}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("name" = String, Path, description = "The role's name")), request_body(content = crate::audience::LabelRequest), responses((status = 200, body = crate::audience::LabelItem), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn rename_role(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<LabelItem>, ApiError> {
    rename(state, principal, path, LabelOf::Role, bytes).await
}

/// Renames a tag: every user who has it keeps it under the new name.
#[instrument(name = "tags.rename", skip(state, principal, bytes))]
#[utoipa::path(patch, operation_id = "tags_rename", path = "/api/v1/bots/{bot}/tags/{name}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("name" = String, Path, description = "The tag's name")), request_body(content = crate::audience::LabelRequest), responses((status = 200, body = crate::audience::LabelItem), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn rename_tag(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Json<LabelItem>, ApiError> {
    rename(state, principal, path, LabelOf::Tag, bytes).await
}

/// Deletes a role: every user who had it has none.
#[instrument(name = "roles.delete", skip(state, principal))]
#[utoipa::path(delete, operation_id = "roles_delete", path = "/api/v1/bots/{bot}/roles/{name}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("name" = String, Path, description = "The role's name")), responses((status = 204, description = "Deleted"), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_role(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(state, principal, path, LabelOf::Role).await
}

/// Deletes a tag: it leaves every user who had it.
#[instrument(name = "tags.delete", skip(state, principal))]
#[utoipa::path(delete, operation_id = "tags_delete", path = "/api/v1/bots/{bot}/tags/{name}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("name" = String, Path, description = "The tag's name")), responses((status = 204, description = "Deleted"), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_tag(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    delete(state, principal, path, LabelOf::Tag).await
}
