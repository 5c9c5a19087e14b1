//! `GET|PUT /api/v1/bots/{bot}/settings`: a bot's name, time zone and session
//! timeout. Stored beside the log (every node reads the same); a change of zone or
//! timeout makes every node recount that bot's figures from the log.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_aggregator::BotSettings;
use botwatch_event::schema::WHITE_SPACE;
use botwatch_log::SettingsStore;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tracing::{info, instrument};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::vault::{MASK, Vault};

/// Characters of a bot's display name.
const BOT_NAME_CHARS: usize = 128;
/// Hand-off phrases, and characters of each once trimmed.
const MAX_HANDOFF_PHRASES: usize = 50;
const HANDOFF_PHRASE_CHARS: usize = 64;
/// Characters of a secret (printable ASCII).
const SECRET_CHARS: std::ops::RangeInclusive<usize> = 1..=256;
/// Bytes of a webhook or forward address.
const MAX_ADDRESS_BYTES: usize = 2048;
/// [`is_measurement_id`].
const MEASUREMENT_ID_PATTERN: &str = "^G-[A-Z0-9]{4,20}$";
/// The addresses the document states for [`is_webhook_url`]: http(s), a host name
/// (its last label starting with a letter, as a WHATWG parser would otherwise read
/// the host as an IPv4 address), a port, then printable ASCII. The server takes more
/// (IP addresses, other characters the parser encodes), never less.
const ADDRESS_PATTERN: &str = concat!(
    r"^https?://(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?\.)*",
    r"[A-Za-z](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?::[0-9]{1,4})?(?:[/?#][!-~]*)?$"
);

pub const DEFAULT_TIMEOUT_SECS: u64 = 30 * 60;
pub const MIN_TIMEOUT_SECS: u64 = 60;
pub const MAX_TIMEOUT_SECS: u64 = 7 * 24 * 3600;

/// The stored settings of a bot. The API answers with the same shape, secrets masked
/// ([`SettingsDoc::view`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SettingsDoc {
    pub name: Option<String>,
    pub timezone: String,
    pub session_timeout_secs: u64,
    /// Where botwatch POSTs what the bot must learn of (`mode_changed`), signed.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The key of the webhook's HMAC-SHA256 signature, sealed (see `vault`).
    #[serde(default)]
    pub webhook_secret: Option<String>,
    #[serde(default)]
    pub channels: Channels,
    /// What users write when they want a person (whole words, any case); `null`: the
    /// defaults (`handoff::DEFAULT_PHRASES`).
    #[serde(default)]
    pub handoff_phrases: Option<Vec<String>>,
    #[serde(default)]
    pub integrations: Integrations,
}

/// The providers botwatch talks to itself for this bot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Channels {
    #[serde(default)]
    pub telegram: TelegramChannel,
    #[serde(default)]
    pub webchat: WebChatSettings,
}

/// The web chat botwatch serves for the bot at `/chat/{bot}` (off unless enabled: the
/// page lets anyone write to the bot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WebChatSettings {
    #[serde(default)]
    pub enabled: bool,
}

/// Telegram, built in (API.md → Telegram, built in).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TelegramChannel {
    /// The bot's Bot API token, sealed: operator messages go out with it, and the Bot
    /// API proxy admits only requests made with it.
    #[serde(default)]
    pub token: Option<String>,
    /// What Telegram sends as `X-Telegram-Bot-Api-Secret-Token` (set it as
    /// `secret_token` in `setWebhook`), sealed.
    #[serde(default)]
    pub webhook_secret: Option<String>,
    /// The bot's own webhook: updates of users in Auto are passed on to it unchanged.
    #[serde(default)]
    pub forward_url: Option<String>,
}

