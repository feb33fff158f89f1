//! Targets of the OpenAI-style routes (`/v1/chat/completions`,
//! `/v1/embeddings`): a model name resolves for the caller to a local
//! embedding model or to a version of a remote (`openai-compatible`) model,
//! under its deployment: sticky version pick, timeout, fallbacks to other
//! models (local or remote), and shadow versions mirrored in the background.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tessera_core::model::{Deployment, Model, REMOTE_RUNTIME};
use tessera_core::role::Operation;
use tessera_engine::pool::EmbeddingModel;
use tessera_store::ModelView;

use super::embeddings::{authorize_model, require_served_embedding};
use super::serving::{deployment_for, fallbackable, within};
use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;
use crate::upstream::Remote;

/// What answers for a model name.
#[derive(Clone)]
pub(super) enum Backend {
    /// A platform embedding model running in this process.
    Local(Arc<EmbeddingModel>),
    /// One version of a remote model.
    Remote(Remote),
}

pub(super) struct Target {
    /// The calling tenant.
    pub(super) caller: String,
    pub(super) model: Model,
    /// The version that answers, as `<name>@<version>`.
    pub(super) version: String,
    pub(super) backend: Backend,
    pub(super) deployment: Option<Arc<Deployment>>,
}

impl Target {
    /// The model name to send upstream, or the registered name.
    pub(super) fn upstream_model(&self) -> &str {
        match &self.backend {
            Backend::Remote(r) => r.config.upstream_model.as_deref().unwrap_or(&self.model.name),
            Backend::Local(_) => &self.model.name,
        }
    }
}

/// Resolves `name` for the caller: the version a deployment picks for
/// `user` (or `version`, or the latest), ready to call.
pub(super) async fn target(
    s: &AppState,
    auth: &Authed,
    name: &str,
    version: Option<i64>,
    user: &str,
) -> Result<Target, ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let resolved = authorize_model(s, &ctx, &auth.principal, name).await?;
    let model = resolved.model.clone();
    if model.runtime == "bert" {
        require_served_embedding(&model)?;
        let engine = s.models().get(&model.name).await?;
        let version = format!("{}@{}", engine.name, engine.version);
        return Ok(Target {
            caller: ctx.tenant_id().to_string(),
            model,
            version,
            backend: Backend::Local(engine),
            deployment: None,
        });
    }
    if model.runtime != REMOTE_RUNTIME {
        return Err(ApiError::invalid(
            "model",
            format!(
                "model {name:?} runs on {}; call it with /v2/models/{name}/infer or /v1/models/{name}:predict",
                model.runtime
            ),
        ));
    }
    let info = s.tenants().get(s.store(), &ctx).await?;
    let view = ModelView::Tenant { ctx: &ctx, segment: info.tenant.segment.as_deref() };
    let deployment = s.deployment(view, &model).await?;
    let wanted = match (version, &deployment) {
        (Some(v), _) => Some(v),
        (None, Some(d)) => Some(d.pick(&model.id, user)),
        (None, None) => None,
    };
    let chosen = match wanted {
        Some(v) => resolved.versions.iter().find(|x| x.version == v),
        None => resolved.versions.last(),
    }
    .ok_or_else(|| ApiError::ModelNotReady(format!("model {name:?} has no such version")))?;
    let config = s.upstreams().config(s.artifacts(), &chosen.sha256).await?;
    let backend = format!("{}@{} ({})", model.name, chosen.version, model.id);
    Ok(Target {
        caller: ctx.tenant_id().to_string(),
        version: format!("{}@{}", model.name, chosen.version),
        model,
        backend: Backend::Remote(Remote { backend, config }),
        deployment,
    })
}

/// A call on one target, boxed so one helper can run any route's call.
pub(super) type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Who asked for which model.
pub(super) struct Ask<'a> {
    pub(super) name: &'a str,
    pub(super) user: &'a str,
}

/// What answered a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The requested model, as its deployment picked it.
    Primary,
    /// A model from the deployment's fallback list.
    Fallback,
    /// A cached answer, because the model failed.
    Cache,
}

