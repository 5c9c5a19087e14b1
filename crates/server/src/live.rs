//! `GET /api/v1/live`: the WebSocket dashboards follow (API.md → Live).
//!
//! Client → `{"op":"subscribe","topic":…,"since":N?}` / `{"op":"unsubscribe","topic":…}`;
//! server → `{"topic","seq","kind":"snapshot"|"delta"|"error","data"}`. Topics so far:
//! `bot/{bot}/overview` (users table's first page, top messages, the last 30 days'
//! day buckets, sent whole after each batch), `bot/{bot}/stats` (whole buckets: the
//! hours of each day a batch touched, the days and weeks from its earliest day to its
//! latest), `bot/{bot}/dialogs` (a dialog that moved, with its preview) and
//! `bot/{bot}/dialog/{user}` (each message with the dialog's figures). A subscription starts with a snapshot, or with the deltas missed
//! since `since` when the topic's history still has them; a connection that falls
//! behind the topic's ring gets a fresh snapshot (never a silent gap); one whose socket
//! does not take a frame within [`SEND_TIMEOUT`] is closed with 1013.
//!
//! Deltas are made on the aggregator's thread after each batch ([`on_applied`]), and a
//! subscription attaches inside an aggregator query, so a snapshot stands exactly at
//! the sequence number it carries. Dialog snapshots read their messages (and the
//! dialogs list its previews) from the log after attaching: they may repeat a message
//! the first deltas carry (the same `id`), never miss one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use botwatch_aggregator::{Aggregator, BotFigures, BucketSize, UserFilter, UserSort, UsersQuery};
use botwatch_event::{Event, EventKind};
use botwatch_live::{Frame, Hub, frame_text};
use botwatch_log::EventLog;
use chrono::{NaiveDate, Utc};
use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio_stream::StreamMap;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tracing::{Instrument, debug, info_span, warn};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::figures::{BucketItem, DialogItem, Preview, TopItem};
use crate::history::Message;
use crate::users::UserItem;

/// Frames a client may send: at most this many bytes each.
pub const MAX_CLIENT_FRAME: usize = 64 * 1024;
/// The read buffer a connection starts with: a client sends small frames (subscribe,
/// unsubscribe, pong), and a larger one grows it while it is read.
const CLIENT_READ_BUFFER: usize = 256;
/// A frame the socket does not take within this time closes the connection (1013).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const PING_EVERY: Duration = Duration::from_secs(20);
/// How often a connection made with a session checks that the session still holds.
const SESSION_CHECK_EVERY: Duration = Duration::from_secs(1);
/// No pong (or any frame) for this long closes the connection.
const PONG_TIMEOUT: Duration = Duration::from_secs(60);
/// Dialogs in the dialogs topic's snapshot; messages in a dialog's.
const SNAPSHOT_ROWS: usize = 50;
/// Frames already waiting that one write may carry: a burst becomes one syscall, and
/// a connection with a long backlog still lets its neighbours run between writes.
const COALESCE_FRAMES: usize = 64;
/// Bytes the socket buffers before it writes on its own (frames are written when the
/// connection has nothing more waiting, or past this).
const WRITE_BATCH_BYTES: usize = 32 * 1024;

/// A topic a client may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Topic {
    Overview { bot: String },
    Stats { bot: String },
    Dialogs { bot: String },
    Dialog { bot: String, user: String },
    Alerts { bot: String },
    Broadcasts { bot: String },
}

