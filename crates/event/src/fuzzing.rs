//! Entry points for the fuzz targets (`fuzz/`) and the property tests over arbitrary
//! bytes: each takes what an outside party could send and panics only when a property
//! of the decoders breaks. Not an API: hidden from the docs, kept narrow.

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;

use crate::model::Event;
use crate::validate::{
    BatchError, Limits, fast, parse_batch, parse_event, parse_event_value_with_id,
    parse_event_with_id,
};

/// The "now" events are judged against: fixed, so that a failure replays.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 26, 10, 20, 0)
        .single()
        .expect("a valid, unambiguous UTC time")
}

/// The id given to an event that has none (deterministic, so both paths agree).
fn made_id() -> String {
    "made-0".to_owned()
}

/// Feeds `data` as an ingest body, as one event, and as one stream entry's event, with
/// the ingest limits and with the limits botwatch reads its own log with. Checks that:
/// - nothing panics, and garbage is an error;
/// - the fast path never accepts what the slow path refuses, and accepts exactly the
///   event the slow path makes (`validate/differential.rs`, over any input);
/// - `parse_batch` of the event alone answers what the slow path does;
/// - an accepted event's canonical JSON (what the logs store) decodes back to the
///   same event, and validates again to the same event when read back from a stream.
pub fn event_json(data: &[u8]) {
    let ingest = Limits::default();
    let own = Limits {
        own_kinds: true,
        ..Limits::default()
    };
    for limits in [&ingest, &own] {
        let _ = parse_batch(data, now(), limits);
        let _ = parse_event(data, 0, now(), limits);
        let _ = parse_event_with_id(data, now(), limits, made_id);
        if let Ok(raw) = std::str::from_utf8(data) {
            both_paths(raw, limits);
        }
    }
}

fn both_paths(raw: &str, limits: &Limits) {
    let fast = fast::parse_with(raw, now(), limits, made_id);
    let Ok(value) = serde_json::from_str::<Value>(raw) else {
        // Not one JSON value the slow path can hold: the fast path must decline it
        // too (it reads with the same parser, so it never gets this far).
        assert!(
            fast.is_none(),
            "the fast path took what is no JSON value: {raw:?}"
        );
        return;
    };
    let slow = parse_event_value_with_id(value, 0, now(), limits, made_id);
    if let Some(f) = &fast {
        match &slow {
            Ok(s) => assert_eq!(f, s, "the two paths read {raw:?} differently"),
            Err(faults) => panic!(
                "the fast path accepted {f:?} where the slow path says {faults:?} for {raw:?}"
            ),
        }
    }
    // The whole pipeline, the event alone in a batch (below the size where
    // `parse_batch` takes another road).
    if raw.len() <= limits.max_event_bytes {
        let body = format!("[{raw}]");
        match (&slow, parse_batch(body.as_bytes(), now(), limits)) {
            (Ok(s), Ok(events)) => {
                assert_eq!(events.len(), 1, "for {raw:?}");
                let mut e = events[0].clone();
                if generated(raw) {
                    e.id = made_id();
                }
                assert_eq!(&e, s, "parse_batch read {raw:?} differently");
            }
            (Err(faults), Err(BatchError::Invalid(got) | BatchError::TooLarge(got))) => {
                assert_eq!(&got, faults, "parse_batch names other faults for {raw:?}");
            }
            (slow, batch) => {
                panic!("parse_batch says {batch:?} where the slow path says {slow:?} for {raw:?}")
            }
        }
    }
    if let Ok(event) = slow {
        canonical_round_trip(&event);
    }
}

/// Whether the event's id is made by the server (the input has no usable one).
fn generated(raw: &str) -> bool {
    serde_json::from_str::<Value>(raw)
        .ok()
        .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned))
        .is_none()
}

/// An accepted event as the logs store it (its canonical JSON) comes back the same:
/// through serde (the embedded log) and through validation with the limits a stream
/// entry is read back with (the Redis log).
pub fn canonical_round_trip(event: &Event) {
    let stored = serde_json::to_vec(event).expect("an event serialises");
    let back: Event = serde_json::from_slice(&stored).expect("the canonical form decodes");
    assert_eq!(&back, event, "the canonical form read back differs");
    let read = Limits {
        own_kinds: true,
        max_event_bytes: Limits::default().max_event_bytes + 1024,
        max_future: Limits::default().max_future + chrono::Duration::minutes(5),
        ..Limits::default()
    };
    match parse_event_with_id(&stored, now(), &read, made_id) {
        Ok(again) => assert_eq!(&again, event, "the canonical form validates differently"),
        Err(faults) => panic!(
            "the canonical form {} of an accepted event is refused: {faults:?}",
            String::from_utf8_lossy(&stored)
        ),
    }
}

