//! `POST /v1/embeddings`, OpenAI-compatible: `input` as a string or a list of
//! strings, `encoding_format` `float` or `base64` (little-endian f32),
//! `dimensions` (truncate, then renormalise), token usage. The adapter
//! parses and validates the body, runs it through the pipeline and renders
//! the outcome.

use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse as _, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tessera_core::model::{Model, REMOTE_RUNTIME};
use tessera_engine::pool::EmbeddingModel;
use utoipa::ToSchema;

use super::inference::{UsageRecorder, caller, headers};
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use tessera_serving::Services;
use tessera_serving::cache::Policy;
use tessera_serving::inference::{
    Answer, Backend, Call, Job, MAX_INPUTS, Reply, ServeError, Target, backend,
};
use tessera_serving::predictions::RecordInput;

const ROUTE: &str = "/v1/embeddings";

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<EncodingFormat>,
    /// Truncate each vector to this many dimensions, then renormalise.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub dimensions: Option<usize>,
    /// End-user id: keeps one user on one variant of a traffic split.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    /// 1-2048 texts (the bounds are set in `openapi.rs`).
    Many(Vec<String>),
}

impl EmbeddingInput {
    fn texts(&self) -> Vec<&str> {
        match self {
            EmbeddingInput::One(t) => vec![t.as_str()],
            EmbeddingInput::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingsResponse {
    pub object: &'static str,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: Usage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbeddingData {
    pub object: &'static str,
    pub index: usize,
    /// A list of floats, or a base64 string of little-endian f32s.
    #[schema(value_type = Object)]
    pub embedding: Value,
}

/// Token usage of an embeddings answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// An embeddings request, validated once.
struct EmbedJob {
    texts: Vec<String>,
    base64: bool,
    dimensions: Option<usize>,
    /// The request as sent upstream and keyed by the cache.
    body: Value,
}

impl EmbedJob {
    fn parse(req: &EmbeddingsRequest) -> Result<EmbedJob, ApiError> {
        let texts: Vec<String> = req.input.texts().into_iter().map(str::to_owned).collect();
        if texts.is_empty() {
            return Err(ApiError::invalid("input", "input must not be empty"));
        }
        if texts.len() > MAX_INPUTS {
            return Err(ApiError::invalid(
                "input",
                format!("at most {MAX_INPUTS} inputs per request, got {}", texts.len()),
            ));
        }
        if req.dimensions == Some(0) {
            return Err(ApiError::invalid("dimensions", "dimensions must be at least 1"));
        }
        let body = serde_json::to_value(req).map_err(|e| ApiError::Internal(e.to_string()))?;
        Ok(EmbedJob {
            texts,
            base64: req.encoding_format == Some(EncodingFormat::Base64),
            dimensions: req.dimensions,
            body,
        })
    }

    /// Runs on a local model and renders OpenAI's answer.
    async fn local(
        &self,
        s: &Services,
        model: &EmbeddingModel,
        answer_as: &str,
    ) -> Result<Answer<Value>, ServeError> {
        if let Some(d) = self.dimensions
            && d > model.dim
        {
            return Err(ServeError::invalid(
                "dimensions",
                format!("dimensions must be between 1 and {}, got {d}", model.dim),
            ));
        }
        let out = backend::embed(s.breakers(), model, self.texts.clone()).await?;
        let data = out
            .vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let v = match self.dimensions {
                    Some(d) if d < v.len() => renormalize(&v[..d]),
                    _ => v,
                };
                let embedding = if self.base64 {
                    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
                } else {
                    Value::from(v)
                };
                EmbeddingData { object: "embedding", index, embedding }
            })
            .collect();
        let resp = EmbeddingsResponse {
            object: "list",
            data,
            model: answer_as.to_owned(),
            usage: Usage { prompt_tokens: out.tokens, total_tokens: out.tokens },
        };
        let output = serde_json::to_value(resp).map_err(|e| ServeError::Internal(e.to_string()))?;
        Ok(Answer { output, tokens: Some((out.tokens as u64, 0)) })
    }
}

impl Job for EmbedJob {
    type Output = Value;

    fn cache_route(&self) -> &'static str {
        ROUTE
    }

    fn accepts_model(&self, m: &Model) -> Result<(), ServeError> {
        let servable = m.runtime == "bert" || m.runtime == REMOTE_RUNTIME;
        if m.task != "embedding" || !servable {
            return Err(ServeError::invalid(
                "model",
                format!(
                    "model {:?} is a {} model on runtime {}; this route serves embedding models",
                    m.name, m.task, m.runtime
                ),
            ));
        }
        Ok(())
    }

