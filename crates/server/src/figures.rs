//! The figures the aggregator keeps: bots, statistics, top messages, one dialog.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_aggregator::{BucketSize, Mode, StatsBucket, UserFigures};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::AppState;
use crate::auth::Principal;
use crate::error::{ApiError, Query};
use crate::users::{hex, unhex};

pub(crate) fn rfc3339(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn stopped() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting_down",
        "the server is stopping",
    )
}

/// The figures of `user` of `bot`, or 404.
pub(crate) async fn known_user(
    state: &AppState,
    bot: &str,
    user: &str,
) -> Result<UserFigures, ApiError> {
    let (b, u) = (bot.to_owned(), user.to_owned());
    state
        .aggregator
        .query(move |a| a.bot(&b).and_then(|f| f.user(&u)))
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("bot {bot:?} has no user {user:?}"),
            )
        })
}

/// Who answers each `(bot, user)` right now, in one aggregator query: Auto for a bot
/// or user the figures do not know.
pub(crate) async fn modes(
    state: &AppState,
    dialogs: Vec<(String, String)>,
) -> Result<Vec<botwatch_aggregator::Mode>, ApiError> {
    state
        .aggregator
        .query(move |a| {
            dialogs
                .iter()
                .map(|(b, u)| {
                    a.bot(b)
                        .map_or(botwatch_aggregator::Mode::Auto, |f| f.mode(u))
                })
                .collect()
        })
        .await
        .map_err(|_| stopped())
}

/// Who answers `user` of `bot` right now ([`modes`] for one).
pub(crate) async fn mode_of(
    state: &AppState,
    bot: &str,
    user: &str,
) -> Result<botwatch_aggregator::Mode, ApiError> {
    let mut one = modes(state, vec![(bot.to_owned(), user.to_owned())]).await?;
    Ok(one.pop().unwrap_or(botwatch_aggregator::Mode::Auto))
}

pub(crate) fn no_bot(bot: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no bot {bot:?}"),
    )
}

