//! Operator messages: `POST /api/v1/bots/{bot}/dialogs/{user}/messages` records one as
//! an outbound message (`sender` operator, `delivery` pending) and this module delivers
//! it through the user's channel, then records the outcome as a `delivery` event.
//!
//! Once, whichever node or restart would send it:
//! - a message is sent only by whoever first claims `outbox:{bot}:{id}` in the storage
//!   (a durable first-come claim, shared by every node);
//! - the node that took the message sends it at once; every node's sweeper looks every
//!   few seconds for messages still pending ([`SWEEP_EVERY`], older than
//!   [`SWEEP_AFTER`]) and sends those nobody claimed (a node stopped between recording
//!   and claiming);
//! - a message claimed but without an outcome long after any delivery ends (its node
//!   stopped while sending) is recorded as failed, saying it may have reached the user:
//!   it is never sent twice;
//! - the outcome's event id is `delivery-{message id}`, so the log keeps one outcome
//!   per message even when two nodes record one.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, FromRequest, Multipart, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use botwatch_event::{Delivery, DeliveryState, Event, EventKind, Limits, Mode};
use botwatch_log::{Claim, ClaimStore, EventLog, FileStore, StoredFile};
use serde_json::{Value, json};
use tracing::{Instrument, info, info_span, instrument, warn};

use crate::AppState;
use crate::auth::Principal;
use crate::channels::{self, Channel, Outgoing, Undelivered};
use crate::error::ApiError;
use crate::figures::stopped;
use crate::history::Message;

/// The largest file an operator may send (Telegram bots upload at most 50 MB).
pub const MAX_FILE_BYTES: usize = 20 * 1024 * 1024;
/// How often every node looks for operator messages nobody is delivering.
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// Messages one sweep sends at once.
const SWEEP_AT_ONCE: usize = 16;
/// A message this old and still pending is the sweeper's to send.
pub const SWEEP_AFTER: Duration = Duration::from_secs(10);
/// A claimed message without an outcome this long after its claim was interrupted.
const INTERRUPTED_AFTER: Duration =
    Duration::from_secs(channels::telegram::GIVE_UP_AFTER.as_secs() + 60);
/// How long the answer waits for this node's figures to show the message.
const APPLIED_WITHIN: Duration = Duration::from_secs(3);
/// Where stored files are served.
const FILES_PATH: &str = "/api/v1/files/";

/// Records an operator message to `user` and delivers it; answers the message as the
/// history shows it (`delivery` pending, then `sent` or `failed` on the live topic).
#[instrument(name = "operator_message", skip(state, principal, request))]
#[utoipa::path(post, operation_id = "operator_message", path = "/api/v1/bots/{bot}/dialogs/{user}/messages", tag = "dialogs",
    params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id")),
    request_body(content = crate::outbox::OperatorMessage, description = "JSON `{\"text\"}` or `{\"card\"}`, or multipart/form-data with a `file` part (and an optional `text` caption)"),
    responses((status = 202, body = crate::history::Message), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody)))]
pub async fn send(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bot, user)): Path<(String, String)>,
    request: Request,
) -> Result<(StatusCode, Json<Message>), ApiError> {
    let known = crate::figures::known_user(&state, &bot, &user).await?;
    if known.mode != Mode::Manual {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "not_manual",
            "the dialog is in Auto mode: switch it to Manual first, so the bot stays silent",
        ));
    }
    let client = crate::client::Client::of(
        request.extensions(),
        request.headers(),
        &state.trusted_proxies,
    );
    let base = public_base(&state, request.headers(), client);
    let content = content(&state, request, &base).await?;
    let provider = known.provider.unwrap_or_else(|| "botwatch".to_owned());
    let id = format!("op-{}", uuid::Uuid::now_v7());
    let event = message_event(
        &state,
        &principal.actor(),
        (&bot, &user, &provider),
        id,
        None,
        content,
    )?;
    state.log.append(vec![event.clone()]).await?;
    info!(
        bot,
        user,
        id = event.id,
        operator = principal.actor(),
        "operator message recorded"
    );
    // Recorded: it goes out whatever happens to this request from here on.
    deliver_soon(&state, event.clone());
    crate::session::audit(
        &state,
        &principal,
        "dialog.message",
        Some(&bot),
        json!({ "user": user, "message": event.id }),
    )
    .await?;
    wait_until_applied(&state, &bot, &event.id).await?;
    Ok((StatusCode::ACCEPTED, Json(Message::from(event))))
}