/// Where a bot's events are forwarded (the forwarding itself comes with its issue).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Integrations {
    pub google_analytics: GoogleAnalytics,
    pub mixpanel: Mixpanel,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GoogleAnalytics {
    pub measurement_id: Option<String>,
    /// Sealed (see `vault`).
    pub api_secret: Option<String>,
    pub active: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Mixpanel {
    /// The project token, sealed.
    pub token: Option<String>,
    pub active: bool,
}

/// The body of `PUT …/settings`: the fields to change, each as [`merge`] takes it.
pub struct SettingsChange;

impl utoipa::PartialSchema for SettingsChange {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use crate::openapi::rules::{or_null, with_keyword, word};
        use utoipa::openapi::schema::{
            AdditionalProperties, AnyOfBuilder, ArrayBuilder, ObjectBuilder, SchemaType, Type,
        };
        let closed =
            |o: ObjectBuilder| o.additional_properties(Some(AdditionalProperties::FreeForm(false)));
        let flag = || ObjectBuilder::new().schema_type(Type::Boolean);
        let address = || {
            or_null(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(MAX_ADDRESS_BYTES))
                    .pattern(Some(ADDRESS_PATTERN)),
            )
            .description(Some(
                "An http:// or https:// address with a host name, or null (the document \
                 states host names and printable ASCII; the server takes any address a \
                 WHATWG URL parser does, of up to 2,048 bytes)",
            ))
        };
        let secret = || {
            AnyOfBuilder::new()
                .item(ObjectBuilder::new().schema_type(Type::Null))
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(format!(
                            "^[!-~]{{{},{}}}$",
                            SECRET_CHARS.start(),
                            SECRET_CHARS.end()
                        ))),
                )
                .item(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(format!("^{}", MASK.replace('*', r"\*")))),
                )
                .description(Some(
                    "1 to 256 printable ASCII characters, sealed when stored; null clears \
                     it; the masked value as answered keeps the stored one",
                ))
        };
        // What refuses a setting turned on together with its own credential set to null.
        let null_only = json!({"type": "null"});
        let google_analytics = with_keyword(
            closed(
                ObjectBuilder::new()
                    .property(
                        "measurement_id",
                        or_null(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .pattern(Some(MEASUREMENT_ID_PATTERN)),
                        ),
                    )
                    .property("api_secret", secret())
                    .property("active", flag()),
            ),
            "not",
            json!({
                "properties": {"active": {"const": true}},
                "required": ["active"],
                "anyOf": [
                    {"properties": {"measurement_id": null_only.clone()}, "required": ["measurement_id"]},
                    {"properties": {"api_secret": null_only.clone()}, "required": ["api_secret"]},
                ],
            }),
        );
        let mixpanel = with_keyword(
            closed(
                ObjectBuilder::new()
                    .property("token", secret())
                    .property("active", flag()),
            ),
            "not",
            json!({
                "properties": {"active": {"const": true}, "token": null_only.clone()},
                "required": ["active", "token"],
            }),
        );
        let telegram = closed(
            ObjectBuilder::new()
                .property("token", secret())
                .property("webhook_secret", secret())
                .property("forward_url", address()),
        );
        let phrase = ObjectBuilder::new().schema_type(Type::String).pattern(Some(format!(
            r"^[{WHITE_SPACE}]*[^{WHITE_SPACE}](?:[\s\S]{{0,{}}}[^{WHITE_SPACE}])?[{WHITE_SPACE}]*$",
            HANDOFF_PHRASE_CHARS - 2
        )));
        let zones: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
        let change = closed(
            ObjectBuilder::new()
                .property(
                    "name",
                    or_null(crate::openapi::rules::text(&(1..=BOT_NAME_CHARS))),
                )
                .property(
                    "timezone",
                    word(&zones).description(Some("An IANA time zone name, as written there")),
                )
                .property(
                    "session_timeout_secs",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .minimum(Some(MIN_TIMEOUT_SECS))
                        .maximum(Some(MAX_TIMEOUT_SECS))
                        .description(Some("Written as an integer: 600, not 600.0")),
                )
                .property("webhook_url", address())
                .property("webhook_secret", secret())
                .property(
                    "handoff_phrases",
                    ArrayBuilder::new()
                        .schema_type(SchemaType::Array(vec![Type::Array, Type::Null]))
                        .items(phrase)
                        .max_items(Some(MAX_HANDOFF_PHRASES))
                        .description(Some(
                        "Up to 50 phrases of 1 to 64 characters once trimmed; null: the defaults",
                    )),
                )
                .property(
                    "channels",
                    closed(
                        ObjectBuilder::new()
                            .property("telegram", telegram)
                            .property(
                                "webchat",
                                closed(ObjectBuilder::new().property("enabled", flag())),
                            ),
                    ),
                )
                .property(
                    "integrations",
                    closed(
                        ObjectBuilder::new()
                            .property("google_analytics", google_analytics)
                            .property("mixpanel", mixpanel),
                    ),
                ),
        );
        with_keyword(
            change,
            "not",
            json!({
                "properties": {"webhook_url": {"type": "string"}, "webhook_secret": null_only.clone()},
                "required": ["webhook_url", "webhook_secret"],
            }),
        )
        .description(Some(
            "The fields to change (any subset). A service turned on needs its credentials \
             and a webhook address its secret, given here or stored: 409 when neither has \
             them",
        ))
        .into()
    }
}

