//! Governance over HTTP (L1, L3): a version's validation report, validating
//! an uploaded version on a dataset, a platform admin's audited override of
//! a failed gate, and aliases (`champion`, `challenger`, any name) that
//! requests and deployments may name as `model@alias`. An alias is never
//! pointed at a version that failed its gate.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::json;
use tessera_core::auth::TenantCtx;
use tessera_core::governance::{Alias, AliasTarget, Gate, OverrideRequest, Report, validate_alias};
use tessera_core::model::{Model, ModelVersion};
use tessera_core::role::Operation;
use tessera_serving::inference::gate_refusal;
use tessera_serving::validation::{self, EvalInputs, EvalSet};
use tessera_store::{KeyOwner, ModelView};
use utoipa::ToSchema;

use super::List;
use super::deployments::read_json;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The most rows a synchronous validation reads.
const MAX_VALIDATION_ROWS: usize = 50_000;

/// The tenant's own model `name` (another tenant's, or a shared one, is 404).
pub(crate) async fn own_model(
    s: &AppState,
    auth: &Authed,
    name: &str,
    op: Operation,
) -> Result<(TenantCtx, Model), ApiError> {
    let ctx = auth.tenant(op)?;
    let segment = s.tenants().get(s.store(), &ctx).await?.tenant.segment.clone();
    let view = ModelView::Tenant { ctx: &ctx, segment: segment.as_deref() };
    let model = s.store().resolve_model(view, name).await?;
    if model.tenant_id.as_ref() != Some(ctx.tenant_id()) {
        return Err(ApiError::NotFound(format!(
            "model {name:?} not found among your tenant's models"
        )));
    }
    Ok((ctx, model))
}

async fn version_of(
    s: &AppState,
    view: ModelView<'_>,
    model: &Model,
    version: &str,
) -> Result<ModelVersion, ApiError> {
    s.store()
        .list_model_versions(view, model)
        .await?
        .into_iter()
        .find(|v| v.version.to_string() == version)
        .ok_or_else(|| {
            ApiError::NotFound(format!("model {:?} has no version {version:?}", model.name))
        })
}

/// The refusal of giving live traffic to `v`, if its gate failed.
pub async fn refuse_if_failed(
    s: &AppState,
    view: ModelView<'_>,
    model: &Model,
    v: &ModelVersion,
) -> Result<(), ApiError> {
    if Gate::allows_traffic(v.gate) {
        return Ok(());
    }
    Err(gate_refusal(s.store(), view, model, v.version).await.into())
}

/// A version's validation report: the checks against the tenant's thresholds, and the measurements.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/report", tag = "models",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, body = Report), (status = 404, body = ErrorBody)))]
pub async fn report(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Report>, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsRead).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: None };
    let v = version_of(&s, view, &model, &version).await?;
    s.store().get_version_report(view, &model, v.version).await?.map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "{name}@{version} has no report yet; validate it with POST /v1/models/{name}/versions/{version}/validate"
        ))
    })
}

/// Body of `POST /v1/models/{name}/versions/{v}/validate`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    /// The dataset version's id (`ds_...`) with labelled rows.
    pub dataset: String,
    /// The column with the true labels (or values).
    pub label: String,
    /// A text column, for a head over text.
    #[serde(default)]
    pub text: Option<String>,
    /// Numeric columns in the model's input order, for a model over numbers.
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// A column whose groups the fairness check compares.
    #[serde(default)]
    pub protected_attribute: Option<String>,
    /// Seeds the perturbations of the robustness check.
    #[serde(default)]
    pub seed: u64,
}