/// What an operator sends, as JSON (a file comes as multipart/form-data).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorMessage {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub card: Option<botwatch_event::Card>,
}

impl utoipa::PartialSchema for OperatorMessage {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, AllOfBuilder, ObjectBuilder};
        let members =
            ObjectBuilder::new().additional_properties(Some(AdditionalProperties::FreeForm(false)));
        AllOfBuilder::new()
            .item(message_members(members))
            .item(message_content())
            .into()
    }
}

impl utoipa::ToSchema for OperatorMessage {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((
            botwatch_event::schema::OperatorCard::name().into_owned(),
            botwatch_event::schema::OperatorCard::schema(),
        ));
    }
}

/// `text` and `card` of an operator's message (or a broadcast's), added to `members`.
pub(crate) fn message_members(
    members: utoipa::openapi::schema::ObjectBuilder,
) -> utoipa::openapi::schema::ObjectBuilder {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    let max_text = Limits::default().max_text_bytes;
    members
        .property("text", botwatch_event::schema::message_text(max_text))
        .property(
            "card",
            AnyOfBuilder::new()
                .item(utoipa::openapi::Ref::from_schema_name("OperatorCard"))
                .item(ObjectBuilder::new().schema_type(Type::Null)),
        )
}

/// What [`message_event`] needs of an operator's message: text that is not all white
/// space, or a card.
pub(crate) fn message_content() -> utoipa::openapi::schema::AnyOfBuilder {
    use utoipa::openapi::schema::{AnyOfBuilder, ObjectBuilder, Type};
    AnyOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .property(
                    "text",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some(botwatch_event::schema::not_blank_pattern())),
                )
                .required("text"),
        )
        .item(crate::openapi::rules::given("card"))
        .description(Some("Text that is not all white space, or a card"))
}

/// The message's text and attachments, from JSON or from a multipart upload (the file
/// stored now).
async fn content(
    state: &AppState,
    request: Request,
    base: &str,
) -> Result<(Option<String>, Vec<Value>), ApiError> {
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !multipart {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::bad_parameter("body", e.body_text()))?;
        let OperatorMessage { text, card } = serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_message",
                format!(r#"expected {{"text":…}} or {{"card":{{"title",…}}}}: {e}"#),
            )
        })?;
        let mut attachments = Vec::new();
        if let Some(card) = card {
            let mut card = serde_json::to_value(card).unwrap_or_default();
            card["type"] = json!("card");
            attachments.push(card);
        }
        return Ok((text, attachments));
    }
    let mut form = Multipart::from_request(request, state)
        .await
        .map_err(|e| ApiError::bad_parameter("body", e.body_text()))?;
    let (mut text, mut file) = (None, None);
    while let Some(field) = form.next_field().await.map_err(multipart_error)? {
        match field.name() {
            Some("text") => text = Some(field.text().await.map_err(multipart_error)?),
            Some("file") => {
                let name = field
                    .file_name()
                    .map(clean_file_name)
                    .unwrap_or_else(|| "file".to_owned());
                let bytes = field.bytes().await.map_err(multipart_error)?;
                file = Some((name, bytes));
            }
            Some(other) => {
                return Err(ApiError::bad_parameter(other, "unknown part (file, text)"));
            }
            None => return Err(ApiError::bad_parameter("body", "a part without a name")),
        }
    }
    let Some((name, bytes)) = file else {
        return Err(ApiError::bad_parameter(
            "file",
            "a multipart message needs a file part",
        ));
    };
    if bytes.is_empty() {
        return Err(ApiError::bad_parameter("file", "is empty"));
    }
    if bytes.len() > MAX_FILE_BYTES {
        return Err(too_large());
    }
    let mime = sniff(&bytes);
    let id = uuid::Uuid::new_v4().simple().to_string();
    let size = bytes.len() as u64;
    let stored = StoredFile {
        name: name.clone(),
        mime: mime.clone(),
        bytes: bytes.to_vec(),
    };
    state.log.put_file(&id, &stored).await?;
    info!(id, name, mime, size, "operator file stored");
    let kind = if mime.starts_with("image/") {
        "image"
    } else {
        "file"
    };
    let url = format!("{base}{FILES_PATH}{id}");
    Ok((
        text,
        vec![json!({"type": kind, "url": url, "name": name, "mime": mime, "size": size})],
    ))
}

