//! Rollouts (L4): `POST /v1/rollouts` starts one, `GET /v1/rollouts` and
//! `GET /v1/rollouts/{id}` show them (the step, each check's last value,
//! the history), `POST /v1/rollouts/{id}/pause|resume|abort` steer them.
//! The controller that moves them lives in `tessera-serving/src/rollouts.rs`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use tessera_core::role::Operation;
use tessera_core::rollout::{Rollout, RolloutSpec};
use tessera_core::time::Timestamp;
use utoipa::IntoParams;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::routes::List;
use crate::routes::governance::own_model;
use crate::state::AppState;

/// Start a rollout: the candidate (a version or an alias, which must have
/// passed its validation gate) takes the steps in turn while its checks
/// hold on its own traffic, and is rolled back by itself when they fail
/// `failures_before_rollback` times in a row. A candidate that failed its
/// gate is refused 409 `gate_failed` naming the checks; a model with an
/// active rollout, 409.
#[utoipa::path(post, path = "/v1/rollouts", tag = "rollouts", request_body = RolloutSpec,
    responses((status = 201, body = Rollout), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(spec): ApiJson<RolloutSpec>,
) -> Result<(StatusCode, Json<Rollout>), ApiError> {
    let (ctx, model) = own_model(&s, &auth, &spec.model, Operation::ModelsWrite).await?;
    let r = tessera_serving::rollouts::start(
        s.store(),
        &ctx,
        &model,
        &spec,
        &auth.actor(),
        Timestamp::now(),
    )
    .await?;
    tracing::info!(rollout = %r.id, model = %r.model, candidate = r.candidate, "rollout started");
    Ok((StatusCode::CREATED, Json(r)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only this model's rollouts.
    pub model: Option<String>,
}

/// The tenant's rollouts, newest first (at most 200).
#[utoipa::path(get, path = "/v1/rollouts", tag = "rollouts", params(ListParams),
    responses((status = 200, body = inline(List<Rollout>)), (status = 404, body = ErrorBody)))]
pub async fn list(
    State(s): State<AppState>,
    auth: Authed,
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<List<Rollout>>, ApiError> {
    let (ctx, model_id) = match &p.model {
        Some(name) => {
            let (ctx, model) = own_model(&s, &auth, name, Operation::ModelsRead).await?;
            (ctx, Some(model.id))
        }
        None => (auth.tenant(Operation::ModelsRead)?, None),
    };
    Ok(Json(List::of(s.store().list_rollouts(&ctx, model_id.as_deref()).await?)))
}

/// A rollout: its step, the last evaluation's checks, the history.
#[utoipa::path(get, path = "/v1/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id (rol_...)")),
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    Ok(Json(s.store().get_rollout(&ctx, &id).await?))
}

async fn control(
    s: &AppState,
    auth: &Authed,
    id: &str,
    action: &str,
) -> Result<Json<Rollout>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    let r = tessera_serving::rollouts::control(s.store(), &ctx, id, action, &auth.actor()).await?;
    Ok(Json(r))
}

/// Pause a running rollout: the controller stops evaluating it; the
/// weights stay where they are.
#[utoipa::path(post, path = "/v1/rollouts/{id}/pause", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id (rol_...)")),
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn pause(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    control(&s, &auth, &id, "pause").await
}

/// Resume a paused rollout; its next evaluation judges only traffic after now.
#[utoipa::path(post, path = "/v1/rollouts/{id}/resume", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id (rol_...)")),
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resume(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    control(&s, &auth, &id, "resume").await
}

/// Abort a rollout: the deployment from before it is back at once.
#[utoipa::path(post, path = "/v1/rollouts/{id}/abort", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id (rol_...)")),
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn abort(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Rollout>, ApiError> {
    control(&s, &auth, &id, "abort").await
}
