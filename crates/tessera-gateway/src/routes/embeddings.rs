//! `POST /v1/embeddings`, OpenAI-compatible: `input` as a string or a list of
//! strings, `encoding_format` `float` or `base64` (little-endian f32),
//! `dimensions` (truncate, then renormalise), token usage.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tessera_core::auth::{Principal, TenantCtx};
use tessera_core::model::{Model, ModelOwner};
use tessera_core::role::Operation;
use tessera_engine::pool::ModelPool;
use utoipa::ToSchema;

use crate::auth::Authed;
use crate::breaker::{Breakers, guarded};
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::registry_cache::Resolved;
use crate::state::AppState;
use std::sync::Arc;

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    pub encoding_format: Option<String>,
    #[serde(default)]
    pub dimensions: Option<usize>,
    /// End-user id, accepted for compatibility.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum EmbeddingInput {
    One(String),
    Many(Vec<String>),
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
    pub embedding: serde_json::Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Resolves a model name for the caller (its own, then its segment's, then
/// the platform's) and checks that its key's scopes and its plan allow it.
pub async fn authorize_model(
    s: &AppState,
    ctx: &TenantCtx,
    principal: &Principal,
    model: &str,
) -> Result<Arc<Resolved>, ApiError> {
    let info = s.tenants().get(s.store(), ctx).await?;
    let resolved =
        s.registry().resolve(s.store(), ctx, info.tenant.segment.as_deref(), model).await?;
    if !principal.scopes().allows_model(model) {
        return Err(ApiError::Forbidden(format!(
            "this key's scopes do not include model {model:?}"
        )));
    }
    if info.plan.models.as_ref().is_some_and(|m| !m.iter().any(|x| x == model)) {
        return Err(ApiError::Forbidden(format!(
            "plan {:?} does not include model {model:?}",
            info.plan.name
        )));
    }
    Ok(resolved)
}

/// Runs an embeddings request; returns the answer, the model version and the
/// time spent in the model.
pub async fn embed(
    pool: &ModelPool,
    breakers: &Breakers,
    req: EmbeddingsRequest,
) -> Result<(EmbeddingsResponse, String, std::time::Duration), ApiError> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid(
                "encoding_format",
                format!("encoding_format {other:?} must be float or base64"),
            ));
        }
    };
    let texts = match req.input {
        EmbeddingInput::One(s) => vec![s],
        EmbeddingInput::Many(v) => v,
    };
    if texts.is_empty() {
        return Err(ApiError::invalid("input", "input must not be empty"));
    }
    if texts.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!("at most {MAX_INPUTS} inputs per request, got {}", texts.len()),
        ));
    }
    let model = pool.get(&req.model).await?;
    if let Some(d) = req.dimensions
        && !(1..=model.dim).contains(&d)
    {
        return Err(ApiError::invalid(
            "dimensions",
            format!("dimensions must be between 1 and {}, got {d}", model.dim),
        ));
    }
    let backend = format!("{}@{}", model.name, model.version);
    let out = guarded(breakers, &backend, model.embed(texts)).await?;
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| {
            let v = match req.dimensions {
                Some(d) if d < v.len() => renormalize(&v[..d]),
                _ => v,
            };
            let embedding = if base64 {
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                serde_json::Value::from(v)
            };
            EmbeddingData { object: "embedding", index, embedding }
        })
        .collect();
    let resp = EmbeddingsResponse {
        object: "list",
        data,
        model: model.name.clone(),
        usage: Usage { prompt_tokens: out.tokens, total_tokens: out.tokens },
    };
    Ok((resp, format!("{}@{}", model.name, model.version), out.model_time))
}

fn renormalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

/// Headers on every inference answer: the model that answered, its tier
/// (tenant, segment or platform), its version, and the time spent outside it.
pub fn timing_headers(
    model: &Model,
    version: &str,
    total: std::time::Duration,
    in_model: std::time::Duration,
) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&model.name) {
        headers.insert("x-tessera-model", v);
    }
    headers.insert("x-tessera-tier", HeaderValue::from_static(model.owner.as_str()));
    if let Ok(v) = HeaderValue::from_str(version) {
        headers.insert("x-tessera-model-version", v);
    }
    let overhead = total.saturating_sub(in_model).as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("{overhead:.3}")) {
        headers.insert("x-tessera-overhead-ms", v);
    }
    headers
}

/// Checks that `model` is an embedding model this server runs.
pub fn require_served_embedding(model: &Model) -> Result<(), ApiError> {
    if model.task != "embedding" || model.runtime != "bert" {
        return Err(ApiError::invalid(
            "model",
            format!(
                "model {:?} is a {} model on runtime {}; this route serves embedding models",
                model.name, model.task, model.runtime
            ),
        ));
    }
    if model.owner != ModelOwner::Platform {
        return Err(ApiError::ModelNotReady(format!(
            "model {:?} is registered but this server only serves platform embedding models so far",
            model.name
        )));
    }
    Ok(())
}

/// Create embeddings (OpenAI-compatible).
#[utoipa::path(post, path = "/v1/embeddings", tag = "inference", request_body = EmbeddingsRequest,
    responses((status = 200, body = EmbeddingsResponse), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<(HeaderMap, Json<EmbeddingsResponse>), ApiError> {
    let start = std::time::Instant::now();
    let ctx = auth.tenant(Operation::Inference)?;
    let model = authorize_model(&s, &ctx, &auth.principal, &req.model).await?.model.clone();
    require_served_embedding(&model)?;
    let (resp, version, model_time) = embed(s.models(), s.breakers(), req).await?;
    Ok((timing_headers(&model, &version, start.elapsed(), model_time), Json(resp)))
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
}
