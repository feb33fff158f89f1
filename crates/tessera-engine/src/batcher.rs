//! Dynamic batching. Each model has one worker thread fed by a bounded queue.
//! The worker takes the oldest request, then keeps adding queued requests to
//! the batch until `max_batch_size` items, the padded-token budget, or the
//! `max_queue_delay` since the first request is reached, whichever comes
//! first (with no delay it takes what queued while the last batch ran, like
//! continuous batching). A full queue is `Overloaded`, answered with 429.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::histogram::Histogram;
use tessera_core::metrics::{latency_histogram, size_histogram};
use tokio::sync::oneshot;

use crate::EngineError;

/// A synchronous model that computes a batch of items at once.
pub trait BatchRuntime: Send + 'static {
    type Item: Send + 'static;
    type Output: Send + 'static;
    /// Padded cost of an item (tokens for text); the budget bounds
    /// `max cost in batch x batch size`.
    fn cost(item: &Self::Item) -> usize;
    fn run(&mut self, items: &[&Self::Item]) -> Result<Vec<Self::Output>, EngineError>;
}

/// Per-model batching settings.
#[derive(Debug, Clone, Copy)]
pub struct BatchConfig {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_queue_delay: Duration,
    /// Requests waiting beyond this are refused with `Overloaded`.
    pub queue_capacity: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch_size: 32,
            max_batch_tokens: 16_384,
            max_queue_delay: Duration::ZERO,
            queue_capacity: 512,
        }
    }
}

struct Job<I, O> {
    items: Vec<I>,
    reply: oneshot::Sender<Result<Vec<O>, EngineError>>,
    enqueued: Instant,
}

/// Queue, compute and batch-size statistics of one model, exported by the
/// pool ([`encode_stats`]) while the model is loaded.
pub struct BatchStats {
    pub depth: AtomicUsize,
    queue: Histogram,
    compute: Histogram,
    batch: Histogram,
}

impl Default for BatchStats {
    fn default() -> Self {
        Self {
            depth: AtomicUsize::new(0),
            queue: latency_histogram(),
            compute: latency_histogram(),
            batch: size_histogram(),
        }
    }
}

/// The label of every engine metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

/// Encodes the engine's metric families, each with one series per model.
pub fn encode_stats(
    encoder: &mut DescriptorEncoder<'_>,
    models: &[(String, Arc<BatchStats>)],
) -> std::fmt::Result {
    let labels = |model: &String| ModelLabels { model: model.clone() };
    tessera_core::metrics::encode_gauges(
        encoder,
        "tessera_engine_queue_depth",
        "Requests waiting in the model's queue.",
        models.iter().map(|(m, s)| (labels(m), s.depth.load(Ordering::Relaxed) as i64)),
    )?;
    let histograms = [
        ("tessera_engine_queue_seconds", "Time requests wait in the queue."),
        ("tessera_engine_compute_seconds", "Time per batch in the runtime."),
        ("tessera_engine_batch_size", "Items per batch."),
    ];
    for (i, (name, help)) in histograms.into_iter().enumerate() {
        let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (model, stats) in models {
            let h = [&stats.queue, &stats.compute, &stats.batch][i];
            h.encode(metric.encode_family(&labels(model))?)?;
        }
    }
    Ok(())
}

/// The async handle of a model's batching worker.
pub struct Batcher<I, O> {
    model: String,
    tx: SyncSender<Job<I, O>>,
    stats: Arc<BatchStats>,
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    /// Starts the worker thread running `runtime`.
    pub fn spawn<R: BatchRuntime<Item = I, Output = O>>(
        model: &str,
        runtime: R,
        cfg: BatchConfig,
    ) -> Result<Self, EngineError> {
        let (tx, rx) = sync_channel(cfg.queue_capacity.max(1));
        let stats = Arc::new(BatchStats::default());
        let worker_stats = stats.clone();
        std::thread::Builder::new()
            .name(format!("infer-{model}"))
            .spawn(move || worker(runtime, rx, cfg, &worker_stats))
            .map_err(|e| EngineError::Runtime(format!("cannot start the inference thread: {e}")))?;
        Ok(Self { model: model.to_owned(), tx, stats })
    }

