//! Redis only: the one snapshot key every node shares, retention's guard, and what the
//! stream says of itself when it is lost behind the server's back.

use std::time::Duration;

use botwatch_log::{EventLog, IntegrityStore, Position, Saved, SnapshotMeta, SnapshotStore};

use super::{Backend, Redis, at, msg};

const STALE: Duration = Duration::from_secs(3600);

async fn redis_now_ms(b: &Redis) -> u64 {
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut b.raw().await)
        .await
        .expect("time");
    secs * 1000 + micros / 1000
}

async fn first_entry(b: &Redis) -> Position {
    let first: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg(format!("{}events", b.config().prefix))
        .arg("-")
        .arg("+")
        .arg("COUNT")
        .arg(1)
        .query_async(&mut b.raw().await)
        .await
        .expect("xrange");
    first[0].0.parse().expect("position")
}

async fn register(b: &Redis, node: &str, needed: Position, at_ms: u64) {
    let _: () = redis::cmd("HSET")
        .arg(format!("{}snapshot_positions", b.config().prefix))
        .arg(node)
        .arg(format!("{needed} {at_ms}"))
        .query_async(&mut b.raw().await)
        .await
        .expect("hset");
}

/// 300 events (three of Redis's stream nodes, so `MINID ~` has whole nodes to drop);
/// their positions.
async fn fill(log: &impl EventLog) -> Vec<Position> {
    let events = (0..300)
        .map(|i| msg("b1", "u1", &format!("e{i}"), at(i), "x"))
        .collect();
    log.append(events).await.expect("append");
    let all = log.read(Position::START, 1000, None).await.expect("read");
    all.entries.iter().map(|e| e.position).collect()
}

#[tokio::test]
async fn a_snapshot_never_replaces_a_newer_one_of_its_epoch() {
    let b = Redis::new();
    let log = b.open().await;
    let (epoch, _) = log.ensure_epoch().await.expect("epoch");
    let p = fill(&log).await;
    let meta = |position, epoch: &str| SnapshotMeta {
        position,
        epoch: epoch.to_owned(),
    };
    let save = |m: SnapshotMeta, bytes: &'static [u8]| {
        let log = log.clone();
        async move { log.save_snapshot(&m, bytes.to_vec()).await.expect("save") }
    };
    assert_eq!(save(meta(p[20], &epoch), b"twenty").await, Saved::Stored);
    assert_eq!(save(meta(p[10], &epoch), b"ten").await, Saved::NewerKept);
    assert_eq!(
        save(meta(p[20], &epoch), b"twenty again").await,
        Saved::Stored
    );
    assert_eq!(
        save(meta(p[30], "another"), b"foreign").await,
        Saved::EpochChanged
    );
    assert_eq!(
        log.load_snapshot().await.expect("load").as_deref(),
        Some(&b"twenty again"[..])
    );
    // A stored snapshot beyond the end of the stream claims lost events: it goes.
    let beyond = Position::new(p[299].ms + 1_000_000, 0);
    assert_eq!(save(meta(beyond, &epoch), b"beyond").await, Saved::Stored);
    assert_eq!(save(meta(p[5], &epoch), b"five").await, Saved::Stored);
    // `data-loss clear` replaces whatever is stored.
    log.replace_snapshot(&meta(p[1], &epoch), b"one".to_vec())
        .await
        .expect("replace");
    assert_eq!(
        log.load_snapshot().await.expect("load").as_deref(),
        Some(&b"one"[..])
    );
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}snapshot:new:*", b.config().prefix))
        .query_async(&mut b.raw().await)
        .await
        .expect("keys");
    assert!(keys.is_empty(), "no snapshot left half-saved: {keys:?}");
    b.cleanup().await;
}

