//! Broadcasts: one message to many users, each through their own channel.
//!
//! `POST …/broadcasts` chooses the recipients once (subscribers or all, within a
//! filter), keeps their list in the storage (`recipients-{id}`, never served) and
//! records a `broadcast` event. A runner on one node at a time (a lease,
//! `broadcast:{bot}:{id}`, taken over by another node when its holder stops) walks the
//! list at each provider's pace. For recipient number `n` it records the message
//! `bc-{id}-{n}` (pending, like an operator's) and delivers it through the outbox's
//! claim, so each user gets it at most once whatever stops when:
//! - a recipient whose message the figures know was handled before (sent, failed,
//!   skipped, or pending and then the sweeper's);
//! - a user in Manual mode is skipped (a `delivery` event saying so): an operator is
//!   talking to them;
//! - progress is what the figures count from those events, so every node shows it and
//!   a restart rebuilds it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_aggregator::{BroadcastFigures, Mode};
use botwatch_event::{BroadcastInfo, BroadcastState, Delivery, DeliveryState, Event, EventKind};
use botwatch_log::{ClaimStore, EventLog, FileStore, StoredFile};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, instrument, warn};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::figures::{no_bot, rfc3339, stopped};

/// How long a runner's lease lasts; it renews it well before.
const LEASE: Duration = Duration::from_secs(15);
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// How often every node looks for broadcasts nobody runs.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// Recipients whose being handled one aggregator query asks about.
const HANDLED_CHUNK: usize = 1_000;
/// Failures a broadcast's answer lists.
const FAILURES_LISTED: usize = 100;
/// How long the answer waits for this node's figures to show the new broadcast.
const APPLIED_WITHIN: Duration = Duration::from_secs(3);

/// Messages per second a broadcast sends through each provider: Telegram allows a bot
/// about 30 a second to different chats; bots' own webhooks and the web chat get a
/// pace that does not flood a small bot.
fn per_second(provider: &str) -> u32 {
    match provider {
        "telegram" => 25,
        "webchat" => 50,
        _ => 20,
    }
}

fn recipients_file(id: &str) -> String {
    format!("recipients-{id}")
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Users with the Subscriber flag.
    Subscribers,
    All,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BroadcastRequest {
    to: Audience,
    /// The users table's filters (`{"tag":["VIP"],"provider":"telegram"}`).
    filter: Option<Value>,
    text: Option<String>,
    card: Option<botwatch_event::Card>,
}

impl utoipa::PartialSchema for BroadcastRequest {
    /// Who (`to`, `filter`) and what (as an operator's message); a broadcast to
    /// subscribers cannot filter for non-subscribers.
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use crate::openapi::rules::{or_null, with_keyword, word};
        use utoipa::openapi::schema::{
            AdditionalProperties, AllOfBuilder, AnyOfBuilder, ObjectBuilder, SchemaType, Type,
        };
        let members = ObjectBuilder::new()
            .property("to", utoipa::openapi::Ref::from_schema_name("Audience"))
            .required("to")
            .property("filter", or_null(crate::users::filter_schema()))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let non_subscribers = json!({"anyOf": [
            {"enum": [false, "false"]},
            {"type": "array", "contains": {"enum": [false, "false"]}}
        ]});
        let subscribers_only = AnyOfBuilder::new()
            .item(ObjectBuilder::new().property("to", word(&["all"])))
            .item(ObjectBuilder::new().property(
                "filter",
                AnyOfBuilder::new()
                    .item(ObjectBuilder::new().schema_type(Type::Null))
                    .item(ObjectBuilder::new().property(
                        "subscriber",
                        with_keyword(
                            ObjectBuilder::new().schema_type(SchemaType::AnyValue),
                            "not",
                            non_subscribers,
                        ),
                    )),
            ))
            .description(Some(
                "To subscribers: the filter's subscriber is not false, nor false among a list of values",
            ));
        AllOfBuilder::new()
            .item(crate::outbox::message_members(members))
            .item(crate::outbox::message_content())
            .item(subscribers_only)
            .into()
    }
}

