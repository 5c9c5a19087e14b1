use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use botwatch_log::EventLog;
use serde_json::json;

use crate::AppState;

/// The process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The storage answers.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let storage = state.log.backend_name();
    if state
        .integrity
        .log_behind_snapshot
        .load(std::sync::atomic::Ordering::Relaxed)
    {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "data_lost", "storage": storage,
                        "reason": "the log ends before the snapshot: events were lost"})),
        );
    }
    match state.log.ready().await {
        Ok(()) => {
            state.metrics.storage_ready.set(1);
            (
                StatusCode::OK,
                Json(json!({"status": "ready", "storage": storage})),
            )
        }
        Err(e) => {
            state.metrics.storage_ready.set(0);
            // The detail goes to the log; anonymous callers learn only the state.
            tracing::warn!(error = %e, "not ready: the storage does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "unavailable", "storage": storage})),
            )
        }
    }
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let ready = state.log.ready().await.is_ok();
    state.metrics.storage_ready.set(i64::from(ready));
    if let Ok(stats) = state.log.stats().await {
        state.metrics.log_length.set(stats.length as i64);
    }
    (
        [(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        state.metrics.render(),
    )
}