impl Topic {
    fn parse(name: &str) -> Result<Topic, &'static str> {
        let rest = name.strip_prefix("bot/").ok_or("unknown_topic")?;
        let (bot, what) = rest.split_once('/').ok_or("unknown_topic")?;
        let bot = bot.to_owned();
        match what {
            "dialogs" => Ok(Topic::Dialogs { bot }),
            "overview" => Ok(Topic::Overview { bot }),
            "stats" => Ok(Topic::Stats { bot }),
            "alerts" => Ok(Topic::Alerts { bot }),
            "broadcasts" => Ok(Topic::Broadcasts { bot }),
            _ => match what.strip_prefix("dialog/") {
                Some(user) if !user.is_empty() => Ok(Topic::Dialog {
                    bot,
                    user: user.to_owned(),
                }),
                _ => Err("unknown_topic"),
            },
        }
    }

    fn bot(&self) -> &str {
        match self {
            Topic::Overview { bot }
            | Topic::Stats { bot }
            | Topic::Dialogs { bot }
            | Topic::Alerts { bot }
            | Topic::Broadcasts { bot }
            | Topic::Dialog { bot, .. } => bot,
        }
    }
}

/// Days of the overview's charts and of the statistics topic's snapshot, today included.
const CHART_DAYS: i64 = 30;

/// The overview of a bot as a dashboard's main page shows it: the first page of the
/// users table (latest first), top messages and the charts' day buckets, all over the
/// last [`CHART_DAYS`] days of the bot's zone.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Overview {
    users: Vec<UserItem>,
    top: Vec<TopItem>,
    days: Vec<BucketItem>,
}

fn chart_range(f: &BotFigures) -> (NaiveDate, NaiveDate) {
    let today = Utc::now().with_timezone(&f.settings().tz).date_naive();
    (today - chrono::Duration::days(CHART_DAYS - 1), today)
}

fn overview(f: &BotFigures) -> Overview {
    let (from, to) = chart_range(f);
    let page = f.users(&UsersQuery {
        filter: UserFilter::default(),
        sort: UserSort::Last,
        descending: true,
        limit: SNAPSHOT_ROWS,
        after: None,
    });
    Overview {
        users: page.items.into_iter().map(UserItem::from).collect(),
        top: TopItem::list(f.top_messages(from, to, 20)),
        days: f
            .stats(from, to, BucketSize::Day)
            .into_iter()
            .map(BucketItem::from)
            .collect(),
    }
}

/// Statistics buckets, whole (not increments: a client replaces what it has).
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatsFrame {
    tz: String,
    hour: Vec<BucketItem>,
    day: Vec<BucketItem>,
    week: Vec<BucketItem>,
}

/// The statistics topic's buckets: hours of `hour_days`, days and weeks from `from` to
/// `to` (local dates).
fn stats_frame(
    f: &BotFigures,
    hour_days: &[NaiveDate],
    from: NaiveDate,
    to: NaiveDate,
) -> StatsFrame {
    let buckets = |from, to, size| {
        f.stats(from, to, size)
            .into_iter()
            .map(BucketItem::from)
            .collect::<Vec<_>>()
    };
    StatsFrame {
        tz: f.settings().tz.name().to_owned(),
        hour: hour_days
            .iter()
            .flat_map(|&d| buckets(d, d, BucketSize::Hour))
            .collect(),
        day: buckets(from, to, BucketSize::Day),
        week: buckets(from, to, BucketSize::Week),
    }
}

/// How often the whole-bot topics (overview, statistics) are sent when they changed.
pub const FLUSH_EVERY: Duration = Duration::from_millis(250);

/// Bots whose whole-bot topics changed since the last flush, with the local days the
/// changes fell on.
#[derive(Default)]
pub struct Dirty(Mutex<HashMap<String, BTreeSet<NaiveDate>>>);

