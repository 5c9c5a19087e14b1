//! The one task that owns every bot's figures (the model of tokio-console's
//! aggregator): no locks around the state; events arrive in batches and queries run
//! between two batches, so every answer is a consistent view and no reader ever
//! blocks the writer for longer than one query.

use std::collections::HashMap;

use botwatch_event::Event;
use tokio::sync::{mpsc, oneshot};
use tracing::debug;

use crate::bot::{BotFigures, BotSettings};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The number of the snapshot layout and meaning. Bump it with any change of the
/// state's types or of what they count (sessions, slots, normalisation, …): snapshots
/// of another number are not loaded, the log is replayed instead.
pub const SNAPSHOT_SCHEMA: u32 = 7;

/// Every bot's figures.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Aggregator {
    bots: Map<String, BotFigures>,
    /// Settings of bots that have them; the others use the defaults.
    settings: Map<String, BotSettings>,
}

impl Aggregator {
    pub fn apply(&mut self, event: &Event) {
        if let Some(figures) = self.bots.get_mut(&event.bot) {
            figures.apply(event);
            return;
        }
        let settings = self.settings.get(&event.bot).copied().unwrap_or_default();
        let mut figures = BotFigures::new(settings);
        figures.apply(event);
        self.bots.insert(event.bot.clone(), figures);
    }

    /// Applies events in log order. Users are looked up a few events ahead of their
    /// changes, so that the lookups' memory reads overlap instead of waiting one by one
    /// (with a million users each lookup is a cache miss or two); the figures are the
    /// same as applying one by one.
    pub fn apply_all(&mut self, events: &[Event]) {
        const AHEAD: usize = 16;
        for chunk in events.chunks(AHEAD) {
            let mut hints = [None; AHEAD];
            for (hint, e) in hints.iter_mut().zip(chunk) {
                *hint = self.bots.get(&e.bot).and_then(|f| f.touch_user(&e.user.id));
            }
            for (hint, e) in hints.into_iter().zip(chunk) {
                match (hint, self.bots.get_mut(&e.bot)) {
                    (Some(i), Some(figures)) => figures.apply_to(i, e),
                    _ => self.apply(e),
                }
            }
        }
    }

    /// Puts in place a bot's figures recounted with new settings.
    pub fn replace(&mut self, bot: String, figures: BotFigures) {
        self.settings.insert(bot.clone(), figures.settings());
        self.bots.insert(bot, figures);
    }

    pub fn bot(&self, bot: &str) -> Option<&BotFigures> {
        self.bots.get(bot)
    }

    /// The settings each bot's figures were counted with.
    pub fn settings(&self) -> impl Iterator<Item = (&str, BotSettings)> {
        self.bots.iter().map(|(b, f)| (b.as_str(), f.settings()))
    }

    /// What a snapshot keeps, copied: encode the copy with
    /// [`to_bytes`](Aggregator::to_bytes) off the aggregator's thread.
    pub fn copy_for_snapshot(&self) -> Aggregator {
        Aggregator {
            bots: self
                .bots
                .iter()
                .map(|(bot, f)| (bot.clone(), f.copy_for_snapshot()))
                .collect(),
            settings: self.settings.clone(),
        }
    }

    /// The whole state as bytes, for a snapshot.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SnapshotError> {
        postcard::to_stdvec(self).map_err(|e| SnapshotError(e.to_string()))
    }

    /// The state back from [`to_bytes`](Aggregator::to_bytes); every byte must be used.
    pub fn from_bytes(bytes: &[u8]) -> Result<Aggregator, SnapshotError> {
        let (state, rest) =
            postcard::take_from_bytes(bytes).map_err(|e| SnapshotError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(SnapshotError(format!("{} bytes left over", rest.len())));
        }
        Ok(state)
    }

    /// The bots that have events, sorted.
    pub fn bots(&self) -> Vec<&str> {
        let mut bots: Vec<&str> = self.bots.keys().map(String::as_str).collect();
        bots.sort_unstable();
        bots
    }
}

type Query = Box<dyn FnOnce(&Aggregator) + Send>;

/// Called on the aggregator's thread after each batch is applied, with the state and
/// the batch: where the live hub's deltas are made (so that they are in step with
/// queries: a query sees every batch whose deltas were published, and no other).
pub type OnApplied = Box<dyn FnMut(&Aggregator, &[Event]) + Send>;

enum Command {
    Apply(Vec<Event>),
    Replace(String, Box<BotFigures>),
    Query(Query),
}

/// A snapshot could not be written or read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("snapshot: {0}")]
pub struct SnapshotError(String);

/// The aggregator task has stopped (the service is shutting down).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the aggregator has stopped")]
pub struct Stopped;

/// How the rest of the service talks to the aggregator task. Cheap to clone.
#[derive(Clone)]
pub struct AggregatorHandle {
    commands: mpsc::Sender<Command>,
}

