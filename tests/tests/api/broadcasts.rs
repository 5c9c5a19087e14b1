//! Broadcasts through a stand-in Telegram: subscribers within a filter get the
//! message once each, users in Manual mode are skipped, refusals are listed with
//! Telegram's reason, progress reaches the dashboards live; a cancelled broadcast
//! starts nobody more. (Killing the server mid-way: crates/cli/tests/broadcast_kill.rs.)

use botwatch_tests::{ADMIN_TOKEN, Backend, TestServer};
use serde_json::{Value, json};

use super::live::{connect, next, send};
use super::operator::{configured, give_the_telegram_token};
use super::telegram_stand_in::StandIn;
use super::until_long;

fn from(chat: &str) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "bot": "helpdesk", "type": "message",
           "direction": "in", "provider": "telegram",
           "user": {"id": chat, "name": format!("User {chat}")}, "text": "hi"})
}

async fn telegram_crowd(backend: Backend, chats: &[&str]) -> (TestServer, StandIn) {
    let (api, telegram) = StandIn::start().await;
    let s = TestServer::start_with(backend, None, |c| configured(c, &api)).await;
    give_the_telegram_token(&s).await;
    let batch: Vec<Value> = chats.iter().map(|c| from(c)).collect();
    assert_eq!(s.ingest(Value::Array(batch).to_string()).await.0, 202);
    s.wait_for_messages("helpdesk", chats.len() as u64).await;
    (s, telegram)
}

