//! The model pool: named models, loaded in the background (lazily on first use
//! or eagerly at start), each with its own batching worker. A request for a
//! model that is still loading waits up to `load_wait`, then gets
//! `NotReady` (503 with retry-after), never a 400.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use tokio::sync::watch;

use crate::EngineError;
use crate::batcher::{BatchConfig, BatchRuntime, BatchStats, Batcher};
use crate::bert::{BertEncoder, BertModel, TextTokenizer, Tokens};
use crate::linear::LinearHead;
use crate::onnx_model::OnnxModel;
use crate::tensor::{Tensor, TensorSpec, concat_rows, split_rows};
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Estimated memory the pool may hold; least recently used models beyond
    /// it are unloaded (pinned ones never). `None`: unbounded.
    pub memory_budget_bytes: Option<u64>,
    /// Batching overrides by pool key or by model id (the key before `@`).
    pub per_model: HashMap<String, BatchConfig>,
}

impl PoolConfig {
    /// The batching settings of the model loaded under `key`.
    pub fn batch_for(&self, key: &str) -> BatchConfig {
        let id = key.split('@').next().unwrap_or(key);
        self.per_model.get(key).or_else(|| self.per_model.get(id)).copied().unwrap_or(self.batch)
    }
}

/// What to load under a pool key.
#[derive(Debug, Clone)]
pub struct ModelSource {
    /// Pool key: a platform model's name, or `<model id>@<version>`.
    pub name: String,
    /// Shown to clients as the resolved version.
    pub version: String,
    pub kind: SourceKind,
    /// Loaded at start and never evicted.
    pub pinned: bool,
}

#[derive(Debug, Clone)]
pub enum SourceKind {
    /// A BERT-family sentence encoder directory, or a Hugging Face cache entry.
    Bert(PathBuf),
    /// An ONNX file's bytes.
    Onnx(Vec<u8>),
    /// A `tessera.linear.v1` head's bytes.
    Linear(Vec<u8>),
}

/// Named tensors, in and out of a tensor model.
pub type NamedTensors = Vec<(String, Tensor)>;

/// A model that takes and gives named tensors (ONNX files, linear heads).
pub struct TensorModel {
    pub name: String,
    pub version: String,
    pub inputs: Vec<TensorSpec>,
    pub outputs: Vec<TensorSpec>,
    /// For heads over text: the embedding model that turns text into features.
    pub base_model: Option<String>,
    /// Class names of a classification head.
    pub labels: Option<Vec<String>>,
    batcher: Batcher<NamedTensors, Result<NamedTensors, EngineError>>,
}

