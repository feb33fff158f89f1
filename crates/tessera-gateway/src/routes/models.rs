//! The model registry over HTTP (L1). Tenants register their own models and
//! upload versions (`/v1/models...`) and see their own, their segment's and
//! the platform's models; platform admins register platform and segment
//! models (`/admin/v1/models...`). A version's artifact is the raw request
//! body, stored content-addressed; its sha256 and size come back.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tessera_core::audit::AuditActor;
use tessera_core::auth::TenantCtx;
use tessera_core::model::{
    AdminScope, Model, ModelVersion, NewModel, REMOTE_RUNTIME, RemoteConfig,
};
use tessera_core::model_features::{FeatureBinding, OnMissing};
use tessera_core::role::Operation;
use tessera_features::model_input::{bind, fixed_width};
use tessera_serving::feature_catalogs::FeatureCatalogs;
use tessera_store::artifacts::ArtifactStore;
use tessera_store::{KeyOwner, MetadataStore, ModelScope, ModelView};
use utoipa::{IntoParams, ToSchema};

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiJson, ApiQuery};
use crate::state::AppState;
use tessera_serving::tenant_cache::TenantCache;

/// The tenant's view of the registry: its own, its segment's and the platform's models.
async fn tenant_view<'a>(
    s: &AppState,
    ctx: &'a TenantCtx,
    segment: &'a mut Option<String>,
) -> Result<ModelView<'a>, ApiError> {
    *segment = tenant_segment(s.store(), s.tenants(), ctx).await?;
    Ok(ModelView::Tenant { ctx, segment: segment.as_deref() })
}

async fn tenant_segment(
    store: &dyn MetadataStore,
    tenants: &TenantCache,
    ctx: &TenantCtx,
) -> Result<Option<String>, ApiError> {
    Ok(tenants.get(store, ctx).await?.tenant.segment.clone())
}

/// Query of a version upload: the feature service the version reads, if any.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct VersionParams {
    /// Bind the version to this feature service of the tenant: its features
    /// (numbers), frozen in order, become the model's input when a request
    /// names an entity. ONNX models with one input and linear heads over numbers.
    #[param(pattern = "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    pub feature_service: Option<String>,
    /// A missing or stale feature: `fail` (422, the default) or `default`.
    #[param(pattern = "^(fail|default)$")]
    pub on_missing: Option<String>,
    /// JSON object of `view:feature` to its value under `on_missing=default`
    /// (a number; 0 for one not named; lists for float64_list features).
    pub defaults: Option<String>,
}

/// A version's feature binding, and the input width it implies when no
/// feature is a list.
pub struct Bound {
    pub binding: FeatureBinding,
    pub width: Option<usize>,
}

impl VersionParams {
    /// The binding the parameters ask for, checked against the tenant's
    /// catalog and the model; `None` without `feature_service`.
    async fn bind(
        &self,
        s: &AppState,
        ctx: &TenantCtx,
        model: &Model,
    ) -> Result<Option<Bound>, ApiError> {
        let Some(service) = &self.feature_service else {
            if self.on_missing.is_some() || self.defaults.is_some() {
                return Err(ApiError::invalid(
                    "feature_service",
                    "on_missing and defaults apply to a version bound with feature_service",
                ));
            }
            return Ok(None);
        };
        if !matches!(model.runtime.as_str(), "onnx" | "linear") || model.base_model.is_some() {
            return Err(ApiError::invalid(
                "feature_service",
                format!(
                    "model {:?} runs on {} over {}; only ONNX models and linear heads over numbers read features",
                    model.name,
                    model.runtime,
                    model.base_model.as_deref().unwrap_or("its inputs")
                ),
            ));
        }
        let on_missing = match self.on_missing.as_deref() {
            None => OnMissing::Fail,
            Some(m) => OnMissing::parse(m).ok_or_else(|| {
                ApiError::invalid(
                    "on_missing",
                    format!("on_missing must be fail or default, got {m:?}"),
                )
            })?,
        };
        let defaults = match &self.defaults {
            None => Default::default(),
            Some(text) => serde_json::from_str(text).map_err(|e| {
                ApiError::invalid(
                    "defaults",
                    format!("defaults must be a JSON object of view:feature to value: {e}"),
                )
            })?,
        };
        let catalog = FeatureCatalogs::fresh(s.store(), ctx).await?;
        let binding = bind(&catalog, service, on_missing, defaults)?;
        let width = fixed_width(&catalog, &binding);
        Ok(Some(Bound { binding, width }))
    }
}

