//! Usage metering (G7): each inference request leaves one [`UsageRecord`],
//! priced from the platform's price table. Records pass through a bounded
//! queue to one writer task that stores them in batches (at most
//! `FLUSH_EVERY` apart, or `BATCH` at a time), never one database write per
//! request. A full queue drops the record and counts it. A failed write is
//! retried with the same batch; records are keyed by request id, so a retry
//! that did land is not stored twice. A clean shutdown flushes everything; on
//! kill -9 the records of the last flush interval are at risk.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use tessera_core::auth::SystemCtx;
use tessera_core::ids::TenantId;
use tessera_core::metrics::ScrapedGauge;
use tessera_core::usage::{Price, UsageRecord};
use tessera_store::MetadataStore;

use crate::cache::CacheStatus;
use crate::readthrough::{Policy, ReadThrough};
use tokio::sync::{mpsc, watch};

/// Records held between flushes before the queue refuses more.
const QUEUE: usize = 50_000;
/// Most records written in one transaction.
const BATCH: usize = 1_000;
/// Longest time a record waits for its flush.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// How long the price table is trusted before it is read again.
const PRICES_TTL: Duration = Duration::from_secs(5);

#[derive(Default)]
struct Stats {
    recorded: Counter,
    dropped: Counter,
    written: Counter,
    write_errors: Counter,
}

pub struct Meter {
    tx: mpsc::Sender<UsageRecord>,
    stop: watch::Sender<bool>,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
    store: Arc<dyn MetadataStore>,
    /// The price table, read through (one key: the whole table).
    prices: ReadThrough<(), Arc<Vec<Price>>>,

    stats: Arc<Stats>,
}

impl Meter {
    /// Starts the writer task.
    pub fn start(store: Arc<dyn MetadataStore>) -> Arc<Meter> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        let stats = Arc::new(Stats::default());
        #[expect(
            clippy::disallowed_methods,
            reason = "the writer's handle is kept; shutdown awaits it after the last record"
        )]
        let writer = tokio::spawn(write_loop(store.clone(), rx, stop_rx, stats.clone()));
        Arc::new(Meter {
            tx,
            stop,
            writer: Mutex::new(Some(writer)),
            store,
            // Any failed read keeps the last table.
            prices: ReadThrough::new(Policy {
                stale_on_any_error: true,
                ..Policy::ttl(PRICES_TTL)
            }),
            stats,
        })
    }

    /// Queues a record; never waits. A full queue drops it and counts it.
    pub fn record(&self, r: UsageRecord) {
        self.stats.recorded.inc();
        if self.tx.try_send(r).is_err() {
            let n = self.stats.dropped.inc();
            if n.is_power_of_two() {
                tracing::warn!(dropped = n + 1, "usage queue full: records dropped");
            }
        }
    }

    /// The cost of a request in micro-dollars: the model's price on the
    /// tenant's plan, else its price for any plan, else free.
    pub async fn cost(&self, model: &str, plan: &str, prompt: u64, completion: u64) -> i64 {
        let prices = self.prices().await;
        let pick = prices
            .iter()
            .find(|p| p.model == model && p.plan == plan)
            .or_else(|| prices.iter().find(|p| p.model == model && p.plan == "*"));
        pick.map_or(0, |p| p.cost_micros(prompt, completion))
    }

    /// The price that applies to `model` on `plan`, if any.
    pub async fn price(&self, model: &str, plan: &str) -> Option<Price> {
        let prices = self.prices().await;
        prices
            .iter()
            .find(|p| p.model == model && p.plan == plan)
            .or_else(|| prices.iter().find(|p| p.model == model && p.plan == "*"))
            .cloned()
    }

    /// The price table; with the database down, the last one read here
    /// (none read yet: everything is free until it answers).
    async fn prices(&self) -> Arc<Vec<Price>> {
        let load = || async { self.store.list_prices().await.map(Arc::new) };
        match self.prices.get(&(), load).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "price table unreadable; pricing as free");
                Arc::default()
            }
        }
    }

    /// Forgets the cached price table (after a change on this replica).
    pub fn prices_changed(&self) {
        self.prices.clear();
    }

    /// Writes everything queued, then stops the writer (clean shutdown).
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some(h) = handle
            && let Err(e) = h.await
        {
            tracing::error!(error = %e, "the usage writer failed; queued records may be lost");
        }
    }

    pub fn register(&self, registry: &mut Registry) {
        let stats = &self.stats;
        registry.register("tessera_usage_records", "Usage records made", stats.recorded.clone());
        registry.register(
            "tessera_usage_dropped",
            "Usage records dropped because the queue was full",
            stats.dropped.clone(),
        );
        registry.register("tessera_usage_written", "Usage records stored", stats.written.clone());
        registry.register(
            "tessera_usage_write_errors",
            "Failed batch writes (retried)",
            stats.write_errors.clone(),
        );
        // Held weakly: the writer stops when the last sender is gone.
        let tx = self.tx.downgrade();
        registry.register_collector(ScrapedGauge::new(
            "tessera_usage_queue",
            "Usage records waiting for their flush",
            move || tx.upgrade().map_or(0, |tx| (QUEUE - tx.capacity()) as i64),
        ));
    }
}

