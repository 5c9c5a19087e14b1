//! The web chat's WebSocket: only for bots that enable it, only with a chat user id,
//! not from a foreign origin; what the user writes is recorded and handed to the bot's
//! webhook in Auto (held back in Manual); the bot's answer and an operator's message
//! reach the chat.

use botwatch_tests::{Backend, TestServer};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::live::{Socket, next};
use super::until;

const USER: &str = "wc-0123456789abcdef0123456789abcdef";

async fn open(s: &TestServer, user: &str, origin: Option<&str>) -> Result<Socket, WsError> {
    let path = format!("/chat/helpdesk/live?user={user}&name=Ann");
    super::live::connect_at(s, &path, None, origin).await
}

fn refused_with(result: Result<Socket, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("refused otherwise: {e}"),
        Ok(_) => panic!("not refused"),
    }
}

async fn say(ws: &mut Socket, text: &str) {
    ws.send(Message::text(json!({ "text": text }).to_string()))
        .await
        .expect("send");
}

async fn a_chat_talks_to_the_bot_in_auto_and_to_an_operator_in_manual(backend: Backend) {
    let s = TestServer::start_with(backend, None, |c| {
        super::operator::configured(c, "http://127.0.0.1:9")
    })
    .await;
    // Off until the bot enables it.
    assert_eq!(refused_with(open(&s, USER, None).await), 404);
    assert_eq!(
        reqwest::get(s.url("/chat/helpdesk"))
            .await
            .expect("page")
            .status()
            .as_u16(),
        404
    );
    let (url, calls) = super::webhook::stand_in_bot().await;
    let (status, answer) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"channels": {"webchat": {"enabled": true}}, "webhook_url": url,
                   "webhook_secret": "a-webhook-secret-for-tests"}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let page = reqwest::get(s.url("/chat/helpdesk")).await.expect("page");
    assert_eq!(page.status().as_u16(), 200);
    assert!(
        page.text()
            .await
            .expect("html")
            .contains("/chat/assets/chat.js")
    );
    // Not another provider's user id; not from another site's page.
    assert_eq!(refused_with(open(&s, "5532", None).await), 400);
    assert_eq!(
        refused_with(open(&s, USER, Some("https://evil.example")).await),
        403
    );

    let mut ws = open(&s, USER, Some(&format!("http://{}", s.addr)))
        .await
        .expect("the chat opens");
    assert_eq!(next(&mut ws).await, json!({"messages": []}));
    say(&mut ws, "Hello bot").await;
    let echoed = next(&mut ws).await;
    assert_eq!(echoed["message"]["text"], "Hello bot", "{echoed}");
    assert_eq!(echoed["message"]["direction"], "in");
    // Handed to the bot (its stand-in answers 503 first; the call is tried again).
    super::until_true("the bot's webhook got the message", || {
        calls.lock().expect("calls").iter().any(|(_, body)| {
            serde_json::from_slice::<Value>(body).is_ok_and(|b| {
                b["type"] == "message" && b["text"] == "Hello bot" && b["user"]["id"] == USER
            })
        })
    })
    .await;
    // The bot answers through the ingest API; the chat shows it.
    let answer = json!({"bot": "helpdesk", "type": "message", "direction": "out",
        "provider": "webchat", "user": {"id": USER}, "text": "Hi! How can I help?"});
    assert_eq!(s.ingest(answer.to_string()).await.0, 202);
    let shown = next(&mut ws).await;
    assert_eq!(shown["message"]["text"], "Hi! How can I help?");
    assert_eq!(shown["message"]["sender"]["kind"], "bot");

    // Manual: an operator's message reaches the chat; the user's is not handed on.
    let (status, _) = s
        .put(
            &format!("/api/v1/bots/helpdesk/dialogs/{USER}/mode"),
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!(status, 200);
    let response = s
        .client
        .post(s.url(&format!("/api/v1/bots/helpdesk/dialogs/{USER}/messages")))
        .bearer_auth(botwatch_tests::ADMIN_TOKEN)
        .json(&json!({"text": "Anna here, from the team"}))
        .send()
        .await
        .expect("operator message");
    assert_eq!(response.status().as_u16(), 202);
    let shown = next(&mut ws).await;
    assert_eq!(shown["message"]["text"], "Anna here, from the team");
    assert_eq!(
        shown["message"]["sender"],
        json!({"kind": "operator"}),
        "an operator, not their account"
    );
    let handed_before = calls.lock().expect("calls").len();
    say(&mut ws, "Thanks Anna").await;
    assert_eq!(next(&mut ws).await["message"]["text"], "Thanks Anna");
    until(&s, &format!("/api/v1/bots/helpdesk/dialogs/{USER}"), |d| {
        d["messages"] == 4
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let handed: Vec<Value> = calls.lock().expect("calls")[handed_before..]
        .iter()
        .filter_map(|(_, b)| serde_json::from_slice::<Value>(b).ok())
        .filter(|b| b["type"] == "message")
        .collect();
    assert!(handed.is_empty(), "handed to the bot in Manual: {handed:?}");

    // Bad frames are answered with an error, and the chat stays open.
    ws.send(Message::text("not json")).await.expect("send");
    assert!(next(&mut ws).await["error"].is_string());
    say(&mut ws, "still here").await;
    assert_eq!(next(&mut ws).await["message"]["text"], "still here");
    s.stop().await;
}

/// One address holds at most 20 chats at once (a flood from one place never takes the
/// node's pool); a closed chat gives its place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_holds_a_bounded_number_of_chats() {
    let s = TestServer::start(Backend::Embedded).await;
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/settings",
            json!({"channels": {"webchat": {"enabled": true}}}),
        )
        .await;
    assert_eq!(status, 200);
    let mut chats = Vec::new();
    for n in 0..botwatch_server::channels::webchat::CHATS_PER_ADDRESS {
        let user = format!("wc-{n:032x}");
        let mut ws = open(&s, &user, None).await.expect("a chat");
        assert_eq!(next(&mut ws).await, json!({"messages": []}));
        chats.push(ws);
    }
    assert_eq!(refused_with(open(&s, USER, None).await), 429);
    let mut closed = chats.pop().expect("one");
    closed.close(None).await.expect("close");
    drop(closed);
    super::until_true_async("a closed chat gives its place back", || async {
        open_ok(&s).await
    })
    .await;
    s.stop().await;
}

async fn open_ok(s: &TestServer) -> bool {
    open(s, USER, None).await.is_ok()
}

both_backends!(a_chat_talks_to_the_bot_in_auto_and_to_an_operator_in_manual);
