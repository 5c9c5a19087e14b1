//! Analytics forwarding (issue 9): per bot and service (Google Analytics 4, Mixpanel),
//! a worker follows the event log from its own durable position and sends what
//! `botwatch-forward` makes of each event.
//!
//! - **Once per deployment:** each (service, bot) is worked by the node holding its
//!   lease `forward:{service}:{bot}`; another node takes over when it stops.
//! - **Durable position:** `forward:{service}:{bot}` in the progress store, saved after
//!   every batch sent. A new integration starts at the head of the log (what happens
//!   from now on).
//! - **Behind the figures:** it reads only what this node's figures have applied, so
//!   the facts it asks them (a user's first message, a session's start) are there.
//! - **Nothing dropped while a service is down:** 5xx, 429 and network errors are
//!   tried again with exponential backoff and jitter (429's `Retry-After` obeyed), for
//!   as long as it takes; the position does not move past what was not taken.
//! - **Never sent twice:** Mixpanel drops a retried event by its `$insert_id`. GA4 has
//!   no such key, so before a batch goes to GA the position it ends at is saved as
//!   `in_flight`; a node that finds one (its predecessor stopped mid-batch) skips that
//!   batch: GA may have it, and twice is worse than a gap the log still holds.
//! - **Active off stops at once:** the settings are read before every request and
//!   every retry.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use botwatch_forward::{Facts, Item, ga, items_of, mixpanel};
use botwatch_log::{ClaimStore, EventLog, Position, ProgressStore, SettingsStore};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::AppState;
use crate::settings::SettingsDoc;

/// How often every node looks for integrations to work.
const LOOK_EVERY: Duration = Duration::from_secs(1);
/// A worker's lease, renewed well before it runs out.
const LEASE: Duration = Duration::from_secs(15);
/// Log entries read per batch.
const BATCH: usize = 500;
/// The longest wait between two tries of a request.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// How often an idle worker looks for a back-fill asked for.
const BACKFILL_LOOK_EVERY: Duration = Duration::from_secs(2);
/// How long one request may take: well within the lease renewed before it.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The services events are forwarded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    GoogleAnalytics,
    Mixpanel,
}

impl Service {
    pub const ALL: [Service; 2] = [Service::GoogleAnalytics, Service::Mixpanel];

    pub fn name(self) -> &'static str {
        match self {
            Service::GoogleAnalytics => "google_analytics",
            Service::Mixpanel => "mixpanel",
        }
    }
}

/// Where a worker got to, kept in the progress store.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Progress {
    /// The log position everything up to which was sent (or skipped).
    position: String,
    /// GA4 only: the end of the batch being sent; found at a start, that batch is
    /// skipped (it may have reached GA).
    #[serde(default)]
    in_flight: Option<String>,
    /// Items sent, and left out (too old for GA4).
    #[serde(default)]
    sent: u64,
    #[serde(default)]
    skipped: u64,
    /// History asked for when the integration was turned on, sent after the live
    /// cursor caught up.
    #[serde(default)]
    backfill: Option<Backfill>,
    /// Where the live cursor started (a back-fill stops there: what came after went
    /// out live).
    #[serde(default)]
    started: Option<String>,
}

/// A back-fill: the events from `from_ms` on that came before the live cursor
/// started (`upto`), read from `next`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Backfill {
    next: String,
    upto: String,
    from_ms: i64,
    #[serde(default)]
    in_flight: Option<String>,
}

/// What a dashboard shows of one integration (this node's view).
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct Status {
    pub sent: u64,
    pub skipped: u64,
    /// When the last request was answered (RFC 3339), and whether it was taken.
    pub last_at: Option<String>,
    pub last_ok: Option<bool>,
    /// The last error, in words.
    pub last_error: Option<String>,
}

/// The workers this node runs, and what they last did.
#[derive(Default)]
pub struct Forwarding {
    /// Calls to the services: never following a redirect (requests go only to the
    /// configured endpoints).
    http: std::sync::OnceLock<reqwest::Client>,
    running: Mutex<HashSet<(Service, String)>>,
    status: Mutex<HashMap<(Service, String), Status>>,
}

