//! Open Inference Protocol v2 (KServe V2 / Triton) REST: server and model
//! metadata, readiness, inference (JSON tensors and Triton's binary tensor
//! extension), and the model repository extension. KServe v1 is in `kserve.rs`.
//!
//! Text models take one `BYTES` input (shape `[N]` or `[N, 1]`) and answer the
//! `FP32` output `embedding` of shape `[N, dim]`. Errors on `/v2` routes carry
//! the OIP string form `{"error": "<message>"}` with the stable `code`,
//! `type` and `param` beside it: the handlers answer [`OipError`], and the
//! edge (authentication, unknown routes, 405) uses the same form on `/v2`.

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tessera_core::model::{Model, ModelOwner};
use tessera_core::role::Operation;
use tessera_engine::pool::{EmbeddingModel, ModelState};
use tessera_engine::tensor::{Tensor, TensorData, TensorSpec};
use tessera_store::ModelView;
use utoipa::ToSchema;

use super::inference::{UsageRecorder, caller, caller_in, entity_param, headers};
use super::oip_tensors::{split_body, tensor_input, text_input, wants_binary};
use crate::auth::Authed;
use crate::error::{ApiError, OipError, OipErrorBody};
use crate::extract::parse_json;
use crate::state::AppState;
use tessera_serving::Services;
use tessera_serving::cache::Policy;
use tessera_serving::inference::{
    Answer, Backend, Call, Caller, Job, Reply, ServeError, Target, Use, backend, feature_tensor,
    pool_key, resolve, resolve_named, target,
};
use tessera_serving::predictions::RecordInput;

pub(super) const OUTPUT: &str = "embedding";
pub(super) const BINARY_HEADER: &str = "inference-header-content-length";

#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct InferRequest {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// May be empty when `parameters.entity` names the entity of a model
    /// version that reads features.
    #[serde(default)]
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

/// A caller for the metadata routes, which read models as inference does.
fn reader(auth: &Authed) -> Result<Caller, ApiError> {
    let ctx = auth.tenant(Operation::ModelsRead).or_else(|_| auth.tenant(Operation::Inference))?;
    Ok(caller_in(auth, ctx, String::new()))
}

/// The version of `name` the caller would be served (or `version`), loaded.
async fn served(
    s: &AppState,
    caller: &Caller,
    name: &str,
    version: Option<&str>,
) -> Result<Target, ApiError> {
    let (res, named) = resolve_named(s, caller, name).await?;
    // What would serve is held to the gates; a version named outright is
    // described whatever its gate says.
    let purpose = if version.is_some() { Use::Evaluate } else { Use::Live };
    let t = target(s, caller, &res, version.or(named.as_deref()), purpose).await?;
    if t.is_remote() {
        return Err(not_tensor_model(&t).into());
    }
    Ok(t)
}

fn not_tensor_model(t: &Target) -> ServeError {
    let name = &t.model.name;
    ServeError::invalid(
        "model",
        format!(
            "model {name:?} runs on {}; call it with /v1/chat/completions or /v1/embeddings",
            t.model.runtime
        ),
    )
}

fn served_metadata(name: &str, t: &Target) -> Result<ModelMetadata, ServeError> {
    let spec = |t: &TensorSpec| TensorMetadata {
        name: t.name.clone(),
        datatype: t.datatype.clone(),
        shape: t.shape.clone(),
    };
    let text = || TensorMetadata { name: "text".into(), datatype: "BYTES".into(), shape: vec![-1] };
    match &t.backend {
        Backend::Embedding(e) => Ok(metadata(name, e)),
        Backend::Head { head, .. } => Ok(ModelMetadata {
            name: name.to_owned(),
            versions: vec![t.version.version.clone()],
            platform: "tessera_linear".into(),
            inputs: vec![text()],
            outputs: head.outputs.iter().map(spec).collect(),
        }),
        Backend::Tensor(m) => Ok(ModelMetadata {
            name: name.to_owned(),
            versions: vec![t.version.version.clone()],
            platform: if m.labels.is_some() { "tessera_linear" } else { "onnxruntime_onnx" }.into(),
            inputs: m.inputs.iter().map(spec).collect(),
            outputs: m.outputs.iter().map(spec).collect(),
        }),
        Backend::Remote(_) => Err(not_tensor_model(t)),
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
#[utoipa::path(get, path = "/v2", tag = "open inference protocol",
    responses((status = 200, description = "server metadata"), (status = 401, body = OipErrorBody), (status = 403, body = OipErrorBody)))]