/// `seed` with a few byte edits (each: where, which byte, and whether it replaces,
/// is inserted or removes): how the property tests reach past a parser's first bytes
/// the way a fuzzer does from its seed corpus.
pub fn mutate(seed: &[u8], edits: &[(u16, u8, u8)]) -> Vec<u8> {
    let mut out = seed.to_vec();
    for &(at, byte, how) in edits {
        let at = usize::from(at) % (out.len() + 1);
        match how % 3 {
            0 if at < out.len() => out[at] = byte,
            1 => out.insert(at, byte),
            _ if at < out.len() => drop(out.remove(at)),
            _ => out.push(byte),
        }
    }
    out
}

/// Valid events of every shape: the property tests' seeds (and the fuzz target's
/// seed corpus, `fuzz/seeds/event_json`).
pub const SEED_EVENTS: &[&str] = &[
    r#"{"id":"e-1","bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{"id":"5532"},"text":"hi","ts":"2026-11-26T10:15:00.123Z"}"#,
    r#"{"bot":"helpdesk","type":"user","provider":"telegram","user":{"id":"5532","name":"Олена К.","lang":"uk"},"ts":"2026-11-26T10:15:00Z"}"#,
    r#"{"id":"tg-5532-000781","bot":"helpdesk","type":"message","direction":"in","provider":"telegram","user":{"id":"5532","name":"Олена К.","avatar":"https://example.com/a.jpg","gender":"female","lang":"uk"},"text":"Where is my order?","attachments":[{"type":"file","url":"https://example.com/invoice.pdf","name":"invoice.pdf","mime":"application/pdf","size":48211},{"type":"card","title":"Order #12","subtitle":"Shipped","image":"https://example.com/i.png","buttons":[{"title":"Track","payload":"track:12"},{"title":"Open","url":"https://example.com/o"}]}],"sender":{"kind":"bot"},"ts":"2026-11-26T10:15:00.123Z"}"#,
    r#"{"id":"bench-1-3","bot":"helpdesk","type":"message","direction":"out","provider":"telegram","user":{"id":"123456"},"text":"Your order left the warehouse","attachments":[{"type":"image","url":"https://example.com/m","mime":"image/png"},{"type":"audio","url":"https://example.com/m","size":0}],"sender":{"kind":"operator","id":"op-7"},"ts":"2026-11-26T12:16:00.456+02:00"}"#,
    r#"[{"bot":"shop","type":"message","direction":"in","provider":"web","user":{"id":"u"},"text":"\u00e9\ud83d\ude00\n"},{"bot":"shop","type":"message","direction":"out","provider":"web","user":{"id":"u"},"text":null,"extra":{"a":[1,2.5,null]}}]"#,
    r#"{"id":"m-1","bot":"shop","type":"mode_changed","provider":"web","user":{"id":"u"},"mode":"manual","ts":"2026-11-26T10:15:00Z"}"#,
    r#"{"id":"op-1","bot":"helpdesk","type":"message","direction":"out","provider":"telegram","user":{"id":"5532"},"text":"Hello, Anna here","sender":{"kind":"operator","id":"anna"},"delivery":{"state":"pending"},"ts":"2026-11-26T10:15:00.123Z"}"#,
    r#"{"id":"d-1","bot":"helpdesk","type":"delivery","provider":"telegram","user":{"id":"5532"},"delivery":{"message":"op-1","state":"failed","reason":"Forbidden: bot was blocked by the user"},"ts":"2026-11-26T10:15:01.000Z"}"#,
    r#"{"id":"handoff-1","bot":"helpdesk","type":"handoff","provider":"telegram","user":{"id":"5532"},"text":"I want a human","ts":"2026-11-26T10:15:00.123Z"}"#,
];

#[cfg(test)]
mod tests {
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// A seed event with a few byte edits.
    fn mutated() -> impl Strategy<Value = Vec<u8>> {
        (
            0..SEED_EVENTS.len(),
            vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..6),
        )
            .prop_map(|(i, edits)| mutate(SEED_EVENTS[i].as_bytes(), &edits))
    }

    #[test]
    fn the_seeds_are_valid_events() {
        for seed in SEED_EVENTS {
            let own = Limits {
                own_kinds: true,
                ..Limits::default()
            };
            assert!(parse_batch(seed.as_bytes(), now(), &own).is_ok(), "{seed}");
            event_json(seed.as_bytes());
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        /// Any bytes as an event: an answer or an error, and the paths agree.
        #[test]
        fn any_bytes_are_an_event_or_an_error(data in vec(any::<u8>(), 0..512)) {
            event_json(&data);
        }

        /// Valid events with a few bytes changed: the same, deeper in.
        #[test]
        fn mutated_events_are_an_event_or_an_error(data in mutated()) {
            event_json(&data);
        }
    }
}
