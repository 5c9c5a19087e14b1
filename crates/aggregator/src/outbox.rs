//! Operator messages botwatch delivers itself, as the log tells their way: `pending`
//! from the message an operator sends until a `delivery` event says `sent` or
//! `failed`. Kept per bot in its figures, so a restart (snapshot + replay) knows which
//! messages still wait for their delivery.

use std::collections::HashMap;

use botwatch_event::{DeliveryState, Event, EventKind};

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Every operator message of one bot that botwatch delivers, by message id.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct Outbox {
    parcels: Map<Box<str>, Parcel>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Parcel {
    /// The user's index in the bot's figures.
    user: u32,
    /// The message's event time.
    ms: i64,
    state: DeliveryState,
    reason: Option<Box<str>>,
    /// The message's canonical JSON while it is pending: what is still to deliver.
    message: Option<Box<str>>,
    /// The broadcast it is part of.
    #[serde(default)]
    broadcast: Option<Box<str>>,
}

/// An operator message still waiting for its delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingMessage {
    pub id: String,
    /// Event time, ms since the epoch.
    pub ms: i64,
    /// The message event's canonical JSON, as the log holds it.
    pub json: String,
}

impl Outbox {
    /// Takes in what `event` (of user `user`) says of a delivery, whatever the order the
    /// message and its outcome arrive in: an outcome is final, and the first outcome
    /// stays (a delivery is attempted once). When a message of a broadcast got its
    /// outcome, returns the broadcast and the outcome (once per message).
    pub(crate) fn apply(&mut self, user: u32, event: &Event) -> Option<(Box<str>, DeliveryState)> {
        let delivery = event.delivery.as_ref()?;
        let broadcast = delivery.broadcast.as_deref().map(Into::into);
        match event.kind {
            EventKind::Message if delivery.state == DeliveryState::Pending => {
                let parcel = self
                    .parcels
                    .entry(event.id.as_str().into())
                    .or_insert_with(|| Parcel {
                        user,
                        ms: event.ts_millis(),
                        state: DeliveryState::Pending,
                        reason: None,
                        message: Some(event.to_json().into()),
                        broadcast: None,
                    });
                // The outcome came first and did not say its broadcast: count it now.
                let counted = parcel.broadcast.is_some() || parcel.state == DeliveryState::Pending;
                parcel.broadcast = parcel.broadcast.take().or(broadcast);
                let broadcast = parcel.broadcast.clone().filter(|_| !counted)?;
                Some((broadcast, parcel.state))
            }
            EventKind::Delivery if delivery.state != DeliveryState::Pending => {
                let id = delivery.message.as_deref()?;
                let parcel = self.parcels.entry(id.into()).or_insert_with(|| Parcel {
                    user,
                    ms: event.ts_millis(),
                    state: DeliveryState::Pending,
                    reason: None,
                    message: None,
                    broadcast: None,
                });
                if parcel.state != DeliveryState::Pending {
                    return None;
                }
                parcel.state = delivery.state;
                parcel.reason = delivery.reason.as_deref().map(Into::into);
                parcel.message = None;
                parcel.broadcast = parcel.broadcast.take().or(broadcast);
                Some((parcel.broadcast.clone()?, parcel.state))
            }
            _ => None,
        }
    }

    /// Where message `id` is on its way; `None` when it is not one botwatch delivers.
    pub(crate) fn state(&self, id: &str) -> Option<(DeliveryState, Option<&str>)> {
        self.parcels.get(id).map(|p| (p.state, p.reason.as_deref()))
    }

    /// The messages still to deliver, oldest first.
    pub(crate) fn pending(&self) -> Vec<PendingMessage> {
        let mut pending: Vec<PendingMessage> = self
            .parcels
            .iter()
            .filter_map(|(id, p)| {
                Some(PendingMessage {
                    id: id.to_string(),
                    ms: p.ms,
                    json: p.message.as_deref()?.to_owned(),
                })
            })
            .collect();
        pending.sort_by(|a, b| (a.ms, &a.id).cmp(&(b.ms, &b.id)));
        pending
    }