impl AggregatorHandle {
    /// Starts the task with `state` (empty, or restored from a snapshot); it stops
    /// when every handle is dropped.
    ///
    /// The owner runs on a thread of its own, not on the async runtime: applying a
    /// batch or encoding a snapshot (a second or more for a million users) then only
    /// holds up the aggregator's own queries, never the runtime's other work.
    pub fn spawn(state: Aggregator) -> (AggregatorHandle, tokio::task::JoinHandle<()>) {
        AggregatorHandle::spawn_with(state, Box::new(|_, _| {}))
    }

    /// [`spawn`](AggregatorHandle::spawn), calling `on_applied` after each batch.
    pub fn spawn_with(
        state: Aggregator,
        mut on_applied: OnApplied,
    ) -> (AggregatorHandle, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<Command>(64);
        let task = tokio::task::spawn_blocking(move || {
            let mut state = state;
            while let Some(command) = rx.blocking_recv() {
                match command {
                    Command::Apply(events) => {
                        state.apply_all(&events);
                        debug!(events = events.len(), "applied");
                        let told = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            on_applied(&state, &events)
                        }));
                        if told.is_err() {
                            tracing::error!(
                                "making live deltas panicked; the figures are unchanged"
                            );
                        }
                    }
                    Command::Replace(bot, figures) => state.replace(bot, *figures),
                    // A query only reads; one that panics is a bug in that query, and
                    // must not take every figure down with it.
                    Command::Query(query) => {
                        let answered =
                            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                query(&state)
                            }));
                        if answered.is_err() {
                            tracing::error!("a query panicked; the figures are unchanged");
                        }
                    }
                }
            }
        });
        (AggregatorHandle { commands: tx }, task)
    }

    /// Applies events read from the log (each once, in log order).
    pub async fn apply(&self, events: Vec<Event>) -> Result<(), Stopped> {
        self.commands
            .send(Command::Apply(events))
            .await
            .map_err(|_| Stopped)
    }

    /// Replaces a bot's figures (recounted after its settings changed).
    pub async fn replace(&self, bot: String, figures: BotFigures) -> Result<(), Stopped> {
        self.commands
            .send(Command::Replace(bot, Box::new(figures)))
            .await
            .map_err(|_| Stopped)
    }

    /// Runs `f` on the state between two batches and returns its answer.
    pub async fn query<T, F>(&self, f: F) -> Result<T, Stopped>
    where
        T: Send + 'static,
        F: FnOnce(&Aggregator) -> T + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let query: Query = Box::new(move |state| {
            let _ = reply.send(f(state));
        });
        self.commands
            .send(Command::Query(query))
            .await
            .map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use botwatch_event::{Direction, EventKind, UserInfo};

    #[test]
    fn a_snapshot_gives_back_the_same_figures_and_they_go_on_the_same() {
        let event = |i: i64, user: &str, text: &str| Event {
            id: format!("e{i}"),
            bot: "b".to_owned(),
            kind: EventKind::Message,
            direction: Some(if i % 3 == 0 {
                Direction::Out
            } else {
                Direction::In
            }),
            provider: "web".to_owned(),
            user: UserInfo {
                id: user.to_owned(),
                name: Some(format!("name {user}")),
                ..UserInfo::default()
            },
            text: Some(text.to_owned()),
            attachments: Vec::new(),
            sender: None,
            mode: None,
            delivery: None,
            audience: None,
            broadcast: None,
            ts: chrono::DateTime::from_timestamp_millis(1_780_000_000_000 + i * 600_000)
                .expect("time"),
        };
        let mut whole = Aggregator::default();
        let mut before = Aggregator::default();
        for i in 0..40 {
            let e = event(i, &format!("u{}", i % 4), "Hello");
            whole.apply(&e);
            if i < 25 {
                before.apply(&e);
            }
        }
        // The copy a snapshot is encoded from holds exactly what the state would give.
        assert_eq!(
            before.copy_for_snapshot().to_bytes().expect("bytes"),
            before.to_bytes().expect("bytes")
        );
        let mut restored =
            Aggregator::from_bytes(&before.to_bytes().expect("bytes")).expect("restored");
        for i in 25..40 {
            restored.apply(&event(i, &format!("u{}", i % 4), "Hello"));
        }
        let day = chrono::NaiveDate::from_ymd_opt(2026, 5, 28).expect("date");
        let (a, b) = (
            whole.bot("b").expect("bot"),
            restored.bot("b").expect("bot"),
        );
        assert_eq!(
            a.stats(
                day,
                day + chrono::Duration::days(1),
                crate::BucketSize::Hour
            ),
            b.stats(
                day,
                day + chrono::Duration::days(1),
                crate::BucketSize::Hour
            )
        );
        for u in 0..4 {
            assert_eq!(a.user(&format!("u{u}")), b.user(&format!("u{u}")));
        }
        assert_eq!(a.top_messages(day, day, 5), b.top_messages(day, day, 5));
        assert!(Aggregator::from_bytes(b"not a snapshot").is_err());
    }
}
