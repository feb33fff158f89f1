//! Prediction records (F4; read by feedback L5 and drift O3): one
//! `prediction` event per inference on the tenant's `predictions` topic,
//! written off the request path.
//!
//! A request encodes its record as the log stores it, straight from borrowed
//! fields, into its tenant's pending batch (a mutex held for the copy; no
//! record struct, no channel, no strings made per field); one writer task
//! takes the pending batches a linger after the first record and appends
//! them. The pending records are bounded in count and bytes: past either, a
//! record is dropped and counted, so a request never waits on the log. A
//! failed append is retried with the same batch (the prediction id is the
//! event id). A clean shutdown writes what is pending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use serde_json::{Map, Value};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use tessera_events::{Encoded, EventLog, LogError, Topic};
use tokio::sync::{Notify, watch};

use crate::inference::resolve::VersionRef;

/// Records pending for the writer before more are dropped.
const QUEUE: usize = 20_000;
/// Bytes of pending records before more are dropped (kept inputs can be large).
const QUEUE_BYTES: usize = 64 << 20;
/// Most records appended at once (an embedded row, a JetStream burst).
const BATCH: usize = 1_000;
/// How long the writer lets records gather once it has one, asleep: it then
/// takes what came. Waking it per record (a task wake, often a thread
/// unpark) and appending what one wake found (a commit: an fsync, a handful
/// of statements, thread hand-offs) cost more CPU than the rest of a cache
/// hit. Records are durable this much later.
const LINGER: Duration = Duration::from_millis(100);

/// The event type of an answer's record.
pub const TYPE: &str = "prediction";
/// The event type of a version's failure to answer.
pub const ERROR_TYPE: &str = "prediction.error";

/// What one inference leaves behind, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Prediction<'a> {
    pub id: &'a str,
    pub model: &'a str,
    /// The version that answered.
    pub version: &'a VersionRef,
    pub tier: &'a str,
    /// The route, as the cache names it (`embeddings`, `chat`, ...).
    pub route: &'a str,
    /// The caller's `user`, when it named one (so a subject's deletion finds it).
    pub user: Option<&'a str>,
    /// The entity a request named for a model that reads features: its join
    /// keys, one value each (or a column of values for several rows).
    pub entity: Option<&'a Map<String, Value>>,
    /// SHA-256 of the input as the route sees it (`None`: not known).
    pub input_digest: Option<[u8; 32]>,
    /// The input text, kept only when the tenant opted in (`store_inputs`).
    pub input: Option<&'a str>,
    /// Numeric input rows, kept only when the tenant opted in.
    pub rows: Option<&'a Value>,
    /// The answer in bounded form: label and score, top-k, vector
    /// dimensions; `None` for an answer served from the cache.
    pub output: Option<&'a Value>,
    pub latency: Duration,
    pub model_time: Duration,
    /// `hit`, `miss`, `stale`, `bypass`.
    pub cache: &'a str,
    /// When it answered.
    pub at: Timestamp,
    /// A shadow's record: the prediction id of the answer it mirrored
    /// (its key `prediction_id` is that id, so feedback finds both).
    pub shadow_of: Option<&'a str>,
    /// A shadow's record: whether its answer equalled the primary's.
    pub same_output: Option<bool>,
    /// The version failed to answer (a `prediction.error` record: a
    /// rollout's error rate counts them).
    pub error: Option<&'a str>,
}