impl Dirty {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, BTreeSet<NaiveDate>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Sends the overview and statistics of the bots that changed since the last flush.
/// Runs on the aggregator's thread (inside a query), like [`on_applied`].
pub fn flush(hub: &Hub, dirty: &Dirty, aggregator: &Aggregator) {
    let changed = std::mem::take(&mut *dirty.lock());
    for (bot, days) in changed {
        let Some(f) = aggregator.bot(&bot) else {
            continue;
        };
        let overview_topic = format!("bot/{bot}/overview");
        if hub.is_watched(&overview_topic) {
            hub.publish(&overview_topic, &overview(f));
        }
        let stats_topic = format!("bot/{bot}/stats");
        if hub.is_watched(&stats_topic)
            && let (Some(&first), Some(&last)) = (days.first(), days.last())
        {
            // Every bucket a message fell in, days and weeks from the earliest day to
            // the latest (a late message can move a user's first day, and with it the
            // existing users of the days between).
            let first = first.max(last - chrono::Duration::days(366));
            let days: Vec<NaiveDate> = days.into_iter().collect();
            hub.publish(&stats_topic, &stats_frame(f, &days, first, last));
        }
    }
}

/// Makes the deltas of a batch just applied, for watched topics only.
pub fn on_applied(hub: &Hub, dirty: &Dirty, aggregator: &Aggregator, events: &[Event]) {
    // Nobody watching anything (the common case on a busy node with no dashboard
    // open): nothing to do on the aggregator's thread.
    if hub.is_empty() {
        return;
    }
    // Per bot, per dialog: its messages of this batch, in log order.
    let mut bots: HashMap<&str, HashMap<&str, Vec<&Event>>> = HashMap::new();
    for e in events.iter().filter(|e| e.kind == EventKind::Message) {
        bots.entry(e.bot.as_str())
            .or_default()
            .entry(e.user.id.as_str())
            .or_default()
            .push(e);
    }
    // A mode switch or a hand-off: the dialog's figures, with its new mode or flag, to
    // its topic, to the list and to the alerts (a `DialogDelta` on each; no message).
    for e in events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::ModeChanged | EventKind::Handoff))
    {
        let Some(figures) = aggregator.bot(&e.bot).and_then(|f| f.user(&e.user.id)) else {
            continue;
        };
        let delta = DialogDelta {
            dialog: DialogItem::new(figures, None),
        };
        for topic in [
            format!("bot/{}/dialog/{}", e.bot, e.user.id),
            format!("bot/{}/dialogs", e.bot),
            format!("bot/{}/alerts", e.bot),
        ] {
            if hub.is_watched(&topic) {
                hub.publish(&topic, &delta);
            }
        }
    }
    // A broadcast's progress: to its bot's broadcasts topic.
    for (bot, id) in crate::broadcasts::touched(events) {
        let topic = format!("bot/{bot}/broadcasts");
        if hub.is_watched(&topic)
            && let Some(b) = aggregator.bot(bot).and_then(|f| f.broadcast(id))
        {
            hub.publish(
                &topic,
                &crate::broadcasts::BroadcastDelta {
                    broadcast: b.into(),
                },
            );
        }
    }
    // An audience edit: the overview's users table shows roles and tags.
    for e in events.iter().filter(|e| e.kind == EventKind::Audience) {
        if hub.is_watched(&format!("bot/{}/overview", e.bot)) {
            dirty.lock().entry(e.bot.clone()).or_default();
        }
    }
    // An operator message's outcome: to its dialog's topic.
    for e in events.iter().filter(|e| e.kind == EventKind::Delivery) {
        let topic = format!("bot/{}/dialog/{}", e.bot, e.user.id);
        if let Some(delivery) = &e.delivery
            && hub.is_watched(&topic)
        {
            hub.publish(
                &topic,
                &DeliveryDelta {
                    delivery: delivery.clone(),
                },
            );
        }
    }
    for (bot, dialogs) in bots {
        let Some(f) = aggregator.bot(bot) else {
            continue;
        };
        // Whole-bot topics: noted here, sent by the flusher (at most every
        // `FLUSH_EVERY`): a burst of batches makes one frame, not one each.
        if hub.is_watched(&format!("bot/{bot}/overview"))
            || hub.is_watched(&format!("bot/{bot}/stats"))
        {
            let tz = f.settings().tz;
            let mut dirty = dirty.lock();
            let days = dirty.entry(bot.to_owned()).or_default();
            for e in dialogs.values().flatten() {
                days.insert(e.ts.with_timezone(&tz).date_naive());
            }
        }
        let list_topic = format!("bot/{bot}/dialogs");
        let list_watched = hub.is_watched(&list_topic);
        for (user, messages) in dialogs {
            let dialog_topic = format!("bot/{bot}/dialog/{user}");
            let dialog_watched = hub.is_watched(&dialog_topic);
            if !(dialog_watched || list_watched) {
                continue;
            }
            let Some(figures) = f.user(user) else {
                continue;
            };
            if dialog_watched {
                let item = DialogItem::new(figures.clone(), None);
                for e in &messages {
                    hub.publish(
                        &dialog_topic,
                        &MessageDelta {
                            message: Message::from((*e).clone()),
                            dialog: &item,
                        },
                    );
                }
            }
            if list_watched {
                // The preview is the latest message when this batch holds it (a late
                // message moves nothing to the top: the preview stays the client's).
                let latest = messages
                    .iter()
                    .filter(|e| Some(e.ts_millis()) == figures.last_ms)
                    .max_by_key(|e| e.ts_millis());
                let preview = latest.map(|e| Preview::of(e));
                hub.publish(
                    &list_topic,
                    &DialogDelta {
                        dialog: DialogItem::new(figures, preview),
                    },
                );
            }
        }
    }
}

