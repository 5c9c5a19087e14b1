//! `kill -9` of `botwatch serve` in the middle of a stream of acknowledged ingests:
//! after a restart every acknowledged event is there, and none twice — on both
//! backends. The real binary, real HTTP, real Redis.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

mod common;

use common::{Running, Storage};

const TOKEN: &str = "crash-test-admin-token-0123456789";
const USERS: usize = 8;
const WRITERS: usize = 4;
const BATCH: usize = 50;
/// 2026-11-24 00:00 UTC.
const BASE_SECS: i64 = 1_795_478_400;

/// The chaos suite's long form (`CHAOS=long`, issue 10): 20 kills at seeded moments
/// of a 1,000,000-event ingest, instead of 3 over a few thousand.
fn long() -> bool {
    std::env::var("CHAOS").is_ok_and(|v| v == "long")
}

/// When a round's kill lands.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the round's first acknowledgement.
    After(Duration),
    /// Once this many events in all have been acknowledged.
    Acknowledged(usize),
}

/// The events the long form's ingest acknowledges in all (its last kill lands there).
const LONG_EVENTS: usize = 1_000_000;

/// When each round's kill lands (seeded, so a failure can be replayed): in the short
/// form a few hundred ms into a round; in the long form at 20 random moments of a
/// 1,000,000-event ingest, the last at its end.
fn kill_moments() -> Vec<KillAt> {
    if !long() {
        return [350, 120, 600]
            .map(|ms| KillAt::After(Duration::from_millis(ms)))
            .to_vec();
    }
    let mut rng = 0x853C_49E6_748F_EA9B_u64;
    let mut moments: Vec<usize> = (0..19)
        .map(|_| {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng % LONG_EVENTS as u64) as usize
        })
        .collect();
    moments.sort_unstable();
    moments.push(LONG_EVENTS);
    moments.into_iter().map(KillAt::Acknowledged).collect()
}

async fn start(storage: &Storage) -> Running {
    // Snapshots every few hundred events, so kills land before, during and after them
    // (every 20,000 in the long form's million events).
    let every = if long() { "20000" } else { "300" };
    let env = [
        ("BOTWATCH_ADMIN_TOKEN", TOKEN),
        ("BOTWATCH_SNAPSHOT_EVERY", every),
    ];
    common::serve(storage, &env).await
}