    fn uses_cache(&self) -> bool {
        true
    }

    fn record_input(&self, keep_text: bool) -> RecordInput {
        RecordInput::of(&self.texts, keep_text.then(|| self.texts.join("\n")))
    }

    /// How many vectors, of what size.
    fn summary(&self, out: &Value) -> Value {
        let data = out.get("data").and_then(Value::as_array);
        let dims = data
            .and_then(|d| d.first())
            .and_then(|e| e["embedding"].as_array().map(Vec::len))
            .or(self.dimensions);
        serde_json::json!({"vectors": data.map_or(0, Vec::len), "dimensions": dims})
    }

    async fn run(&self, s: &Services, t: &Target) -> Result<Answer<Value>, ServeError> {
        match &t.backend {
            Backend::Embedding(model) => self.local(s, model, &t.model.name).await,
            Backend::Remote(r) => {
                let mut body = self.body.clone();
                body["model"] = Value::from(t.upstream_model());
                let mut v = s.upstreams().call_json(s.breakers(), r, "/embeddings", &body).await?;
                if !v.get("data").is_some_and(Value::is_array) {
                    return Err(ServeError::UpstreamFailed {
                        backend: r.backend.clone(),
                        reason: "sent an embeddings answer without data".into(),
                    });
                }
                v["model"] = Value::from(t.model.name.clone());
                let prompt = v.pointer("/usage/prompt_tokens").and_then(Value::as_u64);
                Ok(Answer { output: v, tokens: prompt.map(|p| (p, 0)) })
            }
            Backend::Tensor(_) | Backend::Head { .. } => {
                Err(ServeError::Internal("an embeddings job on a tensor model".into()))
            }
        }
    }

    /// Fields that do not change the answer (`user`) are left out of the key.
    fn cache_request(&self, _t: &Target) -> Option<Value> {
        Some(super::inference::cache_key_body(&self.body))
    }

    fn cache_body(&self, out: &Value) -> Option<String> {
        Some(out.to_string())
    }

    /// The embedding vectors.
    fn compared(&self, out: &Value) -> Option<Value> {
        let data = out.get("data")?.as_array()?;
        Some(Value::from(data.iter().map(|x| x["embedding"].clone()).collect::<Vec<_>>()))
    }
}

fn renormalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

/// Create embeddings (OpenAI-compatible).
#[utoipa::path(post, path = "/v1/embeddings", tag = "inference", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse, headers(("x-tessera-prediction-id" = String, description = "unique, time-sortable id of this answer"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut usage = UsageRecorder::start(&s, &auth, ROUTE, &req.model).await;
    let r = embed(&s, &auth, &headers, &req, &mut usage, started).await;
    usage.finish(&s, &r);
    r
}

async fn embed(
    s: &AppState,
    auth: &Authed,
    req_headers: &HeaderMap,
    req: &EmbeddingsRequest,
    usage: &mut UsageRecorder,
    started: Instant,
) -> Result<Response, ApiError> {
    let job = EmbedJob::parse(req)?;
    let caller = caller(auth, req_headers, req.user.as_deref())?;
    let estimate = (tessera_serving::inference::estimate_tokens(req.input.texts()), 0);
    let call = Call::open(s, caller, &req.model, None, estimate).await?;
    let outcome = call.serve(job, Policy::of(req_headers)).await?;
    usage.note(&outcome.meta);
    let h = headers(&outcome.meta, &outcome.admitted, started);
    Ok(match outcome.reply {
        Reply::Fresh(v) => (h, Json(v)).into_response(),
        Reply::Cached(e) => {
            let mut h = h;
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (h, e.body.clone()).into_response()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_renormalizes() {
        let v = renormalize(&[3.0, 4.0]);
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn input_accepts_a_string_or_a_list() {
        let one: EmbeddingsRequest =
            serde_json::from_str(r#"{"model": "m", "input": "hi"}"#).unwrap();
        assert!(matches!(one.input, EmbeddingInput::One(_)));
        let many: EmbeddingsRequest =
            serde_json::from_str(r#"{"model": "m", "input": ["a", "b"]}"#).unwrap();
        assert!(matches!(many.input, EmbeddingInput::Many(v) if v.len() == 2));
    }

    #[test]
    fn an_unknown_encoding_format_is_refused_by_name() {
        let r = serde_json::from_str::<EmbeddingsRequest>(
            r#"{"model": "m", "input": "hi", "encoding_format": "int8"}"#,
        );
        assert!(r.unwrap_err().to_string().contains("int8"));
    }
}