/// A WebSocket upgrade, or the API's JSON error for a request that is not one (axum's
/// own refusal is plain text): `400 not_a_websocket_upgrade`, or 405 / 426 as axum finds.
pub struct Upgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        WebSocketUpgrade::from_request_parts(parts, state)
            .await
            .map(Upgrade)
            .map_err(|r| ApiError::new(r.status(), "not_a_websocket_upgrade", r.body_text()))
    }
}

/// Refuses a browser's WebSocket upgrade from another origin than the server's own
/// (or one of `--allowed-origin`); programs send no Origin.
pub(crate) fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let origin = origin.to_str().unwrap_or("");
        let same = host
            .is_some_and(|h| origin == format!("http://{h}") || origin == format!("https://{h}"));
        if !same && !state.allowed_origins.iter().any(|o| o == origin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "foreign_origin",
                format!("WebSocket upgrades from {origin:?} are refused"),
            ));
        }
    }
    Ok(())
}

/// `GET /api/v1/live`: authenticated at the upgrade by the guard (a bearer token or the
/// session cookie); a browser's upgrade from a foreign Origin is refused.
#[utoipa::path(get, operation_id = "live_upgrade", path = "/api/v1/live", tag = "live", params(crate::openapi::rules::UpgradeHeaders), responses((status = 101, description = "WebSocket: see the live protocol in the README"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn upgrade(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Upgrade(ws): Upgrade,
) -> Result<Response, ApiError> {
    check_origin(&state, &headers)?;
    let Ok(slot) = state.live_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this node holds as many live connections as it may",
        ));
    };
    Ok(ws
        // Small buffers: an idle connection holds hundreds of bytes, not axum's 2 × 128 KiB.
        .read_buffer_size(CLIENT_READ_BUFFER)
        .write_buffer_size(WRITE_BATCH_BYTES)
        .max_message_size(MAX_CLIENT_FRAME)
        .max_frame_size(MAX_CLIENT_FRAME)
        // What the connection needs waits in one box: axum's upgrade task keeps what the
        // callback captured for as long as the connection lasts.
        .on_upgrade({
            let parts = Box::new((state, principal, slot));
            move |socket| {
                let (state, principal, slot) = *parts;
                Connection::new(state, principal, socket, slot)
                    .run()
                    .instrument(info_span!("live.connection"))
            }
        }))
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
enum ClientFrame {
    Subscribe { topic: String, since: Option<u64> },
    Unsubscribe { topic: String },
}

/// One subscription of a connection (its frames wait in the connection's `frames`,
/// under the same id).
struct Subscription {
    name: String,
    topic: Topic,
    /// The last sequence number sent on it.
    sent: u64,
}

