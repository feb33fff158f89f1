//! Open Inference Protocol v2 (KServe V2 / Triton) REST: server and model
//! metadata, readiness, inference (JSON tensors and Triton's binary tensor
//! extension), and the model repository extension. KServe v1 is in `kserve.rs`.
//!
//! Text models take one `BYTES` input (shape `[N]` or `[N, 1]`) and answer the
//! `FP32` output `embedding` of shape `[N, dim]`. Errors on `/v2` routes carry
//! the OIP string form `{"error": "<message>"}` with the stable `code`,
//! `type` and `param` beside it (see `request.rs`).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tessera_core::model::Model;
use tessera_core::role::Operation;
use tessera_engine::pool::{EmbeddingModel, ModelSource, ModelState, SourceKind, TensorModel};
use tessera_engine::tensor::{Tensor, TensorData, TensorSpec};
use tessera_store::ModelView;
use utoipa::ToSchema;

use super::embeddings::{authorize_model, require_served_embedding, timing_headers};
pub(super) use super::oip_tensors::{flatten, split_body, tensor_input, text_input, wants_binary};
use super::serving::{attempt, deployment_for, fallbackable, mirror};
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::parse_json;
use crate::state::AppState;

pub(super) const OUTPUT: &str = "embedding";
pub(super) const BINARY_HEADER: &str = "inference-header-content-length";

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    pub inputs: Vec<InferInput>,
    #[serde(default)]
    pub outputs: Option<Vec<RequestedOutput>>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InferInput {
    pub name: String,
    pub shape: Vec<i64>,
    pub datatype: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// Row-major data, flat or nested; absent when sent as binary.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub data: Option<Value>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct RequestedOutput {
    pub name: String,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: String,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// A model resolved for the caller and loaded.
pub(super) struct Served {
    pub(super) backend: ServedBackend,
    /// The registry entry that answered (its owner is the tier).
    pub(super) model: Model,
    /// The model's deployment (fallbacks, timeout, shadows), if it has one.
    pub(super) deployment: Option<Arc<tessera_core::model::Deployment>>,
}

pub(super) enum ServedBackend {
    Text(Arc<EmbeddingModel>),
    Tensor { model: Arc<TensorModel>, base: Option<Arc<EmbeddingModel>> },
}

impl Served {
    pub(super) fn version(&self) -> &str {
        match &self.backend {
            ServedBackend::Text(m) => &m.version,
            ServedBackend::Tensor { model, .. } => &model.version,
        }
    }
}

/// Who a request is for, for sticky traffic splits: the `x-tessera-user`
/// header, else the request id.
pub(super) fn user_of(headers: &HeaderMap, auth: &Authed) -> String {
    headers
        .get("x-tessera-user")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map_or_else(|| auth.request_id.clone(), str::to_owned)
}

/// A text embedding model resolved for the caller (for `/v1/embeddings`-style use).
async fn served(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
) -> Result<(Model, Arc<EmbeddingModel>), ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let model = authorize_model(s, &ctx, &auth.principal, name).await?.model.clone();
    require_served_embedding(&model)?;
    let engine = s.models().get(&model.name).await?;
    if let Some(v) = version
        && v != engine.version
    {
        return Err(ApiError::NotFound(format!("model {name:?} has no version {v:?}")));
    }
    Ok((model, engine))
}