/// The record's properties, written straight into the log's encoding.
#[derive(serde::Serialize)]
struct Properties<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    entity: Option<&'a Map<String, Value>>,
    model: &'a str,
    #[serde(serialize_with = "as_text")]
    version: &'a VersionRef,
    tier: &'a str,
    route: &'a str,
    #[serde(serialize_with = "as_hex")]
    input_digest: Option<[u8; 32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    input: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<&'a Value>,
    #[serde(serialize_with = "as_output")]
    output: Option<&'a Value>,
    latency_ms: f64,
    model_ms: f64,
    cache: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    shadow_of: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    same_output: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// `model@version`, joined on the stack when it is short.
fn as_text<S: serde::Serializer>(v: &&VersionRef, s: S) -> Result<S::Ok, S::Error> {
    let (m, n) = (v.model.as_bytes(), v.version.as_bytes());
    let mut buf = [0u8; 128];
    if m.len() + n.len() < buf.len() {
        buf[..m.len()].copy_from_slice(m);
        buf[m.len()] = b'@';
        buf[m.len() + 1..m.len() + 1 + n.len()].copy_from_slice(n);
        let joined = &buf[..m.len() + 1 + n.len()];
        // Two strings and an ASCII '@' are UTF-8.
        s.serialize_str(std::str::from_utf8(joined).unwrap_or_default())
    } else {
        s.collect_str(*v)
    }
}

/// The digest as 64 hex digits (empty when not known).
fn as_hex<S: serde::Serializer>(d: &Option<[u8; 32]>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => {
            // Two digits per byte from a table (`hex`'s iterator showed in
            // the hot path's profile).
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut out = [0u8; 64];
            for (pair, b) in out.chunks_exact_mut(2).zip(d) {
                pair[0] = DIGITS[usize::from(b >> 4)];
                pair[1] = DIGITS[usize::from(b & 0x0f)];
            }
            // ASCII digits are UTF-8.
            s.serialize_str(std::str::from_utf8(&out).unwrap_or_default())
        }
        None => s.serialize_str(""),
    }
}

fn as_output<S: serde::Serializer>(o: &Option<&Value>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap as _;
    match o {
        Some(v) => serde::Serialize::serialize(v, s),
        None => {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("cached", &true)?;
            m.end()
        }
    }
}

impl Prediction<'_> {
    /// Adds the record to `batch` as a `prediction` event, keyed by its
    /// prediction id, the caller's `user` and a single entity's join keys
    /// (feedback and a subject's export find it by them); a batch's join
    /// keys stay in the body.
    fn encode(&self, batch: &mut Encoded) -> Result<(), LogError> {
        let numbers: Vec<(&str, String)> = self
            .entity
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| match v {
                Value::Number(n) => Some((k.as_str(), n.to_string())),
                _ => None,
            })
            .collect();
        let texts = self.entity.into_iter().flatten().filter_map(|(k, v)| match v {
            Value::String(t) => Some((k.as_str(), t.as_str())),
            _ => None,
        });
        let keys =
            [("prediction_id", Some(self.shadow_of.unwrap_or(self.id))), ("user", self.user)]
                .into_iter()
                .filter_map(|(k, v)| v.map(|v| (k, v)))
                .chain(texts)
                .chain(numbers.iter().map(|(k, v)| (*k, v.as_str())));
        let properties = Properties {
            entity: self.entity,
            model: self.model,
            version: self.version,
            tier: self.tier,
            route: self.route,
            input_digest: self.input_digest,
            input: self.input,
            rows: self.rows,
            output: self.output,
            latency_ms: self.latency.as_secs_f64() * 1e3,
            model_ms: self.model_time.as_secs_f64() * 1e3,
            cache: self.cache,
            shadow_of: self.shadow_of,
            same_output: self.same_output,
            error: self.error,
        };
        let kind = if self.error.is_some() { ERROR_TYPE } else { TYPE };
        batch.push(self.id, kind, keys, self.at, &properties)
    }
}

/// What a prediction record keeps of a request.
#[derive(Debug, Clone, Default)]
pub struct RecordInput {
    /// SHA-256 of the input as the route sees it; `None` when unknown.
    pub digest: Option<[u8; 32]>,
    /// The input text, on text routes.
    pub text: Option<String>,
    /// Numeric input rows (the first [`MAX_ROWS`]), on tabular routes: kept,
    /// like text, only when the tenant opted in; input drift reads them.
    pub rows: Option<Value>,
}

/// Input rows a record keeps at most.
pub const MAX_ROWS: usize = 8;

