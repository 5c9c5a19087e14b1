//! Traffic simulator for `botwatch demo`: several bots on several providers talking
//! with a fixed pool of a few hundred users, posted to a running botwatch over HTTP
//! (`POST {base_url}/api/v1/events`, API.md "Ingest over HTTP"), so the dashboard is
//! alive at once.
//!
//! - `names`: the people (Latin, Ukrainian and Russian names, some with gender,
//!   language and avatar) and their user ids per provider.
//! - `script`: the bots ("helpdesk" on telegram, "shop" on viber and web, "news" on
//!   telegram and messenger) and their scripted scenarios.
//! - `traffic`: the pure, seeded state machine that turns those into events on a
//!   virtual timeline (same seed, same traffic; no clock, no IO).
//! - this file: [`run`], which sleeps along that timeline, stamps `ts`, posts small
//!   batches and retries failed ones with back-off until `shutdown` is cancelled.
//!
//! The simulated bots respect manual mode: when the ingest answer says a user's
//! dialog is manual, the bot stops answering that user until it is auto again.
//!
//! ```no_run
//! # async fn demo() -> Result<(), botwatch_demo::DemoError> {
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let config = botwatch_demo::SimulatorConfig {
//!     token: "ingest-token".into(),
//!     ..Default::default()
//! };
//! let stats = botwatch_demo::run(config, shutdown.clone()).await?;
//! println!("{} events sent", stats.events_sent);
//! # Ok(()) }
//! ```

pub mod audience;
pub mod faq;
mod names;
mod script;
mod traffic;

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::traffic::{Event, Traffic};

/// At most this many events go into one request.
const MAX_BATCH_EVENTS: usize = 100;
/// When the sender falls further behind the timeline than this (server down, slow
/// requests), the timeline is shifted instead of bursting the backlog.
const MAX_LAG: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MAX_PACE: f64 = 1000.0;
const MAX_DIALOGS: usize = 10_000;

/// What to simulate and where to send it.
#[derive(Clone)]
pub struct SimulatorConfig {
    /// e.g. "http://127.0.0.1:8080"
    pub base_url: String,
    /// bearer token with ingest rights (sent as Authorization: Bearer ...)
    pub token: String,
    /// how many conversations run at once (default 12)
    pub concurrent_dialogs: usize,
    /// multiplies all pauses; 1.0 = realistic human pace, 0.0 = no pauses (tests)
    pub pace: f64,
    /// seed for reproducible traffic
    pub seed: u64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            base_url: "http://127.0.0.1:8080".to_owned(),
            token: String::new(),
            concurrent_dialogs: 12,
            pace: 1.0,
            seed: 42,
        }
    }
}

impl fmt::Debug for SimulatorConfig {
    /// Like a derived `Debug`, but the token is not shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("base_url", &self.base_url)
            .field("token", &if self.token.is_empty() { "" } else { "***" })
            .field("concurrent_dialogs", &self.concurrent_dialogs)
            .field("pace", &self.pace)
            .field("seed", &self.seed)
            .finish()
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatorStats {
    /// Events the server accepted (202).
    pub events_sent: u64,
    /// Requests that failed (connection errors, timeouts, non-2xx answers); each
    /// retry that fails counts again.
    pub requests_failed: u64,
}

/// Why the simulator could not run. Network trouble is never an error: it is logged,
/// counted and retried.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A field of [`SimulatorConfig`] is unusable.
    #[error("invalid simulator configuration: {0}")]
    InvalidConfig(String),
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Runs until `shutdown` is cancelled; returns `Ok(stats)` then. Posts to
/// `POST {base_url}/api/v1/events`.
///
/// Fails only at once, when the configuration is unusable
/// (not an `http://` URL, no dialogs, a pace
/// that is negative, not finite or above 1000, a token that cannot be a header).
/// Event ids are `demo-{seed}-{run}-{counter}`, `run` being the start time in hex
/// milliseconds, so a restarted demo is not taken for duplicates of the last run.
pub async fn run(
    config: SimulatorConfig,
    shutdown: CancellationToken,
) -> Result<SimulatorStats, DemoError> {
    let url = events_url(&config)?;
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .map_err(DemoError::Client)?;
    let sender = Sender {
        client,
        url,
        token: config.token,
    };
    let run_id = Utc::now().timestamp_millis();
    let mut traffic = Traffic::new(
        config.seed,
        config.concurrent_dialogs,
        config.pace,
        format!("demo-{}-{run_id:x}-", config.seed),
    );
    let mut stamps = Stamps::default();
    let mut stats = SimulatorStats::default();
    tracing::info!(
        url = %sender.url,
        dialogs = config.concurrent_dialogs,
        pace = config.pace,
        seed = config.seed,
        "demo traffic started"
    );

    let mut start = Instant::now();
    while !shutdown.is_cancelled() {
        let Some((at, _)) = traffic.peek() else { break };
        // Wait until the next step is due (or catch up when far behind).
        let now = Instant::now();
        match start.checked_add(at) {
            Some(due) if due > now => {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(due) => {}
                }
            }
            Some(due) => {
                let lag = now.saturating_duration_since(due);
                if lag > MAX_LAG {
                    start += lag;
                }
            }
            None => {
                // Unreachably far in the future.
                shutdown.cancelled().await;
                break;
            }
        }

        // Everything due now, at most one step per dialog so that a bot learns of
        // manual mode (from the answer to its user's message) before answering.
        let elapsed = Instant::now().saturating_duration_since(start);
        let mut events: Vec<Event> = Vec::new();
        let mut slots = Vec::new();
        while let Some((at, slot)) = traffic.peek() {
            if at > elapsed || slots.contains(&slot) || events.len() >= MAX_BATCH_EVENTS {
                break;
            }
            let Some(step) = traffic.next_step() else {
                break;
            };
            slots.push(step.slot);
            events.extend(step.events);
        }
        if events.is_empty() {
            continue;
        }

        let now = Utc::now();
        let batch: Vec<Value> = events
            .iter()
            .map(|event| event.to_json(stamps.stamp(event, now)))
            .collect();
        let body = match serde_json::to_vec(&batch) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "could not encode demo events; skipping them");
                stats.requests_failed += 1;
                continue;
            }
        };
        match sender.deliver(body, &shutdown, &mut stats).await {
            Delivery::Accepted(modes) => {
                stats.events_sent += events.len() as u64;
                for event in &events {
                    if let Some(&manual) = modes.get(&event.user_id) {
                        traffic.set_manual(event.bot, &event.user_id, manual);
                    }
                }
            }
            Delivery::Dropped => {}
            Delivery::Shutdown => break,
        }
    }

    tracing::info!(
        events_sent = stats.events_sent,
        requests_failed = stats.requests_failed,
        "demo traffic stopped"
    );
    Ok(stats)
}

