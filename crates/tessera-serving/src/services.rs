//! [`Services`]: everything the inference pipeline runs on, built once per
//! process and shared (cheap to clone). The HTTP edge holds one and adds
//! authentication on top.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tessera_core::breaker::{BreakerConfig, Breakers};
use tessera_core::metrics::{counters, latency_histogram};
use tessera_core::model::{Deployment, Model};
use tessera_engine::pool::ModelPool;
use tessera_providers::Upstreams;
use tessera_store::artifacts::ArtifactStore;
use tessera_store::{MetadataStore, ModelView};

use crate::cache::ResponseCache;
use crate::event_schemas::EventSchemas;
use crate::feature_catalogs::FeatureCatalogs;
use crate::flight::Flights;
use crate::inference::ServeError;
use crate::inference::shadow::Shadows;
use crate::invalidate::{Change, Changes, InvalidatingStore};
use crate::limits::Limiter;
use crate::metering::Meter;
use crate::predictions::PredictionLog;
use crate::redis_link::RedisLink;
use crate::registry_cache::RegistryCache;
use crate::stream_features::StreamFeatures;
use crate::tasks::Tasks;
use crate::tenant_cache::TenantCache;
use tessera_events::EventLog;
use tessera_events::ingest::IngestLimits;
use tessera_events::runtime::{Consumer, ConsumerConfig, ConsumerMetrics};
use tessera_features::{OnlineStore, Stores};

/// Shadow requests in flight at most; beyond them shadows are dropped.
const SHADOW_SLOTS: usize = 64;

/// What the serving layer needs from the configuration.
#[derive(Debug, Clone)]
pub struct ServingConfig {
    /// How long per-replica caches trust what they read (<= 5 s).
    pub cache_ttl: Duration,
    pub breaker: BreakerConfig,
    /// Redis for limits and the L2 cache shared by every replica.
    pub redis_url: Option<String>,
    /// Longest wait for one Redis call before this replica decides alone.
    pub redis_timeout: Duration,
    /// Bytes of answers the in-process cache keeps.
    pub cache_max_bytes: u64,
    pub events: EventSettings,
}

/// What the event log's users here need: ingestion limits and how often
/// retention and compaction run.
#[derive(Debug, Clone, Copy)]
pub struct EventSettings {
    pub ingest: IngestLimits,
    pub compact_every: Duration,
    /// How old a prediction may be and still take feedback.
    pub feedback_horizon: Duration,
    /// How often each alert rule is evaluated.
    pub alert_eval_interval: Duration,
}

impl Default for EventSettings {
    fn default() -> Self {
        Self {
            ingest: IngestLimits::default(),
            compact_every: Duration::from_secs(300),
            feedback_horizon: Duration::from_secs(7 * 86_400),
            alert_eval_interval: Duration::from_secs(15),
        }
    }
}

impl Default for ServingConfig {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(2),
            breaker: BreakerConfig::default(),
            redis_url: None,
            redis_timeout: Duration::from_millis(100),
            cache_max_bytes: 256 << 20,
            events: EventSettings::default(),
        }
    }
}

#[derive(Clone)]
pub struct Services {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn MetadataStore>,
    changes: Arc<Changes>,
    artifacts: Arc<dyn ArtifactStore>,
    models: Arc<ModelPool>,
    tenants: Arc<TenantCache>,
    registry: Arc<RegistryCache>,
    breakers: Arc<Breakers>,
    upstreams: Upstreams,
    limiter: Arc<Limiter>,
    cache: ResponseCache,
    meter: Arc<Meter>,
    shadows: Shadows,
    /// One request at a time starts loading a model from its artifact.
    loads: Flights,
    tasks: Tasks,
    events: Arc<dyn EventLog>,
    predictions: Arc<PredictionLog>,
    feedback: crate::feedback::Feedback,
    consumers: Arc<ConsumerMetrics>,
    event_schemas: Arc<EventSchemas>,
    event_settings: EventSettings,
    features: Stores,
    feature_catalogs: Arc<FeatureCatalogs>,
    trainer: Arc<crate::training::Trainer>,
    rollouts: Arc<crate::rollouts::Controller>,
    alerts: Arc<crate::alerts::Alerts>,
    /// Every metric of the process (the edge's too), encoded on `GET /metrics`.
    metrics: Registry,
}

