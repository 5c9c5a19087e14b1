//! Redis under faults while events keep coming: killed (`kill -9`) and started again on
//! its append-only file with `appendfsync everysec`, and paused (`SIGSTOP`) for a while.
//! Writers send batches and send a batch again, with the same ids, until it is
//! acknowledged — as an adapter does. At the end the figures count every event exactly
//! once: nothing acknowledged is lost, nothing retried is doubled, and botwatch was
//! never restarted.

use std::time::{Duration, Instant};

use botwatch_tests::{ADMIN_TOKEN, Backend, PrivateRedis, TestServer};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Rng, long, report};

const WRITERS: usize = 4;
const BATCH: u64 = 10;
const BOT: &str = "faults";

/// What one writer saw.
#[derive(Default)]
struct Sent {
    acknowledged: u64,
    /// Answers that were 503 `storage_unavailable`.
    refused: u64,
    /// Requests that got no answer (a connection cut, a client timeout).
    unanswered: u64,
    /// The longest wait for any answer.
    slowest: Duration,
}

/// Sends batches of user `u{w}` until told to stop; each until acknowledged.
async fn write(client: reqwest::Client, url: String, w: usize, stop: CancellationToken) -> Sent {
    let mut sent = Sent::default();
    let mut n = 0u64;
    while !stop.is_cancelled() {
        n += 1;
        let batch: Vec<Value> = (0..BATCH)
            .map(|k| {
                json!({"id": format!("w{w}-{n}-{k}"), "bot": BOT, "type": "message",
                       "direction": "in", "provider": "web", "user": {"id": format!("u{w}")},
                       "text": "x"})
            })
            .collect();
        loop {
            let started = Instant::now();
            let answer = client
                .post(&url)
                .bearer_auth(ADMIN_TOKEN)
                .json(&batch)
                .timeout(Duration::from_secs(30))
                .send()
                .await;
            sent.slowest = sent.slowest.max(started.elapsed());
            match answer.map(|r| r.status().as_u16()) {
                Ok(202) => break,
                Ok(503) => sent.refused += 1,
                Ok(other) => panic!("ingest answered {other}"),
                Err(_) => sent.unanswered += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        sent.acknowledged += BATCH;
    }
    sent
}

struct Writers {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<Sent>>,
}

impl Writers {
    fn start(s: &TestServer) -> Writers {
        let stop = CancellationToken::new();
        let tasks = (0..WRITERS)
            .map(|w| {
                tokio::spawn(write(
                    s.client.clone(),
                    s.url("/api/v1/events"),
                    w,
                    stop.clone(),
                ))
            })
            .collect();
        Writers { stop, tasks }
    }

    async fn finish(self) -> Sent {
        self.stop.cancel();
        let mut all = Sent::default();
        for task in self.tasks {
            let sent = task.await.expect("writer");
            all.acknowledged += sent.acknowledged;
            all.refused += sent.refused;
            all.unanswered += sent.unanswered;
            all.slowest = all.slowest.max(sent.slowest);
        }
        all
    }
}

/// The messages the figures count, once they stop changing.
async fn counted(s: &TestServer, at_least: u64) -> u64 {
    let total = || async {
        let (_, page) = s.get(&format!("/api/v1/bots/{BOT}/users?limit=200")).await;
        page["items"]
            .as_array()
            .map(|users| users.iter().filter_map(|u| u["messages"].as_u64()).sum())
            .unwrap_or(0)
    };
    let started = Instant::now();
    while total().await < at_least && started.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Settled: anything doubled would show by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    total().await
}

/// Polls `/readyz` until it answers 200; how long that took.
async fn until_ready(s: &TestServer) -> Duration {
    let started = Instant::now();
    while s.get("/readyz").await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "not ready 30 s after Redis came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_loses_no_acknowledged_event() {
    let kills = if long() { 20 } else { 3 };
    let mut redis = PrivateRedis::start("everysec").await;
    let s = TestServer::start_on(Backend::Redis, &redis.url()).await;
    let writers = Writers::start(&s);
    let mut rng = Rng::new(0x2545_F491_4F6C_DD1D);
    let mut recoveries = Vec::new();
    for _ in 0..kills {
        // At a seeded moment 200–1,000 ms into the writers' stream.
        tokio::time::sleep(Duration::from_millis(rng.within(200..=999))).await;
        redis.kill().await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.spawn().await;
        recoveries.push(until_ready(&s).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = writers.finish().await;
    let counted = counted(&s, sent.acknowledged).await;
    recoveries.sort();
    report(
        "Redis kill -9 and restart, AOF everysec",
        kills,
        sent.acknowledged,
        sent.acknowledged.saturating_sub(counted),
        counted.saturating_sub(sent.acknowledged),
        &format!(
            "ready again after {} (median), {} (worst); {} refusals, {} unanswered",
            ms(recoveries[recoveries.len() / 2]),
            ms(recoveries[recoveries.len() - 1]),
            sent.refused,
            sent.unanswered
        ),
    );
    assert_eq!(counted, sent.acknowledged, "every acknowledged event, once");
    s.stop().await;
    redis.kill().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_gets_prompt_refusals_and_nothing_doubled() {
    let pauses: &[u64] = if long() { &[5, 30] } else { &[5] };
    let mut redis = PrivateRedis::start("everysec").await;
    let s = TestServer::start_on(Backend::Redis, &redis.url()).await;
    let writers = Writers::start(&s);
    let mut recoveries = Vec::new();
    for &seconds in pauses {
        tokio::time::sleep(Duration::from_millis(500)).await;
        redis.signal("STOP");
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        // Refused meanwhile, promptly: readiness says so.
        let (ready, _) = s.get("/readyz").await;
        assert_eq!(ready, 503, "/readyz while Redis is paused");
        redis.signal("CONT");
        recoveries.push(until_ready(&s).await);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = writers.finish().await;
    let counted = counted(&s, sent.acknowledged).await;
    report(
        &format!("Redis paused (SIGSTOP) {pauses:?} s"),
        pauses.len(),
        sent.acknowledged,
        sent.acknowledged.saturating_sub(counted),
        counted.saturating_sub(sent.acknowledged),
        &format!(
            "ready again after {}; slowest answer while paused {}; {} refusals, {} unanswered",
            recoveries
                .iter()
                .map(|d| ms(*d))
                .collect::<Vec<_>>()
                .join(", "),
            ms(sent.slowest),
            sent.refused,
            sent.unanswered
        ),
    );
    assert!(sent.refused > 0, "ingest refused while Redis was paused");
    assert_eq!(sent.unanswered, 0, "every request answered");
    // Promptly: within Redis's response timeout (2 s) and a margin, not after a hang
    // nor after several timeouts in a row.
    assert!(
        sent.slowest < Duration::from_secs(3),
        "answers come promptly (slowest {:?}), not after a hang",
        sent.slowest
    );
    assert_eq!(counted, sent.acknowledged, "every acknowledged event, once");
    s.stop().await;
    redis.kill().await;
}