    pub fn stats(&self) -> &Arc<BatchStats> {
        &self.stats
    }

    /// Queues `items` and waits for their outputs, in order.
    pub async fn submit(&self, items: Vec<I>) -> Result<Vec<O>, EngineError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, rx) = oneshot::channel();
        self.stats.depth.fetch_add(1, Ordering::Relaxed);
        match self.tx.try_send(Job { items, reply, enqueued: Instant::now() }) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(EngineError::Overloaded {
                    model: self.model.clone(),
                    retry_after: Duration::from_secs(1),
                });
            }
            Err(TrySendError::Disconnected(_)) => {
                self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                return Err(EngineError::NotReady {
                    model: self.model.clone(),
                    reason: "the worker stopped".into(),
                });
            }
        }
        rx.await.map_err(|_| {
            EngineError::Runtime(format!("the {} worker dropped a request", self.model))
        })?
    }
}

fn worker<R: BatchRuntime>(
    mut rt: R,
    rx: Receiver<Job<R::Item, R::Output>>,
    cfg: BatchConfig,
    stats: &BatchStats,
) {
    let mut carry: Option<Job<R::Item, R::Output>> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return, // every handle dropped: the model was unloaded
            },
        };
        let deadline = first.enqueued + cfg.max_queue_delay;
        let mut count = first.items.len();
        let mut max_cost = first.items.iter().map(R::cost).max().unwrap_or(0);
        let mut jobs = vec![first];
        while count < cfg.max_batch_size {
            let now = Instant::now();
            let next = if now < deadline {
                rx.recv_timeout(deadline - now).ok()
            } else {
                rx.try_recv().ok()
            };
            let Some(job) = next else { break };
            let job_cost = job.items.iter().map(R::cost).max().unwrap_or(0);
            let new_count = count + job.items.len();
            let new_max = max_cost.max(job_cost);
            if new_count > cfg.max_batch_size || new_max * new_count > cfg.max_batch_tokens {
                carry = Some(job);
                break;
            }
            count = new_count;
            max_cost = new_max;
            jobs.push(job);
        }
        // A carried job was not taken off the count; it stays queued until it runs.
        stats.depth.fetch_sub(jobs.len(), Ordering::Relaxed);
        let started = Instant::now();
        for j in &jobs {
            stats.queue.observe(started.duration_since(j.enqueued).as_secs_f64());
        }
        let result = run_chunked(&mut rt, &jobs, &cfg, stats);
        deliver(jobs, result);
    }
}

/// Runs every item of `jobs` in chunks that respect the batch limits (a single
/// large request is split).
fn run_chunked<R: BatchRuntime>(
    rt: &mut R,
    jobs: &[Job<R::Item, R::Output>],
    cfg: &BatchConfig,
    stats: &BatchStats,
) -> Result<Vec<R::Output>, EngineError> {
    let items: Vec<&R::Item> = jobs.iter().flat_map(|j| j.items.iter()).collect();
    let mut out = Vec::with_capacity(items.len());
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut max_cost = 0;
        while end < items.len() && end - start < cfg.max_batch_size {
            let c = max_cost.max(R::cost(items[end]));
            if end > start && c * (end - start + 1) > cfg.max_batch_tokens {
                break;
            }
            max_cost = c;
            end += 1;
        }
        let t = Instant::now();
        let chunk = rt.run(&items[start..end])?;
        stats.compute.observe(t.elapsed().as_secs_f64());
        stats.batch.observe((end - start) as f64);
        if chunk.len() != end - start {
            return Err(EngineError::Runtime(
                "the runtime returned the wrong number of outputs".into(),
            ));
        }
        out.extend(chunk);
        start = end;
    }
    Ok(out)
}