/// The first [`MAX_ROWS`] rows of `rows` when each is an array of numbers.
pub fn numeric_rows<'a>(rows: impl IntoIterator<Item = &'a Value>) -> Option<Value> {
    let kept: Vec<Value> = rows.into_iter().take(MAX_ROWS).cloned().collect();
    let numeric = |r: &Value| r.as_array().is_some_and(|v| v.iter().all(Value::is_number));
    (!kept.is_empty() && kept.iter().all(numeric)).then_some(Value::Array(kept))
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
        Self { digest: Some(h.0.finalize().into()), text, rows: None }
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

/// Records waiting for the writer: per tenant, batches of up to [`BATCH`].
#[derive(Default)]
struct Pending {
    full: Vec<(TenantId, Encoded)>,
    filling: HashMap<TenantId, Encoded>,
    records: usize,
    bytes: usize,
}

impl Pending {
    fn take(&mut self) -> Vec<(TenantId, Encoded)> {
        let mut out = std::mem::take(&mut self.full);
        out.extend(self.filling.drain());
        self.records = 0;
        self.bytes = 0;
        out
    }
}

pub struct PredictionLog {
    pending: Mutex<Pending>,
    /// Rung by the first record after the writer took the pending ones.
    arrived: Notify,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    stats: Stats,
}

impl PredictionLog {
    /// Starts the writer task over `log`.
    pub fn start(log: Arc<dyn EventLog>) -> Arc<Self> {
        let (stop, stop_rx) = watch::channel(false);
        let this = Arc::new(Self {
            pending: Mutex::new(Pending::default()),
            arrived: Notify::new(),
            stop,
            writer: Mutex::new(None),
            stats: Stats::default(),
        });
        #[expect(
            clippy::disallowed_methods,
            reason = "the writer's handle is kept; shutdown awaits it after the last record"
        )]
        let writer = tokio::spawn(write_loop(log, this.clone(), stop_rx));
        *this.writer.lock().unwrap_or_else(PoisonError::into_inner) = Some(writer);
        this
    }

    /// Encodes a record into its tenant's pending batch; never waits on the
    /// log. Past the bounds it is dropped and counted.
    pub fn record(&self, tenant: &TenantId, p: &Prediction<'_>) {
        self.stats.recorded.inc();
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        if pending.records >= QUEUE || pending.bytes >= QUEUE_BYTES {
            drop(pending);
            let n = self.stats.dropped.inc();
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n + 1,
                    "prediction records pending at the bound: records dropped"
                );
            }
            return;
        }
        let first = pending.records == 0;
        if !pending.filling.contains_key(tenant) {
            pending.filling.insert(tenant.clone(), Encoded::new());
        }
        let Some(batch) = pending.filling.get_mut(tenant) else { return };
        let before = batch.bytes();
        let encoded = p.encode(batch);
        let (len, grown) = (batch.len(), batch.bytes() - before);
        if len >= BATCH
            && let Some(b) = pending.filling.remove(tenant)
        {
            pending.full.push((tenant.clone(), b));
        }
        match encoded {
            Ok(()) => {
                pending.records += 1;
                pending.bytes += grown;
                drop(pending);
                if first {
                    self.arrived.notify_one();
                }
            }
            Err(e) => {
                // Only a record over the log's size limit (a huge entity or input) gets here.
                drop(pending);
                self.stats.dropped.inc();
                tracing::warn!(tenant = %tenant, prediction = p.id, error = %e, "prediction record not kept");
            }
        }
    }

    /// Records waiting for the writer.
    pub fn queued(&self) -> usize {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner).records
    }

    pub fn register(&self, r: &mut Registry) {
        r.register(
            "tessera_prediction_records",
            "Prediction records made.",
            self.stats.recorded.clone(),
        );
        r.register(
            "tessera_prediction_records_dropped",
            "Prediction records dropped because too many were pending (or one was over the log's size limit).",
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

    /// Writes everything pending, then stops the writer (clean shutdown).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "the prediction writer failed; pending records may be lost");
        }
    }
}

async fn write_loop(
    log: Arc<dyn EventLog>,
    records: Arc<PredictionLog>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stopping = *stop.borrow();
        if !stopping {
            tokio::select! {
                () = records.arrived.notified() => {}
                _ = stop.changed() => continue,
            }
            // Let the batch gather (less when stopping).
            tokio::select! {
                _ = stop.changed() => {}
                () = tokio::time::sleep(LINGER) => {}
            }
        }
        let batches = records.pending.lock().unwrap_or_else(PoisonError::into_inner).take();
        if batches.is_empty() && stopping {
            return;
        }
        for (tenant, batch) in batches {
            write(&*log, &tenant, &batch, &records.stats, &mut stop).await;
        }
    }
}