fn multipart_error(e: axum::extract::multipart::MultipartError) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return too_large();
    }
    ApiError::bad_parameter("body", e.body_text())
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "too_large",
        format!(
            "a file may have at most {} MiB",
            MAX_FILE_BYTES / (1024 * 1024)
        ),
    )
}

/// The file's type, from its bytes (never from its name or what the browser said).
pub(crate) fn sniff(bytes: &[u8]) -> String {
    match infer::get(bytes) {
        Some(kind) => kind.mime_type().to_owned(),
        None if std::str::from_utf8(bytes).is_ok() => "text/plain".to_owned(),
        None => "application/octet-stream".to_owned(),
    }
}

/// A file name fit to store and to put in a header: its last path part, without
/// control characters, at most 200 characters.
fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let clean: String = base
        .chars()
        .filter(|c| !c.is_control() && *c != '"')
        .take(200)
        .collect();
    if clean.trim().is_empty() {
        "file".to_owned()
    } else {
        clean
    }
}

/// The outbound message event (of `broadcast` when given), checked by the same rules
/// as any event in the log.
pub(crate) fn message_event(
    state: &AppState,
    operator: &str,
    (bot, user, provider): (&str, &str, &str),
    id: String,
    broadcast: Option<&str>,
    (text, attachments): (Option<String>, Vec<Value>),
) -> Result<Event, ApiError> {
    if text.as_deref().is_none_or(|t| t.trim().is_empty()) && attachments.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_message",
            "an operator message needs text, a card or a file",
        ));
    }
    let raw = json!({
        "id": id,
        "bot": bot,
        "type": "message",
        "direction": "out",
        "provider": provider,
        "user": {"id": user},
        "text": text,
        "attachments": attachments,
        "sender": {"kind": "operator", "id": operator},
        "delivery": {"state": "pending", "broadcast": broadcast},
    });
    botwatch_event::parse_event_value(raw, 0, chrono::Utc::now(), &own_limits(state))
        .map_err(|faults| refused("bad_message", &faults))
}

/// The rules botwatch's own events are read back with.
fn own_limits(state: &AppState) -> Limits {
    Limits {
        own_kinds: true,
        ..(*state.limits).clone()
    }
}

/// 400 (413 when too large) naming every fault.
fn refused(code: &'static str, faults: &[botwatch_event::FieldError]) -> ApiError {
    let said: Vec<String> = faults
        .iter()
        .map(|f| format!("{}: {}", f.field.as_deref().unwrap_or("event"), f.reason))
        .collect();
    let status = if faults
        .iter()
        .any(|f| f.problem == botwatch_event::Problem::TooLarge)
    {
        StatusCode::PAYLOAD_TOO_LARGE
    } else {
        StatusCode::BAD_REQUEST
    };
    ApiError::new(status, code, said.join("; "))
}

/// An event botwatch is about to write, checked by the rules the log's readers apply
/// (size, the payload's limits), so that what is appended is never refused when read
/// back: 400 or 413 for the request instead.
pub(crate) fn checked_own(state: &AppState, event: Event) -> Result<Event, ApiError> {
    botwatch_event::parse_event(
        event.to_json().as_bytes(),
        0,
        chrono::Utc::now(),
        &own_limits(state),
    )
    .map_err(|faults| refused("bad_request", &faults))?;
    Ok(event)
}

