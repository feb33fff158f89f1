//! KServe v1 predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`
//! answers `{"predictions": [...], "model_version": ...}`. Text models take
//! strings (or `{"text": ...}`); tensor models take rows of numbers; a
//! classification head adds each row's `label`. A model version that reads
//! features takes `{"parameters": {"entity": {"customer_id": "c1"}}}`
//! instead of instances. Predictions are cached by default (per tenant,
//! model version, instances or feature values, and post-processing rules).

use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tessera_core::model::Model;
use tessera_engine::tensor::{Tensor, TensorData};

use super::inference::{UsageRecorder, caller, entity_param, flatten, headers};
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::parse_json;
use crate::state::AppState;
use tessera_serving::Services;
use tessera_serving::cache::Policy;
use tessera_serving::inference::{
    Answer, Backend, Call, Job, MAX_INPUTS, Reply, ServeError, Target, backend, feature_tensor,
};
use tessera_serving::predictions::RecordInput;

const ROUTE: &str = "/v1/models/{name}:predict";

fn texts(instances: &[Value]) -> Result<Vec<String>, ServeError> {
    let bad =
        || ServeError::invalid("instances", "each instance must be a string or {\"text\": string}");
    instances
        .iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Object(o) => match o.get("text") {
                Some(Value::String(s)) => Ok(s.clone()),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        })
        .collect()
}

/// Rows of numbers as one tensor for a model with a single input.
fn rows_tensor(
    model: &str,
    spec: &tessera_engine::tensor::TensorSpec,
    instances: &[Value],
) -> Result<Tensor, ServeError> {
    let n = instances.len();
    let mut flat = Vec::new();
    let mut per_row = None;
    for inst in instances {
        let before = flat.len();
        flatten(inst, &mut flat);
        let len = flat.len() - before;
        if len == 0 || per_row.is_some_and(|p| p != len) {
            return Err(ServeError::invalid(
                "instances",
                format!(
                    "every instance of {model:?} must have the same, non-zero number of values"
                ),
            ));
        }
        per_row = Some(len);
    }
    let shape = vec![n as i64, per_row.unwrap_or(1) as i64];
    Ok(match spec.datatype.as_str() {
        "INT64" => Tensor::i64(
            shape,
            flat.iter()
                .map(|v| v.as_i64())
                .collect::<Option<_>>()
                .ok_or_else(|| ServeError::invalid("instances", "instances must be integers"))?,
        )?,
        _ => Tensor::f32(
            shape,
            flat.iter()
                .map(|v| v.as_f64().map(|x| x as f32))
                .collect::<Option<_>>()
                .ok_or_else(|| ServeError::invalid("instances", "instances must be numbers"))?,
        )?,
    })
}