impl utoipa::ToSchema for BroadcastRequest {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        for (name, schema) in [
            (Audience::name(), Audience::schema()),
            (
                botwatch_event::schema::OperatorCard::name(),
                botwatch_event::schema::OperatorCard::schema(),
            ),
        ] {
            schemas.push((name.into_owned(), schema));
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastCreated {
    id: String,
    /// Recipients chosen (users in Manual mode among them are skipped when reached).
    total: u64,
}

/// A recipient the broadcast did not reach, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Failure {
    user: String,
    reason: String,
}

/// A broadcast and its progress.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct BroadcastItem {
    id: String,
    state: BroadcastState,
    total: u64,
    sent: u64,
    failed: u64,
    /// Users in Manual mode when their turn came.
    skipped: u64,
    created: String,
    /// `subscribers` or `all`.
    to: Option<String>,
    /// The filters it was started with.
    #[schema(value_type = Option<std::collections::BTreeMap<String, Value>>)]
    filter: Option<Value>,
    by: Option<String>,
    text: Option<String>,
    attachments: Vec<botwatch_event::Attachment>,
    /// On `GET …/broadcasts/{id}`: the first failures (at most 100).
    #[serde(skip_serializing_if = "Option::is_none")]
    failures: Option<Vec<Failure>>,
}

impl From<BroadcastFigures> for BroadcastItem {
    fn from(b: BroadcastFigures) -> BroadcastItem {
        let started: Option<Event> = serde_json::from_str(&b.started).ok();
        let info = started.as_ref().and_then(|e| e.broadcast.clone());
        BroadcastItem {
            id: b.id,
            state: b.state,
            total: b.total,
            sent: b.sent,
            failed: b.failed,
            skipped: b.skipped,
            created: rfc3339(b.ms),
            to: info.as_ref().and_then(|i| i.to.clone()),
            filter: info
                .as_ref()
                .and_then(|i| i.filter.as_deref())
                .and_then(|f| serde_json::from_str(f).ok()),
            by: info.and_then(|i| i.by),
            text: started.as_ref().and_then(|e| e.text.clone()),
            attachments: started.map(|e| e.attachments).unwrap_or_default(),
            failures: None,
        }
    }
}

/// `bot/{bot}/broadcasts` snapshot: every broadcast, the latest first; its deltas are
/// [`BroadcastDelta`]s.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BroadcastsSnapshot {
    pub items: Vec<BroadcastItem>,
    /// The loss of data the figures suffer from, until an operator clears it; null
    /// when there is none.
    pub data_loss: Option<crate::integrity::DataLossItem>,
}

/// `bot/{bot}/broadcasts` delta: one broadcast's progress.
#[derive(Serialize, utoipa::ToSchema)]
pub struct BroadcastDelta {
    pub broadcast: BroadcastItem,
}