/// Reads an upload body up to `limit` bytes and stores it as a new version.
#[expect(clippy::too_many_arguments, reason = "one call per owner kind; the artifact's context")]
pub async fn upload_version(
    store: &dyn MetadataStore,
    artifacts: &dyn ArtifactStore,
    writer: KeyOwner<'_>,
    model: &Model,
    body: Body,
    limit: usize,
    bound: Option<&Bound>,
    actor: &AuditActor,
) -> Result<ModelVersion, ApiError> {
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    if model.runtime == REMOTE_RUNTIME {
        // A remote model's version is its config: `{"config": {...}}`.
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct NewRemoteVersion {
            config: serde_json::Value,
        }
        let v: NewRemoteVersion = crate::extract::parse_json(&bytes)?;
        let (sha, size) = remote_artifact(artifacts, &v.config).await?;
        return Ok(store.add_model_version(writer, model, &sha, size, None, actor).await?);
    }
    if bytes.is_empty() {
        return Err(ApiError::invalid(
            "body",
            "the artifact is empty; send its bytes as the request body",
        ));
    }
    // Decoding a large model is CPU work: off the async executor.
    let (runtime, b) = (model.runtime.clone(), bytes.clone());
    tokio::task::spawn_blocking(move || tessera_engine::check_artifact(&runtime, &b))
        .await
        .map_err(|e| ApiError::Internal(format!("artifact check failed to run: {e}")))?
        .map_err(|e| ApiError::invalid("body", e.to_string()))?;
    if let Some(b) = bound
        && model.runtime == "linear"
    {
        check_head_reads(&bytes, b)?;
    }
    let (sha, size) = artifacts.put(bytes.to_vec()).await?;
    let size = i64::try_from(size).unwrap_or(i64::MAX);
    let features = bound.map(|b| &b.binding);
    Ok(store.add_model_version(writer, model, &sha, size, features, actor).await?)
}

/// A linear head bound to features must take numbers, as many as they give.
fn check_head_reads(bytes: &[u8], b: &Bound) -> Result<(), ApiError> {
    let head = tessera_engine::linear::LinearHead::parse(bytes)
        .map_err(|e| ApiError::invalid("body", e.to_string()))?;
    if let Some(base) = &head.base_model {
        return Err(ApiError::invalid(
            "feature_service",
            format!("this head reads embeddings of {base:?}, not features"),
        ));
    }
    match b.width {
        Some(w) if w != head.features() => Err(ApiError::invalid(
            "feature_service",
            format!(
                "the head takes {} values per row; service {:?} gives {w}",
                head.features(),
                b.binding.service
            ),
        )),
        _ => Ok(()),
    }
}

/// Validates a remote config and stores it as an artifact (canonical JSON,
/// defaults filled in); returns its sha256 and size.
async fn remote_artifact(
    artifacts: &dyn ArtifactStore,
    config: &serde_json::Value,
) -> Result<(String, i64), ApiError> {
    let c = RemoteConfig::from_json(config)?;
    let (sha, size) = artifacts.put(c.to_artifact()).await?;
    Ok((sha, i64::try_from(size).unwrap_or(i64::MAX)))
}

