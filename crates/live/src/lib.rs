//! The live hub: what dashboards subscribe to.
//!
//! A topic (`bot/{bot}/dialogs`, …) has a sequence number that grows by one per
//! message, a bounded history of its latest deltas, and a broadcast ring its
//! subscribers read from. A message is serialised once, when published, and the same
//! bytes go to every subscriber. A subscriber that falls further behind than the ring
//! holds is told so (it is `Lagged`) and is resynced with a fresh snapshot by its
//! connection: it never slows the publisher or anyone else, and never misses a delta
//! silently.
//!
//! Publishing and attaching take the topic's lock, so an attach sees either all of a
//! message (in the history and the ring) or none of it. The server publishes from the
//! aggregator's thread and attaches inside an aggregator query, so a snapshot built in
//! that query is exactly the state at the sequence number the attach reports.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::broadcast;

/// One message of a topic, serialised once: `{"topic","seq","kind","data"}` (UTF-8
/// JSON; `Bytes`, so every subscriber's socket takes the same buffer, uncopied).
#[derive(Debug)]
pub struct Frame {
    pub seq: u64,
    pub text: Bytes,
}

#[derive(Serialize)]
struct Wire<'a, T: Serialize> {
    topic: &'a str,
    seq: u64,
    kind: &'a str,
    data: &'a T,
}

/// The text of a frame (a snapshot is sent with the sequence number it stands at).
pub fn frame_text(topic: &str, seq: u64, kind: &str, data: &impl Serialize) -> Bytes {
    // A frame is made of strings, numbers and maps with string keys: it serialises.
    serde_json::to_vec(&Wire {
        topic,
        seq,
        kind,
        data,
    })
    .unwrap_or_default()
    .into()
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

struct TopicState {
    seq: u64,
    history: VecDeque<Arc<Frame>>,
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
}

/// How a subscription starts.
pub struct Attach {
    /// The topic's sequence number now: a snapshot built at the same moment stands at
    /// it, and deltas after it follow on `frames`.
    pub seq: u64,
    /// The deltas after the `since` asked for, when the history still has all of them;
    /// `None` when the client needs a snapshot.
    pub missed: Option<Vec<Arc<Frame>>>,
    pub frames: broadcast::Receiver<Arc<Frame>>,
}

/// Sizes of a hub.
#[derive(Debug, Clone, Copy)]
pub struct HubConfig {
    /// Deltas a topic keeps for clients that resume with `since`.
    pub history: usize,
    /// Frames a subscriber may be behind before it is resynced with a snapshot.
    pub ring: usize,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            history: 256,
            ring: 1024,
        }
    }
}

/// Every topic of this node.
pub struct Hub {
    config: HubConfig,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
}

impl Hub {
    pub fn new(config: HubConfig) -> Hub {
        Hub {
            config,
            topics: Mutex::new(HashMap::new()),
        }
    }

    fn topics(&self) -> MutexGuard<'_, HashMap<String, Arc<Topic>>> {
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics().get(name).cloned()
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
        let frame = Arc::new(Frame {
            seq: state.seq,
            text: frame_text(topic, state.seq, "delta", data),
        });
        state.history.push_back(frame.clone());
        while state.history.len() > self.config.history {
            state.history.pop_front();
        }
        // No receiver is not an error: they may all have gone since.
        let _ = t.ring.send(frame);
        Some(state.seq)
    }

    /// Starts (or resumes, from `since`) a subscription to `topic`.
    pub fn attach(&self, topic: &str, since: Option<u64>) -> Attach {
        let t = {
            let mut topics = self.topics();
            topics
                .entry(topic.to_owned())
                .or_insert_with(|| {
                    Arc::new(Topic {
                        state: Mutex::new(TopicState {
                            seq: first_seq(),
                            history: VecDeque::new(),
                        }),
                        ring: broadcast::channel(self.config.ring.max(1)).0,
                        idle_since: Mutex::new(None),
                    })
                })
                .clone()
        };
        let state = t.lock();
        let frames = t.ring.subscribe();
        let missed = since.and_then(|since| {
            if since > state.seq {
                return None; // a sequence this node never reached (another node's)
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
        });
        Attach {
            seq: state.seq,
            missed,
            frames,
        }
    }

    /// Forgets topics nobody has read for `idle` (their history goes with them: a
    /// client that resumes later gets a snapshot). Run it every so often.
    pub fn sweep(&self, idle: Duration) {
        let now = Instant::now();
        self.topics().retain(|_, t| {
            let mut since = t.idle_since.lock().unwrap_or_else(|e| e.into_inner());
            if t.ring.receiver_count() > 0 {
                *since = None;
                return true;
            }
            now.duration_since(*since.get_or_insert(now)) < idle
        });
    }

    /// Topics and subscriptions, for metrics.
    pub fn counts(&self) -> (usize, usize) {
        let topics = self.topics();
        let subscriptions = topics.values().map(|t| t.ring.receiver_count()).sum();
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
    fn a_resume_gets_exactly_the_missed_deltas_or_a_snapshot() {
        let hub = Hub::new(HubConfig {
            history: 4,
            ring: 16,
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
        });
        let topic = "bot/a/stats";
        let attach = hub.attach(topic, None);
        let (base, mut fast) = (attach.seq, attach.frames);
        let mut slow = hub.attach(topic, None).frames;
        hub.publish(topic, &serde_json::json!({"n": 1}));
        let a = fast.try_recv().expect("a frame");
        assert_eq!(
            String::from_utf8_lossy(&a.text),
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
}