/// What a subscription's ring gave: a frame, or word that the connection fell behind.
type RingItem = (u64, Result<Arc<Frame>, BroadcastStreamRecvError>);

/// One live connection. It lives in a box, and its task's future holds only that box,
/// the `select!` of its idle wait and boxes of whatever it is doing: an idle connection
/// is a few hundred bytes of task, not the room of its largest step (the budget is 8 KB
/// per idle connection in all, buffers included; BENCHMARKS.md → Live hub).
struct Connection {
    state: AppState,
    principal: Principal,
    socket: WebSocket,
    subs: HashMap<u64, Subscription>,
    frames: StreamMap<u64, BroadcastStream<Arc<Frame>>>,
    next_id: u64,
    /// This connection's place among the node's live connections.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.state.metrics.live_connections.dec();
    }
}

enum Step {
    Go,
    Close(Option<CloseFrame>),
}

impl Connection {
    fn new(
        state: AppState,
        principal: Principal,
        socket: WebSocket,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Box<Connection> {
        state.metrics.live_connections.inc();
        Box::new(Connection {
            state,
            principal,
            socket,
            subs: HashMap::new(),
            frames: StreamMap::new(),
            next_id: 0,
            _slot: slot,
        })
    }

    /// Ends the subscription named `name`, if there is one.
    fn unsubscribe(&mut self, name: &str) -> Option<Subscription> {
        let id = *self.subs.iter().find(|(_, s)| s.name == name)?.0;
        self.frames.remove(&id);
        self.subs.remove(&id)
    }

    async fn run(mut self: Box<Self>) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
        let mut heard = tokio::time::Instant::now();
        let stop = self.state.live_stop.clone();
        // A connection made with a session lasts as long as the session: logout, expiry,
        // a password or role change or the user's removal close it within a second.
        let session = match &self.principal {
            Principal::User { session, .. } => Some(session.clone()),
            _ => None,
        };
        // Only those connections carry the timer (an idle connection stays small).
        let mut session_check = session
            .is_some()
            .then(|| tokio::time::interval(SESSION_CHECK_EVERY));
        loop {
            let step = tokio::select! {
                incoming = self.socket.recv() => match incoming {
                    Some(Ok(frame)) => {
                        heard = tokio::time::Instant::now();
                        Box::pin(self.on_client_frame(frame)).await
                    }
                    _ => Step::Close(None),
                },
                Some(item) = self.frames.next(), if !self.frames.is_empty() => {
                    // Boxed, like every step below: an allocation per wake (tens of ns,
                    // beside a write of microseconds) keeps the idle task small.
                    Box::pin(self.forward(item)).await
                }
                _ = stop.cancelled() => Step::Close(Some(close(1001, "the server is stopping"))),
                _ = async { session_check.as_mut()?.tick().await; Some(()) }, if session_check.is_some() => {
                    let digest = session.as_deref().unwrap_or_default();
                    match Box::pin(self.state.auth.live_session(digest)).await {
                        Ok(Some(_)) => Step::Go,
                        Ok(None) => Step::Close(Some(close(1008, "the session has ended"))),
                        // The accounts storage not answering is not the user's doing.
                        Err(_) => Step::Go,
                    }
                }
                _ = ping.tick() => {
                    if heard.elapsed() > PONG_TIMEOUT {
                        Step::Close(Some(close(1001, "no pong")))
                    } else {
                        Box::pin(self.send(WsMessage::Ping(Default::default()))).await
                    }
                }
            };
            if let Step::Close(frame) = step {
                if let Some(frame) = frame {
                    let _ = Box::pin(tokio::time::timeout(
                        Duration::from_secs(1),
                        self.socket.send(WsMessage::Close(Some(frame))),
                    ))
                    .await;
                }
                return;
            }
        }
    }

