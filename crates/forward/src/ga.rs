//! Google Analytics 4, Measurement Protocol: `POST {endpoint}/mp/collect?
//! measurement_id=…&api_secret=…` with a JSON body per user.
//!
//! The rules followed (Google's "Send Measurement Protocol events" guide):
//! - one `client_id` per request, so a request holds one user's events, at most 25;
//! - event names and parameter names up to 40 characters, parameter values up to 100,
//!   at most 25 parameters;
//! - each event's own `timestamp_micros`, at most 72 hours old (older ones are not
//!   sent: GA refuses them, and they are counted as skipped with that reason);
//! - `session_id` and `engagement_time_msec` on every event, so that they show in
//!   GA's Realtime report and join the user's session.

use serde_json::{Value, json};

use crate::{Item, ItemKind};

/// Events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 25;
/// How old an event GA still takes (`timestamp_micros`).
pub const MAX_AGE_MS: i64 = 72 * 3600 * 1000;
/// Characters of a parameter value.
const MAX_VALUE_CHARS: usize = 100;

/// One request to `/mp/collect`: the body, and the items it carries (by their keys).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub body: Value,
    pub keys: Vec<String>,
}

/// An item not sent, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    pub reason: &'static str,
}

/// A bot user as GA knows them: stable, the same on every node, and not the user's id
/// (a hash of the bot and the user, shaped like the ids GA's own tag makes).
pub fn client_id(bot: &str, user: &str) -> String {
    let h = crate::digest(&["ga-client", bot, user]);
    let number = |hex: &str| u32::from_str_radix(hex, 16).unwrap_or(0);
    format!("{}.{}", number(&h[..8]), number(&h[8..16]))
}

fn value(s: &str) -> String {
    s.chars().take(MAX_VALUE_CHARS).collect()
}

fn event(item: &Item) -> Value {
    let mut params = serde_json::Map::new();
    // The session's start in seconds: what GA's tag uses as a session id. A message
    // outside any session (a broadcast to a user who has not answered) makes none,
    // and is no engagement.
    if let Some(session) = item.session_ms {
        params.insert("session_id".into(), json!((session / 1000).to_string()));
        params.insert("engagement_time_msec".into(), json!(100));
    }
    params.insert("bot".into(), json!(value(&item.bot)));
    params.insert("provider".into(), json!(value(&item.provider)));
    if let ItemKind::MessageOut { by_operator } = item.kind {
        params.insert(
            "sender".into(),
            json!(if by_operator { "operator" } else { "bot" }),
        );
    }
    json!({
        "name": item.kind.name(),
        "timestamp_micros": item.ms.saturating_mul(1000),
        "params": params,
    })
}

/// The requests that carry `items` (in their order, per user), and the items left out.
/// `now_ms`: the time the requests are made.
pub fn requests(items: &[Item], now_ms: i64) -> (Vec<Request>, Vec<Skipped>) {
    let mut skipped = Vec::new();
    // Users in the order they first appear, each with their items in order.
    let mut users: Vec<(&str, &str, Vec<&Item>)> = Vec::new();
    for item in items {
        if now_ms - item.ms > MAX_AGE_MS {
            skipped.push(Skipped {
                key: item.key(),
                reason: "older than 72 hours: GA4 does not take it",
            });
            continue;
        }
        match users
            .iter_mut()
            .find(|(b, u, _)| *b == item.bot && *u == item.user)
        {
            Some((_, _, list)) => list.push(item),
            None => users.push((&item.bot, &item.user, vec![item])),
        }
    }
    let mut requests = Vec::new();
    for (bot, user, list) in users {
        for chunk in list.chunks(MAX_EVENTS_PER_REQUEST) {
            let events: Vec<Value> = chunk.iter().map(|i| event(i)).collect();
            requests.push(Request {
                body: json!({
                    "client_id": client_id(bot, user),
                    "non_personalized_ads": true,
                    "events": events,
                }),
                keys: chunk.iter().map(|i| i.key()).collect(),
            });
        }
    }
    (requests, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(user: &str, n: i64, kind: ItemKind) -> Item {
        Item {
            kind,
            bot: "shop".to_owned(),
            user: user.to_owned(),
            provider: "telegram".to_owned(),
            event_id: format!("e{n}"),
            ms: 1_800_000_000_000 + n * 1000,
            session_ms: Some(1_800_000_000_000),
        }
    }

    const NOW: i64 = 1_800_000_100_000;

    #[test]
    fn one_users_events_in_one_request_in_ga4s_shape() {
        let items = [
            item("5532", 0, ItemKind::NewUser),
            item("5532", 0, ItemKind::SessionStart),
            item("5532", 0, ItemKind::MessageIn),
            item("5532", 1, ItemKind::MessageOut { by_operator: true }),
        ];
        let (requests, skipped) = requests(&items, NOW);
        assert!(skipped.is_empty());
        assert_eq!(requests.len(), 1);
        insta::assert_json_snapshot!(requests[0].body);
        assert_eq!(requests[0].keys[0], "shop:e0:new");
    }

    #[test]
    fn at_most_25_events_and_one_user_per_request_none_too_old() {
        let mut items: Vec<Item> = (0..30).map(|n| item("a", n, ItemKind::MessageIn)).collect();
        items.push(item("b", 1, ItemKind::MessageIn));
        let mut old = item("b", 2, ItemKind::MessageIn);
        old.ms = NOW - MAX_AGE_MS - 1;
        items.push(old);
        let (requests, skipped) = requests(&items, NOW);
        let sizes: Vec<usize> = requests.iter().map(|r| r.keys.len()).collect();
        assert_eq!(sizes, [25, 5, 1]);
        assert_eq!(requests[0].body["client_id"], requests[1].body["client_id"]);
        assert_ne!(requests[1].body["client_id"], requests[2].body["client_id"]);
        assert_eq!(skipped.len(), 1);
        assert_eq!(skipped[0].key, "shop:e2:in");
        for r in &requests {
            assert!(serde_json::to_vec(&r.body).map_or(0, |b| b.len()) < 130 * 1024);
        }
    }

    #[test]
    fn client_ids_are_stable_pseudonyms() {
        assert_eq!(client_id("shop", "5532"), client_id("shop", "5532"));
        assert_ne!(client_id("shop", "5532"), client_id("news", "5532"));
        assert!(!client_id("shop", "5532").contains("5532"));
        let long = Item {
            provider: "p".repeat(300),
            ..item("a", 0, ItemKind::MessageIn)
        };
        let (requests, _) = requests(&[long], NOW);
        let provider = requests[0].body["events"][0]["params"]["provider"]
            .as_str()
            .map_or(0, |p| p.chars().count());
        assert_eq!(provider, 100, "values are cut to GA's 100 characters");
    }
}
