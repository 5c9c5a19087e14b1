//! The hand-off alert: a user in Auto asking for a human, or the bot handing off
//! through the API, flags the dialog; every dashboard learns it at once on the bot's
//! alerts topic; taking the dialog over answers it; a user in Manual flags nothing;
//! the bot's own phrases replace the defaults.

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use serde_json::{Value, json};

use super::live::{connect, next, send};
use super::until;

fn said(user: &str, text: &str) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "bot": "helpdesk", "type": "message",
           "direction": "in", "provider": "telegram", "user": {"id": user, "name": user},
           "text": text})
}

async fn dialog_of(s: &TestServer, user: &str) -> Value {
    s.get(&format!("/api/v1/bots/helpdesk/dialogs/{user}"))
        .await
        .1
}

async fn a_user_asking_for_a_human_flags_the_dialog_until_taken_over(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(
        s.ingest(said("ann", "Where is my order?").to_string())
            .await
            .0,
        202
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs/ann", |_| true).await;
    assert_eq!(dialog_of(&s, "ann").await["handoff"], Value::Null);

    let mut ws = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": "bot/helpdesk/alerts"}),
    )
    .await;
    let snapshot = next(&mut ws).await;
    assert_eq!(snapshot["kind"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["data"]["items"], json!([]));

    // A phrase, in any case, in Ukrainian too: flagged, and told at once.
    assert_eq!(
        s.ingest(said("ann", "Покличте ОПЕРАТОРА, будь ласка").to_string())
            .await
            .0,
        202
    );
    let delta = next(&mut ws).await;
    assert_eq!(delta["kind"], "delta", "{delta}");
    assert_eq!(delta["data"]["dialog"]["user"]["id"], "ann");
    assert_eq!(
        delta["data"]["dialog"]["handoff"]["reason"],
        "Покличте ОПЕРАТОРА, будь ласка"
    );
    assert_eq!(delta["data"]["dialog"]["handoff"]["by"], "user");
    let shown = dialog_of(&s, "ann").await;
    assert!(shown["handoff"]["at"].is_string(), "{shown}");
    let (_, list) = s.get("/api/v1/bots/helpdesk/dialogs").await;
    assert!(list["items"][0]["handoff"].is_object(), "{list}");

    // The bot hands another dialog off through the API.
    assert_eq!(s.ingest(said("bob", "asdf").to_string()).await.0, 202);
    until(&s, "/api/v1/bots/helpdesk/dialogs/bob", |_| true).await;
    let response = s
        .client
        .post(s.url("/api/v1/bots/helpdesk/dialogs/bob/handoff"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"reason": "payment question"}))
        .send()
        .await
        .expect("handoff");
    assert_eq!(response.status().as_u16(), 202);
    let delta = next(&mut ws).await;
    assert_eq!(delta["data"]["dialog"]["user"]["id"], "bob");
    assert_eq!(
        delta["data"]["dialog"]["handoff"]["reason"],
        "payment question"
    );
    assert_eq!(delta["data"]["dialog"]["handoff"]["by"], "bot");

    let metrics = s.metrics().await;
    assert!(metrics.contains("botwatch_handoffs_total 2"), "{metrics}");

    // A new dashboard sees both waiting, the latest first.
    let mut other = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    send(
        &mut other,
        json!({"op": "subscribe", "topic": "bot/helpdesk/alerts"}),
    )
    .await;
    let snapshot = next(&mut other).await;
    let waiting: Vec<&str> = snapshot["data"]["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["user"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(waiting, ["bob", "ann"]);

    // Taking Ann's dialog over answers her request, on every dashboard.
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/dialogs/ann/mode",
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!(status, 200);
    let delta = next(&mut ws).await;
    assert_eq!(delta["data"]["dialog"]["user"]["id"], "ann");
    assert_eq!(delta["data"]["dialog"]["handoff"], Value::Null, "{delta}");
    // In Manual, asking again flags nothing (an operator is there).
    assert_eq!(s.ingest(said("ann", "human?").to_string()).await.0, 202);
    until(&s, "/api/v1/bots/helpdesk/dialogs/ann", |d| {
        d["messages"] == 3
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(dialog_of(&s, "ann").await["handoff"], Value::Null);

    // Words that merely contain a phrase do not count.
    assert_eq!(
        s.ingest(said("cy", "cooperators and humanitarians").to_string())
            .await
            .0,
        202
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs/cy", |_| true).await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(dialog_of(&s, "cy").await["handoff"], Value::Null);
    s.stop().await;
}

async fn the_bots_own_phrases_replace_the_defaults(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"handoff_phrases": ["need help", "менеджер"]}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["handoff_phrases"], json!(["need help", "менеджер"]));
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"handoff_phrases": [""]}),
        )
        .await;
    assert_eq!(status, 400);

    assert_eq!(s.ingest(said("ann", "operator").to_string()).await.0, 202);
    assert_eq!(
        s.ingest(said("bob", "I NEED HELP with my card").to_string())
            .await
            .0,
        202
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs/bob", |d| {
        d["handoff"].is_object()
    })
    .await;
    assert_eq!(
        dialog_of(&s, "ann").await["handoff"],
        Value::Null,
        "not one of the bot's phrases"
    );
    s.stop().await;
}

both_backends!(
    a_user_asking_for_a_human_flags_the_dialog_until_taken_over,
    the_bots_own_phrases_replace_the_defaults,
);
