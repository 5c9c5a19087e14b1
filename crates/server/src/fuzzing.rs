//! Entry points for the fuzz targets (`fuzz/`) and the property tests over arbitrary
//! bytes: snapshots read back from the storage, Telegram's updates (webhook bodies and
//! `getUpdates` answers), and the bytes a dashboard's WebSocket client sends. Each
//! panics only when a property breaks. Not an API: hidden from the docs, kept narrow.

use std::io::{self, Read, Write};

use botwatch_event::Limits;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::protocol::Message;

use crate::channels::telegram::proxy::read_updates;
use crate::channels::telegram::update::Update;
use crate::live::{ClientFrame, Topic, client_protocol};
use crate::snapshot;

/// `data` as a snapshot file (or Redis value): refused, or taken; the header of one
/// taken is written back the same (`encode` of what `open` read opens to the same).
pub fn snapshot(data: &[u8]) {
    if let Ok((meta, state)) = snapshot::open(data) {
        let again = snapshot::encode(&meta, state);
        let (meta_again, state_again) = snapshot::open(&again).expect("a snapshot written opens");
        assert_eq!(meta_again, meta, "the header read back differs");
        assert_eq!(state_again, state, "the state read back differs");
    }
    let _ = snapshot::decode(data);
}

/// `data` as a webhook body (one update) and as a `getUpdates` answer.
pub fn telegram(data: &[u8]) {
    let limits = Limits::default();
    let files = "https://botwatch.example/channels/telegram/shop/files";
    if let Ok(update) = serde_json::from_slice::<Update>(data) {
        let _ = update.user_id();
        if let Some(event) = update.to_event("shop", files, &limits) {
            assert_eq!(event.id, format!("tg-{}", update.update_id));
        }
    }
    if let Some(updates) = read_updates(data, "shop", files, &limits) {
        let items = updates.parsed["result"].as_array().map_or(0, Vec::len);
        assert_eq!(updates.users.len(), items, "one user (or none) per item");
        assert!(updates.events.len() <= items, "at most one event per item");
    }
}

/// The client's side of a socket: `data` arrives `chunk` bytes at a time, then
/// nothing more for now (`WouldBlock`, as a non-blocking socket says).
struct Wire<'a> {
    input: &'a [u8],
    chunk: usize,
    written: usize,
}

impl Read for Wire<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.chunk).min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input = &self.input[n..];
        Ok(n)
    }
}

impl Write for Wire<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a connection read from `data`: the messages, then how reading ended.
fn read_client(data: &[u8], with_upgrade: usize, chunk: usize) -> (Vec<Message>, String) {
    let (early, rest) = data.split_at(with_upgrade.min(data.len()));
    let mut protocol = client_protocol(early.to_vec());
    let mut wire = Wire {
        input: rest,
        chunk,
        written: 0,
    };
    let mut messages = Vec::new();
    // Every message takes at least two bytes of input: more reads than that is a loop.
    for _ in 0..data.len() / 2 + 4 {
        match protocol.read(&mut wire) {
            Ok(message) => {
                if let Message::Text(text) = &message
                    && let Ok(
                        ClientFrame::Subscribe { topic, .. } | ClientFrame::Unsubscribe { topic },
                    ) = serde_json::from_str::<ClientFrame>(text.as_str())
                {
                    let _ = Topic::parse(&topic);
                }
                messages.push(message);
            }
            Err(WsError::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                return (messages, "waiting".to_owned());
            }
            Err(e) => return (messages, e.to_string()),
        }
    }
    panic!("reading {} bytes of client frames does not end", data.len());
}

/// `data` as the bytes a dashboard's client sends after the upgrade, read by the live
/// connection's protocol state (tungstenite, 64 KiB frames and messages) and requests
/// parsed; read all at once with the upgrade, 7 bytes at a time, or 4 KiB at a time,
/// it is the same messages and the same end.
pub fn live_client(data: &[u8]) {
    let whole = read_client(data, data.len(), 1);
    for (with_upgrade, chunk) in [(0, 7), (data.len() / 2, 4096)] {
        let (messages, end) = read_client(data, with_upgrade, chunk);
        assert_eq!(
            messages, whole.0,
            "other messages, read {chunk} bytes at a time"
        );
        assert_eq!(end, whole.1, "another end, read {chunk} bytes at a time");
    }
}