impl Services {
    /// Builds every service over `store`, which is wrapped so that each
    /// change it writes reaches the caches ([`Services::changes`]). The
    /// services' metrics join `metrics`, the process's one registry (the
    /// edge's metrics already in it), kept for [`Services::encode_metrics`].
    pub fn new(
        store: Arc<dyn MetadataStore>,
        artifacts: Arc<dyn ArtifactStore>,
        cfg: ServingConfig,
        models: Arc<ModelPool>,
        events: Arc<dyn EventLog>,
        features: Stores,
        mut metrics: Registry,
    ) -> Self {
        let changes = Arc::new(Changes::default());
        let store: Arc<dyn MetadataStore> =
            Arc::new(InvalidatingStore::new(store, changes.clone()));
        // The URL was validated with the configuration; a client that cannot
        // be built leaves limits in process and the cache in L1.
        let redis = cfg.redis_url.as_deref().and_then(|url| {
            RedisLink::open(url, cfg.redis_timeout)
                .map_err(|e| tracing::error!(error = %e, "redis unusable; limits in process, cache L1 only"))
                .ok()
                .map(Arc::new)
        });
        let tasks = Tasks::default();
        let limiter = Limiter::new(redis.clone(), tasks.clone());
        limiter.start_heartbeat();
        let tenants = Arc::new(TenantCache::new(cfg.cache_ttl));
        let registry = Arc::new(RegistryCache::new(cfg.cache_ttl));
        let meter = Meter::start(store.clone());
        let event_schemas = Arc::new(EventSchemas::new(cfg.cache_ttl));
        let feature_catalogs = Arc::new(FeatureCatalogs::new(cfg.cache_ttl));
        subscribe(&changes, &tenants, &registry, &meter, &event_schemas, &feature_catalogs);
        let shadows = Shadows {
            slots: Arc::new(tokio::sync::Semaphore::new(SHADOW_SLOTS)),
            stats: Arc::new(ShadowStats::default()),
            tasks: tasks.clone(),
        };
        let breakers = Arc::new(Breakers::new(cfg.breaker));
        let upstreams = Upstreams::default();
        let cache = ResponseCache::new(cfg.cache_max_bytes, redis, tasks.clone());
        shadows.stats.register(&mut metrics);
        metrics.register_collector(Box::new(models.clone()));
        metrics.register_collector(Box::new(breakers.clone()));
        limiter.register(&mut metrics);
        cache.register(&mut metrics);
        meter.register(&mut metrics);
        upstreams.stats.register(&mut metrics);
        let predictions = PredictionLog::start(events.clone());
        predictions.register(&mut metrics);
        let feedback = crate::feedback::Feedback::new(cfg.events.feedback_horizon);
        feedback.register(&mut metrics);
        let rollouts = Arc::new(crate::rollouts::Controller::default());
        rollouts.register(&mut metrics);
        let alerts = Arc::new(crate::alerts::Alerts::new(cfg.events.alert_eval_interval));
        alerts.register(&mut metrics);
        let consumers = Arc::new(ConsumerMetrics::default());
        metrics.register_collector(Box::new(consumers.clone()));
        start_compaction(&tasks, events.clone(), cfg.events.compact_every);
        let stream = StreamFeatures::new(
            store.clone(),
            feature_catalogs.clone(),
            features.clone(),
            tessera_core::auth::SystemCtx::bootstrap(),
        );
        stream.register(&mut metrics);
        metrics.register_collector(Box::new(features.monitor.clone()));
        let stream = Consumer::new(
            events.clone(),
            ConsumerConfig::new(crate::stream_features::GROUP, &[tessera_events::Topic::Events]),
            Arc::new(stream),
        );
        let services = Self {
            inner: Arc::new(Inner {
                store,
                changes,
                artifacts,
                models,
                tenants,
                registry,
                breakers,
                upstreams,
                limiter,
                cache,
                meter,
                shadows,
                loads: Flights::default(),
                tasks,
                events,
                predictions,
                feedback,
                consumers,
                event_schemas,
                event_settings: cfg.events,
                features,
                feature_catalogs,
                trainer: Arc::default(),
                rollouts,
                alerts,
                metrics,
            }),
        };
        let runner =
            crate::training::run(services.clone(), tessera_core::auth::SystemCtx::bootstrap());
        services.inner.tasks.spawn_loop(runner);
        let controller =
            crate::rollouts::run(services.clone(), tessera_core::auth::SystemCtx::bootstrap());
        services.inner.tasks.spawn_loop(controller);
        let alerting =
            crate::alerts::run(services.clone(), tessera_core::auth::SystemCtx::bootstrap());
        services.inner.tasks.spawn_loop(alerting);
        match stream {
            Ok(c) => services.run_consumer(c),
            Err(e) => tracing::error!(error = %e, "the stream feature pipeline cannot start"),
        }
        services
    }