/// Any model the caller may run: a platform text model, or a registered ONNX
/// model or linear head (loaded from its artifact on first use).
pub(super) async fn serve_any(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
    user: &str,
) -> Result<Served, ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let resolved = authorize_model(s, &ctx, &auth.principal, name).await?;
    let model = resolved.model.clone();
    if model.runtime == "bert" {
        return served(s, auth, name, version).await.map(|(model, e)| Served {
            backend: ServedBackend::Text(e),
            model,
            deployment: None,
        });
    }
    let info = s.tenants().get(s.store(), &ctx).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: info.tenant.segment.as_deref() };
    let versions = &resolved.versions;
    let deployment = s.deployment(view, &model).await?;
    let chosen = match version {
        Some(v) => versions.iter().find(|x| x.version.to_string() == v),
        // A deployment splits traffic by a sticky hash of the user; without
        // one the latest version serves.
        None => match &deployment {
            Some(d) => {
                let v = d.pick(&model.id, user);
                versions.iter().find(|x| x.version == v)
            }
            None => versions.last(),
        },
    };
    let Some(chosen) = chosen else {
        return match version {
            Some(v) => Err(ApiError::NotFound(format!("model {name:?} has no version {v:?}"))),
            None => Err(ApiError::ModelNotReady(format!(
                "model {name:?} has no versions yet; upload one"
            ))),
        };
    };
    let key = format!("{}@{}", model.id, chosen.version);
    if s.models().needs_load(&key) {
        // One request per model reads the artifact and starts the load; the
        // others wait here, then find it loading or loaded.
        let gate = s.load_gate(&key);
        let held = gate.lock().await;
        let started = async {
            if s.models().needs_load(&key) {
                let bytes = s.artifacts().get(&chosen.sha256).await?;
                let kind = match model.runtime.as_str() {
                    "onnx" => SourceKind::Onnx(bytes),
                    _ => SourceKind::Linear(bytes),
                };
                let source = ModelSource {
                    name: key.clone(),
                    version: chosen.version.to_string(),
                    kind,
                    pinned: false,
                };
                s.models().load(source, None);
            }
            Ok::<(), ApiError>(())
        }
        .await;
        drop(held);
        s.release_load_gate(&key);
        started?;
    }
    let tensor = s.models().get_tensor(&key).await?;
    let base_name = tensor
        .base_model
        .clone()
        .or_else(|| model.base_model.clone().filter(|_| model.runtime == "linear"));
    let base = match base_name {
        Some(b) => Some(served(s, auth, &b, None).await?.1),
        None => None,
    };
    Ok(Served { backend: ServedBackend::Tensor { model: tensor, base }, model, deployment })
}

fn served_metadata(name: &str, served: &Served) -> ModelMetadata {
    match &served.backend {
        ServedBackend::Text(e) => metadata(name, e),
        ServedBackend::Tensor { model, base } => {
            let spec = |t: &TensorSpec| TensorMetadata {
                name: t.name.clone(),
                datatype: t.datatype.clone(),
                shape: t.shape.clone(),
            };
            let inputs = match base {
                Some(_) => vec![TensorMetadata {
                    name: "text".into(),
                    datatype: "BYTES".into(),
                    shape: vec![-1],
                }],
                None => model.inputs.iter().map(spec).collect(),
            };
            ModelMetadata {
                name: name.to_owned(),
                versions: vec![model.version.clone()],
                platform: if base.is_some() || model.labels.is_some() {
                    "tessera_linear".into()
                } else {
                    "onnxruntime_onnx".into()
                },
                inputs,
                outputs: model.outputs.iter().map(spec).collect(),
            }
        }
    }
}

fn metadata(name: &str, engine: &EmbeddingModel) -> ModelMetadata {
    ModelMetadata {
        name: name.to_owned(),
        versions: vec![engine.version.clone()],
        platform: "tessera_bert_onnx".into(),
        inputs: vec![TensorMetadata {
            name: "text".into(),
            datatype: "BYTES".into(),
            shape: vec![-1],
        }],
        outputs: vec![TensorMetadata {
            name: OUTPUT.into(),
            datatype: "FP32".into(),
            shape: vec![-1, engine.dim as i64],
        }],
    }
}

/// Server metadata.
#[utoipa::path(get, path = "/v2", tag = "open inference protocol", responses((status = 200, description = "server metadata")))]
pub async fn server_metadata(auth: Authed) -> Result<Json<Value>, ApiError> {
    auth.tenant(Operation::ModelsRead).or_else(|_| auth.tenant(Operation::Inference))?;
    Ok(Json(
        json!({"name": "tessera", "version": env!("CARGO_PKG_VERSION"), "extensions": ["model_repository", "binary_tensor_data"]}),
    ))
}

/// Model metadata.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = ModelMetadata), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model_metadata(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let m = serve_any(&s, &auth, &name, None, "").await?;
    Ok(Json(served_metadata(&name, &m)))
}

