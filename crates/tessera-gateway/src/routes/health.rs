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

/// The content type of the OpenMetrics text format.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the process (one registry), as OpenMetrics text.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "metrics", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(s): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let text = s
        .services()
        .encode_metrics()
        .map_err(|e| ApiError::Internal(format!("metrics could not be encoded: {e}")))?;
    Ok(([(CONTENT_TYPE, OPENMETRICS)], text))
}