/// Appends one tenant's batch, retrying until it is stored (or once more at
/// shutdown).
async fn write(
    log: &dyn EventLog,
    tenant: &TenantId,
    batch: &Encoded,
    stats: &Stats,
    stop: &mut watch::Receiver<bool>,
) {
    let n = batch.len() as u64;
    let mut backoff = Duration::from_millis(100);
    loop {
        match log.append_encoded(tenant, Topic::Predictions, batch).await {
            Ok(_) => {
                stats.written.inc_by(n);
                return;
            }
            Err(e) => {
                let errors = stats.write_errors.inc();
                if errors.is_power_of_two() {
                    tracing::warn!(tenant = %tenant, error = %e, "prediction records not written yet; retrying");
                }
                if *stop.borrow() {
                    stats.dropped.inc_by(n);
                    return;
                }
                // Waits out the backoff, or less when shutdown begins (either way: retry).
                let _ = tokio::time::timeout(backoff, stop.changed()).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_events::{Compaction, Delivery, Filter, Lag, LogError, NewEvent, Page, Position};

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
        async fn append_encoded(
            &self,
            _: &TenantId,
            _: Topic,
            _: &Encoded,
        ) -> Result<Vec<u64>, LogError> {
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

    fn prediction<'a>(id: &'a str, version: &'a VersionRef) -> Prediction<'a> {
        Prediction {
            id,
            model: "m",
            version,
            tier: "tenant",
            route: "/v1/embeddings",
            user: None,
            entity: None,
            input_digest: None,
            input: None,
            rows: None,
            output: None,
            latency: Duration::ZERO,
            model_time: Duration::ZERO,
            cache: "miss",
            at: Timestamp::now(),
            shadow_of: None,
            same_output: None,
            error: None,
        }
    }

    #[test]
    fn digests_are_written_as_lowercase_hex() {
        #[derive(serde::Serialize)]
        struct D(#[serde(serialize_with = "as_hex")] Option<[u8; 32]>);
        let d: [u8; 32] = std::array::from_fn(|i| (i as u8).wrapping_mul(37) ^ 0xa5);
        assert_eq!(serde_json::to_string(&D(Some(d))).unwrap(), format!("\"{}\"", hex::encode(d)));
        assert_eq!(serde_json::to_string(&D(None)).unwrap(), "\"\"");
    }

    fn version() -> VersionRef {
        VersionRef { model: "m".into(), version: "1".into() }
    }

    /// With the log stuck, recording never waits: the queue fills, then
    /// each further record is dropped and counted.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_and_never_waits() {
        let log = PredictionLog::start(Arc::new(Stuck));
        let t = TenantId::generate();
        let v = version();
        let started = std::time::Instant::now();
        // No await in the loop: on this one-thread runtime the writer takes nothing meanwhile.
        for i in 0..QUEUE + 25 {
            log.record(&t, &prediction(&format!("prd_{i:016x}"), &v));
        }
        assert!(started.elapsed() < Duration::from_secs(5), "recording waited");
        assert_eq!(log.queued(), QUEUE);
        assert_eq!((log.stats.recorded.get(), log.stats.dropped.get()), (QUEUE as u64 + 25, 25));
    }

    /// An embedded log in a directory of its own (removed by the test).
    async fn embedded_log() -> (std::path::PathBuf, Arc<tessera_events::embedded::EmbeddedLog>) {
        let dir =
            std::env::temp_dir().join(format!("tessera-predictions-{}", TenantId::generate()));
        let log = tessera_events::embedded::EmbeddedLog::open(
            &dir.join("events.db"),
            tessera_events::Retention::default(),
            tessera_core::time::Clock::system(),
        )
        .await
        .unwrap();
        (dir, Arc::new(log))
    }

    /// What the writer stores reads back as the `prediction` event the
    /// consumers (feedback, drift, a subject's export) rely on.
    #[tokio::test]
    async fn records_read_back_as_prediction_events() {
        let (dir, log) = embedded_log().await;
        let writer = PredictionLog::start(log.clone());
        let t = TenantId::generate();
        let v = version();
        let mut p = prediction("prd_1", &v);
        p.user = Some("alice");
        let entity =
            serde_json::json!({"customer_id": "c1", "store": 7, "prediction_id": "not this"});
        p.entity = entity.as_object();
        p.input_digest = Some([0xab; 32]);
        p.input = Some("hello \"world\"");
        let output = serde_json::json!({"label": "pos", "score": 0.9});
        p.output = Some(&output);
        p.latency = Duration::from_micros(1500);
        let cached = prediction("prd_2", &v);
        writer.record(&t, &p);
        writer.record(&t, &cached);
        writer.shutdown().await;

        let page = log
            .read(&t, Topic::Predictions, Position::Offset(1), &Filter::default(), 10)
            .await
            .unwrap();
        assert_eq!(page.records.len(), 2);
        let (r, c) = (&page.records[0], &page.records[1]);
        assert_eq!((r.id.as_str(), r.event_type.as_str(), r.ts), (p.id, "prediction", p.at));
        let entity: Vec<(&str, &str)> =
            r.entity.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            entity,
            [("customer_id", "c1"), ("prediction_id", p.id), ("store", "7"), ("user", "alice")]
        );
        assert_eq!(
            Value::Object(r.properties.clone()),
            serde_json::json!({
                "entity": {"customer_id": "c1", "store": 7, "prediction_id": "not this"},
                "model": "m", "version": "m@1", "tier": "tenant", "route": "/v1/embeddings",
                "input_digest": "ab".repeat(32), "input": "hello \"world\"",
                "output": {"label": "pos", "score": 0.9},
                "latency_ms": 1.5, "model_ms": 0.0, "cache": "miss",
            })
        );
        assert_eq!(c.properties["output"], serde_json::json!({"cached": true}));
        assert_eq!(c.properties["input_digest"], "");
        assert!(c.properties.get("input").is_none() && c.properties.get("entity").is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// More than a batch for one tenant is appended in several, every record
    /// once and in order; another tenant's records stay in its own log.
    #[tokio::test]
    async fn records_beyond_a_batch_all_land_in_order_per_tenant() {
        let (dir, log) = embedded_log().await;
        let writer = PredictionLog::start(log.clone());
        let (a, b) = (TenantId::generate(), TenantId::generate());
        let v = version();
        let ids: Vec<String> = (0..BATCH * 2 + 7).map(|i| format!("prd_{i:016x}")).collect();
        for (i, id) in ids.iter().enumerate() {
            writer.record(if i % 100 == 0 { &b } else { &a }, &prediction(id, &v));
        }
        writer.shutdown().await;
        let mut got: HashMap<&TenantId, Vec<String>> = HashMap::new();
        for t in [&a, &b] {
            let mut from = 1;
            loop {
                let page = log
                    .read(t, Topic::Predictions, Position::Offset(from), &Filter::default(), 500)
                    .await
                    .unwrap();
                got.entry(t).or_default().extend(page.records.into_iter().map(|r| r.id));
                if page.end {
                    break;
                }
                from = page.next;
            }
        }
        let want = |on_b: bool| -> Vec<String> {
            ids.iter()
                .enumerate()
                .filter(|(i, _)| (i % 100 == 0) == on_b)
                .map(|(_, id)| id.clone())
                .collect()
        };
        assert_eq!(got[&a], want(false));
        assert_eq!(got[&b], want(true));
        assert_eq!(writer.stats.written.get(), ids.len() as u64);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Kept inputs make records large: the pending bytes are bounded too,
    /// and a record over the log's size limit is dropped, not queued.
    #[tokio::test]
    async fn pending_bytes_are_bounded_and_oversized_records_dropped() {
        let log = PredictionLog::start(Arc::new(Stuck));
        let t = TenantId::generate();
        let v = version();
        let text = "x".repeat(512 << 10);
        let mut p = prediction("prd_big", &v);
        p.input = Some(&text);
        let fit = QUEUE_BYTES.div_ceil(text.len() + 300);
        for _ in 0..fit + 10 {
            log.record(&t, &p);
        }
        assert_eq!(log.queued(), fit);
        assert_eq!(log.stats.dropped.get(), 10);
        let huge = "y".repeat(tessera_events::MAX_EVENT_BYTES);
        p.input = Some(&huge);
        let log = PredictionLog::start(Arc::new(Stuck));
        log.record(&t, &p);
        assert_eq!((log.queued(), log.stats.dropped.get()), (0, 1));
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
