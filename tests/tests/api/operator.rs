//! Operator messages: text, a card and a file to a Telegram user through the Bot API
//! (a stand-in on 127.0.0.1), Telegram's 429 obeyed, refusals shown with their reason,
//! other providers through the bot's webhook, and each message sent once even when
//! two nodes' sweepers find it.

use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

use super::telegram_stand_in::{StandIn, TOKEN};
use super::until;

fn message_from(user: &str, provider: &str) -> Value {
    json!({"id": uuid::Uuid::new_v4().to_string(), "bot": "helpdesk", "type": "message",
           "direction": "in", "provider": provider, "user": {"id": user, "name": "Олена"},
           "text": "I need a human"})
}

/// `user` wrote to the bot on `provider`, and an admin switched the dialog to Manual.
async fn in_manual(s: &TestServer, user: &str, provider: &str) {
    assert_eq!(
        s.ingest(message_from(user, provider).to_string()).await.0,
        202
    );
    until(s, &format!("/api/v1/bots/helpdesk/dialogs/{user}"), |_| {
        true
    })
    .await;
    let (status, answer) = s
        .put(
            &format!("/api/v1/bots/helpdesk/dialogs/{user}/mode"),
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

async fn post_message(s: &TestServer, user: &str, body: Value) -> (u16, Value) {
    let response = s
        .client
        .post(s.url(&format!("/api/v1/bots/helpdesk/dialogs/{user}/messages")))
        .bearer_auth(botwatch_tests::ADMIN_TOKEN)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The message `id` of `user` in the history, once its delivery is no longer pending.
async fn delivered(s: &TestServer, user: &str, id: &str) -> Value {
    let history = until(
        s,
        &format!("/api/v1/bots/helpdesk/dialogs/{user}/messages"),
        |h| {
            h["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|m| m["id"] == id && m["delivery"]["state"] != "pending")
            })
        },
    )
    .await;
    history["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["id"] == id))
        .cloned()
        .expect("the message")
}

/// The secret key every node of a test deployment seals settings' secrets with.
const SECRET_KEY: &str = "0001020304050607080900010203040506070809000102030405060708090001";

pub(super) fn configured(c: &mut botwatch_server::Config, telegram_api: &str) {
    c.telegram_api = telegram_api.to_owned();
    c.secret_key = Some(SECRET_KEY.to_owned());
}

/// The bot's Telegram token in its settings (botwatch then delivers to Telegram).
pub(super) async fn give_the_telegram_token(s: &TestServer) {
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"channels": {"telegram": {"token": TOKEN}}}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
}

/// A server with the bot's Telegram token, a stand-in Telegram, and its address (to
/// start the server again on it).
async fn with_telegram(backend: Backend) -> (TestServer, StandIn, String) {
    let (api, stand_in) = StandIn::start().await;
    let s = TestServer::start_with(backend, None, |c| configured(c, &api)).await;
    give_the_telegram_token(&s).await;
    (s, stand_in, api)
}

async fn text_card_and_file_reach_a_telegram_user(backend: Backend) {
    let (s, telegram, _) = with_telegram(backend).await;
    // Auto: the bot answers; an operator's message would talk over it.
    assert_eq!(
        s.ingest(message_from("5532", "telegram").to_string())
            .await
            .0,
        202
    );
    until(&s, "/api/v1/bots/helpdesk/dialogs/5532", |_| true).await;
    let (status, answer) = post_message(&s, "5532", json!({"text": "Hi"})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (409, Some("not_manual"))
    );
    in_manual(&s, "5532", "telegram").await;

    // Text, with Telegram asking once to wait a second.
    telegram.script(
        "sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 1",
               "parameters": {"retry_after": 1}}),
    );
    let (status, sent) =
        post_message(&s, "5532", json!({"text": "Anna here. Let me check."})).await;
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["delivery"]["state"], "pending");
    assert_eq!(
        sent["sender"],
        json!({"kind": "operator", "id": "admin-token"})
    );
    let id = sent["id"].as_str().expect("id");
    let shown = delivered(&s, "5532", id).await;
    assert_eq!(shown["delivery"], json!({"state": "sent"}), "{shown}");
    let calls = telegram.calls_of("sendMessage");
    assert_eq!(
        calls.len(),
        2,
        "once refused with 429, once taken: {calls:?}"
    );
    for call in &calls {
        assert_eq!(call.token, TOKEN, "the bot's token from its settings");
        assert_eq!(call.fields["chat_id"], "5532");
        assert_eq!(call.fields["text"], "Anna here. Let me check.");
    }

    // A card without an image: a message with an inline keyboard.
    let card = json!({"card": {"title": "Order #12", "subtitle": "Shipped",
        "buttons": [{"title": "Track", "payload": "track:12"},
                    {"title": "Site", "url": "https://shop.example/12"}]}});
    let (status, sent) = post_message(&s, "5532", card).await;
    assert_eq!(status, 202, "{sent}");
    delivered(&s, "5532", sent["id"].as_str().expect("id")).await;
    let call = telegram.calls_of("sendMessage").pop().expect("the card");
    assert_eq!(call.fields["text"], "Order #12\nShipped");
    assert_eq!(
        call.fields["reply_markup"],
        json!({"inline_keyboard": [[{"text": "Track", "callback_data": "track:12"}],
                                   [{"text": "Site", "url": "https://shop.example/12"}]]})
    );

    // A card with an image: a photo with caption and keyboard.
    let card = json!({"card": {"title": "New in", "image": "https://shop.example/p.jpg",
                               "buttons": [{"title": "Buy", "payload": "buy"}]}});
    let (status, sent) = post_message(&s, "5532", card).await;
    assert_eq!(status, 202, "{sent}");
    delivered(&s, "5532", sent["id"].as_str().expect("id")).await;
    let call = telegram.calls_of("sendPhoto").pop().expect("the card");
    assert_eq!(call.fields["photo"], "https://shop.example/p.jpg");
    assert_eq!(call.fields["caption"], "New in");

    // A file: stored by botwatch, its type read from its bytes, uploaded as a document.
    let pdf = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("text", "Your invoice")
        .part(
            "file",
            reqwest::multipart::Part::bytes(pdf.clone())
                .file_name("../invoice 12.pdf")
                .mime_str("image/png")
                .expect("mime"),
        );
    let response = s
        .client
        .post(s.url("/api/v1/bots/helpdesk/dialogs/5532/messages"))
        .bearer_auth(botwatch_tests::ADMIN_TOKEN)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 202);
    let sent: Value = response.json().await.expect("json");
    let file = &sent["attachments"][0];
    assert_eq!(file["type"], "file");
    assert_eq!(
        file["mime"], "application/pdf",
        "sniffed, not what the client said"
    );
    assert_eq!(file["name"], "invoice 12.pdf");
    assert_eq!(file["size"], pdf.len());
    delivered(&s, "5532", sent["id"].as_str().expect("id")).await;
    let call = telegram.calls_of("sendDocument").pop().expect("the file");
    assert_eq!(call.fields["chat_id"], "5532");
    assert_eq!(call.fields["caption"], "Your invoice");
    assert_eq!(call.files.len(), 1);
    let (field, name, mime, bytes) = &call.files[0];
    assert_eq!(
        (field.as_str(), name.as_str()),
        ("document", "invoice 12.pdf")
    );
    assert_eq!((mime.as_str(), bytes), ("application/pdf", &pdf));
    // Served back as an attachment, without credentials (the address is the key).
    let url = file["url"].as_str().expect("url");
    let response = reqwest::get(url).await.expect("file");
    assert_eq!(response.status().as_u16(), 200);
    let disposition = response.headers()["content-disposition"]
        .to_str()
        .expect("ascii");
    assert_eq!(disposition, "attachment; filename*=UTF-8''invoice%2012.pdf");
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.bytes().await.expect("bytes").to_vec(), pdf);

    // A picture goes out as a photo.
    let png = [
        &[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a][..],
        &[0u8; 64][..],
    ]
    .concat();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(png.clone()).file_name("photo.png"),
    );
    let response = s
        .client
        .post(s.url("/api/v1/bots/helpdesk/dialogs/5532/messages"))
        .bearer_auth(botwatch_tests::ADMIN_TOKEN)
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 202);
    let sent: Value = response.json().await.expect("json");
    assert_eq!(sent["attachments"][0]["type"], "image");
    delivered(&s, "5532", sent["id"].as_str().expect("id")).await;
    let call = telegram.calls_of("sendPhoto").pop().expect("the photo");
    let (field, _, mime, bytes) = &call.files[0];
    assert_eq!(
        (field.as_str(), mime.as_str(), bytes),
        ("photo", "image/png", &png)
    );

    // Telegram's refusal is the reason shown on the message; nothing is tried again.
    telegram.script(
        "sendMessage",
        403,
        json!({"ok": false, "error_code": 403, "description": "Forbidden: bot was blocked by the user"}),
    );
    let before = telegram.calls_of("sendMessage").len();
    let (_, sent) = post_message(&s, "5532", json!({"text": "Are you there?"})).await;
    let shown = delivered(&s, "5532", sent["id"].as_str().expect("id")).await;
    assert_eq!(shown["delivery"]["state"], "failed");
    assert_eq!(
        shown["delivery"]["reason"],
        "Telegram refused it: Forbidden: bot was blocked by the user"
    );
    assert_eq!(telegram.calls_of("sendMessage").len(), before + 1);

    // A 5xx: Telegram may have sent it, so it is not sent again; the reason says so.
    telegram.script(
        "sendMessage",
        502,
        json!({"ok": false, "error_code": 502, "description": "Bad Gateway"}),
    );
    let before = telegram.calls_of("sendMessage").len();
    let (_, sent) = post_message(&s, "5532", json!({"text": "One more thing"})).await;
    let shown = delivered(&s, "5532", sent["id"].as_str().expect("id")).await;
    assert_eq!(shown["delivery"]["state"], "failed");
    assert!(
        shown["delivery"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("may or may not have reached the user")),
        "{shown}"
    );
    assert_eq!(
        telegram.calls_of("sendMessage").len(),
        before + 1,
        "called once"
    );

    // Bad input is named.
    let (status, answer) = post_message(&s, "5532", json!({"text": " "})).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("bad_message"))
    );
    let (status, _) = post_message(
        &s,
        "5532",
        json!({"card": {"title": "x", "image": "javascript:1"}}),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = post_message(&s, "nobody", json!({"text": "hi"})).await;
    assert_eq!(status, 404);
    // What to watch: deliveries by outcome.
    let metrics = s.metrics().await;
    assert!(
        metrics.contains(r#"botwatch_operator_deliveries_total{outcome="sent"} 5"#)
            && metrics.contains(r#"botwatch_operator_deliveries_total{outcome="failed"} 2"#),
        "{metrics}"
    );
    s.stop().await;
}

/// A provider botwatch does not talk to: the message goes to the bot's webhook as
/// `operator_message`, signed; the bot's 2xx is "sent".
async fn other_providers_get_it_through_the_bots_webhook(backend: Backend) {
    let s = TestServer::start_with(backend, None, |c| configured(c, "http://127.0.0.1:9")).await;
    let (url, calls) = super::webhook::stand_in_bot().await;
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"webhook_url": url, "webhook_secret": "a-webhook-secret-for-tests"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    in_manual(&s, "v1", "viber").await;
    let (status, sent) = post_message(&s, "v1", json!({"text": "Operator here"})).await;
    assert_eq!(status, 202, "{sent}");
    let id = sent["id"].as_str().expect("id");
    // The stand-in bot answers 503 to its first call (the mode switch), then 200.
    let shown = delivered(&s, "v1", id).await;
    assert_eq!(shown["delivery"]["state"], "sent", "{shown}");
    let bodies: Vec<Value> = calls
        .lock()
        .expect("calls")
        .iter()
        .map(|(_, body)| serde_json::from_slice(body).expect("json"))
        .collect();
    let call = bodies
        .iter()
        .find(|b| b["type"] == "operator_message")
        .expect("an operator_message call");
    assert_eq!(call["id"], id);
    assert_eq!(call["user"], "v1");
    assert_eq!(call["text"], "Operator here");
    assert_eq!(call["operator"], "admin-token");

    // Without a webhook, there is no way to the user: failed, saying what is missing.
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"webhook_url": null}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, sent) = post_message(&s, "v1", json!({"text": "Hello?"})).await;
    let shown = delivered(&s, "v1", sent["id"].as_str().expect("id")).await;
    assert_eq!(shown["delivery"]["state"], "failed");
    assert!(
        shown["delivery"]["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no webhook_url")),
        "{shown}"
    );
    s.stop().await;
}