/// Validate a version (an uploaded one, or again) on a dataset: the report
/// is stored with the version and its gate follows it.
#[utoipa::path(post, path = "/v1/models/{name}/versions/{version}/validate", tag = "models",
    request_body = ValidateRequest,
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, body = Report), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn validate(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Report>, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsWrite).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: None };
    let v = version_of(&s, view, &model, &version).await?;
    let req: ValidateRequest = read_json(&s, body).await?;
    if !matches!(model.runtime.as_str(), "linear" | "onnx") {
        return Err(ApiError::invalid(
            "model",
            format!(
                "model {name:?} runs on {}; only linear and onnx versions are validated",
                model.runtime
            ),
        ));
    }
    match (&req.text, &req.features) {
        (Some(_), Some(_)) | (None, None) => {
            return Err(ApiError::invalid(
                "text",
                "name the inputs: a text column or feature columns",
            ));
        }
        _ => {}
    }
    if req.protected_attribute.is_some() && model.task != "classification" {
        return Err(ApiError::invalid(
            "protected_attribute",
            "fairness is measured for classifiers",
        ));
    }
    let dataset = s.store().get_dataset(&ctx, &req.dataset).await.map_err(|e| match e {
        tessera_store::StoreError::NotFound { .. } => {
            ApiError::invalid("dataset", format!("no dataset {:?} in this tenant", req.dataset))
        }
        other => other.into(),
    })?;
    if dataset.rows as usize > MAX_VALIDATION_ROWS {
        return Err(ApiError::invalid(
            "dataset",
            format!(
                "the dataset has {} rows; validation reads at most {MAX_VALIDATION_ROWS}",
                dataset.rows
            ),
        ));
    }
    let (_, prepared) = validation::read_dataset(
        &s,
        &ctx,
        &req.dataset,
        &req.label,
        req.text.as_deref(),
        req.features.as_deref(),
        req.protected_attribute.as_deref(),
    )
    .await
    .map_err(|e| ApiError::invalid("dataset", e))?;
    if prepared
        .layout
        .iter()
        .any(|c| matches!(c, tessera_training::prepare::InputColumn::Categorical { .. }))
    {
        return Err(ApiError::invalid(
            "features",
            "an uploaded version is validated on numeric columns, in its input order",
        ));
    }
    if prepared.labels.is_empty() {
        return Err(ApiError::invalid("dataset", "the dataset has no labelled rows"));
    }
    let inputs = match prepared.features {
        Some(x) => EvalInputs::Rows(x),
        None => EvalInputs::Texts(prepared.texts),
    };
    let set = EvalSet {
        inputs,
        labels: prepared.labels,
        groups: req.protected_attribute.clone().zip(prepared.groups),
        seed: req.seed,
        dataset: Some(
            json!({"id": dataset.id, "name": dataset.name, "version": dataset.version, "sha256": dataset.sha256, "rows": "all"}),
        ),
        expected: None,
    };
    let thresholds = s.tenants().get(s.store(), &ctx).await?.tenant.gate_thresholds.clone();
    let report = validation::validate(&s, &model, &v, set, &thresholds)
        .await
        .map_err(|e| ApiError::invalid("dataset", e))?;
    s.store()
        .put_version_report(KeyOwner::Tenant(&ctx), &model, v.version, &report, &auth.actor())
        .await?;
    Ok(Json(report))
}

/// Let a version that failed its gate take traffic (platform admins; the reason is kept and audited).
#[utoipa::path(post, path = "/admin/v1/models/{id}/versions/{version}/gate-override", tag = "models",
    request_body = OverrideRequest,
    params(("id" = String, Path, description = "model id (mdl_...)"), ("version" = String, Path, description = "version")),
    responses((status = 200, body = Report), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn gate_override(
    State(s): State<AppState>,
    auth: Authed,
    Path((id, version)): Path<(String, String)>,
    ApiJson(req): ApiJson<OverrideRequest>,
) -> Result<Json<Report>, ApiError> {
    let sys = auth.system()?;
    if req.reason.trim().len() < 3 {
        return Err(ApiError::invalid("reason", "give the reason for the override"));
    }
    let model = s.store().get_model_by_id(&sys, &id).await?;
    let v = version_of(&s, ModelView::System(&sys), &model, &version).await?;
    let tenant_ctx = model.tenant_id.clone().map(|t| sys.tenant(t));
    let writer = KeyOwner::of(&sys, tenant_ctx.as_ref());
    Ok(Json(
        s.store()
            .override_gate(writer, &model, v.version, req.reason.trim(), &auth.actor())
            .await?,
    ))
}

/// A model's aliases.
#[utoipa::path(get, path = "/v1/models/{name}/aliases", tag = "models",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = List<Alias>), (status = 404, body = ErrorBody)))]
pub async fn list_aliases(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<List<Alias>>, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsRead).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: None };
    Ok(Json(List::of(s.store().list_aliases(view, &model).await?)))
}

/// Point an alias at a version (created or moved; audited). A version that failed its gate is refused with 409 `gate_failed`.
#[utoipa::path(put, path = "/v1/models/{name}/aliases/{alias}", tag = "models", request_body = AliasTarget,
    params(("name" = String, Path, description = "model name"), ("alias" = String, Path, description = "alias")),
    responses((status = 200, body = Alias), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn put_alias(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, alias)): Path<(String, String)>,
    body: Body,
) -> Result<Json<Alias>, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsWrite).await?;
    validate_alias(&alias)?;
    let req: AliasTarget = read_json(&s, body).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: None };
    let v = version_of(&s, view, &model, &req.version.to_string()).await?;
    refuse_if_failed(&s, view, &model, &v).await?;
    Ok(Json(
        s.store()
            .put_alias(KeyOwner::Tenant(&ctx), &model, &alias, v.version, &auth.actor())
            .await?,
    ))
}

/// Remove an alias.
#[utoipa::path(delete, path = "/v1/models/{name}/aliases/{alias}", tag = "models",
    params(("name" = String, Path, description = "model name"), ("alias" = String, Path, description = "alias")),
    responses((status = 204, description = "removed"), (status = 404, body = ErrorBody)))]
pub async fn delete_alias(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, alias)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let (ctx, model) = own_model(&s, &auth, &name, Operation::ModelsWrite).await?;
    s.store().delete_alias(KeyOwner::Tenant(&ctx), &model, &alias, &auth.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}
