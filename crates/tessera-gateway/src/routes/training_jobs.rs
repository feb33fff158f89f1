//! Training jobs over HTTP (L2): `POST /v1/training-jobs` checks the spec
//! against its dataset's schema (columns, types, classes, a holdout big
//! enough to score), queues the job and answers 202; a replica's runner
//! takes it (`tessera-serving/src/training.rs`). Jobs are read and
//! cancelled by id.

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse as _, Response};
use serde_json::{Value, json};
use tessera_core::auth::TenantCtx;
use tessera_core::role::Operation;
use tessera_core::training::{DEFAULT_BASE_MODEL, Job, JobSpec};
use tessera_store::ModelView;

use super::List;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;

/// The fewest held-out rows a job may score on.
const MIN_HOLDOUT: f64 = 10.0;

/// A dataset column's type and distinct count, from its schema.
fn column<'a>(schema: &'a Value, name: &str) -> Option<&'a Value> {
    schema.as_array()?.iter().find(|c| c["name"] == name)
}

fn names(schema: &Value) -> String {
    schema
        .as_array()
        .map(|cols| cols.iter().filter_map(|c| c["name"].as_str()).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The spec checked against the dataset: every problem a 400 naming it.
fn check_against(spec: &JobSpec, schema: &Value, rows: u64) -> Result<(), ApiError> {
    let need = |param: &str, name: &str| {
        column(schema, name).ok_or_else(|| {
            ApiError::invalid(
                param,
                format!("the dataset has no column {name:?}; it has {}", names(schema)),
            )
        })
    };
    let label = need("label", &spec.label)?;
    if spec.task == "classification" {
        match label["distinct"].as_u64() {
            Some(d) if d < 2 => {
                return Err(ApiError::invalid(
                    "label",
                    format!(
                        "the label column {:?} has {d} class; a classifier needs at least two",
                        spec.label
                    ),
                ));
            }
            None => {
                return Err(ApiError::invalid(
                    "label",
                    format!(
                        "the label column {:?} has more than {} distinct values: not classes",
                        spec.label,
                        tessera_training::dataset::MAX_DISTINCT
                    ),
                ));
            }
            Some(_) => {}
        }
    } else if !matches!(label["dtype"].as_str(), Some("int64" | "float64" | "bool")) {
        return Err(ApiError::invalid(
            "label",
            format!("a regression label must be numeric; {:?} is {}", spec.label, label["dtype"]),
        ));
    }
    if let Some(t) = &spec.text {
        need("text", t)?;
    }
    if let Some(f) = &spec.features {
        tessera_training::prepare::features_of(schema, f)
            .map_err(|e| ApiError::invalid("features", e))?;
    }
    if let Some(p) = &spec.protected_attribute {
        if spec.task != "classification" {
            return Err(ApiError::invalid(
                "protected_attribute",
                "fairness is measured for classifiers; a regression job has no protected_attribute",
            ));
        }
        if need("protected_attribute", p)?["distinct"].as_u64().is_none() {
            return Err(ApiError::invalid(
                "protected_attribute",
                format!("{p:?} has too many distinct values to be groups"),
            ));
        }
    }
    let usable = rows.saturating_sub(label["nulls"].as_u64().unwrap_or(0));
    if (usable as f64 * spec.holdout).round() < MIN_HOLDOUT {
        return Err(ApiError::invalid(
            "holdout",
            format!(
                "{usable} labelled rows with holdout {} hold out fewer than {MIN_HOLDOUT} rows: too few to score",
                spec.holdout
            ),
        ));
    }
    Ok(())
}

/// Start a training job: it makes the next version of `model` from `dataset`.
#[utoipa::path(post, path = "/v1/training-jobs", tag = "training", request_body = JobSpec,
    responses((status = 202, body = Job), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(spec): ApiJson<JobSpec>,
) -> Result<(StatusCode, Json<Job>), ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    spec.validate()?;
    let dataset = s.store().get_dataset(&ctx, &spec.dataset).await.map_err(|e| match e {
        tessera_store::StoreError::NotFound { .. } => {
            ApiError::invalid("dataset", format!("no dataset {:?} in this tenant", spec.dataset))
        }
        other => other.into(),
    })?;
    check_against(&spec, &dataset.schema, dataset.rows)?;
    if spec.text.is_some() {
        let base = spec.base_model.as_deref().unwrap_or(DEFAULT_BASE_MODEL);
        let segment = s.tenants().get(s.store(), &ctx).await?.tenant.segment.clone();
        let view = ModelView::Tenant { ctx: &ctx, segment: segment.as_deref() };
        let m =
            s.store().resolve_model(view, base).await.map_err(|_| {
                ApiError::invalid("base_model", format!("no embedding model {base:?}"))
            })?;
        if m.runtime != "bert" {
            return Err(ApiError::invalid(
                "base_model",
                format!("{base:?} is not an embedding model"),
            ));
        }
    }
    let job = s.store().create_training_job(&ctx, &spec, &auth.actor()).await?;
    s.trainer().wake();
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The tenant's training jobs, newest first.
#[utoipa::path(get, path = "/v1/training-jobs", tag = "training",
    responses((status = 200, body = List<Job>)))]