/// The requested model resolved for the caller and vetted by `check`: the
/// outer error ends the request; the inner one (the model cannot serve right
/// now) leaves the fallbacks to try.
pub(super) async fn primary(
    s: &AppState,
    auth: &Authed,
    ask: &Ask<'_>,
    check: impl Fn(&Target) -> Result<(), ApiError>,
) -> Result<Result<Target, ApiError>, ApiError> {
    match target(s, auth, ask.name, None, ask.user).await {
        Ok(t) => {
            check(&t)?;
            Ok(Ok(t))
        }
        Err(e) if fallbackable(&e) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// Runs `call` on the primary target, then, while the failure is one a
/// fallback may answer (the backend down, overloaded, timed out, or its
/// breaker open): the `stale` cached answer if there is one, then the
/// deployment's fallback models in order. `check` vets each fallback (the
/// route's task).
pub(super) async fn run_with_fallbacks<'c, T>(
    s: &AppState,
    auth: &Authed,
    ask: &Ask<'_>,
    primary: Result<Target, ApiError>,
    check: impl Fn(&Target) -> Result<(), ApiError>,
    call: impl Fn(&Target) -> Call<'c, T>,
    stale: Option<T>,
) -> Result<(Target, T, Source), ApiError> {
    let deployment = match &primary {
        Ok(t) => t.deployment.clone(),
        Err(_) => deployment_for(s, auth, ask.name).await,
    };
    let timeout = deployment.as_ref().and_then(|d| d.timeout_ms).map(Duration::from_millis);
    let mut outcome = match primary {
        Ok(t) => match within(timeout, ask.name, call(&t)).await {
            Ok(out) => return Ok((t, out, Source::Primary)),
            Err(e) if fallbackable(&e) => match stale {
                Some(cached) => {
                    tracing::warn!(model = %ask.name, error = %e, "answering from the cache");
                    return Ok((t, cached, Source::Cache));
                }
                None => Err(e),
            },
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let (Err(e), Some(d)) = (&outcome, &deployment)
        && fallbackable(e)
    {
        for fallback in &d.fallbacks {
            let candidate = match target(s, auth, fallback, None, ask.user).await {
                Ok(c) if check(&c).is_ok() => c,
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(%fallback, error = %e, "fallback model cannot serve");
                    continue;
                }
            };
            match within(timeout, fallback, call(&candidate)).await {
                Ok(out) => {
                    outcome = Ok((candidate, out));
                    break;
                }
                Err(e) => tracing::warn!(%fallback, error = %e, "fallback model failed"),
            }
        }
    }
    outcome.map(|(t, out)| (t, out, Source::Fallback))
}

/// What the primary answered, for comparing a shadow's answer with.
pub(super) struct Answered {
    /// The compared part of the answer (see [`output_of`]); none for streams.
    pub(super) output: Option<Value>,
    pub(super) time: Duration,
}

/// Mirrors a JSON request to the deployment's shadow versions of `primary`'s
/// model, in the background, bounded by the shadow slots: answers are
/// discarded; latency and whether the output matched the primary's are
/// recorded. The primary never waits for them.
pub(super) fn mirror_json(
    s: &AppState,
    auth: &Authed,
    primary: &Target,
    user: &str,
    path: &'static str,
    body: &Value,
    primary_answer: Answered,
) {
    let Answered { output: primary_output, time: primary_time } = primary_answer;
    let Some(d) = &primary.deployment else { return };
    for version in d.shadows_for(&primary.model.id, user) {
        let Ok(permit) = s.shadow_slots().try_acquire_owned() else {
            s.metrics().shadow("dropped");
            continue;
        };
        let (s, auth, name, body, expected) = (
            s.clone(),
            auth.clone(),
            primary.model.name.clone(),
            body.clone(),
            primary_output.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let start = Instant::now();
            let outcome = async {
                let t = target(&s, &auth, &name, Some(version), "").await?;
                let Backend::Remote(remote) = &t.backend else {
                    return Err(ApiError::Internal("shadow of a local model".into()));
                };
                let mut body = body;
                body["model"] = Value::from(t.upstream_model());
                body.as_object_mut().map(|o| o.remove("stream"));
                body.as_object_mut().map(|o| o.remove("stream_options"));
                s.upstreams().call_json(s.breakers(), remote, path, &body).await
            }
            .await;
            let elapsed = start.elapsed();
            match outcome {
                Ok(answer) => {
                    let same = expected.as_ref().map(|e| output_of(&answer) == *e);
                    s.metrics().shadow_done("ok", elapsed);
                    tracing::info!(target: "tessera::shadow", model = %name, version,
                        shadow_ms = elapsed.as_secs_f64() * 1e3, primary_ms = primary_time.as_secs_f64() * 1e3,
                        same_output = ?same, "shadow answered");
                }
                Err(e) => {
                    s.metrics().shadow_done("error", elapsed);
                    tracing::info!(target: "tessera::shadow", model = %name, version, error = %e, "shadow failed");
                }
            }
        });
    }
}

/// The part of an answer two versions are compared on: the chat messages'
/// content, or the embedding vectors.
pub(super) fn output_of(answer: &Value) -> Value {
    if let Some(choices) = answer.get("choices").and_then(Value::as_array) {
        return Value::from(
            choices
                .iter()
                .map(|c| c.pointer("/message/content").cloned().unwrap_or(Value::Null))
                .collect::<Vec<_>>(),
        );
    }
    answer
        .get("data")
        .and_then(Value::as_array)
        .map(|d| Value::from(d.iter().map(|x| x["embedding"].clone()).collect::<Vec<_>>()))
        .unwrap_or(Value::Null)
}

/// Headers of an answer from the cache.
pub(super) fn cached_headers(e: &crate::cache::Entry, total: Duration) -> axum::http::HeaderMap {
    use axum::http::HeaderValue;
    let mut h = axum::http::HeaderMap::new();
    for (name, v) in [
        ("x-tessera-model", &e.model),
        ("x-tessera-tier", &e.tier),
        ("x-tessera-model-version", &e.version),
    ] {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(name, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", total.as_secs_f64() * 1000.0)) {
        h.insert("x-tessera-overhead-ms", v);
    }
    h.insert("x-tessera-cache", HeaderValue::from_static("hit"));
    h.insert(axum::http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h
}

/// Stores a primary answer of `model` at `version` under `key`; counts a miss.
pub(super) fn store_answer(
    s: &AppState,
    key: &str,
    ttl_ms: u64,
    model: &Model,
    version: &str,
    answer: &Value,
) {
    s.cache().miss();
    s.cache().put(
        key.to_owned(),
        crate::cache::Entry {
            body: answer.to_string(),
            model: model.name.clone(),
            tier: model.owner.as_str().to_owned(),
            version: version.to_owned(),
            stored_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            ttl_ms,
        },
    );
}

/// A request's place in the response cache.
pub(super) struct CacheSlot {
    /// `None`: not cached (bypassed, disabled, or the model cannot be resolved).
    key: Option<String>,
    ttl_ms: u64,
    /// What the cache holds, fresh or within its grace period.
    pub(super) entry: Option<Arc<crate::cache::Entry>>,
    policy: crate::cache::Policy,
}

impl CacheSlot {
    /// Looks a request up. `enabled` says whether the target's answers are
    /// cacheable on this route; fields that do not change the answer
    /// (`user`, streaming options) are left out of the key.
    pub(super) async fn of(
        s: &AppState,
        primary: &Result<Target, ApiError>,
        route: &str,
        request: &Value,
        policy: crate::cache::Policy,
        enabled: impl Fn(&Target) -> bool,
    ) -> CacheSlot {
        let none = CacheSlot { key: None, ttl_ms: 0, entry: None, policy };
        let Ok(t) = primary else { return none };
        let ttl_ms = t
            .deployment
            .as_ref()
            .and_then(|d| d.cache_ttl_ms)
            .unwrap_or(crate::cache::DEFAULT_TTL.as_millis() as u64);
        if policy == crate::cache::Policy::Bypass || ttl_ms == 0 || !enabled(t) {
            s.cache().bypassed();
            return none;
        }
        let mut request = request.clone();
        if let Some(o) = request.as_object_mut() {
            for k in ["user", "stream", "stream_options"] {
                o.remove(k);
            }
        }
        // The caller's tenant, not the model's owner: a shared model's
        // answers are still kept per tenant.
        let key = s.cache().key(&t.caller, &t.model.id, &t.version, route, &request).await;
        let entry = s.cache().get(&key).await;
        CacheSlot { key: Some(key), ttl_ms, entry, policy }
    }

    /// A fresh entry the request may be answered with.
    pub(super) fn hit(&self) -> Option<&Arc<crate::cache::Entry>> {
        if self.policy != crate::cache::Policy::Use {
            return None;
        }
        self.entry.as_ref().filter(|e| e.is_fresh())
    }

    /// The stale-or-fresh cached answer as JSON, for the fallback.
    pub(super) fn stale_json(&self) -> Option<Value> {
        self.entry.as_ref().and_then(|e| serde_json::from_str(&e.body).ok())
    }

    /// Stores the primary's answer; counts a miss.
    pub(super) fn store(&self, s: &AppState, t: &Target, answer: &Value) {
        let Some(key) = &self.key else { return };
        store_answer(s, key, self.ttl_ms, &t.model, &t.version, answer);
    }

    /// The `x-tessera-cache` value for an answer from `source`.
    pub(super) fn header(&self, source: Source) -> &'static str {
        match (source, &self.key) {
            (Source::Cache, _) => "stale",
            (_, Some(_)) => "miss",
            (_, None) => "bypass",
        }
    }
}
