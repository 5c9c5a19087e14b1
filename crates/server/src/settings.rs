//! `GET|PUT /api/v1/bots/{bot}/settings`: a bot's name, time zone and session
//! timeout. Stored beside the log (every node reads the same); a change of zone or
//! timeout makes every node recount that bot's figures from the log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_aggregator::BotSettings;
use botwatch_log::SettingsStore;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tracing::{info, instrument};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;

pub const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;
pub const MIN_TIMEOUT_SECS: u64 = 60;
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// The stored settings of a bot (the shape the API answers with).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsDoc {
    pub name: Option<String>,
    pub timezone: String,
    pub session_timeout_secs: u64,
}

impl Default for SettingsDoc {
    fn default() -> Self {
        SettingsDoc {
            name: None,
            timezone: "UTC".to_owned(),
            session_timeout_secs: DEFAULT_TIMEOUT_SECS,
        }
    }
}

impl SettingsDoc {
    /// What the figures depend on; `None` when the stored document is unusable.
    pub fn figures(&self) -> Option<BotSettings> {
        if !(MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&self.session_timeout_secs) {
            return None;
        }
        Some(BotSettings {
            tz: self.timezone.parse::<Tz>().ok()?,
            session_timeout_ms: i64::try_from(self.session_timeout_secs)
                .ok()?
                .checked_mul(1000)?,
        })
    }

    pub fn parse(json: &str) -> Option<SettingsDoc> {
        serde_json::from_str(json).ok()
    }
}

/// Fields of API.md's settings that later issues implement.
const NOT_YET: [&str; 3] = ["webhook_url", "channels", "integrations"];

/// Merges the fields of a PUT body into `doc`, naming the first field at fault.
fn merge(doc: &mut SettingsDoc, body: Map<String, Value>) -> Result<(), ApiError> {
    for (field, value) in body {
        match (field.as_str(), value) {
            ("name", Value::Null) => doc.name = None,
            ("name", Value::String(s)) if (1..=128).contains(&s.chars().count()) => {
                doc.name = Some(s)
            }
            ("name", _) => {
                return Err(ApiError::bad_parameter(
                    "name",
                    "1 to 128 characters, or null",
                ));
            }
            ("timezone", Value::String(s)) if s.parse::<Tz>().is_ok() => doc.timezone = s,
            ("timezone", _) => {
                return Err(ApiError::bad_parameter(
                    "timezone",
                    "an IANA time zone name, e.g. Europe/Kyiv",
                ));
            }
            ("session_timeout_secs", Value::Number(n))
                if n.as_u64()
                    .is_some_and(|n| (MIN_TIMEOUT_SECS..=MAX_TIMEOUT_SECS).contains(&n)) =>
            {
                doc.session_timeout_secs = n.as_u64().unwrap_or(DEFAULT_TIMEOUT_SECS)
            }
            ("session_timeout_secs", _) => {
                return Err(ApiError::bad_parameter(
                    "session_timeout_secs",
                    format!(
                        "a whole number of seconds from {MIN_TIMEOUT_SECS} to {MAX_TIMEOUT_SECS}"
                    ),
                ));
            }
            (f, _) if NOT_YET.contains(&f) => {
                return Err(ApiError::bad_parameter(f, "not supported yet"));
            }
            (f, _) => return Err(ApiError::bad_parameter(f, "unknown setting")),
        }
    }
    Ok(())
}

async fn stored(state: &AppState, bot: &str) -> Result<Option<SettingsDoc>, ApiError> {
    Ok(state
        .log
        .settings(bot)
        .await?
        .map(|json| SettingsDoc::parse(&json).unwrap_or_default()))
}

/// The settings of a bot that has events or settings.
#[instrument(name = "settings.get", skip(state))]
pub async fn get(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Json<SettingsDoc>, ApiError> {
    if let Some(doc) = stored(&state, &bot).await? {
        return Ok(Json(doc));
    }
    let b = bot.clone();
    let known = state
        .aggregator
        .query(move |a| a.bot(&b).is_some())
        .await
        .unwrap_or(false);
    if known {
        Ok(Json(SettingsDoc::default()))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no bot {bot:?}"),
        ))
    }
}

/// How many times a PUT merges again after another change came first.
const MAX_ATTEMPTS: usize = 20;

/// Merges the fields given; creates the bot when it does not exist yet. Two PUTs at
/// once both take effect: each merges into the document the other stored.
#[instrument(name = "settings.put", skip(state, principal, body))]
pub async fn put(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(bot): Path<String>,
    body: Bytes,
) -> Result<Json<SettingsDoc>, ApiError> {
    let fields: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("expected a JSON object of settings: {e}"),
        )
    })?;
    // Read, merge, store if nobody changed them meanwhile; else again with theirs.
    for _ in 0..MAX_ATTEMPTS {
        let current = state.log.settings(&bot).await?;
        let mut doc = current
            .as_deref()
            .map(|json| SettingsDoc::parse(json).unwrap_or_default())
            .unwrap_or_default();
        merge(&mut doc, fields.clone())?;
        let json = serde_json::to_string(&doc).unwrap_or_default();
        if state
            .log
            .put_settings(&bot, current.as_deref(), &json)
            .await?
        {
            info!(bot, timezone = %doc.timezone, timeout = doc.session_timeout_secs, "settings changed");
            // The names of the fields, never their values (some are secrets).
            let changed: Vec<&String> = fields.keys().collect();
            crate::session::audit(
                &state,
                &principal,
                "settings.update",
                Some(&bot),
                serde_json::json!({ "fields": changed }),
            )
            .await?;
            return Ok(Json(doc));
        }
    }
    Err(ApiError::new(
        StatusCode::CONFLICT,
        "conflict",
        "the settings kept changing under this request; send it again",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(body: Value) -> Result<SettingsDoc, ApiError> {
        let mut doc = SettingsDoc::default();
        let Value::Object(map) = body else {
            panic!("object")
        };
        merge(&mut doc, map).map(|()| doc)
    }

    #[test]
    fn settings_are_checked_field_by_field() {
        let doc =
            merged(serde_json::json!({"timezone": "Europe/Kyiv", "session_timeout_secs": 600}))
                .expect("valid");
        assert_eq!(doc.figures().map(|f| f.session_timeout_ms), Some(600_000));
        assert!(merged(serde_json::json!({"timezone": "Mars/Olympus"})).is_err());
        assert!(merged(serde_json::json!({"session_timeout_secs": 5})).is_err());
        assert!(merged(serde_json::json!({"session_timeout_secs": 1.5})).is_err());
        let e = merged(serde_json::json!({"webhook_url": "https://x"})).expect_err("not yet");
        assert!(e.message.contains("not supported yet"), "{}", e.message);
        assert!(merged(serde_json::json!({"colour": "red"})).is_err());
    }
}
