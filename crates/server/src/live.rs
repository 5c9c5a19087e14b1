//! `GET /api/v1/live`: the WebSocket dashboards follow (API.md → Live).
//!
//! Client → `{"op":"subscribe","topic":…,"since":N?}` / `{"op":"unsubscribe","topic":…}`;
//! server → `{"topic","seq","kind":"snapshot"|"delta"|"error","data"}`. Topics so far:
//! `bot/{bot}/overview` (users table's first page, top messages, the last 30 days'
//! day buckets, sent whole after each batch), `bot/{bot}/stats` (whole buckets: the
//! hours of each day a batch touched, the days and weeks from its earliest day to its
//! latest), `bot/{bot}/dialogs` (a dialog that moved, with its preview) and
//! `bot/{bot}/dialog/{user}` (each message with the dialog's figures). A subscription
//! starts with a snapshot, or with the deltas missed since `since` when the topic's
//! history still has them. The hub's fan-out threads write each delta to the sockets
//! themselves ([`socket`]); a connection that falls more than [`socket::MAX_WAITING`]
//! frames behind gets a fresh snapshot of each subscription (never a silent gap); one
//! whose socket takes nothing for [`SEND_TIMEOUT`] is closed with 1013.
//!
//! Deltas are made on the aggregator's thread after each batch ([`on_applied`]), and a
//! subscription attaches inside an aggregator query, so a snapshot stands exactly at
//! the sequence number it carries. Dialog snapshots read their messages (and the
//! dialogs list its previews) from the log after attaching: they may repeat a message
//! the first deltas carry (the same `id`), never miss one.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use botwatch_aggregator::{Aggregator, BotFigures, BucketSize, UserFilter, UserSort, UsersQuery};
use botwatch_event::{Event, EventKind};
use botwatch_live::{Frame, Hub, Member};
use botwatch_log::{DataLoss, EventLog};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::{
    CloseFrame, Message as WsMessage, Role, WebSocketConfig, WebSocketContext,
    frame::coding::CloseCode,
};
use tokio_util::sync::ReusableBoxFuture;
use tracing::{Instrument, debug, info_span, warn};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::figures::{BucketItem, DialogItem, Preview, TopItem};
use crate::history::Message;
use crate::integrity::DataLossItem;
use crate::users::UserItem;

mod socket;
use socket::{LiveSocket, RawUpgrade};

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

/// A topic a client may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Topic {
    Overview { bot: String },
    Stats { bot: String },
    Dialogs { bot: String },
    Dialog { bot: String, user: String },
    Alerts { bot: String },
    Broadcasts { bot: String },
}

impl Topic {
    pub(crate) fn parse(name: &str) -> Result<Topic, &'static str> {
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
    /// The loss of data the figures suffer from (they may miss events), until an
    /// operator clears it; null when there is none. A change of it starts every
    /// subscription again with a fresh snapshot.
    data_loss: Option<DataLossItem>,
}

fn chart_range(f: &BotFigures) -> (NaiveDate, NaiveDate) {
    let today = Utc::now().with_timezone(&f.settings().tz).date_naive();
    (today - chrono::Duration::days(CHART_DAYS - 1), today)
}

fn overview(f: &BotFigures, data_loss: Option<DataLossItem>) -> Overview {
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
        data_loss,
    }
}

/// Statistics buckets, whole (not increments: a client replaces what it has).
#[derive(Serialize, utoipa::ToSchema)]
pub struct StatsFrame {
    tz: String,
    hour: Vec<BucketItem>,
    day: Vec<BucketItem>,
    week: Vec<BucketItem>,
    /// The loss of data the figures suffer from (they may miss events), until an
    /// operator clears it; null when there is none.
    data_loss: Option<DataLossItem>,
}

/// The statistics topic's buckets: hours of `hour_days`, days and weeks from `from` to
/// `to` (local dates).
fn stats_frame(
    f: &BotFigures,
    hour_days: &[NaiveDate],
    from: NaiveDate,
    to: NaiveDate,
    data_loss: Option<DataLossItem>,
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
        data_loss,
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

/// Sends the overview and statistics of the bots that changed since the last flush,
/// with the loss of data the node shows (`data_loss`: whole frames, each says it).
/// Runs on the aggregator's thread (inside a query), like [`on_applied`].
pub fn flush(hub: &Hub, dirty: &Dirty, aggregator: &Aggregator, data_loss: Option<DataLossItem>) {
    let changed = std::mem::take(&mut *dirty.lock());
    for (bot, days) in changed {
        let Some(f) = aggregator.bot(&bot) else {
            continue;
        };
        let overview_topic = format!("bot/{bot}/overview");
        if hub.is_watched(&overview_topic) {
            hub.publish(&overview_topic, &overview(f, data_loss.clone()));
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
            hub.publish(
                &stats_topic,
                &stats_frame(f, &days, first, last, data_loss.clone()),
            );
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
    upgrade: RawUpgrade,
) -> Result<Response, ApiError> {
    check_origin(&state, &headers)?;
    let Ok(slot) = state.live_slots.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_connections",
            "this node holds as many live connections as it may",
        ));
    };
    // What the connection needs waits in one box until the upgrade completes.
    let parts = Box::new((state, principal, slot));
    Ok(upgrade.on_upgrade(move |stream, read| {
        let (state, principal, slot) = *parts;
        Connection::new(state, principal, stream, read, slot)
            .run()
            .instrument(info_span!("live.connection"))
    }))
}