async fn write_loop(
    store: Arc<dyn MetadataStore>,
    mut rx: mpsc::Receiver<UsageRecord>,
    mut stop: watch::Receiver<bool>,
    stats: Arc<Stats>,
) {
    let sys = SystemCtx::bootstrap();
    let mut buf: Vec<UsageRecord> = Vec::new();
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let stopping = tokio::select! {
            r = rx.recv() => match r {
                Some(rec) => {
                    buf.push(rec);
                    if buf.len() < BATCH {
                        continue;
                    }
                    false
                }
                None => true,
            },
            _ = tick.tick() => false,
            _ = stop.changed() => true,
        };
        if stopping {
            while let Ok(rec) = rx.try_recv() {
                buf.push(rec);
            }
            // A few tries at the end; then what cannot be stored is reported.
            for _ in 0..5 {
                flush(&*store, &sys, &mut buf, &stats).await;
                if buf.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            if !buf.is_empty() {
                tracing::error!(
                    lost = buf.len(),
                    "usage records could not be stored before shutdown"
                );
            }
            return;
        }
        flush(&*store, &sys, &mut buf, &stats).await;
        // Failed writes stay queued, up to the queue's size.
        if buf.len() > QUEUE {
            let excess = buf.len() - QUEUE;
            buf.drain(..excess);
            stats.dropped.inc_by(excess as u64);
        }
    }
}

async fn flush(
    store: &dyn MetadataStore,
    sys: &SystemCtx,
    buf: &mut Vec<UsageRecord>,
    stats: &Stats,
) {
    while !buf.is_empty() {
        let n = buf.len().min(BATCH);
        match store.insert_usage(sys, &buf[..n]).await {
            Ok(_) => {
                stats.written.inc_by(n as u64);
                buf.drain(..n);
            }
            Err(e) => {
                stats.write_errors.inc();
                tracing::warn!(error = %e, pending = buf.len(), "usage write failed; retrying at the next flush");
                return;
            }
        }
    }
}

/// What a request used, filled in as the handler learns it and recorded once.
pub struct Draft {
    pub meter: Arc<Meter>,
    pub request_id: String,
    pub tenant_id: TenantId,
    pub plan: String,
    pub key_id: String,
    pub route: &'static str,
    pub model: String,
    pub version: String,
    pub tier: String,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub compute: Duration,
    pub cache: CacheStatus,
    pub prediction_id: String,
}

impl Draft {
    /// A record of request `request_id` by `key_id` (on `tenant_id`'s
    /// `plan`) to `model` on `route`.
    pub fn new(
        meter: Arc<Meter>,
        (request_id, key_id): (&str, &str),
        tenant_id: TenantId,
        plan: String,
        route: &'static str,
        model: &str,
    ) -> Draft {
        Draft {
            meter,
            request_id: request_id.to_owned(),
            tenant_id,
            plan,
            key_id: key_id.to_owned(),
            route,
            model: model.to_owned(),
            version: String::new(),
            tier: String::new(),
            prompt_tokens: 0,
            completion_tokens: 0,
            compute: Duration::ZERO,
            cache: CacheStatus::Bypass,
            prediction_id: String::new(),
        }
    }

    /// Fills in what answered: model, tier, version, cache outcome, time in
    /// the model, tokens and the prediction id.
    pub fn note(&mut self, meta: &crate::inference::Meta) {
        self.model = meta.model.clone();
        self.tier = meta.tier.clone();
        self.version = meta.version.to_string();
        self.cache = meta.cache;
        self.compute = meta.model_time;
        if let Some((p, c)) = meta.tokens {
            self.prompt_tokens = p;
            self.completion_tokens = c;
        }
        self.prediction_id = meta.prediction_id.clone();
    }

    /// Prices and queues the record with the answer's status.
    pub async fn finish(self, status: u16) {
        // Cached answers and refused requests cost nothing.
        let cost = if self.cache.from_cache() || status >= 400 {
            0
        } else {
            self.meter
                .cost(&self.model, &self.plan, self.prompt_tokens, self.completion_tokens)
                .await
        };
        let rec = UsageRecord {
            // Unique per record (a retried batch is stored once), without a system call.
            id: tessera_core::ids::time_sortable_id(
                "u",
                tessera_core::time::Timestamp::now().millis(),
            ),
            request_id: self.request_id,
            ts_ms: tessera_core::time::Timestamp::now().millis(),
            tenant_id: self.tenant_id,
            key_id: self.key_id,
            model: self.model,
            version: self.version,
            tier: self.tier,
            route: self.route.to_owned(),
            prompt_tokens: i64::try_from(self.prompt_tokens).unwrap_or(i64::MAX),
            completion_tokens: i64::try_from(self.completion_tokens).unwrap_or(i64::MAX),
            compute_us: i64::try_from(self.compute.as_micros()).unwrap_or(i64::MAX),
            cache: self.cache.as_str().to_owned(),
            status: i32::from(status),
            cost_micros: cost,
            prediction_id: self.prediction_id,
        };
        self.meter.record(rec);
    }
}
