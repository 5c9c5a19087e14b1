//! The hand-off alert: a dialog is flagged for operators when its user, in Auto, asks
//! for a human (one of the bot's hand-off phrases, `handoff_phrases` in its settings,
//! or the defaults) or when the bot hands it off through the API
//! (`POST …/dialogs/{user}/handoff`). The flag is a `handoff` event in the log, so it
//! replays and reaches every node; it stands until an operator switches the dialog
//! (taking it over answers it). Every dashboard learns of it at once on the bot's
//! `alerts` topic.
//!
//! Phrases are looked for in what enters through botwatch's own doors (HTTP ingest,
//! Telegram's webhook, the Bot API proxy, the web chat); entries adapters `XADD`
//! straight into Redis are not scanned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_event::{Direction, Event, EventKind, Mode, Sender};
use botwatch_log::EventLog;
use serde::{Deserialize, Serialize};
use tracing::{Instrument, info, info_span, instrument, warn};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

/// What users write when they want a person, in the languages of the product's users.
pub const DEFAULT_PHRASES: [&str; 10] = [
    "operator",
    "human",
    "real person",
    "talk to a person",
    "agent",
    "оператор",
    "людина",
    "человек",
    "живий",
    "живой",
];
/// How long a node uses a bot's phrases before reading its settings again.
const PHRASES_FOR: Duration = Duration::from_secs(5);
/// How long an ingest waits for a bot's phrases before it goes on with the last known.
const PHRASES_READ_WAIT: Duration = Duration::from_millis(500);
const REASON_CHARS: usize = 256;

/// A bot's phrases, lower-cased, and when they were read.
type Read = (Instant, Arc<Vec<String>>);

/// Each bot's phrases, as recently read.
#[derive(Default)]
pub struct Phrases(Mutex<HashMap<String, Read>>);