pub async fn server_metadata(auth: Authed) -> Result<Json<Value>, OipError> {
    auth.tenant(Operation::ModelsRead).or_else(|_| auth.tenant(Operation::Inference))?;
    Ok(Json(
        json!({"name": "tessera", "version": env!("CARGO_PKG_VERSION"), "extensions": ["model_repository", "binary_tensor_data"]}),
    ))
}

/// Model metadata.
#[utoipa::path(get, path = "/v2/models/{name}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, body = ModelMetadata), (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn model_metadata(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, OipError> {
    let t = served(&s, &reader(&auth)?, &name, None).await?;
    Ok(Json(served_metadata(&name, &t)?))
}

/// Metadata of one model version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, body = ModelMetadata), (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn version_metadata(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<ModelMetadata>, OipError> {
    let t = served(&s, &reader(&auth)?, &name, Some(&version)).await?;
    Ok(Json(served_metadata(&name, &t)?))
}

async fn ready(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
) -> Result<Json<Value>, ApiError> {
    served(s, &reader(auth)?, name, version).await?;
    Ok(Json(json!({"name": name, "ready": true})))
}

/// Model readiness: 200 when ready, 503 otherwise.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, description = "ready"), (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn model_ready(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    Ok(ready(&s, &auth, &name, None).await?)
}

/// Readiness of one model version.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, description = "ready"), (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn version_ready(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, OipError> {
    Ok(ready(&s, &auth, &name, Some(&version)).await?)
}

/// What an OIP inference answers: the model's outputs, and `label` and
/// `score` from the deployment's post-processing rules for a classifier.
pub(super) struct OipOutput {
    outputs: Vec<(String, Tensor)>,
    post: Vec<Value>,
    /// The first rows' answers as feedback compares them (labels or values).
    predicted: Vec<Value>,
}

/// The output tensors' names and shapes, and the head's post-processed
/// answers (labels and scores) when there are any, at most 8.
fn oip_summary(out: &OipOutput) -> Value {
    let outputs: Vec<Value> = out
        .outputs
        .iter()
        .map(|(name, t)| serde_json::json!({"name": name, "shape": t.shape}))
        .collect();
    serde_json::json!({
        "outputs": outputs,
        "post": out.post.iter().take(8).cloned().collect::<Vec<_>>(),
        "predicted": out.predicted,
    })
}

/// Rows kept in a record's `predicted`.
const PREDICTED_ROWS: usize = 8;

/// The first rows' answers: the post-processed label, else the label the
/// class index names (or the index), else a regressor's first value.
fn predicted(t: &Target, outputs: &[(String, Tensor)], post: &[Value]) -> Vec<Value> {
    if let Some(labels) = post.iter().find(|o| o["name"] == "label") {
        return labels["data"]
            .as_array()
            .map_or_else(Vec::new, |d| d.iter().take(PREDICTED_ROWS).cloned().collect());
    }
    let labels = match &t.backend {
        Backend::Tensor(m) | Backend::Head { head: m, .. } => m.labels.as_deref(),
        _ => None,
    };
    let output = |name: &str| outputs.iter().find(|(n, _)| n == name).map(|(_, t)| t);
    if let Some(Tensor { data: TensorData::I64(ix), .. }) = output("label_index") {
        return ix
            .iter()
            .take(PREDICTED_ROWS)
            .map(|i| match labels.and_then(|l| l.get(usize::try_from(*i).ok()?)) {
                Some(l) => Value::from(l.clone()),
                None => Value::from(*i),
            })
            .collect();
    }
    if let Some(p) = output("prediction")
        && let TensorData::F32(v) = &p.data
    {
        let per_row = v.len() / p.rows().max(1);
        return v.chunks(per_row.max(1)).take(PREDICTED_ROWS).map(|r| Value::from(r[0])).collect();
    }
    Vec::new()
}

/// One OIP inference request on the pipeline. Inputs are decoded per
/// target: text models read one BYTES input, tensor models named tensors.
struct OipJob {
    req: InferRequest,
    /// Join keys instead of inputs: the model reads its features.
    entity: Option<Map<String, Value>>,
    /// The binary tensor data after the JSON header (a view of the body).
    binary: axum::body::Bytes,
    /// The requested model's task: a fallback must have the same one.
    task: String,
    name: String,
}