async fn subscribers_get_it_once_manual_users_are_skipped_refusals_listed(backend: Backend) {
    let chats = ["7001", "7002", "7003", "7004", "7005", "7006"];
    let (s, telegram) = telegram_crowd(backend, &chats).await;
    // 7002 unsubscribed; 7003 has an operator; 7004 blocked the bot; 7006 not a VIP.
    assert_eq!(
        s.post("/api/v1/bots/helpdesk/tags", json!({"name": "VIP"}))
            .await
            .0,
        201
    );
    let (status, body) = s
        .post(
            "/api/v1/bots/helpdesk/users/bulk",
            json!({"ids": ["7001", "7002", "7003", "7004", "7005"], "add_tags": ["VIP"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for (user, patch) in [
        ("7002", json!({"subscriber": false})),
        ("7003", json!({"auto_mode": false})),
    ] {
        let (status, body) = s
            .patch(&format!("/api/v1/bots/helpdesk/users/{user}"), patch)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    telegram.refuse_chat(
        "7004",
        403,
        json!({"ok": false, "error_code": 403,
               "description": "Forbidden: bot was blocked by the user"}),
    );

    let mut ws = connect(&s, Some(ADMIN_TOKEN), None).await.expect("connect");
    send(
        &mut ws,
        json!({"op": "subscribe", "topic": "bot/helpdesk/broadcasts"}),
    )
    .await;
    let snapshot = next(&mut ws).await;
    assert_eq!(
        snapshot["data"],
        json!({"items": [], "data_loss": null}),
        "{snapshot}"
    );

    // Nobody matches: refused (the audience as it stands has nobody), nothing recorded.
    let (status, body) = s
        .post(
            "/api/v1/bots/helpdesk/broadcasts",
            json!({"to": "subscribers", "filter": {"tag": "Nope"}, "text": "x"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("no_recipients"))
    );
    let (status, _) = s
        .post("/api/v1/bots/helpdesk/broadcasts", json!({"to": "all"}))
        .await;
    assert_eq!(status, 400, "no text and no card");

    let (status, created) = s
        .post(
            "/api/v1/bots/helpdesk/broadcasts",
            json!({"to": "subscribers", "filter": {"tag": ["VIP"]},
                   "text": "Sale starts today",
                   "card": {"title": "Sale", "buttons": [{"title": "Shop", "url": "https://shop.example"}]}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["total"], 4,
        "VIP subscribers: 7001, 7003, 7004, 7005"
    );
    let id = created["id"].as_str().expect("id").to_owned();

    // Progress arrives live until the broadcast is done.
    let mut last = Value::Null;
    while last["state"] != "done" {
        let frame = next(&mut ws).await;
        assert_eq!(frame["kind"], "delta", "{frame}");
        last = frame["data"]["broadcast"].clone();
        assert_eq!(last["id"], id.as_str());
    }
    assert_eq!(
        (
            &last["total"],
            &last["sent"],
            &last["failed"],
            &last["skipped"]
        ),
        (&json!(4), &json!(2), &json!(1), &json!(1)),
        "{last}"
    );

    // Once each, to the right chats: the text, then the card with its button (the
    // refused chat stops at the text).
    let mut chats_sent = telegram.chats_sent_to();
    chats_sent.sort();
    assert_eq!(chats_sent, ["7001", "7001", "7004", "7005", "7005"]);
    let to_7001: Vec<Value> = telegram
        .calls_of("sendMessage")
        .into_iter()
        .filter(|c| c.fields["chat_id"].to_string().contains("7001"))
        .map(|c| c.fields)
        .collect();
    assert_eq!(to_7001[0]["text"], "Sale starts today", "{to_7001:?}");
    assert!(
        to_7001[1]["reply_markup"]
            .to_string()
            .contains("shop.example")
    );

    let (status, got) = s
        .get(&format!("/api/v1/bots/helpdesk/broadcasts/{id}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["state"], "done");
    assert_eq!(got["by"], "admin-token");
    assert_eq!(
        got["failures"],
        json!([{"user": "7004", "reason": "Telegram refused it: Forbidden: bot was blocked by the user"}])
    );
    // The message is in each reached user's dialog, sent.
    let (_, history) = s.get("/api/v1/bots/helpdesk/dialogs/7001/messages").await;
    assert_eq!(history["items"][0]["text"], "Sale starts today");
    assert_eq!(history["items"][0]["delivery"]["state"], "sent");
    let (_, list) = s.get("/api/v1/bots/helpdesk/broadcasts").await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    s.stop().await;
}

async fn a_cancelled_broadcast_starts_nobody_more(backend: Backend) {
    let chats: Vec<String> = (0..200).map(|n| format!("{}", 8000 + n)).collect();
    let refs: Vec<&str> = chats.iter().map(String::as_str).collect();
    let (s, telegram) = telegram_crowd(backend, &refs).await;
    let (status, created) = s
        .post(
            "/api/v1/bots/helpdesk/broadcasts",
            json!({"to": "all", "text": "Long news"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let path = format!("/api/v1/bots/helpdesk/broadcasts/{id}");
    // Telegram's pace (25 a second): it is still running after a few are sent.
    until_long(
        &s,
        &path,
        |b| b["sent"].as_u64() >= Some(3),
        std::time::Duration::from_secs(10),
    )
    .await;
    let (status, cancelled) = s.delete(&path).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    // One being sent may finish; after that nothing more goes out.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = telegram.chats_sent_to().len();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(
        telegram.chats_sent_to().len(),
        sent,
        "sending went on after the cancel"
    );
    assert!(sent < 200);
    let (_, now) = s.get(&path).await;
    assert_eq!(now["state"], "cancelled");
    assert_eq!(now["sent"].as_u64(), Some(sent as u64));
    s.stop().await;
}

/// A web chat user of a bot whose web chat is off cannot read anything there: the
/// message fails saying so (it was counted as sent, and nobody could see it).
async fn a_web_chat_that_is_off_reaches_nobody(backend: Backend) {
    let s = TestServer::start(backend).await;
    let mut event = from("wc-0123456789abcdef0123456789abcdef");
    event["provider"] = json!("webchat");
    assert_eq!(s.ingest(event.to_string()).await.0, 202);
    s.wait_for_messages("helpdesk", 1).await;
    let (status, created) = s
        .post(
            "/api/v1/bots/helpdesk/broadcasts",
            json!({"to": "all", "text": "Anyone there?"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!(
        "/api/v1/bots/helpdesk/broadcasts/{}",
        created["id"].as_str().expect("id")
    );
    let done = until_long(
        &s,
        &path,
        |b| b["state"] == "done",
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        (&done["sent"], &done["failed"]),
        (&json!(0), &json!(1)),
        "{done}"
    );
    let reason = done["failures"][0]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("web chat is off"), "{reason}");
    s.stop().await;
}

both_backends!(
    subscribers_get_it_once_manual_users_are_skipped_refusals_listed,
    a_cancelled_broadcast_starts_nobody_more,
    a_web_chat_that_is_off_reaches_nobody,
);