impl Forwarding {
    fn client(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            reqwest::Client::builder()
                .user_agent(concat!("botwatch/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        })
    }

    fn take(&self, key: (Service, String)) -> bool {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key)
    }

    fn done(&self, key: &(Service, String)) {
        self.running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    fn note(&self, key: &(Service, String), f: impl FnOnce(&mut Status)) {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        f(status.entry(key.clone()).or_default());
    }

    /// What this node knows of `bot`'s integration with `service`.
    pub fn status(&self, service: Service, bot: &str) -> Status {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(service, bot.to_owned()))
            .cloned()
            .unwrap_or_default()
    }
}

/// Whether `service` is active and configured in `doc`, with its credentials opened.
fn credentials(
    state: &AppState,
    bot: &str,
    doc: &SettingsDoc,
    service: Service,
) -> Option<Credentials> {
    let i = &doc.integrations;
    match service {
        Service::GoogleAnalytics => {
            let ga = &i.google_analytics;
            let secret =
                state
                    .vault
                    .open(bot, crate::settings::GA_SECRET, ga.api_secret.as_deref()?)?;
            ga.active.then(|| Credentials::Ga {
                measurement_id: ga.measurement_id.clone().unwrap_or_default(),
                api_secret: secret,
            })
        }
        Service::Mixpanel => {
            let mp = &i.mixpanel;
            let token =
                state
                    .vault
                    .open(bot, crate::settings::MIXPANEL_TOKEN, mp.token.as_deref()?)?;
            mp.active.then_some(Credentials::Mixpanel { token })
        }
    }
}

enum Credentials {
    Ga {
        measurement_id: String,
        api_secret: String,
    },
    Mixpanel {
        token: String,
    },
}

/// The settings of `bot` now (`None` when they cannot be read).
async fn settings(state: &AppState, bot: &str) -> Option<SettingsDoc> {
    crate::channels::settings_of(state, bot).await.ok()
}

/// Every node: looks for active integrations and works those it gets the lease of.
pub async fn run(state: AppState, stop: CancellationToken) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut seen_version = None;
    let mut active: Vec<(Service, String)> = Vec::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(LOOK_EVERY) => {}
        }
        while tasks.try_join_next().is_some() {}
        if !state.caught_up.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        // The integrations turned on, read again only when some settings changed.
        if let Ok(version) = state.log.settings_version().await
            && seen_version != Some(version)
            && let Ok(all) = state.log.all_settings().await
        {
            seen_version = Some(version);
            active = all
                .iter()
                .filter_map(|(bot, json)| Some((bot, SettingsDoc::parse(json)?)))
                .flat_map(|(bot, doc)| {
                    Service::ALL
                        .into_iter()
                        .filter(|&s| credentials(&state, bot, &doc, s).is_some())
                        .map(|s| (s, bot.to_owned()))
                        .collect::<Vec<_>>()
                })
                .collect();
        }
        for (service, bot) in &active {
            let (service, bot) = (*service, bot.clone());
            if !state.forwarding.take((service, bot.clone())) {
                continue;
            }
            let span = info_span!("forward", service = service.name(), bot);
            let (state, stop) = (state.clone(), stop.clone());
            tasks.spawn(
                async move {
                    work(&state, service, &bot, &stop).await;
                    state.forwarding.done(&(service, bot));
                }
                .instrument(span),
            );
        }
    }
    while tasks.join_next().await.is_some() {}
}

fn progress_key(service: Service, bot: &str) -> String {
    format!("forward:{}:{bot}", service.name())
}

/// Records that `bot`'s integration with `service` forwards from the head of the log
/// on, unless it has a position already (it was on before).
pub(crate) async fn start_from_now(
    state: &AppState,
    service: Service,
    bot: &str,
) -> Result<(), botwatch_log::LogError> {
    let key = progress_key(service, bot);
    if state.log.progress(&key).await?.is_none() {
        let head = state.log.stats().await?.head;
        let progress = Progress {
            position: head.to_string(),
            started: Some(head.to_string()),
            ..Progress::default()
        };
        let doc = serde_json::to_string(&progress).unwrap_or_default();
        state.log.put_progress(&key, &doc).await?;
        info!(service = service.name(), bot, from = %head, "forwarding starts");
    }
    Ok(())
}

async fn load_progress(state: &AppState, key: &str) -> Option<Progress> {
    match state.log.progress(key).await {
        Ok(Some(doc)) => serde_json::from_str(&doc).ok(),
        Ok(None) => {
            // A new integration: from the head of the log on.
            let head = state.log.stats().await.ok()?.head;
            Some(Progress {
                position: head.to_string(),
                started: Some(head.to_string()),
                ..Progress::default()
            })
        }
        Err(e) => {
            warn!(error = %e, "cannot read where forwarding got to");
            None
        }
    }
}

async fn save_progress(state: &AppState, key: &str, progress: &Progress) -> bool {
    let doc = serde_json::to_string(progress).unwrap_or_default();
    match state.log.put_progress(key, &doc).await {
        Ok(()) => true,
        Err(e) => {
            warn!(error = %e, "cannot record where forwarding got to");
            false
        }
    }
}

