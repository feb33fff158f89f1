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
use tessera_engine::pool::EmbeddingModel;
use utoipa::ToSchema;

use super::remote::{
    Answered, Ask, Backend, CacheSlot, Call, Source, Target, cached_headers, mirror_json, primary,
    run_with_fallbacks,
};
use crate::auth::Authed;
use crate::breaker::{Breakers, guarded};
use crate::cache::Policy;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::registry_cache::Resolved;
use crate::state::AppState;
use axum::response::IntoResponse as _;
use std::sync::Arc;

/// Most inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingsRequest {
    pub model: String,
    pub input: EmbeddingInput,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding_format: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dimensions: Option<usize>,
    /// End-user id: keeps one user on one variant of a traffic split.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
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

/// Checks the parts of a request every backend shares.
fn validate(req: &EmbeddingsRequest) -> Result<(), ApiError> {
    if let Some(other) =
        req.encoding_format.as_deref().filter(|f| !matches!(*f, "float" | "base64"))
    {
        return Err(ApiError::invalid(
            "encoding_format",
            format!("encoding_format {other:?} must be float or base64"),
        ));
    }
    let n = match &req.input {
        EmbeddingInput::One(_) => 1,
        EmbeddingInput::Many(v) => v.len(),
    };
    if n == 0 {
        return Err(ApiError::invalid("input", "input must not be empty"));
    }
    if n > MAX_INPUTS {
        return Err(ApiError::invalid(
            "input",
            format!("at most {MAX_INPUTS} inputs per request, got {n}"),
        ));
    }
    Ok(())
}

/// Runs an embeddings request on a local model; returns the answer and the
/// time spent in the model.
pub async fn embed_local(
    model: &EmbeddingModel,
    breakers: &Breakers,
    req: EmbeddingsRequest,
    answer_as: &str,
) -> Result<(EmbeddingsResponse, std::time::Duration), ApiError> {
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
        model: answer_as.to_owned(),
        usage: Usage { prompt_tokens: out.tokens, total_tokens: out.tokens },
    };
    Ok((resp, out.model_time))
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
    headers: HeaderMap,
    ApiJson(req): ApiJson<EmbeddingsRequest>,
) -> Result<axum::response::Response, ApiError> {
    let start = std::time::Instant::now();
    let draft = super::admission::draft(&s, &auth, "/v1/embeddings", &req.model).await;
    let r = create_inner(&s, &auth, &headers, req, start).await;
    super::admission::finish(draft, &r, start);
    r
}

async fn create_inner(
    s: &AppState,
    auth: &Authed,
    headers: &HeaderMap,
    req: EmbeddingsRequest,
    start: std::time::Instant,
) -> Result<axum::response::Response, ApiError> {
    let (s, auth) = (s.clone(), auth.clone());
    validate(&req)?;
    let texts: Vec<&str> = match &req.input {
        EmbeddingInput::One(t) => vec![t.as_str()],
        EmbeddingInput::Many(v) => v.iter().map(String::as_str).collect(),
    };
    let mut admitted = super::admission::admit(
        &s,
        &auth,
        &req.model,
        (super::admission::estimate_tokens(texts), 0),
    )
    .await?;
    let user = req.user.clone().unwrap_or_else(|| super::oip::user_of(headers, &auth));
    let body = serde_json::to_value(&req).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (s2, req2, body2) = (&s, &req, &body);
    // Each attempt reports its answer and the time spent in the model.
    let call = |t: &Target| -> Call<'_, (serde_json::Value, std::time::Duration)> {
        let backend = t.backend.clone();
        let name = t.model.name.clone();
        let mut upstream = body2.clone();
        upstream["model"] = serde_json::Value::from(t.upstream_model());
        Box::pin(async move {
            let started = std::time::Instant::now();
            match &backend {
                Backend::Local(engine) => {
                    let (resp, t) = embed_local(engine, s2.breakers(), req2.clone(), &name).await?;
                    let v = serde_json::to_value(resp)
                        .map_err(|e| ApiError::Internal(e.to_string()))?;
                    Ok((v, t))
                }
                Backend::Remote(r) => {
                    let mut v = s2
                        .upstreams()
                        .call_json(s2.breakers(), r, "/embeddings", &upstream)
                        .await?;
                    if !v.get("data").is_some_and(serde_json::Value::is_array) {
                        return Err(ApiError::UpstreamFailed {
                            backend: r.backend.clone(),
                            reason: "sent an embeddings answer without data".into(),
                        });
                    }
                    v["model"] = serde_json::Value::from(name);
                    Ok((v, started.elapsed()))
                }
            }
        })
    };
    let check = |t: &Target| {
        if t.model.task == "embedding" {
            Ok(())
        } else {
            Err(ApiError::invalid(
                "model",
                format!(
                    "model {:?} is a {} model; this route serves embedding models",
                    t.model.name, t.model.task
                ),
            ))
        }
    };
    let ask = Ask { name: &req.model, user: &user };
    let first = primary(&s, &auth, &ask, check).await?;
    let slot =
        CacheSlot::of(&s, &first, "/v1/embeddings", &body, Policy::of(headers), |_| true).await;
    if let Some(hit) = slot.hit() {
        admitted.settle(0, 0);
        let mut h = cached_headers(hit, start.elapsed());
        h.extend(admitted.headers());
        return Ok((h, hit.body.clone()).into_response());
    }
    let stale = slot.stale_json().map(|v| (v, std::time::Duration::ZERO));
    let (t, (answer, model_time), source) =
        run_with_fallbacks(&s, &auth, &ask, first, check, call, stale).await?;
    if source == Source::Primary {
        slot.store(&s, &t, &answer);
    }
    if source == Source::Cache {
        s.cache().served_stale();
        admitted.settle(0, 0);
    }
    if source == Source::Primary && matches!(t.backend, Backend::Remote(_)) {
        let out = super::remote::output_of(&answer);
        mirror_json(
            &s,
            &auth,
            &t,
            &user,
            "/embeddings",
            &body,
            Answered { output: Some(out), time: model_time },
        );
    }
    if let Some(u) =
        answer.get("usage").and_then(|u| u.get("prompt_tokens")).and_then(serde_json::Value::as_u64)
        && source != Source::Cache
    {
        admitted.settle(u, 0);
        if matches!(t.backend, Backend::Remote(_)) {
            s.upstreams().stats.tokens(u, 0);
        }
    }
    let mut h = timing_headers(&t.model, &t.version, start.elapsed(), model_time);
    h.extend(admitted.headers());
    h.insert("x-tessera-cache", HeaderValue::from_static(slot.header(source)));
    let prompt = answer
        .get("usage")
        .and_then(|u| u.get("prompt_tokens"))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    let mut resp = (h, Json(answer)).into_response();
    if source != Source::Cache {
        resp.extensions_mut().insert(crate::metering::Tokens(prompt, 0));
    }
    Ok(resp)
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
