//! Redis under faults while events keep coming: killed (`kill -9`) and started again on
//! its append-only file with `appendfsync everysec`, and paused (`SIGSTOP`) for a while.
//! Writers send batches and send a batch again, with the same ids, until it is
//! acknowledged — as an adapter does. At the end the figures count every event exactly
//! once: nothing acknowledged is lost, nothing retried is doubled, and botwatch was
//! never restarted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use botwatch_tests::{
    ADMIN_TOKEN, Backend, PrivateRedis, Resent, TestServer, ingest_until_accepted,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Followed, Rng, long, report};

const WRITERS: usize = 4;
const BATCH: u64 = 10;
const BOT: &str = "faults";

/// What one writer saw.
#[derive(Default)]
struct Sent {
    acknowledged: u64,
    resent: Resent,
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
        let body = Value::Array(batch).to_string();
        sent.resent
            .add(ingest_until_accepted(&client, &url, ADMIN_TOKEN, &body).await);
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
            all.resent.add(sent.resent);
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
            sent.resent.refused,
            sent.resent.unanswered
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
            ms(sent.resent.slowest),
            sent.resent.refused,
            sent.resent.unanswered
        ),
    );
    sent.resent.assert_refused_promptly();
    assert_eq!(counted, sent.acknowledged, "every acknowledged event, once");
    s.stop().await;
    redis.kill().await;
}

/// What a dashboard saw of one topic while Redis was emptied under it.
#[derive(Default)]
struct Watched {
    /// Its `seq`, checked frame by frame.
    followed: Followed,
    /// The `data_loss` of each snapshot, in order.
    snapshots: Vec<Value>,
    /// Deltas since the last snapshot.
    deltas_since: u64,
}

impl Watched {
    /// Applies a frame: a delta carries exactly the next `seq` (`Followed`), a snapshot
    /// never one before what the client has (it replaces it).
    fn apply(&mut self, topic: &str, frame: &Value) {
        let before = self.followed.seq;
        self.followed.apply(topic, frame);
        if frame["kind"] == "snapshot" {
            let seq = self.followed.seq.expect("seq");
            if let Some(last) = before {
                assert!(seq >= last, "{topic}: a snapshot at {seq} after {last}");
            }
            self.snapshots.push(frame["data"]["data_loss"].clone());
            self.deltas_since = 0;
        } else {
            self.deltas_since += 1;
        }
    }

    /// Whether the latest snapshot shows a loss (`Some(true)`), none (`Some(false)`).
    fn shows_loss(&self) -> Option<bool> {
        self.snapshots.last().map(|loss| !loss.is_null())
    }
}

/// Reads the dashboard's frames into `watched` until `done` holds; how long it took.
async fn watch_until(
    ws: &mut super::LiveSocket,
    watched: &mut HashMap<String, Watched>,
    what: &str,
    done: impl Fn(&HashMap<String, Watched>) -> bool,
) -> Duration {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done(watched) {
        let frame = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("waited 15 s for {what}"),
            Ok(Some(Ok(Message::Text(t)))) => {
                serde_json::from_str::<Value>(t.as_str()).expect("JSON")
            }
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the connection ended under the dashboard: {other:?}"),
        };
        let topic = frame["topic"].as_str().expect("topic").to_owned();
        watched
            .entry(topic.clone())
            .or_default()
            .apply(&topic, &frame);
    }
    started.elapsed()
}

/// The messages the figures count once they stop changing (what was acknowledged but
/// emptied from Redis before the follower read it is never counted: `counted` would
/// wait for it in vain).
async fn settled(s: &TestServer) -> u64 {
    let total = || async {
        let (_, page) = s.get(&format!("/api/v1/bots/{BOT}/users?limit=200")).await;
        page["items"]
            .as_array()
            .map(|users| {
                users
                    .iter()
                    .filter_map(|u| u["messages"].as_u64())
                    .sum::<u64>()
            })
            .unwrap_or(0)
    };
    let mut last = total().await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = total().await;
        if now == last {
            return now;
        }
        last = now;
    }
}

