//! Calls to a bot's `webhook_url`: what the bot must learn of (`mode_changed` now;
//! operator messages with their issue), POSTed as JSON and signed so the bot can tell
//! botwatch's calls from anyone's:
//!
//! `X-Botwatch-Timestamp: <unix seconds>` and
//! `X-Botwatch-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the
//! bot's webhook_secret>` (a bot refuses a timestamp far from its clock, so a recorded
//! call cannot be played again later).
//!
//! A call that fails (no answer, 5xx, 408, 429) is tried again after 1, 2, 4, … 32 s;
//! other answers end it. Only the node that made the change calls, once; the attempts
//! live in memory, so a call still being retried when that node stops is lost (it is
//! logged).

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use sha2::Sha256;
use tracing::{Instrument, info, info_span, warn};

use crate::AppState;
use crate::settings::{SettingsDoc, WEBHOOK_SECRET};

/// Attempts of one call: the first and five more, 1 s to 32 s apart.
const ATTEMPTS: u32 = 6;
const FIRST_RETRY: Duration = Duration::from_secs(1);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The signature header's value for `body` sent at `timestamp`.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", crate::users::hex(&mac.finalize().into_bytes()))
}

/// Calls the bot's webhook with `body` in the background, when the bot has one.
pub fn notify(state: &AppState, bot: &str, kind: &'static str, body: serde_json::Value) {
    let (state, bot) = (state.clone(), bot.to_owned());
    let span = info_span!("webhook", bot, kind);
    tokio::spawn(
        async move {
            let doc = match crate::channels::settings_of(&state, &bot).await {
                Ok(doc) => doc,
                Err(e) => {
                    warn!(error = %e, "the webhook is not called");
                    return;
                }
            };
            if let Some(hook) = Webhook::of(&state, &bot, &doc) {
                let _ = hook.call(&state.http, &body).await;
            }
        }
        .instrument(span),
    );
}

/// A bot's webhook, ready to call: where, and the key its calls are signed with.
pub struct Webhook {
    url: String,
    secret: String,
}

impl Webhook {
    /// The webhook of `bot` by its settings `doc`, when it has one (and its secret opens).
    pub fn of(state: &AppState, bot: &str, doc: &SettingsDoc) -> Option<Webhook> {
        let (url, sealed) = (doc.webhook_url.as_ref()?, doc.webhook_secret.as_deref()?);
        let Some(secret) = state.vault.open(bot, WEBHOOK_SECRET, sealed) else {
            warn!(
                bot,
                "the webhook secret cannot be opened (another secret key?); not called"
            );
            return None;
        };
        Some(Webhook {
            url: url.clone(),
            secret,
        })
    }

    pub async fn call(
        &self,
        http: &reqwest::Client,
        body: &serde_json::Value,
    ) -> Result<(), String> {
        call(http, &self.url, &self.secret, body).await
    }
}

/// Calls `url` with `body`, signed, trying again as the module says; `Err` says why the
/// call did not go through in the end.
async fn call(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &serde_json::Value,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut wait = FIRST_RETRY;
    for attempt in 1..=ATTEMPTS {
        let timestamp = chrono::Utc::now().timestamp();
        let sent = http
            .post(url)
            .timeout(CALL_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-botwatch-timestamp", timestamp.to_string())
            .header("x-botwatch-signature", signature(secret, timestamp, &bytes))
            .body(bytes.clone())
            .send()
            .await;
        let again = match &sent {
            Ok(r) if r.status().is_success() => {
                info!(attempt, status = r.status().as_u16(), "webhook called");
                return Ok(());
            }
            Ok(r) => {
                let s = r.status();
                s.is_server_error()
                    || s == StatusCode::TOO_MANY_REQUESTS
                    || s == StatusCode::REQUEST_TIMEOUT
            }
            Err(_) => true,
        };
        let outcome = match &sent {
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        if !again {
            warn!(
                attempt,
                outcome, "the webhook refused the call; not tried again"
            );
            return Err(format!("the bot's webhook answered {outcome}"));
        }
        if attempt == ATTEMPTS {
            warn!(
                attempt,
                outcome, "the webhook did not take the call; given up"
            );
            return Err(format!(
                "the bot's webhook did not take it in {ATTEMPTS} attempts (last: {outcome})"
            ));
        }
        warn!(attempt, outcome, retry_in = ?wait, "the webhook did not take the call");
        tokio::time::sleep(wait).await;
        wait *= 2;
    }
    Err("the bot's webhook was not called".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // The HMAC itself, against RFC 4231's test case 2.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            crate::users::hex(&mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // The timestamp and a dot come first.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").expect("key");
        mac.update(b"1700000000.{\"a\":1}");
        assert_eq!(
            signature("k", 1_700_000_000, br#"{"a":1}"#),
            format!("sha256={}", crate::users::hex(&mac.finalize().into_bytes()))
        );
    }
}