/// Starts the server after a kill; how long until it answers `/readyz` with 200 (the
/// snapshot loaded and the log after it replayed).
async fn restart(storage: &Storage) -> (Running, Duration) {
    let started = std::time::Instant::now();
    let server = start(storage).await;
    let client = reqwest::Client::new();
    loop {
        let ready = client
            .get(format!("{}/readyz", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status().as_u16() == 200);
        if ready {
            return (server, started.elapsed());
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "not ready 120 s after a restart"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn batch(writer: usize, n: usize) -> (Vec<String>, String) {
    let mut ids = Vec::with_capacity(BATCH);
    let events: Vec<Value> = (0..BATCH)
        .map(|k| {
            let id = format!("w{writer}-b{n}-{k}");
            ids.push(id.clone());
            // Event times spread over two past days, so that users have several
            // sessions and the figures after a crash have something to get wrong.
            let spread = ((writer * 100_003 + n * 50 + k) * 7_919) % 172_800;
            let ts = chrono::DateTime::from_timestamp(BASE_SECS + spread as i64, 0)
                .expect("time")
                .to_rfc3339();
            json!({
                "id": id, "bot": "crash", "type": "message", "direction": "in",
                "provider": "web", "user": {"id": format!("u{}", k % USERS)}, "text": "x",
                "ts": ts
            })
        })
        .collect();
    (ids, Value::Array(events).to_string())
}

#[derive(Default)]
struct Ledger {
    acknowledged: BTreeSet<String>,
    /// Batches sent but not acknowledged when the server died: retried after restart.
    unanswered: Vec<(Vec<String>, String)>,
}

/// Writers ingest until the server dies under them.
async fn ingest_until_killed(base: String, ledger: Arc<Mutex<Ledger>>, round: usize) {
    let client = reqwest::Client::new();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let client = client.clone();
        let ledger = ledger.clone();
        let url = format!("{base}/api/v1/events");
        writers.push(tokio::spawn(async move {
            for n in 0.. {
                let (ids, body) = batch(w + round * WRITERS, n);
                let answer = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .body(body.clone())
                    .send()
                    .await;
                match answer {
                    Ok(r) if r.status().as_u16() == 202 => {
                        ledger.lock().expect("ledger").acknowledged.extend(ids);
                    }
                    Ok(r) if r.status().is_client_error() => panic!("refused: {}", r.status()),
                    _ => {
                        ledger.lock().expect("ledger").unanswered.push((ids, body));
                        return;
                    }
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
}

async fn read_all(base: &str) -> BTreeMap<String, usize> {
    read_all_with_times(base).await.0
}

/// Every stored message id (with how often it is stored) and each user's event times.
async fn read_all_with_times(base: &str) -> (BTreeMap<String, usize>, Vec<Vec<i64>>) {
    let client = reqwest::Client::new();
    let mut counts = BTreeMap::new();
    let mut times = vec![Vec::new(); USERS];
    for (u, user_times) in times.iter_mut().enumerate() {
        let mut url = format!("{base}/api/v1/bots/crash/dialogs/u{u}/messages?limit=200");
        loop {
            let page: Value = client
                .get(&url)
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("history")
                .json()
                .await
                .expect("json");
            for m in page["items"].as_array().expect("items") {
                *counts
                    .entry(m["id"].as_str().expect("id").to_owned())
                    .or_insert(0) += 1;
                let ts = chrono::DateTime::parse_from_rfc3339(m["ts"].as_str().expect("ts"))
                    .expect("rfc3339");
                user_times.push(ts.timestamp_millis());
            }
            match page["next"].as_str() {
                Some(next) => {
                    url = format!(
                        "{base}/api/v1/bots/crash/dialogs/u{u}/messages?limit=200&before={next}"
                    )
                }
                None => break,
            }
        }
    }
    (counts, times)
}

/// After a restart the figures are those of a recount of what is stored: each user's
/// messages, sessions (30-minute timeout) and last message, and the day statistics.
async fn figures_equal_a_recount(base: &str) {
    let (_, times) = read_all_with_times(base).await;
    let client = reqwest::Client::new();
    let mut sessions_total = 0;
    for (u, ts) in times.iter().enumerate() {
        let mut ts = ts.clone();
        ts.sort_unstable();
        let sessions = 1 + ts.windows(2).filter(|w| w[1] - w[0] >= 30 * 60_000).count();
        sessions_total += sessions;
        let started = std::time::Instant::now();
        let dialog = loop {
            let d: Value = client
                .get(format!("{base}/api/v1/bots/crash/dialogs/u{u}"))
                .bearer_auth(TOKEN)
                .send()
                .await
                .expect("dialog")
                .json()
                .await
                .expect("json");
            if d["messages"].as_u64() == Some(ts.len() as u64) {
                break d;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "u{u} never caught up: {d}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(
            dialog["sessions"].as_u64(),
            Some(sessions as u64),
            "sessions of u{u}"
        );
        let last = chrono::DateTime::from_timestamp_millis(*ts.last().expect("a message"))
            .expect("time")
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(dialog["last"].as_str(), Some(last.as_str()), "last of u{u}");
    }
    let stats: Value = client
        .get(format!(
            "{base}/api/v1/bots/crash/stats?from=2026-11-24&to=2026-11-25&bucket=day"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("stats")
        .json()
        .await
        .expect("json");
    let buckets = stats["buckets"].as_array().expect("buckets");
    let sum = |f: &str| {
        buckets
            .iter()
            .map(|b| b[f].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let stored: usize = times.iter().map(Vec::len).sum();
    assert_eq!(sum("messages_in"), stored as u64);
    assert_eq!(sum("users_new"), USERS as u64);
    assert_eq!(sum("sessions"), sessions_total as u64);
}

async fn kill_nine_loses_nothing_acknowledged(storage: Storage) {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let kill_moments = kill_moments();
    let kills = kill_moments.len();
    let mut acknowledged_before = 0;
    let mut catch_up = Vec::new();
    for (round, kill_at) in kill_moments.into_iter().enumerate() {
        let (mut server, took) = restart(&storage).await;
        if round > 0 {
            catch_up.push(took);
        }
        let writers = tokio::spawn(ingest_until_killed(
            server.base.clone(),
            ledger.clone(),
            round,
        ));
        // The kill lands `delay` ms after the server has acknowledged a first batch
        // of this round (a slow machine must not turn a round into a no-op).
        let started = std::time::Instant::now();
        while ledger.lock().expect("ledger").acknowledged.len() < acknowledged_before + BATCH {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: no acknowledgement"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match kill_at {
            KillAt::After(delay) => tokio::time::sleep(delay).await,
            KillAt::Acknowledged(n) => {
                let waiting = std::time::Instant::now();
                while ledger.lock().expect("ledger").acknowledged.len() < n {
                    assert!(
                        waiting.elapsed() < Duration::from_secs(600),
                        "round {round}: {n} events not acknowledged in 10 minutes"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        server.child.start_kill().expect("SIGKILL");
        server.child.wait().await.expect("wait");
        tokio::time::timeout(Duration::from_secs(30), writers)
            .await
            .expect("writers notice the dead server")
            .expect("writers");
        let acknowledged = ledger.lock().expect("ledger").acknowledged.len();
        assert!(
            acknowledged >= acknowledged_before + BATCH,
            "round {round}: the server took load before the kill ({} new)",
            acknowledged - acknowledged_before
        );
        acknowledged_before = acknowledged;
    }

    let (server, took) = restart(&storage).await;
    catch_up.push(took);
    // Clients retry what was never answered; ids make that safe.
    let unanswered = std::mem::take(&mut ledger.lock().expect("ledger").unanswered);
    let mut retried = BTreeSet::new();
    for (ids, body) in unanswered {
        assert_eq!(ingest(&server.base, body).await, 202);
        retried.extend(ids);
    }

    let counts = read_all(&server.base).await;
    let acknowledged = ledger.lock().expect("ledger").acknowledged.clone();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !counts.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "events stored twice: {twice:?}");
    for id in &retried {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "retried event {id} is stored once"
        );
    }
    let expected: BTreeSet<&String> = acknowledged.iter().chain(retried.iter()).collect();
    assert_eq!(counts.len(), expected.len(), "nothing but what was sent");
    figures_equal_a_recount(&server.base).await;
    catch_up.sort();
    let at = |q: f64| catch_up[((catch_up.len() - 1) as f64 * q).round() as usize];
    // A row of the chaos suite's results table (BENCHMARKS.md → Chaos): case, runs,
    // events, lost, doubled (both asserted zero above), recovery.
    println!(
        "| kill -9 of serve ({}) | {kills} | {} | 0 | 0 | ready again after {:.0} ms (p50), {:.0} ms (p95) |",
        match &storage {
            Storage::Embedded(_) => "embedded",
            Storage::Redis { .. } => "Redis",
        },
        acknowledged.len() + retried.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
    );

    // The restarts began from snapshots (taken every 300 events), not from scratch.
    match &storage {
        Storage::Embedded(dir) => assert!(dir.path().join("snapshot.bin").exists()),
        Storage::Redis { prefix } => {
            let client = redis::Client::open("redis://127.0.0.1:6379").expect("url");
            let mut con = client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            let exists: bool = redis::cmd("EXISTS")
                .arg(format!("{prefix}snapshot"))
                .query_async(&mut con)
                .await
                .expect("exists");
            assert!(exists, "a snapshot was written");
        }
    }
    drop(server);
    if let Storage::Redis { prefix } = &storage {
        common::remove_redis_keys(prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_kill_nine_loses_nothing_acknowledged() {
    kill_nine_loses_nothing_acknowledged(Storage::Embedded(tempfile::tempdir().expect("dir")))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_kill_nine_loses_nothing_acknowledged() {
    let prefix = format!("bwcrash:{}:", std::process::id());
    kill_nine_loses_nothing_acknowledged(Storage::Redis { prefix }).await;
}

/// POSTs a batch; the status of the answer.
async fn ingest(base: &str, body: String) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/api/v1/events"))
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .await
        .expect("ingest")
        .status()
        .as_u16()
}

/// SIGTERM: the server stops by itself, cleanly (exit 0), and what it acknowledged is
/// there after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_gracefully() {
    let storage = Storage::Embedded(tempfile::tempdir().expect("dir"));
    let mut server = start(&storage).await;
    let (ids, body) = batch(0, 0);
    assert_eq!(ingest(&server.base, body).await, 202);

    let pid = server.child.id().expect("pid");
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait())
        .await
        .expect("stops within the grace period")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");

    let server = start(&storage).await;
    let counts = read_all(&server.base).await;
    assert_eq!(counts.len(), ids.len());
    assert!(ids.iter().all(|id| counts.get(id) == Some(&1)));
}

/// `kill -9`, and waits until the process is gone (and its store unlocked).
async fn kill(mut server: Running) {
    server.child.start_kill().expect("kill");
    server.child.wait().await.expect("wait");
}

/// Runs `botwatch data-loss <action>` on an embedded store; its standard output.
async fn data_loss_command(dir: &std::path::Path, action: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_botwatch"))
        .args(["data-loss", action, "--data"])
        .arg(dir)
        .env_remove("BOTWATCH_REDIS_URL")
        .env_remove("BOTWATCH_DATA")
        .env("BOTWATCH_LOG", "warn")
        .output()
        .await
        .expect("run botwatch data-loss");
    assert!(out.status.success(), "data-loss {action}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn readyz(base: &str) -> (u16, Value) {
    let ready = reqwest::get(format!("{base}/readyz"))
        .await
        .expect("readyz");
    let status = ready.status().as_u16();
    (status, ready.json().await.expect("json"))
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text")
}

/// A damaged snapshot is refused with a warning and the whole log replayed; a
/// snapshot beyond the end of the log (the storage lost events) makes `/readyz` say so,
/// and it keeps saying so — after new events have passed the snapshot's position and a
/// restart — until an operator runs `botwatch data-loss clear`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_or_impossible_snapshots_are_not_trusted() {
    let dir = tempfile::tempdir().expect("dir");
    let storage = Storage::Embedded(dir);
    let server = start(&storage).await;
    let (_, body) = batch(9, 0);
    assert_eq!(ingest(&server.base, body).await, 202);
    kill(server).await;
    let Storage::Embedded(dir) = &storage else {
        unreachable!()
    };

    std::fs::write(dir.path().join("snapshot.bin"), b"BWSNAP01 garbage").expect("write");
    let server = start(&storage).await;
    figures_equal_a_recount(&server.base).await;
    assert_eq!(readyz(&server.base).await.0, 200);
    kill(server).await;

    // A snapshot of this store (its epoch) a few seconds ahead of its log.
    let log = botwatch_log::EmbeddedLog::open(dir.path())
        .await
        .expect("open");
    let (epoch, made) = botwatch_log::IntegrityStore::ensure_epoch(&log)
        .await
        .expect("epoch");
    assert!(!made, "the server made the store's epoch");
    botwatch_log::EventLog::close(&log).await;
    drop(log);
    let state = botwatch_aggregator::Aggregator::default()
        .to_bytes()
        .expect("bytes");
    let ahead_ms = chrono::Utc::now().timestamp_millis() as u64 + 3_000;
    let meta = botwatch_log::SnapshotMeta {
        position: botwatch_log::Position::new(ahead_ms, 0),
        epoch,
    };
    let ahead = botwatch_server::snapshot::encode(&meta, &state);
    std::fs::write(dir.path().join("snapshot.bin"), ahead).expect("write");
    let server = start(&storage).await;
    let (status, body) = readyz(&server.base).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("data_lost")),
        "{body}"
    );
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or("")
            .contains("before the snapshot's position"),
        "{body}"
    );
    let text = metrics(&server.base).await;
    assert!(text.contains("botwatch_data_lost 1"), "{text}");
    assert!(text.contains("botwatch_log_behind_snapshot 1"), "{text}");

    // New events pass the snapshot's position; the loss is still reported after a
    // restart, when the log no longer ends before the snapshot.
    while (chrono::Utc::now().timestamp_millis() as u64) < ahead_ms + 100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, body) = batch(9, 1);
    assert_eq!(ingest(&server.base, body).await, 202);
    kill(server).await;
    let server = start(&storage).await;
    let (status, body) = readyz(&server.base).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (503, Some("data_lost")),
        "{body}"
    );
    kill(server).await;

    let shown = data_loss_command(dir.path(), "show").await;
    assert!(shown.contains("before the snapshot's position"), "{shown}");
    let cleared = data_loss_command(dir.path(), "clear").await;
    assert!(cleared.starts_with("cleared"), "{cleared}");
    let server = start(&storage).await;
    let (status, body) = readyz(&server.base).await;
    assert_eq!(status, 200, "{body}");
    assert!(metrics(&server.base).await.contains("botwatch_data_lost 0"));
    kill(server).await;
    let shown = data_loss_command(dir.path(), "show").await;
    assert_eq!(shown.trim(), "no loss of data recorded");
}