/// The first version of a model registered with a config (remote models).
async fn first_version(
    artifacts: &dyn ArtifactStore,
    new: &NewModel,
) -> Result<Option<(String, i64)>, ApiError> {
    match &new.config {
        Some(c) => Ok(Some(remote_artifact(artifacts, c).await?)),
        None => Ok(None),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelWithVersions {
    #[serde(flatten)]
    pub model: Model,
    pub versions: Vec<ModelVersion>,
}

/// Register a model in the caller's tenant. A remote model
/// (`"runtime": "openai-compatible"`) comes with its `config`, which becomes version 1.
#[utoipa::path(post, path = "/v1/models", tag = "models", request_body = NewModel,
    responses((status = 201, body = Model), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn tenant_create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(new): ApiJson<NewModel>,
) -> Result<(StatusCode, Json<Model>), ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    new.validate()?;
    if new.segment.is_some() || new.scope.is_some() {
        return Err(ApiError::invalid(
            if new.scope.is_some() { "scope" } else { "segment" },
            "platform and segment models are registered by the platform (/admin/v1/models)",
        ));
    }
    refuse_unserved_bert(&s, &new, false)?;
    let first = first_version(s.artifacts(), &new).await?;
    let first = first.as_ref().map(|(sha, size)| (sha.as_str(), *size));
    let m = s.store().create_model(ModelScope::Tenant(&ctx), &new, first, &auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// `bert` embedding models are served for the platform only, and only the
/// ones the server loads from its configuration (the pool knows them by
/// name); registering one it would never serve is refused rather than left
/// answering 503 forever.
fn refuse_unserved_bert(s: &AppState, new: &NewModel, platform: bool) -> Result<(), ApiError> {
    if new.runtime != "bert" {
        return Ok(());
    }
    if !platform {
        return Err(ApiError::invalid(
            "runtime",
            "bert embedding models are served for the platform only; register an onnx model, \
             or a linear head over a platform embedding model (base_model)",
        ));
    }
    if s.models().state(&new.name).is_none() {
        return Err(ApiError::invalid(
            "runtime",
            format!(
                "this server loads no bert model named {:?}; bert models come from the server's configuration",
                new.name
            ),
        ));
    }
    Ok(())
}

/// Models the caller can use: its own, its segment's and the platform's.
#[utoipa::path(get, path = "/v1/models", tag = "models", responses((status = 200, body = List<Model>)))]
pub async fn tenant_list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<Model>>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    let mut seg = None;
    let view = tenant_view(&s, &ctx, &mut seg).await?;
    Ok(Json(List::of(s.store().list_models(view).await?)))
}

/// A model by name (resolved tenant -> segment -> platform), with its versions.
#[utoipa::path(get, path = "/v1/models/{name}", tag = "models",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = ModelWithVersions), (status = 404, body = ErrorBody)))]
pub async fn tenant_get(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<ModelWithVersions>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    let mut seg = None;
    let view = tenant_view(&s, &ctx, &mut seg).await?;
    let model = s.store().resolve_model(view, &name).await?;
    let versions = s.store().list_model_versions(view, &model).await?;
    Ok(Json(ModelWithVersions { model, versions }))
}

/// Upload a new version of one of the caller's models: the raw body is the
/// artifact, or for a remote model a JSON `{"config": {...}}`. With
/// `feature_service`, the version reads that service's features as its input.
#[utoipa::path(post, path = "/v1/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "model name"), VersionParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ModelVersion), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn tenant_upload(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    ApiQuery(p): ApiQuery<VersionParams>,
    body: Body,
) -> Result<(StatusCode, Json<ModelVersion>), ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    let mut seg = None;
    let view = tenant_view(&s, &ctx, &mut seg).await?;
    let model = s.store().resolve_model(view, &name).await?;
    // Only the tenant's own models take versions here; refuse before reading the body.
    if model.tenant_id.as_ref() != Some(ctx.tenant_id()) {
        return Err(ApiError::NotFound(format!(
            "model {name:?} not found among your tenant's models"
        )));
    }
    let bound = p.bind(&s, &ctx, &model).await?;
    let v = upload_version(
        s.store(),
        s.artifacts(),
        KeyOwner::Tenant(&ctx),
        &model,
        body,
        s.max_artifact_bytes(),
        bound.as_ref(),
        &auth.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Versions of a model the caller can see.
#[utoipa::path(get, path = "/v1/models/{name}/versions", tag = "models",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = List<ModelVersion>), (status = 404, body = ErrorBody)))]
pub async fn tenant_versions(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<List<ModelVersion>>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    let mut seg = None;
    let view = tenant_view(&s, &ctx, &mut seg).await?;
    let model = s.store().resolve_model(view, &name).await?;
    Ok(Json(List::of(s.store().list_model_versions(view, &model).await?)))
}

/// Register a platform model (`"scope": "platform"`, the default) or a segment
/// model (`"scope": "segment:<name>"`).
#[utoipa::path(post, path = "/admin/v1/models", tag = "models", request_body = NewModel,
    responses((status = 201, body = Model), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn admin_create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(new): ApiJson<NewModel>,
) -> Result<(StatusCode, Json<Model>), ApiError> {
    let sys = auth.system()?;
    new.validate()?;
    let admin_scope = new.admin_scope()?;
    let scope = match &admin_scope {
        AdminScope::Segment(seg) => ModelScope::Segment(&sys, seg),
        AdminScope::Platform => ModelScope::Platform(&sys),
    };
    refuse_unserved_bert(&s, &new, matches!(admin_scope, AdminScope::Platform))?;
    let first = first_version(s.artifacts(), &new).await?;
    let first = first.as_ref().map(|(sha, size)| (sha.as_str(), *size));
    let m = s.store().create_model(scope, &new, first, &auth.actor()).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// Every model of every owner.
#[utoipa::path(get, path = "/admin/v1/models", tag = "models", responses((status = 200, body = List<Model>)))]
pub async fn admin_list(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<List<Model>>, ApiError> {
    let sys = auth.system()?;
    Ok(Json(List::of(s.store().list_models(ModelView::System(&sys)).await?)))
}

/// Upload a version of a platform or segment model.
#[utoipa::path(post, path = "/admin/v1/models/{id}/versions", tag = "models",
    params(("id" = String, Path, description = "model id (mdl_...)")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = ModelVersion), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn admin_upload(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
    body: Body,
) -> Result<(StatusCode, Json<ModelVersion>), ApiError> {
    let sys = auth.system()?;
    let model = s.store().get_model_by_id(&sys, &id).await?;
    // A tenant's model is written as that tenant; shared models as the platform.
    let tenant_ctx = model.tenant_id.clone().map(|t| sys.tenant(t));
    let writer = KeyOwner::of(&sys, tenant_ctx.as_ref());
    let v = upload_version(
        s.store(),
        s.artifacts(),
        writer,
        &model,
        body,
        s.max_artifact_bytes(),
        None,
        &auth.actor(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(v)))
}

/// Versions of any model.
#[utoipa::path(get, path = "/admin/v1/models/{id}/versions", tag = "models",
    params(("id" = String, Path, description = "model id (mdl_...)")),
    responses((status = 200, body = List<ModelVersion>), (status = 404, body = ErrorBody)))]
pub async fn admin_versions(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<List<ModelVersion>>, ApiError> {
    let sys = auth.system()?;
    let model = s.store().get_model_by_id(&sys, &id).await?;
    Ok(Json(List::of(s.store().list_model_versions(ModelView::System(&sys), &model).await?)))
}
