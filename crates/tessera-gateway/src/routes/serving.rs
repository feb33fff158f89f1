//! Running a parsed request on a served model, under its deployment: the
//! timeout, the fallback chain when the model is down, and shadow copies
//! mirrored in the background.

use std::sync::Arc;
use std::time::Duration;

use tessera_core::role::Operation;
use tessera_engine::tensor::Tensor;
use tessera_store::ModelView;

use super::embeddings::authorize_model;
use super::oip::{
    InferRequest, OUTPUT, Served, ServedBackend, serve_any, tensor_input, text_input,
};
use crate::auth::Authed;
use crate::breaker::guarded;
use crate::error::ApiError;
use crate::state::AppState;

/// Runs a parsed inference request on one served model.
pub(super) async fn compute(
    s: &AppState,
    served: &Served,
    req: &InferRequest,
    binary: &[u8],
    name: &str,
) -> Result<Vec<(String, Tensor)>, ApiError> {
    let mut binary = binary;
    let one_text = |binary: &mut &[u8]| -> Result<Vec<String>, ApiError> {
        let [input] = req.inputs.as_slice() else {
            return Err(ApiError::invalid(
                "inputs",
                format!("model {name:?} takes exactly one BYTES input, got {}", req.inputs.len()),
            ));
        };
        text_input(input, binary)
    };
    let outputs: Vec<(String, Tensor)> = match &served.backend {
        ServedBackend::Text(engine) => {
            let texts = one_text(&mut binary)?;
            let n = texts.len();
            let out = guarded(
                s.breakers(),
                &format!("{}@{}", engine.name, engine.version),
                engine.embed(texts),
            )
            .await?;
            let flat: Vec<f32> = out.vectors.into_iter().flatten().collect();
            vec![(OUTPUT.to_owned(), Tensor::f32(vec![n as i64, engine.dim as i64], flat)?)]
        }
        ServedBackend::Tensor { model, base: Some(base) } => {
            let texts = one_text(&mut binary)?;
            let n = texts.len();
            let out = guarded(
                s.breakers(),
                &format!("{}@{}", base.name, base.version),
                base.embed(texts),
            )
            .await?;
            let features = Tensor::f32(
                vec![n as i64, base.dim as i64],
                out.vectors.into_iter().flatten().collect(),
            )?;
            guarded(s.breakers(), &model.name, model.infer(vec![("features".to_owned(), features)]))
                .await?
        }
        ServedBackend::Tensor { model, base: None } => {
            let inputs = req
                .inputs
                .iter()
                .map(|i| Ok((i.name.clone(), tensor_input(i, &mut binary)?)))
                .collect::<Result<Vec<_>, ApiError>>()?;
            guarded(s.breakers(), &model.name, model.infer(inputs)).await?
        }
    };
    Ok(outputs)
}

/// Failures a fallback model may answer instead: the backend is down,
/// overloaded, not loaded, or too slow. A client's bad request is not one.
pub(super) fn fallbackable(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::BreakerOpen { .. }
            | ApiError::ModelNotReady(_)
            | ApiError::Overloaded { .. }
            | ApiError::Unavailable(_)
            | ApiError::UpstreamUnavailable(_)
            | ApiError::UpstreamFailed { .. }
            | ApiError::UpstreamTimeout { .. }
            | ApiError::UpstreamRateLimited { .. }
            | ApiError::Internal(_)
    )
}

/// The deployment of `name` for the caller, when the model itself cannot be served.
pub(super) async fn deployment_for(
    s: &AppState,
    auth: &Authed,
    name: &str,
) -> Option<Arc<tessera_core::model::Deployment>> {
    let ctx = auth.tenant(Operation::Inference).ok()?;
    let model = authorize_model(s, &ctx, &auth.principal, name).await.ok()?.model.clone();
    let info = s.tenants().get(s.store(), &ctx).await.ok()?;
    let view = ModelView::Tenant { ctx: &ctx, segment: info.tenant.segment.as_deref() };
    s.deployment(view, &model).await.ok().flatten()
}

/// Runs `call` within `timeout` (when set); running over is a 503 naming `name`.
pub(super) async fn within<T>(
    timeout: Option<Duration>,
    name: &str,
    call: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    match timeout {
        Some(t) => tokio::time::timeout(t, call).await.map_err(|_| {
            ApiError::UpstreamUnavailable(format!(
                "model {name} took longer than {} ms",
                t.as_millis()
            ))
        })?,
        None => call.await,
    }
}

/// `compute` within the deployment's timeout.
pub(super) async fn attempt(
    s: &AppState,
    served: &Served,
    req: &InferRequest,
    binary: &[u8],
    name: &str,
    timeout: Option<Duration>,
) -> Result<Vec<(String, Tensor)>, ApiError> {
    within(timeout, name, compute(s, served, req, binary, name)).await
}

/// Mirrors a request to the deployment's shadow versions, in the background:
/// the answers are discarded and only counted, and the primary never waits.
pub(super) fn mirror(
    s: &AppState,
    auth: &Authed,
    served: &Served,
    req: &InferRequest,
    binary: &[u8],
    name: &str,
    user: &str,
) {
    let (req, binary, n) = (Arc::new(req.clone()), Arc::new(binary.to_vec()), name.to_owned());
    mirror_with(s, auth, served, name, user, move |s, shadow| {
        let (req, binary, n) = (req.clone(), binary.clone(), n.clone());
        async move { compute(&s, &shadow, &req, &binary, &n).await.map(|_| ()) }
    });
}

/// Runs `job` on each of the deployment's shadow versions of `served` that
/// this request is mirrored to, in the background and bounded by the shadow
/// slots (beyond them a shadow is dropped and counted); records each one's
/// latency and outcome. The primary never waits for them.
pub(super) fn mirror_with<F, Fut>(
    s: &AppState,
    auth: &Authed,
    served: &Served,
    name: &str,
    user: &str,
    job: F,
) where
    F: Fn(AppState, Served) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<(), ApiError>> + Send,
{
    let Some(d) = &served.deployment else { return };
    for version in d.shadows_for(&served.model.id, user) {
        let Ok(permit) = s.shadow_slots().try_acquire_owned() else {
            s.metrics().shadow("dropped");
            continue;
        };
        let (s, auth, name, user, job) =
            (s.clone(), auth.clone(), name.to_owned(), user.to_owned(), job.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let start = std::time::Instant::now();
            let outcome = match serve_any(&s, &auth, &name, Some(&version.to_string()), &user).await
            {
                Ok(shadow) => job(s.clone(), shadow).await,
                Err(e) => Err(e),
            };
            let elapsed = start.elapsed();
            s.metrics().shadow_done(if outcome.is_ok() { "ok" } else { "error" }, elapsed);
            tracing::info!(target: "tessera::shadow", model = %name, version,
                shadow_ms = elapsed.as_secs_f64() * 1e3, ok = outcome.is_ok(), "shadow answered");
        });
    }
}
