//! Modes: an operator switches a dialog to Manual and back. The bot learns it from the
//! ingest answer at once; the dialog, the dialogs list and the users table say it; it
//! survives a restart, reaches every node, and moves live dashboards.

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use serde_json::{Value, json};

use super::live::{connect, next, send};
use super::until;

fn message(id: &str, user: &str) -> Value {
    json!({"id": id, "bot": "helpdesk", "type": "message", "direction": "in",
           "provider": "telegram", "user": {"id": user, "name": user.to_uppercase()},
           "text": "hello"})
}

/// What the ingest answer says of `user` after one more message from them.
async fn mode_told_to_the_bot(s: &TestServer, user: &str) -> Value {
    let (status, answer) = s
        .ingest(message(&uuid::Uuid::new_v4().to_string(), user).to_string())
        .await;
    assert_eq!(status, 202, "{answer}");
    answer["dialogs"][user]["mode"].clone()
}

/// Ann writes to the bot; an admin then switches her dialog to Manual.
pub(super) async fn ann_switched_to_manual(s: &TestServer) {
    assert_eq!(s.ingest(message("a1", "ann").to_string()).await.0, 202);
    until(s, "/api/v1/bots/helpdesk/dialogs/ann", |_| true).await;
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/dialogs/ann/mode",
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!((status, &answer), (200, &json!({"mode": "manual"})));
}

fn ids(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|d| d["user"]["id"].as_str().or(d["id"].as_str()).expect("id"))
        .collect()
}

async fn a_switch_to_manual_is_told_to_the_bot_and_shown_everywhere(backend: Backend) {
    let s = TestServer::start(backend).await;
    let (status, _) = s
        .ingest(json!([message("a1", "ann"), message("b1", "bob")]).to_string())
        .await;
    assert_eq!(status, 202);
    until(&s, "/api/v1/bots/helpdesk/dialogs/bob", |_| true).await;
    assert_eq!(mode_told_to_the_bot(&s, "ann").await, "auto");

    let path = "/api/v1/bots/helpdesk/dialogs/ann/mode";
    let (status, answer) = s.put(path, json!({"mode": "manual"})).await;
    assert_eq!((status, &answer), (200, &json!({"mode": "manual"})));
    // At once: the very next ingest answer tells the bot not to answer Ann.
    assert_eq!(mode_told_to_the_bot(&s, "ann").await, "manual");
    assert_eq!(mode_told_to_the_bot(&s, "bob").await, "auto");
    let (_, dialog) = s.get("/api/v1/bots/helpdesk/dialogs/ann").await;
    assert_eq!(dialog["mode"], "manual");
    let (_, manual) = s.get("/api/v1/bots/helpdesk/dialogs?mode=manual").await;
    assert_eq!(ids(&manual), ["ann"]);
    let (_, auto) = s.get("/api/v1/bots/helpdesk/dialogs?mode=auto").await;
    assert_eq!(ids(&auto), ["bob"]);
    let (_, users) = s.get("/api/v1/bots/helpdesk/users?mode=manual").await;
    assert_eq!(
        (users["total"].as_u64(), ids(&users)),
        (Some(1), vec!["ann"])
    );
    // A switch is not a message.
    let (_, profile) = s.get("/api/v1/bots/helpdesk/users/ann").await;
    assert_eq!(profile["messages"], 3, "{profile}");

    // The same switch again changes nothing; back to Auto, the bot answers again.
    let (status, answer) = s.put(path, json!({"mode": "manual"})).await;
    assert_eq!((status, &answer), (200, &json!({"mode": "manual"})));
    let (status, answer) = s.put(path, json!({"mode": "auto"})).await;
    assert_eq!((status, &answer), (200, &json!({"mode": "auto"})));
    assert_eq!(mode_told_to_the_bot(&s, "ann").await, "auto");

    // Bad requests.
    let (status, answer) = s.put(path, json!({"mode": "maybe"})).await;
    assert_eq!((status, &answer["error"]), (400, &json!("bad_mode")));
    let (status, answer) = s.put(path, json!({})).await;
    assert_eq!((status, &answer["error"]), (400, &json!("bad_mode")));
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/dialogs/nobody/mode",
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!((status, &answer["error"]), (404, &json!("not_found")));
    s.stop().await;
}

/// A mode is an event in the log: a restarted server (snapshot or replay) keeps it.
async fn a_mode_survives_a_restart(backend: Backend) {
    let s = TestServer::start(backend).await;
    ann_switched_to_manual(&s).await;
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(backend, Some(kept), |_| {}).await;
    until(&s, "/api/v1/bots/helpdesk/dialogs/ann", |d| {
        d["mode"] == "manual"
    })
    .await;
    assert_eq!(mode_told_to_the_bot(&s, "ann").await, "manual");
    s.stop().await;
}

/// An open dialog view and dialogs list learn of a switch live (the dialog's figures,
/// with the new mode; no message).
async fn a_switch_moves_live_dashboards(backend: Backend) {
    let s = TestServer::start(backend).await;
    assert_eq!(s.ingest(message("a1", "ann").to_string()).await.0, 202);
    until(&s, "/api/v1/bots/helpdesk/dialogs/ann", |_| true).await;
    let mut ws = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    for topic in ["bot/helpdesk/dialog/ann", "bot/helpdesk/dialogs"] {
        send(&mut ws, json!({"op": "subscribe", "topic": topic})).await;
        assert_eq!(next(&mut ws).await["kind"], "snapshot");
    }
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/dialogs/ann/mode",
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!(status, 200);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let f = next(&mut ws).await;
        assert_eq!(f["kind"], "delta", "{f}");
        assert_eq!(f["data"]["dialog"]["mode"], "manual", "{f}");
        assert!(f["data"].get("message").is_none(), "no message: {f}");
        seen.push(f["topic"].as_str().expect("topic").to_owned());
    }
    seen.sort();
    assert_eq!(seen, ["bot/helpdesk/dialog/ann", "bot/helpdesk/dialogs"]);
    s.stop().await;
}

/// Two nodes on one Redis: a switch made on one is told to bots by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switch_on_one_node_is_told_by_the_other() {
    let a = TestServer::start(Backend::Redis).await;
    let b = a.second_node().await;
    ann_switched_to_manual(&a).await;
    until(&b, "/api/v1/bots/helpdesk/dialogs/ann", |d| {
        d["mode"] == "manual"
    })
    .await;
    assert_eq!(mode_told_to_the_bot(&b, "ann").await, "manual");
    b.stop().await;
    a.stop().await;
}

both_backends!(
    a_switch_to_manual_is_told_to_the_bot_and_shown_everywhere,
    a_mode_survives_a_restart,
    a_switch_moves_live_dashboards,
);
