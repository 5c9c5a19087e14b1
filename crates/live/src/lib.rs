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
                            seq: 0,
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
        assert_eq!((a.seq, a.missed.is_none()), (0, true));
        assert_eq!(hub.publish("bot/a/dialogs", &1), Some(1));
    }

    #[test]
    fn a_resume_gets_exactly_the_missed_deltas_or_a_snapshot() {
        let hub = Hub::new(HubConfig {
            history: 4,
            ring: 16,
        });
        let topic = "bot/a/dialog/u1";
        let _keep = hub.attach(topic, None);
        for n in 0..6 {
            hub.publish(topic, &n);
        }
        // History holds 3..=6: resuming from 2 misses nothing, from 1 would.
        let resumed = hub.attach(topic, Some(2));
        assert_eq!(resumed.seq, 6);
        assert_eq!(seqs(&resumed.missed.expect("in the history")), [3, 4, 5, 6]);
        assert!(
            hub.attach(topic, Some(1)).missed.is_none(),
            "gone: a snapshot"
        );
        assert_eq!(hub.attach(topic, Some(6)).missed.map(|m| m.len()), Some(0));
        assert!(
            hub.attach(topic, Some(9)).missed.is_none(),
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
        let mut fast = hub.attach(topic, None).frames;
        let mut slow = hub.attach(topic, None).frames;
        hub.publish(topic, &serde_json::json!({"n": 1}));
        let a = fast.try_recv().expect("a frame");
        assert_eq!(
            &a.text[..],
            br#"{"topic":"bot/a/stats","seq":1,"kind":"delta","data":{"n":1}}"#
        );
        for n in 2..=5 {
            hub.publish(topic, &n);
            let f = fast.try_recv().expect("a frame");
            assert_eq!(f.seq, n);
        }
        assert!(
            matches!(
                slow.try_recv(),
                Err(broadcast::error::TryRecvError::Lagged(_))
            ),
            "the slow one is told, not silently skipped ahead"
        );
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
