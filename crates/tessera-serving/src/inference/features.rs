//! A request that names an entity instead of sending its inputs: the
//! version's bound features are read from the online store (the tenant's
//! catalog, read through) and become its input, for the primary, each
//! fallback and each shadow alike, since each version has its own binding.

use std::sync::Arc;

use tessera_core::time::Timestamp;
use tessera_features::OnlineError;
use tessera_features::model_input::{InputError, vectors};

use super::resolve::{Caller, Target};
use super::{Job, ServeError};
use crate::Services;

/// Fills `t.inputs` when the job names an entity; a version that reads no
/// features cannot take one.
pub(super) async fn read_inputs<J: Job>(
    s: &Services,
    caller: &Caller,
    job: &J,
    t: &mut Target,
) -> Result<(), ServeError> {
    let Some(entity) = job.entity() else { return Ok(()) };
    let Some(binding) = t.binding.clone() else {
        return Err(ServeError::invalid(
            "entity",
            format!(
                "model version {} reads no features; send its inputs instead of an entity",
                t.version
            ),
        ));
    };
    let catalog = s.feature_catalogs().get(s.store(), &caller.ctx).await?;
    let tenant = caller.ctx.tenant_id();
    let v = vectors(&catalog, s.online(), tenant, &binding, entity, Timestamp::now())
        .await
        .map_err(|e| match e {
            InputError::Invalid(v) => v.into(),
            InputError::Missing { message, param } => {
                ServeError::FeaturesMissing { message, param }
            }
            InputError::Store(OnlineError::Unavailable(m)) => ServeError::Unavailable(m),
            InputError::Store(OnlineError::Internal(m)) => ServeError::Internal(m),
        })?;
    t.inputs = Some(Arc::new(v));
    Ok(())
}

/// The feature rows as the tensor a model with one input takes; a model
/// whose input width differs from the features' is named with both.
pub fn feature_tensor(
    model: &str,
    spec: &tessera_engine::tensor::TensorSpec,
    v: &tessera_features::model_input::Vectors,
) -> Result<tessera_engine::tensor::Tensor, ServeError> {
    use tessera_engine::tensor::Tensor;
    let mismatch =
        |what: String| ServeError::FeaturesMissing { message: what, param: "features".into() };
    if let Some(&w) = spec.shape.get(1)
        && w > 0
        && w as usize != v.width
    {
        return Err(mismatch(format!(
            "model {model:?} takes {w} values per row; its features give {}",
            v.width
        )));
    }
    let shape = vec![v.rows as i64, v.width as i64];
    Ok(match spec.datatype.as_str() {
        "FP32" => Tensor::f32(shape, v.values.clone())?,
        other => {
            return Err(mismatch(format!(
                "model {model:?} takes {other} input {:?}; features are fed as FP32",
                spec.name
            )));
        }
    })
}