impl OipJob {
    fn one_text(&self, binary: &mut &[u8]) -> Result<Vec<String>, ServeError> {
        let [input] = self.req.inputs.as_slice() else {
            return Err(ServeError::invalid(
                "inputs",
                format!(
                    "model {:?} takes exactly one BYTES input, got {}",
                    self.name,
                    self.req.inputs.len()
                ),
            ));
        };
        text_input(input, binary)
    }
}

impl Job for OipJob {
    type Output = OipOutput;

    fn cache_route(&self) -> &'static str {
        "/v2/models/{name}/infer"
    }

    fn accepts_model(&self, m: &Model) -> Result<(), ServeError> {
        tessera_serving::inference::accepts_local(m, &self.task)
    }

    fn entity(&self) -> Option<&Map<String, Value>> {
        self.entity.as_ref()
    }

    /// The input tensors' names, types and shapes, and the binary data (or
    /// the entity named instead).
    fn record_input(&self, keep_inputs: bool) -> RecordInput {
        use sha2::Digest as _;
        if let Some(e) = &self.entity {
            return RecordInput::of(e, None);
        }
        let shapes: Vec<Value> = self
            .req
            .inputs
            .iter()
            .map(|i| serde_json::json!([i.name, i.datatype, i.shape]))
            .collect();
        let mut h = sha2::Sha256::new();
        h.update(serde_json::to_vec(&shapes).unwrap_or_default());
        h.update(
            serde_json::to_vec(&self.req.inputs.iter().map(|i| &i.data).collect::<Vec<_>>())
                .unwrap_or_default(),
        );
        h.update(&self.binary);
        // A single 2-D input sent as JSON: its first rows, if kept.
        let rows = match self.req.inputs.as_slice() {
            [i] if keep_inputs && i.shape.len() == 2 && i.shape[1] > 0 => {
                let flat: Vec<Value> = match &i.data {
                    Some(Value::Array(d)) => d
                        .iter()
                        .flat_map(|v| match v {
                            Value::Array(row) => row.clone(),
                            other => vec![other.clone()],
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                let width = usize::try_from(i.shape[1]).unwrap_or(usize::MAX);
                let rows: Vec<Value> =
                    flat.chunks(width).map(|r| Value::Array(r.to_vec())).collect();
                tessera_serving::predictions::numeric_rows(&rows)
            }
            _ => None,
        };
        RecordInput { digest: Some(h.finalize().into()), text: None, rows }
    }

    /// The output tensors' names and shapes.
    fn summary(&self, out: &Self::Output) -> Value {
        oip_summary(out)
    }

    async fn run(&self, s: &Services, t: &Target) -> Result<Answer<OipOutput>, ServeError> {
        let mut binary: &[u8] = &self.binary;
        let outputs = match &t.backend {
            Backend::Embedding(engine) => {
                let texts = self.one_text(&mut binary)?;
                let n = texts.len();
                let out = backend::embed(s.breakers(), engine, texts).await?;
                let flat: Vec<f32> = out.vectors.into_iter().flatten().collect();
                vec![(OUTPUT.to_owned(), Tensor::f32(vec![n as i64, engine.dim as i64], flat)?)]
            }
            Backend::Head { head, base } => {
                let texts = self.one_text(&mut binary)?;
                backend::infer_texts(s.breakers(), head, base, texts).await?
            }
            Backend::Tensor(model) => {
                let inputs = match (t.inputs.as_deref(), model.inputs.as_slice()) {
                    (Some(v), [spec]) => {
                        vec![(spec.name.clone(), feature_tensor(&self.name, spec, v)?)]
                    }
                    (Some(_), specs) => {
                        return Err(ServeError::invalid(
                            "parameters.entity",
                            format!(
                                "model {:?} has {} inputs; features feed a model with one",
                                self.name,
                                specs.len()
                            ),
                        ));
                    }
                    (None, _) => self
                        .req
                        .inputs
                        .iter()
                        .map(|i| Ok((i.name.clone(), tensor_input(i, &mut binary)?)))
                        .collect::<Result<Vec<_>, ServeError>>()?,
                };
                backend::infer(s.breakers(), model, inputs).await?
            }
            Backend::Remote(_) => return Err(not_tensor_model(t)),
        };
        let post = post_outputs(t, &outputs);
        let predicted = predicted(t, &outputs, &post);
        Ok(Answer::new(OipOutput { outputs, post, predicted }))
    }
}

async fn infer(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<&str>,
    req_headers: &HeaderMap,
    body: Body,
    usage: &mut UsageRecorder,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    // The model first: a model the caller cannot see is a 404 whatever the body.
    let call = Call::open(s, caller(auth, req_headers, None)?, name, version, (0, 0)).await?;
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let (head, binary) = split_body(req_headers, &bytes)?;
    let req: InferRequest = parse_json(head)?;
    let task = call.resolution().model().task.clone();
    let binary = bytes.slice_ref(binary);
    // The answer needs the request's id and output choices, not its inputs:
    // the job takes the request, its inputs are not copied.
    let render = InferRequest {
        id: req.id.clone(),
        parameters: req.parameters.clone(),
        inputs: Vec::new(),
        outputs: req.outputs.clone(),
    };
    let entity = entity_param(req.parameters.as_ref())?;
    if entity.is_some() && !req.inputs.is_empty() {
        return Err(ApiError::invalid("inputs", "give inputs or parameters.entity, not both"));
    }
    let job = OipJob { req, entity, binary, task, name: name.to_owned() };
    let outcome = call.serve(job, Policy::Bypass).await?;
    usage.note(&outcome.meta);
    let Reply::Fresh(out) = outcome.reply else {
        return Err(ApiError::Internal("an OIP answer from the cache".into()));
    };
    let OipOutput { outputs, post, .. } = out;
    let is_post = |n: &str| post.iter().any(|o| o["name"] == n);
    let selected: Vec<&(String, Tensor)> = match &render.outputs {
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
        if wants_binary(&render, out_name) {
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
        render.outputs.as_ref().is_none_or(|w| w.iter().any(|w| o["name"] == w.name.as_str()))
    }));
    let mut answer = json!({"model_name": name, "model_version": outcome.meta.version.version, "outputs": out_json});
    if let Some(id) = &render.id {
        answer["id"] = Value::String(id.clone());
    }
    let head = serde_json::to_vec(&answer).map_err(|e| ApiError::Internal(e.to_string()))?;
    let mut h = headers(&outcome.meta, &outcome.admitted, started);
    let body = if tail.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        head
    } else {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        if let Ok(v) = HeaderValue::from_str(&head.len().to_string()) {
            h.insert(BINARY_HEADER, v);
        }
        let mut body = head;
        body.extend_from_slice(&tail);
        body
    };
    Ok((StatusCode::OK, h, body).into_response())
}