/// Predictions of one target for `instances`.
async fn predict_on(s: &Services, t: &Target, instances: &[Value]) -> Result<Value, ServeError> {
    let model = t.model.name.as_str();
    let (model_out, labels) = match &t.backend {
        Backend::Embedding(engine) => {
            let out = backend::embed(s.breakers(), engine, texts(instances)?).await?;
            return Ok(Value::from(out.vectors));
        }
        Backend::Head { head, base } => {
            let out = backend::infer_texts(s.breakers(), head, base, texts(instances)?).await?;
            (out, head.labels.clone())
        }
        Backend::Tensor(m) => {
            let [spec] = m.inputs.as_slice() else {
                return Err(ServeError::invalid(
                    "instances",
                    format!(
                        "model {model:?} has {} inputs; use /v2/models/{model}/infer",
                        m.inputs.len()
                    ),
                ));
            };
            let input = match &t.inputs {
                Some(v) => feature_tensor(model, spec, v)?,
                None => rows_tensor(model, spec, instances)?,
            };
            (
                backend::infer(s.breakers(), m, vec![(spec.name.clone(), input)]).await?,
                m.labels.clone(),
            )
        }
        Backend::Remote(_) => return Err(not_servable(t)),
    };
    // One prediction per row: each output's row, and the label for classification heads.
    let n = model_out.first().map_or(0, |(_, t)| t.rows());
    let mut predictions = vec![Map::new(); n];
    for (name, t) in &model_out {
        if t.rows() != n {
            return Err(ServeError::invalid(
                "instances",
                format!(
                    "output {name:?} has {} rows for {n} instances; use /v2/models/{model}/infer",
                    t.rows()
                ),
            ));
        }
        let per_row: usize =
            t.shape.iter().skip(1).map(|d| usize::try_from(*d).unwrap_or(0)).product::<usize>();
        for (r, p) in predictions.iter_mut().enumerate() {
            let range = r * per_row..(r + 1) * per_row;
            let v = match &t.data {
                TensorData::F32(d) => d.get(range).map(|x| Value::from(x.to_vec())),
                TensorData::I64(d) => d.get(range).map(|x| Value::from(x.to_vec())),
            }
            .ok_or_else(|| {
                ServeError::Internal(format!("output {name:?} is shorter than its shape"))
            })?;
            let v = if t.shape.len() == 1 { v.get(0).cloned().unwrap_or(Value::Null) } else { v };
            if let (Some(labels), "label_index") = (&labels, name.as_str())
                && let Some(i) = v.as_u64()
            {
                p.insert("label".into(), Value::from(labels.get(i as usize).cloned()));
            }
            p.insert(name.clone(), v);
        }
    }
    // The deployment's post-processing rules decide a classifier's label.
    if let (Some(labels), Some(post)) =
        (&labels, t.deployment.as_ref().and_then(|d| d.post.as_ref()))
        && let Some((_, probs)) = model_out.iter().find(|(n, _)| n == "probabilities")
        && let TensorData::F32(probs) = &probs.data
    {
        for (p, row) in predictions.iter_mut().zip(probs.chunks(labels.len().max(1))) {
            let (label, score) = post.apply(labels, row);
            p.insert("label".into(), label.map_or(Value::Null, Value::from));
            p.insert("score".into(), Value::from(score));
        }
    }
    Ok(Value::from(predictions))
}

fn not_servable(t: &Target) -> ServeError {
    ServeError::invalid(
        "model",
        format!(
            "model {:?} runs on {}; call it with /v1/chat/completions or /v1/embeddings",
            t.model.name, t.model.runtime
        ),
    )
}

/// One KServe predict request on the pipeline.
struct PredictJob {
    instances: Vec<Value>,
    /// Join keys instead of instances: the model reads its features.
    entity: Option<Map<String, Value>>,
    /// The requested model's task: a fallback must have the same one.
    task: String,
}

impl Job for PredictJob {
    type Output = Value;

    fn cache_route(&self) -> &'static str {
        "/v1/models:predict"
    }

    fn accepts_model(&self, m: &Model) -> Result<(), ServeError> {
        tessera_serving::inference::accepts_local(m, &self.task)
    }

    fn uses_cache(&self) -> bool {
        true
    }

    fn entity(&self) -> Option<&Map<String, Value>> {
        self.entity.as_ref()
    }

    /// The input's digest; when the tenant keeps inputs, a single text
    /// instance's text, or the first rows of numeric instances.
    fn record_input(&self, keep_inputs: bool) -> RecordInput {
        match &self.entity {
            Some(e) => RecordInput::of(e, None),
            None => {
                let text = match self.instances.as_slice() {
                    [Value::String(t)] if keep_inputs => Some(t.clone()),
                    _ => None,
                };
                let mut r = RecordInput::of(&self.instances, text);
                if keep_inputs {
                    r.rows = tessera_serving::predictions::numeric_rows(&self.instances);
                }
                r
            }
        }
    }

    /// The first predictions (a label and score, or top-k, per instance).
    fn summary(&self, out: &Value) -> Value {
        let preds = out["predictions"].as_array();
        // What feedback compares: the label, else a regressor's value.
        let predicted = |p: &Value| match (&p["label"], &p["prediction"]) {
            (Value::String(l), _) => Value::from(l.clone()),
            (_, Value::Array(v)) if v.len() == 1 => v[0].clone(),
            (_, v) => v.clone(),
        };
        serde_json::json!({
            "instances": preds.map_or(0, Vec::len),
            "predictions": preds.map(|p| p.iter().take(8).cloned().collect::<Vec<_>>()),
            "predicted": preds.map(|p| p.iter().take(8).map(predicted).collect::<Vec<_>>()),
        })
    }

    async fn run(&self, s: &Services, t: &Target) -> Result<Answer<Value>, ServeError> {
        let predictions = predict_on(s, t, &self.instances).await?;
        Ok(Answer::new(json!({"predictions": predictions, "model_version": t.version.version})))
    }

    /// The deployment's post-processing rules shape the answer: part of the
    /// key; so are the feature values read for an entity, so a feature
    /// change is a new key and the entity's cached answers are not served.
    fn cache_request(&self, t: &Target) -> Option<Value> {
        let post = t.deployment.as_ref().and_then(|d| d.post.as_ref());
        let features = t.inputs.as_ref().map(|v| &v.values);
        Some(json!({"instances": self.instances, "post": post, "features": features}))
    }

    fn cache_body(&self, out: &Value) -> Option<String> {
        Some(out.to_string())
    }
}