    async fn send(&mut self, message: WsMessage) -> Step {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.send(message)).await {
            Ok(Ok(())) => Step::Go,
            Ok(Err(_)) => Step::Close(None),
            Err(_) => self.too_slow(),
        }
    }

    /// A client that reads nothing: it never holds anyone else up, and is let go.
    fn too_slow(&self) -> Step {
        self.state.metrics.live_closed_slow.inc();
        Step::Close(Some(close(1013, "too slow: reconnect and resume")))
    }

    async fn send_text(&mut self, text: bytes::Bytes) -> Step {
        // Frames are JSON made by serde_json: UTF-8 (checked, never copied).
        match Utf8Bytes::try_from(text) {
            Ok(text) => self.send(WsMessage::Text(text)).await,
            Err(_) => Step::Go,
        }
    }

    async fn error(&mut self, topic: &str, error: &str) -> Step {
        let text = frame_text(topic, 0, "error", &serde_json::json!({ "error": error }));
        self.send_text(text).await
    }

    async fn on_client_frame(&mut self, frame: WsMessage) -> Step {
        let text = match frame {
            WsMessage::Text(t) => t,
            WsMessage::Close(_) => return Step::Close(None),
            WsMessage::Ping(_) | WsMessage::Pong(_) => return Step::Go,
            WsMessage::Binary(_) => return self.error("", "text_frames_only").await,
        };
        match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(ClientFrame::Subscribe { topic, since }) => self.subscribe(topic, since).await,
            Ok(ClientFrame::Unsubscribe { topic }) => {
                self.unsubscribe(&topic);
                Step::Go
            }
            Err(e) => {
                debug!(error = %e, "unreadable client frame");
                self.error("", "bad_frame").await
            }
        }
    }

    async fn subscribe(&mut self, name: String, since: Option<u64>) -> Step {
        let topic = match Topic::parse(&name) {
            Ok(topic) => topic,
            Err(error) => return self.error(&name, error).await,
        };
        // Authorisation on every subscribe, not only at the upgrade.
        if !self.principal.may_read(topic.bot()) {
            return self.error(&name, "forbidden").await;
        }
        // Boxed: a subscription's start is the largest state of the connection's
        // future, and every idle connection would carry its room otherwise.
        Box::pin(self.start(name, topic, since)).await
    }

    /// Attaches to the topic and sends what the client needs to be in step: the missed
    /// deltas, or a snapshot.
    async fn start(&mut self, name: String, topic: Topic, since: Option<u64>) -> Step {
        let hub = self.state.hub.clone();
        let (topic_name, t) = (name.clone(), topic.clone());
        let attached = self
            .state
            .aggregator
            .query(move |a| {
                let attach = hub.attach(&topic_name, since);
                let data = attach.missed.is_none().then(|| snapshot_figures(a, &t));
                (attach, data)
            })
            .await;
        let Ok((attach, data)) = attached else {
            return Step::Close(Some(close(1012, "the server is stopping")));
        };
        let mut sent = attach.seq;
        match (attach.missed, data) {
            (Some(missed), _) => {
                for frame in missed {
                    sent = frame.seq;
                    if let Step::Close(c) = self.send_text(frame.text.clone()).await {
                        return Step::Close(c);
                    }
                }
            }
            (None, Some(figures)) => {
                let log = self.state.log.clone();
                let data = match complete_snapshot(&log, &topic, figures).await {
                    Ok(data) => data,
                    Err(e) => {
                        warn!(error = %e, topic = name, "cannot read a snapshot's messages");
                        return self.error(&name, "storage_unavailable").await;
                    }
                };
                let text = frame_text(&name, attach.seq, "snapshot", &data);
                if let Step::Close(c) = self.send_text(text).await {
                    return Step::Close(c);
                }
            }
            (None, None) => {}
        }
        self.unsubscribe(&name);
        self.next_id += 1;
        self.subs
            .insert(self.next_id, Subscription { name, topic, sent });
        self.frames
            .insert(self.next_id, BroadcastStream::new(attach.frames));
        Step::Go
    }

    /// Sends a frame of a subscription and every frame already waiting behind it (up to
    /// [`COALESCE_FRAMES`]) in one write; a subscription whose ring left it behind is
    /// started again with a snapshot.
    async fn forward(&mut self, first: RingItem) -> Step {
        let mut behind = Vec::new();
        let mut item = Some(first);
        let mut taken = 0;
        let fed = tokio::time::timeout(SEND_TIMEOUT, async {
            while let Some((id, frame)) = item.take() {
                taken += 1;
                match frame {
                    // A subscription found behind waits for its snapshot: what its ring
                    // gives after the gap must not go out before it.
                    Ok(_) if behind.contains(&id) => {}
                    Ok(frame) => {
                        if let Some(sub) = self.subs.get_mut(&id)
                            // Not already sent as a missed delta.
                            && frame.seq > sub.sent
                        {
                            sub.sent = frame.seq;
                            if let Ok(text) = Utf8Bytes::try_from(frame.text.clone()) {
                                self.socket.feed(WsMessage::Text(text)).await?;
                            }
                        }
                    }
                    Err(BroadcastStreamRecvError::Lagged(skipped)) => {
                        debug!(skipped, "subscriber lagged; resyncing");
                        behind.push(id);
                    }
                }
                if taken < COALESCE_FRAMES {
                    item = self.frames.next().now_or_never().flatten();
                }
            }
            self.socket.flush().await
        })
        .await;
        match fed {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Step::Close(None),
            Err(_) => return self.too_slow(),
        }
        for id in behind {
            // Behind the ring: a fresh snapshot, not a gap.
            self.state.metrics.live_resyncs.inc();
            self.frames.remove(&id);
            if let Some(sub) = self.subs.remove(&id)
                && let Step::Close(c) = Box::pin(self.start(sub.name, sub.topic, None)).await
            {
                return Step::Close(c);
            }
        }
        Step::Go
    }
}