/// Forwards `bot`'s events to `service` while this node holds the lease and the
/// integration is active; on a stop, lets the lease go (the next node need not wait
/// for it to run out).
async fn work(state: &AppState, service: Service, bot: &str, stop: &CancellationToken) {
    let lease = progress_key(service, bot);
    forward_while_held(state, service, bot, &lease, stop).await;
    if stop.is_cancelled() {
        let _ = state
            .log
            .lease(&lease, &state.node, Duration::from_millis(1))
            .await;
    }
}

async fn forward_while_held(
    state: &AppState,
    service: Service,
    bot: &str,
    lease: &str,
    stop: &CancellationToken,
) {
    let status_key = (service, bot.to_owned());
    let Some(mut progress) = load_progress(state, lease).await else {
        return;
    };
    let mut renew_at = tokio::time::Instant::now();
    let mut announced = Announced::default();
    let mut backfill_look = tokio::time::Instant::now();
    loop {
        if stop.is_cancelled() {
            return;
        }
        if tokio::time::Instant::now() >= renew_at {
            if !matches!(state.log.lease(lease, &state.node, LEASE).await, Ok(true)) {
                return;
            }
            renew_at = tokio::time::Instant::now() + LEASE / 3;
        }
        // A predecessor stopped while GA had a batch: skip it (never twice).
        let mut skipped_batch = false;
        if let Some(end) = progress.in_flight.take() {
            progress.position = end;
            skipped_batch = true;
        }
        if let Some(b) = progress.backfill.as_mut()
            && let Some(end) = b.in_flight.take()
        {
            b.next = end;
            skipped_batch = true;
        }
        if skipped_batch {
            warn!("a batch may or may not have reached GA4 before a stop: skipped");
            save_progress(state, lease, &progress).await;
        }
        // What comes next: the live cursor while it is behind the figures, else the
        // back-fill, if one was asked for.
        let applied = state.followed();
        let live = progress.position.parse::<Position>().unwrap_or(applied);
        // A back-fill asked for is looked for now and then while live is idle (not on
        // every idle turn: that is a storage read).
        let asked = if live >= applied
            && progress.backfill.is_none()
            && tokio::time::Instant::now() >= backfill_look
        {
            backfill_look = tokio::time::Instant::now() + BACKFILL_LOOK_EVERY;
            backfill_asked(state, lease).await
        } else {
            None
        };
        let (after, limit, from_ms) = if live < applied {
            (live, applied, None)
        } else if let Some(from_ms) = asked {
            info!(from_ms, "back-fill starts");
            progress.backfill = Some(Backfill {
                next: Position::START.to_string(),
                upto: progress
                    .started
                    .clone()
                    .unwrap_or_else(|| progress.position.clone()),
                from_ms,
                in_flight: None,
            });
            if save_progress(state, lease, &progress).await {
                backfill_taken(state, lease, from_ms).await;
            }
            continue;
        } else if let Some(b) = &progress.backfill {
            let next = b.next.parse::<Position>().unwrap_or(Position::START);
            let upto = b
                .upto
                .parse::<Position>()
                .unwrap_or(Position::START)
                .min(applied);
            if next >= upto {
                info!("back-fill done");
                progress.backfill = None;
                save_progress(state, lease, &progress).await;
                continue;
            }
            (next, upto, Some(b.from_ms))
        } else {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        };
        let backfilling = from_ms.is_some();
        let batch = match state.log.read(after, BATCH, None).await {
            Ok(batch) => batch,
            Err(e) => {
                warn!(error = %e, "cannot read the log");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Only what the figures have applied (and, back-filling, what came before the
        // live cursor started).
        let entries: Vec<_> = batch
            .entries
            .into_iter()
            .filter(|e| e.position <= limit)
            .collect();
        let end = if batch.next <= limit {
            batch.next
        } else {
            entries.last().map_or(limit, |e| e.position)
        };
        let events: Vec<(Position, botwatch_event::Event)> = entries
            .into_iter()
            .map(|e| (e.position, e.event))
            .filter(|(_, e)| e.bot == bot && from_ms.is_none_or(|from| e.ts_millis() >= from))
            .collect();
        let Some(items) = items_with_facts(state, bot, &events, &mut announced).await else {
            return;
        };
        if end <= after {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        let in_flight =
            |progress: &mut Progress, value: Option<String>| match &mut progress.backfill {
                Some(b) if backfilling => b.in_flight = value,
                _ => progress.in_flight = value,
            };
        let advance = |progress: &mut Progress, to: Position| match &mut progress.backfill {
            Some(b) if backfilling => b.next = to.to_string(),
            _ => progress.position = to.to_string(),
        };
        // GA4 gets one request per run of one user's items, each a checkpoint: a stop
        // or a crash leaves at most one request unsure. Mixpanel takes the batch at
        // once (its `$insert_id` makes a retried one harmless).
        for (upto, chunk) in chunks(service, items, end) {
            if !chunk.is_empty() {
                if service == Service::GoogleAnalytics {
                    in_flight(&mut progress, Some(upto.to_string()));
                    if !save_progress(state, lease, &progress).await {
                        return;
                    }
                }
                match send_items(state, service, bot, lease, &chunk, &status_key, stop).await {
                    Some((sent, skipped)) => {
                        progress.sent += sent;
                        progress.skipped += skipped;
                    }
                    // Stopped, turned off, or the lease lost: not sent; tried again by
                    // whoever goes on.
                    None => {
                        in_flight(&mut progress, None);
                        save_progress(state, lease, &progress).await;
                        return;
                    }
                }
            }
            in_flight(&mut progress, None);
            advance(&mut progress, upto);
            save_progress(state, lease, &progress).await;
        }
        let (sent, skipped) = (progress.sent, progress.skipped);
        state.forwarding.note(&status_key, |s| {
            s.sent = sent;
            s.skipped = skipped;
        });
    }
}

/// A batch's items in the pieces they are sent in, each with the log position it ends
/// at: for GA4, runs of one user's items (one request each, at most 25 items); for
/// Mixpanel, the whole batch. The last piece ends where the batch does.
fn chunks(
    service: Service,
    items: Vec<(Position, Vec<Item>)>,
    end: Position,
) -> Vec<(Position, Vec<Item>)> {
    let mut chunks: Vec<(Position, Vec<Item>)> = Vec::new();
    for (position, items) in items {
        let joins = match (service, chunks.last()) {
            (Service::Mixpanel, Some(_)) => true,
            (Service::GoogleAnalytics, Some((_, run))) => {
                run.is_empty()
                    || items.is_empty()
                    || (run[0].user == items[0].user
                        && run.len() + items.len() <= ga::MAX_EVENTS_PER_REQUEST)
            }
            (_, None) => false,
        };
        match chunks.last_mut() {
            Some((upto, run)) if joins => {
                *upto = position;
                run.extend(items);
            }
            _ => chunks.push((position, items)),
        }
    }
    match chunks.last_mut() {
        Some((upto, _)) => *upto = end,
        None => chunks.push((end, Vec::new())),
    }
    chunks
}

fn backfill_key(progress_key: &str) -> String {
    format!("{progress_key}:backfill")
}

/// A back-fill asked for and not started yet: from when (ms).
async fn backfill_asked(state: &AppState, progress_key: &str) -> Option<i64> {
    let key = backfill_key(progress_key);
    let asked: serde_json::Value =
        serde_json::from_str(&state.log.progress(&key).await.ok()??).ok()?;
    asked["from_ms"].as_i64().filter(|_| asked["done"] != true)
}

/// Marks the back-fill request taken (once the progress holding it is saved).
async fn backfill_taken(state: &AppState, progress_key: &str, from_ms: i64) {
    let done = serde_json::json!({ "from_ms": from_ms, "done": true }).to_string();
    if let Err(e) = state
        .log
        .put_progress(&backfill_key(progress_key), &done)
        .await
    {
        warn!(error = %e, "cannot mark the back-fill request taken");
    }
}

/// `POST …/integrations/{service}/backfill`: what to send of the history.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackfillRequest {
    /// The first day sent (`YYYY-MM-DD`, the bot's time zone).
    from: String,
}

/// Asks for the history from a day on to be sent to a service, after what is live:
/// the events before the integration was turned on (GA4 takes at most 72 hours back;
/// older ones are counted as skipped).
#[tracing::instrument(name = "integrations.backfill", skip(state, principal, body))]
#[utoipa::path(post, operation_id = "integrations_backfill", path = "/api/v1/bots/{bot}/integrations/{service}/backfill", tag = "settings", params(("bot" = String, Path, description = "The bot (a slug)"), ("service" = String, Path, description = "google_analytics or mixpanel")), request_body(content = crate::forward::BackfillRequest), responses((status = 202, description = "Asked for; progress shows in GET …/integrations"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn backfill(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    axum::extract::Path((bot, service)): axum::extract::Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<axum::http::StatusCode, crate::error::ApiError> {
    use crate::error::ApiError;
    let service = service_named(&service)?;
    let BackfillRequest { from } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_parameter("body", format!(r#"expected {{"from":"YYYY-MM-DD"}}: {e}"#))
    })?;
    let day = chrono::NaiveDate::parse_from_str(&from, "%Y-%m-%d")
        .map_err(|_| ApiError::bad_parameter("from", "expected a date YYYY-MM-DD"))?;
    let doc = crate::channels::settings_of(&state, &bot)
        .await
        .map_err(|e| ApiError::internal(&e.0))?;
    let tz: chrono_tz::Tz = doc.timezone.parse().unwrap_or(chrono_tz::UTC);
    // The day's first instant in the bot's zone (a day that starts in a clock change's
    // gap starts an hour later).
    let from_ms = [0, 1, 2]
        .into_iter()
        .filter_map(|h| day.and_hms_opt(h, 0, 0))
        .find_map(|t| t.and_local_timezone(tz).earliest())
        .map(|t| t.timestamp_millis())
        .ok_or_else(|| ApiError::bad_parameter("from", "not a day in the bot's time zone"))?;
    start_from_now(&state, service, &bot).await?;
    let key = backfill_key(&progress_key(service, &bot));
    let asked = serde_json::json!({ "from_ms": from_ms, "done": false }).to_string();
    state.log.put_progress(&key, &asked).await?;
    crate::session::audit(
        &state,
        &principal,
        "integration.backfill",
        Some(&bot),
        serde_json::json!({ "service": service.name(), "from": from }),
    )
    .await?;
    Ok(axum::http::StatusCode::ACCEPTED)
}

fn service_named(name: &str) -> Result<Service, crate::error::ApiError> {
    Service::ALL
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| {
            crate::error::ApiError::new(
                axum::http::StatusCode::NOT_FOUND,
                "not_found",
                "no such service (google_analytics, mixpanel)",
            )
        })
}

/// New users and session starts already told (the figures know times, and several
/// messages may share a millisecond: only the first of them is a user's first).
#[derive(Default)]
struct Announced(HashSet<(String, Option<i64>)>);

impl Announced {
    /// True the first time for a user (`None`) or a user's session (its start).
    fn first(&mut self, user: &str, session: Option<i64>) -> bool {
        if self.0.len() > 100_000 {
            self.0.clear();
        }
        self.0.insert((user.to_owned(), session))
    }
}

/// The items `events` give, with the figures' facts about each.
async fn items_with_facts(
    state: &AppState,
    bot: &str,
    events: &[(Position, botwatch_event::Event)],
    announced: &mut Announced,
) -> Option<Vec<(Position, Vec<Item>)>> {
    let asked: Vec<(String, i64)> = events
        .iter()
        .map(|(_, e)| (e.user.id.clone(), e.ts_millis()))
        .collect();
    let b = bot.to_owned();
    let places = state
        .aggregator
        .query(move |a| {
            let f = a.bot(&b);
            asked
                .iter()
                .map(|(user, ms)| f.and_then(|f| f.message_place(user, *ms)))
                .collect::<Vec<_>>()
        })
        .await
        .ok()?;
    Some(
        events
            .iter()
            .zip(places)
            .map(|((position, e), place)| {
                let inbound = e.direction == Some(botwatch_event::Direction::In);
                let facts = place.map_or(Facts::default(), |p| Facts {
                    first_message: p.first && inbound && announced.first(&e.user.id, None),
                    starts_session: p.starts_session
                        && inbound
                        && announced.first(&e.user.id, p.session_start_ms),
                    session_ms: p.session_start_ms,
                });
                (*position, items_of(e, &facts))
            })
            .collect(),
    )
}

/// Sends `items` in the service's requests; `(sent, skipped)`, or `None` when it
/// stopped before all were taken (a stop, or the integration turned off).
async fn send_items(
    state: &AppState,
    service: Service,
    bot: &str,
    lease: &str,
    items: &[Item],
    status_key: &(Service, String),
    stop: &CancellationToken,
) -> Option<(u64, u64)> {
    let now = chrono::Utc::now().timestamp_millis();
    let (bodies, skipped) = match service {
        Service::GoogleAnalytics => {
            let (requests, skipped) = ga::requests(items, now);
            let bodies: Vec<(serde_json::Value, usize)> = requests
                .into_iter()
                .map(|r| (r.body, r.keys.len()))
                .collect();
            (bodies, skipped.len() as u64)
        }
        Service::Mixpanel => (
            mixpanel::requests(items)
                .into_iter()
                .map(|r| (r.body, r.keys.len()))
                .collect(),
            0,
        ),
    };
    let (mut sent, mut skipped) = (0u64, skipped);
    for (body, count) in bodies {
        let refused = send_one(state, service, bot, lease, &body, status_key, stop).await?;
        sent += (count as u64).saturating_sub(refused);
        skipped += refused;
    }
    Some((sent, skipped))
}

/// What one attempt came to.
enum Outcome {
    /// Taken; the number of records the service refused (Mixpanel's strict import
    /// takes the valid ones and names the others): counted as skipped, not retried.
    Taken(u64),
    /// Try again, after at least this long.
    Again(Option<Duration>, String),
}

/// Sends one request until the service takes it; `None` when stopped or turned off
/// first.
async fn send_one(
    state: &AppState,
    service: Service,
    bot: &str,
    lease: &str,
    body: &serde_json::Value,
    status_key: &(Service, String),
    stop: &CancellationToken,
) -> Option<u64> {
    let mut backoff = Duration::from_secs(1);
    loop {
        if stop.is_cancelled() {
            return None;
        }
        // Only while this node holds the lease (it outlasts one attempt), so no other
        // node sends the same; Active off (or the credentials gone) stops at once.
        if !matches!(state.log.lease(lease, &state.node, LEASE).await, Ok(true)) {
            return None;
        }
        let doc = settings(state, bot).await?;
        let credentials = credentials(state, bot, &doc, service)?;
        let outcome = attempt(state, &credentials, body).await;
        let at = crate::figures::rfc3339(chrono::Utc::now().timestamp_millis());
        match outcome {
            Outcome::Taken(refused) => {
                state.forwarding.note(status_key, |s| {
                    s.last_at = Some(at);
                    s.last_ok = Some(refused == 0);
                    if refused > 0 {
                        s.last_error = Some(format!("{refused} records refused by the service"));
                    }
                });
                return Some(refused);
            }
            Outcome::Again(after, error) => {
                warn!(error, retry_in = ?backoff, "the service did not take a batch");
                state.forwarding.note(status_key, |s| {
                    s.last_at = Some(at);
                    s.last_ok = Some(false);
                    s.last_error = Some(error);
                });
                // Exponential, with up to half of it again at random, and never
                // sooner than the service asked.
                let jitter = backoff.mul_f64(f64::from(random_u8()) / 510.0);
                let wait = (backoff + jitter).max(after.unwrap_or_default());
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    _ = tokio::time::sleep(wait) => {}
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn random_u8() -> u8 {
    let mut b = [0u8; 1];
    let _ = getrandom::fill(&mut b);
    b[0]
}

/// A request to the service: GA4's `path` (`/mp/collect`, `/debug/mp/collect`) with
/// the measurement id and API secret, or Mixpanel's strict import with the token.
fn request_to(
    state: &AppState,
    credentials: &Credentials,
    ga_path: &str,
) -> reqwest::RequestBuilder {
    let client = state.forwarding.client();
    match credentials {
        Credentials::Ga {
            measurement_id,
            api_secret,
        } => {
            let query = form_urlencoded::Serializer::new(String::new())
                .append_pair("measurement_id", measurement_id)
                .append_pair("api_secret", api_secret)
                .finish();
            let base = state.ga_endpoint.trim_end_matches('/');
            client.post(format!("{base}{ga_path}?{query}"))
        }
        Credentials::Mixpanel { token } => {
            let base = state.mixpanel_endpoint.trim_end_matches('/');
            client
                .post(format!("{base}/import?strict=1"))
                .basic_auth(token, Some(""))
        }
    }
}

/// One try of a request.
async fn attempt(state: &AppState, credentials: &Credentials, body: &serde_json::Value) -> Outcome {
    let request = request_to(state, credentials, "/mp/collect");
    let answer = request.json(body).timeout(REQUEST_TIMEOUT).send().await;
    let answer = match answer {
        Ok(answer) => answer,
        // Without the address: it holds the API secret.
        Err(e) => return Outcome::Again(None, format!("no answer: {}", e.without_url())),
    };
    let status = answer.status();
    if status.is_success() {
        return Outcome::Taken(0);
    }
    let retry_after = answer
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let full = answer.text().await.unwrap_or_default();
    let said: String = full.chars().take(300).collect();
    let error = format!("{status}: {said}");
    // Mixpanel's strict import: the valid records were taken, the others are named.
    if status.as_u16() == 400
        && let Ok(answer) = serde_json::from_str::<serde_json::Value>(&full)
        && let Some(failed) = answer["failed_records"].as_array()
    {
        warn!(error, "the service refused some records");
        return Outcome::Taken(failed.len() as u64);
    }
    if status.as_u16() == 429 || status.is_server_error() {
        return Outcome::Again(retry_after, error);
    }
    // A refusal a retry cannot mend at once (a wrong token, a payload refused): kept
    // and tried again after the longest wait, so nothing is dropped and the status
    // shows why.
    info!(error, "the service refused a batch");
    Outcome::Again(Some(MAX_BACKOFF), error)
}

impl AppState {
    /// Where the follower has read to: the figures have applied everything up to it.
    pub(crate) fn followed(&self) -> Position {
        self.followed.lock().map(|p| *p).unwrap_or_default()
    }
}

/// One integration as Settings → Other shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationStatus {
    /// Active and configured (credentials set).
    active: bool,
    /// Events sent, and left out (older than GA4 takes). A GA4 batch in flight at a
    /// stop is neither: it may or may not have arrived (the log says so).
    sent: u64,
    skipped: u64,
    /// How far forwarding is behind the log, in seconds of append time (0 when caught
    /// up; null before it ever ran).
    behind_secs: Option<f64>,
    /// The bot's events in the log not forwarded yet (counted up to
    /// 10,000; `pending_more`: there are more).
    pending: u64,
    pending_more: bool,
    /// This node's last answer from the service: when, taken or not, and the last error.
    last_at: Option<String>,
    last_ok: Option<bool>,
    last_error: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct IntegrationsAnswer {
    google_analytics: IntegrationStatus,
    mixpanel: IntegrationStatus,
}

/// `GET /api/v1/bots/{bot}/integrations`: where forwarding to each service stands.
#[tracing::instrument(name = "integrations.status", skip(state))]
#[utoipa::path(get, operation_id = "integrations_status", path = "/api/v1/bots/{bot}/integrations", tag = "settings", params(("bot" = String, Path, description = "The bot (a slug)")), responses((status = 200, body = crate::forward::IntegrationsAnswer), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn status(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::extract::Path(bot): axum::extract::Path<String>,
) -> Result<axum::Json<IntegrationsAnswer>, crate::error::ApiError> {
    let doc = crate::channels::settings_of(&state, &bot)
        .await
        .map_err(|e| crate::error::ApiError::internal(&e.0))?;
    let head = state.log.stats().await?.head;
    let mut answers = Vec::new();
    for service in Service::ALL {
        let progress: Option<Progress> = state
            .log
            .progress(&progress_key(service, &bot))
            .await?
            .and_then(|doc| serde_json::from_str(&doc).ok());
        let seen = state.forwarding.status(service, &bot);
        let behind_secs = progress
            .as_ref()
            .and_then(|p| p.position.parse::<Position>().ok())
            .map(|p| head.ms.saturating_sub(p.ms) as f64 / 1000.0);
        let (pending, pending_more) = match progress
            .as_ref()
            .and_then(|p| p.position.parse::<Position>().ok())
        {
            Some(after) if after < head => pending_events(&state, &bot, after).await?,
            Some(_) => (0, false),
            None => (0, false),
        };
        answers.push(IntegrationStatus {
            pending,
            pending_more,
            active: credentials(&state, &bot, &doc, service).is_some(),
            sent: progress.as_ref().map_or(0, |p| p.sent),
            skipped: progress.as_ref().map_or(0, |p| p.skipped),
            behind_secs,
            last_at: seen.last_at,
            last_ok: seen.last_ok,
            last_error: seen.last_error,
        });
    }
    let mixpanel = answers.pop();
    let google_analytics = answers.pop();
    match (google_analytics, mixpanel) {
        (Some(google_analytics), Some(mixpanel)) => Ok(axum::Json(IntegrationsAnswer {
            google_analytics,
            mixpanel,
        })),
        _ => Err(crate::error::ApiError::internal("integration status")),
    }
}

/// The most log entries a status reads to count what is pending.
const PENDING_READ: usize = 10_000;

/// `bot`'s events in the log after `after`: how many (of the first
/// [`PENDING_READ`] entries), and whether there are more.
async fn pending_events(
    state: &AppState,
    bot: &str,
    mut after: Position,
) -> Result<(u64, bool), botwatch_log::LogError> {
    let (mut count, mut read) = (0u64, 0usize);
    while read < PENDING_READ {
        let batch = state.log.read(after, 1_000, None).await?;
        if batch.next <= after {
            return Ok((count, false));
        }
        read += batch.entries.len().max(1);
        count += batch.entries.iter().filter(|e| e.event.bot == bot).count() as u64;
        after = batch.next;
    }
    let more = !state.log.read(after, 1, None).await?.entries.is_empty();
    Ok((count, more))
}

/// What a test event came to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestAnswer {
    /// The service took it (GA4: its validation found nothing wrong).
    ok: bool,
    /// HTTP status of the service's answer (null: no answer).
    status: Option<u16>,
    /// GA4's validation messages (`/debug/mp/collect`), or the service's words.
    #[schema(value_type = Object)]
    answer: serde_json::Value,
}

/// `POST /api/v1/bots/{bot}/integrations/{service}/test`: sends one test event with the
/// settings as they are (active or not). GA4: to `/debug/mp/collect`, which checks the
/// event and records nothing, and answers its validation messages; Mixpanel: to
/// `/import` (Mixpanel keeps it, as `bot_test_event`).
#[tracing::instrument(name = "integrations.test", skip(state, principal))]
#[utoipa::path(post, operation_id = "integrations_test", path = "/api/v1/bots/{bot}/integrations/{service}/test", tag = "settings", params(("bot" = String, Path, description = "The bot (a slug)"), ("service" = String, Path, description = "google_analytics or mixpanel")), responses((status = 200, body = crate::forward::TestAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn test_event(
    axum::extract::State(state): axum::extract::State<AppState>,
    axum::Extension(principal): axum::Extension<crate::auth::Principal>,
    axum::extract::Path((bot, service)): axum::extract::Path<(String, String)>,
) -> Result<axum::Json<TestAnswer>, crate::error::ApiError> {
    use crate::error::ApiError;
    let service = service_named(&service)?;
    let mut doc = crate::channels::settings_of(&state, &bot)
        .await
        .map_err(|e| ApiError::internal(&e.0))?;
    // A test works with the settings as they are, before Active is ticked.
    doc.integrations.google_analytics.active = true;
    doc.integrations.mixpanel.active = true;
    let credentials = credentials(&state, &bot, &doc, service).ok_or_else(|| {
        ApiError::bad_parameter(
            "integrations",
            format!("{} is not configured (Settings → Other)", service.name()),
        )
    })?;
    let now = chrono::Utc::now().timestamp_millis();
    let item = Item {
        kind: botwatch_forward::ItemKind::MessageIn,
        bot: bot.clone(),
        user: "botwatch-test".to_owned(),
        provider: "botwatch".to_owned(),
        event_id: format!("test-{}", uuid::Uuid::now_v7()),
        ms: now,
        session_ms: Some(now),
    };
    let body = match &credentials {
        Credentials::Ga { .. } => ga::requests(std::slice::from_ref(&item), now)
            .0
            .into_iter()
            .next()
            .map(|r| r.body)
            .unwrap_or_default(),
        Credentials::Mixpanel { .. } => {
            let mut body = mixpanel::requests(std::slice::from_ref(&item))
                .into_iter()
                .next()
                .map(|r| r.body)
                .unwrap_or_default();
            if let Some(e) = body.get_mut(0) {
                e["event"] = serde_json::json!("bot_test_event");
            }
            body
        }
    };
    let request = request_to(&state, &credentials, "/debug/mp/collect").json(&body);
    let answer = request.timeout(REQUEST_TIMEOUT).send().await;
    crate::session::audit(
        &state,
        &principal,
        "integration.test",
        Some(&bot),
        serde_json::json!({ "service": service.name() }),
    )
    .await?;
    let answer = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return Ok(axum::Json(TestAnswer {
                ok: false,
                status: None,
                answer: serde_json::json!(format!("no answer: {}", e.without_url())),
            }));
        }
    };
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let said: serde_json::Value =
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    // GA's debug endpoint answers 200 with what it found wrong, if anything.
    let ok = status.is_success()
        && said["validationMessages"]
            .as_array()
            .is_none_or(|m| m.is_empty());
    Ok(axum::Json(TestAnswer {
        ok,
        status: Some(status.as_u16()),
        answer: said,
    }))
}