/// The `label` and `score` outputs a deployment's post-processing rules give
/// a classifier's `probabilities`; empty without rules or labels.
fn post_outputs(t: &Target, outputs: &[(String, Tensor)]) -> Vec<Value> {
    let (Backend::Tensor(model) | Backend::Head { head: model, .. }) = &t.backend else {
        return Vec::new();
    };
    let Some(post) = t.deployment.as_ref().and_then(|d| d.post.as_ref()) else {
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
    responses((status = 200, description = "inference response", headers(("x-tessera-prediction-id" = String, description = "unique, time-sortable id of this answer"))),
        (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody), (status = 402, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 413, body = OipErrorBody),
        (status = 422, description = "a feature the model reads is missing or stale (features_missing)", body = OipErrorBody),
        (status = 429, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn model_infer(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OipError> {
    Ok(metered_infer(&s, &auth, &name, None, &headers, body).await?)
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
    let mut usage = UsageRecorder::start(s, auth, "/v2/models/{name}/infer", name).await;
    let r = infer(s, auth, name, version, headers, body, &mut usage).await;
    usage.finish(s, &r);
    r
}

/// Inference on one model version.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "open inference protocol", request_body = InferRequest,
    params(("name" = String, Path, description = "model name"), ("version" = String, Path, description = "version")),
    responses((status = 200, description = "inference response", headers(("x-tessera-prediction-id" = String, description = "unique, time-sortable id of this answer"))),
        (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody), (status = 402, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 413, body = OipErrorBody),
        (status = 422, description = "a feature the model reads is missing or stale (features_missing)", body = OipErrorBody),
        (status = 429, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn version_infer(
    State(s): State<AppState>,
    auth: Authed,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, OipError> {
    Ok(metered_infer(&s, &auth, &name, Some(&version), &headers, body).await?)
}

/// Repository index: the models the caller can use, each with the version
/// it would be served and that version's state.
#[utoipa::path(post, path = "/v2/repository/index", tag = "open inference protocol",
    responses((status = 200, description = "models and states"), (status = 401, body = OipErrorBody), (status = 403, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn repository_index(
    State(s): State<AppState>,
    auth: Authed,
) -> Result<Json<Vec<Value>>, OipError> {
    let caller = reader(&auth)?;
    let info = s.tenants().get(s.store(), &caller.ctx).await?;
    let view = ModelView::Tenant { ctx: &caller.ctx, segment: info.tenant.segment.as_deref() };
    let models = s.store().list_models(view).await?;
    let mut index = Vec::with_capacity(models.len());
    for m in models {
        let entry = match m.runtime.as_str() {
            // Platform embedding models are pooled by name; the pool knows their version.
            "bert" => {
                let state = s.models().state(&m.name).filter(|_| m.owner == ModelOwner::Platform);
                let version = s.models().ready_version(&m.name);
                (version, state, "not loaded")
            }
            tessera_core::model::REMOTE_RUNTIME => {
                let versions = s.store().list_model_versions(view, &m).await?;
                let v = versions.last().map(|v| v.version.to_string());
                let state = v.as_ref().map(|_| ModelState::Ready);
                (v, state, "no versions yet")
            }
            // Tenant models are pooled per version, loaded on first use.
            _ => {
                let versions = s.store().list_model_versions(view, &m).await?;
                let deployment = s.deployment(view, &m).await?;
                let aliases = match &deployment {
                    Some(_) => s.store().list_aliases(view, &m).await?,
                    None => Vec::new(),
                };
                let alias = |a: &str| aliases.iter().find(|x| x.alias == a).map(|x| x.version);
                let v = match &deployment {
                    Some(d) => versions.iter().map(|v| v.version).find(|v| {
                        d.targets
                            .iter()
                            .any(|t| t.weight > 0 && t.version.resolve(alias) == Some(*v))
                    }),
                    None => None,
                }
                .or(versions.last().map(|v| v.version));
                let state = v.and_then(|v| s.models().state(&pool_key(&m, v)));
                let why = if v.is_some() { "not loaded" } else { "no versions yet" };
                (v.map(|v| v.to_string()), state, why)
            }
        };
        let (version, state, why) = entry;
        let (state, reason) = match state {
            Some(ModelState::Ready) => ("READY", String::new()),
            Some(ModelState::Loading) => ("LOADING", String::new()),
            Some(ModelState::Failed(r)) => ("UNAVAILABLE", r),
            None => ("UNAVAILABLE", why.to_owned()),
        };
        index.push(json!({"name": m.name, "version": version.unwrap_or_default(), "state": state, "reason": reason}));
    }
    Ok(Json(index))
}

/// Load a model: answers once it is ready (tenant models load from their
/// artifact; platform models are loaded by the server).
#[utoipa::path(post, path = "/v2/repository/models/{name}/load", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 200, description = "loaded"), (status = 400, body = OipErrorBody), (status = 401, body = OipErrorBody),
        (status = 403, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn repository_load(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    served(&s, &reader(&auth)?, &name, None).await?;
    Ok(Json(json!({})))
}

/// Unload a model. Shared (platform and segment) models stay loaded for
/// other tenants; tenant models are unloaded by the pool's memory budget.
#[utoipa::path(post, path = "/v2/repository/models/{name}/unload", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name")),
    responses((status = 403, body = OipErrorBody), (status = 401, body = OipErrorBody), (status = 404, body = OipErrorBody), (status = 503, body = OipErrorBody)))]
pub async fn repository_unload(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
) -> Result<Json<Value>, OipError> {
    let caller = caller_in(&auth, auth.tenant(Operation::ModelsWrite)?, String::new());
    let res = resolve(&s, &caller, &name).await?;
    let model = res.model();
    Err(ApiError::Forbidden(format!(
        "model {:?} is a {} model; only the operator unloads models (the memory budget unloads the least recently used)",
        model.name,
        model.owner.as_str()
    ))
    .into())
}