/// A message recorded but never claimed (its node stopped at once) is found by the
/// sweepers of both nodes of a deployment and sent exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_pending_is_sent_once_by_two_nodes() {
    let (api, telegram) = StandIn::start().await;
    let a = TestServer::start_with(Backend::Redis, None, |c| configured(c, &api)).await;
    let b = a.second_node_with(|c| configured(c, &api)).await;
    give_the_telegram_token(&a).await;
    in_manual(&a, "5532", "telegram").await;
    // What a node that stopped right after recording leaves: the message, unclaimed.
    let pending = left_behind("op-left-behind");
    botwatch_log::EventLog::append(&*a.state.log, vec![pending])
        .await
        .expect("append");
    for node in [&a, &b] {
        let shown = delivered(node, "5532", "op-left-behind").await;
        assert_eq!(shown["delivery"]["state"], "sent", "{shown}");
    }
    // Both sweepers saw it; give a late second sender time to show itself.
    tokio::time::sleep(botwatch_server::outbox::SWEEP_EVERY).await;
    let sent = telegram.calls_of("sendMessage");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].fields["text"], "Sorry for the wait");
    b.stop().await;
    a.stop().await;
}

/// Telegram out of reach: tried again, then failed with a reason that never holds the
/// bot's token (Bot API addresses do).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_telegram_fails_without_telling_the_token() {
    // Nothing listens on port 9 here (discard); connections are refused at once.
    let s = TestServer::start_with(Backend::Embedded, None, |c| {
        configured(c, "http://127.0.0.1:9")
    })
    .await;
    give_the_telegram_token(&s).await;
    in_manual(&s, "5532", "telegram").await;
    let (status, sent) = post_message(&s, "5532", json!({"text": "Hello?"})).await;
    assert_eq!(status, 202, "{sent}");
    // Four attempts, 1 + 2 + 4 s apart.
    let history = super::until_long(
        &s,
        "/api/v1/bots/helpdesk/dialogs/5532/messages",
        |h| h["items"][0]["delivery"]["state"] == "failed",
        std::time::Duration::from_secs(20),
    )
    .await;
    let reason = history["items"][0]["delivery"]["reason"]
        .as_str()
        .expect("reason");
    assert!(
        reason.starts_with("Telegram could not be reached"),
        "{reason}"
    );
    assert!(
        !reason.contains(TOKEN) && !reason.contains("123456"),
        "{reason}"
    );
    s.stop().await;
}