impl TensorModel {
    /// Runs one request (inputs of equal row counts), batched with others.
    pub async fn infer(
        &self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, EngineError> {
        for spec in &self.inputs {
            let Some((_, t)) = inputs.iter().find(|(n, _)| *n == spec.name) else {
                return Err(EngineError::InvalidInput(format!("missing input {:?}", spec.name)));
            };
            if t.datatype() != spec.datatype {
                return Err(EngineError::InvalidInput(format!(
                    "input {:?} must be {}, got {}",
                    spec.name,
                    spec.datatype,
                    t.datatype()
                )));
            }
            let fits = t.shape.len() == spec.shape.len()
                && t.shape.iter().zip(&spec.shape).all(|(a, b)| *b < 0 || a == b);
            if !fits {
                return Err(EngineError::InvalidInput(format!(
                    "input {:?} must have shape {:?} (-1 = any), got {:?}",
                    spec.name, spec.shape, t.shape
                )));
            }
        }
        if let Some((extra, _)) =
            inputs.iter().find(|(n, _)| !self.inputs.iter().any(|s| s.name == *n))
        {
            return Err(EngineError::InvalidInput(format!("model has no input {extra:?}")));
        }
        let mut out = self.batcher.submit(vec![inputs]).await?;
        out.pop().ok_or_else(|| EngineError::Runtime("no output".into()))?
    }
}

/// The runtimes behind a [`TensorModel`].
pub enum TensorRuntime {
    Onnx(OnnxModel),
    Linear(LinearHead),
}

impl TensorRuntime {
    fn run_one(
        &mut self,
        inputs: Vec<(String, Tensor)>,
    ) -> Result<Vec<(String, Tensor)>, EngineError> {
        match self {
            TensorRuntime::Onnx(m) => m.run(inputs),
            TensorRuntime::Linear(h) => {
                let features =
                    inputs.into_iter().find(|(n, _)| n == "features").ok_or_else(|| {
                        EngineError::InvalidInput("missing input \"features\"".into())
                    })?;
                h.run(&features.1)
            }
        }
    }
}

impl TensorRuntime {
    /// Runs several requests as one (rows concatenated) and splits the outputs.
    fn run_joined(
        &mut self,
        joined: NamedTensors,
        rows: &[usize],
    ) -> Result<Vec<NamedTensors>, EngineError> {
        let outputs = self.run_one(joined)?;
        let mut per_item: Vec<NamedTensors> = vec![Vec::new(); rows.len()];
        for (name, t) in outputs {
            for (slot, piece) in per_item.iter_mut().zip(split_rows(&t, rows)?) {
                slot.push((name.clone(), piece));
            }
        }
        Ok(per_item)
    }
}

impl BatchRuntime for TensorRuntime {
    type Item = NamedTensors;
    /// Each request gets its own result, so one bad request fails alone.
    type Output = Result<NamedTensors, EngineError>;
    fn cost(item: &Self::Item) -> usize {
        item.first().map_or(1, |(_, t)| t.rows())
    }
    /// Requests with the same input names and trailing shapes run as one
    /// batch (rows concatenated). If that fails (a bad value in one request,
    /// or outputs without a batch dimension), each runs on its own.
    fn run(&mut self, items: &[&Self::Item]) -> Result<Vec<Self::Output>, EngineError> {
        if items.len() > 1
            && let Some(joined) = join(items)
        {
            let rows: Vec<usize> = items.iter().map(|i| Self::cost(i)).collect();
            if let Ok(per_item) = self.run_joined(joined, &rows) {
                return Ok(per_item.into_iter().map(Ok).collect());
            }
        }
        Ok(items.iter().map(|i| self.run_one((*i).clone())).collect())
    }
}

fn join(items: &[&Vec<(String, Tensor)>]) -> Option<Vec<(String, Tensor)>> {
    let first = items.first()?;
    let mut out = Vec::with_capacity(first.len());
    for (name, _) in first.iter() {
        let parts: Option<Vec<&Tensor>> =
            items.iter().map(|i| i.iter().find(|(n, _)| n == name).map(|(_, t)| t)).collect();
        out.push((name.clone(), concat_rows(&parts?).ok()?));
    }
    items.iter().all(|i| i.len() == first.len()).then_some(out)
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

/// A loaded model of either kind.
#[derive(Clone)]
pub enum LoadedModel {
    Embedding(Arc<EmbeddingModel>),
    Tensor(Arc<TensorModel>),
}

#[derive(Clone)]
enum SlotState {
    Loading,
    Ready(LoadedModel),
    Failed(String),
}

struct Slot {
    rx: watch::Receiver<SlotState>,
    /// Estimated memory, for the budget.
    bytes: u64,
    pinned: bool,
    /// Milliseconds since the pool started, at the last use.
    last_used: AtomicU64,
    /// When loading began; a failed load is not retried before `RETRY_FAILED_AFTER`.
    started: std::time::Instant,
}

/// A model that failed to load is retried no sooner than this, so a bad
/// artifact cannot make every request pay for a reload.
const RETRY_FAILED_AFTER: Duration = Duration::from_secs(10);

/// Readiness of a model, for health and repository routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelState {
    Loading,
    Ready,
    Failed(String),
}

pub struct ModelPool {
    cfg: PoolConfig,
    slots: RwLock<HashMap<String, Slot>>,
    started: std::time::Instant,
}

impl ModelPool {
    pub fn new(cfg: PoolConfig) -> Arc<ModelPool> {
        Arc::new(ModelPool {
            cfg,
            slots: RwLock::new(HashMap::new()),
            started: std::time::Instant::now(),
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Evicts least-recently-used, unpinned, ready models (other than `keep`)
    /// until the estimated total fits the memory budget.
    fn enforce_budget(&self, keep: &str) {
        let Some(budget) = self.cfg.memory_budget_bytes else { return };
        let Ok(mut slots) = self.slots.write() else { return };
        // Only models used no later than the one just loaded give way to it.
        let keep_used = slots.get(keep).map_or(u64::MAX, |s| s.last_used.load(Ordering::Relaxed));
        loop {
            let total: u64 = slots
                .values()
                .filter(|s| !matches!(*s.rx.borrow(), SlotState::Failed(_)))
                .map(|s| s.bytes)
                .sum();
            if total <= budget {
                return;
            }
            let victim = slots
                .iter()
                .filter(|(k, s)| {
                    !s.pinned
                        && k.as_str() != keep
                        && s.last_used.load(Ordering::Relaxed) <= keep_used
                        && matches!(*s.rx.borrow(), SlotState::Ready(_))
                })
                .min_by_key(|(_, s)| s.last_used.load(Ordering::Relaxed))
                .map(|(k, _)| k.clone());
            match victim {
                Some(k) => {
                    tracing::info!(model = %k, "unloading the least recently used model to stay within the memory budget");
                    slots.remove(&k);
                }
                None => return,
            }
        }
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
        let bytes = estimate_bytes(&source.kind);
        {
            let Ok(mut slots) = self.slots.write() else { return };
            if let Some(existing) = slots.get(&source.name) {
                let failed = matches!(*existing.rx.borrow(), SlotState::Failed(_));
                if !failed || existing.started.elapsed() < RETRY_FAILED_AFTER {
                    return;
                }
            }
            let slot = Slot {
                rx,
                bytes,
                pinned: source.pinned,
                last_used: AtomicU64::new(self.now_ms()),
                started: std::time::Instant::now(),
            };
            slots.insert(source.name.clone(), slot);
        }
        let cfg = self.cfg.clone();
        let pool = Arc::downgrade(self);
        let name = source.name.clone();
        let spawned = std::thread::Builder::new().name(format!("load-{}", source.name)).spawn(move || {
            // A panic while loading becomes a failed load, not a model stuck loading.
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                prepare.map_or(Ok(()), |p| p()).and_then(|()| load_source(&cfg, &source))
            }))
            .unwrap_or_else(|_| Err(EngineError::Runtime("the model loader panicked".into())));
            let state = match result {
                Ok(m) => {
                    tracing::info!(model = %source.name, version = %source.version, "model ready");
                    SlotState::Ready(m)
                }
                Err(e) => {
                    tracing::error!(model = %source.name, error = %e, "model failed to load");
                    SlotState::Failed(e.to_string())
                }
            };
            // Make room before announcing the model, so a caller that waited
            // for it sees the pool already within budget.
            if matches!(state, SlotState::Ready(_))
                && let Some(pool) = pool.upgrade()
            {
                pool.enforce_budget(&source.name);
            }
            // Nobody may be waiting any more; the state is kept either way.
            let _ = tx.send(state);
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start a model loading thread");
            if let Ok(mut slots) = self.slots.write() {
                slots.remove(&name);
            }
        }
    }

    /// Whether `name` needs (re)loading: never loaded, unloaded, or failed
    /// long enough ago to try again.
    pub fn needs_load(&self, name: &str) -> bool {
        let Ok(slots) = self.slots.read() else { return true };
        match slots.get(name) {
            None => true,
            Some(slot) => {
                matches!(*slot.rx.borrow(), SlotState::Failed(_))
                    && slot.started.elapsed() >= RETRY_FAILED_AFTER
            }
        }
    }

    /// The state of `name`, or `None` if the pool has never seen it.
    pub fn state(&self, name: &str) -> Option<ModelState> {
        let slots = self.slots.read().ok()?;
        let state = slots.get(name)?.rx.borrow().clone();
        Some(match state {
            SlotState::Loading => ModelState::Loading,
            SlotState::Ready(_) => ModelState::Ready,
            SlotState::Failed(r) => ModelState::Failed(r),
        })
    }

    /// The version of `name` if it is loaded and ready, without waiting.
    pub fn ready_version(&self, name: &str) -> Option<String> {
        let slots = self.slots.read().ok()?;
        let state = slots.get(name)?.rx.borrow().clone();
        match state {
            SlotState::Ready(LoadedModel::Embedding(m)) => Some(m.version.clone()),
            SlotState::Ready(LoadedModel::Tensor(m)) => Some(m.version.clone()),
            SlotState::Loading | SlotState::Failed(_) => None,
        }
    }

    /// The loaded embedding model `name`, waiting up to `load_wait` while it loads.
    pub async fn get(&self, name: &str) -> Result<Arc<EmbeddingModel>, EngineError> {
        match self.get_any(name).await? {
            LoadedModel::Embedding(m) => Ok(m),
            LoadedModel::Tensor(_) => Err(EngineError::InvalidInput(format!(
                "model {name} is not a text embedding model"
            ))),
        }
    }

    /// The loaded tensor model `name`, waiting up to `load_wait` while it loads.
    pub async fn get_tensor(&self, name: &str) -> Result<Arc<TensorModel>, EngineError> {
        match self.get_any(name).await? {
            LoadedModel::Tensor(m) => Ok(m),
            LoadedModel::Embedding(_) => {
                Err(EngineError::InvalidInput(format!("model {name} takes text, not tensors")))
            }
        }
    }

    /// Sum of the estimated sizes of the models in the pool.
    pub fn loaded_bytes(&self) -> u64 {
        self.slots.read().map(|s| s.values().map(|v| v.bytes).sum()).unwrap_or(0)
    }

    async fn get_any(&self, name: &str) -> Result<LoadedModel, EngineError> {
        let rx = self.slots.read().ok().and_then(|s| {
            let slot = s.get(name)?;
            slot.last_used.store(self.now_ms(), Ordering::Relaxed);
            Some(slot.rx.clone())
        });
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

    /// The batching statistics of every ready model.
    fn ready_stats(&self) -> Vec<(String, Arc<BatchStats>)> {
        let Ok(slots) = self.slots.read() else { return Vec::new() };
        slots
            .iter()
            .filter_map(|(name, slot)| match &*slot.rx.borrow() {
                SlotState::Ready(LoadedModel::Embedding(m)) => {
                    Some((name.clone(), m.stats().clone()))
                }
                SlotState::Ready(LoadedModel::Tensor(m)) => {
                    Some((name.clone(), m.batcher.stats().clone()))
                }
                _ => None,
            })
            .collect()
    }
}

impl std::fmt::Debug for ModelPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelPool").finish_non_exhaustive()
    }
}

/// Every ready model's engine metrics, read at scrape.
impl Collector for ModelPool {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        crate::batcher::encode_stats(&mut encoder, &self.ready_stats())
    }
}

