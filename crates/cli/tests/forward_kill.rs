//! `kill -9` of `botwatch serve` while Google Analytics holds the answer to a batch:
//! GA4 has no idempotency key, so the restarted server must not send that batch again
//! (it may have been taken); what comes after is forwarded as usual. The real binary,
//! embedded storage, a stand-in GA on 127.0.0.1.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use serde_json::{Value, json};

mod common;

use common::Storage;

const ADMIN: &str = "forward-kill-admin-token-0123456";
const SECRET_KEY: &str = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

/// Bodies GA received; while `hold` is set, a request gets no answer.
#[derive(Clone, Default)]
struct Ga {
    received: Arc<Mutex<Vec<Value>>>,
    hold: Arc<Mutex<bool>>,
    holding: Arc<tokio::sync::Notify>,
}

async fn collect(State(ga): State<Ga>, body: axum::body::Bytes) -> axum::http::StatusCode {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    ga.received.lock().expect("received").push(body);
    if *ga.hold.lock().expect("hold") {
        ga.holding.notify_one();
        std::future::pending::<()>().await;
    }
    axum::http::StatusCode::NO_CONTENT
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    common::call(ADMIN, method, url, body).await
}

fn message(id: &str, user: &str) -> Value {
    json!({"id": id, "bot": "shop", "type": "message", "direction": "in",
           "provider": "telegram", "user": {"id": user}, "text": "hi"})
}

/// The ids of the users GA heard of, one per event.
fn users_heard(ga: &Ga) -> Vec<String> {
    ga.received
        .lock()
        .expect("received")
        .iter()
        .flat_map(|b| {
            let client = b["client_id"].as_str().unwrap_or("").to_owned();
            let n = b["events"].as_array().map_or(0, Vec::len);
            std::iter::repeat_n(client, n)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_in_flight_at_a_kill_is_not_sent_again() {
    let ga = Ga::default();
    let app = axum::Router::new()
        .route("/mp/collect", axum::routing::post(collect))
        .with_state(ga.clone());
    let ga_url = common::serve_stand_in(app).await;

    let storage = Storage::Embedded(tempfile::tempdir().expect("dir"));
    let env = [
        ("BOTWATCH_ADMIN_TOKEN", ADMIN),
        ("BOTWATCH_SECRET_KEY", SECRET_KEY),
        ("BOTWATCH_GA_ENDPOINT", ga_url.as_str()),
    ];
    let mut server = common::serve(&storage, &env).await;
    let base = server.base.clone();
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{base}/api/v1/bots/shop/settings"),
        Some(json!({"integrations": {"google_analytics":
            {"measurement_id": "G-KILL1234", "api_secret": "kill-secret", "active": true}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Held: GA gets the batch and never answers; the server dies waiting.
    *ga.hold.lock().expect("hold") = true;
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/events"),
        Some(message("k1", "held")),
    )
    .await;
    assert_eq!(status, 202);
    tokio::time::timeout(Duration::from_secs(20), ga.holding.notified())
        .await
        .expect("GA gets the batch");
    server.child.start_kill().expect("SIGKILL");
    server.child.wait().await.expect("wait");
    let held_batches = ga.received.lock().expect("received").len();
    assert_eq!(held_batches, 1);

    // After the restart: the held batch is not sent again; the next message is.
    *ga.hold.lock().expect("hold") = false;
    let server = common::serve(&storage, &env).await;
    let base = server.base.clone();
    let (status, _) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/events"),
        Some(message("k2", "after")),
    )
    .await;
    assert_eq!(status, 202);
    let started = std::time::Instant::now();
    while ga.received.lock().expect("received").len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "the next message never reached GA"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let heard = users_heard(&ga);
    let held = heard[0].clone();
    assert_eq!(
        heard.iter().filter(|c| **c == held).count(),
        3,
        "the held user's three events, once: {heard:?}"
    );
    assert_eq!(heard.len(), 6, "and the next user's three");
    let (_, status) = call(
        reqwest::Method::GET,
        format!("{base}/api/v1/bots/shop/integrations"),
        None,
    )
    .await;
    assert_eq!(status["google_analytics"]["sent"], 3, "{status}");
    drop(server);
}