/// A message recorded just before its node stopped (never claimed) is sent once the
/// node is back: the sweeper finds it in the replayed figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_left_pending_at_a_stop_is_sent_after_the_restart() {
    let (s, telegram, api) = with_telegram(Backend::Embedded).await;
    in_manual(&s, "5532", "telegram").await;
    botwatch_log::EventLog::append(&*s.state.log, vec![left_behind("op-before-stop")])
        .await
        .expect("append");
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(Backend::Embedded, Some(kept), |c| configured(c, &api)).await;
    let shown = delivered(&s, "5532", "op-before-stop").await;
    assert_eq!(shown["delivery"]["state"], "sent", "{shown}");
    tokio::time::sleep(botwatch_server::outbox::SWEEP_EVERY).await;
    assert_eq!(telegram.calls_of("sendMessage").len(), 1);
    s.stop().await;
}

/// Behind a trusted proxy that says https, stored files are linked over https (their
/// links would be blocked as mixed content otherwise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_links_follow_a_trusted_proxys_https() {
    let s = TestServer::start_with(Backend::Embedded, None, |c| {
        configured(c, "http://127.0.0.1:9");
        c.trusted_proxies = vec!["127.0.0.1".to_owned()];
    })
    .await;
    in_manual(&s, "v1", "viber").await;
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(b"hello".to_vec()).file_name("a.txt"),
    );
    let response = s
        .client
        .post(s.url("/api/v1/bots/helpdesk/dialogs/v1/messages"))
        .bearer_auth(botwatch_tests::ADMIN_TOKEN)
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-for", "203.0.113.7")
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status().as_u16(), 202);
    let sent: Value = response.json().await.expect("json");
    let url = sent["attachments"][0]["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("https://{}/api/v1/files/", s.addr)),
        "{url}"
    );
    s.stop().await;
}