/// Checks the configuration; returns the ingest URL.
fn events_url(config: &SimulatorConfig) -> Result<String, DemoError> {
    let invalid = |why: String| Err(DemoError::InvalidConfig(why));
    let base = config.base_url.trim().trim_end_matches('/');
    match reqwest::Url::parse(base) {
        Ok(url) if url.scheme() == "http" && url.host().is_some() => {}
        Ok(url) if url.scheme() == "https" => {
            return invalid(format!(
                "base_url {base:?}: only http:// is supported (the simulator is built without TLS)"
            ));
        }
        Ok(_) => return invalid(format!("base_url {base:?} is not an http:// URL")),
        Err(error) => return invalid(format!("base_url {base:?}: {error}")),
    }
    if !(1..=MAX_DIALOGS).contains(&config.concurrent_dialogs) {
        return invalid(format!(
            "concurrent_dialogs must be 1 to {MAX_DIALOGS}, not {}",
            config.concurrent_dialogs
        ));
    }
    if !(config.pace.is_finite() && (0.0..=MAX_PACE).contains(&config.pace)) {
        return invalid(format!("pace must be 0 to {MAX_PACE}, not {}", config.pace));
    }
    if !config.token.bytes().all(|b| b.is_ascii_graphic()) {
        return invalid("token has characters not allowed in an HTTP header".to_owned());
    }
    Ok(format!("{base}/api/v1/events"))
}

/// Gives each event its `ts`: the send time at millisecond precision, but always
/// later than the previous message of the same dialog, so order within a dialog is
/// kept even when several of its messages go out within one millisecond.
#[derive(Debug, Default)]
struct Stamps {
    last: HashMap<(&'static str, String), DateTime<Utc>>,
}

impl Stamps {
    fn stamp(&mut self, event: &Event, now: DateTime<Utc>) -> DateTime<Utc> {
        let now = now.trunc_subsecs(3);
        let key = (event.bot, event.user_id.clone());
        let ts = match self.last.get(&key) {
            Some(&last) if last >= now => last
                .checked_add_signed(chrono::TimeDelta::milliseconds(1))
                .unwrap_or(now),
            _ => now,
        };
        self.last.insert(key, ts);
        ts
    }
}

/// How a batch ended.
enum Delivery {
    /// Stored; the modes (user id → manual?) the server reported.
    Accepted(HashMap<String, bool>),
    /// Refused as invalid or too large: resending the same bytes cannot help.
    Dropped,
    /// Shutdown came first.
    Shutdown,
}

struct Sender {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl Sender {
    /// Posts `body` until it is accepted (retrying with back-off up to
    /// [`MAX_BACKOFF`]), refused as invalid, or shutdown is cancelled.
    async fn deliver(
        &self,
        body: Vec<u8>,
        shutdown: &CancellationToken,
        stats: &mut SimulatorStats,
    ) -> Delivery {
        let mut backoff = FIRST_BACKOFF;
        loop {
            let mut request = self
                .client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if !self.token.is_empty() {
                request = request.bearer_auth(&self.token);
            }
            let attempt = async {
                let response = request.send().await?;
                let status = response.status();
                let bytes = response.bytes().await?;
                Ok::<_, reqwest::Error>((status, bytes))
            };
            let outcome = tokio::select! {
                biased;
                () = shutdown.cancelled() => return Delivery::Shutdown,
                outcome = attempt => outcome,
            };
            if let Ok((status, bytes)) = &outcome
                && status.is_success()
            {
                return Delivery::Accepted(modes(bytes));
            }
            stats.requests_failed += 1;
            match outcome {
                Ok((status, bytes))
                    if status == StatusCode::BAD_REQUEST
                        || status == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    tracing::warn!(
                        %status,
                        answer = %snippet(&bytes),
                        "the server refused a batch of demo events; dropping it"
                    );
                    return Delivery::Dropped;
                }
                Ok((status, bytes)) => tracing::warn!(
                    %status,
                    answer = %snippet(&bytes),
                    retry_in = ?backoff,
                    "posting demo events failed; retrying"
                ),
                Err(error) => tracing::warn!(
                    error = %error_chain(&error),
                    retry_in = ?backoff,
                    "posting demo events failed; retrying"
                ),
            }
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return Delivery::Shutdown,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = backoff.saturating_mul(2).min(MAX_BACKOFF);
        }
    }
}

/// `dialogs` of an ingest answer: user id → whether the dialog is in manual mode.
/// Anything unexpected is ignored.
fn modes(answer: &[u8]) -> HashMap<String, bool> {
    let Ok(answer) = serde_json::from_slice::<Value>(answer) else {
        return HashMap::new();
    };
    answer
        .get("dialogs")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(user, dialog)| match dialog.get("mode")?.as_str()? {
            "manual" => Some((user.clone(), true)),
            "auto" => Some((user.clone(), false)),
            _ => None,
        })
        .collect()
}