fn deliver<I, O>(jobs: Vec<Job<I, O>>, result: Result<Vec<O>, EngineError>) {
    match result {
        Ok(outputs) => {
            let mut it = outputs.into_iter();
            for j in jobs {
                let mine: Vec<O> = it.by_ref().take(j.items.len()).collect();
                // A client that went away no longer needs its answer.
                let _ = j.reply.send(Ok(mine));
            }
        }
        Err(e) => {
            for j in jobs {
                let _ = j.reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests own the tasks they spawn")]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Doubles numbers; records the batch sizes it saw; sleeps to let a queue build.
    struct Doubler {
        seen: Arc<Mutex<Vec<usize>>>,
        delay: Duration,
    }

    impl BatchRuntime for Doubler {
        type Item = u32;
        type Output = u32;
        fn cost(item: &u32) -> usize {
            *item as usize
        }
        fn run(&mut self, items: &[&u32]) -> Result<Vec<u32>, EngineError> {
            self.seen.lock().unwrap().push(items.len());
            std::thread::sleep(self.delay);
            Ok(items.iter().map(|x| **x * 2).collect())
        }
    }

    type Seen = Arc<Mutex<Vec<usize>>>;

    fn doubler(delay_ms: u64, cfg: BatchConfig) -> (Arc<Batcher<u32, u32>>, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let b = Batcher::spawn(
            "d",
            Doubler { seen: seen.clone(), delay: Duration::from_millis(delay_ms) },
            cfg,
        )
        .unwrap();
        (Arc::new(b), seen)
    }

    #[tokio::test]
    async fn outputs_come_back_to_their_requests_in_order() {
        let (b, _) = doubler(0, BatchConfig::default());
        let out = b.submit(vec![1, 2, 3]).await.unwrap();
        assert_eq!(out, vec![2, 4, 6]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_within_the_limits() {
        let cfg = BatchConfig { max_batch_size: 8, ..Default::default() };
        let (b, seen) = doubler(20, cfg);
        let tasks: Vec<_> = (0..24u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { (i, b.submit(vec![i + 1]).await.unwrap()) })
            })
            .collect();
        for t in tasks {
            let (i, out) = t.await.unwrap();
            assert_eq!(out, vec![(i + 1) * 2]);
        }
        let seen = seen.lock().unwrap().clone();
        assert!(seen.iter().all(|n| *n <= 8), "{seen:?}");
        assert!(seen.iter().any(|n| *n > 1), "no batching happened: {seen:?}");
        assert_eq!(seen.iter().sum::<usize>(), 24);
    }

    #[tokio::test]
    async fn token_budget_splits_large_requests() {
        let cfg = BatchConfig { max_batch_size: 100, max_batch_tokens: 30, ..Default::default() };
        let (b, seen) = doubler(0, cfg);
        let out = b.submit(vec![10; 7]).await.unwrap();
        assert_eq!(out, vec![20; 7]);
        assert_eq!(seen.lock().unwrap().clone(), vec![3, 3, 1]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_is_overloaded() {
        let cfg = BatchConfig { queue_capacity: 2, max_batch_size: 1, ..Default::default() };
        let (b, _) = doubler(200, cfg);
        let tasks: Vec<_> = (0..8u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(vec![i]).await })
            })
            .collect();
        let mut overloaded = 0;
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(EngineError::Overloaded { retry_after, .. }) => {
                    assert!(retry_after >= Duration::from_secs(1));
                    overloaded += 1;
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert!(overloaded >= 1 && ok >= 1, "ok {ok}, overloaded {overloaded}");
        // Still serving afterwards.
        assert_eq!(b.submit(vec![5]).await.unwrap(), vec![10]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_delay_gathers_a_batch() {
        let cfg = BatchConfig { max_queue_delay: Duration::from_millis(100), ..Default::default() };
        let (b, seen) = doubler(0, cfg);
        let tasks: Vec<_> = (0..4u32)
            .map(|i| {
                let b = b.clone();
                tokio::spawn(async move { b.submit(vec![i]).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(seen.lock().unwrap().clone(), vec![4]);
    }
}
