//! Resolution, once per request: who calls ([`Caller`]), what their model
//! name means for them ([`Resolution`]: tenant and plan, the registry entry
//! and its versions, its deployment) and, per attempt, the version that
//! answers and the backend that runs it ([`Target`]).

use std::fmt;
use std::sync::Arc;

use tessera_core::auth::{Principal, TenantCtx};
use tessera_core::governance::{Check, Comparison, Gate, split_selector};
use tessera_core::model::{Deployment, Model, ModelOwner, ModelVersion, REMOTE_RUNTIME};
use tessera_core::model_features::FeatureBinding;
use tessera_engine::pool::{EmbeddingModel, ModelSource, SourceKind, TensorModel};
use tessera_features::model_input::Vectors;
use tessera_store::ModelView;

use super::ServeError;
use crate::Services;
use crate::registry_cache::Resolved;
use crate::tenant_cache::TenantInfo;
use tessera_providers::Remote;

/// The authenticated caller of an inference request, already authorized
/// for inference by the edge.
#[derive(Clone)]
pub struct Caller {
    pub ctx: TenantCtx,
    pub principal: Principal,
    pub request_id: String,
    /// Who the request is for, for sticky traffic splits.
    pub user: String,
}

/// A model name resolved for a caller: read once per request.
#[derive(Clone)]
pub struct Resolution {
    pub tenant: Arc<TenantInfo>,
    pub model: Arc<Resolved>,
    pub deployment: Option<Arc<Deployment>>,
}

impl Resolution {
    pub fn model(&self) -> &Model {
        &self.model.model
    }
}

/// A model version as `<name>@<version>`: the cache key part, the
/// `x-tessera-model-version` header and the usage record's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionRef {
    pub model: String,
    pub version: String,
}

impl fmt::Display for VersionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.model, self.version)
    }
}

/// What runs a request.
#[derive(Clone)]
pub enum Backend {
    /// A platform text embedding model in this process.
    Embedding(Arc<EmbeddingModel>),
    /// A user's ONNX model or linear head over numbers.
    Tensor(Arc<TensorModel>),
    /// A head over a base embedding model: text in, the head's outputs out.
    Head { head: Arc<TensorModel>, base: Arc<EmbeddingModel> },
    /// One version of a remote (`openai-compatible`) model.
    Remote(Remote),
}

/// One model version ready to call.
#[derive(Clone)]
pub struct Target {
    pub model: Model,
    pub version: VersionRef,
    pub backend: Backend,
    pub deployment: Option<Arc<Deployment>>,
    /// The features the version reads, if it reads any.
    pub binding: Option<Arc<FeatureBinding>>,
    /// The request's entity rows read as this version's input (filled by
    /// the pipeline when the request names an entity).
    pub inputs: Option<Arc<Vectors>>,
}

impl Target {
    /// The model name to send upstream, or the registered name.
    pub fn upstream_model(&self) -> &str {
        match &self.backend {
            Backend::Remote(r) => r.config.upstream_model.as_deref().unwrap_or(&self.model.name),
            _ => &self.model.name,
        }
    }

    pub fn is_remote(&self) -> bool {
        matches!(self.backend, Backend::Remote(_))
    }
}

/// The check of the tensor protocols (OIP, KServe): a local model of the
/// requested task (`task`, the requested model's).
pub fn accepts_local(m: &Model, task: &str) -> Result<(), ServeError> {
    if m.runtime == REMOTE_RUNTIME {
        return Err(ServeError::invalid(
            "model",
            format!(
                "model {:?} runs on {}; call it with /v1/chat/completions or /v1/embeddings",
                m.name, m.runtime
            ),
        ));
    }
    if m.task != task {
        return Err(ServeError::invalid(
            "model",
            format!("model {:?} is a {} model; this request is for a {task} model", m.name, m.task),
        ));
    }
    Ok(())
}

/// Resolves `name` for the caller (its own models, then its segment's, then
/// the platform's) and checks that the key's scopes and the plan allow it.
pub async fn resolve(s: &Services, caller: &Caller, name: &str) -> Result<Resolution, ServeError> {
    let tenant = s.tenants().get(s.store(), &caller.ctx).await?;
    let segment = tenant.tenant.segment.as_deref();
    let model = s.registry().resolve(s.store(), &caller.ctx, segment, name).await?;
    if !caller.principal.scopes().allows_model(name) {
        return Err(ServeError::Forbidden(format!(
            "this key's scopes do not include model {name:?}"
        )));
    }
    if tenant.plan.models.as_ref().is_some_and(|m| !m.iter().any(|x| x == name)) {
        return Err(ServeError::Forbidden(format!(
            "plan {:?} does not include model {name:?}",
            tenant.plan.name
        )));
    }
    let view = ModelView::Tenant { ctx: &caller.ctx, segment };
    let deployment = s.deployment(view, &model.model).await?;
    Ok(Resolution { tenant, model, deployment })
}