/// `bot/{bot}/dialog/{user}` snapshot: the dialog (none before its first message) and
/// its latest messages, newest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DialogSnapshot {
    dialog: Option<DialogItem>,
    messages: Vec<Message>,
    /// `before` for the older messages (`GET …/dialogs/{user}/messages`); null when
    /// these are all.
    next: Option<String>,
}

/// `bot/{bot}/dialog/{user}` delta: one message and the dialog's figures after it (a
/// mode switch sends a [`DialogDelta`] instead: the figures, no message).
#[derive(Serialize, utoipa::ToSchema)]
pub struct MessageDelta<'a> {
    message: Message,
    // The same figures for every message of a batch: borrowed, not copied.
    dialog: &'a DialogItem,
}

/// `bot/{bot}/dialog/{user}` delta: an operator message (`delivery.message`) was sent,
/// or failed and why.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeliveryDelta {
    delivery: botwatch_event::Delivery,
}

/// `bot/{bot}/alerts` snapshot: the dialogs waiting for a human (`handoff` set), the
/// latest request first. Its deltas are [`DialogDelta`]s: a dialog flagged, or (its
/// `handoff` null) answered.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AlertsSnapshot {
    items: Vec<DialogItem>,
}

/// `bot/{bot}/dialogs` snapshot: the latest dialogs, latest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DialogsSnapshot {
    items: Vec<DialogItem>,
}

/// `bot/{bot}/dialogs` delta: a dialog that changed, with its latest message when the
/// batch held it (also on `bot/{bot}/dialog/{user}` when its mode was switched).
#[derive(Serialize, utoipa::ToSchema)]
pub struct DialogDelta {
    dialog: DialogItem,
}

