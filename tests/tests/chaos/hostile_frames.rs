//! Hostile WebSocket clients: 1,000 connections (10,000 in the long form) that upgrade
//! properly and then send what no client should — random bytes, unmasked frames, bad
//! UTF-8, lengths to 2^63, reserved opcodes and bits, oversized control frames, broken
//! fragmentation, bad close codes, binary frames, JSON that is no request. Each is
//! refused by a close or an error frame, promptly; meanwhile a dashboard that follows a
//! dialog sees every message in order, and the server's connections count comes back
//! to that one dashboard.

use std::time::{Duration, Instant};

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::{Rng, connect, long, report};

const TOPIC: &str = "bot/helpdesk/dialog/u1";

/// A client frame: `mask` is what a client must send (RFC 6455 §5.3), `len` the length
/// the header announces (the payload's own unless given).
fn frame(first: u8, mask: Option<[u8; 4]>, payload: &[u8], len: Option<u64>) -> Vec<u8> {
    let len = len.unwrap_or(payload.len() as u64);
    let masked = if mask.is_some() { 0x80 } else { 0 };
    let mut out = vec![first];
    match len {
        0..=125 => out.push(masked | len as u8),
        126..=0xFFFF => {
            out.push(masked | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(masked | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

const FIN_TEXT: u8 = 0x81;
const KEY: Option<[u8; 4]> = Some([0x37, 0xfa, 0x21, 0x3d]);

/// What the server must do with a hostile input.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// End the connection (a close frame, or the socket closed).
    Close,
    /// Answer with an error frame and keep the connection.
    ErrorFrame,
    /// Anything but hang or fall over (random bytes may be a frame still arriving).
    Survive,
}

fn hostile(rng: &mut Rng) -> (&'static str, Vec<u8>, Expect) {
    let subscribe = json!({"op": "subscribe", "topic": TOPIC}).to_string();
    match rng.below(16) {
        0 => {
            let n = rng.within(1..=2_000) as usize;
            let bytes = (0..n).map(|_| rng.below(256) as u8).collect();
            ("random bytes", bytes, Expect::Survive)
        }
        1 => (
            "unmasked frame",
            frame(FIN_TEXT, None, subscribe.as_bytes(), None),
            Expect::Close,
        ),
        2 => (
            "text that is not UTF-8",
            frame(FIN_TEXT, KEY, b"{\"op\":\"\xff\xfe\"}", None),
            Expect::Close,
        ),
        3 => (
            "a length of 2^63 - 1",
            frame(FIN_TEXT, KEY, b"{}", Some(i64::MAX as u64)),
            Expect::Close,
        ),
        4 => (
            "a frame over 64 KiB",
            frame(FIN_TEXT, KEY, &vec![b' '; 70 * 1024], None),
            Expect::Close,
        ),
        5 => {
            let opcode = *rng.pick(&[3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF]);
            (
                "a reserved opcode",
                frame(0x80 | opcode, KEY, b"x", None),
                Expect::Close,
            )
        }
        6 => (
            "reserved bits set",
            frame(FIN_TEXT | 0x70, KEY, subscribe.as_bytes(), None),
            Expect::Close,
        ),
        7 => (
            "a ping of 200 bytes",
            frame(0x89, KEY, &[b'p'; 200], None),
            Expect::Close,
        ),
        8 => {
            let mut bytes = frame(0x01, KEY, b"{\"op\":", None);
            bytes.extend(frame(FIN_TEXT, KEY, subscribe.as_bytes(), None));
            (
                "a new message inside a fragmented one",
                bytes,
                Expect::Close,
            )
        }
        9 => (
            "a continuation of nothing",
            frame(0x80, KEY, b"\"}", None),
            Expect::Close,
        ),
        10 => {
            let n = rng.within(1..=300) as usize;
            let text: String = (0..n)
                .map(|_| char::from(b' ' + rng.below(95) as u8))
                .collect();
            (
                "text that is no request",
                frame(FIN_TEXT, KEY, text.as_bytes(), None),
                Expect::ErrorFrame,
            )
        }
        11 => {
            let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
            let body = *rng.pick(&[
                r#"{"op":"publish","topic":"bot/helpdesk/dialogs"}"#,
                r#"{"op":"subscribe"}"#,
                r#"{"op":"subscribe","topic":42}"#,
                r#"{"op":"subscribe","topic":"bot/helpdesk/dialogs","since":-1}"#,
                "null",
                "[]",
            ]);
            let body = if rng.chance(0.2) {
                deep
            } else {
                body.to_owned()
            };
            (
                "JSON that is no request",
                frame(FIN_TEXT, KEY, body.as_bytes(), None),
                Expect::ErrorFrame,
            )
        }
        12 => {
            let topic = match rng.below(4) {
                0 => "bot/../etc/passwd".to_owned(),
                1 => "bot/helpdesk/dialog/".to_owned(),
                2 => format!("bot/{}/nothing", "x".repeat(60_000)),
                _ => "nonsense".to_owned(),
            };
            let body = json!({"op": "subscribe", "topic": topic}).to_string();
            (
                "a topic that is none",
                frame(FIN_TEXT, KEY, body.as_bytes(), None),
                Expect::ErrorFrame,
            )
        }
        13 => (
            "a binary frame",
            frame(0x82, KEY, subscribe.as_bytes(), None),
            Expect::ErrorFrame,
        ),
        14 => {
            // Fragments of 16 KiB each, adding up past 64 KiB.
            let mut bytes = frame(0x01, KEY, &[b' '; 16 * 1024], None);
            for _ in 0..4 {
                bytes.extend(frame(0x00, KEY, &[b' '; 16 * 1024], None));
            }
            bytes.extend(frame(0x80, KEY, b" ", None));
            ("fragments over 64 KiB", bytes, Expect::Close)
        }
        _ => {
            const NOT_CLOSES: [&[u8]; 3] = [&[0x03, 0xe7], &[0x03], &[0x0b, 0xb8, 0xff]];
            let payload = rng.pick(&NOT_CLOSES);
            (
                "a close frame that is not one",
                frame(0x88, KEY, payload, None),
                Expect::Close,
            )
        }
    }
}

/// Upgrades a raw TCP connection to the live WebSocket.
async fn upgrade(s: &TestServer) -> TcpStream {
    let mut tcp = TcpStream::connect(s.addr).await.expect("connect");
    let request = format!(
        "GET /api/v1/live HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        s.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        let n = tcp.read(&mut byte).await.expect("answer");
        assert_eq!(n, 1, "closed during the handshake: {head:?}");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    tcp
}

/// What came back within `wait`: the server's frames' first bytes, and whether it
/// ended the connection.
async fn answer(tcp: &mut TcpStream, wait: Duration) -> (Vec<u8>, bool) {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let mut buf = [0; 4096];
        match tokio::time::timeout_at(deadline, tcp.read(&mut buf)).await {
            Err(_) => return (got, false),
            Ok(Ok(0)) | Ok(Err(_)) => return (got, true),
            Ok(Ok(n)) => {
                got.extend_from_slice(&buf[..n]);
                // A close frame from the server: it ends the connection.
                if got.first() == Some(&0x88) {
                    return (got, true);
                }
                // An error frame is enough for what it must show.
                if String::from_utf8_lossy(&got).contains(r#""kind":"error""#) {
                    return (got, false);
                }
            }
        }
    }
}

fn message(n: u64) -> Value {
    json!({"id": format!("m{n}"), "bot": "helpdesk", "type": "message", "direction": "in",
           "provider": "telegram", "user": {"id": "u1"}, "text": format!("n{n}")})
}

async fn live_connections(s: &TestServer) -> Option<i64> {
    s.metrics().await.lines().find_map(|l| {
        l.strip_prefix("botwatch_live_connections ")?
            .trim()
            .parse()
            .ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_websocket_frames_are_refused_and_hurt_nobody() {
    let connections: usize = if long() { 10_000 } else { 1_000 };
    let s = TestServer::start(Backend::Embedded).await;
    assert_eq!(s.ingest(json!([message(0)]).to_string()).await.0, 202);

    // A dashboard follows the dialog all along.
    let mut follower = connect(&s).await;
    follower
        .send(Message::text(
            json!({"op": "subscribe", "topic": TOPIC}).to_string(),
        ))
        .await
        .expect("subscribe");
    let follow = tokio::spawn(async move {
        let mut last = None;
        // The messages' ids, from deltas (m0 may come in the snapshot or as a delta:
        // an ingest is acknowledged once stored, and applied just after).
        let mut seen: Vec<String> = Vec::new();
        while let Ok(Some(Ok(frame))) =
            tokio::time::timeout(Duration::from_secs(30), follower.next()).await
        {
            let Message::Text(text) = frame else { continue };
            let frame: Value = serde_json::from_str(text.as_str()).expect("JSON");
            let seq = frame["seq"].as_u64().expect("seq");
            if let Some(last) = last {
                assert_eq!(seq, last + 1, "the dashboard's seq jumped");
            }
            last = Some(seq);
            if frame["kind"] == "delta" {
                let id = frame["data"]["message"]["id"]
                    .as_str()
                    .expect("id")
                    .to_owned();
                let done = id == "m-last";
                seen.push(id);
                if done {
                    return seen;
                }
            }
        }
        panic!(
            "the dashboard stopped hearing after {} messages",
            seen.len()
        );
    });

    let mut rng = Rng::new(0xC0FF_EE15_BAD5_EED5);
    let mut by_kind: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    let mut slowest = Duration::ZERO;
    let mut written = 0;
    let started = Instant::now();
    for n in 0..connections {
        let (kind, bytes, expect) = hostile(&mut rng);
        let mut tcp = upgrade(&s).await;
        let began = Instant::now();
        // The server may close before it has read everything: a failed write is fine.
        let _ = tcp.write_all(&bytes).await;
        let (got, ended) = answer(&mut tcp, Duration::from_secs(5)).await;
        let error_frame = String::from_utf8_lossy(&got).contains(r#""kind":"error""#);
        match expect {
            Expect::Close => assert!(ended, "{kind}: still open after 5 s, answered {got:?}"),
            Expect::ErrorFrame => assert!(
                error_frame,
                "{kind}: no error frame within 5 s (ended: {ended}), answered {:?}",
                String::from_utf8_lossy(&got)
            ),
            Expect::Survive => {}
        }
        if ended || error_frame {
            slowest = slowest.max(began.elapsed());
        }
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += u64::from(ended);
        drop(tcp);
        // Messages keep coming for the dashboard.
        if n % 10 == 0 {
            written += 1;
            assert_eq!(s.ingest(json!([message(written)]).to_string()).await.0, 202);
        }
    }
    let mut last = message(written + 1);
    last["id"] = json!("m-last");
    assert_eq!(s.ingest(json!([last]).to_string()).await.0, 202);
    let seen = tokio::time::timeout(Duration::from_secs(30), follow)
        .await
        .expect("the dashboard got the last message")
        .expect("the dashboard's task");
    let expected: Vec<String> = (1..=written)
        .map(|n| format!("m{n}"))
        .chain(["m-last".to_owned()])
        .collect();
    let seen: Vec<String> = seen.into_iter().filter(|id| id != "m0").collect();
    assert_eq!(seen, expected, "every message, once, in order");
    assert_eq!(s.get("/healthz").await.0, 200);
    // Every hostile connection is gone; the dashboard's is the one left (it ended
    // with its task just now, so 0 or 1).
    let gone = Instant::now();
    while live_connections(&s).await.unwrap_or(i64::MAX) > 1 {
        assert!(
            gone.elapsed() < Duration::from_secs(70),
            "hostile connections still open: {:?}",
            live_connections(&s).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (kind, (sent, ended)) in &by_kind {
        println!("  {kind}: {sent} sent, {ended} ended by the server");
    }
    report(
        "hostile WebSocket frames",
        connections,
        written + 1,
        0,
        0,
        &format!(
            "none needed: each refused within {:.0} ms at most, {:.1} s for all; the dashboard saw every message in order",
            slowest.as_secs_f64() * 1e3,
            started.elapsed().as_secs_f64()
        ),
    );
    s.stop().await;
}
