//! Whatever bytes arrive, the event decoders answer — an event or the faults — and
//! never panic: arbitrary bytes, and valid events with bytes changed, through the
//! ingest parser (`parse_batch`) and the reader of botwatch's own log (`parse_event`
//! with its own kinds). Property tests over arbitrary input (`cargo fuzz` needs a
//! nightly toolchain, which this machine cannot fetch).

use botwatch_event::{Limits, parse_batch, parse_event};
use proptest::prelude::*;

const VALID: &str = r#"[{"id":"e1","bot":"shop","type":"message","direction":"in","provider":"telegram","user":{"id":"5532","name":"Олена"},"text":"hi","attachments":[{"type":"card","title":"t","buttons":[{"title":"b","url":"https://x"}]}],"ts":"2026-11-26T10:00:00Z"},{"id":"a1","bot":"shop","type":"audience","provider":"telegram","user":{"id":"5532"},"audience":{"op":"edit","role":"r-1","fields":{"phone":"+1"}}},{"id":"b1","bot":"shop","type":"broadcast","provider":"botwatch","user":{"id":""},"broadcast":{"id":"x1","state":"queued","total":2}}]"#;

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_795_800_000, 0).unwrap_or_default()
}

fn own() -> Limits {
    Limits {
        own_kinds: true,
        ..Limits::default()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2_048)) {
        let _ = parse_batch(&bytes, now(), &Limits::default());
        let _ = parse_event(&bytes, 0, now(), &own());
    }

    #[test]
    fn valid_events_with_bytes_changed_never_panic(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)
    ) {
        let mut bytes = VALID.as_bytes().to_vec();
        for (at, byte) in changes {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let _ = parse_batch(&bytes, now(), &Limits::default());
        let _ = parse_batch(&bytes, now(), &own());
        let _ = parse_event(&bytes, 0, now(), &own());
    }
}

/// The input the byte changes start from is a valid batch of botwatch's own log (so
/// the changes explore near valid events, not only garbage).
#[test]
fn the_valid_batch_parses() {
    let events = parse_batch(VALID.as_bytes(), now(), &own());
    assert!(events.is_ok(), "{events:?}");
    assert!(
        parse_batch(VALID.as_bytes(), now(), &Limits::default()).is_err(),
        "own kinds refused from bots"
    );
}
