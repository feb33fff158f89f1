//! The consumer runtime for Tessera's own background work (streaming
//! features, feedback, drift): a [`Consumer`] names its group and topics and
//! gets batches of one tenant's records at a time; a batch is committed once
//! its handler returns, so the effect must be durable by then. After a
//! restart the group resumes at its last commit (at-least-once: handlers
//! are idempotent). A handler error releases the batch for a retry and is
//! counted. On N replicas sharing NATS, each record goes to one replica of
//! the group.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tessera_core::ids::TenantId;

use crate::{EventLog, LogError, Record, Topic, check_group};

/// What a consumer does with a batch of one tenant's records.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Returns once the batch's effect is durable; an error gives the batch
    /// back for a retry.
    async fn handle(
        &self,
        tenant: &TenantId,
        topic: Topic,
        records: &[Record],
    ) -> Result<(), String>;
}

/// Counters a consumer keeps, for `/metrics`.
#[derive(Debug, Default)]
pub struct ConsumerStats {
    /// Records not yet handled, over every tenant (refreshed each sweep).
    pub lag: AtomicU64,
    pub handled: AtomicU64,
    pub errors: AtomicU64,
    /// Log calls that failed (NATS away): the consumer pauses and retries.
    pub log_errors: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub group: String,
    pub topics: Vec<Topic>,
    /// Records per batch at most.
    pub batch: usize,
    /// How often the consumer looks for new tenants and refreshes its lag.
    pub sweep: Duration,
    /// Longest pause when there is nothing to do (an append anywhere ends it
    /// sooner; this bounds the rare wake-up that falls between two looks).
    pub idle_wait: Duration,
}

impl ConsumerConfig {
    pub fn new(group: &str, topics: &[Topic]) -> Self {
        Self {
            group: group.to_owned(),
            topics: topics.to_vec(),
            batch: 500,
            sweep: Duration::from_secs(5),
            idle_wait: Duration::from_secs(1),
        }
    }
}

pub struct Consumer {
    log: Arc<dyn EventLog>,
    cfg: ConsumerConfig,
    handler: Arc<dyn Handler>,
    stats: Arc<ConsumerStats>,
}

impl Consumer {
    pub fn new(
        log: Arc<dyn EventLog>,
        cfg: ConsumerConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Self, LogError> {
        check_group(&cfg.group)?;
        Ok(Self { log, cfg, handler, stats: Arc::default() })
    }

    pub fn stats(&self) -> Arc<ConsumerStats> {
        self.stats.clone()
    }

    pub fn group(&self) -> &str {
        &self.cfg.group
    }

    /// Runs until dropped (the owner cancels it at shutdown).
    pub async fn run(self) {
        let mut tenants: Vec<TenantId> = Vec::new();
        let mut last_sweep: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            if last_sweep.is_none_or(|t| t.elapsed() >= self.cfg.sweep) {
                match self.sweep().await {
                    Ok(t) => {
                        tenants = t;
                        last_sweep = Some(tokio::time::Instant::now());
                    }
                    Err(e) => {
                        self.paused(&e, &mut backoff).await;
                        continue;
                    }
                }
            }
            match self.round(&tenants).await {
                Ok(0) => {
                    backoff = Duration::from_millis(100);
                    // Nothing anywhere: sleep until the log moves (or a new
                    // tenant may have appeared: the next sweep finds it).
                    self.log.wait_any(self.cfg.idle_wait).await;
                }
                Ok(_) => backoff = Duration::from_millis(100),
                Err(e) => self.paused(&e, &mut backoff).await,
            }
        }
    }

    async fn paused(&self, e: &LogError, backoff: &mut Duration) {
        self.stats.log_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(group = %self.cfg.group, error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer paused");
        tokio::time::sleep(*backoff).await;
        *backoff = (*backoff * 2).min(Duration::from_secs(5));
    }

    /// The tenants to visit, and the group's lag over all of them.
    async fn sweep(&self) -> Result<Vec<TenantId>, LogError> {
        let tenants = self.log.tenants().await?;
        let mut lag = 0;
        for t in &tenants {
            for topic in &self.cfg.topics {
                lag += self.log.lag(&self.cfg.group, t, *topic).await?.total();
            }
        }
        self.stats.lag.store(lag, Ordering::Relaxed);
        Ok(tenants)
    }

    /// One pass over every tenant and topic; how many records were handled.
    async fn round(&self, tenants: &[TenantId]) -> Result<usize, LogError> {
        let mut handled = 0;
        for tenant in tenants {
            for topic in &self.cfg.topics {
                let d = self
                    .log
                    .fetch(&self.cfg.group, tenant, *topic, self.cfg.batch, Duration::ZERO)
                    .await?;
                if d.records.is_empty() {
                    continue;
                }
                let n = d.records.len();
                match self.handler.handle(tenant, *topic, &d.records).await {
                    Ok(()) => {
                        d.commit().await?;
                        handled += n;
                        self.stats.handled.fetch_add(n as u64, Ordering::Relaxed);
                        let _ = self.stats.lag.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |l| Some(l.saturating_sub(n as u64)),
                        );
                    }
                    Err(e) => {
                        self.stats.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(group = %self.cfg.group, tenant = %tenant, error = %e, "consumer handler failed; the batch comes again");
                        d.release().await?;
                    }
                }
            }
        }
        Ok(handled)
    }
}

/// Every consumer of the process, for `/metrics`: `tessera_consumer_lag`,
/// `tessera_consumer_handled_total`, `tessera_consumer_errors_total` and
/// `tessera_consumer_log_errors_total`, by consumer group.
#[derive(Debug, Default)]
pub struct ConsumerMetrics {
    consumers: std::sync::Mutex<Vec<(String, Arc<ConsumerStats>)>>,
}