/// The protocol's state that reads a client's frames, `read` the bytes of them that
/// came with the upgrade request.
pub(crate) fn client_protocol(read: Vec<u8>) -> WebSocketContext {
    let config = WebSocketConfig::default()
        // Small buffers: an idle connection holds hundreds of bytes.
        .read_buffer_size(CLIENT_READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(MAX_CLIENT_FRAME))
        .max_frame_size(Some(MAX_CLIENT_FRAME));
    WebSocketContext::from_partially_read(read, Role::Server, Some(config))
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ClientFrame {
    Subscribe { topic: String, since: Option<u64> },
    Unsubscribe { topic: String },
}

/// One subscription of a connection (where it stands is the socket's to know, under
/// the same id).
struct Subscription {
    name: String,
    topic: Topic,
}

/// One live connection. It lives in a box, and its task's future holds only that box,
/// the `select!` of its idle wait and boxes of whatever it is doing: an idle connection
/// is a few hundred bytes of task, not the room of its largest step (the budget is 8 KB
/// per idle connection in all, buffers included; BENCHMARKS.md → Live hub).
struct Connection {
    state: AppState,
    principal: Principal,
    /// Written by the hub's fan-out and by this connection; read here.
    socket: Arc<LiveSocket>,
    /// The WebSocket protocol's state: reads the client's frames, writes pongs, pings
    /// and the close handshake (into the socket's queue).
    protocol: WebSocketContext,
    subs: HashMap<u64, Subscription>,
    next_id: u64,
    /// When the client was last heard from.
    heard: tokio::time::Instant,
    /// This connection's place among the node's live connections.
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for (id, sub) in self.subs.drain() {
            self.state.hub.leave(&sub.name, self.socket.id(), id);
        }
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
        stream: tokio::net::TcpStream,
        read: bytes::Bytes,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> Box<Connection> {
        state.metrics.live_connections.inc();
        Box::new(Connection {
            state,
            principal,
            socket: LiveSocket::new(stream),
            protocol: client_protocol(read.to_vec()),
            subs: HashMap::new(),
            next_id: 0,
            heard: tokio::time::Instant::now(),
            _slot: slot,
        })
    }

    /// Ends the subscription named `name`, if there is one.
    fn unsubscribe(&mut self, name: &str) {
        let Some(id) = self
            .subs
            .iter()
            .find(|(_, s)| s.name == name)
            .map(|(id, _)| *id)
        else {
            return;
        };
        if let Some(sub) = self.subs.remove(&id) {
            self.state.hub.leave(&sub.name, self.socket.id(), id);
        }
        self.socket.end(id);
    }

    async fn run(mut self: Box<Self>) {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.reset();
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
        let socket = self.socket.clone();
        // A loss of data found, or its record cleared: every snapshot says so. The wait
        // lives in a box that each change reuses: in the `select!` it would add its
        // whole state to every idle connection's future.
        let mut data_loss = ReusableBoxFuture::new(loss_changed(self.state.integrity.subscribe()));
        loop {
            let step = tokio::select! {
                readable = socket.readable() => match readable {
                    // Boxed, like every step below: an allocation per wake (tens of ns,
                    // beside a read of microseconds) keeps the idle task small.
                    Ok(()) => Box::pin(self.read_client()).await,
                    Err(_) => Step::Close(None),
                },
                _ = socket.wake.notified() => Box::pin(self.catch_up()).await,
                told = &mut data_loss => {
                    data_loss.set(loss_changed(told));
                    debug!("the data loss shown changed; resyncing");
                    Box::pin(self.resync()).await
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
                    if self.heard.elapsed() > PONG_TIMEOUT {
                        Step::Close(Some(close(1001, "no pong")))
                    } else {
                        self.control(WsMessage::Ping(Default::default()))
                    }
                }
            };
            if let Step::Close(frame) = step {
                // The close frame (ours, or tungstenite's answer to the client's) and
                // whatever waits before it get a second to go out.
                if let Some(frame) = frame {
                    let _ = self.protocol.close(&mut socket.io(), Some(frame));
                }
                let _ = self.protocol.flush(&mut socket.io());
                let _ =
                    Box::pin(tokio::time::timeout(Duration::from_secs(1), socket.drain())).await;
                return;
            }
        }
    }

    /// Writes a control frame (a ping) through the protocol's state.
    fn control(&mut self, message: WsMessage) -> Step {
        let io = &mut self.socket.io();
        match self
            .protocol
            .write(io, message)
            .and_then(|()| self.protocol.flush(io))
        {
            Ok(()) => Step::Go,
            Err(_) => Step::Close(None),
        }
    }

    /// Reads every frame the client has sent so far.
    async fn read_client(&mut self) -> Step {
        loop {
            let read = self.protocol.read(&mut self.socket.io());
            match read {
                Ok(message) => {
                    self.heard = tokio::time::Instant::now();
                    if let Step::Close(c) = self.on_client_frame(message).await {
                        return Step::Close(c);
                    }
                }
                Err(WsError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Step::Go;
                }
                Err(WsError::Capacity(e)) => {
                    debug!(error = %e, "client frame too large");
                    return Step::Close(Some(close(1009, "frames are at most 64 KiB")));
                }
                Err(e) => {
                    debug!(error = %e, "the client's side ended");
                    return Step::Close(None);
                }
            }
        }
    }

    /// Writes what waits for the socket; a socket that fell behind has its
    /// subscriptions started again, each with a fresh snapshot (never a gap).
    async fn catch_up(&mut self) -> Step {
        match tokio::time::timeout(SEND_TIMEOUT, self.socket.drain()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Step::Close(None),
            Err(_) => return self.too_slow(),
        }
        if !self.socket.take_behind() {
            return Step::Go;
        }
        debug!("live socket fell behind; resyncing");
        self.resync().await
    }

    /// Starts every subscription again, each with a fresh snapshot at the topic's
    /// present `seq` (what the client had is replaced, never continued with a gap): for
    /// a socket that fell behind, and when the loss of data the node shows changes.
    async fn resync(&mut self) -> Step {
        let subs: Vec<Subscription> = self
            .subs
            .values()
            .map(|s| Subscription {
                name: s.name.clone(),
                topic: s.topic.clone(),
            })
            .collect();
        for sub in subs {
            self.state.metrics.live_resyncs.inc();
            if let Step::Close(c) = Box::pin(self.start(sub.name, sub.topic, None)).await {
                return Step::Close(c);
            }
        }
        Step::Go
    }

    /// A client that reads nothing: it never holds anyone else up, and is let go.
    fn too_slow(&self) -> Step {
        self.state.metrics.live_closed_slow.inc();
        Step::Close(Some(close(1013, "too slow: reconnect and resume")))
    }

    fn error(&mut self, topic: &str, error: &str) -> Step {
        let frame = Frame::new(topic, 0, "error", &serde_json::json!({ "error": error }));
        self.socket.send(frame.wire().clone());
        Step::Go
    }

    async fn on_client_frame(&mut self, frame: WsMessage) -> Step {
        let text = match frame {
            WsMessage::Text(t) => t,
            // tungstenite has queued its answer; the connection ends once it is out.
            WsMessage::Close(_) => return Step::Close(None),
            WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_) => return Step::Go,
            WsMessage::Binary(_) => return self.error("", "text_frames_only"),
        };
        match serde_json::from_str::<ClientFrame>(text.as_str()) {
            Ok(ClientFrame::Subscribe { topic, since }) => self.subscribe(topic, since).await,
            Ok(ClientFrame::Unsubscribe { topic }) => {
                self.unsubscribe(&topic);
                Step::Go
            }
            Err(e) => {
                debug!(error = %e, "unreadable client frame");
                self.error("", "bad_frame")
            }
        }
    }

    async fn subscribe(&mut self, name: String, since: Option<u64>) -> Step {
        let topic = match Topic::parse(&name) {
            Ok(topic) => topic,
            Err(error) => return self.error(&name, error),
        };
        // Authorisation on every subscribe, not only at the upgrade.
        if !self.principal.may_read(topic.bot()) {
            return self.error(&name, "forbidden");
        }
        // Boxed: a subscription's start is the largest state of the connection's
        // future, and every idle connection would carry its room otherwise.
        Box::pin(self.start(name, topic, since)).await
    }

    /// Joins the topic and sends what the client needs to be in step: the missed
    /// deltas, or a snapshot; the deltas after them follow from the hub's fan-out.
    async fn start(&mut self, name: String, topic: Topic, since: Option<u64>) -> Step {
        // One subscription per topic: a new subscribe starts it again.
        self.unsubscribe(&name);
        self.next_id += 1;
        let id = self.next_id;
        self.socket.starting(id);
        self.subs.insert(
            id,
            Subscription {
                name: name.clone(),
                topic: topic.clone(),
            },
        );
        let hub = self.state.hub.clone();
        let member: Arc<dyn botwatch_live::Member> = self.socket.clone();
        let (topic_name, t) = (name.clone(), topic.clone());
        let data_loss = DataLossItem::of(self.state.integrity.data_loss().as_ref());
        let loss = data_loss.clone();
        let joined = self
            .state
            .aggregator
            .query(move |a| {
                let joined = hub.join(&topic_name, since, member, id);
                let data = joined
                    .missed
                    .is_none()
                    .then(|| snapshot_figures(a, &t, loss));
                (joined, data)
            })
            .await;
        let Ok((joined, data)) = joined else {
            return Step::Close(Some(close(1012, "the server is stopping")));
        };
        let lead = match (joined.missed, data) {
            (Some(missed), _) => missed.iter().map(|f| f.wire().clone()).collect(),
            (None, Some(figures)) => {
                let log = self.state.log.clone();
                let data = match complete_snapshot(&log, &topic, figures, data_loss).await {
                    Ok(data) => data,
                    Err(e) => {
                        warn!(error = %e, topic = name, "cannot read a snapshot's messages");
                        self.unsubscribe(&name);
                        return self.error(&name, "storage_unavailable");
                    }
                };
                let snapshot = Frame::new(&name, joined.seq, "snapshot", &data);
                vec![snapshot.wire().clone()]
            }
            (None, None) => Vec::new(),
        };
        self.socket.go_live(id, joined.seq, lead);
        Step::Go
    }
}