impl utoipa::ToSchema for SettingsChange {}

pub(crate) const GA_SECRET: &str = "integrations.google_analytics.api_secret";
pub(crate) const WEBHOOK_SECRET: &str = "webhook_secret";
pub(crate) const MIXPANEL_TOKEN: &str = "integrations.mixpanel.token";
pub(crate) const TELEGRAM_TOKEN: &str = "channels.telegram.token";
pub(crate) const TELEGRAM_SECRET: &str = "channels.telegram.webhook_secret";

impl Default for SettingsDoc {
    fn default() -> Self {
        SettingsDoc {
            name: None,
            timezone: "UTC".to_owned(),
            session_timeout_secs: DEFAULT_TIMEOUT_SECS,
            webhook_url: None,
            webhook_secret: None,
            channels: Channels::default(),
            handoff_phrases: None,
            integrations: Integrations::default(),
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

    /// The document as the API shows it: secrets masked.
    pub fn view(&self, vault: &Vault, bot: &str) -> SettingsDoc {
        let mut view = self.clone();
        view.webhook_secret = view
            .webhook_secret
            .as_deref()
            .map(|s| vault.masked(bot, WEBHOOK_SECRET, s));
        let tg = &mut view.channels.telegram;
        tg.token = tg
            .token
            .as_deref()
            .map(|s| vault.masked(bot, TELEGRAM_TOKEN, s));
        tg.webhook_secret = tg
            .webhook_secret
            .as_deref()
            .map(|s| vault.masked(bot, TELEGRAM_SECRET, s));
        let ga = &mut view.integrations.google_analytics;
        ga.api_secret = ga
            .api_secret
            .as_deref()
            .map(|s| vault.masked(bot, GA_SECRET, s));
        let mp = &mut view.integrations.mixpanel;
        mp.token = mp
            .token
            .as_deref()
            .map(|s| vault.masked(bot, MIXPANEL_TOKEN, s));
        view
    }
}

/// Where a merge seals the secrets it is given.
struct Sealing<'a> {
    vault: &'a Vault,
    bot: &'a str,
}

impl Sealing<'_> {
    /// A secret field's new stored value: `None` to leave it (a masked value sent back),
    /// `Some(None)` to clear it (null), `Some(Some(sealed))` for a new secret.
    fn secret(&self, field: &str, value: Value) -> Result<Option<Option<String>>, ApiError> {
        match value {
            Value::Null => Ok(Some(None)),
            Value::String(s) if s.starts_with(MASK) => Ok(None),
            Value::String(s)
                if SECRET_CHARS.contains(&s.len()) && s.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Ok(Some(Some(self.vault.seal(self.bot, field, &s)?)))
            }
            _ => Err(ApiError::bad_parameter(
                field,
                "1 to 256 printable ASCII characters, or null",
            )),
        }
    }
}