/// Polls `/readyz` until it answers `status`; its answer and how long that took.
async fn until_readiness(s: &TestServer, status: u16) -> (Value, Duration) {
    let started = Instant::now();
    loop {
        let (got, body) = s.get("/readyz").await;
        if got == status {
            return (body, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "/readyz still {got} {body} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_emptied_is_reported_and_every_dashboard_resyncs() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    // A Redis of its own: FLUSHALL empties all of it.
    let mut store = PrivateRedis::start("everysec").await;
    let s = TestServer::start_on(Backend::Redis, &store.url()).await;
    let writers = Writers::start(&s);
    // The bot and the followed dialog exist before the dashboard subscribes.
    let dialog = format!("bot/{BOT}/dialog/u0");
    let topics = [
        format!("bot/{BOT}/overview"),
        format!("bot/{BOT}/dialogs"),
        dialog.clone(),
    ];
    let started = Instant::now();
    while s.get(&format!("/api/v1/bots/{BOT}/dialogs/u0")).await.0 != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "no dialog u0");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ws = super::connect(&s).await;
    for topic in &topics {
        let subscribe = json!({"op": "subscribe", "topic": topic});
        ws.send(Message::text(subscribe.to_string()))
            .await
            .expect("subscribe");
    }
    let mut watched = HashMap::new();
    let all = |check: fn(&Watched) -> bool| {
        let topics = topics.clone();
        move |w: &HashMap<String, Watched>| topics.iter().all(|t| w.get(t).is_some_and(check))
    };
    watch_until(
        &mut ws,
        &mut watched,
        "the first snapshots and deltas",
        all(|w| w.shows_loss() == Some(false) && w.deltas_since > 0),
    )
    .await;

    // A second dashboard follows a quiet dialog (nothing new in it, so a resume would
    // miss no delta), then is away while Redis is emptied.
    let quiet = format!("bot/{BOT}/dialog/quiet");
    let one = json!({"id": "quiet-1", "bot": BOT, "type": "message", "direction": "in",
                     "provider": "web", "user": {"id": "quiet"}, "text": "hello"});
    assert_eq!(s.ingest(one.to_string()).await.0, 202);
    let started = Instant::now();
    while s.get(&format!("/api/v1/bots/{BOT}/dialogs/quiet")).await.0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no dialog quiet"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut away = super::connect(&s).await;
    let subscribe = json!({"op": "subscribe", "topic": quiet});
    away.send(Message::text(subscribe.to_string()))
        .await
        .expect("subscribe");
    let mut away_watched = HashMap::new();
    watch_until(
        &mut away,
        &mut away_watched,
        "the away dashboard's snapshot",
        |w| w.get(&quiet).is_some_and(|w| w.shows_loss() == Some(false)),
    )
    .await;
    let away_seq = away_watched[&quiet].followed.seq.expect("a seq");
    drop(away);

    // Emptied behind the service's back.
    let mut con = redis::Client::open(store.url())
        .expect("url")
        .get_multiplexed_async_connection()
        .await
        .expect("the private Redis");
    let _: () = redis::cmd("FLUSHALL")
        .query_async(&mut con)
        .await
        .expect("FLUSHALL");
    let flushed = Instant::now();
    let (ready, _) = until_readiness(&s, 503).await;
    let reported = flushed.elapsed();
    assert_eq!(ready["status"], "data_lost", "{ready}");
    // Every subscription starts again with a snapshot saying so; new events still
    // reach the dashboard after it.
    watch_until(
        &mut ws,
        &mut watched,
        "snapshots with data_loss and deltas after them",
        all(|w| w.shows_loss() == Some(true) && w.deltas_since > 0),
    )
    .await;
    let resynced = flushed.elapsed();
    for topic in &topics {
        let loss = watched[topic].snapshots.last().expect("a snapshot");
        assert!(
            loss["reason"].as_str().is_some_and(|r| !r.is_empty()) && loss["at"].is_string(),
            "{topic}: data_loss {loss}"
        );
    }
    // The dashboard that was away resumes from where it was: it gets a snapshot saying
    // so, not the deltas it missed (what it shows is stale, deltas or not).
    let mut back = super::connect(&s).await;
    let resume = json!({"op": "subscribe", "topic": quiet, "since": away_seq});
    back.send(Message::text(resume.to_string()))
        .await
        .expect("resume");
    let mut back_watched = HashMap::new();
    watch_until(
        &mut back,
        &mut back_watched,
        "the resumed dashboard's first frame",
        |w| w.contains_key(&quiet),
    )
    .await;
    let first = &back_watched[&quiet];
    assert_eq!(
        (first.snapshots.len(), first.shows_loss()),
        (1, Some(true)),
        "a resume after the loss starts with a snapshot showing it"
    );
    drop(back);

    // The operator accepts the loss: every subscription again, with data_loss null.
    let cleared = botwatch_server::clear_data_loss(&s.storage())
        .await
        .expect("clear");
    assert!(cleared.record.is_some(), "a record to clear");
    let clearing = Instant::now();
    let (ready, _) = until_readiness(&s, 200).await;
    assert_eq!(ready["status"], "ready", "{ready}");
    let since_loss: HashMap<String, usize> = watched
        .iter()
        .map(|(t, w)| (t.clone(), w.snapshots.len()))
        .collect();
    watch_until(
        &mut ws,
        &mut watched,
        "snapshots without data_loss and deltas after them",
        all(|w| w.shows_loss() == Some(false) && w.deltas_since > 0),
    )
    .await;
    let cleared_in = clearing.elapsed();
    for topic in &topics {
        assert!(
            watched[topic].snapshots.len() > since_loss[topic],
            "{topic}: a fresh snapshot after the clearing"
        );
    }
    drop(ws);
    let sent = writers.finish().await;
    let counted = settled(&s).await;
    let resyncs: usize = watched.values().map(|w| w.snapshots.len() - 1).sum();
    report(
        "Redis emptied (FLUSHALL) under a dashboard (overview, dialogs, a dialog)",
        1,
        sent.acknowledged,
        sent.acknowledged.saturating_sub(counted),
        counted.saturating_sub(sent.acknowledged),
        &format!(
            "/readyz 503 data_lost after {}; every subscription resynced with data_loss after \
             {}; cleared: ready and resynced with null after {}; {resyncs} resyncs, no seq gap \
             or repeat; a dashboard away during the flush resumed with a snapshot showing it",
            ms(reported),
            ms(resynced),
            ms(cleared_in)
        ),
    );
    // Nothing counted twice; what was acknowledged but not yet read when Redis was
    // emptied is lost with it (that is the loss reported), the rest is counted.
    assert!(counted <= sent.acknowledged, "nothing doubled");
    s.stop().await;
    store.kill().await;
}
