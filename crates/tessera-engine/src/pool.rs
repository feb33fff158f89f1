//! The model pool: named models, loaded in the background (lazily on first use
//! or eagerly at start), each with its own batching worker. A request for a
//! model that is still loading waits up to `load_wait`, then gets
//! `NotReady` (503 with retry-after), never a 400.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::EngineError;
use crate::batcher::{BatchConfig, BatchRuntime, BatchStats, Batcher};
use crate::bert::{BertEncoder, BertModel, TextTokenizer, Tokens};

/// How the pool finds and runs models.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// The model cache (default model files, ONNX Runtime, exported graphs).
    pub cache_dir: PathBuf,
    pub batch: BatchConfig,
    /// How long a request waits for a loading model.
    pub load_wait: Duration,
    /// Intra-op threads per inference worker (1 is fastest on 2 cores).
    pub intra_threads: usize,
}

/// Where a model's files are.
#[derive(Debug, Clone)]
pub struct ModelSource {
    pub name: String,
    /// Shown to clients as the resolved version.
    pub version: String,
    pub dir: PathBuf,
}

impl BatchRuntime for BertEncoder {
    type Item = Tokens;
    type Output = Vec<f32>;
    fn cost(item: &Tokens) -> usize {
        item.ids.len()
    }
    fn run(&mut self, items: &[&Tokens]) -> Result<Vec<Vec<f32>>, EngineError> {
        self.embed(items)
    }
}

/// A loaded sentence-embedding model.
pub struct EmbeddingModel {
    pub name: String,
    pub version: String,
    pub dim: usize,
    tokenizer: Arc<TextTokenizer>,
    batcher: Batcher<Tokens, Vec<f32>>,
}

/// The answer to an embedding request.
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    pub tokens: usize,
    /// Time spent in the model's queue and compute.
    pub model_time: Duration,
}

/// Texts above this many bytes in total are tokenized off the async executor.
const INLINE_TOKENIZE_BYTES: usize = 4096;

impl EmbeddingModel {
    pub async fn embed(&self, texts: Vec<String>) -> Result<Embeddings, EngineError> {
        let total: usize = texts.iter().map(String::len).sum();
        let tokens = if total <= INLINE_TOKENIZE_BYTES {
            texts.iter().map(|t| self.tokenizer.tokenize(t)).collect::<Result<Vec<_>, _>>()?
        } else {
            let tok = self.tokenizer.clone();
            tokio::task::spawn_blocking(move || {
                texts.iter().map(|t| tok.tokenize(t)).collect::<Result<Vec<_>, _>>()
            })
            .await
            .map_err(|e| EngineError::Runtime(format!("tokenizer task failed: {e}")))??
        };
        let count = tokens.iter().map(|t| t.ids.len()).sum();
        let start = std::time::Instant::now();
        let vectors = self.batcher.submit(tokens).await?;
        Ok(Embeddings { vectors, tokens: count, model_time: start.elapsed() })
    }

    pub fn stats(&self) -> &Arc<BatchStats> {
        self.batcher.stats()
    }
}

#[derive(Clone)]
enum SlotState {
    Loading,
    Ready(Arc<EmbeddingModel>),
    Failed(String),
}

/// Readiness of a model, for health and repository routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready,
    Failed(String),
}

pub struct ModelPool {
    cfg: PoolConfig,
    slots: RwLock<HashMap<String, watch::Receiver<SlotState>>>,
}

impl ModelPool {
    pub fn new(cfg: PoolConfig) -> Arc<ModelPool> {
        Arc::new(ModelPool { cfg, slots: RwLock::new(HashMap::new()) })
    }

    pub fn config(&self) -> &PoolConfig {
        &self.cfg
    }

    /// Starts loading `source` in the background unless it is loaded or
    /// loading; a failed load is retried. `prepare` runs first on the loading
    /// thread (e.g. fetching missing files).
    pub fn load(
        self: &Arc<Self>,
        source: ModelSource,
        prepare: Option<Box<dyn FnOnce() -> Result<(), EngineError> + Send>>,
    ) {
        let (tx, rx) = watch::channel(SlotState::Loading);
        {
            let Ok(mut slots) = self.slots.write() else { return };
            if let Some(existing) = slots.get(&source.name)
                && !matches!(*existing.borrow(), SlotState::Failed(_))
            {
                return;
            }
            slots.insert(source.name.clone(), rx);
        }
        let cfg = self.cfg.clone();
        let spawned = std::thread::Builder::new().name(format!("load-{}", source.name)).spawn(move || {
            let result = prepare.map_or(Ok(()), |p| p()).and_then(|()| load_embedding(&cfg, &source));
            let state = match result {
                Ok(m) => {
                    tracing::info!(model = %m.name, version = %m.version, dim = m.dim, "model ready");
                    SlotState::Ready(Arc::new(m))
                }
                Err(e) => {
                    tracing::error!(model = %source.name, error = %e, "model failed to load");
                    SlotState::Failed(e.to_string())
                }
            };
            let _ = tx.send(state);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a model loading thread");
        }
    }

    /// The state of `name`, or `None` if the pool has never seen it.
    pub fn state(&self, name: &str) -> Option<ModelState> {
        let slots = self.slots.read().ok()?;
        let state = slots.get(name)?.borrow().clone();
        Some(match state {
            SlotState::Loading => ModelState::Loading,
            SlotState::Ready(_) => ModelState::Ready,
            SlotState::Failed(r) => ModelState::Failed(r),
        })
    }

    /// The loaded model `name`, waiting up to `load_wait` while it loads.
    pub async fn get(&self, name: &str) -> Result<Arc<EmbeddingModel>, EngineError> {
        let rx = self.slots.read().ok().and_then(|s| s.get(name).cloned());
        let Some(mut rx) = rx else {
            return Err(EngineError::NotReady {
                model: name.to_owned(),
                reason: "the model is not loaded".into(),
            });
        };
        let wait = tokio::time::timeout(
            self.cfg.load_wait,
            rx.wait_for(|s| !matches!(s, SlotState::Loading)),
        )
        .await;
        let state = match wait {
            Ok(Ok(s)) => s.clone(),
            Ok(Err(_)) => SlotState::Failed("the loader stopped".into()),
            Err(_) => SlotState::Loading,
        };
        match state {
            SlotState::Ready(m) => Ok(m),
            SlotState::Loading => Err(EngineError::NotReady {
                model: name.to_owned(),
                reason: "the model is still loading".into(),
            }),
            SlotState::Failed(reason) => {
                Err(EngineError::NotReady { model: name.to_owned(), reason })
            }
        }
    }

    /// Appends every ready model's engine metrics.
    pub fn render_metrics(&self, out: &mut String) {
        let Ok(slots) = self.slots.read() else { return };
        for (name, rx) in slots.iter() {
            if let SlotState::Ready(m) = &*rx.borrow() {
                m.stats().render(out, name);
            }
        }
    }
}

fn load_embedding(cfg: &PoolConfig, source: &ModelSource) -> Result<EmbeddingModel, EngineError> {
    let env = crate::ort_env::init(&crate::ort_env::library_path(&cfg.cache_dir))?;
    let model = BertModel::load(env, &source.dir, &cfg.cache_dir.join("onnx"), cfg.intra_threads)?;
    let dim = model.encoder.dim;
    let batcher = Batcher::spawn(&source.name, model.encoder, cfg.batch)?;
    Ok(EmbeddingModel {
        name: source.name.clone(),
        version: source.version.clone(),
        dim,
        tokenizer: Arc::new(model.tokenizer),
        batcher,
    })
}
