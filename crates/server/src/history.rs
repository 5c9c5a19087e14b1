//! `GET /api/v1/bots/{bot}/dialogs/{user}/messages`: a dialog's history, newest page
//! first, read from the history index kept beside the log.

use axum::Json;
use axum::extract::{Path, State};
use std::collections::HashMap;

use botwatch_event::{Attachment, Delivery, DeliveryState, Direction, Sender};
use botwatch_log::{EventLog, HistoryCursor};
use serde::{Deserialize, Serialize};
use tracing::instrument;

use crate::AppState;
use crate::error::{ApiError, Query};

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    before: Option<String>,
    limit: Option<String>,
}

impl utoipa::IntoParams for HistoryQuery {
    fn into_params(
        _: impl Fn() -> Option<utoipa::openapi::path::ParameterIn>,
    ) -> Vec<utoipa::openapi::path::Parameter> {
        use crate::openapi::rules::{cursor, page_limit};
        vec![
            // `HistoryCursor`: the event time in milliseconds, `_`, the log position.
            cursor(
                "before",
                "Where the previous page ended: its `next`, as it was given",
                r"^-?[0-9]{1,18}_[0-9]{1,19}-[0-9]{1,19}$".to_owned(),
            ),
            page_limit(DEFAULT_LIMIT, MAX_LIMIT),
        ]
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct HistoryAnswer {
    pub items: Vec<Message>,
    /// Pass as `before` for the next, older page; null at the start of the dialog.
    pub next: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Message {
    pub id: String,
    pub direction: Option<Direction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sender: Option<Sender>,
    pub text: Option<String>,
    pub attachments: Vec<Attachment>,
    pub provider: String,
    pub ts: String,
    /// Operator messages botwatch delivers: `pending`, `sent`, or `failed` and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<Delivery>,
}

impl From<botwatch_event::Event> for Message {
    fn from(e: botwatch_event::Event) -> Message {
        let ts = e.ts.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        Message {
            id: e.id,
            direction: e.direction,
            sender: e.sender,
            text: e.text,
            attachments: e.attachments,
            provider: e.provider,
            ts,
            delivery: e.delivery,
        }
    }
}

#[instrument(name = "history", skip(state, query))]
#[utoipa::path(get, operation_id = "history_messages", path = "/api/v1/bots/{bot}/dialogs/{user}/messages", tag = "dialogs", params(("bot" = String, Path, description = "The bot (a slug)"), ("user" = String, Path, description = "The bot user's id"), crate::history::HistoryQuery), responses((status = 200, body = crate::history::HistoryAnswer), (status = 400, body = crate::error::ErrorBody), (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    Path((bot, user)): Path<(String, String)>,
    Query(query): Query<HistoryQuery>,
) -> Result<Json<HistoryAnswer>, ApiError> {
    let limit = ApiError::limit(query.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let before =
        match query.before.as_deref() {
            None | Some("") => None,
            Some(b) => Some(b.parse::<HistoryCursor>().map_err(|_| {
                ApiError::bad_parameter("before", "not a cursor returned as `next`")
            })?),
        };
    let page = state.log.history(&bot, &user, before, limit).await?;
    // Where each operator message is on its way, from the figures (one query a page).
    let operators: Vec<String> = page
        .entries
        .iter()
        .filter(|e| e.event.delivery.is_some())
        .map(|e| e.event.id.clone())
        .collect();
    let mut known: HashMap<String, (DeliveryState, Option<String>)> = if operators.is_empty() {
        HashMap::new()
    } else {
        let b = bot.clone();
        state
            .aggregator
            .query(move |a| {
                let Some(f) = a.bot(&b) else {
                    return HashMap::new();
                };
                operators
                    .into_iter()
                    .filter_map(|id| {
                        let (s, r) = f.delivery(&id)?;
                        let r = r.map(str::to_owned);
                        Some((id, (s, r)))
                    })
                    .collect()
            })
            .await
            .map_err(|_| crate::figures::stopped())?
    };
    let items = page
        .entries
        .into_iter()
        .map(|entry| {
            let delivery = known.remove(&entry.event.id);
            let mut message = Message::from(entry.event);
            // What the figures know overrides `pending` as the message was recorded.
            if let Some((state, reason)) = delivery {
                let broadcast = message.delivery.take().and_then(|d| d.broadcast);
                message.delivery = Some(Delivery {
                    message: None,
                    state,
                    reason,
                    broadcast,
                });
            }
            message
        })
        .collect();
    Ok(Json(HistoryAnswer {
        items,
        next: page.next.map(|c| c.to_string()),
    }))
}
