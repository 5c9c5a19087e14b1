//! Who answers a user: `PUT /api/v1/bots/{bot}/dialogs/{user}/mode` switches a dialog
//! between Auto (the bot) and Manual (an operator). A switch is a `mode_changed` event
//! in the log, like everything else: it replays, reaches every node, and the ingest
//! answer tells bots at once (`dialogs` → `mode`).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use botwatch_event::{Event, EventKind, Mode, Sender};
use botwatch_log::EventLog;
use serde::Deserialize;
use tracing::{info, instrument};

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::figures::stopped;
use crate::ingest::DialogMode;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModeRequest {
    /// `auto` (the bot answers) or `manual` (an operator does; the bot must not).
    mode: Mode,
}

/// How long a switch waits for this node's figures to show it, so that what is read
/// next (the ingest answer, the dialog) already says the new mode.
const APPLIED_WITHIN: Duration = Duration::from_secs(3);

/// Switches the dialog with `user` to `mode`; the answer is the mode now in force.
#[instrument(name = "mode.put", skip(state, principal, body))]
#[utoipa::path(put, operation_id = "modes_put", path = "/api/v1/bots/{bot}/dialogs/{user}/mode", tag = "dialogs", params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id")), request_body(content = crate::modes::ModeRequest), responses((status = 200, body = crate::ingest::DialogMode), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn put(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path((bot, user)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<DialogMode>, ApiError> {
    let ModeRequest { mode } = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_mode",
            format!(r#"expected {{"mode":"auto"|"manual"}}: {e}"#),
        )
    })?;
    let known = crate::figures::known_user(&state, &bot, &user).await?;
    let changed = known.mode != mode;
    let now = if changed {
        switch(&state, &principal, &bot, &user, known.provider, mode).await?
    } else {
        mode
    };
    // Audited either way (a switch to the mode in force changes nothing, and says so),
    // once it has happened.
    crate::session::audit(
        &state,
        &principal,
        "dialog.mode",
        Some(&bot),
        serde_json::json!({ "user": user, "mode": mode, "changed": changed }),
    )
    .await?;
    Ok(Json(DialogMode { mode: now.as_str() }))
}

/// An operator's switch of the dialog with `user` to `mode`, as an event.
pub(crate) fn mode_event(
    principal: &Principal,
    bot: &str,
    user: &str,
    provider: &str,
    mode: Mode,
) -> Event {
    let id = format!("mode-{}", uuid::Uuid::now_v7());
    Event {
        sender: Some(Sender::Operator {
            id: principal.actor(),
        }),
        mode: Some(mode),
        ..Event::about_dialog(id, EventKind::ModeChanged, bot, provider, user)
    }
}

/// Tells the log's readers outside (the bot's webhook) of a switch just recorded.
pub(crate) fn announce(state: &AppState, principal: &Principal, event: &Event) {
    let (bot, user, operator) = (&event.bot, &event.user.id, principal.actor());
    let Some(mode) = event.mode else {
        return;
    };
    info!(
        bot,
        user,
        mode = mode.as_str(),
        operator,
        "dialog mode switched"
    );
    crate::webhook::notify(
        state,
        bot,
        "mode_changed",
        serde_json::json!({
            "type": "mode_changed", "bot": bot, "user": user, "mode": mode,
            "operator": operator, "ts": crate::figures::rfc3339(event.ts_millis()),
        }),
    );
}

/// Appends the `mode_changed`, tells the bot's webhook, and waits until this node's
/// figures show the switch (read-your-writes: the next ingest answer says it); returns
/// the mode then in force.
pub(crate) async fn switch(
    state: &AppState,
    principal: &Principal,
    bot: &str,
    user: &str,
    provider: Option<String>,
    mode: Mode,
) -> Result<Mode, ApiError> {
    let provider = provider.as_deref().unwrap_or("botwatch");
    let event = mode_event(principal, bot, user, provider, mode);
    state.log.append(vec![event.clone()]).await?;
    announce(state, principal, &event);
    let deadline = tokio::time::Instant::now() + APPLIED_WITHIN;
    loop {
        let (b, u) = (bot.to_owned(), user.to_owned());
        let now = state
            .aggregator
            .query(move |a| a.bot(&b).map(|f| f.mode(&u)))
            .await
            .map_err(|_| stopped())?;
        if now == Some(mode) || tokio::time::Instant::now() >= deadline {
            return Ok(now.unwrap_or(mode));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