/// The start of an answer body, for the log.
fn snippet(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut cut: String = text.chars().take(300).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

/// An error with its causes ("error sending request: … : Connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str) -> SimulatorConfig {
        SimulatorConfig {
            base_url: base_url.to_owned(),
            token: "t0ken".to_owned(),
            ..Default::default()
        }
    }

    #[test]
    fn default_config() {
        let config = SimulatorConfig::default();
        assert_eq!(config.base_url, "http://127.0.0.1:8080");
        assert_eq!(config.concurrent_dialogs, 12);
        assert!((config.pace - 1.0).abs() < f64::EPSILON);
        assert!(!format!("{:?}", self::config("http://x")).contains("t0ken"));
    }

    #[test]
    fn config_is_checked() {
        assert_eq!(
            events_url(&config("http://127.0.0.1:8080")).ok().as_deref(),
            Some("http://127.0.0.1:8080/api/v1/events")
        );
        assert_eq!(
            events_url(&config(" http://host:1/prefix/ "))
                .ok()
                .as_deref(),
            Some("http://host:1/prefix/api/v1/events")
        );
        for bad in [
            "https://host",
            "ftp://host",
            "127.0.0.1:8080",
            "",
            "http://",
        ] {
            assert!(events_url(&config(bad)).is_err(), "{bad:?}");
        }
        let base = config("http://h");
        for bad in [
            SimulatorConfig {
                concurrent_dialogs: 0,
                ..base.clone()
            },
            SimulatorConfig {
                pace: -1.0,
                ..base.clone()
            },
            SimulatorConfig {
                pace: f64::NAN,
                ..base.clone()
            },
            SimulatorConfig {
                token: "a b\n".into(),
                ..base.clone()
            },
        ] {
            assert!(
                matches!(events_url(&bad), Err(DemoError::InvalidConfig(_))),
                "{bad:?}"
            );
        }
        let no_pauses = SimulatorConfig { pace: 0.0, ..base };
        assert!(events_url(&no_pauses).is_ok());
    }

    #[tokio::test]
    async fn a_bad_config_fails_at_once() {
        let result = run(config("https://example.org"), CancellationToken::new()).await;
        assert!(matches!(result, Err(DemoError::InvalidConfig(_))));
    }

    #[test]
    fn stamps_keep_dialog_order() {
        let mut traffic = Traffic::new(1, 1, 0.0, "x-".into());
        let events: Vec<Event> = (0..6)
            .flat_map(|_| traffic.next_step().map(|s| s.events).unwrap_or_default())
            .collect();
        let now = Utc::now();
        let mut stamps = Stamps::default();
        let mut last: HashMap<(&str, String), DateTime<Utc>> = HashMap::new();
        for event in &events {
            let ts = stamps.stamp(event, now);
            assert_eq!(ts.timestamp_subsec_nanos() % 1_000_000, 0, "milliseconds");
            assert!(ts >= now.trunc_subsecs(3));
            if let Some(previous) = last.insert((event.bot, event.user_id.clone()), ts) {
                assert!(previous < ts, "later than the dialog's previous message");
            }
        }
        assert!(events.len() >= 6);
    }

    #[test]
    fn manual_modes_are_read_from_the_answer() {
        let answer = br#"{"accepted": 3, "dialogs": {"1": {"mode": "manual"},
            "2": {"mode": "auto"}, "3": {"mode": "?"}, "4": 7}}"#;
        let modes = modes(answer);
        assert_eq!(modes.len(), 2);
        assert_eq!(modes.get("1"), Some(&true));
        assert_eq!(modes.get("2"), Some(&false));
        assert!(super::modes(b"not json").is_empty());
        assert!(super::modes(b"[]").is_empty());
    }
}
