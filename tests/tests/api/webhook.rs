//! The bot's webhook: a mode switch is POSTed to it, signed with the bot's secret, and
//! tried again when the bot's server fails.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

/// One call the stand-in bot received: its headers and body.
type Calls = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A bot's webhook on 127.0.0.1 that answers 503 to the first call and 200 after.
pub(super) async fn stand_in_bot() -> (String, Calls) {
    let calls: Calls = Arc::default();
    let seen = calls.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let seen = seen.clone();
            async move {
                let mut calls = seen.lock().expect("calls");
                calls.push((headers, body));
                if calls.len() == 1 {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::OK
                }
            }
        }),
    );
    let url = format!("{}/hook", super::serve_stand_in(app).await);
    (url, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mode_switch_reaches_the_bots_webhook_signed_and_retried() {
    let s = TestServer::start(Backend::Embedded).await;
    let (url, calls) = stand_in_bot().await;
    const SECRET: &str = "a-webhook-secret-for-tests";

    // A webhook is always signed: no address without a secret. Given with a null
    // secret, the request itself is wrong (400); without one, what is stored has none
    // either (409).
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"webhook_url": url, "webhook_secret": null}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"webhook_url": url}),
        )
        .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("unmet_need")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("webhook_secret: is required")),
        "{answer}"
    );
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"webhook_url": url, "webhook_secret": SECRET}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["webhook_url"], json!(url));
    let masked = answer["webhook_secret"].as_str().expect("masked");
    assert!(
        masked.starts_with("****") && !masked.contains("secret-for"),
        "{masked}"
    );

    super::modes::ann_switched_to_manual(&s).await;

    // The first call fails (503); the second, a second later, is taken.
    let started = std::time::Instant::now();
    while calls.lock().expect("calls").len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the webhook was called {} times",
            calls.lock().expect("calls").len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A third call would come 2 s after the second: wait past it.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let calls = calls.lock().expect("calls").clone();
    assert_eq!(calls.len(), 2, "taken once: no call after the 200");
    for (headers, body) in &calls {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let ts: i64 = header("x-botwatch-timestamp").parse().expect("timestamp");
        assert!((chrono::Utc::now().timestamp() - ts).abs() < 30);
        assert_eq!(
            header("x-botwatch-signature"),
            botwatch_server::webhook::signature(SECRET, ts, body),
            "signed with the bot's secret over timestamp.body"
        );
        assert_ne!(
            header("x-botwatch-signature"),
            botwatch_server::webhook::signature("another secret", ts, body)
        );
        assert_eq!(header("content-type"), "application/json");
        let call: Value = serde_json::from_slice(body).expect("json");
        assert_eq!(
            (
                &call["type"],
                &call["bot"],
                &call["user"],
                &call["mode"],
                &call["operator"]
            ),
            (
                &json!("mode_changed"),
                &json!("helpdesk"),
                &json!("ann"),
                &json!("manual"),
                &json!("admin-token")
            ),
            "{call}"
        );
    }
    s.stop().await;
}
