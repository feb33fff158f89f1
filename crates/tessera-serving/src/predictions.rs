//! Prediction records (F4; read by feedback L5 and drift O3): one
//! `prediction` event per inference on the tenant's `predictions` topic,
//! written off the request path. Records pass through a bounded queue to one
//! writer task that appends them in batches, grouped by tenant; a full queue
//! drops the record and counts it, so a request never waits on the log. A
//! failed append is retried with the same batch (the prediction id is the
//! event id, so a retry that did land is stored once). A clean shutdown
//! writes what is queued.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value, json};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use tessera_events::{EventLog, NewEvent, Topic};
use tokio::sync::{mpsc, watch};

/// Records waiting for the writer before the queue refuses more.
const QUEUE: usize = 20_000;
/// Most records appended at once.
const BATCH: usize = 1_000;
/// How long the writer lets a batch fill once it has a record, asleep: it
/// then takes what came. Waking it per record (a task wake, often a thread
/// unpark) and appending what one wake found (a commit: an fsync, a handful
/// of statements, thread hand-offs) cost more CPU than the rest of a cache
/// hit. Records are durable this much later.
const LINGER: Duration = Duration::from_millis(100);

/// What one inference leaves behind.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub id: String,
    pub model: String,
    pub version: String,
    pub tier: String,
    /// The route, as the cache names it (`embeddings`, `chat`, ...).
    pub route: &'static str,
    /// The caller's `user`, when it named one (so a subject's deletion finds it).
    pub user: Option<String>,
    /// The entity a request named for a model that reads features: its join
    /// keys, one value each (or a column of values for several rows).
    pub entity: Option<Map<String, Value>>,
    /// SHA-256 of the input as the route sees it, hex.
    pub input_digest: String,
    /// The input text, kept only when the tenant opted in (`store_inputs`).
    pub input: Option<String>,
    /// The answer in bounded form: label and score, top-k, vector dimensions.
    pub output: Value,
    pub latency: Duration,
    pub model_time: Duration,
    /// `hit`, `miss`, `stale`, `bypass`.
    pub cache: &'static str,
    /// When it answered.
    pub at: Timestamp,
}

impl Prediction {
    /// The event, built by the writer (off the request path), once per attempt.
    fn to_event(&self) -> NewEvent {
        let mut entity = BTreeMap::from([("prediction_id".to_owned(), self.id.clone())]);
        if let Some(u) = &self.user {
            entity.insert("user".into(), u.clone());
        }
        let mut properties = Map::new();
        // A single entity's join keys key the record too (feedback and a
        // subject's export find it by them); a batch's stay in the body.
        if let Some(e) = &self.entity {
            for (k, v) in e {
                let text = match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                };
                if let Some(t) = text {
                    entity.entry(k.clone()).or_insert(t);
                }
            }
            properties.insert("entity".into(), Value::Object(e.clone()));
        }
        properties.insert("model".into(), json!(self.model));
        properties.insert("version".into(), json!(self.version));
        properties.insert("tier".into(), json!(self.tier));
        properties.insert("route".into(), json!(self.route));
        properties.insert("input_digest".into(), json!(self.input_digest));
        if let Some(i) = &self.input {
            properties.insert("input".into(), json!(i));
        }
        properties.insert("output".into(), self.output.clone());
        properties.insert("latency_ms".into(), json!(self.latency.as_secs_f64() * 1e3));
        properties.insert("model_ms".into(), json!(self.model_time.as_secs_f64() * 1e3));
        properties.insert("cache".into(), json!(self.cache));
        NewEvent {
            id: Some(self.id.clone()),
            event_type: "prediction".into(),
            entity,
            ts: self.at,
            properties,
        }
    }
}

/// What a prediction record keeps of a request.
#[derive(Debug, Clone, Default)]
pub struct RecordInput {
    /// SHA-256 of the input as the route sees it, hex; empty when unknown.
    pub digest: String,
    /// The input text, on text routes.
    pub text: Option<String>,
}

