//! The live hub: what dashboards subscribe to.
//!
//! A topic (`bot/{bot}/dialogs`, …) has a sequence number that grows by one per
//! message and a bounded history of its latest deltas. A message is serialised once,
//! when published, as a whole WebSocket text frame (header and JSON in one buffer), and
//! the same bytes go to every subscriber.
//!
//! Subscribers come in two kinds. A [`Member`] (a dashboard's socket) is handed each
//! frame by one of the hub's fan-out threads as soon as it is published: the thread
//! writes it to the socket itself when the socket takes it, so an event reaches ten
//! thousand dashboards without waking ten thousand tasks. Each member sits on one
//! fan-out thread for as long as it stays joined, so its frames reach it in order. A
//! ring reader ([`Hub::attach`], the web chat's one socket per visitor) reads a
//! broadcast ring instead and is told when it fell behind.
//!
//! Publishing, joining and attaching take the topic's lock, so a join sees either all
//! of a message (in the history and handed to the fan-out) or none of it. The server
//! publishes from the aggregator's thread and joins inside an aggregator query, so a
//! snapshot built in that query is exactly the state at the sequence number the join
//! reports.

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

/// Room left in front of a frame's JSON for its WebSocket header (at most 10 bytes).
const HEADER_ROOM: usize = 10;

/// One message of a topic, serialised once: a WebSocket text frame whose payload is
/// `{"topic","seq","kind","data"}` (UTF-8 JSON). `Bytes`, so every subscriber's socket
/// takes the same buffer, uncopied.
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    /// The whole frame as a server sends it (unmasked): header, then the JSON.
    wire: Bytes,
    /// Where the JSON starts in `wire`.
    payload_at: usize,
}

impl Frame {
    /// The frame of a topic's message (a snapshot is sent with the sequence number it
    /// stands at).
    pub fn new(topic: &str, seq: u64, kind: &str, data: &impl Serialize) -> Frame {
        let mut buf = vec![0; HEADER_ROOM];
        // A frame is made of strings, numbers and maps with string keys: it serialises.
        if serde_json::to_writer(
            &mut buf,
            &Wire {
                topic,
                seq,
                kind,
                data,
            },
        )
        .is_err()
        {
            buf.truncate(HEADER_ROOM);
        }
        let header = text_frame_header(buf.len() - HEADER_ROOM);
        let payload_at = header.len();
        let start = HEADER_ROOM - header.len();
        buf[start..HEADER_ROOM].copy_from_slice(&header);
        Frame {
            seq,
            wire: Bytes::from(buf).slice(start..),
            payload_at,
        }
    }

    /// The frame as it goes on the wire.
    pub fn wire(&self) -> &Bytes {
        &self.wire
    }

    /// The JSON the frame carries.
    pub fn text(&self) -> Bytes {
        self.wire.slice(self.payload_at..)
    }
}

/// The header of a server's (unmasked, final) text frame of `len` bytes (RFC 6455 §5.2).
fn text_frame_header(len: usize) -> Vec<u8> {
    const FIN_TEXT: u8 = 0x81;
    match len {
        0..=125 => vec![FIN_TEXT, len as u8],
        126..=0xFFFF => {
            let mut h = vec![FIN_TEXT, 126];
            h.extend_from_slice(&(len as u16).to_be_bytes());
            h
        }
        _ => {
            let mut h = vec![FIN_TEXT, 127];
            h.extend_from_slice(&(len as u64).to_be_bytes());
            h
        }
    }
}

#[derive(Serialize)]
struct Wire<'a, T: Serialize> {
    topic: &'a str,
    seq: u64,
    kind: &'a str,
    data: &'a T,
}

/// The JSON text of a frame (what [`Frame::text`] gives).
pub fn frame_text(topic: &str, seq: u64, kind: &str, data: &impl Serialize) -> Bytes {
    Frame::new(topic, seq, kind, data).text()
}

/// Where a topic's sequence starts: at random in [2^50, 2^51). A `since` that a client
/// got from another node, from this node before a restart, or from an earlier instance
/// of the topic (swept, then watched again) then lies outside this instance's history,
/// and the client gets a snapshot — not deltas of another sequence that happen to carry
/// the numbers after its own, which would skip what it missed without a sign. Below
/// 2^53, so a browser reads it exactly.
fn first_seq() -> u64 {
    let random = getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    (1 << 50) | (random & ((1 << 50) - 1))
}

