//! Mixpanel: `POST {endpoint}/import?strict=1` with the project token as the Basic
//! auth user, a JSON array of events.
//!
//! The rules followed (Mixpanel's Import Events API): at most 2,000 events and 10 MB
//! (uncompressed) per request; `distinct_id` is the bot user; `time` in milliseconds;
//! `$insert_id` (at most 36 characters of letters, digits and `-`) is the same for an
//! item on every try, so Mixpanel drops a retried event instead of counting it twice.
//! `/import` takes events of any age (`/track` only five days), so back-fill works.

use serde_json::{Value, json};

use crate::{Item, ItemKind};

/// Events one request may carry.
pub const MAX_EVENTS_PER_REQUEST: usize = 2_000;
/// Bytes one request may carry (Mixpanel's limit is 10 MB; room for the array).
pub const MAX_REQUEST_BYTES: usize = 9 * 1024 * 1024;

/// An item's `$insert_id`: 32 hex characters of a hash of its key.
pub fn insert_id(item: &Item) -> String {
    crate::digest(&["mixpanel-insert", &item.key()])[..32].to_owned()
}

fn event(item: &Item) -> Value {
    let mut properties = serde_json::Map::new();
    properties.insert("time".into(), json!(item.ms));
    properties.insert("distinct_id".into(), json!(item.user));
    properties.insert("$insert_id".into(), json!(insert_id(item)));
    properties.insert("bot".into(), json!(item.bot));
    properties.insert("provider".into(), json!(item.provider));
    if let Some(session) = item.session_ms {
        properties.insert("session_start".into(), json!(session));
    }
    if let ItemKind::MessageOut { by_operator } = item.kind {
        properties.insert(
            "sender".into(),
            json!(if by_operator { "operator" } else { "bot" }),
        );
    }
    json!({ "event": item.kind.name(), "properties": properties })
}

/// One request to `/import`.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The JSON array of events.
    pub body: Value,
    pub keys: Vec<String>,
}

/// The requests that carry `items`, in order, each within Mixpanel's limits.
pub fn requests(items: &[Item]) -> Vec<Request> {
    let mut requests = Vec::new();
    let (mut events, mut keys, mut bytes) = (Vec::new(), Vec::new(), 2usize);
    for item in items {
        let e = event(item);
        let size = serde_json::to_vec(&e).map_or(0, |b| b.len()) + 1;
        if !events.is_empty()
            && (events.len() == MAX_EVENTS_PER_REQUEST || bytes + size > MAX_REQUEST_BYTES)
        {
            requests.push(Request {
                body: Value::Array(std::mem::take(&mut events)),
                keys: std::mem::take(&mut keys),
            });
            bytes = 2;
        }
        events.push(e);
        keys.push(item.key());
        bytes += size;
    }
    if !events.is_empty() {
        requests.push(Request {
            body: Value::Array(events),
            keys,
        });
    }
    requests
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(n: i64, kind: ItemKind) -> Item {
        Item {
            kind,
            bot: "shop".to_owned(),
            user: "5532".to_owned(),
            provider: "telegram".to_owned(),
            event_id: format!("e{n}"),
            ms: 1_800_000_000_000 + n * 1000,
            session_ms: Some(1_800_000_000_000),
        }
    }

    #[test]
    fn events_in_mixpanels_shape() {
        let requests = requests(&[
            item(0, ItemKind::NewUser),
            item(0, ItemKind::MessageIn),
            item(1, ItemKind::MessageOut { by_operator: false }),
            item(2, ItemKind::OperatorTakeover),
        ]);
        assert_eq!(requests.len(), 1);
        insta::assert_json_snapshot!(requests[0].body);
    }

    #[test]
    fn at_most_2000_events_per_request_with_ids_that_survive_retries() {
        let items: Vec<Item> = (0..4001).map(|n| item(n, ItemKind::MessageIn)).collect();
        let requests = requests(&items);
        let sizes: Vec<usize> = requests.iter().map(|r| r.keys.len()).collect();
        assert_eq!(sizes, [2000, 2000, 1]);
        let id = insert_id(&items[0]);
        assert_eq!(id, insert_id(&items[0].clone()), "the same on every try");
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        let other = Item {
            kind: ItemKind::NewUser,
            ..items[0].clone()
        };
        assert_ne!(insert_id(&other), id, "two items of one event differ");
    }
}