impl Phrases {
    async fn of(&self, state: &AppState, bot: &str) -> Arc<Vec<String>> {
        let known = self.lock().get(bot).cloned();
        if let Some((at, phrases)) = &known
            && at.elapsed() < PHRASES_FOR
        {
            return phrases.clone();
        }
        // Briefly: the ingest that asks waits for this, and then for its own write; a
        // storage that does not answer must cost it one timeout, not two.
        let read =
            tokio::time::timeout(PHRASES_READ_WAIT, crate::channels::settings_of(state, bot)).await;
        let phrases = match read {
            Ok(Ok(doc)) => Arc::new(phrases_of(doc.handoff_phrases.as_deref())),
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no answer within {PHRASES_READ_WAIT:?}"),
                };
                // The phrases read last stand until the storage answers again (for
                // another `PHRASES_FOR`: one wait per bot and period, not per request).
                warn!(error = %why, "cannot read the hand-off phrases; the last known (or the defaults) apply");
                known.map_or_else(|| Arc::new(phrases_of(None)), |(_, phrases)| phrases)
            }
        };
        self.lock()
            .insert(bot.to_owned(), (Instant::now(), phrases.clone()));
        phrases
    }

    /// Forgets `bot`'s phrases (its settings changed on this node).
    pub fn forget(&self, bot: &str) {
        self.lock().remove(bot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Read>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn phrases_of(configured: Option<&[String]>) -> Vec<String> {
    match configured {
        Some(list) => list.iter().map(|p| p.to_lowercase()).collect(),
        None => DEFAULT_PHRASES.iter().map(|p| (*p).to_owned()).collect(),
    }
}

/// Letters a phrase's last word may gain (inflections: "operators", "оператора",
/// "человека") and still count.
const ENDING_CHARS: usize = 3;

/// Whether `text` holds one of `phrases`, starting a word and ending one (give or take
/// an inflection's few letters), in any case and script.
pub fn asks_for_a_human(text: &str, phrases: &[String]) -> bool {
    let text = text.to_lowercase();
    phrases.iter().any(|p| {
        text.match_indices(p.as_str()).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let ending = text[at + p.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .count();
            !before.is_some_and(char::is_alphanumeric) && ending <= ENDING_CHARS
        })
    })
}

/// The inbound messages of `events` that ask for a human (read before the events are
/// appended: nothing is copied unless one does).
pub async fn askers(state: &AppState, events: &[Event]) -> Vec<Event> {
    let mut asking = Vec::new();
    let mut last: Option<(&str, Arc<Vec<String>>)> = None;
    for e in events {
        let (Some(text), Some(Direction::In)) = (e.text.as_deref(), e.direction) else {
            continue;
        };
        if e.kind != EventKind::Message {
            continue;
        }
        let phrases = match &last {
            Some((bot, p)) if *bot == e.bot => p.clone(),
            _ => {
                let p = state.handoff_phrases.of(state, &e.bot).await;
                last = Some((e.bot.as_str(), p.clone()));
                p
            }
        };
        if asks_for_a_human(text, &phrases) {
            asking.push(e.clone());
        }
    }
    asking
}

/// Flags the dialogs of `asking` (messages already appended) that are in Auto, in the
/// background.
pub fn flag_soon(state: &AppState, asking: Vec<Event>) {
    if asking.is_empty() {
        return;
    }
    let state = state.clone();
    tokio::spawn(
        async move {
            let who: Vec<(String, String)> = asking
                .iter()
                .map(|e| (e.bot.clone(), e.user.id.clone()))
                .collect();
            let Ok(modes) = crate::figures::modes(&state, who).await else {
                return;
            };
            let flags: Vec<Event> = asking
                .iter()
                .zip(modes)
                .filter(|(_, mode)| *mode == Mode::Auto)
                .map(|(e, _)| {
                    handoff_event(
                        &e.bot,
                        &e.user.id,
                        &e.provider,
                        format!("handoff-{}", e.id),
                        e.text.as_deref(),
                        None,
                    )
                })
                .collect();
            if flags.is_empty() {
                return;
            }
            let n = flags.len();
            match state.log.append(flags).await {
                Ok(_) => {
                    state.metrics.handoffs.inc_by(n as u64);
                    info!(n, "dialogs flagged: a user asks for a human");
                }
                Err(e) => warn!(error = %e, "a hand-off was not recorded"),
            }
        }
        .instrument(info_span!("handoff.flag")),
    );
}

/// A `handoff` event; `sender` is the bot when it handed off, none when the user asked.
fn handoff_event(
    bot: &str,
    user: &str,
    provider: &str,
    id: String,
    reason: Option<&str>,
    sender: Option<Sender>,
) -> Event {
    Event {
        text: reason.map(|r| r.chars().take(REASON_CHARS).collect()),
        sender,
        ..Event::about_dialog(id, EventKind::Handoff, bot, provider, user)
    }
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// Why the bot hands off, shown to operators (its first 256 characters).
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HandoffAnswer {
    /// Whether the dialog is now flagged (false: it is in Manual already).
    flagged: bool,
}

/// A bot hands the dialog with `user` off to a human: it is flagged for operators.
#[instrument(name = "handoff.post", skip(state, principal, body))]
#[utoipa::path(post, operation_id = "handoff_post", path = "/api/v1/bots/{bot}/dialogs/{user}/handoff", tag = "dialogs",
    params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id")),
    request_body(content = crate::handoff::HandoffRequest, description = "Optional: no body is no reason"),
    responses((status = 202, body = crate::handoff::HandoffAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn post(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bot, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<(StatusCode, Json<HandoffAnswer>), ApiError> {
    let HandoffRequest { reason } = if body.is_empty() {
        HandoffRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_handoff",
                format!(r#"expected {{"reason": "…"}} or nothing: {e}"#),
            )
        })?
    };
    let known = crate::figures::known_user(&state, &bot, &user).await?;
    // In Manual an operator has the dialog already: nothing to flag.
    let flagged = known.mode == Mode::Auto;
    if flagged {
        let provider = known.provider.unwrap_or_else(|| "botwatch".to_owned());
        let id = format!("handoff-{}", uuid::Uuid::now_v7());
        let why = reason.as_deref().unwrap_or("the bot handed off");
        let event = handoff_event(&bot, &user, &provider, id, Some(why), Some(Sender::Bot));
        state.log.append(vec![event]).await?;
        state.metrics.handoffs.inc();
        info!(bot, user, "the bot handed the dialog off");
    }
    // Audited either way, once it happened.
    crate::session::audit(
        &state,
        &principal,
        "dialog.handoff",
        Some(&bot),
        serde_json::json!({ "user": user, "reason": reason, "flagged": flagged }),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, Json(HandoffAnswer { flagged })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phrases_are_whole_words_in_any_case_and_script() {
        let p = phrases_of(None);
        assert!(asks_for_a_human("Can I talk to an OPERATOR, please?", &p));
        assert!(asks_for_a_human("Покличте оператора", &p), "an inflection");
        assert!(asks_for_a_human("Дайте Оператор!", &p));
        assert!(asks_for_a_human("хочу живого человека", &p));
        assert!(
            !asks_for_a_human("cooperators unite", &p),
            "not where a word starts"
        );
        assert!(
            !asks_for_a_human("a humanitarian mission", &p),
            "another word"
        );
        assert!(!asks_for_a_human("Where is my order?", &p));
        let custom = phrases_of(Some(&["Need Help".to_owned()]));
        assert!(asks_for_a_human("I need help now", &custom));
        assert!(
            !asks_for_a_human("operator", &custom),
            "the bot's own list replaces the defaults"
        );
    }
}