fn flag(field: &str, value: Value) -> Result<bool, ApiError> {
    value
        .as_bool()
        .ok_or_else(|| ApiError::bad_parameter(field, "true or false"))
}

fn object(field: &str, value: Value) -> Result<Map<String, Value>, ApiError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(ApiError::bad_parameter(field, "an object")),
    }
}

/// Merges `integrations` of a PUT body: each service's fields given replace the stored
/// ones; a service is active only with what it needs.
fn merge_integrations(
    doc: &mut Integrations,
    body: Map<String, Value>,
    sealing: &Sealing,
) -> Result<(), ApiError> {
    for (service, value) in body {
        let at = format!("integrations.{service}");
        match service.as_str() {
            "google_analytics" => {
                merge_google_analytics(&mut doc.google_analytics, object(&at, value)?, sealing)?
            }
            "mixpanel" => merge_mixpanel(&mut doc.mixpanel, object(&at, value)?, sealing)?,
            _ => {
                return Err(ApiError::bad_parameter(
                    &at,
                    "unknown service (google_analytics, mixpanel)",
                ));
            }
        }
    }
    Ok(())
}

/// Merges `channels` of a PUT body: the fields given replace the stored ones.
fn merge_channels(
    doc: &mut Channels,
    body: Map<String, Value>,
    sealing: &Sealing,
) -> Result<(), ApiError> {
    for (provider, value) in body {
        let at = format!("channels.{provider}");
        if provider == "webchat" {
            for (field, value) in object(&at, value)? {
                let at = format!("channels.webchat.{field}");
                match field.as_str() {
                    "enabled" => doc.webchat.enabled = flag(&at, value)?,
                    _ => return Err(ApiError::bad_parameter(&at, "unknown setting")),
                }
            }
            continue;
        }
        if provider != "telegram" {
            return Err(ApiError::bad_parameter(
                &at,
                "unknown channel (telegram, webchat)",
            ));
        }
        let tg = &mut doc.telegram;
        for (field, value) in object(&at, value)? {
            let at = format!("channels.telegram.{field}");
            match (field.as_str(), value) {
                ("token", value) => {
                    if let Some(new) = sealing.secret(TELEGRAM_TOKEN, value)? {
                        tg.token = new;
                    }
                }
                ("webhook_secret", value) => {
                    if let Some(new) = sealing.secret(TELEGRAM_SECRET, value)? {
                        tg.webhook_secret = new;
                    }
                }
                ("forward_url", Value::Null) => tg.forward_url = None,
                ("forward_url", Value::String(s)) if is_webhook_url(&s) => tg.forward_url = Some(s),
                ("forward_url", _) => {
                    return Err(ApiError::bad_parameter(
                        &at,
                        "an http:// or https:// address of at most 2,048 characters, or null",
                    ));
                }
                _ => return Err(ApiError::bad_parameter(&at, "unknown setting")),
            }
        }
    }
    Ok(())
}

fn merge_google_analytics(
    ga: &mut GoogleAnalytics,
    body: Map<String, Value>,
    sealing: &Sealing,
) -> Result<(), ApiError> {
    for (field, value) in body {
        let at = format!("integrations.google_analytics.{field}");
        match (field.as_str(), value) {
            ("measurement_id", Value::Null) => ga.measurement_id = None,
            ("measurement_id", Value::String(id)) if is_measurement_id(&id) => {
                ga.measurement_id = Some(id)
            }
            ("measurement_id", _) => {
                return Err(ApiError::bad_parameter(
                    &at,
                    "a GA4 measurement id like G-XXXXXXX, or null",
                ));
            }
            ("api_secret", value) => {
                if let Some(new) = sealing.secret(GA_SECRET, value)? {
                    ga.api_secret = new;
                }
            }
            ("active", value) => ga.active = flag(&at, value)?,
            _ => return Err(ApiError::bad_parameter(&at, "unknown setting")),
        }
    }
    Ok(())
}