/// A subscriber the fan-out hands frames to (a dashboard's socket).
pub trait Member: Send + Sync {
    /// Which member this is, unique in the process: its subscriptions are found by it,
    /// and it chooses the member's fan-out thread.
    fn id(&self) -> u64;
    /// Frames of the member's subscription `subscription`, in the topic's order (one,
    /// or several when they were published faster than the fan-out handed them out).
    /// Runs on a fan-out thread, call after call in order: it must never block (a
    /// member that cannot take them now queues them, or knows itself behind and
    /// resyncs).
    fn take(&self, subscription: u64, frames: &[Arc<Frame>]);
}

/// One subscription of a member, as a topic's fan-out list holds it.
#[derive(Clone)]
struct Entry {
    member: Arc<dyn Member>,
    subscription: u64,
}

/// Entries a chunk of a fan-out list holds at most.
const CHUNK: usize = 256;

/// The members one fan-out thread serves for a topic, in chunks shared with the jobs
/// in flight. A join or leave while a job holds the list copies what it changes — the
/// list of chunk pointers and one chunk — not the whole list: ten thousand dashboards
/// leaving while a frame goes out to them cost each a few hundred pointer copies, not
/// ten thousand.
type MemberList = Arc<Vec<Arc<Vec<Entry>>>>;

/// A message for one fan-out thread: a frame and the members of its list.
type Job = (Arc<Frame>, MemberList);

struct TopicState {
    seq: u64,
    history: VecDeque<Arc<Frame>>,
    /// What every frame up to here says no longer holds (see [`Hub::forget_history`]):
    /// a resume from here or before gets a snapshot.
    forgotten_at: Option<u64>,
    /// Members by fan-out thread. Shared with the jobs in flight: a join or leave
    /// while one is under way copies the list, otherwise it changes in place.
    members: Vec<MemberList>,
}

impl TopicState {
    fn member_count(&self) -> usize {
        self.members
            .iter()
            .flat_map(|list| list.iter())
            .map(|chunk| chunk.len())
            .sum()
    }
}

struct Topic {
    state: Mutex<TopicState>,
    ring: broadcast::Sender<Arc<Frame>>,
    /// Since when nobody reads it (as of the last sweep).
    idle_since: Mutex<Option<Instant>>,
}

impl Topic {
    fn lock(&self) -> MutexGuard<'_, TopicState> {
        // A panic while holding this lock leaves nothing half-done that matters here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Nobody reads it: no member, no ring reader.
    fn is_unread(&self) -> bool {
        self.ring.receiver_count() == 0 && self.lock().member_count() == 0
    }
}

/// How a ring reader's subscription starts.
pub struct Attach {
    /// The topic's sequence number now: a snapshot built at the same moment stands at
    /// it, and deltas after it follow on `frames`.
    pub seq: u64,
    /// The deltas after the `since` asked for, when the history still has all of them;
    /// `None` when the client needs a snapshot.
    pub missed: Option<Vec<Arc<Frame>>>,
    pub frames: broadcast::Receiver<Arc<Frame>>,
}

/// How a member's subscription starts: like [`Attach`], the frames after `seq` going
/// to the member.
pub struct Joined {
    pub seq: u64,
    pub missed: Option<Vec<Arc<Frame>>>,
}

/// Sizes of a hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Deltas a topic keeps for clients that resume with `since`.
    pub history: usize,
    /// Frames a subscriber may be behind before it is resynced with a snapshot.
    pub ring: usize,
    /// Threads that hand frames to members (each member stays on one).
    pub fanout_threads: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history: 256,
            ring: 1024,
            fanout_threads: std::thread::available_parallelism().map_or(2, |n| n.get().min(4)),
        }
    }
}

/// Every topic of this node.
pub struct Hub {
    config: HubConfig,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
    /// One queue per fan-out thread; a thread ends when the hub is dropped.
    fanout: Vec<mpsc::Sender<Job>>,
}

/// Jobs a fan-out thread takes at once when they queue up.
const FANOUT_BATCH: usize = 64;

