//! Entry points for the fuzz targets (`fuzz/`) and the property tests over arbitrary
//! bytes: what is read back from Redis and from the embedded database, decoded the way
//! the readers decode it. Each panics only when a property breaks. Not an API: hidden
//! from the docs, kept narrow.

use botwatch_event::Event;
use botwatch_event::fuzzing::SEED_EVENTS;
use redis::Value;

use crate::Position;
use crate::redis_streams::{
    Decoded, Seal, bulk_str, decode_entries, decode_fields, parse_member_tail, parse_position,
    xread_entries,
};

/// The seal readers check botwatch's own entries with: a secret the input cannot know
/// (so own kinds pass only from before sealing began: ids up to `since`, in the
/// millisecond of the seed events' "now", 2026-11-26 10:20 UTC).
fn seal() -> Seal {
    Seal {
        secret: "fuzzing".to_owned(),
        since: Position::new(1_795_688_400_000, 99),
        ..Seal::default()
    }
}

/// `data` as Redis sends a reply (RESP2 or RESP3, parsed by the redis crate), read as
/// an `XREAD` reply (entries decoded and validated, each one a verdict in order), as
/// the history script's rows (members and entries), and as a position.
pub fn redis_reply(data: &[u8]) {
    let Ok(reply) = redis::parse_redis_value(data) else {
        return;
    };
    let seal = seal();
    if let Ok(raw) = xread_entries(reply.clone()) {
        let positions: Vec<Position> = raw.iter().map(|(p, _)| *p).collect();
        let decoded = decode_entries(raw, &seal);
        let order: Vec<Position> = decoded.iter().map(|(p, _, _)| *p).collect();
        assert_eq!(order, positions, "one verdict per entry, in order");
        for (_, d, marked) in &decoded {
            assert!(
                !marked || matches!(d, Decoded::Valid(_)),
                "only a valid entry counts as marked"
            );
        }
    }
    history_rows(&reply, &seal);
    let _ = parse_position(&reply, "fuzzing");
}

/// The history script's answer: rows of (member, the entry's fields).
fn history_rows(reply: &Value, seal: &Seal) {
    let Value::Array(rows) = reply else {
        return;
    };
    for row in rows {
        let Value::Array(parts) = row else {
            continue;
        };
        let Some(member) = parts.first().and_then(bulk_str) else {
            continue;
        };
        // The user the member names, and one it does not.
        let user = member
            .get(..4)
            .and_then(|n| n.parse::<usize>().ok())
            .and_then(|n| member.get(4..4 + n))
            .unwrap_or("5532");
        for user in [user, "5532"] {
            let Some((_, position)) = parse_member_tail(member, user) else {
                continue;
            };
            let fields = match parts.get(1) {
                Some(Value::Array(f)) => Some(f.as_slice()),
                _ => None,
            };
            let _ = decode_fields(position, fields, seal);
        }
    }
}

/// `data` as one record of the embedded log's `events` table, decoded the way its
/// readers do; a record that decodes, written back (its canonical JSON: times in
/// milliseconds, so a damaged record's finer time is cut once), is a fixed point:
/// written and read again, it is the same. Also a stored file's metadata.
pub fn embedded_record(data: &[u8]) {
    let position = Position::new(1_732_612_345_678, 0);
    if let Ok(entry) = crate::embedded::decode(position, data) {
        let write_read = |e: &Event| -> Event {
            let stored = serde_json::to_vec(e).expect("an event serialises");
            serde_json::from_slice(&stored).expect("what was written decodes")
        };
        let once = write_read(&entry.event);
        assert_eq!(
            write_read(&once),
            once,
            "a record written back reads differently"
        );
    }
    if let Ok(meta) = std::str::from_utf8(data) {
        let _ = crate::StoredFile::from_meta(meta, Vec::new());
    }
}

/// An `XREAD` reply (RESP2) holding one entry per field list.
fn xread_reply(entries: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
    fn bulk(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(format!("${}\r\n{s}\r\n", s.len()).as_bytes());
    }
    let mut out = b"*1\r\n*2\r\n".to_vec();
    bulk(&mut out, "botwatch:events");
    out.extend_from_slice(format!("*{}\r\n", entries.len()).as_bytes());
    for (id, fields) in entries {
        out.extend_from_slice(b"*2\r\n");
        bulk(&mut out, id);
        out.extend_from_slice(format!("*{}\r\n", fields.len() * 2).as_bytes());
        for (k, v) in *fields {
            bulk(&mut out, k);
            bulk(&mut out, v);
        }
    }
    out
}