/// Adds what the log holds (messages, previews) to a snapshot's figures.
async fn complete_snapshot(
    log: &botwatch_log::AnyLog,
    topic: &Topic,
    figures: SnapshotFigures,
) -> Result<serde_json::Value, botwatch_log::LogError> {
    match (topic, figures) {
        (Topic::Dialog { bot, user }, SnapshotFigures::Dialog(f)) => {
            let page = log.history(bot, user, None, SNAPSHOT_ROWS).await?;
            let next = page.next.map(|c| c.to_string());
            let messages: Vec<Message> = page
                .entries
                .into_iter()
                .map(|e| Message::from(e.event))
                .collect();
            Ok(serde_json::to_value(DialogSnapshot {
                dialog: f.map(|f| DialogItem::new(*f, None)),
                messages,
                next,
            })
            .unwrap_or_default())
        }
        (_, SnapshotFigures::Whole(data)) => Ok(data),
        (Topic::Alerts { .. }, SnapshotFigures::Dialogs(rows)) => {
            let items = rows.into_iter().map(|f| DialogItem::new(f, None)).collect();
            Ok(serde_json::to_value(AlertsSnapshot { items }).unwrap_or_default())
        }
        (Topic::Dialogs { bot }, SnapshotFigures::Dialogs(rows)) => {
            let mut items = Vec::with_capacity(rows.len());
            for f in rows {
                let latest = log.history(bot, &f.id, None, 1).await?;
                let preview = latest.entries.first().map(|e| Preview::of(&e.event));
                items.push(DialogItem::new(f, preview));
            }
            Ok(serde_json::to_value(DialogsSnapshot { items }).unwrap_or_default())
        }
        _ => Ok(serde_json::Value::Null),
    }
}

/// The figures part of a topic's snapshot, taken on the aggregator's thread.
enum SnapshotFigures {
    Dialog(Option<Box<botwatch_aggregator::UserFigures>>),
    Dialogs(Vec<botwatch_aggregator::UserFigures>),
    /// Everything is in the figures (overview, statistics).
    Whole(serde_json::Value),
}

fn snapshot_figures(a: &Aggregator, topic: &Topic) -> SnapshotFigures {
    match topic {
        Topic::Dialog { bot, user } => {
            SnapshotFigures::Dialog(a.bot(bot).and_then(|f| f.user(user)).map(Box::new))
        }
        Topic::Overview { bot } => SnapshotFigures::Whole(
            a.bot(bot)
                .map(|f| serde_json::to_value(overview(f)).unwrap_or_default())
                .unwrap_or_default(),
        ),
        Topic::Stats { bot } => SnapshotFigures::Whole(
            a.bot(bot)
                .map(|f| {
                    let (from, to) = chart_range(f);
                    serde_json::to_value(stats_frame(f, &[to], from, to)).unwrap_or_default()
                })
                .unwrap_or_default(),
        ),
        Topic::Dialogs { bot } => SnapshotFigures::Dialogs(
            a.bot(bot)
                .map(|f| f.dialogs(None, SNAPSHOT_ROWS, None).0)
                .unwrap_or_default(),
        ),
        Topic::Broadcasts { bot } => SnapshotFigures::Whole(
            serde_json::to_value(crate::broadcasts::BroadcastsSnapshot {
                items: a
                    .bot(bot)
                    .map(|f| f.broadcasts().into_iter().map(Into::into).collect())
                    .unwrap_or_default(),
            })
            .unwrap_or_default(),
        ),
        Topic::Alerts { bot } => SnapshotFigures::Dialogs(
            a.bot(bot)
                .map(|f| {
                    let mut waiting = f.handoffs();
                    waiting.truncate(SNAPSHOT_ROWS);
                    waiting
                })
                .unwrap_or_default(),
        ),
    }
}

fn close(code: u16, reason: &str) -> CloseFrame {
    CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The size of what `f` returns (a future, never made here).
    fn returned_size<A, R>(_: impl FnOnce(A) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// Every live connection's task holds its future for as long as it lasts: steps
    /// that are boxed (a subscription's start, a forward, a client frame) must stay
    /// boxed, or each idle connection carries the room of the largest (2.7 KB before
    /// they were).
    #[test]
    fn an_idle_connection_holds_a_small_future() {
        let run = returned_size(|c: Box<Connection>| c.run());
        assert!(run <= 640, "Connection::run's future is {run} bytes");
    }
}
