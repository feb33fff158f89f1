//! `/admin/v1/plans`: pricing tiers (limits, budget, allowed models).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::tenant::{Plan, PlanPatch};

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// Create a plan.
#[utoipa::path(post, path = "/admin/v1/plans", tag = "plans", request_body = Plan,
    responses((status = 201, body = Plan), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(plan): ApiJson<Plan>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    let sys = auth.system()?;
    plan.validate()?;
    let p = s.store().create_plan(&sys, &plan, &auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(p)))
}

/// List plans.
#[utoipa::path(get, path = "/admin/v1/plans", tag = "plans", responses((status = 200, body = List<Plan>)))]
pub async fn list(State(s): State<AppState>, auth: Authed) -> Result<Json<List<Plan>>, ApiError> {
    auth.system()?;
    Ok(Json(List::of(s.store().list_plans().await?)))
}

/// Get a plan.
#[utoipa::path(get, path = "/admin/v1/plans/{name}", tag = "plans",
    params(("name" = String, Path, description = "plan name")),
    responses((status = 200, body = Plan), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Plan>, ApiError> {
    auth.system()?;
    Ok(Json(s.store().get_plan(&name).await?))
}

/// Change a plan's limits; `null` means unlimited.
#[utoipa::path(patch, path = "/admin/v1/plans/{name}", tag = "plans", request_body = PlanPatch,
    params(("name" = String, Path, description = "plan name")),
    responses((status = 200, body = Plan), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    ApiJson(patch): ApiJson<PlanPatch>,
) -> Result<Json<Plan>, ApiError> {
    let sys = auth.system()?;
    patch.validate()?;
    let plan = s.store().update_plan(&sys, &name, patch, &auth.actor()).await?;
    Ok(Json(plan))
}