impl RecordInput {
    /// The digest of `input` (its JSON, hashed as it is written), and its
    /// text if any.
    pub fn of(input: &impl serde::Serialize, text: Option<String>) -> Self {
        use sha2::Digest as _;
        struct Hashing(sha2::Sha256);
        impl std::io::Write for Hashing {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.update(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(sha2::Sha256::new());
        // Serializing plain data into a hasher cannot fail.
        let _ = serde_json::to_writer(&mut h, input);
        Self { digest: hex::encode(h.0.finalize()), text }
    }
}

/// Whether a prediction is among the sampled `rate` (0.0-1.0): decided by
/// its id, so every replica and every retry decides the same.
pub fn sampled(prediction_id: &str, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(prediction_id.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) as f64) < rate * u64::MAX as f64
}

#[derive(Default)]
struct Stats {
    recorded: Counter,
    dropped: Counter,
    written: Counter,
    write_errors: Counter,
}

pub struct PredictionLog {
    tx: mpsc::Sender<(TenantId, Prediction)>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: Arc<Stats>,
}

impl PredictionLog {
    /// Starts the writer task over `log`.
    pub fn start(log: Arc<dyn EventLog>) -> Arc<Self> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        #[expect(
            clippy::disallowed_methods,
            reason = "the writer's handle is kept; shutdown awaits it after the last record"
        )]
        let writer = tokio::spawn(write_loop(log, rx, stop_rx, stats.clone()));
        Arc::new(Self { tx, stop, writer: Mutex::new(Some(writer)), stats })
    }

    /// Queues a record; never waits. A full queue drops it and counts it.
    pub fn record(&self, tenant: &TenantId, p: Prediction) {
        self.stats.recorded.inc();
        if self.tx.try_send((tenant.clone(), p)).is_err() {
            let n = self.stats.dropped.inc();
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "prediction queue full: records dropped");
            }
        }
    }

    /// Records waiting for the writer.
    pub fn queued(&self) -> usize {
        QUEUE - self.tx.capacity()
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tessera_prediction_records",
            "Prediction records made.",
            self.stats.recorded.clone(),
        );
        r.register(
            "tessera_prediction_records_dropped",
            "Prediction records dropped because the queue was full.",
            self.stats.dropped.clone(),
        );
        r.register(
            "tessera_prediction_records_written",
            "Prediction records appended to the event log.",
            self.stats.written.clone(),
        );
        r.register(
            "tessera_prediction_write_errors",
            "Failed appends of prediction records (retried).",
            self.stats.write_errors.clone(),
        );
    }

    /// Writes everything queued, then stops the writer (clean shutdown).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "the prediction writer failed; queued records may be lost");
        }
    }
}

async fn write_loop(
    log: Arc<dyn EventLog>,
    mut rx: mpsc::Receiver<(TenantId, Prediction)>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let stopping = *stop.borrow();
        if stopping {
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
        } else {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => if n == 0 { return },
                _ = stop.changed() => continue,
            }
            linger(&mut rx, &mut batch, &mut stop).await;
        }
        write(&*log, std::mem::take(&mut batch), &stats, &mut stop).await;
    }
}

/// Sleeps [`LINGER`] (less when stopping), then fills the batch with what
/// came meanwhile.
async fn linger(
    rx: &mut mpsc::Receiver<(TenantId, Prediction)>,
    batch: &mut Vec<(TenantId, Prediction)>,
    stop: &mut watch::Receiver<bool>,
) {
    if batch.len() < BATCH && !*stop.borrow() {
        tokio::select! {
            _ = stop.changed() => {}
            () = tokio::time::sleep(LINGER) => {}
        }
    }
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(r) => batch.push(r),
            Err(_) => break,
        }
    }
}