/// Waits (a bounded time) until this node's figures know the message, so the history
/// read next shows it with its delivery state.
async fn wait_until_applied(state: &AppState, bot: &str, id: &str) -> Result<(), ApiError> {
    let deadline = tokio::time::Instant::now() + APPLIED_WITHIN;
    loop {
        let (b, i) = (bot.to_owned(), id.to_owned());
        let known = state
            .aggregator
            .query(move |a| a.bot(&b).is_some_and(|f| f.delivery(&i).is_some()))
            .await
            .map_err(|_| stopped())?;
        if known || tokio::time::Instant::now() >= deadline {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Where this server is reached: `BOTWATCH_PUBLIC_URL`, else the request's `Host`
/// over http, or https when a trusted proxy says so (`X-Forwarded-Proto`). Stored file
/// addresses start with it.
pub(crate) fn public_base(
    state: &AppState,
    headers: &HeaderMap,
    client: crate::client::Client,
) -> String {
    if let Some(base) = &state.public_url {
        return base.trim_end_matches('/').to_owned();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or("localhost");
    let scheme = if client.https { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// The id of a file botwatch keeps, from its address.
pub fn file_id(url: &str) -> Option<&str> {
    let (_, id) = url.rsplit_once(FILES_PATH)?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())).then_some(id)
}

/// `GET /api/v1/files/{id}`: a file an operator sent. The id (128 random bits) is the
/// capability: users' clients and bots fetch it without botwatch credentials. Always
/// an attachment, sandboxed, with the type sniffed when it was stored.
#[instrument(name = "file.get", skip(state))]
#[utoipa::path(get, operation_id = "file_get", path = "/api/v1/files/{id}", tag = "dialogs",
    params(("id" = String, Path, description = "The file's id, from its address in the message")),
    responses((status = 200, description = "The file's bytes", content_type = "application/octet-stream"), (status = 404, body = crate::error::ErrorBody)))]
pub async fn file(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such file");
    if file_id(&format!("{FILES_PATH}{id}")).is_none() {
        return Err(not_found());
    }
    let file = state.log.file(&id).await?.ok_or_else(not_found)?;
    let encoded: String = form_urlencoded::byte_serialize(file.name.as_bytes()).collect::<String>();
    Ok((
        [
            (header::CONTENT_TYPE, file.mime),
            (
                header::CONTENT_DISPOSITION,
                format!(
                    "attachment; filename*=UTF-8''{}",
                    encoded.replace('+', "%20")
                ),
            ),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".to_owned(),
            ),
            (header::CONTENT_SECURITY_POLICY, "sandbox".to_owned()),
        ],
        file.bytes,
    )
        .into_response())
}

/// Delivers `message` in the background.
pub fn deliver_soon(state: &AppState, message: Event) {
    let state = state.clone();
    let span = info_span!(
        "delivery",
        bot = message.bot,
        user = message.user.id,
        id = message.id
    );
    let deliveries = state.deliveries.clone();
    deliveries.spawn(deliver(state, message).instrument(span));
}

/// The deliveries this node started: a graceful stop waits for them (within its grace
/// period), so none is left claimed without an outcome and later called interrupted.
#[derive(Default)]
pub struct Deliveries(std::sync::Mutex<tokio::task::JoinSet<()>>);

impl Deliveries {
    fn lock(&self) -> std::sync::MutexGuard<'_, tokio::task::JoinSet<()>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, delivery: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut set = self.lock();
        // Finished ones are let go of here, so the set holds only those under way.
        while set.try_join_next().is_some() {}
        set.spawn(delivery);
    }

    /// Waits for the deliveries under way, `grace` at most.
    pub async fn finish(&self, grace: Duration) {
        let mut set = std::mem::take(&mut *self.lock());
        if set.is_empty() {
            return;
        }
        let left = set.len();
        let all = async { while set.join_next().await.is_some() {} };
        if tokio::time::timeout(grace, all).await.is_err() {
            warn!(left, "operator messages still being delivered at the stop");
        }
    }
}