/// Metadata of one model version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, body = ModelMetadata), (status = 404, body = ErrorBody)))]
pub async fn version_metadata(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, ApiError> {
    let m = serve_any(&s, &auth, &name, Some(&version), "").await?;
    Ok(Json(served_metadata(&name, &m)))
}

async fn ready(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    serve_any(s, auth, name, version, "").await?;
    Ok(Json(json!({"name": name, "ready": true})))
}

/// Model readiness: 200 when ready, 503 otherwise.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, description = "ready"), (status = 503, body = ErrorBody)))]
pub async fn model_ready(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    ready(&s, &auth, &name, None).await
}

/// Readiness of one model version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, description = "ready"), (status = 503, body = ErrorBody)))]
pub async fn version_ready(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    ready(&s, &auth, &name, Some(&version)).await
}

async fn infer(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    // The model first: a model the caller cannot see is a 404 whatever the body.
    let start = std::time::Instant::now();
    let admitted = super::admission::admit(s, auth, name, (0, 0)).await?;
    let user = user_of(headers, auth);
    let primary = match serve_any(s, auth, name, version, &user).await {
        Ok(sv) => Ok(sv),
        // A primary that cannot be served may still have fallbacks.
        Err(e) if fallbackable(&e) => Err(e),
        Err(e) => return Err(e),
    };
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let (head, binary) = split_body(headers, &bytes)?;
    let req: InferRequest = parse_json(head)?;
    let deployment = match &primary {
        Ok(sv) => sv.deployment.clone(),
        Err(_) => deployment_for(s, auth, name).await,
    };
    let timeout = deployment.as_ref().and_then(|d| d.timeout_ms).map(Duration::from_millis);
    let model_start = std::time::Instant::now();
    let mut outcome = match primary {
        Ok(sv) => {
            let r = attempt(s, &sv, &req, binary, name, timeout).await;
            if r.is_ok() && version.is_none() {
                mirror(s, auth, &sv, &req, binary, name, &user);
            }
            r.map(|out| (sv, out))
        }
        Err(e) => Err(e),
    };
    if let (Err(e), Some(d)) = (&outcome, &deployment)
        && fallbackable(e)
    {
        for fallback in &d.fallbacks {
            let Ok(candidate) = serve_any(s, auth, fallback, None, &user).await else { continue };
            if let Ok(out) = attempt(s, &candidate, &req, binary, fallback, timeout).await {
                outcome = Ok((candidate, out));
                break;
            }
        }
    }
    let (served, outputs) = outcome?;
    let model_time = model_start.elapsed();
    // A classifier under a deployment with post-processing rules also
    // answers `label` (BYTES, "" when withheld) and `score` (FP32) per row.
    let post = post_outputs(&served, &outputs);
    let is_post = |n: &str| post.iter().any(|o| o["name"] == n);
    let selected: Vec<&(String, Tensor)> = match &req.outputs {
        None => outputs.iter().collect(),
        Some(wanted) => wanted
            .iter()
            .filter(|w| !is_post(&w.name))
            .map(|w| {
                outputs.iter().find(|(n, _)| *n == w.name).ok_or_else(|| {
                    let have: Vec<&str> = outputs.iter().map(|(n, _)| n.as_str()).collect();
                    ApiError::invalid(
                        "outputs",
                        format!("model {name:?} has no output {:?}; it has {have:?}", w.name),
                    )
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let mut tail = Vec::new();
    let mut out_json = Vec::new();
    for (out_name, t) in selected {
        let mut o = json!({"name": out_name, "datatype": t.datatype(), "shape": t.shape});
        if wants_binary(&req, out_name) {
            let before = tail.len();
            match &t.data {
                TensorData::F32(v) => tail.extend(v.iter().flat_map(|x| x.to_le_bytes())),
                TensorData::I64(v) => tail.extend(v.iter().flat_map(|x| x.to_le_bytes())),
            }
            o["parameters"] = json!({"binary_data_size": tail.len() - before});
        } else {
            o["data"] = match &t.data {
                TensorData::F32(v) => Value::from(v.clone()),
                TensorData::I64(v) => Value::from(v.clone()),
            };
        }
        out_json.push(o);
    }
    out_json.extend(post.into_iter().filter(|o| {
        req.outputs.as_ref().is_none_or(|w| w.iter().any(|w| o["name"] == w.name.as_str()))
    }));
    let mut answer =
        json!({"model_name": name, "model_version": served.version(), "outputs": out_json});
    if let Some(id) = &req.id {
        answer["id"] = Value::String(id.clone());
    }
    let head = serde_json::to_vec(&answer).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = if tail.is_empty() {
        let mut r = (StatusCode::OK, head).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    } else {
        let len = head.len();
        let mut body = head;
        body.extend_from_slice(&tail);
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if let Ok(v) = HeaderValue::from_str(&len.to_string()) {
            r.headers_mut().insert(BINARY_HEADER, v);
        }
        r
    };
    resp.headers_mut().extend(timing_headers(
        &served.model,
        &format!("{name}@{}", served.version()),
        start.elapsed(),
        model_time,
    ));
    resp.headers_mut().extend(admitted.headers());
    Ok(resp)
}

/// The `label` and `score` outputs a deployment's post-processing rules give
/// a classifier's `probabilities`; empty without rules or labels.
fn post_outputs(served: &Served, outputs: &[(String, Tensor)]) -> Vec<Value> {
    let (ServedBackend::Tensor { model, .. }, Some(post)) =
        (&served.backend, served.deployment.as_ref().and_then(|d| d.post.as_ref()))
    else {
        return Vec::new();
    };
    let Some(labels) = &model.labels else { return Vec::new() };
    let Some((_, probs)) = outputs.iter().find(|(n, _)| n == "probabilities") else {
        return Vec::new();
    };
    let TensorData::F32(p) = &probs.data else { return Vec::new() };
    let (names, scores): (Vec<String>, Vec<f32>) = p
        .chunks(labels.len().max(1))
        .map(|row| {
            let (label, score) = post.apply(labels, row);
            (label.unwrap_or_default(), score)
        })
        .unzip();
    let n = names.len();
    vec![
        json!({"name": "label", "datatype": "BYTES", "shape": [n], "data": names}),
        json!({"name": "score", "datatype": "FP32", "shape": [n], "data": scores}),
    ]
}

/// Inference (JSON tensors, or Triton's binary tensor extension).
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "open inference protocol", request_body = InferRequest,
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, description = "inference response"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn model_infer(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    metered_infer(&s, &auth, &name, None, &headers, body).await
}

/// `infer` with its usage recorded.
async fn metered_infer(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let started = std::time::Instant::now();
    let draft = super::admission::draft(s, auth, "/v2/models/{name}/infer", name).await;
    let r = infer(s, auth, name, version, headers, body).await;
    super::admission::finish(draft, &r, started);
    r
}

/// Inference on one model version.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "open inference protocol", request_body = InferRequest,
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, description = "inference response"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn version_infer(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    metered_infer(&s, &auth, &name, Some(&version), &headers, body).await
}

/// Repository index: the models the caller can use and their state.
#[utoipa::path(post, path = "/v2/repository/index", tag = "open inference protocol", responses((status = 200, description = "models and states")))]
pub async fn repository_index(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<Vec<Value>>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead).or_else(|_| auth.tenant(Operation::Inference))?;
    let info = s.tenants().get(s.store(), &ctx).await?;
    let models = s
        .store()
        .list_models(ModelView::Tenant { ctx: &ctx, segment: info.tenant.segment.as_deref() })
        .await?;
    Ok(Json(
        models
            .into_iter()
            .map(|m| {
                let (state, reason) = match s
                    .models()
                    .state(&m.name)
                    .filter(|_| m.owner == tessera_core::model::ModelOwner::Platform)
                {
                    Some(ModelState::Ready) => ("READY", String::new()),
                    Some(ModelState::Loading) => ("LOADING", String::new()),
                    Some(ModelState::Failed(r)) => ("UNAVAILABLE", r),
                    None => ("UNAVAILABLE", "not loaded".into()),
                };
                json!({"name": m.name, "version": "1", "state": state, "reason": reason})
            })
            .collect(),
    ))
}

/// Load a model. Platform models are loaded by the server; this answers once it is ready.
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, description = "loaded"), (status = 503, body = ErrorBody)))]
pub async fn repository_load(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    serve_any(&s, &auth, &name, None, "").await?;
    Ok(Json(json!({})))
}

/// Unload a model. Shared (platform and segment) models stay loaded for other tenants.
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn repository_unload(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let ctx = auth.tenant(Operation::ModelsWrite)?;
    let model = authorize_model(&s, &ctx, &auth.principal, &name).await?.model.clone();
    Err(ApiError::Forbidden(format!(
        "model {:?} is a {} model shared with other tenants; only the operator unloads it",
        model.name,
        model.owner.as_str()
    )))
}
