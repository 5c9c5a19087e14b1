//! Reconnect cycles with resume: a dashboard that keeps dropping its WebSocket (closing
//! it, or just going away) and coming back with `since`, while messages keep arriving,
//! sees every topic's `seq` without a gap or a repeat, and every message of the dialog
//! it follows exactly once.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use super::{Followed, LiveSocket as Socket, Rng, connect, long, report};

const DIALOG: &str = "bot/helpdesk/dialog/u1";
const DIALOGS: &str = "bot/helpdesk/dialogs";

/// The next JSON frame within `wait`, if one comes.
async fn next_within(ws: &mut Socket, wait: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(serde_json::from_str(t.as_str()).expect("JSON"));
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the connection ended under the client: {other:?}"),
        }
    }
}

fn message(n: u64) -> Value {
    // Two dialogs: u1 is followed message by message, both move the dialogs list.
    let user = if n.is_multiple_of(3) { "u2" } else { "u1" };
    json!({"id": format!("m{n}"), "bot": "helpdesk", "type": "message", "direction": "in",
           "provider": "telegram", "user": {"id": user}, "text": format!("n{n}"),
           "ts": format!("2026-11-26T10:{:02}:{:02}Z", (n / 60) % 60, n % 60)})
}

async fn reconnect_cycles(backend: Backend) {
    let cycles: usize = if long() { 10_000 } else { 1_000 };
    let s = TestServer::start(backend).await;
    // The dialog exists before the first subscription.
    assert_eq!(s.ingest(json!([message(1)]).to_string()).await.0, 202);

    // Messages keep coming, a few per batch, while the client comes and goes.
    let stop = tokio_util::sync::CancellationToken::new();
    let writer = {
        let (stop, client, url) = (stop.clone(), s.client.clone(), s.url("/api/v1/events"));
        tokio::spawn(async move {
            let mut n = 1;
            while !stop.is_cancelled() {
                let batch: Vec<Value> = (n + 1..=n + 3).map(message).collect();
                n += 3;
                let r = client
                    .post(&url)
                    .bearer_auth(ADMIN_TOKEN)
                    .json(&batch)
                    .send()
                    .await
                    .expect("ingest");
                assert_eq!(r.status(), 202);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            n
        })
    };

    let mut followed: HashMap<&str, Followed> = HashMap::new();
    // Every u1 message the client has seen: from deltas, and from the one snapshot at
    // the start (on Redis an ingest is acknowledged before it is applied, so the first
    // messages may be in it rather than in deltas).
    let mut seen: Vec<String> = Vec::new();
    let mut in_snapshot: BTreeSet<String> = BTreeSet::new();
    let mut reconnects = Vec::with_capacity(cycles);
    let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15);
    for cycle in 0..cycles {
        let started = Instant::now();
        let mut ws = connect(&s).await;
        for topic in [DIALOG, DIALOGS] {
            let since = followed.get(topic).and_then(|f| f.seq);
            let mut subscribe = json!({"op": "subscribe", "topic": topic});
            if let Some(since) = since {
                subscribe["since"] = json!(since);
            }
            ws.send(Message::text(subscribe.to_string()))
                .await
                .expect("subscribe");
        }
        // Until the first frame of each topic: how long a resume takes.
        let mut first = BTreeSet::new();
        // Follows for a short, varying while (0–30 ms after both topics answered).
        let stay = Duration::from_millis(rng.below(31));
        let mut answered_at = None;
        loop {
            let wait = match answered_at {
                Some(at) => stay.saturating_sub(Instant::now().duration_since(at)),
                None => Duration::from_secs(10),
            };
            let Some(frame) = next_within(&mut ws, wait).await else {
                assert!(answered_at.is_some(), "no answer to the subscriptions");
                break;
            };
            let topic = frame["topic"].as_str().expect("topic").to_owned();
            let f = followed
                .entry(if topic == DIALOG { DIALOG } else { DIALOGS })
                .or_default();
            f.apply(&topic, &frame);
            if topic == DIALOG && frame["kind"] == "delta" {
                seen.push(
                    frame["data"]["message"]["id"]
                        .as_str()
                        .expect("id")
                        .to_owned(),
                );
            }
            if topic == DIALOG && frame["kind"] == "snapshot" {
                let messages = frame["data"]["messages"].as_array().expect("messages");
                in_snapshot.extend(
                    messages
                        .iter()
                        .filter_map(|m| Some(m["id"].as_str()?.to_owned())),
                );
            }
            first.insert(topic);
            if first.len() == 2 && answered_at.is_none() {
                answered_at = Some(Instant::now());
                reconnects.push(started.elapsed());
            }
        }
        // Gone: a clean close every other time, the socket just dropped otherwise.
        if cycle.is_multiple_of(2) {
            let _ = ws.close(None).await;
        }
        drop(ws);
    }
    stop.cancel();
    let written = writer.await.expect("writer");

    // The last of them: every u1 message, by one more subscription that stays until
    // the writer's last one arrived.
    let mut ws = connect(&s).await;
    let since = followed[DIALOG].seq.expect("followed");
    ws.send(Message::text(
        json!({"op": "subscribe", "topic": DIALOG, "since": since}).to_string(),
    ))
    .await
    .expect("subscribe");
    let expected: BTreeSet<String> = (1..=written)
        .filter(|n| !n.is_multiple_of(3))
        .map(|n| format!("m{n}"))
        .collect();
    let f = followed.get_mut(DIALOG).expect("followed");
    let mut left: BTreeSet<&String> = expected
        .iter()
        .filter(|id| !in_snapshot.contains(*id))
        .collect();
    for id in &seen {
        left.remove(id);
    }
    while !left.is_empty() {
        let Some(frame) = next_within(&mut ws, Duration::from_secs(10)).await else {
            break; // what is missing is told below
        };
        f.apply(DIALOG, &frame);
        let id = frame["data"]["message"]["id"]
            .as_str()
            .expect("id")
            .to_owned();
        left.remove(&id);
        seen.push(id);
    }
    let distinct: BTreeSet<String> = seen.iter().cloned().collect();
    let doubled = (seen.len() - distinct.len()) as u64;
    let missing: Vec<&String> = expected
        .iter()
        .filter(|id| !in_snapshot.contains(*id) && !distinct.contains(*id))
        .collect();
    reconnects.sort();
    let p = |q: f64| reconnects[((reconnects.len() - 1) as f64 * q) as usize];
    report(
        &format!("WebSocket reconnect cycles with resume ({backend:?})"),
        cycles,
        written,
        missing.len() as u64,
        doubled,
        &format!(
            "resume p50 {:.1} ms, p95 {:.1} ms",
            p(0.5).as_secs_f64() * 1e3,
            p(0.95).as_secs_f64() * 1e3
        ),
    );
    assert!(missing.is_empty(), "messages never seen: {missing:?}");
    assert_eq!(doubled, 0, "messages seen twice");
    // One snapshot per topic, at the very start: every resume was served from the
    // history (the client was never away longer than it holds).
    for (topic, f) in &followed {
        assert_eq!(f.snapshots, 1, "{topic}: snapshots {}", f.snapshots);
        assert!(f.deltas > 0, "{topic}: no delta followed");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_cycles_resume_without_gaps_embedded() {
    reconnect_cycles(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_cycles_resume_without_gaps_redis() {
    reconnect_cycles(Backend::Redis).await;
}