/// A graceful stop lets a delivery under way finish (here: waiting out Telegram's
/// retry_after) and record its outcome, rather than leave it claimed and unanswered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_stop_lets_a_delivery_finish() {
    let (s, telegram, api) = with_telegram(Backend::Embedded).await;
    in_manual(&s, "5532", "telegram").await;
    telegram.script(
        "sendMessage",
        429,
        json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 2",
               "parameters": {"retry_after": 2}}),
    );
    let (status, sent) = post_message(&s, "5532", json!({"text": "Just a moment"})).await;
    assert_eq!(status, 202);
    let id = sent["id"].as_str().expect("id").to_owned();
    let kept = s.stop_keeping().await;
    let s = TestServer::start_with(Backend::Embedded, Some(kept), |c| configured(c, &api)).await;
    let (_, history) = s.get("/api/v1/bots/helpdesk/dialogs/5532/messages").await;
    let shown = history["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["id"] == id.as_str()))
        .cloned()
        .expect("the message");
    assert_eq!(shown["delivery"]["state"], "sent", "{shown}");
    assert_eq!(telegram.calls_of("sendMessage").len(), 2);
    s.stop().await;
}

/// An operator message as a node leaves it when it stops right after recording it.
fn left_behind(id: &str) -> botwatch_event::Event {
    serde_json::from_value(json!({
        "id": id, "bot": "helpdesk", "type": "message", "direction": "out",
        "provider": "telegram", "user": {"id": "5532"}, "text": "Sorry for the wait",
        "sender": {"kind": "operator", "id": "user:anna"}, "delivery": {"state": "pending"},
        // Recorded a while ago (the sweepers leave fresh ones to their node).
        "ts": (chrono::Utc::now() - chrono::Duration::seconds(30)).to_rfc3339(),
    }))
    .expect("event")
}

both_backends!(
    text_card_and_file_reach_a_telegram_user,
    other_providers_get_it_through_the_bots_webhook,
);