/// Claims `message` and, when this call is first, delivers it and records the outcome.
pub(crate) async fn deliver(state: AppState, message: Event) {
    let key = format!("outbox:{}:{}", message.bot, message.id);
    let owner = format!("{}@{}", state.node, chrono::Utc::now().timestamp_millis());
    match state.log.claim(&key, &owner).await {
        Ok(Claim::Won) => {}
        Ok(Claim::Held(holder)) => {
            if claimed_long_ago(&holder) {
                record(
                    &state,
                    &message,
                    Err(Undelivered(
                        "botwatch stopped while sending it; it may or may not have reached the \
                         user"
                            .to_owned(),
                    )),
                )
                .await;
            }
            return;
        }
        Err(e) => {
            warn!(error = %e, "cannot claim the message; the sweeper tries again");
            return;
        }
    }
    let outcome = match channels::channel_for(&state, &message.bot, &message.provider).await {
        Ok(channel) => match Outgoing::of(&state, message.clone()).await {
            Ok(outgoing) => channel.deliver(&state, &outgoing).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    record(&state, &message, outcome).await;
}

/// Whether a claim (`node@ms`) was made longer ago than any delivery lasts.
fn claimed_long_ago(holder: &str) -> bool {
    let at = holder
        .rsplit_once('@')
        .and_then(|(_, ms)| ms.parse::<i64>().ok())
        .unwrap_or(0);
    chrono::Utc::now().timestamp_millis() - at > INTERRUPTED_AFTER.as_millis() as i64
}

/// Appends the outcome of delivering `message`, trying again while the log refuses.
async fn record(state: &AppState, message: &Event, outcome: Result<(), Undelivered>) {
    let (delivery_state, reason) = match outcome {
        Ok(()) => (DeliveryState::Sent, None),
        Err(Undelivered(reason)) => (DeliveryState::Failed, Some(reason)),
    };
    match &reason {
        None => info!("delivered"),
        Some(reason) => warn!(reason, "not delivered"),
    }
    state
        .metrics
        .operator_deliveries
        .get_or_create(&vec![("outcome", delivery_state.as_str())])
        .inc();
    let id = format!("delivery-{}", message.id);
    let (bot, provider, user) = (&message.bot, &message.provider, &message.user.id);
    let event = Event {
        delivery: Some(Delivery {
            message: Some(message.id.clone()),
            state: delivery_state,
            reason: reason.map(|r| r.chars().take(1024).collect()),
            broadcast: message.delivery.as_ref().and_then(|d| d.broadcast.clone()),
        }),
        ..Event::about_dialog(id, EventKind::Delivery, bot, provider, user)
    };
    let mut wait = Duration::from_millis(200);
    for _ in 0..8 {
        match state.log.append(vec![event.clone()]).await {
            Ok(_) => return,
            Err(e) => {
                warn!(error = %e, retry_in = ?wait, "cannot record the delivery outcome");
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
        }
    }
    warn!("the delivery outcome was not recorded; the sweeper will call it interrupted");
}

/// Every [`SWEEP_EVERY`]: delivers the operator messages pending for longer than
/// [`SWEEP_AFTER`] that nobody claimed, and records interrupted ones as failed.
pub async fn sweep(state: AppState, stop: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        // Until the figures show what was written before this start, a pending
        // message may already have its outcome in the log.
        if !state.caught_up.load(std::sync::atomic::Ordering::Acquire) {
            continue;
        }
        let before = chrono::Utc::now().timestamp_millis() - SWEEP_AFTER.as_millis() as i64;
        let Ok(pending) = state
            .aggregator
            .query(move |a| {
                a.bots()
                    .into_iter()
                    .filter_map(|b| a.bot(b))
                    .flat_map(|f| f.pending_messages())
                    .filter(|m| m.ms < before)
                    .collect::<Vec<_>>()
            })
            .await
        else {
            return;
        };
        // Several at once (one slow delivery must not hold up the rest), a few at a
        // time; the claim keeps a message that a later sweep finds again from going
        // out twice.
        let mut sending = tokio::task::JoinSet::new();
        for m in pending {
            match serde_json::from_str::<Event>(&m.json) {
                Ok(event) => {
                    while sending.len() >= SWEEP_AT_ONCE {
                        sending.join_next().await;
                    }
                    let span = info_span!("delivery", bot = event.bot, id = event.id, swept = true);
                    sending.spawn(deliver(state.clone(), event).instrument(span));
                }
                Err(e) => warn!(id = m.id, error = %e, "a pending message does not read back"),
            }
        }
        while sending.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_ids_are_read_only_from_botwatch_addresses() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(file_id(&format!("http://h:1/api/v1/files/{id}")), Some(id));
        assert_eq!(file_id("http://h/api/v1/files/../../etc/passwd"), None);
        assert_eq!(file_id("https://elsewhere.example/a.pdf"), None);
    }

    #[test]
    fn types_are_sniffed_from_the_bytes() {
        assert_eq!(sniff(b"%PDF-1.7\n..."), "application/pdf");
        assert_eq!(
            sniff(&[0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0]),
            "image/png"
        );
        assert_eq!(sniff("Привіт".as_bytes()), "text/plain");
        assert_eq!(sniff(&[0xff, 0x00, 0xfe]), "application/octet-stream");
    }

    #[test]
    fn file_names_lose_paths_and_control_characters() {
        assert_eq!(clean_file_name("C:\\Users\\a\\invoice.pdf"), "invoice.pdf");
        assert_eq!(clean_file_name("../../x\r\n.txt"), "x.txt");
        assert_eq!(clean_file_name("\"\n"), "file");
    }
}