impl ConsumerMetrics {
    pub fn add(&self, group: &str, stats: Arc<ConsumerStats>) {
        self.consumers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((group.to_owned(), stats));
    }

    fn read(&self, f: impl Fn(&ConsumerStats) -> u64) -> Vec<(ConsumerLabel, i64)> {
        let all = self.consumers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.iter()
            .map(|(g, s)| (ConsumerLabel { consumer: g.clone() }, f(s).min(i64::MAX as u64) as i64))
            .collect()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
struct ConsumerLabel {
    consumer: String,
}

impl prometheus_client::collector::Collector for ConsumerMetrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> std::fmt::Result {
        use prometheus_client::encoding::EncodeMetric as _;
        use prometheus_client::metrics::MetricType;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let lag = self.read(|s| s.lag.load(Ordering::Relaxed));
        let mut m = encoder.encode_descriptor(
            "tessera_consumer_lag",
            "Records a consumer group has not handled yet, over every tenant.",
            None,
            MetricType::Gauge,
        )?;
        for (l, v) in lag {
            ConstGauge::new(v).encode(m.encode_family(&l)?)?;
        }
        for (name, help, read) in [
            ("tessera_consumer_handled", "Records handled by a consumer group.", 0),
            ("tessera_consumer_errors", "Batches a consumer's handler failed (and got again).", 1),
            (
                "tessera_consumer_log_errors",
                "Event log calls of a consumer that failed (it paused).",
                2,
            ),
        ] {
            let values = self.read(|s| match read {
                0 => s.handled.load(Ordering::Relaxed),
                1 => s.errors.load(Ordering::Relaxed),
                _ => s.log_errors.load(Ordering::Relaxed),
            });
            let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (l, v) in values {
                ConstCounter::new(v as u64).encode(m.encode_family(&l)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::event;
    use crate::embedded::EmbeddedLog;
    use std::sync::Mutex;
    use tessera_core::time::Clock;

    /// Remembers what it saw; fails the first `fail` batches.
    #[derive(Default)]
    struct Recorder {
        seen: Mutex<Vec<(TenantId, u64)>>,
        fail: AtomicU64,
    }

    #[async_trait]
    impl Handler for Recorder {
        async fn handle(
            &self,
            tenant: &TenantId,
            _: Topic,
            records: &[Record],
        ) -> Result<(), String> {
            if self.fail.load(Ordering::Relaxed) > 0 {
                self.fail.fetch_sub(1, Ordering::Relaxed);
                return Err("not yet".into());
            }
            self.seen.lock().unwrap().extend(records.iter().map(|r| (tenant.clone(), r.offset)));
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_tenant_is_consumed_errors_are_retried_and_a_restart_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let log: Arc<dyn EventLog> =
            Arc::new(EmbeddedLog::open(&path, Default::default(), Clock::system()).await.unwrap());
        let (a, b) = (TenantId::generate(), TenantId::generate());
        log.append(
            &a,
            Topic::Events,
            vec![event(None, "click", "u1", 1), event(None, "click", "u1", 2)],
        )
        .await
        .unwrap();
        log.append(&b, Topic::Events, vec![event(None, "click", "u2", 3)]).await.unwrap();
        let rec = Arc::new(Recorder { fail: AtomicU64::new(1), ..Default::default() });
        let mut cfg = ConsumerConfig::new("features", &[Topic::Events]);
        cfg.sweep = Duration::from_millis(50);
        cfg.idle_wait = Duration::from_millis(20);
        let consumer = Consumer::new(log.clone(), cfg.clone(), rec.clone()).unwrap();
        let stats = consumer.stats();
        let running = consumer.run();
        // Seen by the handler, and committed (counted after the commit).
        let handled = async {
            while rec.seen.lock().unwrap().len() < 3 || stats.handled.load(Ordering::Relaxed) < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            () = running => unreachable!("the consumer runs until dropped"),
            () = handled => {}
            () = tokio::time::sleep(Duration::from_secs(20)) => panic!("not consumed: {:?}", rec.seen.lock().unwrap()),
        }
        assert_eq!(stats.errors.load(Ordering::Relaxed), 1);
        let metrics = Arc::new(ConsumerMetrics::default());
        metrics.add("features", stats.clone());
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(metrics));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("tessera_consumer_handled_total{consumer=\"features\"} 3"), "{text}");
        assert!(text.contains("tessera_consumer_errors_total{consumer=\"features\"} 1"), "{text}");
        assert!(text.contains("tessera_consumer_lag{consumer=\"features\"} "), "{text}");
        let mut seen = rec.seen.lock().unwrap().clone();
        seen.sort();
        let mut want = vec![(a.clone(), 1), (a.clone(), 2), (b.clone(), 1)];
        want.sort();
        assert_eq!(seen, want, "each record once after the retry");

        // A new instance of the group starts after the commits: only the new record.
        log.append(&a, Topic::Events, vec![event(None, "click", "u1", 4)]).await.unwrap();
        let reopened: Arc<dyn EventLog> =
            Arc::new(EmbeddedLog::open(&path, Default::default(), Clock::system()).await.unwrap());
        let rec2 = Arc::new(Recorder::default());
        let consumer = Consumer::new(reopened, cfg, rec2.clone()).unwrap();
        let handled = async {
            while rec2.seen.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::select! {
            () = consumer.run() => unreachable!(),
            () = handled => {}
            () = tokio::time::sleep(Duration::from_secs(20)) => panic!("not resumed"),
        }
        assert_eq!(*rec2.seen.lock().unwrap(), [(a, 3)]);
    }
}