/// Appends a batch, tenant by tenant, retrying a tenant's part until it is
/// stored (or once more at shutdown).
async fn write(
    log: &dyn EventLog,
    batch: Vec<(TenantId, Prediction)>,
    stats: &Stats,
    stop: &mut watch::Receiver<bool>,
) {
    let mut by_tenant: HashMap<TenantId, Vec<Prediction>> = HashMap::new();
    for (t, p) in batch {
        by_tenant.entry(t).or_default().push(p);
    }
    for (tenant, predictions) in by_tenant {
        let mut backoff = Duration::from_millis(100);
        let n = predictions.len() as u64;
        loop {
            let events = predictions.iter().map(Prediction::to_event).collect();
            match log.append(&tenant, Topic::Predictions, events).await {
                Ok(_) => {
                    stats.written.inc_by(n);
                    break;
                }
                Err(e) => {
                    let errors = stats.write_errors.inc();
                    if errors.is_power_of_two() {
                        tracing::warn!(tenant = %tenant, error = %e, "prediction records not written yet; retrying");
                    }
                    if *stop.borrow() {
                        stats.dropped.inc_by(n);
                        break;
                    }
                    let _ = tokio::time::timeout(backoff, stop.changed()).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_events::{Compaction, Delivery, Filter, Lag, LogError, Page, Position};

    /// A log whose appends never finish (a stuck disk, a hung NATS).
    struct Stuck;

    #[async_trait::async_trait]
    impl EventLog for Stuck {
        async fn append(
            &self,
            _: &TenantId,
            _: Topic,
            _: Vec<NewEvent>,
        ) -> Result<Vec<tessera_events::Appended>, LogError> {
            std::future::pending().await
        }
        async fn read(
            &self,
            _: &TenantId,
            _: Topic,
            _: Position,
            _: &Filter,
            _: usize,
        ) -> Result<Page, LogError> {
            Err(LogError::Unavailable("stuck".into()))
        }
        async fn next_offset(&self, _: &TenantId) -> Result<u64, LogError> {
            Err(LogError::Unavailable("stuck".into()))
        }
        async fn wait_for(&self, _: &TenantId, _: u64, _: Duration) {}
        async fn wait_any(&self, _: Duration) {}
        async fn fetch(
            &self,
            _: &str,
            _: &TenantId,
            _: Topic,
            _: usize,
            _: Duration,
        ) -> Result<Delivery, LogError> {
            Err(LogError::Unavailable("stuck".into()))
        }
        async fn lag(&self, _: &str, _: &TenantId, _: Topic) -> Result<Lag, LogError> {
            Err(LogError::Unavailable("stuck".into()))
        }
        async fn tenants(&self) -> Result<Vec<TenantId>, LogError> {
            Ok(Vec::new())
        }
        async fn tombstone(&self, _: &TenantId, _: &str, _: &str) -> Result<u64, LogError> {
            Ok(0)
        }
        async fn compact(&self) -> Result<Compaction, LogError> {
            Ok(Compaction::default())
        }
    }

    fn prediction(i: usize) -> Prediction {
        Prediction {
            id: format!("prd_{i:016x}"),
            model: "m".into(),
            version: "m@1".into(),
            tier: "tenant".into(),
            route: "/v1/embeddings",
            user: None,
            entity: None,
            input_digest: String::new(),
            input: None,
            output: Value::Null,
            latency: Duration::ZERO,
            model_time: Duration::ZERO,
            cache: "miss",
            at: Timestamp::now(),
        }
    }

    /// With the log stuck, recording never waits: the queue fills, then
    /// each further record is dropped and counted.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_never_waits() {
        let log = PredictionLog::start(Arc::new(Stuck));
        let t = TenantId::generate();
        let started = std::time::Instant::now();
        // No await in the loop: on this one-thread runtime the writer takes nothing meanwhile.
        for i in 0..QUEUE + 25 {
            log.record(&t, prediction(i));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "recording waited");
        assert_eq!(log.queued(), QUEUE);
        assert_eq!((log.stats.recorded.get(), log.stats.dropped.get()), (QUEUE as u64 + 25, 25));
    }

    #[test]
    fn sampling_keeps_about_the_rate_and_decides_by_id() {
        let ids: Vec<String> = (0..10_000).map(|i| format!("prd_{i:016x}")).collect();
        let kept = ids.iter().filter(|id| sampled(id, 0.25)).count();
        assert!((2_200..2_800).contains(&kept), "{kept}");
        assert!(ids.iter().all(|id| sampled(id, 1.0)));
        assert!(!ids.iter().any(|id| sampled(id, 0.0)));
        assert_eq!(sampled(&ids[7], 0.5), sampled(&ids[7], 0.5));
    }
}