    /// The metadata store (every write announces its change).
    pub fn store(&self) -> &dyn MetadataStore {
        &*self.inner.store
    }
    pub fn store_arc(&self) -> Arc<dyn MetadataStore> {
        self.inner.store.clone()
    }
    /// Where the store announces its changes; other caches subscribe here.
    pub fn changes(&self) -> &Changes {
        &self.inner.changes
    }
    pub fn artifacts(&self) -> &dyn ArtifactStore {
        &*self.inner.artifacts
    }
    /// Loaded models and their batchers.
    pub fn models(&self) -> &Arc<ModelPool> {
        &self.inner.models
    }
    /// Single flight for starting model loads.
    pub fn model_loads(&self) -> &Flights {
        &self.inner.loads
    }
    /// Tenants with their plans, cached per replica.
    pub fn tenants(&self) -> &Arc<TenantCache> {
        &self.inner.tenants
    }
    /// Model resolution and deployments, cached per replica.
    pub fn registry(&self) -> &RegistryCache {
        &self.inner.registry
    }
    /// A model's deployment; `None` when it has none.
    pub async fn deployment(
        &self,
        view: ModelView<'_>,
        model: &Model,
    ) -> Result<Option<Arc<Deployment>>, ServeError> {
        self.inner.registry.deployment(self.store(), view, model).await
    }
    /// Circuit breakers of this replica's backends.
    pub fn breakers(&self) -> &Breakers {
        &self.inner.breakers
    }
    /// Clients, configs, retry budget and counters for remote providers.
    pub fn upstreams(&self) -> &Upstreams {
        &self.inner.upstreams
    }
    /// Admission: rate, token, concurrency and budget limits.
    pub fn limiter(&self) -> &Arc<Limiter> {
        &self.inner.limiter
    }
    /// The two-level response cache.
    pub fn cache(&self) -> &ResponseCache {
        &self.inner.cache
    }
    /// Usage metering: the queue to the batched writer, and prices.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.inner.meter
    }
    /// What shadow traffic runs on.
    pub fn shadows(&self) -> &Shadows {
        &self.inner.shadows
    }
    /// The event log (embedded or NATS JetStream).
    pub fn events(&self) -> &Arc<dyn EventLog> {
        &self.inner.events
    }
    /// Prediction records: the queue to their writer.
    pub fn feedback(&self) -> &crate::feedback::Feedback {
        &self.inner.feedback
    }

    pub fn predictions(&self) -> &Arc<PredictionLog> {
        &self.inner.predictions
    }
    /// Runs a consumer of the event log in the background until shutdown;
    /// its lag and errors show on `/metrics`.
    pub fn run_consumer(&self, c: Consumer) {
        self.inner.consumers.add(c.group(), c.stats());
        self.inner.tasks.spawn_loop(c.run());
    }
    /// The online feature store (embedded, or Redis with `redis_url`).
    pub fn online(&self) -> &dyn OnlineStore {
        &*self.inner.features.online
    }
    /// The feature store's online store, stream tiles and offline log.
    pub fn feature_stores(&self) -> &Stores {
        &self.inner.features
    }
    /// Tenants' feature catalogs, read through.
    pub fn feature_catalogs(&self) -> &FeatureCatalogs {
        &self.inner.feature_catalogs
    }
    /// The rollout controller of this replica.
    pub fn rollouts(&self) -> &crate::rollouts::Controller {
        &self.inner.rollouts
    }
    /// The alert controller of this replica.
    pub fn alerts(&self) -> &crate::alerts::Alerts {
        &self.inner.alerts
    }
    /// The training job runner of this replica.
    pub fn trainer(&self) -> &crate::training::Trainer {
        &self.inner.trainer
    }
    /// Tenants' event type schemas.
    pub fn event_schemas(&self) -> &EventSchemas {
        &self.inner.event_schemas
    }
    /// What one ingestion request may hold.
    pub fn ingest_limits(&self) -> IngestLimits {
        self.inner.event_settings.ingest
    }
    /// The owner of background tasks: stopped and awaited on shutdown.
    pub fn tasks(&self) -> &Tasks {
        &self.inner.tasks
    }

    /// Every metric of the process as OpenMetrics text.
    pub fn encode_metrics(&self) -> Result<String, std::fmt::Error> {
        tessera_core::metrics::encode(&self.inner.metrics)
    }

    /// Stops background loops, waits up to `grace` for the other tasks,
    /// then writes every usage and prediction record made so far.
    pub async fn shutdown(&self, grace: Duration) {
        let left = self.inner.tasks.shutdown(grace).await;
        if left > 0 {
            tracing::warn!(tasks = left, "background tasks still running at exit");
        }
        self.inner.meter.shutdown().await;
        self.inner.predictions.shutdown().await;
    }
}