fn merge_mixpanel(
    mp: &mut Mixpanel,
    body: Map<String, Value>,
    sealing: &Sealing,
) -> Result<(), ApiError> {
    for (field, value) in body {
        let at = format!("integrations.mixpanel.{field}");
        match field.as_str() {
            "token" => {
                if let Some(new) = sealing.secret(MIXPANEL_TOKEN, value)? {
                    mp.token = new;
                }
            }
            "active" => mp.active = flag(&at, value)?,
            _ => return Err(ApiError::bad_parameter(&at, "unknown setting")),
        }
    }
    Ok(())
}

/// A setting that needs others `doc` lacks, and what it needs: an active service its
/// credentials, a webhook address the secret its calls are signed with.
fn unmet_need(doc: &SettingsDoc) -> Option<(&'static str, &'static str)> {
    let ga = &doc.integrations.google_analytics;
    if ga.active && (ga.measurement_id.is_none() || ga.api_secret.is_none()) {
        return Some((
            "integrations.google_analytics.active",
            "needs measurement_id and api_secret",
        ));
    }
    let mp = &doc.integrations.mixpanel;
    if mp.active && mp.token.is_none() {
        return Some(("integrations.mixpanel.active", "needs token"));
    }
    if doc.webhook_url.is_some() && doc.webhook_secret.is_none() {
        return Some((
            "webhook_secret",
            "is required with webhook_url: every call to the webhook is signed with it",
        ));
    }
    None
}

/// Whether a PUT's `fields` lack what they need by themselves (a service turned on
/// with its credential set to null, an address with a null secret): merged into a
/// document that has everything, a need is still unmet. Otherwise an unmet need is
/// the stored settings' ([`put`] answers 409 then, 400 for the body's own).
fn fields_lack_a_need(fields: &Map<String, Value>, sealing: &Sealing) -> bool {
    let present = || Some(String::from("present"));
    let mut everything = SettingsDoc {
        webhook_secret: present(),
        integrations: Integrations {
            google_analytics: GoogleAnalytics {
                measurement_id: present(),
                api_secret: present(),
                active: false,
            },
            mixpanel: Mixpanel {
                token: present(),
                active: false,
            },
        },
        ..SettingsDoc::default()
    };
    merge(&mut everything, fields.clone(), sealing).is_ok() && unmet_need(&everything).is_some()
}

/// `G-` and 4 to 20 upper-case letters or digits.
fn is_measurement_id(id: &str) -> bool {
    id.strip_prefix("G-").is_some_and(|rest| {
        (4..=20).contains(&rest.len())
            && rest
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    })
}