/// A fan-out thread: hands each job's frame to each of its members, in order. Jobs
/// that queued up meanwhile are taken together, and a run of them with the same list
/// of members (the same `Arc`: a list is copied when it changes while a job holds it)
/// goes to each member in one call, so a busy topic costs each socket one write per
/// batch, not one per frame.
fn fan_out(jobs: mpsc::Receiver<Job>) {
    let mut batch: Vec<Job> = Vec::with_capacity(FANOUT_BATCH);
    let mut frames: Vec<Arc<Frame>> = Vec::with_capacity(FANOUT_BATCH);
    while let Ok(job) = jobs.recv() {
        batch.push(job);
        while batch.len() < FANOUT_BATCH
            && let Ok(job) = jobs.try_recv()
        {
            batch.push(job);
        }
        for run in batch.chunk_by(|a, b| Arc::ptr_eq(&a.1, &b.1)) {
            frames.clear();
            frames.extend(run.iter().map(|(frame, _)| frame.clone()));
            for entry in run[0].1.iter().flat_map(|chunk| chunk.iter()) {
                entry.member.take(entry.subscription, &frames);
            }
        }
        batch.clear();
    }
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        let threads = config.fanout_threads.max(1);
        let fanout = (0..threads)
            .filter_map(|n| {
                let (tx, rx) = mpsc::channel();
                std::thread::Builder::new()
                    .name(format!("live-fanout-{n}"))
                    .spawn(move || fan_out(rx))
                    .ok()
                    .map(|_| tx)
            })
            .collect::<Vec<_>>();
        Hub {
            config,
            topics: Mutex::new(HashMap::new()),
            fanout,
        }
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics().get(name).cloned()
    }

    fn topic_or_new(&self, name: &str) -> Arc<Topic> {
        self.topics()
            .entry(name.to_owned())
            .or_insert_with(|| {
                Arc::new(Topic {
                    state: Mutex::new(TopicState {
                        seq: first_seq(),
                        history: VecDeque::new(),
                        forgotten_at: None,
                        members: (0..self.fanout.len().max(1))
                            .map(|_| Arc::new(Vec::new()))
                            .collect(),
                    }),
                    ring: broadcast::channel(self.config.ring.max(1)).0,
                    idle_since: Mutex::new(None),
                })
            })
            .clone()
    }

    /// Whether no topic is watched at all (then no delta needs making).
    pub fn is_empty(&self) -> bool {
        self.topics().is_empty()
    }

    /// Whether anybody subscribed to `topic` since it was last emptied: publishing to
    /// other topics is skipped (nobody would read it).
    pub fn is_watched(&self, topic: &str) -> bool {
        self.topics().contains_key(topic)
    }

    /// Publishes a delta; it is serialised here, once. Returns its sequence number, or
    /// `None` when nobody watches the topic.
    pub fn publish(&self, topic: &str, data: &impl Serialize) -> Option<u64> {
        let t = self.topic(topic)?;
        let mut state = t.lock();
        state.seq += 1;
        let frame = Arc::new(Frame::new(topic, state.seq, "delta", data));
        state.history.push_back(frame.clone());
        while state.history.len() > self.config.history {
            state.history.pop_front();
        }
        for (members, thread) in state.members.iter().zip(&self.fanout) {
            if !members.is_empty() {
                // A thread is gone only when the hub is: nobody to hand it to then.
                let _ = thread.send((frame.clone(), members.clone()));
            }
        }
        // No ring reader is not an error: they may all have gone since.
        let _ = t.ring.send(frame);
        Some(state.seq)
    }

    /// The deltas after `since`, when the history still holds every one of them.
    fn missed(state: &TopicState, since: Option<u64>) -> Option<Vec<Arc<Frame>>> {
        let since = since?;
        if since > state.seq {
            return None; // a sequence this node never reached (another node's)
        }
        if state.forgotten_at.is_some_and(|at| since <= at) {
            return None; // what the client has is stale, deltas or not
        }
        let oldest = state.history.front().map_or(state.seq + 1, |f| f.seq);
        (since + 1 >= oldest).then(|| {
            state
                .history
                .iter()
                .filter(|f| f.seq > since)
                .cloned()
                .collect()
        })
    }

    /// Starts (or resumes, from `since`) a ring reader's subscription to `topic`.
    pub fn attach(&self, topic: &str, since: Option<u64>) -> Attach {
        let t = self.topic_or_new(topic);
        let state = t.lock();
        Attach {
            seq: state.seq,
            missed: Self::missed(&state, since),
            frames: t.ring.subscribe(),
        }
    }

    /// Starts (or resumes, from `since`) `member`'s subscription `subscription` to
    /// `topic`: every frame published after the returned `seq` is handed to it, until
    /// it [leaves](Hub::leave).
    pub fn join(
        &self,
        topic: &str,
        since: Option<u64>,
        member: Arc<dyn Member>,
        subscription: u64,
    ) -> Joined {
        let t = self.topic_or_new(topic);
        let mut state = t.lock();
        let thread = (member.id() % state.members.len() as u64) as usize;
        let chunks = Arc::make_mut(&mut state.members[thread]);
        let entry = Entry {
            member,
            subscription,
        };
        match chunks.last_mut() {
            Some(last) if last.len() < CHUNK => Arc::make_mut(last).push(entry),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(entry);
                chunks.push(Arc::new(chunk));
            }
        }
        Joined {
            seq: state.seq,
            missed: Self::missed(&state, since),
        }
    }

    /// Ends member `member`'s subscription `subscription` to `topic`: no frame
    /// published after this returns is handed to it.
    pub fn leave(&self, topic: &str, member: u64, subscription: u64) {
        let Some(t) = self.topic(topic) else {
            return;
        };
        let mut state = t.lock();
        let thread = (member % state.members.len() as u64) as usize;
        let found = state.members[thread]
            .iter()
            .enumerate()
            .find_map(|(c, chunk)| {
                let at = chunk
                    .iter()
                    .position(|e| e.member.id() == member && e.subscription == subscription)?;
                Some((c, at))
            });
        if let Some((c, at)) = found {
            let chunks = Arc::make_mut(&mut state.members[thread]);
            let chunk = Arc::make_mut(&mut chunks[c]);
            chunk.swap_remove(at);
            if chunk.is_empty() {
                chunks.remove(c);
            }
        }
    }

    /// Forgets topics nobody has read for `idle` (their history goes with them: a
    /// client that resumes later gets a snapshot). Run it every so often.
    pub fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        self.topics().retain(|_, t| {
            let mut since = t.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            if !t.is_unread() {
                *since = None;
                return true;
            }
            now.duration_since(*since.get_or_insert(now)) < idle
        });
    }

    /// Every topic's history is stale (what the node shows changed beside its deltas: a
    /// loss of data found or cleared): a client resuming from any `seq` up to now gets
    /// a snapshot, not the deltas it missed.
    pub fn forget_history(&self) {
        for topic in self.topics().values() {
            let mut state = topic.lock();
            state.history.clear();
            state.forgotten_at = Some(state.seq);
        }
    }

    /// Topics and subscriptions, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let topics = self.topics();
        let subscriptions = topics
            .values()
            .map(|t| t.ring.receiver_count() + t.lock().member_count())
            .sum();
        (topics.len(), subscriptions)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn seqs(frames: &[Arc<Frame>]) -> Vec<u64> {
        frames.iter().map(|f| f.seq).collect()
    }

    #[test]
    fn nobody_watching_means_nothing_published() {
        let hub = Hub::new(HubConfig::default());
        assert_eq!(hub.publish("bot/a/dialogs", &1), None);
        let a = hub.attach("bot/a/dialogs", None);
        assert!(a.missed.is_none());
        assert_eq!(hub.publish("bot/a/dialogs", &1), Some(a.seq + 1));
    }

    #[test]
    fn after_the_history_is_forgotten_every_resume_up_to_then_gets_a_snapshot() {
        let hub = Hub::new(HubConfig::default());
        let topic = "bot/a/overview";
        let base = hub.attach(topic, None).seq;
        let _keep = hub.attach(topic, None);
        for n in 0..3 {
            hub.publish(topic, &n);
        }
        assert_eq!(
            hub.attach(topic, Some(base + 1)).missed.map(|m| m.len()),
            Some(2)
        );
        hub.forget_history();
        for since in [base + 1, base + 3] {
            assert!(
                hub.attach(topic, Some(since)).missed.is_none(),
                "from {since}: a snapshot"
            );
        }
        hub.publish(topic, &3);
        assert_eq!(
            seqs(&hub.attach(topic, Some(base + 4)).missed.expect("after")),
            [] as [u64; 0]
        );
        assert!(hub.attach(topic, Some(base + 3)).missed.is_none());
    }

    #[test]
    fn a_resume_gets_exactly_the_missed_deltas_or_a_snapshot() {
        let hub = Hub::new(HubConfig {
            history: 4,
            ring: 16,
            ..HubConfig::default()
        });
        let topic = "bot/a/dialog/u1";
        let base = hub.attach(topic, None).seq;
        let _keep = hub.attach(topic, None);
        for n in 0..6 {
            hub.publish(topic, &n);
        }
        // History holds base+3..=base+6: resuming from base+2 misses nothing, from
        // base+1 would.
        let resumed = hub.attach(topic, Some(base + 2));
        assert_eq!(resumed.seq, base + 6);
        assert_eq!(
            seqs(&resumed.missed.expect("in the history")),
            [3, 4, 5, 6].map(|n| base + n)
        );
        assert!(
            hub.attach(topic, Some(base + 1)).missed.is_none(),
            "gone: a snapshot"
        );
        assert_eq!(
            hub.attach(topic, Some(base + 6)).missed.map(|m| m.len()),
            Some(0)
        );
        assert!(
            hub.attach(topic, Some(base + 9)).missed.is_none(),
            "ahead: a snapshot"
        );
    }

    #[test]
    fn frames_are_shared_and_a_slow_subscriber_is_told_it_lagged() {
        let hub = Hub::new(HubConfig {
            history: 4,
            ring: 2,
            ..HubConfig::default()
        });
        let topic = "bot/a/stats";
        let attach = hub.attach(topic, None);
        let (base, mut fast) = (attach.seq, attach.frames);
        let mut slow = hub.attach(topic, None).frames;
        hub.publish(topic, &serde_json::json!({"n": 1}));
        let a = fast.try_recv().expect("a frame");
        assert_eq!(
            String::from_utf8_lossy(&a.text()),
            format!(
                r#"{{"topic":"bot/a/stats","seq":{},"kind":"delta","data":{{"n":1}}}}"#,
                base + 1
            )
        );
        for n in 2..=5 {
            hub.publish(topic, &n);
            let f = fast.try_recv().expect("a frame");
            assert_eq!(f.seq, base + n);
        }
        assert!(
            matches!(
                slow.try_recv(),
                Err(broadcast::error::TryRecvError::Lagged(_))
            ),
            "the slow one is told, not silently skipped ahead"
        );
    }

    /// A client resumes where another sequence of the same topic stood: on another
    /// node, after a restart (a new hub), or after the topic was swept and watched
    /// again. It must get a snapshot, never that sequence's deltas in place of the
    /// ones it missed.
    #[test]
    fn a_since_from_another_sequence_of_the_topic_gets_a_snapshot() {
        let topic = "bot/a/dialog/u1";
        let before = Hub::new(HubConfig::default());
        let _watching = before.attach(topic, None);
        let mut since = 0;
        for n in 0..3 {
            since = before.publish(topic, &n).expect("watched");
        }

        // The same topic on a restarted node (or another node) has moved on since.
        let after = Hub::new(HubConfig::default());
        let _watching = after.attach(topic, None);
        for n in 0..10 {
            after.publish(topic, &n);
        }
        let resumed = after.attach(topic, Some(since));
        assert!(
            resumed.missed.is_none(),
            "deltas of another sequence instead of a snapshot: {:?}",
            resumed.missed.map(|m| seqs(&m))
        );

        // The same on one node: swept while nobody watched, then watched again.
        let since = resumed.seq;
        drop((_watching, resumed));
        after.sweep(Duration::ZERO);
        after.sweep(Duration::ZERO);
        assert!(!after.is_watched(topic));
        let _again = after.attach(topic, None);
        for n in 0..20 {
            after.publish(topic, &n);
        }
        assert!(after.attach(topic, Some(since)).missed.is_none());
    }

    #[test]
    fn unwatched_topics_are_swept() {
        let hub = Hub::new(HubConfig::default());
        let a = hub.attach("bot/a/overview", None);
        hub.sweep(Duration::ZERO);
        assert_eq!(hub.counts(), (1, 1));
        drop(a);
        hub.sweep(Duration::from_secs(60));
        assert_eq!(hub.counts(), (1, 0), "kept a while for clients that resume");
        hub.sweep(Duration::ZERO);
        assert_eq!(hub.counts(), (0, 0));
        assert!(!hub.is_watched("bot/a/overview"));
        assert!(hub.is_empty());
    }

    /// A member that keeps what it is handed.
    struct Keeper {
        id: u64,
        taken: Mutex<Vec<(u64, u64)>>,
    }

    impl Member for Keeper {
        fn id(&self) -> u64 {
            self.id
        }
        fn take(&self, subscription: u64, frames: &[Arc<Frame>]) {
            self.taken
                .lock()
                .expect("not poisoned")
                .extend(frames.iter().map(|f| (subscription, f.seq)));
        }
    }

    impl Keeper {
        fn new(id: u64) -> Arc<Keeper> {
            Arc::new(Keeper {
                id,
                taken: Mutex::new(Vec::new()),
            })
        }

        /// What it was handed, once `n` frames arrived (the fan-out runs on its own
        /// threads).
        fn wait_for(&self, n: usize) -> Vec<(u64, u64)> {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let taken = self.taken.lock().expect("not poisoned").clone();
                if taken.len() >= n || Instant::now() > deadline {
                    return taken;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }

    #[test]
    fn members_are_handed_every_frame_after_their_join_in_order_until_they_leave() {
        let hub = Hub::new(HubConfig {
            fanout_threads: 2,
            ..HubConfig::default()
        });
        let topic = "bot/a/dialog/u1";
        let (a, b) = (Keeper::new(1), Keeper::new(2));
        let base = hub.join(topic, None, a.clone(), 7).seq;
        for n in 1..=100 {
            hub.publish(topic, &n);
        }
        let joined = hub.join(topic, Some(base + 90), b.clone(), 3);
        assert_eq!(joined.seq, base + 100);
        assert_eq!(
            seqs(&joined.missed.expect("in the history")),
            (91..=100).map(|n| base + n).collect::<Vec<_>>()
        );
        for n in 101..=200 {
            hub.publish(topic, &n);
        }
        hub.leave(topic, 1, 7);
        hub.publish(topic, &201);
        let expected = |subscription, from: u64, to: u64| -> Vec<(u64, u64)> {
            (from..=to).map(|n| (subscription, base + n)).collect()
        };
        assert_eq!(b.wait_for(101), expected(3, 101, 201));
        assert_eq!(
            a.wait_for(200),
            expected(7, 1, 200),
            "every frame in order, none after its leave"
        );
        assert_eq!(hub.counts(), (1, 1));
    }

    /// Many members (several chunks per fan-out thread), a third of them leaving while
    /// frames are under way: each gets exactly the frames published while it was
    /// joined.
    #[test]
    fn many_members_joining_and_leaving_while_frames_go_out_each_get_their_own() {
        let hub = Hub::new(HubConfig {
            fanout_threads: 2,
            ..HubConfig::default()
        });
        let topic = "bot/a/overview";
        let members: Vec<Arc<Keeper>> = (0..1_500).map(Keeper::new).collect();
        let base = hub.join(topic, None, members[0].clone(), 1).seq;
        for m in &members[1..] {
            hub.join(topic, None, m.clone(), 1);
        }
        for n in 1..=10 {
            hub.publish(topic, &n);
        }
        for m in members.iter().filter(|m| m.id % 3 == 0) {
            hub.leave(topic, m.id, 1);
        }
        for n in 11..=20 {
            hub.publish(topic, &n);
        }
        for m in &members {
            let last = if m.id % 3 == 0 { 10 } else { 20 };
            let expected: Vec<(u64, u64)> = (1..=last).map(|n| (1, base + n)).collect();
            assert_eq!(m.wait_for(last as usize), expected, "member {}", m.id);
        }
        assert_eq!(hub.counts(), (1, 1_000));
    }

    #[test]
    fn a_frame_is_a_websocket_text_frame_of_its_json() {
        for size in [0, 100, 125, 126, 1_000, 65_535, 65_536, 200_000] {
            let frame = Frame::new("t", 1, "delta", &"x".repeat(size));
            let text = frame.text();
            let wire = frame.wire();
            let header = &wire[..wire.len() - text.len()];
            let len = text.len();
            let expected: Vec<u8> = match len {
                0..=125 => vec![0x81, len as u8],
                126..=65_535 => [vec![0x81, 126], (len as u16).to_be_bytes().to_vec()].concat(),
                _ => [vec![0x81, 127], (len as u64).to_be_bytes().to_vec()].concat(),
            };
            assert_eq!(header, expected, "a JSON text of {len} bytes");
            let json: serde_json::Value = serde_json::from_slice(&text).expect("JSON");
            assert_eq!(json["data"].as_str().map(str::len), Some(size));
        }
    }
}
