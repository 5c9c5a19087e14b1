use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use botwatch_log::EventLog;
use serde_json::json;

use crate::AppState;

/// The process is up.
#[utoipa::path(get, operation_id = "health_healthz", path = "/healthz", tag = "health", responses((status = 200, description = "The process is up: `{\"status\":\"ok\"}`", body = Object)))]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// The storage answers, and has not lost data behind the figures (a recorded loss
/// answers 503 `data_lost` until an operator clears it; the figures are still served).
#[utoipa::path(get, operation_id = "health_readyz", path = "/readyz", tag = "health", responses((status = 200, description = "The storage answers"), (status = 503, description = "`storage_unavailable` or `data_lost`")))]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let storage = state.log.backend_name();
    if let Some(loss) = state.integrity.data_loss() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "data_lost", "storage": storage,
                        "reason": loss.reason, "since": loss.at,
                        "clear": "botwatch data-loss clear"})),
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

#[utoipa::path(get, operation_id = "health_metrics", path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
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
