//! `kill -9` of `botwatch serve` in the middle of a broadcast: after the restart the
//! broadcast goes on, and every recipient got the message exactly once, as a
//! stand-in Telegram on 127.0.0.1 counts it. The real binary, on both backends.
//!
//! The kill lands while Telegram holds the answer to one message (the server is
//! waiting on it): the moment where a careless sender would send again after a
//! restart. That message reached its user; botwatch, which cannot know, leaves it
//! pending (later "failed: may or may not have reached the user") and never sends it
//! twice.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use serde_json::{Value, json};

mod common;

use common::{Running, Storage};

const ADMIN: &str = "broadcast-kill-admin-token-012345";
const SECRET_KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const TELEGRAM_TOKEN: &str = "4242:kill-test-token";
const USERS: usize = 60;
/// The message whose answer Telegram holds while the server is killed.
const KILL_AT: usize = 17;

/// A stand-in Bot API: counts `sendMessage` per chat; the `KILL_AT`-th call gets no
/// answer (the test kills the server meanwhile).
#[derive(Clone, Default)]
struct Telegram {
    sent: Arc<Mutex<Vec<String>>>,
    holding: Arc<tokio::sync::Notify>,
}

async fn bot_api(
    State(t): State<Telegram>,
    Path((token, method)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if token != format!("bot{TELEGRAM_TOKEN}") || method != "sendMessage" {
        return (
            axum::http::StatusCode::NOT_FOUND,
            axum::Json(json!({"ok": false, "error_code": 404, "description": "Not Found"})),
        )
            .into_response();
    }
    let fields: Value = serde_json::from_slice(&body).unwrap_or_default();
    let chat = match &fields["chat_id"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let n = {
        let mut sent = t.sent.lock().expect("sent");
        sent.push(chat.clone());
        sent.len()
    };
    if n == KILL_AT {
        t.holding.notify_one();
        // Never answered: the server dies waiting.
        std::future::pending::<()>().await;
    }
    axum::Json(json!({"ok": true, "result": {
        "message_id": n, "date": 0, "chat": {"id": chat, "type": "private"}, "text": fields["text"]
    }}))
    .into_response()
}

async fn start_telegram() -> (String, Telegram) {
    let t = Telegram::default();
    let app = axum::Router::new()
        .route("/{token}/{method}", axum::routing::post(bot_api))
        .with_state(t.clone());
    let url = common::serve_stand_in(app).await;
    (url, t)
}

async fn start(storage: &Storage, telegram: &str) -> Running {
    let env = [
        ("BOTWATCH_ADMIN_TOKEN", ADMIN),
        ("BOTWATCH_SECRET_KEY", SECRET_KEY),
        ("BOTWATCH_TELEGRAM_API", telegram),
    ];
    common::serve(storage, &env).await
}

async fn call(method: reqwest::Method, url: String, body: Option<Value>) -> (u16, Value) {
    common::call(ADMIN, method, url, body).await
}

async fn a_broadcast_killed_mid_way_reaches_everyone_once(storage: Storage) {
    let (api, telegram) = start_telegram().await;
    let mut server = start(&storage, &api).await;
    let base = server.base.clone();
    let (status, body) = call(
        reqwest::Method::PUT,
        format!("{base}/api/v1/bots/shop/settings"),
        Some(json!({"channels": {"telegram": {"token": TELEGRAM_TOKEN}}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let chats: Vec<String> = (0..USERS).map(|n| (9_000 + n).to_string()).collect();
    let events: Vec<Value> = chats
        .iter()
        .map(|c| {
            json!({"id": format!("in-{c}"), "bot": "shop", "type": "message", "direction": "in",
                   "provider": "telegram", "user": {"id": c}, "text": "hi"})
        })
        .collect();
    let (status, body) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/events"),
        Some(Value::Array(events)),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let started = std::time::Instant::now();
    loop {
        let (_, page) = call(
            reqwest::Method::GET,
            format!("{base}/api/v1/bots/shop/users?limit=1"),
            None,
        )
        .await;
        if page["total"] == USERS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "users not counted: {page}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (status, created) = call(
        reqwest::Method::POST,
        format!("{base}/api/v1/bots/shop/broadcasts"),
        Some(json!({"to": "subscribers", "text": "Doors open at nine"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["total"], USERS);
    let id = created["id"].as_str().expect("id").to_owned();

    tokio::time::timeout(Duration::from_secs(30), telegram.holding.notified())
        .await
        .expect("the broadcast reaches its 17th message");
    server.child.start_kill().expect("SIGKILL");
    server.child.wait().await.expect("wait");
    assert_eq!(telegram.sent.lock().expect("sent").len(), KILL_AT);

    // The restarted server takes the broadcast over once the dead one's lease ran out.
    let server = start(&storage, &api).await;
    let base = server.base.clone();
    let path = format!("{base}/api/v1/bots/shop/broadcasts/{id}");
    let started = std::time::Instant::now();
    let progress = loop {
        // 404 while the restarted server is still reading the log back.
        let (status, got) = call(reqwest::Method::GET, path.clone(), None).await;
        assert!(status == 200 || status == 404, "{status} {got}");
        if got["sent"] == USERS - 1 {
            break got;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the broadcast did not go on after the restart: {got}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Every recipient exactly once, the one in flight at the kill included.
    let mut per_chat: BTreeMap<String, usize> = BTreeMap::new();
    for chat in telegram.sent.lock().expect("sent").iter() {
        *per_chat.entry(chat.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = chats.iter().map(|c| (c.clone(), 1)).collect();
    assert_eq!(per_chat, expected);
    // botwatch cannot know whether the one in flight arrived: not counted as sent,
    // not sent again.
    assert_eq!(
        (
            &progress["failed"],
            &progress["skipped"],
            &progress["state"]
        ),
        (&json!(0), &json!(0), &json!("running")),
        "{progress}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        telegram.sent.lock().expect("sent").len(),
        USERS,
        "nothing more went out"
    );
    drop(server);
    if let Storage::Redis { prefix } = &storage {
        common::remove_redis_keys(prefix).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_killed_mid_way_reaches_everyone_once_embedded() {
    let dir = tempfile::tempdir().expect("tempdir");
    a_broadcast_killed_mid_way_reaches_everyone_once(Storage::Embedded(dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_killed_mid_way_reaches_everyone_once_redis() {
    let prefix = format!("bw-bkill-{}:", uuid_like());
    a_broadcast_killed_mid_way_reaches_everyone_once(Storage::Redis { prefix }).await;
}

fn uuid_like() -> String {
    format!(
        "{:x}{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}