/// A rough memory estimate of a model: its weights plus runtime overhead.
fn estimate_bytes(kind: &SourceKind) -> u64 {
    match kind {
        SourceKind::Bert(dir) => {
            std::fs::metadata(dir.join("model.safetensors")).map_or(0, |m| m.len()) * 2
        }
        SourceKind::Onnx(b) => b.len() as u64 * 2,
        SourceKind::Linear(b) => b.len() as u64,
    }
}

fn load_source(cfg: &PoolConfig, source: &ModelSource) -> Result<LoadedModel, EngineError> {
    let env = || crate::ort_env::init(&crate::ort_env::library_path(&cfg.cache_dir));
    match &source.kind {
        SourceKind::Bert(dir) => {
            let dir = crate::fetch::resolve_model_dir(dir)?;
            let model =
                BertModel::load(env()?, &dir, &cfg.cache_dir.join("onnx"), cfg.intra_threads)?;
            let dim = model.encoder.dim;
            let batcher = Batcher::spawn(&source.name, model.encoder, cfg.batch_for(&source.name))?;
            Ok(LoadedModel::Embedding(Arc::new(EmbeddingModel {
                name: source.name.clone(),
                version: source.version.clone(),
                dim,
                tokenizer: Arc::new(model.tokenizer),
                batcher,
            })))
        }
        SourceKind::Onnx(bytes) => {
            let m = OnnxModel::load(env()?, bytes, cfg.intra_threads)?;
            let (inputs, outputs) = (m.inputs.clone(), m.outputs.clone());
            let batcher =
                Batcher::spawn(&source.name, TensorRuntime::Onnx(m), cfg.batch_for(&source.name))?;
            Ok(LoadedModel::Tensor(Arc::new(TensorModel {
                name: source.name.clone(),
                version: source.version.clone(),
                inputs,
                outputs,
                base_model: None,
                labels: None,
                batcher,
            })))
        }
        SourceKind::Linear(bytes) => {
            let h = LinearHead::parse(bytes)?;
            let (inputs, outputs) = (vec![h.input_spec()], h.output_specs());
            let (base_model, labels) = (h.base_model.clone(), h.labels.clone());
            let batcher = Batcher::spawn(
                &source.name,
                TensorRuntime::Linear(h),
                cfg.batch_for(&source.name),
            )?;
            Ok(LoadedModel::Tensor(Arc::new(TensorModel {
                name: source.name.clone(),
                version: source.version.clone(),
                inputs,
                outputs,
                base_model,
                labels,
                batcher,
            })))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> Arc<ModelPool> {
        ModelPool::new(PoolConfig {
            cache_dir: std::env::temp_dir(),
            batch: BatchConfig::default(),
            load_wait: Duration::from_secs(5),
            intra_threads: 1,
            memory_budget_bytes: None,
            per_model: HashMap::new(),
        })
    }

    fn head(bias: f32) -> Vec<u8> {
        format!(r#"{{"format": "tessera.linear.v1", "task": "regression", "weights": [[1.0]], "bias": [{bias}]}}"#).into_bytes()
    }

    fn source(name: &str, bytes: Vec<u8>) -> ModelSource {
        ModelSource {
            name: name.into(),
            version: "1".into(),
            kind: SourceKind::Linear(bytes),
            pinned: false,
        }
    }

    #[tokio::test]
    async fn loads_serve_and_failures_back_off() {
        let p = pool();
        assert!(p.needs_load("h"));
        p.load(source("h", head(1.0)), None);
        let m = p.get_tensor("h").await.unwrap();
        let out = m
            .infer(vec![("features".into(), Tensor::f32(vec![1, 1], vec![2.0]).unwrap())])
            .await
            .unwrap();
        assert_eq!(out[0].1, Tensor::f32(vec![1, 1], vec![3.0]).unwrap());
        assert!(!p.needs_load("h"));

        p.load(source("bad", b"{not json".to_vec()), None);
        let err = p.get_tensor("bad").await.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("not ready") && err.contains("tessera.linear.v1"), "{err}");
        // A fresh failure is not retried at once.
        assert!(!p.needs_load("bad"));
        assert_eq!(p.state("bad").map(|s| matches!(s, ModelState::Failed(_))), Some(true));
    }

    #[tokio::test]
    async fn ready_models_export_their_engine_metrics() {
        let p = pool();
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(p.clone()));
        p.load(source("h", head(1.0)), None);
        p.load(source("bad", b"{not json".to_vec()), None);
        let m = p.get_tensor("h").await.unwrap();
        m.infer(vec![("features".into(), Tensor::f32(vec![1, 1], vec![2.0]).unwrap())])
            .await
            .unwrap();
        assert!(p.get_tensor("bad").await.is_err());
        let text = tessera_core::metrics::encode(&r).unwrap();
        for line in [
            "# TYPE tessera_engine_queue_depth gauge\ntessera_engine_queue_depth{model=\"h\"} 0\n",
            "# TYPE tessera_engine_compute_seconds histogram\n",
            "tessera_engine_queue_seconds_count{model=\"h\"} 1\n",
            "tessera_engine_batch_size_bucket{le=\"1.0\",model=\"h\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert!(!text.contains("bad"), "a failed model has no series: {text}");
    }

    #[tokio::test]
    async fn budget_unloads_the_least_recently_used_unpinned_model() {
        let mut cfg = pool().cfg.clone();
        cfg.memory_budget_bytes = Some(150);
        let p = ModelPool::new(cfg);
        let pinned = ModelSource { pinned: true, ..source("pinned", head(0.0)) };
        p.load(pinned, None);
        p.get_tensor("pinned").await.unwrap();
        p.load(source("a", head(1.0)), None);
        p.get_tensor("a").await.unwrap();
        p.load(source("b", head(2.0)), None);
        p.get_tensor("b").await.unwrap();
        // The budget fits about two heads: a (older) goes, the pinned one stays.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(p.state("a").is_none(), "a should be unloaded");
        assert!(p.state("pinned").is_some() && p.state("b").is_some());
    }
}
