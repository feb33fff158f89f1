//! Liveness, readiness (checks the store) and metrics; open routes.

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// The process can serve: its metadata store answers.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, body = ErrorBody)))]
pub async fn readyz(State(s): State<AppState>) -> Result<Json<Value>, ApiError> {
    s.store().ping().await?;
    Ok(Json(json!({"status": "ready", "store": s.store().backend()})))
}

/// Open Inference Protocol liveness.
#[utoipa::path(get, path = "/v2/health/live", tag = "operations", responses((status = 200, description = "alive")))]
pub async fn oip_live() -> Json<Value> {
    Json(json!({"live": true}))
}

/// Open Inference Protocol readiness.
#[utoipa::path(get, path = "/v2/health/ready", tag = "operations",
    responses((status = 200, description = "ready"), (status = 503, body = crate::error::OipErrorBody)))]
pub async fn oip_ready(State(s): State<AppState>) -> Result<Json<Value>, crate::error::OipError> {
    s.store().ping().await.map_err(ApiError::from)?;
    Ok(Json(json!({"ready": true})))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "metrics", content_type = "text/plain")))]
pub async fn metrics(State(s): State<AppState>) -> impl IntoResponse {
    let mut text = s.metrics().render();
    s.services().render_metrics(&mut text);
    ([(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text)
}