/// KServe v1 predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`.
#[utoipa::path(post, path = "/v1/models/{name}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name followed by :predict, e.g. all-minilm-l6-v2:predict")),
    responses((status = 200, description = "{\"predictions\": [...], \"model_version\": ...}",
            headers(("x-tessera-prediction-id" = String, description = "unique, time-sortable id of this answer"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 422, description = "a feature the model reads is missing or stale (features_missing)", body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn kserve_predict(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    req_headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let model = name.strip_suffix(":predict").unwrap_or(&name);
    let mut usage = UsageRecorder::start(&s, &auth, ROUTE, model).await;
    let r = predict(&s, &auth, &name, &req_headers, body, &mut usage).await;
    usage.finish(&s, &r);
    r
}

#[derive(Deserialize)]
struct Predict {
    #[serde(default)]
    instances: Vec<Value>,
    /// `{"entity": {"customer_id": "c1"}}` (a column of values for several
    /// rows): for a model that reads features, instead of `instances`.
    #[serde(default)]
    parameters: Option<Map<String, Value>>,
}

async fn predict(
    s: &AppState,
    auth: &Authed,
    name: &str,
    req_headers: &HeaderMap,
    body: Body,
    usage: &mut UsageRecorder,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let Some(model) = name.strip_suffix(":predict") else {
        return Err(ApiError::RouteNotFound {
            method: "POST".into(),
            path: format!("/v1/models/{name}"),
        });
    };
    // The model first: a model the caller cannot see is a 404 whatever the body.
    let call = Call::open(s, caller(auth, req_headers, None)?, model, None, (0, 0)).await?;
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    let req: Predict = parse_json(&bytes)?;
    let entity = entity_param(req.parameters.as_ref())?;
    match (&entity, req.instances.is_empty()) {
        (Some(_), false) => {
            return Err(ApiError::invalid(
                "instances",
                "give instances or parameters.entity, not both",
            ));
        }
        (None, true) => {
            return Err(ApiError::invalid(
                "instances",
                "instances must not be empty (or name parameters.entity for a model that reads features)",
            ));
        }
        _ => {}
    }
    if req.instances.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "instances",
            format!("at most {MAX_INPUTS} instances per request, got {}", req.instances.len()),
        ));
    }
    let task = call.resolution().model().task.clone();
    let outcome = call
        .serve(PredictJob { instances: req.instances, entity, task }, Policy::of(req_headers))
        .await?;
    usage.note(&outcome.meta);
    let mut h = headers(&outcome.meta, &outcome.admitted, started);
    Ok(match outcome.reply {
        Reply::Fresh(answer) => (h, Json(answer)).into_response(),
        Reply::Cached(e) => {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (h, e.body.clone()).into_response()
        }
    })
}