/// One frame as a client sends it: masked (key 1, 2, 3, 4).
pub fn client_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    let key = [1u8, 2, 3, 4];
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// Valid inputs of every target, so that the fuzzer starts past the first bytes: by
/// target, (name, bytes). `scripts/fuzz` writes them out before each run (a snapshot
/// seed carries this build's version and schema, so they are made, not kept).
pub fn seeds() -> Vec<(&'static str, Vec<Vec<u8>>)> {
    use botwatch_aggregator::fuzzing::valid_state;
    use botwatch_event::fuzzing::SEED_EVENTS;
    use botwatch_log::{Position, SnapshotMeta};

    let meta = SnapshotMeta {
        position: Position::new(1_780_000_000_000, 7),
        epoch: "0123abcd".to_owned(),
    };
    let empty = botwatch_aggregator::Aggregator::default()
        .to_bytes()
        .expect("a state encodes");
    let subscribe =
        br#"{"op":"subscribe","topic":"bot/shop/dialog/5532","since":1125899906842624}"#;
    let live = [
        client_frame(1, true, subscribe),
        [
            client_frame(
                1,
                true,
                br#"{"op":"subscribe","topic":"bot/shop/overview"}"#,
            ),
            client_frame(9, true, b"ping"),
            client_frame(1, false, br#"{"op":"unsub"#),
            client_frame(0, true, br#"scribe","topic":"bot/shop/stats"}"#),
            client_frame(2, true, b"\x00\x01"),
            client_frame(8, true, b"\x03\xe8bye"),
        ]
        .concat(),
        client_frame(1, true, &[b' '; 300]),
    ];
    vec![
        (
            "event_json",
            SEED_EVENTS.iter().map(|e| e.as_bytes().to_vec()).collect(),
        ),
        ("redis_reply", botwatch_log::fuzzing::seed_replies()),
        ("embedded_record", botwatch_log::fuzzing::seed_records()),
        (
            "aggregator_state",
            vec![valid_state().to_vec(), empty.clone()],
        ),
        (
            "snapshot",
            vec![
                snapshot::encode(&meta, valid_state()),
                snapshot::encode(&meta, &empty),
            ],
        ),
        (
            "telegram_update",
            TELEGRAM_SEEDS
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect(),
        ),
        ("live_client", live.to_vec()),
    ]
}

/// Updates as Telegram sends them (the shapes of `update.rs`'s tests), and a
/// `getUpdates` answer.
const TELEGRAM_SEEDS: &[&str] = &[
    r#"{"update_id":7,"message":{"message_id":1,"date":1764000000,"chat":{"id":5532,"type":"private"},"from":{"id":5532,"is_bot":false,"first_name":"Олена","last_name":"К.","language_code":"uk"},"text":"Where is my order?"}}"#,
    r#"{"update_id":8,"message":{"from":{"id":1,"username":"ann"},"caption":"this one","photo":[{"file_id":"small","width":90,"height":90},{"file_id":"big","width":1280,"height":960,"file_size":120000}]}}"#,
    r#"{"update_id":9,"message":{"from":{"id":1},"document":{"file_id":"doc","file_name":"cv.pdf","mime_type":"application/pdf"}}}"#,
    r#"{"update_id":10,"callback_query":{"id":"q","from":{"id":2,"first_name":"Bob"},"data":"track:12"}}"#,
    r#"{"update_id":12,"poll_answer":{"poll_id":"p","user":{"id":77}}}"#,
    r#"{"update_id":14,"business_message":{"from":{"id":79},"text":"hi"}}"#,
    r#"{"update_id":15,"edited_message":{"from":{"id":1},"voice":{"file_id":"v"}}}"#,
    r#"{"ok":true,"result":[{"update_id":7,"message":{"from":{"id":5532,"first_name":"Олена"},"date":1764000000,"text":"hi"}},{"update_id":11,"my_chat_member":{}},{"update_id":13,"inline_query":{"id":"q","from":{"id":78},"query":"x"}},{"nonsense":1}]}"#,
];

#[cfg(test)]
mod tests {
    use botwatch_event::fuzzing::mutate;
    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::*;

    fn seeds_of(target: &str) -> Vec<Vec<u8>> {
        seeds()
            .into_iter()
            .find(|(t, _)| *t == target)
            .map(|(_, s)| s)
            .expect("a target")
    }

    fn mutated(target: &'static str) -> impl Strategy<Value = Vec<u8>> {
        let seeds = seeds_of(target);
        (
            0..seeds.len(),
            vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..6),
        )
            .prop_map(move |(i, edits)| mutate(&seeds[i], &edits))
    }

    #[test]
    fn the_seeds_are_taken() {
        for seed in seeds_of("snapshot") {
            assert!(snapshot::decode(&seed).is_ok());
            super::snapshot(&seed);
        }
        let limits = Limits::default();
        for seed in seeds_of("telegram_update") {
            let one = serde_json::from_slice::<Update>(&seed).ok();
            let many = read_updates(&seed, "shop", "https://h/f", &limits);
            assert!(one.is_some() || many.is_some_and(|u| !u.events.is_empty()));
            telegram(&seed);
        }
        for seed in seeds_of("live_client") {
            let (messages, end) = read_client(&seed, seed.len(), 1);
            assert!(!messages.is_empty(), "{end}");
            live_client(&seed);
        }
    }

    /// Writes every target's seeds under `$FUZZ_SEEDS/<target>/` (`scripts/fuzz`).
    #[test]
    #[ignore = "writes files; run by scripts/fuzz"]
    fn write_fuzz_seeds() {
        let dir = std::env::var("FUZZ_SEEDS").expect("FUZZ_SEEDS: where to write the seeds");
        for (target, seeds) in seeds() {
            let dir = std::path::Path::new(&dir).join(target);
            std::fs::create_dir_all(&dir).expect("a seeds folder");
            for (i, seed) in seeds.iter().enumerate() {
                std::fs::write(dir.join(format!("seed-{i}")), seed).expect("a seed written");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn any_snapshot_is_taken_or_refused(data in vec(any::<u8>(), 0..512)) {
            super::snapshot(&data);
        }

        #[test]
        fn mutated_snapshots_are_taken_or_refused(data in mutated("snapshot")) {
            super::snapshot(&data);
        }

        #[test]
        fn any_telegram_body_is_read_or_refused(data in vec(any::<u8>(), 0..512)) {
            telegram(&data);
        }

        #[test]
        fn mutated_updates_are_read_or_refused(data in mutated("telegram_update")) {
            telegram(&data);
        }

        #[test]
        fn any_client_bytes_are_read_alike_in_any_chunks(data in vec(any::<u8>(), 0..512)) {
            live_client(&data);
        }

        #[test]
        fn mutated_client_frames_are_read_alike_in_any_chunks(data in mutated("live_client")) {
            live_client(&data);
        }
    }
}