/// A name as a caller writes it: `model`, `model@3` (a version) or
/// `model@alias`, resolved, with the version it names if it names one.
pub async fn resolve_named(
    s: &Services,
    caller: &Caller,
    name: &str,
) -> Result<(Resolution, Option<String>), ServeError> {
    let (base, selector) = split_selector(name);
    let res = resolve(s, caller, base).await?;
    let pin = match selector {
        None => None,
        Some(v) if v.bytes().all(|b| b.is_ascii_digit()) => Some(v.to_owned()),
        Some(alias) => Some(
            res.model
                .alias(alias)
                .ok_or_else(|| {
                    ServeError::NotFound(format!("model {base:?} has no alias {alias:?}"))
                })?
                .to_string(),
        ),
    };
    Ok((res, pin))
}

/// What a target is for: live traffic is held to the versions' gates;
/// evaluation (shadows, metadata) is not, since that is how a version that
/// failed is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    Live,
    Evaluate,
}

/// The refusal of a version that failed its gate, naming the checks it
/// failed (read from its report; without them if the store is away).
/// Serving and the control plane (deployments, aliases) refuse alike.
pub async fn gate_refusal(
    store: &dyn tessera_store::MetadataStore,
    view: ModelView<'_>,
    model: &Model,
    version: i64,
) -> ServeError {
    let failing = match store.get_version_report(view, model, version).await {
        Ok(Some(r)) => r.failing().into_iter().cloned().collect(),
        _ => Vec::new(),
    };
    ServeError::GateFailed { message: gate_message(&model.name, version, &failing), failing }
}

/// `model "m" version 3 failed its validation gate (accuracy 0.61 < 0.85); ...`
fn gate_message(model: &str, version: i64, failing: &[Check]) -> String {
    let list: Vec<String> = failing
        .iter()
        .map(|c| {
            let op = match c.comparison {
                Comparison::AtLeast => "<",
                Comparison::AtMost => ">",
            };
            match c.value {
                Some(v) => format!("{} {v:.4} {op} {}", c.name, c.threshold),
                None => format!("{} not measured", c.name),
            }
        })
        .collect();
    let why = if list.is_empty() { String::new() } else { format!(" ({})", list.join(", ")) };
    format!(
        "model {model:?} version {version} failed its validation gate{why}; it cannot take live traffic until it passes or a platform admin overrides the gate"
    )
}

async fn refuse(s: &Services, caller: &Caller, res: &Resolution, version: i64) -> ServeError {
    let view =
        ModelView::Tenant { ctx: &caller.ctx, segment: res.tenant.tenant.segment.as_deref() };
    gate_refusal(s.store(), view, res.model(), version).await
}

