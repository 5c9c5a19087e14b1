//! The demo's FAQ bot: a small bot of its own, on 127.0.0.1, that answers the web chat
//! of the bot "helpdesk" the way any bot would with botwatch — it is called at its
//! webhook (`{"type":"message",…}`, signed), checks the signature, and answers through
//! the ingest API. It stays silent for a user in Manual: it asks the dialog's mode
//! before answering, and botwatch does not call it for them in the first place.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The bot the FAQ bot answers for.
pub const FAQ_BOT: &str = "helpdesk";

/// What the FAQ bot needs: where botwatch is and a token that may ingest and read.
#[derive(Clone)]
pub struct FaqConfig {
    pub base_url: String,
    pub token: String,
}

#[derive(Clone)]
struct Bot {
    config: FaqConfig,
    secret: String,
    http: reqwest::Client,
}

#[derive(Debug, thiserror::Error)]
pub enum FaqError {
    #[error("cannot listen for the FAQ bot's webhook: {0}")]
    Listen(#[from] std::io::Error),
    #[error("cannot configure the bot's web chat and webhook: {0}")]
    Settings(String),
}

/// Starts the FAQ bot, points the bot's webhook at it and enables its web chat.
/// Returns the web chat's address.
pub async fn start(config: FaqConfig, shutdown: CancellationToken) -> Result<String, FaqError> {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let secret = format!("faq-{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
    let bot = Bot {
        config: config.clone(),
        secret: secret.clone(),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| FaqError::Settings(e.to_string()))?,
    };
    let settings = json!({
        "webhook_url": hook, "webhook_secret": secret,
        "channels": {"webchat": {"enabled": true}},
    });
    let answer = bot
        .http
        .put(format!(
            "{}/api/v1/bots/{FAQ_BOT}/settings",
            config.base_url
        ))
        .bearer_auth(&config.token)
        .json(&settings)
        .send()
        .await
        .map_err(|e| FaqError::Settings(e.to_string()))?;
    if !answer.status().is_success() {
        let said = answer.text().await.unwrap_or_default();
        return Err(FaqError::Settings(said));
    }
    let app = axum::Router::new()
        .route("/hook", post(hook_called))
        .with_state(bot);
    tokio::spawn(async move {
        let stop = shutdown.cancelled_owned();
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
        {
            warn!(error = %e, "the FAQ bot stopped");
        }
    });
    Ok(format!("{}/chat/{FAQ_BOT}", config.base_url))
}

async fn hook_called(State(bot): State<Bot>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !signed(&bot.secret, &headers, &body) {
        warn!("a webhook call without botwatch's signature; ignored");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(call) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    // Mode switches and operator messages are for bots that deliver themselves.
    if call["type"] != "message" {
        return StatusCode::OK;
    }
    let (Some(user), Some(text)) = (call["user"]["id"].as_str(), call["text"].as_str()) else {
        return StatusCode::OK;
    };
    let (user, provider) = (
        user.to_owned(),
        call["provider"].as_str().unwrap_or("webchat").to_owned(),
    );
    let reply = answer(text);
    tokio::spawn(async move { bot.reply(&user, &provider, reply).await });
    StatusCode::OK
}

impl Bot {
    /// Answers `user`, unless an operator took the dialog over meanwhile.
    async fn reply(&self, user: &str, provider: &str, text: &str) {
        // A moment, as a person would see a bot "typing".
        tokio::time::sleep(Duration::from_millis(400)).await;
        let base = &self.config.base_url;
        let dialog: Option<Value> = match self
            .http
            .get(format!("{base}/api/v1/bots/{FAQ_BOT}/dialogs/{user}"))
            .bearer_auth(&self.config.token)
            .send()
            .await
        {
            Ok(r) => r.json().await.ok(),
            Err(_) => None,
        };
        if dialog.as_ref().is_some_and(|d| d["mode"] == "manual") {
            info!(
                user,
                "an operator has this dialog; the FAQ bot stays silent"
            );
            return;
        }
        let event = json!({"bot": FAQ_BOT, "type": "message", "direction": "out",
            "provider": provider, "user": {"id": user}, "text": text, "sender": {"kind": "bot"}});
        match self
            .http
            .post(format!("{base}/api/v1/events"))
            .bearer_auth(&self.config.token)
            .json(&event)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => {}
            Ok(r) => warn!(status = %r.status(), "the FAQ bot's answer was refused"),
            Err(e) => warn!(error = %e, "the FAQ bot's answer was not sent"),
        }
        // It promised a person: it hands the dialog off, so operators see it at once.
        if text == TO_A_HUMAN {
            let handoff = self
                .http
                .post(format!(
                    "{base}/api/v1/bots/{FAQ_BOT}/dialogs/{user}/handoff"
                ))
                .bearer_auth(&self.config.token)
                .json(&json!({"reason": "the user asked for a person"}))
                .send()
                .await;
            if let Err(e) = handoff {
                warn!(error = %e, "the FAQ bot could not hand the dialog off");
            }
        }
    }
}

/// Whether the call carries botwatch's signature: HMAC-SHA256 of "<timestamp>.<body>".
fn signed(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(ts), Some(sig)) = (
        header("x-botwatch-timestamp"),
        header("x-botwatch-signature"),
    ) else {
        return false;
    };
    let Some(hex) = sig.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(ts.as_bytes());
    mac.update(b".");
    mac.update(body);
    let Some(bytes) = (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    // Constant time.
    mac.verify_slice(&bytes).is_ok()
}

/// The FAQ's answer when someone wants a person: said, and the dialog handed off.
const TO_A_HUMAN: &str =
    "I've asked a colleague to join: someone from the team will answer here shortly.";

/// The FAQ: the first topic whose words the question holds, else what it can do. A
/// person asked for comes first ("Hi! Can I talk to a person?" is not a greeting).
fn answer(question: &str) -> &'static str {
    const FAQ: [(&[&str], &str); 5] = [
        (
            &["human", "operator", "person", "agent", "оператор", "людин"],
            TO_A_HUMAN,
        ),
        (
            &["hello", "hi", "hey", "привіт", "привет"],
            "Hello! I'm the help desk's FAQ bot. Ask me about opening hours, delivery or returns.",
        ),
        (
            &["hour", "open", "close", "when"],
            "We're open Monday to Friday, 9:00–18:00 (Kyiv time).",
        ),
        (
            &["deliver", "shipping", "order", "track"],
            "Orders ship within 2 working days; you get a tracking link by e-mail.",
        ),
        (
            &["return", "refund"],
            "You can return anything within 30 days: write \"return\" and your order number.",
        ),
    ];
    let q = question.to_lowercase();
    let said: Vec<&str> = q.split(|c: char| !c.is_alphanumeric()).collect();
    // Short keywords are whole words ("hi" is not "this"); longer ones start a word
    // and may gain one letter ("deliver" in "delivery", "людин" in "людину"), not
    // become another word ("person" in "personal").
    let heard = |w: &str| {
        said.iter().any(|s| {
            if w.chars().count() <= 3 {
                *s == w
            } else {
                s.starts_with(w) && s.chars().count() <= w.chars().count() + 1
            }
        })
    };
    FAQ.iter()
        .find(|(words, _)| words.iter().any(|w| heard(w)))
        .map_or(
            "I'm the demo FAQ bot: ask me about opening hours, delivery or returns — or write \"operator\" to talk to a person.",
            |(_, a)| a,
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_faq_answers_by_topic() {
        assert!(answer("When are you open?").contains("Monday"));
        assert!(answer("Where is my ORDER?").contains("ship"));
        assert!(answer("Привіт").starts_with("Hello"));
        assert!(answer("qwerty").contains("operator"));
        assert!(
            answer("something else").contains("operator"),
            "not a greeting"
        );
        assert_eq!(answer("A real person, please"), TO_A_HUMAN);
        assert_eq!(answer("Hi! Can I talk to a person?"), TO_A_HUMAN);
        assert_ne!(answer("my personal data"), TO_A_HUMAN);
    }

    #[test]
    fn only_botwatchs_signature_is_taken() {
        let body = br#"{"type":"message"}"#;
        let mut mac = Hmac::<Sha256>::new_from_slice(b"s").expect("key");
        mac.update(b"17.");
        mac.update(body);
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut headers = HeaderMap::new();
        headers.insert("x-botwatch-timestamp", "17".parse().expect("ts"));
        headers.insert(
            "x-botwatch-signature",
            format!("sha256={hex}").parse().expect("sig"),
        );
        assert!(signed("s", &headers, body));
        assert!(!signed("other", &headers, body));
        assert!(!signed("s", &headers, b"{}"));
        assert!(!signed("s", &HeaderMap::new(), body));
    }
}
