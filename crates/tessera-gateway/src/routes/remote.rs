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
        return Ok(Target { model, version, backend: Backend::Local(engine), deployment: None });
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
        version: format!("{}@{}", model.name, chosen.version),
        model,
        backend: Backend::Remote(Remote { backend, config }),
        deployment,
    })
}

/// A call on one target, boxed so one helper can run any route's call.
pub(super) type Call<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// Runs `call` on `name`'s target, then on its deployment's fallbacks in
/// order while the failure is one a fallback may answer (the backend down,
/// overloaded, timed out, or its breaker open). `check` vets each target
/// before it is called (the route's task).
pub(super) async fn run_with_fallbacks<'c, T>(
    s: &AppState,
    auth: &Authed,
    name: &str,
    user: &str,
    check: impl Fn(&Target) -> Result<(), ApiError>,
    call: impl Fn(&Target) -> Call<'c, T>,
) -> Result<(Target, T), ApiError> {
    let primary = match target(s, auth, name, None, user).await {
        Ok(t) => {
            check(&t)?;
            Ok(t)
        }
        Err(e) if fallbackable(&e) => Err(e),
        Err(e) => return Err(e),
    };
    let deployment = match &primary {
        Ok(t) => t.deployment.clone(),
        Err(_) => deployment_for(s, auth, name).await,
    };
    let timeout = deployment.as_ref().and_then(|d| d.timeout_ms).map(Duration::from_millis);
    let mut outcome = match primary {
        Ok(t) => match within(timeout, name, call(&t)).await {
            Ok(out) => Ok((t, out)),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let (Err(e), Some(d)) = (&outcome, &deployment)
        && fallbackable(e)
    {
        for fallback in &d.fallbacks {
            let candidate = match target(s, auth, fallback, None, user).await {
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
    outcome
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
