//! Drift (O3): `GET /v1/models/{name}/drift` compares a version's inputs
//! and predictions in a window with its training set or a time range of
//! its own predictions (`tessera-serving/src/drift.rs`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use tessera_core::features::parse_duration;
use tessera_core::role::Operation;
use tessera_core::time::Timestamp;
use tessera_serving::drift::{Mode, Query, Reference, Report, ViewReport};
use tessera_store::ModelView;
use utoipa::IntoParams;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiQuery;
use crate::state::AppState;

/// The longest window a drift report reads.
const MAX_WINDOW: Duration = Duration::from_secs(30 * 86_400);

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DriftParams {
    /// The current window, ending now: "15m", "1h" (default), "7d".
    pub window: Option<String>,
    /// The version (its number); default: the one that answered most in the window.
    pub version: Option<i64>,
    /// With `reference_to`: the reference is the version's own predictions
    /// in this time range (RFC 3339); default: its training set.
    pub reference_from: Option<Timestamp>,
    pub reference_to: Option<Timestamp>,
    /// `evidently` (default: its test per column type and reference size,
    /// and its thresholds) or `nannyml` (the reference in 10 chunks; drift
    /// beyond their mean + 3 standard deviations).
    pub mode: Option<String>,
}

fn query(p: DriftParams) -> Result<Query, ApiError> {
    let text = p.window.as_deref().unwrap_or("1h");
    let window = parse_duration(text).map_err(|e| ApiError::invalid("window", e))?;
    if window.is_zero() || window > MAX_WINDOW {
        return Err(ApiError::invalid("window", "the window is more than zero and at most 30d"));
    }
    let reference = match (p.reference_from, p.reference_to) {
        (None, None) => Reference::Training,
        (Some(from), Some(to)) if from < to => Reference::Window { from, to },
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid(
                "reference_to",
                "reference_to must be after reference_from",
            ));
        }
        (Some(_), None) => return Err(ApiError::invalid("reference_to", "give reference_to too")),
        (None, Some(_)) => {
            return Err(ApiError::invalid("reference_from", "give reference_from too"));
        }
    };
    let mode = match p.mode.as_deref() {
        None | Some("evidently") => Mode::Evidently,
        Some("nannyml") => Mode::Nannyml,
        Some(other) => {
            return Err(ApiError::invalid(
                "mode",
                format!("mode is evidently or nannyml, got {other:?}"),
            ));
        }
    };
    Ok(Query { version: p.version, window, reference, mode })
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ViewDriftParams {
    /// The current window of rows (by event time), ending now: default "1h".
    pub window: Option<String>,
    /// With `reference_to`: the reference rows' range (RFC 3339); default
    /// the window just before the current one.
    pub reference_from: Option<Timestamp>,
    pub reference_to: Option<Timestamp>,
    /// `evidently` (default) or `nannyml`.
    pub mode: Option<String>,
}

/// Drift of a feature view's values (its offline rows): each feature of its
/// schema, the window against the one before it or a fixed range.
#[utoipa::path(get, path = "/v1/features/views/{name}/drift", tag = "monitoring",
    params(("name" = String, Path, description = "feature view name"), ViewDriftParams),
    responses((status = 200, body = ViewReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn view_drift(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    ApiQuery(p): ApiQuery<ViewDriftParams>,
) -> Result<Json<ViewReport>, ApiError> {
    let ctx = auth.tenant(Operation::FeaturesRead)?;
    let q = query(DriftParams {
        window: p.window,
        version: None,
        reference_from: p.reference_from,
        reference_to: p.reference_to,
        mode: p.mode,
    })?;
    let reference = match q.reference {
        Reference::Window { from, to } => Some((from, to)),
        Reference::Training => None,
    };
    let r = tessera_serving::drift::view_report(
        &s,
        &ctx,
        &name,
        q.window,
        reference,
        q.mode,
        Timestamp::now(),
    )
    .await?;
    Ok(Json(r))
}

/// Drift of a model version: each input column (when the tenant keeps
/// inputs) and the predictions, with the method used, its value, the
/// threshold and the verdict, and the share of drifted columns.
#[utoipa::path(get, path = "/v1/models/{name}/drift", tag = "monitoring",
    params(("name" = String, Path, description = "model name"), DriftParams),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the version has no training set here; give a reference range", body = ErrorBody)))]
pub async fn model_drift(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    ApiQuery(p): ApiQuery<DriftParams>,
) -> Result<Json<Report>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    let q = query(p)?;
    let segment = s.tenants().get(s.store(), &ctx).await?.tenant.segment.clone();
    let view = ModelView::Tenant { ctx: &ctx, segment: segment.as_deref() };
    let model = s.store().resolve_model(view, &name).await?;
    let report =
        tessera_serving::drift::report(&s, &ctx, view, &model, &q, Timestamp::now()).await?;
    Ok(Json(report))
}