/// An absolute http(s) address with a host.
fn is_webhook_url(s: &str) -> bool {
    s.len() <= MAX_ADDRESS_BYTES
        && reqwest::Url::parse(s)
            .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// Merges the fields of a PUT body into `doc`, naming the first field at fault.
fn merge(
    doc: &mut SettingsDoc,
    body: Map<String, Value>,
    sealing: &Sealing,
) -> Result<(), ApiError> {
    for (field, value) in body {
        match (field.as_str(), value) {
            ("webhook_url", Value::Null) => doc.webhook_url = None,
            ("webhook_url", Value::String(s)) if is_webhook_url(&s) => doc.webhook_url = Some(s),
            ("webhook_url", _) => {
                return Err(ApiError::bad_parameter(
                    "webhook_url",
                    "an http:// or https:// address of at most 2,048 characters, or null",
                ));
            }
            ("webhook_secret", value) => {
                if let Some(secret) = sealing.secret(WEBHOOK_SECRET, value)? {
                    doc.webhook_secret = secret;
                }
            }
            ("handoff_phrases", Value::Null) => doc.handoff_phrases = None,
            ("handoff_phrases", Value::Array(items))
                if items.len() <= MAX_HANDOFF_PHRASES
                    && items.iter().all(|p| {
                        p.as_str().is_some_and(|p| {
                            (1..=HANDOFF_PHRASE_CHARS).contains(&p.trim().chars().count())
                        })
                    }) =>
            {
                doc.handoff_phrases = Some(
                    items
                        .iter()
                        .filter_map(|p| p.as_str().map(|p| p.trim().to_owned()))
                        .collect(),
                )
            }
            ("handoff_phrases", _) => {
                return Err(ApiError::bad_parameter(
                    "handoff_phrases",
                    "at most 50 phrases of 1 to 64 characters, or null for the defaults",
                ));
            }
            ("channels", value) => {
                merge_channels(&mut doc.channels, object("channels", value)?, sealing)?
            }
            ("integrations", value) => merge_integrations(
                &mut doc.integrations,
                object("integrations", value)?,
                sealing,
            )?,
            ("name", Value::Null) => doc.name = None,
            ("name", Value::String(s)) if (1..=BOT_NAME_CHARS).contains(&s.chars().count()) => {
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
#[utoipa::path(get, operation_id = "settings_get", path = "/api/v1/bots/{bot}/settings", tag = "settings", params(("bot" = String, Path, description = "The bot (a slug)")), responses((status = 200, body = crate::settings::SettingsDoc, description = "Secrets masked"), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    Path(bot): Path<String>,
) -> Result<Json<SettingsDoc>, ApiError> {
    if let Some(doc) = stored(&state, &bot).await? {
        return Ok(Json(doc.view(&state.vault, &bot)));
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
#[utoipa::path(put, operation_id = "settings_put", path = "/api/v1/bots/{bot}/settings", tag = "settings", params(("bot" = String, Path, description = "The bot (a slug)")), request_body(content = crate::settings::SettingsChange, description = "The fields to change (any subset)"), responses((status = 200, body = crate::settings::SettingsDoc), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
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
        let sealing = Sealing {
            vault: &state.vault,
            bot: &bot,
        };
        merge(&mut doc, fields.clone(), &sealing)?;
        if let Some((field, need)) = unmet_need(&doc) {
            if fields_lack_a_need(&fields, &sealing) {
                return Err(ApiError::bad_parameter(field, need));
            }
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "unmet_need",
                format!("{field}: {need}; neither this request nor the stored settings give it"),
            ));
        }
        let json = serde_json::to_string(&doc).unwrap_or_default();
        if state
            .log
            .put_settings(&bot, current.as_deref(), &json)
            .await?
        {
            info!(bot, timezone = %doc.timezone, timeout = doc.session_timeout_secs, "settings changed");
            state.handoff_phrases.forget(&bot);
            // An integration turned on for the first time forwards from this moment
            // on; one turned on again goes on where it stopped (nothing dropped; GA4
            // still refuses what is older than 72 hours).
            let i = &doc.integrations;
            for (service, active) in [
                (
                    crate::forward::Service::GoogleAnalytics,
                    i.google_analytics.active,
                ),
                (crate::forward::Service::Mixpanel, i.mixpanel.active),
            ] {
                if active {
                    crate::forward::start_from_now(&state, service, &bot).await?;
                }
            }
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
            return Ok(Json(doc.view(&state.vault, &bot)));
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
        merged_into(SettingsDoc::default(), body, &Vault::with_key(&[3; 32]))
    }

    fn merged_into(
        mut doc: SettingsDoc,
        body: Value,
        vault: &Vault,
    ) -> Result<SettingsDoc, ApiError> {
        let Value::Object(map) = body else {
            panic!("object")
        };
        let sealing = Sealing { vault, bot: "shop" };
        merge(&mut doc, map, &sealing).map(|()| doc)
    }

    #[test]
    fn analytics_secrets_are_sealed_masked_and_kept_when_sent_back_masked() {
        let vault = Vault::with_key(&[3; 32]);
        let doc = merged(serde_json::json!({"integrations": {"google_analytics": {
            "measurement_id": "G-ABC123", "api_secret": "secret-value-9876", "active": true}}}))
        .expect("valid");
        let stored = serde_json::to_string(&doc).expect("json");
        assert!(!stored.contains("secret-value"), "{stored}");
        let view = doc.view(&vault, "shop");
        assert_eq!(
            view.integrations.google_analytics.api_secret.as_deref(),
            Some("********9876")
        );
        // The form sends the masked value back: the secret stays.
        let again = merged_into(
            doc.clone(),
            serde_json::json!({"integrations": {"google_analytics": {"api_secret": "********9876", "active": false}}}),
            &vault,
        )
        .expect("valid");
        assert_eq!(
            again.integrations.google_analytics.api_secret,
            doc.integrations.google_analytics.api_secret
        );
        assert!(!again.integrations.google_analytics.active);
        // Active needs what the service needs; ids and names are checked.
        let active = merged(serde_json::json!({"integrations": {"mixpanel": {"active": true}}}))
            .expect("a valid body");
        assert!(unmet_need(&active).is_some());
        assert!(merged(serde_json::json!({"integrations": {"google_analytics": {"measurement_id": "UA-1"}}})).is_err());
        assert!(merged(serde_json::json!({"integrations": {"segment": {}}})).is_err());
        // Without a key, secrets are refused rather than stored in clear.
        let e = merged_into(
            SettingsDoc::default(),
            serde_json::json!({"integrations": {"mixpanel": {"token": "0123456789abcdef"}}}),
            &Vault::closed(),
        )
        .expect_err("no key");
        assert_eq!(e.code, "no_secret_key");
    }

    #[test]
    fn the_telegram_token_and_secret_are_sealed_and_masked() {
        let vault = Vault::with_key(&[3; 32]);
        let token = "123456:AAE-telegram-token_example";
        let doc = merged(serde_json::json!({"channels": {"telegram": {
            "token": token, "webhook_secret": "s3cret-path", "forward_url": "https://bot.example/hook"
        }}}))
        .expect("valid");
        let tg = &doc.channels.telegram;
        let sealed = tg.token.as_deref().expect("stored");
        assert!(!sealed.contains(token), "stored sealed");
        assert_eq!(
            vault.open("shop", TELEGRAM_TOKEN, sealed).as_deref(),
            Some(token)
        );
        let view = doc.view(&vault, "shop");
        let shown = serde_json::to_string(&view).expect("json");
        assert!(
            !shown.contains(token) && !shown.contains("s3cret-path"),
            "{shown}"
        );
        assert_eq!(
            view.channels.telegram.forward_url.as_deref(),
            Some("https://bot.example/hook")
        );
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
        let e = merged(serde_json::json!({"channels": {"viber": {}}})).expect_err("unknown");
        assert!(e.message.contains("channels.viber"), "{}", e.message);
        let e = merged(serde_json::json!({"channels": {"telegram": {"forward_url": "x"}}}))
            .expect_err("not an address");
        assert!(e.message.contains("forward_url"), "{}", e.message);
        let e = merged(serde_json::json!({"webhook_url": "ftp://x"})).expect_err("not http");
        assert!(e.message.contains("webhook_url"), "{}", e.message);
        let e = merged(serde_json::json!({"webhook_url": "javascript:alert(1)"}))
            .expect_err("not http");
        assert!(e.message.contains("webhook_url"), "{}", e.message);
        assert!(merged(serde_json::json!({"colour": "red"})).is_err());
    }
}