pub async fn list(State(s): State<AppState>, auth: Authed) -> Result<Json<List<Job>>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    Ok(Json(List::of(s.store().list_training_jobs(&ctx).await?)))
}

/// One job: its status, progress (phase, epoch, loss, ETA), and once it
/// succeeded the model version it made and its holdout metrics.
#[utoipa::path(get, path = "/v1/training-jobs/{id}", tag = "training",
    params(("id" = String, Path, description = "job id (job_...)")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    Ok(Json(s.store().get_training_job(&ctx, &id).await?))
}

/// Follow a job as server-sent events: `event: progress` with the job
/// each time it changes (read from the store every half second, so any
/// replica can serve it), then `event: done` with the finished job, and the
/// stream ends. A comment keeps a quiet connection open.
#[utoipa::path(get, path = "/v1/training-jobs/{id}/events", tag = "training",
    params(("id" = String, Path, description = "job id (job_...)")),
    responses((status = 200, description = "text/event-stream of the job", content_type = "text/event-stream", body = String),
        (status = 404, body = ErrorBody)))]
pub async fn events(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    let first = s.store().get_training_job(&ctx, &id).await?;
    let follow = Follow { s, ctx, id, next: Some(first), last: None, quiet: 0, ended: false };
    let body = futures_util::stream::unfold(follow, |mut f| async move {
        let chunk = f.next_chunk().await?;
        Some((Ok::<_, std::convert::Infallible>(chunk), f))
    });
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok((h, Body::from_stream(body)).into_response())
}

/// A job followed for its event stream.
struct Follow {
    s: AppState,
    ctx: TenantCtx,
    id: String,
    /// A read not sent yet.
    next: Option<Job>,
    last: Option<Job>,
    /// Polls without a change since the last chunk.
    quiet: u32,
    ended: bool,
}

impl Follow {
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if self.ended {
            return None;
        }
        loop {
            let job = match self.next.take() {
                Some(j) => j,
                None => {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    match self.s.store().get_training_job(&self.ctx, &self.id).await {
                        Ok(j) => j,
                        Err(e) => {
                            self.ended = true;
                            let msg = json!({"error": {"message": format!("the job could not be read: {e}"), "code": "service_unavailable"}});
                            return Some(Bytes::from(format!("event: error\ndata: {msg}\n\n")));
                        }
                    }
                }
            };
            if self.last.as_ref() == Some(&job) {
                self.quiet += 1;
                // About every 15 s of no change, a comment.
                if self.quiet.is_multiple_of(30) {
                    return Some(Bytes::from_static(b": keep-alive\n\n"));
                }
                continue;
            }
            self.quiet = 0;
            let event = if job.status.is_final() { "done" } else { "progress" };
            self.ended = job.status.is_final();
            let data = serde_json::to_string(&job).unwrap_or_default();
            self.last = Some(job);
            return Some(Bytes::from(format!("event: {event}\ndata: {data}\n\n")));
        }
    }
}

/// Cancel a queued or running job (a finished one is 409).
#[utoipa::path(post, path = "/v1/training-jobs/{id}/cancel", tag = "training",
    params(("id" = String, Path, description = "job id (job_...)")),
    responses((status = 200, body = Job), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn cancel(
    State(s): State<AppState>,
    auth: Authed,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    Ok(Json(s.store().cancel_training_job(&ctx, &id, &auth.actor()).await?))
}

/// Where a model version came from.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Lineage {
    pub model: String,
    pub version: i64,
    pub sha256: String,
    pub size: i64,
    pub created_at: tessera_core::time::Timestamp,
    /// `training_job` or `upload`.
    pub source: String,
    /// The job that made it: who started it, its spec (dataset, seed,
    /// hyperparameters), and in its metrics the dataset's id and hash, the
    /// trainer, the chosen L2, the base model's version and the scores.
    pub job: Option<Job>,
}

/// A version's lineage: its artifact, and the training job that made it, if one did.
#[utoipa::path(get, path = "/v1/models/{name}/versions/{version}/lineage", tag = "models",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, body = Lineage), (status = 404, body = ErrorBody)))]
pub async fn lineage(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Lineage>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead)?;
    let segment = s.tenants().get(s.store(), &ctx).await?.tenant.segment.clone();
    let view = ModelView::Tenant { ctx: &ctx, segment: segment.as_deref() };
    let model = s.store().resolve_model(view, &name).await?;
    let versions = s.store().list_model_versions(view, &model).await?;
    let v = versions
        .iter()
        .find(|v| v.version.to_string() == version)
        .ok_or_else(|| ApiError::NotFound(format!("model {name:?} has no version {version:?}")))?;
    // Only the tenant's own models come from its jobs.
    let job = if model.tenant_id.as_ref() == Some(ctx.tenant_id()) {
        s.store().training_job_for_version(&ctx, &model.name, v.version).await?
    } else {
        None
    };
    Ok(Json(Lineage {
        model: model.name.clone(),
        version: v.version,
        sha256: v.sha256.clone(),
        size: v.size,
        created_at: v.created_at,
        source: if job.is_some() { "training_job" } else { "upload" }.into(),
        job,
    }))
}