    /// The messages of broadcast `id` that failed: user and reason, the earliest
    /// first, `limit` at most.
    pub(crate) fn failures(&self, id: &str, limit: usize) -> Vec<(u32, String)> {
        let mut failed: Vec<(i64, u32, String)> = self
            .parcels
            .values()
            .filter(|p| p.state == DeliveryState::Failed && p.broadcast.as_deref() == Some(id))
            .map(|p| (p.ms, p.user, p.reason.as_deref().unwrap_or("").to_owned()))
            .collect();
        failed.sort();
        failed.truncate(limit);
        failed.into_iter().map(|(_, u, r)| (u, r)).collect()
    }

    /// The highest user index it refers to (a snapshot's consistency check).
    pub(crate) fn max_user(&self) -> Option<u32> {
        self.parcels.values().map(|p| p.user).max()
    }
}

#[cfg(test)]
mod tests {
    use botwatch_event::{Delivery, Direction, Sender, UserInfo};
    use chrono::TimeZone;

    use super::*;

    fn message(id: &str) -> Event {
        Event {
            id: id.to_owned(),
            bot: "b".to_owned(),
            kind: EventKind::Message,
            direction: Some(Direction::Out),
            provider: "telegram".to_owned(),
            user: UserInfo {
                id: "u1".to_owned(),
                ..UserInfo::default()
            },
            text: Some("Hello".to_owned()),
            attachments: Vec::new(),
            sender: Some(Sender::Operator {
                id: "anna".to_owned(),
            }),
            mode: None,
            delivery: Some(Delivery {
                message: None,
                state: DeliveryState::Pending,
                reason: None,
                broadcast: None,
            }),
            audience: None,
            broadcast: None,
            ts: chrono::Utc
                .timestamp_millis_opt(1_000)
                .single()
                .expect("ts"),
        }
    }

    fn outcome(of: &str, state: DeliveryState, reason: Option<&str>) -> Event {
        Event {
            id: format!("d-{of}-{}", state.as_str()),
            kind: EventKind::Delivery,
            direction: None,
            text: None,
            sender: None,
            delivery: Some(Delivery {
                message: Some(of.to_owned()),
                state,
                reason: reason.map(str::to_owned),
                broadcast: None,
            }),
            ..message(of)
        }
    }

    #[test]
    fn a_message_waits_until_its_outcome_in_any_order() {
        let sent = [message("m1"), outcome("m1", DeliveryState::Sent, None)];
        for events in [sent.clone(), [sent[1].clone(), sent[0].clone()]] {
            let mut outbox = Outbox::default();
            outbox.apply(0, &events[0]);
            outbox.apply(0, &events[1]);
            assert_eq!(outbox.state("m1"), Some((DeliveryState::Sent, None)));
            assert!(outbox.pending().is_empty());
        }

        let mut outbox = Outbox::default();
        outbox.apply(0, &message("m2"));
        outbox.apply(0, &message("m1"));
        let pending = outbox.pending();
        assert_eq!(pending.len(), 2);
        assert_eq!(pending[0].id, "m1", "oldest first, then by id");
        assert_eq!(
            serde_json::from_str::<Event>(&pending[0].json).expect("the message"),
            message("m1")
        );
        outbox.apply(0, &outcome("m2", DeliveryState::Failed, Some("blocked")));
        // A second outcome (a retry recorded twice) does not change the first.
        outbox.apply(0, &outcome("m2", DeliveryState::Sent, None));
        assert_eq!(
            outbox.state("m2"),
            Some((DeliveryState::Failed, Some("blocked")))
        );
        assert_eq!(outbox.pending().len(), 1);
        assert_eq!(outbox.state("a bot's message"), None);
    }

    #[test]
    fn a_broadcasts_message_is_counted_once_whichever_comes_first() {
        let in_broadcast = |mut e: Event| {
            if let Some(d) = e.delivery.as_mut() {
                d.broadcast = Some("b1".to_owned());
            }
            e
        };
        let message = in_broadcast(message("m1"));
        let sent = outcome("m1", DeliveryState::Sent, None);
        let sent_saying = in_broadcast(sent.clone());
        for events in [
            vec![message.clone(), sent.clone(), sent_saying.clone()],
            vec![sent.clone(), message.clone(), sent_saying.clone()],
            vec![sent_saying.clone(), message.clone()],
        ] {
            let mut outbox = Outbox::default();
            let counted: Vec<_> = events.iter().filter_map(|e| outbox.apply(0, e)).collect();
            assert_eq!(counted, [("b1".into(), DeliveryState::Sent)], "{events:?}");
        }
    }
}