/// Waits for the next change of the loss of data the node shows (`Integrity`), and
/// hands the receiver back for the next wait; never ends once nothing can change it.
async fn loss_changed(
    mut told: watch::Receiver<Option<DataLoss>>,
) -> watch::Receiver<Option<DataLoss>> {
    if told.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    told
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
    /// The loss of data the figures suffer from, until an operator clears it; null
    /// when there is none.
    data_loss: Option<DataLossItem>,
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
    /// The loss of data the figures suffer from, until an operator clears it; null
    /// when there is none.
    data_loss: Option<DataLossItem>,
}

/// `bot/{bot}/dialogs` snapshot: the latest dialogs, latest first.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DialogsSnapshot {
    items: Vec<DialogItem>,
    /// The loss of data the figures suffer from, until an operator clears it; null
    /// when there is none.
    data_loss: Option<DataLossItem>,
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
    data_loss: Option<DataLossItem>,
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
                data_loss,
            })
            .unwrap_or_default())
        }
        (_, SnapshotFigures::Whole(data)) => Ok(data),
        (Topic::Alerts { .. }, SnapshotFigures::Dialogs(rows)) => {
            let items = rows.into_iter().map(|f| DialogItem::new(f, None)).collect();
            Ok(serde_json::to_value(AlertsSnapshot { items, data_loss }).unwrap_or_default())
        }
        (Topic::Dialogs { bot }, SnapshotFigures::Dialogs(rows)) => {
            let mut items = Vec::with_capacity(rows.len());
            for f in rows {
                let latest = log.history(bot, &f.id, None, 1).await?;
                let preview = latest.entries.first().map(|e| Preview::of(&e.event));
                items.push(DialogItem::new(f, preview));
            }
            Ok(serde_json::to_value(DialogsSnapshot { items, data_loss }).unwrap_or_default())
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

fn snapshot_figures(
    a: &Aggregator,
    topic: &Topic,
    data_loss: Option<DataLossItem>,
) -> SnapshotFigures {
    match topic {
        Topic::Dialog { bot, user } => {
            SnapshotFigures::Dialog(a.bot(bot).and_then(|f| f.user(user)).map(Box::new))
        }
        Topic::Overview { bot } => SnapshotFigures::Whole(
            a.bot(bot)
                .map(|f| serde_json::to_value(overview(f, data_loss)).unwrap_or_default())
                .unwrap_or_default(),
        ),
        Topic::Stats { bot } => SnapshotFigures::Whole(
            a.bot(bot)
                .map(|f| {
                    let (from, to) = chart_range(f);
                    serde_json::to_value(stats_frame(f, &[to], from, to, data_loss))
                        .unwrap_or_default()
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
                data_loss,
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
        code: CloseCode::from(code),
        reason: reason.into(),
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
        // The wait for a change of the loss of data shown, boxed beside it.
        let wait = returned_size(loss_changed);
        assert!(wait <= 160, "the data-loss wait is {wait} bytes");
    }
}
