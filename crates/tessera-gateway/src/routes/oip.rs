//! Open Inference Protocol v2 (KServe V2 / Triton) REST: server and model
//! metadata, readiness, inference (JSON tensors and Triton's binary tensor
//! extension), and the model repository extension; plus KServe v1 `:predict`.
//!
//! Text models take one `BYTES` input (shape `[N]` or `[N, 1]`) and answer the
//! `FP32` output `embedding` of shape `[N, dim]`. Errors on `/v2` routes carry
//! the OIP string form `{"error": "<message>"}` with the stable `code`,
//! `type` and `param` beside it (see `request.rs`).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tessera_core::model::Model;
use tessera_core::role::Operation;
use tessera_engine::pool::{EmbeddingModel, ModelState};
use tessera_store::ModelView;
use utoipa::ToSchema;

use super::embeddings::{authorize_model, require_served_embedding};
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::parse_json;
use crate::state::AppState;

const OUTPUT: &str = "embedding";
const BINARY_HEADER: &str = "inference-header-content-length";

#[derive(Debug, Deserialize, ToSchema)]
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

#[derive(Debug, Deserialize, ToSchema)]
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

#[derive(Debug, Deserialize, ToSchema)]
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

/// A servable model resolved for the caller, with its loaded engine.
async fn served(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
) -> Result<(Model, Arc<EmbeddingModel>), ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let model = authorize_model(s.store(), s.tenants(), &ctx, &auth.principal, name).await?;
    require_served_embedding(&model)?;
    let engine = s.models().get(&model.name).await?;
    if let Some(v) = version
        && v != engine.version
    {
        return Err(ApiError::NotFound(format!("model {name:?} has no version {v:?}")));
    }
    Ok((model, engine))
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
    let (_, engine) = served(&s, &auth, &name, None).await?;
    Ok(Json(metadata(&name, &engine)))
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
    let (_, engine) = served(&s, &auth, &name, Some(&version)).await?;
    Ok(Json(metadata(&name, &engine)))
}

async fn ready(s: &AppState, auth: &Authed, name: &str) -> Result<Json<Value>, ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let model = authorize_model(s.store(), s.tenants(), &ctx, &auth.principal, name).await?;
    match s.models().state(&model.name) {
        Some(ModelState::Ready) => Ok(Json(json!({"name": name, "ready": true}))),
        Some(ModelState::Failed(r)) => {
            Err(ApiError::ModelNotReady(format!("model {name:?} failed to load: {r}")))
        }
        _ => Err(ApiError::ModelNotReady(format!("model {name:?} is not loaded"))),
    }
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
    ready(&s, &auth, &name).await
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
    served(&s, &auth, &name, Some(&version)).await?;
    ready(&s, &auth, &name).await
}

/// Splits a Triton binary-extension body into its JSON header and the tensor bytes.
fn split_body<'a>(headers: &HeaderMap, body: &'a [u8]) -> Result<(&'a [u8], &'a [u8]), ApiError> {
    match headers.get(BINARY_HEADER) {
        None => Ok((body, &[])),
        Some(v) => {
            let n = v
                .to_str()
                .ok()
                .and_then(|s| s.parse::<usize>().ok())
                .filter(|n| *n <= body.len())
                .ok_or_else(|| {
                    ApiError::invalid(
                        "Inference-Header-Content-Length",
                        "invalid Inference-Header-Content-Length",
                    )
                })?;
            Ok(body.split_at(n))
        }
    }
}

/// The strings of a BYTES input, from JSON data or binary (u32 LE length + bytes each).
fn text_input(input: &InferInput, binary: &mut &[u8]) -> Result<Vec<String>, ApiError> {
    if input.datatype != "BYTES" {
        return Err(ApiError::invalid(
            "inputs",
            format!(
                "input {:?} must be BYTES for a text model, got {}",
                input.name, input.datatype
            ),
        ));
    }
    let count: i64 = input.shape.iter().product();
    let valid_shape = matches!(input.shape.as_slice(), [_] | [_, 1]) && count >= 0;
    if !valid_shape {
        return Err(ApiError::invalid(
            "inputs",
            format!("input {:?} must have shape [N] or [N, 1], got {:?}", input.name, input.shape),
        ));
    }
    let binary_size =
        input.parameters.as_ref().and_then(|p| p.get("binary_data_size")).and_then(Value::as_u64);
    let texts = match (binary_size, &input.data) {
        (Some(size), _) => {
            let size = usize::try_from(size)
                .map_err(|_| ApiError::invalid("inputs", "binary_data_size too large"))?;
            if size > binary.len() {
                return Err(ApiError::invalid(
                    "inputs",
                    "binary data is shorter than binary_data_size",
                ));
            }
            let (mut mine, rest) = binary.split_at(size);
            *binary = rest;
            let mut out = Vec::new();
            while !mine.is_empty() {
                let len_bytes: [u8; 4] = mine
                    .get(..4)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| ApiError::invalid("inputs", "truncated BYTES element"))?;
                let len = u32::from_le_bytes(len_bytes) as usize;
                let s = mine
                    .get(4..4 + len)
                    .ok_or_else(|| ApiError::invalid("inputs", "truncated BYTES element"))?;
                out.push(String::from_utf8(s.to_vec()).map_err(|_| {
                    ApiError::invalid("inputs", "BYTES elements must be UTF-8 text")
                })?);
                mine = &mine[4 + len..];
            }
            out
        }
        (None, Some(data)) => {
            let mut flat = Vec::new();
            flatten(data, &mut flat);
            flat.into_iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| ApiError::invalid("inputs", "BYTES data must be strings"))
                })
                .collect::<Result<_, _>>()?
        }
        (None, None) => {
            return Err(ApiError::invalid("inputs", format!("input {:?} has no data", input.name)));
        }
    };
    if texts.len() as i64 != count {
        return Err(ApiError::invalid(
            "inputs",
            format!(
                "input {:?} has {} elements but shape {:?}",
                input.name,
                texts.len(),
                input.shape
            ),
        ));
    }
    Ok(texts)
}

