//! Calls on local backends under their circuit breakers, shared by every
//! protocol: embed texts, run a tensor model, run a head over its base's
//! embeddings of texts.

use tessera_engine::pool::{EmbeddingModel, Embeddings, TensorModel};
use tessera_engine::tensor::Tensor;

use super::ServeError;
use std::time::Instant;

use tessera_core::breaker::Breakers;
use tessera_engine::EngineError;

/// The input a head over text embeddings reads.
const HEAD_INPUT: &str = "features";

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

/// Runs a backend call under `backend`'s breaker: refused with 503
/// `upstream_unavailable` (naming the backend, with `retry-after`) while the
/// breaker is open; runtime failures count against it, client errors do not.
pub async fn guarded<T>(
    breakers: &Breakers,
    backend: &str,
    call: impl std::future::Future<Output = Result<T, EngineError>>,
) -> Result<T, ServeError> {
    let b = breakers.get(backend);
    b.admit(Instant::now()).map_err(|r| ServeError::BreakerOpen {
        backend: backend.to_owned(),
        retry_after_secs: r.retry_after.as_secs().max(1),
    })?;
    let result = call.await;
    let failed = matches!(&result, Err(EngineError::Runtime(_)));
    b.record(Instant::now(), !failed);
    result.map_err(Into::into)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_core::breaker::{BreakerConfig, BreakerState};

    #[tokio::test]
    async fn runtime_failures_open_the_breaker_and_client_errors_do_not() {
        let breakers =
            Breakers::new(BreakerConfig { consecutive_failures: 2, ..BreakerConfig::default() });
        for _ in 0..5 {
            let r: Result<(), _> =
                guarded(&breakers, "m@1", async { Err(EngineError::InvalidInput("bad".into())) })
                    .await;
            assert!(matches!(r, Err(ServeError::Invalid { .. })));
        }
        assert_eq!(breakers.views()[0].state, BreakerState::Closed);
        for _ in 0..2 {
            let _ = guarded::<()>(&breakers, "m@1", async {
                Err(EngineError::Runtime("crashed".into()))
            })
            .await;
        }
        let r = guarded(&breakers, "m@1", async { Ok::<_, EngineError>(1) }).await;
        match r {
            Err(ServeError::BreakerOpen { backend, retry_after_secs }) => {
                assert_eq!(backend, "m@1");
                assert!(retry_after_secs >= 1);
            }
            other => panic!("expected an open breaker, got {other:?}"),
        }
        // Another backend is unaffected.
        assert_eq!(
            guarded(&breakers, "m@2", async { Ok::<_, EngineError>(7) }).await.ok(),
            Some(7)
        );
    }
}
