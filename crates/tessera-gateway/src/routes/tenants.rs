//! `/admin/v1/tenants`: tenant CRUD for platform admins (T1).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use tessera_core::audit::AuditActor;
use tessera_core::auth::{SystemCtx, TenantCtx};
use tessera_core::ids::TenantId;
use tessera_core::tenant::{NewTenant, Tenant, TenantPatch};
use tessera_store::MetadataStore;

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// A tenant id from a path; a malformed one cannot exist, so it is a 404.
pub fn tenant_path(sys: &SystemCtx, id: &str) -> Result<TenantCtx, ApiError> {
    let id =
        TenantId::parse(id).map_err(|_| ApiError::NotFound(format!("tenant {id:?} not found")))?;
    Ok(sys.tenant(id))
}

pub async fn create_tenant(
    store: &dyn MetadataStore,
    sys: &SystemCtx,
    actor: &AuditActor,
    body: NewTenant,
) -> Result<Tenant, ApiError> {
    body.validate()?;
    Ok(store.create_tenant(sys, &body, actor).await?)
}

pub async fn update_tenant(
    store: &dyn MetadataStore,
    sys: &SystemCtx,
    ctx: &TenantCtx,
    actor: &AuditActor,
    patch: TenantPatch,
) -> Result<Tenant, ApiError> {
    patch.validate()?;
    Ok(store.update_tenant(sys, ctx, &patch, actor).await?)
}

pub async fn delete_tenant(
    store: &dyn MetadataStore,
    sys: &SystemCtx,
    ctx: &TenantCtx,
    actor: &AuditActor,
) -> Result<(), ApiError> {
    store.delete_tenant(sys, ctx, actor).await?;
    Ok(())
}

/// Create a tenant.
#[utoipa::path(post, path = "/admin/v1/tenants", tag = "tenants", request_body = NewTenant,
    responses((status = 201, body = Tenant), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(body): ApiJson<NewTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let sys = auth.system()?;
    let t = create_tenant(s.store(), &sys, &auth.actor(), body).await?;
    Ok((StatusCode::CREATED, Json(t)))
}

/// List tenants.
#[utoipa::path(get, path = "/admin/v1/tenants", tag = "tenants", responses((status = 200, body = List<Tenant>)))]
pub async fn list(State(s): State<AppState>, auth: Authed) -> Result<Json<List<Tenant>>, ApiError> {
    let sys = auth.system()?;
    Ok(Json(List::of(s.store().list_tenants(&sys).await?)))
}

/// Get a tenant.
#[utoipa::path(get, path = "/admin/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = Tenant), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Tenant>, ApiError> {
    let sys = auth.system()?;
    let ctx = tenant_path(&sys, &id)?;
    Ok(Json(s.store().get_tenant(&ctx).await?))
}

/// Rename a tenant, move it to another plan or segment.
#[utoipa::path(patch, path = "/admin/v1/tenants/{id}", tag = "tenants", request_body = TenantPatch,
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 200, body = Tenant), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
    ApiJson(patch): ApiJson<TenantPatch>,
) -> Result<Json<Tenant>, ApiError> {
    let sys = auth.system()?;
    let ctx = tenant_path(&sys, &id)?;
    let t = update_tenant(s.store(), &sys, &ctx, &auth.actor(), patch).await?;
    Ok(Json(t))
}

/// Delete a tenant; its keys stop working at once.
#[utoipa::path(delete, path = "/admin/v1/tenants/{id}", tag = "tenants",
    params(("id" = String, Path, description = "tenant id")),
    responses((status = 204, description = "deleted"), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let sys = auth.system()?;
    let ctx = tenant_path(&sys, &id)?;
    delete_tenant(s.store(), &sys, &ctx, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
