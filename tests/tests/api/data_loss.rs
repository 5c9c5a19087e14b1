//! A Redis that lost data behind running servers — its epoch changed, the deployment's
//! keys flushed, the stream deleted — is reported loudly: `/readyz` 503 `data_lost`
//! with the reason, `botwatch_data_lost 1`, a record in Redis that survives restarts
//! until an operator clears it. Meanwhile the figures are still served and new events
//! still counted: nothing is reset.

use std::time::{Duration, Instant};

use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

fn event(id: &str, user: &str) -> Value {
    json!({"id": id, "bot": "lossy", "type": "message", "direction": "in",
           "provider": "web", "user": {"id": user}, "text": "hi",
           "ts": "2026-11-26T10:00:00Z"})
}

async fn ingest_n(s: &TestServer, from: usize, n: usize) {
    let batch: Vec<Value> = (from..from + n)
        .map(|i| event(&format!("e{i}"), &format!("u{}", i % 3)))
        .collect();
    let (status, body) = s.ingest(Value::Array(batch).to_string()).await;
    assert_eq!(status, 202, "{body}");
}

/// The messages the figures count, once they reach `n`.
async fn counted(s: &TestServer, n: u64) {
    s.wait_for_messages("lossy", n).await;
}

/// `/readyz` once it answers `status`.
async fn readiness(s: &TestServer, status: u16) -> Value {
    let started = Instant::now();
    loop {
        let (got, body) = s.get("/readyz").await;
        if got == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "/readyz never answered {status}: {got} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn redis_cmd<T: redis::FromRedisValue>(s: &TestServer, cmd: &mut redis::Cmd) -> T {
    cmd.query_async(&mut s.redis().await).await.expect("redis")
}

/// The record of the loss, as Redis keeps it.
async fn recorded(s: &TestServer) -> Option<String> {
    redis_cmd(
        s,
        redis::cmd("GET").arg(format!("{}data_lost", s.redis_prefix())),
    )
    .await
}

async fn data_lost_says(s: &TestServer, words: &str) {
    let body = readiness(s, 503).await;
    assert_eq!(body["status"], "data_lost", "{body}");
    let reason = body["reason"].as_str().unwrap_or("");
    assert!(reason.contains(words), "{body}");
    assert!(body["since"].is_string(), "{body}");
    let text = s.metrics().await;
    assert!(text.contains("botwatch_data_lost 1"), "{text}");
    let record = recorded(s).await.expect("the loss is recorded in Redis");
    assert!(record.contains(words), "{record}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_epoch_changed_under_a_running_server_is_data_lost() {
    let s = TestServer::start(Backend::Redis).await;
    ingest_n(&s, 0, 10).await;
    counted(&s, 10).await;
    assert_eq!(readiness(&s, 200).await["status"], "ready");
    assert!(s.metrics().await.contains("botwatch_data_lost 0"));

    let _: () = redis_cmd(
        &s,
        redis::cmd("SET")
            .arg(format!("{}epoch", s.redis_prefix()))
            .arg("another-redis"),
    )
    .await;
    data_lost_says(&s, "epoch changed").await;
    // The figures are still served, and new events still counted.
    ingest_n(&s, 10, 5).await;
    counted(&s, 15).await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_of_the_deployments_keys_behind_a_running_server_is_data_lost() {
    let s = TestServer::start(Backend::Redis).await;
    ingest_n(&s, 0, 10).await;
    counted(&s, 10).await;
    let keys: Vec<String> =
        redis_cmd(&s, redis::cmd("KEYS").arg(format!("{}*", s.redis_prefix()))).await;
    assert!(keys.len() > 3, "{keys:?}");
    let _: () = redis_cmd(&s, redis::cmd("DEL").arg(&keys)).await;

    data_lost_says(&s, "epoch is gone").await;
    // Nothing is reset: the figures keep what they had and count what comes.
    ingest_n(&s, 10, 5).await;
    counted(&s, 15).await;

    // Flushed again, the record goes too: that is no operator clearing it.
    let keys: Vec<String> =
        redis_cmd(&s, redis::cmd("KEYS").arg(format!("{}*", s.redis_prefix()))).await;
    let _: () = redis_cmd(&s, redis::cmd("DEL").arg(&keys)).await;
    let started = Instant::now();
    while recorded(&s).await.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the record is never written again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    data_lost_says(&s, "epoch is gone").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_deleted_or_cut_behind_a_running_server_is_data_lost() {
    let s = TestServer::start(Backend::Redis).await;
    ingest_n(&s, 0, 10).await;
    counted(&s, 10).await;
    let stream = format!("{}events", s.redis_prefix());
    let _: () = redis_cmd(&s, redis::cmd("DEL").arg(&stream)).await;
    data_lost_says(&s, "stream is gone").await;
    s.stop().await;

    // An entry deleted by someone else (not retention) is a loss too.
    let s = TestServer::start(Backend::Redis).await;
    ingest_n(&s, 0, 10).await;
    counted(&s, 10).await;
    let stream = format!("{}events", s.redis_prefix());
    let entries: Vec<(String, Vec<(String, String)>)> =
        redis_cmd(&s, redis::cmd("XRANGE").arg(&stream).arg("-").arg("+")).await;
    let _: () = redis_cmd(&s, redis::cmd("XDEL").arg(&stream).arg(&entries[3].0)).await;
    data_lost_says(&s, "deleted from the stream").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_lost_survives_restarts_until_an_operator_clears_it() {
    let s = TestServer::start(Backend::Redis).await;
    ingest_n(&s, 0, 10).await;
    counted(&s, 10).await;
    let prefix = s.redis_prefix().to_owned();
    let kept = s.stop_keeping().await;

    // While no server runs, the epoch changes (another Redis, say, with these keys).
    let _: () = redis::cmd("SET")
        .arg(format!("{prefix}epoch"))
        .arg("x")
        .query_async(
            &mut redis::Client::open(botwatch_tests::REDIS_URL)
                .expect("url")
                .get_multiplexed_async_connection()
                .await
                .expect("Redis must run on 127.0.0.1:6379 for these tests"),
        )
        .await
        .expect("set");
    let s = TestServer::start_with(Backend::Redis, Some(kept), |_| {}).await;
    data_lost_says(&s, "snapshot was counted under").await;
    counted(&s, 10).await;

    // New events, a snapshot under the present epoch, a restart: still reported.
    ingest_n(&s, 10, 5).await;
    counted(&s, 15).await;
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(Backend::Redis, Some(kept), |_| {}).await;
    assert_eq!(s.get("/readyz").await.0, 503, "from the first request on");
    data_lost_says(&s, "snapshot was counted under").await;

    // The operator clears it while the server runs: it carries on, ready.
    let cleared = botwatch_server::clear_data_loss(&s.storage())
        .await
        .expect("clear");
    let record = cleared.record.expect("there was a record");
    assert!(
        record.reason.contains("snapshot was counted under"),
        "{record:?}"
    );
    assert_eq!(readiness(&s, 200).await["status"], "ready");
    assert!(s.metrics().await.contains("botwatch_data_lost 0"));
    counted(&s, 15).await;
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(Backend::Redis, Some(kept), |_| {}).await;
    assert_eq!(readiness(&s, 200).await["status"], "ready");
    counted(&s, 15).await;
    s.stop().await;
}
