//! KServe v1 predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`
//! answers `{"predictions": [...], "model_version": ...}`. Text models take
//! strings (or `{"text": ...}`); tensor models take rows of numbers; a
//! classification head adds each row's `label`.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tessera_engine::tensor::{Tensor, TensorData};

use super::embeddings::{MAX_INPUTS, timing_headers};
use super::oip::{Served, ServedBackend, flatten, serve_any, user_of};
use super::remote::{cached_headers, store_answer};
use super::serving::{deployment_for, fallbackable, mirror_with, within};
use crate::auth::Authed;
use crate::breaker::guarded;
use crate::cache::Policy;
use crate::error::{ApiError, ErrorBody};
use crate::extract::parse_json;
use crate::state::AppState;
use axum::http::HeaderValue;
use axum::response::IntoResponse as _;
use std::sync::Arc;
use tessera_core::role::Operation;

/// Predictions of one served model for `instances`.
async fn predict_on(
    s: &AppState,
    served: &Served,
    instances: &[Value],
    model: &str,
) -> Result<Value, ApiError> {
    let texts = |instances: Vec<Value>| {
        instances
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
            .collect::<Result<Vec<_>, _>>()
    };
    let (model_out, labels) = match &served.backend {
        ServedBackend::Text(engine) => {
            let out = guarded(
                s.breakers(),
                &format!("{}@{}", engine.name, engine.version),
                engine.embed(texts(instances.to_vec())?),
            )
            .await?;
            return Ok(Value::from(out.vectors));
        }
        ServedBackend::Tensor { model: m, base: Some(base) } => {
            let t = texts(instances.to_vec())?;
            let n = t.len();
            let out =
                guarded(s.breakers(), &format!("{}@{}", base.name, base.version), base.embed(t))
                    .await?;
            let features = Tensor::f32(
                vec![n as i64, base.dim as i64],
                out.vectors.into_iter().flatten().collect(),
            )?;
            (
                guarded(s.breakers(), &m.name, m.infer(vec![("features".to_owned(), features)]))
                    .await?,
                m.labels.clone(),
            )
        }
        ServedBackend::Tensor { model: m, base: None } => {
            let [spec] = m.inputs.as_slice() else {
                return Err(ApiError::invalid(
                    "instances",
                    format!(
                        "model {model:?} has {} inputs; use /v2/models/{model}/infer",
                        m.inputs.len()
                    ),
                ));
            };
            let n = instances.len();
            let mut flat = Vec::new();
            let mut per_row = None;
            for inst in instances {
                let before = flat.len();
                flatten(inst, &mut flat);
                let len = flat.len() - before;
                if len == 0 || per_row.is_some_and(|p| p != len) {
                    return Err(ApiError::invalid(
                        "instances",
                        "every instance must have the same, non-zero number of values",
                    ));
                }
                per_row = Some(len);
            }
            let per_row = per_row.unwrap_or(1);
            let shape = vec![n as i64, per_row as i64];
            let t = match spec.datatype.as_str() {
                "INT64" => Tensor::i64(
                    shape,
                    flat.iter().map(|v| v.as_i64()).collect::<Option<_>>().ok_or_else(|| {
                        ApiError::invalid("instances", "instances must be integers")
                    })?,
                )?,
                _ => Tensor::f32(
                    shape,
                    flat.iter()
                        .map(|v| v.as_f64().map(|x| x as f32))
                        .collect::<Option<_>>()
                        .ok_or_else(|| {
                            ApiError::invalid("instances", "instances must be numbers")
                        })?,
                )?,
            };
            (
                guarded(s.breakers(), &m.name, m.infer(vec![(spec.name.clone(), t)])).await?,
                m.labels.clone(),
            )
        }
    };
    // One prediction per row: each output's row, and the label for classification heads.
    let n = model_out.first().map_or(0, |(_, t)| t.rows());
    let mut predictions = vec![Map::new(); n];
    for (name, t) in &model_out {
        if t.rows() != n {
            return Err(ApiError::invalid(
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
                ApiError::Internal(format!("output {name:?} is shorter than its shape"))
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
        (&labels, served.deployment.as_ref().and_then(|d| d.post.as_ref()))
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

/// KServe v1 predict: `POST /v1/models/{name}:predict` with `{"instances": [...]}`.
#[utoipa::path(post, path = "/v1/models/{name}", tag = "open inference protocol",
    params(("name" = String, Path, description = "model name followed by :predict, e.g. all-minilm-l6-v2:predict")),
    responses((status = 200, description = "{\"predictions\": [...], \"model_version\": ...}"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn kserve_predict(
    State(s): State<AppState>,
    auth: Authed,
    Path(name): Path<String>,
    req_headers: HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let started = std::time::Instant::now();
    let model = name.strip_suffix(":predict").unwrap_or(&name);
    let draft = super::admission::draft(&s, &auth, "/v1/models/{name}:predict", model).await;
    let r = predict(&s, &auth, &name, &req_headers, body).await;
    super::admission::finish(draft, &r, started);
    r
}

async fn predict(
    s: &AppState,
    auth: &Authed,
    name: &str,
    req_headers: &HeaderMap,
    body: Body,
) -> Result<axum::response::Response, ApiError> {
    let (s, auth) = (s.clone(), auth.clone());
    let Some(model) = name.strip_suffix(":predict") else {
        return Err(ApiError::RouteNotFound {
            method: "POST".into(),
            path: format!("/v1/models/{name}"),
        });
    };
    let start = std::time::Instant::now();
    let admitted = super::admission::admit(&s, &auth, model, (0, 0)).await?;
    let user = user_of(req_headers, &auth);
    let primary = match serve_any(&s, &auth, model, None, &user).await {
        Ok(sv) => Ok(sv),
        // A model that cannot be served may still have fallbacks.
        Err(e) if fallbackable(&e) => Err(e),
        Err(e) => return Err(e),
    };
    let limit = s.max_body_bytes();
    let bytes =
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError::PayloadTooLarge { limit })?;
    #[derive(Deserialize)]
    struct Predict {
        instances: Vec<Value>,
    }
    let req: Predict = parse_json(&bytes)?;
    if req.instances.is_empty() {
        return Err(ApiError::invalid("instances", "instances must not be empty"));
    }
    if req.instances.len() > MAX_INPUTS {
        return Err(ApiError::invalid(
            "instances",
            format!("at most {MAX_INPUTS} instances per request, got {}", req.instances.len()),
        ));
    }
    let deployment = match &primary {
        Ok(sv) => sv.deployment.clone(),
        Err(_) => deployment_for(&s, &auth, model).await,
    };
    let timeout =
        deployment.as_ref().and_then(|d| d.timeout_ms).map(std::time::Duration::from_millis);
    // Predictions are cached by default (per tenant, model version and instances).
    let policy = Policy::of(req_headers);
    let ttl_ms = deployment
        .as_ref()
        .and_then(|d| d.cache_ttl_ms)
        .unwrap_or(crate::cache::DEFAULT_TTL.as_millis() as u64);
    let cache_key = match &primary {
        Ok(sv) if policy != Policy::Bypass && ttl_ms > 0 => {
            let tenant = auth.tenant(Operation::Inference)?.tenant_id().to_string();
            let version = format!("{}@{}", sv.model.name, sv.version());
            // The deployment's post-processing rules shape the answer: part of the key.
            let post = sv.deployment.as_ref().and_then(|d| d.post.as_ref());
            let request = json!({"instances": req.instances, "post": post});
            Some(
                s.cache()
                    .key(&tenant, &sv.model.id, &version, "/v1/models:predict", &request)
                    .await,
            )
        }
        _ => {
            s.cache().bypassed();
            None
        }
    };
    let cached = match &cache_key {
        Some(k) => s.cache().get(k).await,
        None => None,
    };
    if let Some(hit) = cached.as_ref().filter(|e| policy == Policy::Use && e.is_fresh()) {
        let mut h = cached_headers(hit, start.elapsed());
        h.extend(admitted.headers());
        return Ok((h, hit.body.clone()).into_response());
    }
    let model_start = std::time::Instant::now();
    let mut outcome = match primary {
        Ok(sv) => {
            let r = within(timeout, model, predict_on(&s, &sv, &req.instances, model)).await;
            if let (Err(e), Some(stale)) = (&r, &cached)
                && fallbackable(e)
            {
                tracing::warn!(model, error = %e, "answering from the cache");
                s.cache().served_stale();
                let mut h = cached_headers(stale, start.elapsed());
                h.insert("x-tessera-cache", HeaderValue::from_static("stale"));
                h.extend(admitted.headers());
                return Ok((h, stale.body.clone()).into_response());
            }
            if r.is_ok() {
                let (instances, name) = (Arc::new(req.instances.clone()), model.to_owned());
                mirror_with(&s, &auth, &sv, model, &user, move |s, shadow| {
                    let (instances, name) = (instances.clone(), name.clone());
                    async move { predict_on(&s, &shadow, &instances, &name).await.map(|_| ()) }
                });
            }
            r.map(|p| (sv, p))
        }
        Err(e) => Err(e),
    };
    if let (Err(e), Some(d)) = (&outcome, &deployment)
        && fallbackable(e)
    {
        for fallback in &d.fallbacks {
            let Ok(candidate) = serve_any(&s, &auth, fallback, None, &user).await else { continue };
            if let Ok(p) =
                within(timeout, fallback, predict_on(&s, &candidate, &req.instances, fallback))
                    .await
            {
                outcome = Ok((candidate, p));
                break;
            }
        }
    }
    let (served, predictions) = outcome?;
    let mut h = timing_headers(
        &served.model,
        &format!("{}@{}", served.model.name, served.version()),
        start.elapsed(),
        model_start.elapsed(),
    );
    h.extend(admitted.headers());
    let answer = json!({"predictions": predictions, "model_version": served.version()});
    let from_primary = served.model.name == model;
    match &cache_key {
        Some(key) if from_primary => {
            let version = format!("{}@{}", served.model.name, served.version());
            store_answer(&s, key, ttl_ms, &served.model, &version, &answer);
            h.insert("x-tessera-cache", HeaderValue::from_static("miss"));
        }
        _ => {
            h.insert("x-tessera-cache", HeaderValue::from_static("bypass"));
        }
    }
    Ok((h, Json(answer)).into_response())
}
