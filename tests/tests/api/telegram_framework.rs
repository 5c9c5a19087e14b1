//! A real bot framework, unchanged but for its API base address, through botwatch's
//! Bot API proxy: python-telegram-bot (PyPI) runs `tests/python/echo_bot.py` against
//! the proxy, with a stand-in Telegram behind it. The bot answers in Auto, never sees a
//! Manual user's message, and botwatch records both directions once each.
//!
//! The interpreter is `BOTWATCH_TEST_PYTHON` (scripts/test makes a venv with the
//! framework in `target/python`); without it the test fails saying how to set it up.

use std::process::Stdio;
use std::time::{Duration, Instant};

use botwatch_tests::{Backend, TestServer};
use serde_json::{Value, json};

use super::telegram_stand_in::{StandIn, TOKEN};
use super::until;

fn python() -> String {
    std::env::var("BOTWATCH_TEST_PYTHON").unwrap_or_else(|_| {
        let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/python/bin/python");
        assert!(
            std::path::Path::new(venv).exists(),
            "python-telegram-bot is needed: python3 -m venv target/python && \
             target/python/bin/pip install python-telegram-bot (scripts/test does it), \
             or set BOTWATCH_TEST_PYTHON"
        );
        venv.to_owned()
    })
}

fn update(id: i64, user: i64, text: &str) -> Value {
    json!({"update_id": id, "message": {"message_id": id, "date": chrono::Utc::now().timestamp(),
        "chat": {"id": user, "type": "private", "first_name": "U"},
        "from": {"id": user, "is_bot": false, "first_name": format!("User {user}")},
        "text": text}})
}

/// The texts the bot sent to `chat` through the proxy.
fn sent_to(telegram: &StandIn, chat: &str) -> Vec<String> {
    telegram
        .calls_of("sendMessage")
        .iter()
        .filter(|c| {
            c.fields["chat_id"].as_str() == Some(chat)
                || c.fields["chat_id"] == json!(chat.parse::<i64>().unwrap_or(0))
        })
        .map(|c| c.fields["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: not within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Messages of `user`'s dialog, oldest first: (id, direction, text).
async fn dialog(s: &TestServer, user: &str) -> Vec<(String, String, String)> {
    let (_, history) = s
        .get(&format!("/api/v1/bots/helpdesk/dialogs/{user}/messages"))
        .await;
    let mut items: Vec<(String, String, String)> = history["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let field = |k: &str| m[k].as_str().unwrap_or_default().to_owned();
            (field("id"), field("direction"), field("text"))
        })
        .collect();
    items.reverse();
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_python_telegram_bot_runs_through_the_proxy() {
    let (api, telegram) = StandIn::start().await;
    let s = TestServer::start_with(Backend::Embedded, None, |c| {
        super::operator::configured(c, &api)
    })
    .await;
    super::operator::give_the_telegram_token(&s).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/echo_bot.py");
    let mut bot = tokio::process::Command::new(python())
        .arg(script)
        .env("BOT_TOKEN", TOKEN)
        .env("BOT_API_BASE", s.url("/channels/telegram/helpdesk/api/bot"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the python bot");

    // Auto: the bot answers through the proxy; botwatch records both directions.
    telegram.offer(update(1, 5532, "hello"));
    wait_for("the bot's answer", || {
        sent_to(&telegram, "5532") == ["echo: hello"]
    })
    .await;
    until(&s, "/api/v1/bots/helpdesk/dialogs/5532", |d| {
        d["messages"] == 2
    })
    .await;
    let shown = dialog(&s, "5532").await;
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|(id, dir, text)| (id.as_str(), dir.as_str(), text.as_str())
                == ("tg-1", "in", "hello")),
        "{shown:?}"
    );
    assert!(
        shown
            .iter()
            .any(|(id, dir, text)| id.starts_with("tgout-5532-")
                && (dir.as_str(), text.as_str()) == ("out", "echo: hello")),
        "{shown:?}"
    );

    // Manual for 5532: their message is recorded, the bot never gets it; another user
    // in Auto still gets answers.
    let (status, _) = s
        .put(
            "/api/v1/bots/helpdesk/dialogs/5532/mode",
            json!({"mode": "manual"}),
        )
        .await;
    assert_eq!(status, 200);
    telegram.offer(update(2, 5532, "only for a human"));
    telegram.offer(update(3, 7001, "hi"));
    wait_for("the answer to the Auto user", || {
        sent_to(&telegram, "7001") == ["echo: hi"]
    })
    .await;
    until(&s, "/api/v1/bots/helpdesk/dialogs/5532", |d| {
        d["messages"] == 3
    })
    .await;
    // Give the bot time to answer what it should never have seen.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        sent_to(&telegram, "5532"),
        ["echo: hello"],
        "the bot saw a Manual user's message"
    );
    let shown = dialog(&s, "5532").await;
    assert_eq!(shown.len(), 3, "recorded once each: {shown:?}");
    // (Telegram dates are whole seconds: the order within one second is not asserted.)
    assert!(
        shown
            .iter()
            .any(|(id, dir, text)| (id.as_str(), dir.as_str(), text.as_str())
                == ("tg-2", "in", "only for a human")),
        "{shown:?}"
    );
    assert_eq!(dialog(&s, "7001").await.len(), 2);
    // Telegram offered update 2 to the bot's polls more than once; recorded once.
    let polls = telegram.calls_of("getUpdates").len();
    assert!(polls >= 3, "{polls} polls");

    // The framework is still healthy (it exits only when killed).
    assert!(bot.try_wait().expect("status").is_none(), "the bot stopped");
    bot.kill().await.expect("kill");
    let mut err = String::new();
    if let Some(mut stderr) = bot.stderr.take() {
        use tokio::io::AsyncReadExt;
        let _ = stderr.read_to_string(&mut err).await;
    }
    assert!(!err.contains("Traceback"), "the bot failed:\n{err}");
    s.stop().await;
}
