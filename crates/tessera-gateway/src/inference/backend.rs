//! Calls on local backends under their circuit breakers, shared by every
//! protocol: embed texts, run a tensor model, run a head over its base's
//! embeddings of texts.

use tessera_engine::pool::{EmbeddingModel, Embeddings, TensorModel};
use tessera_engine::tensor::Tensor;

use super::ServeError;
use super::resolve::Backend;
use crate::breaker::{Breakers, guarded};

/// The input a head over text embeddings reads.
const HEAD_INPUT: &str = "features";

impl Backend {
    /// The breaker's name for this backend: `<name>@<version>` for an
    /// embedding model, the pool key for a tensor model or head, and
    /// `<name>@<version> (<model id>)` for a remote version.
    pub fn breaker_id(&self) -> String {
        match self {
            Backend::Embedding(m) => format!("{}@{}", m.name, m.version),
            Backend::Tensor(m) | Backend::Head { head: m, .. } => m.name.clone(),
            Backend::Remote(r) => r.backend.clone(),
        }
    }
}

/// Embeds `texts` with a local embedding model.
pub async fn embed(
    breakers: &Breakers,
    model: &EmbeddingModel,
    texts: Vec<String>,
) -> Result<Embeddings, ServeError> {
    let id = format!("{}@{}", model.name, model.version);
    guarded(breakers, &id, model.embed(texts)).await
}

/// Runs a tensor model on named inputs.
pub async fn infer(
    breakers: &Breakers,
    model: &TensorModel,
    inputs: Vec<(String, Tensor)>,
) -> Result<Vec<(String, Tensor)>, ServeError> {
    guarded(breakers, &model.name, model.infer(inputs)).await
}

/// Runs a head on its base model's embeddings of `texts`.
pub async fn infer_texts(
    breakers: &Breakers,
    head: &TensorModel,
    base: &EmbeddingModel,
    texts: Vec<String>,
) -> Result<Vec<(String, Tensor)>, ServeError> {
    let n = texts.len();
    let out = embed(breakers, base, texts).await?;
    let features =
        Tensor::f32(vec![n as i64, base.dim as i64], out.vectors.into_iter().flatten().collect())?;
    infer(breakers, head, vec![(HEAD_INPUT.to_owned(), features)]).await
}