#[cfg(test)]
mod tests {
    use botwatch_forward::ItemKind;

    use super::*;

    fn item(user: &str, n: u64) -> Item {
        Item {
            kind: ItemKind::MessageIn,
            bot: "b".to_owned(),
            user: user.to_owned(),
            provider: "p".to_owned(),
            event_id: format!("e{n}"),
            ms: n as i64,
            session_ms: Some(0),
        }
    }

    #[test]
    fn ga_gets_runs_of_one_user_each_ending_at_its_last_entry() {
        let p = |n| Position::new(n, 0);
        let items = vec![
            (p(1), vec![item("a", 1)]),
            (p(2), vec![item("a", 2)]),
            (p(3), Vec::new()),
            (p(4), vec![item("b", 4)]),
            (p(5), vec![item("a", 5)]),
        ];
        let runs = chunks(Service::GoogleAnalytics, items.clone(), p(9));
        let shape: Vec<(Position, Vec<String>)> = runs
            .into_iter()
            .map(|(upto, run)| (upto, run.into_iter().map(|i| i.user).collect()))
            .collect();
        assert_eq!(
            shape,
            [
                (p(3), vec!["a".to_owned(), "a".to_owned()]),
                (p(4), vec!["b".to_owned()]),
                (p(9), vec!["a".to_owned()]),
            ],
            "a checkpoint after each request; the last ends where the batch does"
        );
        let whole = chunks(Service::Mixpanel, items, p(9));
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].0, whole[0].1.len()), (p(9), 4));
        // Runs stay within 25 events.
        let many: Vec<(Position, Vec<Item>)> =
            (1..=30).map(|n| (p(n), vec![item("a", n)])).collect();
        let sizes: Vec<usize> = chunks(Service::GoogleAnalytics, many, p(30))
            .iter()
            .map(|(_, r)| r.len())
            .collect();
        assert_eq!(sizes, [25, 5]);
        assert_eq!(
            chunks(Service::GoogleAnalytics, Vec::new(), p(7)),
            [(p(7), Vec::new())]
        );
    }
}
