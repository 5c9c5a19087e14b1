//! Telegram's webhook into botwatch: only with the secret header; each update recorded
//! once; passed on unchanged to the bot in Auto (its answer passed back), held back in
//! Manual; a failing bot makes Telegram offer the update again.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

use super::telegram_stand_in::{StandIn, TOKEN};
use super::until;

const WEBHOOK_SECRET: &str = "tg-webhook-secret_1";

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// The bot's own webhook: records what it gets; fails while `failing` is set; answers
/// with a Bot API call, as bots on webhooks may.
async fn bot_webhook(failing: Arc<Mutex<bool>>) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let calls = seen.clone();
    let app = axum::Router::new().route(
        "/bot",
        post(move |headers: HeaderMap, body: Bytes| {
            let (calls, failing) = (calls.clone(), failing.clone());
            async move {
                calls.lock().expect("calls").push((headers, body));
                if *failing.lock().expect("flag") {
                    return (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({})));
                }
                (
                    StatusCode::OK,
                    axum::Json(json!({"method": "sendMessage", "chat_id": 5532, "text": "Hello!"})),
                )
            }
        }),
    );
    let url = format!("{}/bot", super::serve_stand_in(app).await);
    (url, seen)
}

fn update(id: i64, user: i64, text: &str) -> Value {
    json!({"update_id": id, "message": {"message_id": id, "date": chrono::Utc::now().timestamp(),
        "chat": {"id": user, "type": "private"},
        "from": {"id": user, "is_bot": false, "first_name": "Олена", "language_code": "uk"},
        "text": text}})
}

async fn deliver(s: &TestServer, body: &Value, secret: Option<&str>) -> (u16, String) {
    let mut request = s
        .client
        .post(s.url("/channels/telegram/helpdesk/webhook"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(secret) = secret {
        request = request.header("x-telegram-bot-api-secret-token", secret);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

async fn inbound_ids(s: &TestServer, user: &str) -> Vec<String> {
    let (_, history) = s
        .get(&format!("/api/v1/bots/helpdesk/dialogs/{user}/messages"))
        .await;
    history["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|m| m["id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn updates_are_recorded_passed_on_in_auto_and_held_in_manual(backend: Backend) {
    let (api, _telegram) = StandIn::start().await;
    let s = TestServer::start_with(backend, None, |c| super::operator::configured(c, &api)).await;
    let failing = Arc::new(Mutex::new(false));
    let (forward, seen) = bot_webhook(failing.clone()).await;
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"channels": {"telegram": {"token": TOKEN, "webhook_secret": WEBHOOK_SECRET,
                                             "forward_url": forward}}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let view = answer.to_string();
    assert!(
        !view.contains(TOKEN) && !view.contains(WEBHOOK_SECRET),
        "{view}"
    );

    // Without the secret, or with another, nothing is taken.
    let first = update(1, 5532, "Where is my order?");
    assert_eq!(deliver(&s, &first, None).await.0, 401);
    assert_eq!(
        deliver(&s, &first, Some("tg-webhook-secret_2")).await.0,
        401
    );
    assert!(seen.lock().expect("seen").is_empty());

    // Auto: recorded, and passed on unchanged; the bot's answer goes back to Telegram.
    let (status, passed_back) = deliver(&s, &first, Some(WEBHOOK_SECRET)).await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&passed_back).expect("json"),
        json!({"method": "sendMessage", "chat_id": 5532, "text": "Hello!"})
    );
    {
        let seen = seen.lock().expect("seen");
        assert_eq!(seen.len(), 1);
        assert_eq!(
            seen[0].1,
            first.to_string().as_bytes(),
            "passed on byte for byte"
        );
        assert_eq!(seen[0].0["x-telegram-bot-api-secret-token"], WEBHOOK_SECRET);
    }
    let dialog = until(&s, "/api/v1/bots/helpdesk/dialogs/5532", |_| true).await;
    assert_eq!(dialog["user"]["name"], "Олена");
    assert_eq!(dialog["user"]["provider"], "telegram");

    // The bot fails: Telegram gets 502 and offers the update again; recorded once.
    *failing.lock().expect("flag") = true;
    let second = update(2, 5532, "Hello?");
    assert_eq!(deliver(&s, &second, Some(WEBHOOK_SECRET)).await.0, 502);
    *failing.lock().expect("flag") = false;
    assert_eq!(deliver(&s, &second, Some(WEBHOOK_SECRET)).await.0, 200);
    until(&s, "/api/v1/bots/helpdesk/dialogs/5532", |d| {
        d["messages"] == 2
    })
    .await;
    assert_eq!(inbound_ids(&s, "5532").await, ["tg-2", "tg-1"]);

    // Manual: recorded, never passed on.
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/dialogs/5532/mode",
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!(status, 200);
    let before = seen.lock().expect("seen").len();
    assert_eq!(
        deliver(&s, &update(3, 5532, "Hi operator"), Some(WEBHOOK_SECRET))
            .await
            .0,
        200
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs/5532", |d| {
        d["messages"] == 3
    })
    .await;
    assert_eq!(
        seen.lock().expect("seen").len(),
        before,
        "held back from the bot"
    );
    // Another user, in Auto, still reaches the bot.
    assert_eq!(
        deliver(&s, &update(4, 7001, "Hi bot"), Some(WEBHOOK_SECRET))
            .await
            .0,
        200
    );
    assert_eq!(seen.lock().expect("seen").len(), before + 1);

    // Garbage is refused, saying why.
    let (status, body) = deliver(&s, &json!({"nope": 1}), Some(WEBHOOK_SECRET)).await;
    assert_eq!(status, 400, "{body}");
    s.stop().await;
}

both_backends!(updates_are_recorded_passed_on_in_auto_and_held_in_manual);