/// Replies of the shapes readers meet (the fuzz target's seeds): adapters' entries,
/// botwatch's marked ones, one without an event, a history row.
pub fn seed_replies() -> Vec<Vec<u8>> {
    // Each event as an adapter's entry and as one of botwatch's from before seals.
    let mut seeds: Vec<Vec<u8>> = SEED_EVENTS
        .iter()
        .filter(|e| e.starts_with('{'))
        .enumerate()
        .map(|(i, e)| {
            let (adapter, own) = (format!("1795688400001-{i}"), format!("1795688400000-{i}"));
            xread_reply(&[
                (&adapter, &[("event", e)]),
                (&own, &[("event", e), ("at", &own)]),
            ])
        })
        .collect();
    seeds.push(xread_reply(&[
        ("1795688400001-0", &[("other", "x")]),
        (
            "1795688400001-1",
            &[
                ("event", SEED_EVENTS[0]),
                ("at", "1795688400001-1"),
                ("upto", "1795688400001-3"),
                ("seal", "00"),
            ],
        ),
        ("1795688400001-2", &[("event", SEED_EVENTS[1])]),
    ]));
    let member = format!("00045532{:015}{:015}{:010}", 1_000, 1_795_688_400_001u64, 2);
    let mut history = b"*1\r\n*2\r\n".to_vec();
    history.extend_from_slice(format!("${}\r\n{member}\r\n", member.len()).as_bytes());
    history.extend_from_slice(
        format!(
            "*2\r\n$5\r\nevent\r\n${}\r\n{}\r\n",
            SEED_EVENTS[0].len(),
            SEED_EVENTS[0]
        )
        .as_bytes(),
    );
    seeds.push(history);
    seeds
}

/// Records as the embedded log writes them (the fuzz target's seeds): the canonical
/// JSON of valid events.
pub fn seed_records() -> Vec<Vec<u8>> {
    let own = botwatch_event::Limits {
        own_kinds: true,
        ..botwatch_event::Limits::default()
    };
    SEED_EVENTS
        .iter()
        .flat_map(|e| {
            botwatch_event::parse_batch(e.as_bytes(), botwatch_event::fuzzing::now(), &own)
                .expect("a valid seed")
        })
        .map(|e| serde_json::to_vec(&e).expect("serialises"))
        .collect()
}

#[cfg(test)]
mod tests {
    use botwatch_event::fuzzing::mutate;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    /// Inputs the fuzzer found a crash with, each fixed (the test beside the fix names
    /// the fault): they stay here so that it never comes back.
    const REDIS_CRASHES: &[&[u8]] = &[
        // A history member with a character across a field's edge
        // (`a_member_with_a_character_across_a_fields_edge_is_unreadable_not_a_panic`).
        b"*1\r\n*2\r\n$48\r\n00045532000000000001000001795688*1\t\",\xde\x83\r\
          \n0000002\r\n*2\r\n$5\r\nevent\r\n$150\r\n{\"id\":\"e-1\",\"bo\xff\xff\
          \xff\x84*2\r\n$5\r\nevent\r\n$150\r\n{\"id\":\"e-1\",\"bot\":\"helpdes\
          k\",\"type\":\"message\",\"directio]\":\"in\",\"provider\":\"telegram\
          \",\"user\":{\"id\":\"5532\"},\"t\"}\r\n",
    ];

    #[test]
    fn what_the_fuzzer_found_stays_fixed() {
        for input in REDIS_CRASHES {
            redis_reply(input);
        }
    }

    #[test]
    fn the_seed_records_decode() {
        for record in seed_records() {
            assert!(crate::embedded::decode(Position::START, &record).is_ok());
            embedded_record(&record);
        }
    }

    #[test]
    fn the_seed_replies_hold_valid_entries() {
        for seed in seed_replies() {
            let reply = redis::parse_redis_value(&seed).expect("RESP");
            if let Ok(raw) = xread_entries(reply.clone()) {
                let decoded = decode_entries(raw, &seal());
                let reasons: Vec<&str> = decoded
                    .iter()
                    .filter_map(|(_, d, _)| match d {
                        Decoded::Invalid(reason) => Some(reason.as_str()),
                        Decoded::Valid(_) => None,
                    })
                    .collect();
                assert!(reasons.len() < decoded.len(), "{reasons:?}");
            }
            redis_reply(&seed);
        }
    }

    fn mutated_reply() -> impl Strategy<Value = Vec<u8>> {
        let seeds = seed_replies();
        (
            0..seeds.len(),
            vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..6),
        )
            .prop_map(move |(i, edits)| mutate(&seeds[i], &edits))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1_000))]

        #[test]
        fn any_reply_is_decoded_or_refused(data in vec(any::<u8>(), 0..512)) {
            redis_reply(&data);
        }

        #[test]
        fn mutated_replies_are_decoded_or_refused(data in mutated_reply()) {
            redis_reply(&data);
        }

        #[test]
        fn any_record_is_decoded_or_refused(data in vec(any::<u8>(), 0..512)) {
            embedded_record(&data);
        }

        #[test]
        fn mutated_records_are_decoded_or_refused(
            i in 0..64usize,
            edits in vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..6),
        ) {
            let records = seed_records();
            embedded_record(&mutate(&records[i % records.len()], &edits));
        }
    }
}
