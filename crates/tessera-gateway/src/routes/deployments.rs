//! Deployments (G3): where a model name's traffic goes. Tenants manage their
//! own models' deployments (`/v1/deployments/{name}`), platform admins those
//! of platform and segment models (`/admin/v1/deployments/{model id}`).
//! Changes are audited and reach every replica within the cache TTL.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::model::{Deployment, Model};
use tessera_core::role::Operation;
use tessera_store::{KeyOwner, ModelView};

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::parse_json;
use crate::state::AppState;

/// A JSON body read after the route has checked what its path names (so
/// another tenant's object is a 404 whatever the body says).
pub(super) async fn read_json<T: serde::de::DeserializeOwned>(
    s: &AppState,
    body: Body,
) -> Result<T, ApiError> {
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    parse_json(&bytes)
}

/// Checks the deployment against the model's versions and aliases, and
/// its gates: a version that failed its gate takes no weight (409
/// `gate_failed`); shadows may name one, since that is how it is evaluated.
async fn validate(
    s: &AppState,
    view: ModelView<'_>,
    model: &Model,
    d: &Deployment,
) -> Result<(), ApiError> {
    let versions = s.store().list_model_versions(view, model).await?;
    let aliases = s.store().list_aliases(view, model).await?;
    let numbers: Vec<i64> = versions.iter().map(|v| v.version).collect();
    let names: Vec<&str> = aliases.iter().map(|a| a.alias.as_str()).collect();
    d.validate(&numbers, &names)?;
    let alias = |a: &str| aliases.iter().find(|x| x.alias == a).map(|x| x.version);
    for t in d.targets.iter().filter(|t| t.weight > 0) {
        let n = t.version.resolve(alias);
        if let Some(v) = versions.iter().find(|v| Some(v.version) == n) {
            super::governance::refuse_if_failed(s, view, model, v).await?;
        }
    }
    Ok(())
}

/// A model's deployment, if any.
pub async fn load(
    s: &AppState,
    view: ModelView<'_>,
    model: &Model,
) -> Result<Option<Deployment>, ApiError> {
    match s.store().get_deployment(view, model).await? {
        Some(spec) => Ok(Some(parse_json(spec.as_bytes())?)),
        None => Ok(None),
    }
}

async fn own_model(
    s: &AppState,
    auth: &Authed,
    name: &str,
    op: Operation,
) -> Result<(tessera_core::auth::TenantCtx, Model), ApiError> {
    let ctx = auth.tenant(op)?;
    let info = s.tenants().get(s.store(), &ctx).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: info.tenant.segment.as_deref() };
    let model = s.store().resolve_model(view, name).await?;
    if model.tenant_id.as_ref() != Some(ctx.tenant_id()) {
        return Err(ApiError::NotFound(format!(
            "model {name:?} not found among your tenant's models"
        )));
    }
    Ok((ctx, model))
}

/// A rollout owns its model's deployment while it runs or is paused: a
/// change by hand would be overwritten by its next step.
async fn refuse_during_rollout(
    s: &AppState,
    ctx: &tessera_core::auth::TenantCtx,
    model: &Model,
) -> Result<(), ApiError> {
    let rollouts = s.store().list_rollouts(ctx, Some(&model.id)).await?;
    match rollouts.iter().find(|r| r.state.is_active()) {
        Some(r) => Err(ApiError::Conflict(format!(
            "rollout {} of {} is {}; abort it (POST /v1/rollouts/{}/abort) before changing the deployment",
            r.id,
            model.name,
            r.state.as_str(),
            r.id
        ))),
        None => Ok(()),
    }
}

/// Set a model's deployment: weighted versions, shadows, fallbacks,
/// timeout. While a rollout of the model is active, 409.
#[utoipa::path(put, path = "/v1/deployments/{name}", tag = "deployments", request_body = Deployment,
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn tenant_put(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Deployment>, ApiError> {
    // The model first: another tenant's model is a 404 whatever the body says.
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsWrite).await?;
    refuse_during_rollout(&s, &ctx, &model).await?;
    let d: Deployment = read_json(&s, body).await?;
    validate(&s, ModelView::Tenant { ctx: &ctx, segment: None }, &model, &d).await?;
    let spec = serde_json::to_string(&d).map_err(|e| ApiError::Internal(e.to_string()))?;
    s.store().put_deployment(KeyOwner::Tenant(&ctx), &model, &spec, &auth.actor()).await?;
    Ok(Json(d))
}

/// A model's deployment.
#[utoipa::path(get, path = "/v1/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)))]
pub async fn tenant_get(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsRead).await?;
    load(&s, ModelView::Tenant { ctx: &ctx, segment: None }, &model)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("model {name:?} has no deployment")))
}

/// Remove a model's deployment; it serves its latest version again.
/// While a rollout of the model is active, 409.
#[utoipa::path(delete, path = "/v1/deployments/{name}", tag = "deployments",
    params(("name" = String, Path, description = "model name")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn tenant_delete(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsWrite).await?;
    refuse_during_rollout(&s, &ctx, &model).await?;
    s.store().delete_deployment(KeyOwner::Tenant(&ctx), &model, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set the deployment of a platform or segment model.
#[utoipa::path(put, path = "/admin/v1/deployments/{id}", tag = "deployments", request_body = Deployment,
    params(("id" = String, Path, description = "model id (mdl_...)")),
    responses((status = 200, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn admin_put(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Deployment>, ApiError> {
    let sys = auth.system()?;
    let model = s.store().get_model_by_id(&sys, &id).await?;
    let d: Deployment = read_json(&s, body).await?;
    validate(&s, ModelView::System(&sys), &model, &d).await?;
    let spec = serde_json::to_string(&d).map_err(|e| ApiError::Internal(e.to_string()))?;
    // A tenant's model is written as that tenant; shared models as the platform.
    let tenant_ctx = model.tenant_id.clone().map(|t| sys.tenant(t));
    let writer = KeyOwner::of(&sys, tenant_ctx.as_ref());
    s.store().put_deployment(writer, &model, &spec, &auth.actor()).await?;
    Ok(Json(d))
}

/// The deployment of any model.
#[utoipa::path(get, path = "/admin/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "model id (mdl_...)")),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)))]
pub async fn admin_get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Deployment>, ApiError> {
    let sys = auth.system()?;
    let model = s.store().get_model_by_id(&sys, &id).await?;
    load(&s, ModelView::System(&sys), &model)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("model {id:?} has no deployment")))
}

/// Remove the deployment of any model.
#[utoipa::path(delete, path = "/admin/v1/deployments/{id}", tag = "deployments",
    params(("id" = String, Path, description = "model id (mdl_...)")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn admin_delete(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sys = auth.system()?;
    let model = s.store().get_model_by_id(&sys, &id).await?;
    // A tenant's model is written as that tenant; shared models as the platform.
    let tenant_ctx = model.tenant_id.clone().map(|t| sys.tenant(t));
    let writer = KeyOwner::of(&sys, tenant_ctx.as_ref());
    s.store().delete_deployment(writer, &model, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