fn bad(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// Starts a broadcast.
#[instrument(name = "broadcast.create", skip(state, principal, bytes))]
#[utoipa::path(post, operation_id = "broadcasts_create", path = "/api/v1/bots/{bot}/broadcasts", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), request_body(content = crate::broadcasts::BroadcastRequest), responses((status = 201, body = crate::broadcasts::BroadcastCreated), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(bot): Path<String>,
    bytes: Bytes,
) -> Result<(StatusCode, Json<BroadcastCreated>), ApiError> {
    let request: BroadcastRequest = serde_json::from_slice(&bytes).map_err(|e| {
        bad(
            "bad_request",
            format!(r#"expected {{"to":"subscribers"|"all","filter":{{…}},"text"|"card"}}: {e}"#),
        )
    })?;
    let mut filter = match &request.filter {
        Some(f) => crate::users::filter_from_json(f)?,
        None => botwatch_aggregator::UserFilter::default(),
    };
    if request.to == Audience::Subscribers {
        if filter.subscriber == Some(false) {
            return Err(bad(
                "bad_request",
                "a broadcast to subscribers cannot filter for non-subscribers",
            ));
        }
        filter.subscriber = Some(true);
    }
    let mut attachments = Vec::new();
    if let Some(card) = &request.card {
        let mut card = serde_json::to_value(card).unwrap_or_default();
        card["type"] = json!("card");
        attachments.push(card);
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    // The message as each recipient gets it, checked now by the log's rules.
    let sample = crate::outbox::message_event(
        &state,
        &principal.actor(),
        (&bot, "someone", "botwatch"),
        format!("bc-{id}-0"),
        Some(&id),
        (request.text.clone(), attachments.clone()),
    )?;
    // Checked before the recipients are chosen, so that what is wrong with the request
    // itself (400, 413) comes before what the audience lacks (409), and so that
    // nothing is stored for a broadcast the log would refuse. The count of recipients,
    // set after, is a number the log takes whatever it is.
    let mut event = crate::outbox::checked_own(
        &state,
        Event {
            text: sample.text,
            attachments: sample.attachments,
            broadcast: Some(BroadcastInfo {
                id: id.clone(),
                state: BroadcastState::Queued,
                total: 0,
                to: Some(
                    match request.to {
                        Audience::Subscribers => "subscribers",
                        Audience::All => "all",
                    }
                    .to_owned(),
                ),
                filter: request.filter.as_ref().map(Value::to_string),
                by: Some(principal.actor()),
            }),
            ..Event::about_dialog(
                format!("broadcast-{id}"),
                EventKind::Broadcast,
                &bot,
                "botwatch",
                "",
            )
        },
    )?;
    let users = crate::audience::chosen_users(&state, &bot, None, Some(filter)).await?;
    if users.is_empty() {
        // Well-formed, but the audience as it stands has nobody for it.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_recipients",
            "no user matches: nobody would receive this broadcast",
        ));
    }
    let total = users.len() as u64;
    if let Some(info) = event.broadcast.as_mut() {
        info.total = total;
    }
    let ids: Vec<&str> = users.iter().map(|(id, _, _)| id.as_str()).collect();
    state
        .log
        .put_file(
            &recipients_file(&id),
            &StoredFile {
                name: "recipients.json".to_owned(),
                mime: "application/json".to_owned(),
                bytes: serde_json::to_vec(&ids).unwrap_or_default(),
            },
        )
        .await?;
    state.log.append(vec![event]).await?;
    info!(
        bot,
        id,
        total,
        operator = principal.actor(),
        "broadcast started"
    );
    crate::session::audit(
        &state,
        &principal,
        "broadcast.create",
        Some(&bot),
        json!({ "id": id, "total": total, "to": request.to, "filter": request.filter }),
    )
    .await?;
    let deadline = tokio::time::Instant::now() + APPLIED_WITHIN;
    while !exists(&state, &bot, &id).await? && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    state.broadcast_runs.wake.notify_one();
    Ok((StatusCode::CREATED, Json(BroadcastCreated { id, total })))
}

/// Whether this node's figures know broadcast `id` (cheaper than [`find`]).
async fn exists(state: &AppState, bot: &str, id: &str) -> Result<bool, ApiError> {
    let (b, i) = (bot.to_owned(), id.to_owned());
    state
        .aggregator
        .query(move |a| a.bot(&b).is_some_and(|f| f.broadcast_state(&i).is_some()))
        .await
        .map_err(|_| stopped())
}

async fn find(state: &AppState, bot: &str, id: &str) -> Result<Option<BroadcastItem>, ApiError> {
    let (b, i) = (bot.to_owned(), id.to_owned());
    let found = state
        .aggregator
        .query(move |a| {
            let f = a.bot(&b)?;
            let figures = f.broadcast(&i)?;
            Some((figures, f.broadcast_failures(&i, FAILURES_LISTED)))
        })
        .await
        .map_err(|_| stopped())?;
    Ok(found.map(|(figures, failures)| BroadcastItem {
        failures: Some(
            failures
                .into_iter()
                .map(|(user, reason)| Failure { user, reason })
                .collect(),
        ),
        ..BroadcastItem::from(figures)
    }))
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no broadcast {id:?}"),
    )
}

/// The bot's broadcasts, the latest first.
#[instrument(name = "broadcast.list", skip(state))]
#[utoipa::path(get, operation_id = "broadcasts_list", path = "/api/v1/bots/{bot}/broadcasts", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)")), responses((status = 200, body = Vec<crate::broadcasts::BroadcastItem>), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Json<Vec<BroadcastItem>>, ApiError> {
    let b = bot.clone();
    let items = state
        .aggregator
        .query(move |a| a.bot(&b).map(|f| f.broadcasts()))
        .await
        .map_err(|_| stopped())?
        .ok_or_else(|| no_bot(&bot))?;
    Ok(Json(items.into_iter().map(BroadcastItem::from).collect()))
}