/// Applies the event log's retention and removes tombstoned records, every
/// `every` (the first pass soon after start).
fn start_compaction(tasks: &Tasks, log: Arc<dyn EventLog>, every: Duration) {
    tasks.spawn_loop(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(10), every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match log.compact().await {
                Ok(c) if c.expired + c.over_size + c.tombstoned > 0 => tracing::info!(
                    expired = c.expired,
                    over_size = c.over_size,
                    tombstoned = c.tombstoned,
                    "event log compacted"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event log compaction failed; next pass later")
                }
            }
        }
    });
}

/// Drops each per-replica cache's entries that a change makes wrong. The
/// caches are held weakly: they hold the store, which holds this.
fn subscribe(
    changes: &Changes,
    tenants: &Arc<TenantCache>,
    registry: &Arc<RegistryCache>,
    meter: &Arc<Meter>,
    event_schemas: &Arc<EventSchemas>,
    feature_catalogs: &Arc<FeatureCatalogs>,
) {
    let event_schemas = Arc::downgrade(event_schemas);
    let feature_catalogs = Arc::downgrade(feature_catalogs);
    let tenants = Arc::downgrade(tenants);
    let (registry, meter) = (Arc::downgrade(registry), Arc::downgrade(meter));
    changes.subscribe(move |change| match change {
        Change::Plan => {
            if let Some(t) = tenants.upgrade() {
                t.clear();
            }
        }
        Change::Tenant(id) => {
            if let Some(t) = tenants.upgrade() {
                t.evict(id);
            }
        }
        Change::Key(_) => {}
        Change::Registry => {
            if let Some(r) = registry.upgrade() {
                r.clear();
            }
        }
        Change::Deployment(model_id) => {
            if let Some(r) = registry.upgrade() {
                r.forget_deployment(model_id);
            }
        }
        Change::EventTypes(tenant) => {
            if let Some(e) = event_schemas.upgrade() {
                e.evict(tenant);
            }
        }
        Change::Features(tenant) => {
            if let Some(f) = feature_catalogs.upgrade() {
                f.evict(tenant);
            }
        }
        Change::Prices => {
            if let Some(m) = meter.upgrade() {
                m.prices_changed();
            }
        }
    });
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(non_camel_case_types, reason = "the variants are the exported label values")]
enum ShadowOutcome {
    ok,
    error,
    dropped,
}

/// The label of the shadow metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    outcome: ShadowOutcome,
}

/// Shadow requests by outcome, and their latency.
pub struct ShadowStats {
    requests: Family<ShadowLabels, Counter>,
    ok: Counter,
    error: Counter,
    dropped: Counter,
    latency: Family<ShadowLabels, Histogram, fn() -> Histogram>,
    ok_latency: Histogram,
    error_latency: Histogram,
}

impl Default for ShadowStats {
    fn default() -> Self {
        use ShadowOutcome as O;
        let requests = Family::default();
        let [ok, error, dropped] = counters(
            &requests,
            [O::ok, O::error, O::dropped].map(|outcome| ShadowLabels { outcome }),
        );
        let latency: Family<_, _, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let [ok_latency, error_latency] =
            [O::ok, O::error].map(|outcome| latency.get_or_create_owned(&ShadowLabels { outcome }));
        Self { requests, ok, error, dropped, latency, ok_latency, error_latency }
    }
}

impl ShadowStats {
    /// A shadow dropped for want of a slot.
    pub fn dropped(&self) {
        self.dropped.inc();
    }

    /// A finished shadow: `ok` or `error`, and how long it took.
    pub fn done(&self, ok: bool, elapsed: Duration) {
        let (counter, latency) =
            if ok { (&self.ok, &self.ok_latency) } else { (&self.error, &self.error_latency) };
        counter.inc();
        latency.observe(elapsed.as_secs_f64());
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tessera_shadow_requests",
            "Mirrored shadow requests by outcome",
            self.requests.clone(),
        );
        registry.register(
            "tessera_shadow_duration_seconds",
            "Latency of mirrored shadow requests by outcome",
            self.latency.clone(),
        );
    }
}
