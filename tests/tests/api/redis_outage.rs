//! A Redis of the test's own (on a free port, with AOF `always`), killed and started
//! again under a running server: `/readyz` and ingest say 503 meanwhile, promptly, and
//! everything works again after the restart without restarting botwatch.

use std::time::{Duration, Instant};

use botwatch_tests::{Backend, PrivateRedis, TestServer};
use serde_json::json;

fn event(id: &str) -> String {
    json!({"id": id, "bot": "outage", "type": "message", "direction": "in",
           "provider": "web", "user": {"id": "u1"}, "text": id})
    .to_string()
}

/// Polls `/readyz` until it answers `status`; returns how long that took.
async fn until_readyz(s: &TestServer, status: u16, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let (got, _) = s.get("/readyz").await;
        if got == status {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "/readyz still {got}, expected {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_is_survived_and_reported() {
    let mut redis = PrivateRedis::start("always").await;
    let s = TestServer::start_on(Backend::Redis, &redis.url()).await;
    let (status, _) = s.ingest(event("before")).await;
    assert_eq!(status, 202);

    redis.kill().await;
    let noticed = until_readyz(&s, 503, Duration::from_secs(10)).await;
    let started = Instant::now();
    let (status, body) = s.ingest(event("during")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "storage_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "ingest answers promptly, not after a hang"
    );

    redis.spawn().await;
    let recovered = until_readyz(&s, 200, Duration::from_secs(20)).await;
    let (status, body) = s.ingest(event("after")).await;
    assert_eq!(status, 202, "{body}");
    // The client retries what got 503; the acknowledged event survived (AOF).
    let (status, _) = s.ingest(event("during")).await;
    assert_eq!(status, 202);
    let (_, history) = s.get("/api/v1/bots/outage/dialogs/u1/messages").await;
    let ids: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["after", "before", "during"], "{history}");
    eprintln!("readyz noticed the outage after {noticed:?} and the recovery after {recovered:?}");
    s.stop().await;
    redis.kill().await;
}