#[tokio::test]
async fn trimming_keeps_what_every_live_node_and_the_snapshot_need() {
    let b = Redis::new();
    let log = b.open().await;
    let (epoch, _) = log.ensure_epoch().await.expect("epoch");
    let p = fill(&log).await;
    // Without a stored snapshot nothing is trimmed: a restart would need everything.
    let trimmed = log.trim("me", p[250], p[290], STALE).await.expect("trim");
    assert_eq!(trimmed, None);
    assert_eq!(first_entry(&b).await, p[0]);

    let snapshot = SnapshotMeta {
        position: p[250],
        epoch: epoch.clone(),
    };
    let saved = log.save_snapshot(&snapshot, b"s".to_vec()).await;
    assert_eq!(saved.expect("save"), Saved::Stored);
    // Another node, alive, still needs what follows entry 20.
    let now = redis_now_ms(&b).await;
    register(&b, "other", p[20], now).await;
    let (floor, removed) = log
        .trim("me", p[250], p[290], STALE)
        .await
        .expect("trim")
        .expect("a floor");
    assert_eq!((floor, removed), (p[20], 0));
    assert_eq!(first_entry(&b).await, p[0]);

    // Silent for longer than the bound, it no longer holds retention back; the floor
    // is then this node's own snapshot, not the 10 entries it would keep.
    register(&b, "other", p[20], now - STALE.as_millis() as u64 - 1).await;
    let (floor, removed) = log
        .trim("me", p[250], p[290], STALE)
        .await
        .expect("trim")
        .expect("a floor");
    assert_eq!(floor, p[250]);
    assert!(removed >= 100, "whole stream nodes were dropped: {removed}");
    let first = first_entry(&b).await;
    assert!(first > p[0] && first <= p[250], "{first}");
    let watch = log.watch(None).await.expect("watch");
    assert_eq!(watch.trimmed_before, p[250]);
    assert!(watch.stream.expect("stream").max_deleted < p[250]);

    // The stored snapshot holds retention back too, whatever the nodes say.
    let older = SnapshotMeta {
        position: p[260],
        epoch,
    };
    log.replace_snapshot(&older, b"s".to_vec())
        .await
        .expect("replace");
    let (floor, _) = log
        .trim("me", p[299], p[299], STALE)
        .await
        .expect("trim")
        .expect("a floor");
    assert_eq!(floor, p[260]);
    b.cleanup().await;
}

#[tokio::test]
async fn the_watch_sees_a_stream_lost_and_made_anew() {
    let b = Redis::new();
    let log = b.open().await;
    let (epoch, _) = log.ensure_epoch().await.expect("epoch");
    let p = fill(&log).await;
    let watch = log.watch(Some(("me", p[10]))).await.expect("watch");
    assert_eq!(watch.epoch.as_deref(), Some(epoch.as_str()));
    let stream = watch.stream.expect("the stream exists");
    assert_eq!(stream.entries_added, 300);
    assert_eq!(stream.last_generated, p[299]);
    assert_eq!(stream.max_deleted, Position::START);
    let registered: Option<String> = redis::cmd("HGET")
        .arg(format!("{}snapshot_positions", b.config().prefix))
        .arg("me")
        .query_async(&mut b.raw().await)
        .await
        .expect("hget");
    assert!(
        registered.is_some_and(|r| r.starts_with(&format!("{} ", p[10]))),
        "the heartbeat registers what the node needs"
    );
    log.leave("me").await.expect("leave");
    let registered: Option<String> = redis::cmd("HGET")
        .arg(format!("{}snapshot_positions", b.config().prefix))
        .arg("me")
        .query_async(&mut b.raw().await)
        .await
        .expect("hget");
    assert_eq!(registered, None, "a node that stops needs nothing");

    b.delete_matching("events").await;
    assert_eq!(log.watch(None).await.expect("watch").stream, None);
    log.append(vec![msg("b1", "u1", "late", at(0), "x")])
        .await
        .expect("append");
    let stream = log
        .watch(None)
        .await
        .expect("watch")
        .stream
        .expect("stream");
    assert_eq!(
        stream.entries_added, 1,
        "a stream made anew counts from zero"
    );
    b.delete_matching("*").await;
    assert_eq!(log.watch(None).await.expect("watch").epoch, None);
    b.cleanup().await;
}