/// One broadcast's progress, with the first failures and their reasons.
#[instrument(name = "broadcast.get", skip(state))]
#[utoipa::path(get, operation_id = "broadcasts_get", path = "/api/v1/bots/{bot}/broadcasts/{id}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("id" = String, Path, description = "The broadcast")), responses((status = 200, body = crate::broadcasts::BroadcastItem), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path((bot, id)): Path<(String, String)>,
) -> Result<Json<BroadcastItem>, ApiError> {
    Ok(Json(
        find(&state, &bot, &id)
            .await?
            .ok_or_else(|| not_found(&id))?,
    ))
}

/// Cancels a broadcast: no recipient is started after this (one being sent finishes).
#[instrument(name = "broadcast.cancel", skip(state, principal))]
#[utoipa::path(delete, operation_id = "broadcasts_cancel", path = "/api/v1/bots/{bot}/broadcasts/{id}", tag = "audience", params(("bot" = String, Path, description = "The bot (a slug)"), ("id" = String, Path, description = "The broadcast")), responses((status = 200, body = crate::broadcasts::BroadcastItem), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bot, id)): Path<(String, String)>,
) -> Result<Json<BroadcastItem>, ApiError> {
    let current = find(&state, &bot, &id)
        .await?
        .ok_or_else(|| not_found(&id))?;
    if matches!(
        current.state,
        BroadcastState::Queued | BroadcastState::Running
    ) {
        let event = Event {
            broadcast: Some(BroadcastInfo {
                id: id.clone(),
                state: BroadcastState::Cancelled,
                total: 0,
                to: None,
                filter: None,
                by: Some(principal.actor()),
            }),
            ..Event::about_dialog(
                format!("broadcast-{id}-cancel"),
                EventKind::Broadcast,
                &bot,
                "botwatch",
                "",
            )
        };
        let event = crate::outbox::checked_own(&state, event)?;
        state.log.append(vec![event]).await?;
        info!(bot, id, operator = principal.actor(), "broadcast cancelled");
        crate::session::audit(
            &state,
            &principal,
            "broadcast.cancel",
            Some(&bot),
            json!({ "id": id }),
        )
        .await?;
        let deadline = tokio::time::Instant::now() + APPLIED_WITHIN;
        loop {
            let now = find(&state, &bot, &id)
                .await?
                .ok_or_else(|| not_found(&id))?;
            if now.state != current.state || tokio::time::Instant::now() >= deadline {
                return Ok(Json(now));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(Json(current))
}

/// The broadcasts this node runs, and a nudge for the runner to look now.
#[derive(Default)]
pub struct Runs {
    /// Broadcasts being sent here, and those walked to the end lately (when: they wait
    /// for messages still in flight, and are not walked again before [`WALK_AGAIN`]).
    running: Mutex<HashMap<(String, String), Option<std::time::Instant>>>,
    pub(crate) wake: tokio::sync::Notify,
}

/// How long a broadcast walked to its end rests before it is walked again (its
/// messages still pending are the sweeper's meanwhile).
const WALK_AGAIN: Duration = Duration::from_secs(60);

impl Runs {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String), Option<std::time::Instant>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes broadcast `key` to run here, unless it runs or rested lately.
    fn take(&self, key: (String, String)) -> bool {
        let mut running = self.lock();
        match running.get(&key) {
            Some(None) => false,
            Some(Some(walked)) if walked.elapsed() < WALK_AGAIN => false,
            _ => {
                running.insert(key, None);
                true
            }
        }
    }
}

/// Every node: looks for broadcasts to send ([`LOOK_EVERY`], or when one starts here)
/// and runs each it gets the lease of.
pub async fn run(state: AppState, stop: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = state.broadcast_runs.wake.notified() => {}
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        while tasks.try_join_next().is_some() {}
        // Until the figures show everything written before this start, they may not
        // know which recipients were handled.
        if !state.caught_up.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let Ok(open) = state
            .aggregator
            .query(|a| {
                a.bots()
                    .into_iter()
                    .filter_map(|b| a.bot(b).map(|f| (b.to_owned(), f.open_broadcasts())))
                    .flat_map(|(b, ids)| ids.into_iter().map(move |id| (b.clone(), id)))
                    .collect::<Vec<_>>()
            })
            .await
        else {
            break;
        };
        for (bot, id) in open {
            if !state.broadcast_runs.take((bot.clone(), id.clone())) {
                continue;
            }
            let span = info_span!("broadcast", bot, id);
            let (state, stop) = (state.clone(), stop.clone());
            tasks.spawn(
                async move {
                    let walked = match send_all(&state, &bot, &id, &stop).await {
                        Ok(walked) => walked,
                        Err(e) => {
                            warn!(
                                error = e.message,
                                code = e.code,
                                "the broadcast stopped; it goes on at the next look"
                            );
                            false
                        }
                    };
                    // A stop lets the lease go: the next node need not wait it out.
                    if stop.is_cancelled() {
                        let lease = format!("broadcast:{bot}:{id}");
                        let _ = state
                            .log
                            .lease(&lease, &state.node, Duration::from_millis(1))
                            .await;
                    }
                    let mut running = state.broadcast_runs.lock();
                    if walked {
                        running.insert((bot, id), Some(std::time::Instant::now()));
                    } else {
                        running.remove(&(bot, id));
                    }
                }
                .instrument(span),
            );
        }
    }
    // A stop: each runner finishes the message it is sending.
    while tasks.join_next().await.is_some() {}
}

/// What the figures say of recipient `n` when its turn comes.
enum Turn {
    /// Its message is known (sent, failed, skipped, or pending and the sweeper's).
    Handled,
    Send {
        provider: String,
    },
    Skip {
        reason: &'static str,
        provider: String,
    },
    /// The broadcast was cancelled (or is gone).
    Stop,
}

/// Sends broadcast `id` to every recipient not handled yet, while this node holds its
/// lease; true when it went through the whole list.
async fn send_all(
    state: &AppState,
    bot: &str,
    id: &str,
    stop: &CancellationToken,
) -> Result<bool, ApiError> {
    let lease = format!("broadcast:{bot}:{id}");
    if !state.log.lease(&lease, &state.node, LEASE).await? {
        return Ok(false);
    }
    let file =
        state.log.file(&recipients_file(id)).await?.ok_or_else(|| {
            ApiError::internal("the broadcast's recipients are not in the storage")
        })?;
    let recipients: Vec<String> = serde_json::from_slice(&file.bytes)
        .map_err(|e| ApiError::internal(&format!("the recipients do not read back: {e}")))?;
    let Some(started) = find(state, bot, id).await? else {
        return Ok(false);
    };
    info!(recipients = recipients.len(), "broadcast running here");
    let content = (
        started.text.clone(),
        started
            .attachments
            .iter()
            .map(|a| serde_json::to_value(a).unwrap_or_default())
            .collect::<Vec<Value>>(),
    );
    let operator = started.by.clone().unwrap_or_else(|| "broadcast".to_owned());
    // The lease is renewed when due, between recipients and while one is delivered
    // (a delivery may last longer than the lease); sending stops when it is lost.
    let mut lease = Lease {
        key: lease,
        renew_at: tokio::time::Instant::now() + RENEW_EVERY,
        lost: false,
    };
    let mut next_at: HashMap<String, tokio::time::Instant> = HashMap::new();
    // Which recipients were handled already, a chunk at a time in one query (a walk
    // over a resumed broadcast passes them cheaply); the rest are looked at one by one
    // when their turn comes (a user may switch to Manual meanwhile).
    let mut handled = Vec::new();
    for (n, user) in recipients.iter().enumerate() {
        if n % HANDLED_CHUNK == 0 {
            let (b, i, from) = (bot.to_owned(), id.to_owned(), n);
            let upto = (n + HANDLED_CHUNK).min(recipients.len());
            handled = state
                .aggregator
                .query(move |a| {
                    (from..upto)
                        .map(|m| {
                            a.bot(&b)
                                .is_some_and(|f| f.delivery(&format!("bc-{i}-{m}")).is_some())
                        })
                        .collect::<Vec<bool>>()
                })
                .await
                .map_err(|_| stopped())?;
        }
        if handled.get(n % HANDLED_CHUNK).copied().unwrap_or(false) {
            continue;
        }
        if stop.is_cancelled() {
            return Ok(false);
        }
        if tokio::time::Instant::now() >= lease.renew_at {
            lease.renew(state).await;
        }
        if lease.lost {
            warn!("the broadcast's lease could not be kept; another node goes on");
            return Ok(false);
        }
        let message_id = format!("bc-{id}-{n}");
        let turn = {
            let (b, i, u, m) = (
                bot.to_owned(),
                id.to_owned(),
                user.clone(),
                message_id.clone(),
            );
            state
                .aggregator
                .query(move |a| {
                    let Some(f) = a.bot(&b) else {
                        return Turn::Stop;
                    };
                    if f.broadcast_state(&i)
                        .is_none_or(|state| state == BroadcastState::Cancelled)
                    {
                        return Turn::Stop;
                    }
                    if f.delivery(&m).is_some() {
                        return Turn::Handled;
                    }
                    // Recipients were chosen among the bot's users, who stay known.
                    let Some((provider, mode)) = f.provider_and_mode(&u) else {
                        return Turn::Handled;
                    };
                    let provider = provider.unwrap_or_else(|| "botwatch".to_owned());
                    match mode {
                        Mode::Manual => Turn::Skip {
                            reason: "in Manual mode: an operator is talking to the user",
                            provider,
                        },
                        Mode::Auto => Turn::Send { provider },
                    }
                })
                .await
                .map_err(|_| stopped())?
        };
        match turn {
            Turn::Handled => {}
            Turn::Stop => return Ok(false),
            Turn::Skip { reason, provider } => {
                // Claimed like a delivery: a node that decided otherwise meanwhile
                // (the user was in Auto where it read) sends, and this one does not.
                let owner = format!("{}@{}", state.node, chrono::Utc::now().timestamp_millis());
                let claim = format!("outbox:{bot}:{message_id}");
                if state.log.claim(&claim, &owner).await? != botwatch_log::Claim::Won {
                    continue;
                }
                let event = Event {
                    delivery: Some(Delivery {
                        message: Some(message_id.clone()),
                        state: DeliveryState::Skipped,
                        reason: Some(reason.to_owned()),
                        broadcast: Some(id.to_owned()),
                    }),
                    ..Event::about_dialog(
                        format!("delivery-{message_id}"),
                        EventKind::Delivery,
                        bot,
                        &provider,
                        user,
                    )
                };
                state.log.append(vec![event]).await?;
            }
            Turn::Send { provider } => {
                // Each provider's pace.
                let gap = Duration::from_secs(1) / per_second(&provider);
                let now = tokio::time::Instant::now();
                let at = next_at.get(&provider).copied().unwrap_or(now).max(now);
                next_at.insert(provider.clone(), at + gap);
                tokio::time::sleep_until(at).await;
                let message = crate::outbox::message_event(
                    state,
                    &operator,
                    (bot, user, &provider),
                    message_id,
                    Some(id),
                    content.clone(),
                )?;
                // Recorded first: if this node stops now, the sweeper sends it.
                state.log.append(vec![message.clone()]).await?;
                let delivery = crate::outbox::deliver(state.clone(), message);
                tokio::pin!(delivery);
                loop {
                    tokio::select! {
                        () = &mut delivery => break,
                        () = tokio::time::sleep_until(lease.renew_at) => lease.renew(state).await,
                    }
                }
            }
        }
    }
    info!("broadcast gone through");
    Ok(true)
}

/// A runner's lease on its broadcast.
struct Lease {
    key: String,
    renew_at: tokio::time::Instant,
    /// Another node holds it now (or the storage could not say).
    lost: bool,
}

impl Lease {
    async fn renew(&mut self, state: &AppState) {
        self.renew_at = tokio::time::Instant::now() + RENEW_EVERY;
        if !matches!(
            state.log.lease(&self.key, &state.node, LEASE).await,
            Ok(true)
        ) {
            self.lost = true;
        }
    }
}

/// The `bot/{bot}/broadcasts` frames a batch of applied events makes: the progress of
/// each broadcast they touched.
pub(crate) fn touched(events: &[Event]) -> HashSet<(&str, &str)> {
    let mut touched = HashSet::new();
    for e in events {
        if let Some(b) = &e.broadcast {
            touched.insert((e.bot.as_str(), b.id.as_str()));
        }
        if let Some(id) = e.delivery.as_ref().and_then(|d| d.broadcast.as_deref())
            && e.kind == EventKind::Delivery
        {
            touched.insert((e.bot.as_str(), id));
        }
    }
    touched
}

/// The state a shared [`Runs`] starts with.
pub fn runs() -> Arc<Runs> {
    Arc::new(Runs::default())
}