fn flatten<'a>(v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

fn wants_binary(req: &InferRequest, output: &str) -> bool {
    let per_output = req
        .outputs
        .as_ref()
        .and_then(|o| o.iter().find(|r| r.name == output))
        .and_then(|r| r.parameters.as_ref())
        .and_then(|p| p.get("binary_data"))
        .and_then(Value::as_bool);
    let global =
        req.parameters.as_ref().and_then(|p| p.get("binary_data_output")).and_then(Value::as_bool);
    per_output.or(global).unwrap_or(false)
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
    let (_, engine) = served(s, auth, name, version).await?;
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let (head, mut binary) = split_body(headers, &bytes)?;
    let req: InferRequest = parse_json(head)?;
    let [input] = req.inputs.as_slice() else {
        return Err(ApiError::invalid(
            "inputs",
            format!("model {name:?} takes exactly one input, got {}", req.inputs.len()),
        ));
    };
    if let Some(outputs) = &req.outputs
        && let Some(bad) = outputs.iter().find(|o| o.name != OUTPUT)
    {
        return Err(ApiError::invalid(
            "outputs",
            format!("model {name:?} has no output {:?}; it has {OUTPUT:?}", bad.name),
        ));
    }
    let texts = text_input(input, &mut binary)?;
    let n = texts.len();
    let out = engine.embed(texts).await?;
    let flat: Vec<f32> = out.vectors.into_iter().flatten().collect();
    let shape = json!([n, engine.dim]);
    let mut output = json!({"name": OUTPUT, "datatype": "FP32", "shape": shape});
    let binary_out = wants_binary(&req, OUTPUT);
    let mut tail = Vec::new();
    if binary_out {
        tail = flat.iter().flat_map(|x| x.to_le_bytes()).collect();
        output["parameters"] = json!({"binary_data_size": tail.len()});
    } else {
        output["data"] = Value::from(flat);
    }
    let mut answer =
        json!({"model_name": name, "model_version": engine.version, "outputs": [output]});
    if let Some(id) = req.id {
        answer["id"] = Value::String(id);
    }
    let head = serde_json::to_vec(&answer).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut resp = if binary_out {
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
    } else {
        let mut r = (StatusCode::OK, head).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r
    };
    if let Ok(v) = HeaderValue::from_str(&format!("{}@{}", engine.name, engine.version)) {
        resp.headers_mut().insert("x-tessera-model-version", v);
    }
    Ok(resp)
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
    infer(&s, &auth, &name, None, &headers, body).await
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
    infer(&s, &auth, &name, Some(&version), &headers, body).await
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
    served(&s, &auth, &name, None).await?;
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
    let model = authorize_model(s.store(), s.tenants(), &ctx, &auth.principal, &name).await?;
    Err(ApiError::Forbidden(format!(
        "model {:?} is a {} model shared with other tenants; only the operator unloads it",
        model.name,
        model.owner.as_str()
    )))
}

/// KServe v1 predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`.
#[utoipa::path(post, path = "/v1/models/{name}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name followed by :predict, e.g. all-minilm-l6-v2:predict")),
    responses((status = 200, description = "{\"predictions\": [...], \"model_version\": ...}"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kserve_predict(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let Some(model) = name.strip_suffix(":predict") else {
        return Err(ApiError::RouteNotFound {
            method: "POST".into(),
            path: format!("/v1/models/{name}"),
        });
    };
    let (_, engine) = served(&s, &auth, model, None).await?;
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    #[derive(Deserialize)]
    struct Predict {
        instances: Vec<Value>,
    }
    let req: Predict = parse_json(&bytes)?;
    let texts = req
        .instances
        .into_iter()
        .map(|v| match v {
            Value::String(s) => Ok(s),
            Value::Object(mut o) => match o.remove("text") {
                Some(Value::String(s)) => Ok(s),
                _ => Err(ApiError::invalid(
                    "instances",
                    "each instance must be a string or {\"text\": string}",
                )),
            },
            _ => Err(ApiError::invalid(
                "instances",
                "each instance must be a string or {\"text\": string}",
            )),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if texts.is_empty() {
        return Err(ApiError::invalid("instances", "instances must not be empty"));
    }
    let out = engine.embed(texts).await?;
    Ok(Json(json!({"predictions": out.vectors, "model_version": engine.version})))
}