/// The version of a resolved model that answers: `pin` if given, else the
/// deployment's sticky pick for the caller's user, else the latest that
/// passed its gate; loaded and ready to call. Live traffic never reaches
/// a version that failed its gate.
pub async fn target(
    s: &Services,
    caller: &Caller,
    res: &Resolution,
    pin: Option<&str>,
    purpose: Use,
) -> Result<Target, ServeError> {
    let model = res.model();
    let name = &model.name;
    if model.runtime == "bert" {
        let engine = embedding(s, model).await?;
        if let Some(v) = pin
            && v != engine.version
        {
            return Err(ServeError::NotFound(format!("model {name:?} has no version {v:?}")));
        }
        return Ok(Target {
            model: model.clone(),
            version: VersionRef { model: engine.name.clone(), version: engine.version.clone() },
            backend: Backend::Embedding(engine),
            deployment: res.deployment.clone(),
            binding: None,
            inputs: None,
        });
    }
    let versions = &res.model.versions;
    let chosen = match pin {
        Some(v) => versions
            .iter()
            .find(|x| x.version.to_string() == v)
            .ok_or_else(|| ServeError::NotFound(format!("model {name:?} has no version {v:?}")))?,
        None if versions.is_empty() => {
            return Err(ServeError::NotFound(format!(
                "model {name:?} has no versions yet; upload one"
            )));
        }
        None => match res.deployment.as_ref().map(|d| d.pick(&model.id, &caller.user)) {
            // A deployment can name a version (or an alias) this replica has
            // not read yet (its registry cache refreshes within the TTL): not
            // ready, so fallbacks may answer.
            Some(sel) => sel
                .resolve(|a| res.model.alias(a))
                .and_then(|v| versions.iter().find(|x| x.version == v))
                .ok_or_else(|| {
                    ServeError::ModelNotReady(format!(
                        "model {name:?} version {sel} is not known here yet; retry shortly"
                    ))
                })?,
            None => match versions.iter().rev().find(|v| Gate::allows_traffic(v.gate)) {
                Some(v) => v,
                // Every version failed its gate: the newest one says why.
                None if purpose == Use::Live => {
                    let newest = versions.last().map_or(0, |v| v.version);
                    return Err(refuse(s, caller, res, newest).await);
                }
                None => versions.last().ok_or_else(|| {
                    ServeError::NotFound(format!("model {name:?} has no versions yet; upload one"))
                })?,
            },
        },
    };
    if purpose == Use::Live && !Gate::allows_traffic(chosen.gate) {
        return Err(refuse(s, caller, res, chosen.version).await);
    }
    let version = VersionRef { model: name.clone(), version: chosen.version.to_string() };
    let backend = if model.runtime == REMOTE_RUNTIME {
        let read = || async { Ok::<_, ServeError>(s.artifacts().get(&chosen.sha256).await?) };
        let config = s.upstreams().config(&chosen.sha256, read).await?;
        Backend::Remote(Remote { backend: format!("{version} ({})", model.id), config })
    } else {
        tensor_backend(s, caller, model, chosen).await?
    };
    Ok(Target {
        model: model.clone(),
        version,
        backend,
        deployment: res.deployment.clone(),
        binding: chosen.features.clone().map(Arc::new),
        inputs: None,
    })
}

/// A platform embedding model from the pool.
async fn embedding(s: &Services, model: &Model) -> Result<Arc<EmbeddingModel>, ServeError> {
    if model.owner != ModelOwner::Platform {
        return Err(ServeError::ModelNotReady(format!(
            "model {:?} is registered but this server only serves platform embedding models so far",
            model.name
        )));
    }
    Ok(s.models().get(&model.name).await?)
}

/// The pool key of a tenant model version.
pub fn pool_key(model: &Model, version: i64) -> String {
    format!("{}@{version}", model.id)
}

/// An ONNX model or linear head, loaded from its artifact on first use (one
/// request per version starts the load), with its base embedding model if
/// it is a head over text.
async fn tensor_backend(
    s: &Services,
    caller: &Caller,
    model: &Model,
    chosen: &ModelVersion,
) -> Result<Backend, ServeError> {
    let head = load_tensor(s, model, chosen).await?;
    let base_name = head
        .base_model
        .clone()
        .or_else(|| model.base_model.clone().filter(|_| model.runtime == "linear"));
    let Some(base_name) = base_name else { return Ok(Backend::Tensor(head)) };
    // The base is resolved as the caller sees it, like any model they name.
    let base = resolve(s, caller, &base_name).await?;
    if base.model().runtime != "bert" {
        return Err(ServeError::Internal(format!(
            "base model {base_name:?} of {:?} is not an embedding model",
            model.name
        )));
    }
    Ok(Backend::Head { head, base: embedding(s, base.model()).await? })
}

/// A tenant model version's ONNX model or linear head from the pool,
/// loaded from its verified artifact on first use (one load per version).
pub async fn load_tensor(
    s: &Services,
    model: &Model,
    chosen: &ModelVersion,
) -> Result<Arc<TensorModel>, ServeError> {
    let key = pool_key(model, chosen.version);
    if s.models().needs_load(&key) {
        let _flight = s.model_loads().enter(key.as_str()).await;
        if s.models().needs_load(&key) {
            let bytes = s.artifacts().get(&chosen.sha256).await?;
            let kind = match model.runtime.as_str() {
                "onnx" => SourceKind::Onnx(bytes),
                "linear" => SourceKind::Linear(bytes),
                other => {
                    return Err(ServeError::invalid(
                        "model",
                        format!(
                            "model {:?} runs on {other}, which this route cannot run",
                            model.name
                        ),
                    ));
                }
            };
            let source = ModelSource {
                name: key.clone(),
                version: chosen.version.to_string(),
                kind,
                pinned: false,
            };
            s.models().load(source, None);
        }
    }
    Ok(s.models().get_tensor(&key).await?)
}