/// A date of the years 1970 to 9999 (no event can fall outside them).
fn date(name: &str, value: &str) -> Result<NaiveDate, ApiError> {
    use chrono::Datelike;
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .filter(|d| (1970..=9999).contains(&d.year()))
        .ok_or_else(|| {
            ApiError::bad_parameter(name, "expected a date, YYYY-MM-DD, from 1970 to 9999")
        })
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BotItem {
    id: String,
}

/// `GET /api/v1/bots`: the bots that have events.
#[utoipa::path(get, operation_id = "figures_bots", path = "/api/v1/bots", tag = "figures", responses((status = 200, body = Vec<crate::figures::BotItem>), (status = 401, body = crate::error::ErrorBody)))]
pub async fn bots(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Vec<BotItem>>, ApiError> {
    let bots = state
        .aggregator
        .query(|a| a.bots().into_iter().map(str::to_owned).collect::<Vec<_>>())
        .await
        .map_err(|_| stopped())?;
    Ok(Json(
        bots.into_iter()
            .filter(|b| principal.may_read(b))
            .map(|id| BotItem { id })
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
pub struct StatsQuery {
    from: Option<String>,
    to: Option<String>,
    bucket: Option<String>,
}

/// The bucket sizes and the most days a range may span in each.
const BUCKETS: [(&str, BucketSize, i64); 3] = [
    ("hour", BucketSize::Hour, 31),
    ("day", BucketSize::Day, 400),
    ("week", BucketSize::Week, 5 * 366),
];

impl utoipa::IntoParams for StatsQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::openapi::rules::{date, parameter, word};
        use utoipa::openapi::path::ParameterIn::Query;
        let spans: Vec<String> = BUCKETS
            .iter()
            .map(|(name, _, days)| format!("{name}: {days}"))
            .collect();
        let names: Vec<&str> = BUCKETS.iter().map(|(name, _, _)| *name).collect();
        vec![
            parameter(
                Query,
                "from",
                true,
                "The first day, in the bot's zone",
                date(),
            ),
            parameter(
                Query,
                "to",
                true,
                &format!(
                    "The last day (inclusive), not before `from`; the range spans at most \
                     so many days per bucket size ({})",
                    spans.join(", ")
                ),
                date(),
            ),
            parameter(Query, "bucket", false, "day when absent", word(&names)),
        ]
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StatsAnswer {
    tz: String,
    buckets: Vec<BucketItem>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BucketItem {
    start: String,
    messages_in: u64,
    messages_out: u64,
    users_new: u64,
    users_existing: u64,
    users_active: u64,
    sessions: u64,
}

impl From<StatsBucket> for BucketItem {
    fn from(b: StatsBucket) -> BucketItem {
        BucketItem {
            start: rfc3339(b.start_ms),
            messages_in: b.messages_in,
            messages_out: b.messages_out,
            users_new: b.users_new,
            users_existing: b.users_existing,
            users_active: b.users_active,
            sessions: b.sessions,
        }
    }
}

/// `GET /api/v1/bots/{bot}/stats?from=&to=&bucket=`: `to` inclusive, dates in the
/// bot's zone, empty buckets included.
#[instrument(name = "stats", skip(state, query))]
#[utoipa::path(get, operation_id = "figures_stats", path = "/api/v1/bots/{bot}/stats", tag = "figures", params(("bot" = String, Path, description = "The bot (a slug)"), crate::figures::StatsQuery), responses((status = 200, body = crate::figures::StatsAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn stats(
    State(state): State<AppState>,
    Path(bot): Path<String>,
    Query(query): Query<StatsQuery>,
) -> Result<Json<StatsAnswer>, ApiError> {
    let (Some(from), Some(to)) = (query.from.as_deref(), query.to.as_deref()) else {
        return Err(ApiError::bad_parameter(
            "from, to",
            "both are required (YYYY-MM-DD)",
        ));
    };
    let (from, to) = (date("from", from)?, date("to", to)?);
    let bucket = query.bucket.as_deref().unwrap_or("day");
    let Some(&(_, size, max_days)) = BUCKETS.iter().find(|(name, _, _)| *name == bucket) else {
        return Err(ApiError::bad_parameter(
            "bucket",
            "expected hour, day or week",
        ));
    };
    let days = (to - from).num_days() + 1;
    if days < 1 {
        return Err(ApiError::bad_parameter("to", "must not be before from"));
    }
    if days > max_days {
        return Err(ApiError::bad_parameter(
            "from, to",
            format!("at most {max_days} days for this bucket size"),
        ));
    }
    let missing = bot.clone();
    let answer = state
        .aggregator
        .query(move |a| {
            a.bot(&bot).map(|figures| StatsAnswer {
                tz: figures.settings().tz.name().to_owned(),
                buckets: figures
                    .stats(from, to, size)
                    .into_iter()
                    .map(BucketItem::from)
                    .collect(),
            })
        })
        .await
        .map_err(|_| stopped())?;
    answer.map(Json).ok_or_else(|| no_bot(&missing))
}

#[derive(Debug, Deserialize)]
pub struct TopQuery {
    from: Option<String>,
    to: Option<String>,
    limit: Option<String>,
}

/// Messages `top-messages` lists when the client does not say, and at most.
const TOP_LIMIT: (usize, usize) = (20, 100);

impl utoipa::IntoParams for TopQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::openapi::rules::{date, page_limit, parameter};
        use utoipa::openapi::path::ParameterIn::Query;
        vec![
            parameter(
                Query,
                "from",
                false,
                "The first day, in the bot's zone; 29 days before `to` when absent",
                date(),
            ),
            parameter(
                Query,
                "to",
                false,
                "The last day (inclusive), not before `from`; today when absent",
                date(),
            ),
            page_limit(TOP_LIMIT.0, TOP_LIMIT.1),
        ]
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TopItem {
    text: String,
    count: u64,
}

impl TopItem {
    pub(crate) fn list(top: Vec<(String, u64)>) -> Vec<TopItem> {
        top.into_iter()
            .map(|(text, count)| TopItem { text, count })
            .collect()
    }
}

/// `GET /api/v1/bots/{bot}/top-messages?from=&to=&limit=`: what users send most
/// often; by default over the last 30 days.
#[instrument(name = "top_messages", skip(state, query))]
#[utoipa::path(get, operation_id = "figures_top_messages", path = "/api/v1/bots/{bot}/top-messages", tag = "figures", params(("bot" = String, Path, description = "The bot (a slug)"), crate::figures::TopQuery), responses((status = 200, body = Vec<crate::figures::TopItem>), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn top_messages(
    State(state): State<AppState>,
    Path(bot): Path<String>,
    Query(query): Query<TopQuery>,
) -> Result<Json<Vec<TopItem>>, ApiError> {
    let limit = ApiError::limit(query.limit.as_deref(), TOP_LIMIT.0, TOP_LIMIT.1)?;
    let from = query.from.as_deref().map(|d| date("from", d)).transpose()?;
    let to = query.to.as_deref().map(|d| date("to", d)).transpose()?;
    if let (Some(from), Some(to)) = (from, to)
        && from > to
    {
        return Err(ApiError::bad_parameter("to", "must not be before from"));
    }
    let missing = bot.clone();
    let top = state
        .aggregator
        .query(move |a| {
            a.bot(&bot).map(|figures| {
                let today = Utc::now()
                    .with_timezone(&figures.settings().tz)
                    .date_naive();
                let to = to.unwrap_or(today);
                let from = from.unwrap_or(to - chrono::Duration::days(29));
                figures.top_messages(from, to, limit)
            })
        })
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(&missing))?;
    Ok(Json(
        top.into_iter()
            .map(|(text, count)| TopItem { text, count })
            .collect(),
    ))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DialogAnswer {
    user: DialogUser,
    mode: &'static str,
    last: Option<String>,
    messages: u64,
    sessions: u64,
    /// The user asked for a human (or the bot handed off) and no operator has taken
    /// the dialog since; null otherwise.
    handoff: Option<HandoffView>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HandoffView {
    at: String,
    /// The user's message that asked, or the reason the bot gave.
    reason: Option<String>,
    /// `user` (a hand-off phrase) or `bot` (the bot handed off through the API).
    by: &'static str,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DialogUser {
    id: String,
    name: Option<String>,
    avatar: Option<String>,
    provider: Option<String>,
    first_seen: Option<String>,
}

/// `GET /api/v1/bots/{bot}/dialogs/{user}`: what a bot asks about one user.
#[instrument(name = "dialog", skip(state))]
#[utoipa::path(get, operation_id = "figures_dialog", path = "/api/v1/bots/{bot}/dialogs/{user}", tag = "dialogs", params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id")), responses((status = 200, body = crate::figures::DialogAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn dialog(
    State(state): State<AppState>,
    Path((bot, user)): Path<(String, String)>,
) -> Result<Json<DialogAnswer>, ApiError> {
    Ok(Json(DialogAnswer::from(
        known_user(&state, &bot, &user).await?,
    )))
}

impl From<UserFigures> for DialogAnswer {
    fn from(f: UserFigures) -> DialogAnswer {
        DialogAnswer {
            user: DialogUser {
                id: f.id,
                name: f.name,
                avatar: f.avatar,
                provider: f.provider,
                first_seen: f.first_seen_ms.map(rfc3339),
            },
            mode: f.mode.as_str(),
            last: f.last_ms.map(rfc3339),
            messages: f.messages,
            sessions: f.sessions,
            handoff: f.handoff.map(|h| HandoffView {
                at: rfc3339(h.ms),
                reason: h.reason,
                by: if h.by_bot { "bot" } else { "user" },
            }),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DialogsQuery {
    mode: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Dialogs a page lists when the client does not say, and at most.
const DIALOGS_LIMIT: (usize, usize) = (50, 200);

impl utoipa::IntoParams for DialogsQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::openapi::rules::{
            UTF8_HEX, cursor, empty_means_absent, page_limit, parameter, word,
        };
        use utoipa::openapi::path::ParameterIn::Query;
        vec![
            empty_means_absent(parameter(
                Query,
                "mode",
                false,
                "Only dialogs in this mode; all when absent or empty",
                word(&["auto", "manual"]),
            )),
            page_limit(DIALOGS_LIMIT.0, DIALOGS_LIMIT.1),
            // `encode_cursor`: the last message's time in milliseconds, a dot, the user's
            // id in hex.
            cursor(
                "cursor",
                "Where the previous page ended: its `next`, as it was given",
                format!(r"^-?[0-9]{{1,18}}\.{UTF8_HEX}$"),
            ),
        ]
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DialogsAnswer {
    items: Vec<DialogItem>,
    next: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DialogItem {
    #[serde(flatten)]
    dialog: DialogAnswer,
    /// The latest message of the dialog, from the history index.
    preview: Option<Preview>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Preview {
    text: Option<String>,
    direction: Option<botwatch_event::Direction>,
    attachments: usize,
}

impl Preview {
    pub(crate) fn of(e: &botwatch_event::Event) -> Preview {
        Preview {
            text: e.text.clone(),
            direction: e.direction,
            attachments: e.attachments.len(),
        }
    }
}

impl DialogItem {
    pub(crate) fn new(f: UserFigures, preview: Option<Preview>) -> DialogItem {
        DialogItem {
            dialog: DialogAnswer::from(f),
            preview,
        }
    }
}

/// Opaque to clients: the last message time and the user id in hex (URL-safe).
fn encode_cursor(c: &botwatch_aggregator::DialogCursor) -> String {
    format!("{}.{}", c.last_ms, hex(c.user.as_bytes()))
}

fn decode_cursor(s: &str) -> Option<botwatch_aggregator::DialogCursor> {
    let (last, user) = s.split_once('.')?;
    Some(botwatch_aggregator::DialogCursor {
        last_ms: last.parse().ok()?,
        user: String::from_utf8(unhex(user)?).ok()?,
    })
}

/// `GET /api/v1/bots/{bot}/dialogs?mode=auto|manual&limit=&cursor=`: the latest
/// dialogs first, each with its last message.
#[instrument(name = "dialogs", skip(state, query))]
#[utoipa::path(get, operation_id = "figures_dialogs", path = "/api/v1/bots/{bot}/dialogs", tag = "dialogs", params(("bot" = String, Path, description = "The bot (a slug)"), crate::figures::DialogsQuery), responses((status = 200, body = crate::figures::DialogsAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn dialogs(
    State(state): State<AppState>,
    Path(bot): Path<String>,
    Query(query): Query<DialogsQuery>,
) -> Result<Json<DialogsAnswer>, ApiError> {
    use botwatch_log::EventLog;

    let limit = ApiError::limit(query.limit.as_deref(), DIALOGS_LIMIT.0, DIALOGS_LIMIT.1)?;
    let mode = match query.mode.as_deref() {
        None | Some("") => None,
        Some("auto") => Some(Mode::Auto),
        Some("manual") => Some(Mode::Manual),
        Some(_) => return Err(ApiError::bad_parameter("mode", "expected auto or manual")),
    };
    let cursor =
        match query.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(decode_cursor(c).ok_or_else(|| {
                ApiError::bad_parameter("cursor", "not a cursor returned as `next`")
            })?),
        };
    let missing = bot.clone();
    let b = bot.clone();
    let (page, next) = state
        .aggregator
        .query(move |a| a.bot(&b).map(|f| f.dialogs(cursor.as_ref(), limit, mode)))
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(&missing))?;
    let mut items = Vec::with_capacity(page.len());
    for f in page {
        let latest = state.log.history(&bot, &f.id, None, 1).await?;
        let preview = latest.entries.first().map(|e| Preview::of(&e.event));
        items.push(DialogItem::new(f, preview));
    }
    Ok(Json(DialogsAnswer {
        items,
        next: next.as_ref().map(encode_cursor),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_any_user_id() {
        let c = botwatch_aggregator::DialogCursor {
            last_ms: 1_780_000_000_123,
            user: "a.b&c=Олена".to_owned(),
        };
        assert_eq!(decode_cursor(&encode_cursor(&c)), Some(c));
        assert_eq!(decode_cursor("12.zz"), None);
        assert_eq!(decode_cursor("nope"), None);
    }
}
