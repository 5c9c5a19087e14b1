//! A bot's broadcasts as the log tells them: the `broadcast` event that started one
//! (its recipients' count and its message), a cancellation, and the outcome of each
//! recipient's message (sent, failed, or skipped for a user in Manual mode), counted
//! once per message whatever the order (see [`Outbox::apply`]).
//!
//! [`Outbox::apply`]: crate::outbox::Outbox::apply

use std::collections::HashMap;

use botwatch_event::{BroadcastState, DeliveryState, Event};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Broadcasts {
    items: Map<Box<str>, Entry>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Entry {
    /// The event that started it (canonical JSON); `None` while only outcomes are known.
    started: Option<Box<str>>,
    ms: i64,
    total: u64,
    cancelled: bool,
    sent: u64,
    failed: u64,
    skipped: u64,
}

/// A broadcast and how far it got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastFigures {
    pub id: String,
    /// Event time (ms) it was started.
    pub ms: i64,
    pub total: u64,
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    pub state: BroadcastState,
    /// The `broadcast` event that started it (canonical JSON): its message, audience
    /// and author.
    pub started: String,
}

impl Broadcasts {
    /// A `broadcast` event: started or cancelled.
    pub(crate) fn apply(&mut self, event: &Event) {
        let Some(info) = &event.broadcast else {
            return;
        };
        let entry = self.items.entry(info.id.as_str().into()).or_default();
        match info.state {
            BroadcastState::Cancelled => entry.cancelled = true,
            _ if entry.started.is_none() => {
                entry.started = Some(event.to_json().into());
                entry.ms = event.ts_millis();
                entry.total = info.total;
            }
            _ => {}
        }
    }

    /// The outcome of one recipient's message.
    pub(crate) fn count(&mut self, id: &str, state: DeliveryState) {
        let entry = self.items.entry(id.into()).or_default();
        match state {
            DeliveryState::Sent => entry.sent += 1,
            DeliveryState::Failed => entry.failed += 1,
            DeliveryState::Skipped => entry.skipped += 1,
            DeliveryState::Pending => {}
        }
    }
}

impl Entry {
    /// Where it stands; `None` while only outcomes are known (not started here yet).
    fn state(&self) -> Option<BroadcastState> {
        self.started.as_ref()?;
        let handled = self.sent + self.failed + self.skipped;
        Some(if handled >= self.total {
            BroadcastState::Done
        } else if self.cancelled {
            BroadcastState::Cancelled
        } else if handled > 0 {
            BroadcastState::Running
        } else {
            BroadcastState::Queued
        })
    }
}

impl Broadcasts {
    fn figures(id: &str, e: &Entry) -> Option<BroadcastFigures> {
        let state = e.state()?;
        let started = e.started.as_deref()?.to_owned();
        Some(BroadcastFigures {
            id: id.to_owned(),
            ms: e.ms,
            total: e.total,
            sent: e.sent,
            failed: e.failed,
            skipped: e.skipped,
            state,
            started,
        })
    }

    /// Where broadcast `id` stands, without copying its message (a sender asks this
    /// before every recipient).
    pub(crate) fn state(&self, id: &str) -> Option<BroadcastState> {
        self.items.get(id)?.state()
    }

    /// The broadcasts still to send (queued or running).
    pub(crate) fn open(&self) -> Vec<String> {
        self.items
            .iter()
            .filter(|(_, e)| {
                matches!(
                    e.state(),
                    Some(BroadcastState::Queued | BroadcastState::Running)
                )
            })
            .map(|(id, _)| id.to_string())
            .collect()
    }

    pub(crate) fn get(&self, id: &str) -> Option<BroadcastFigures> {
        Self::figures(id, self.items.get(id)?)
    }

    /// Every broadcast, the latest first.
    pub(crate) fn list(&self) -> Vec<BroadcastFigures> {
        let mut list: Vec<BroadcastFigures> = self
            .items
            .iter()
            .filter_map(|(id, e)| Self::figures(id, e))
            .collect();
        list.sort_by(|a, b| (b.ms, &b.id).cmp(&(a.ms, &a.id)));
        list
    }
}
