//! `tessera serve`: open the store, make sure a platform admin can get in,
//! build the app and serve until SIGTERM or ctrl-c, letting in-flight
//! requests finish within the grace period.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use std::sync::Arc;
use tessera_core::apikey::{NewKey, mint};
use tessera_core::audit::AuditActor;
use tessera_core::auth::SystemCtx;

use tessera_core::config::{BatchSettings, EngineConfig, LogFormat};
use tessera_core::model::NewModel;
use tessera_core::role::Role;
use tessera_core::time::Timestamp;
use tessera_engine::batcher::BatchConfig;
use tessera_engine::pool::{ModelPool, ModelSource, PoolConfig, SourceKind};
use tessera_engine::{fetch, ort_env};
use tessera_events::embedded::EmbeddedLog;
use tessera_events::ingest::IngestLimits;
use tessera_events::nats::{NatsConfig, NatsLog};
use tessera_events::{EventLog, Retention};
use tessera_gateway::{AppState, GatewayConfig};
use tessera_store::{KeyOwner, MetadataStore, ModelScope, StoreError};
use tracing::{info, warn};

use crate::cli::ServeArgs;

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let cfg = crate::config::load(&args)?;
    init_logging(cfg.log_format);
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data dir {}", cfg.data_dir.display()))?;
    let (store, artifacts) = tessera_store::open_with_artifacts(&cfg.database, &cfg.data_dir)
        .await
        .with_context(|| format!("cannot open metadata store {}", cfg.database.display()))?;
    let sys = SystemCtx::bootstrap();
    store.ensure_default_plans(&sys).await.context("cannot create default plans")?;
    tessera_serving::alerts::ensure_builtin(&*store, &sys)
        .await
        .context("cannot create the built-in alert rules")?;
    if cfg.admin_key.is_none() {
        bootstrap_admin_key(&*store, &sys, &cfg.data_dir).await?;
    }
    if cfg.redis_url.is_some() {
        info!("redis_url set: rate, token and concurrency limits hold across every replica");
    }
    let events = open_event_log(&cfg).await?;
    let features = open_feature_stores(&cfg).await?;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let addr = listener.local_addr()?;
    let backend = store.backend();
    let models = start_models(&cfg.engine);
    register_default_model(&*store, &sys).await?;
    let state = AppState::new(
        store,
        artifacts,
        GatewayConfig {
            max_body_bytes: cfg.max_body_bytes,
            jwt: cfg.jwt.clone(),
            admin_key: cfg.admin_key.clone(),
            max_artifact_bytes: cfg.max_artifact_bytes,
            serving: tessera_serving::ServingConfig {
                cache_ttl: cfg.key_cache_ttl,
                breaker: cfg.breaker.into(),
                redis_url: cfg.redis_url.clone(),
                redis_timeout: cfg.redis_timeout,
                cache_max_bytes: cfg.cache_max_bytes,
                events: tessera_serving::EventSettings {
                    ingest: IngestLimits {
                        max_events: cfg.events.max_batch,
                        max_event_bytes: cfg.events.max_event_bytes,
                    },
                    compact_every: cfg.events.compact_every,
                    feedback_horizon: cfg.events.feedback_horizon,
                    alert_eval_interval: cfg.alert_eval_interval,
                },
            },
        },
        models,
        events,
        features,
    );
    let services = state.services().clone();
    let app = tessera_gateway::app(state);
    info!(%addr, store = backend, database = %cfg.database.display(), "tessera listening");
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    #[expect(
        clippy::disallowed_methods,
        reason = "the signal watcher lives as long as the process"
    )]
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut graceful = stop_rx.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        // Err means the signal task is gone; shutting down is right then too.
        let _ = graceful.wait_for(|stop| *stop).await;
        info!("shutting down; letting in-flight requests finish");
    });
    let mut deadline = stop_rx;
    let grace = cfg.shutdown_grace;
    tokio::select! {
        r = server.into_future() => r.context("server failed")?,
        _ = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => warn!(grace_secs = grace.as_secs(), "grace period over; exiting with requests in flight"),
    }
    // Background work ends (shadows, usage records being priced, Redis
    // retries), then every usage record made so far is written.
    services.shutdown(std::time::Duration::from_secs(5)).await;
    info!("stopped");
    Ok(())
}

/// The event log: NATS JetStream with `nats_url` (the server may come up
/// later: calls fail as unavailable until it answers), else the embedded
/// log in the data dir.
async fn open_event_log(cfg: &tessera_core::config::Config) -> anyhow::Result<Arc<dyn EventLog>> {
    let e = &cfg.events;
    let retention = Retention {
        max_age: e.retention,
        max_bytes: e.max_bytes_per_tenant,
        dedupe_window: e.dedupe_window,
    };
    Ok(match &cfg.nats_url {
        Some(url) => {
            let mut n = NatsConfig::new(url.clone());
            n.retention = retention;
            n.timeout = e.nats_timeout;
            n.prefix = e.nats_prefix.clone();
            info!(
                "events on NATS JetStream: a stream per tenant, {}_<tenant id>",
                e.nats_prefix.to_ascii_uppercase()
            );
            Arc::new(NatsLog::connect(n).await.context("cannot start the NATS event log")?)
        }
        None => {
            let path = cfg.data_dir.join("events.db");
            Arc::new(
                EmbeddedLog::open(&path, retention, tessera_core::time::Clock::system())
                    .await
                    .with_context(|| format!("cannot open the event log {}", path.display()))?,
            )
        }
    })
}

/// The feature store's stores: the online store and the stream tiles in
/// Redis with `redis_url` (every replica reads and adds to the same), else
/// embedded in the data dir; the offline log with the metadata, in
/// PostgreSQL (every replica reads it) or a SQLite file of its own.
async fn open_feature_stores(
    cfg: &tessera_core::config::Config,
) -> anyhow::Result<tessera_features::Stores> {
    use tessera_core::config::DatabaseUrl;
    use tessera_features::offline::{OfflineStore, PgOffline, SqliteOffline};
    use tessera_features::stream::{embedded::EmbeddedTiles, redis_tiles::RedisTiles};
    let offline: Arc<dyn OfflineStore> = match &cfg.database {
        DatabaseUrl::Postgres(url) => Arc::new(
            PgOffline::connect(url)
                .await
                .context("cannot open the offline feature log in PostgreSQL")?,
        ),
        DatabaseUrl::Sqlite(_) => {
            let path = cfg.data_dir.join("offline.db");
            Arc::new(SqliteOffline::open(&path).await.with_context(|| {
                format!("cannot open the offline feature log {}", path.display())
            })?)
        }
    };
    Ok(match &cfg.redis_url {
        Some(url) => {
            info!("online features in Redis: a hash per entity key, tessera:fs:<tenant>:<key>");
            let online = tessera_features::redis_store::RedisOnline::new(
                url,
                "tessera:fs",
                cfg.redis_timeout,
            )
            .context("cannot use redis_url for the online feature store")?;
            let tiles = RedisTiles::new(url, "tessera:fs:tiles", cfg.redis_timeout)
                .context("cannot use redis_url for stream feature tiles")?;
            tessera_features::Stores {
                online: Arc::new(online),
                tiles: Arc::new(tiles),
                offline,
                monitor: Arc::default(),
            }
        }
        None => {
            let path = cfg.data_dir.join("features.db");
            let online =
                tessera_features::embedded::EmbeddedOnline::open(&path).await.with_context(
                    || format!("cannot open the online feature store {}", path.display()),
                )?;
            let tiles = EmbeddedTiles::new(online.writer())
                .await
                .with_context(|| format!("cannot open the stream tiles in {}", path.display()))?;
            tessera_features::Stores {
                online: Arc::new(online),
                tiles: Arc::new(tiles),
                offline,
                monitor: Arc::default(),
            }
        }
    })
}

/// The model pool; the default model loads in the background (fetched first
/// when missing), so the server answers at once and the model reports not
/// ready until it is loaded.
fn start_models(cfg: &EngineConfig) -> Arc<ModelPool> {
    let cache = cfg.model_cache_dir.clone().unwrap_or_else(fetch::cache_dir);
    let batch = |b: BatchSettings| BatchConfig {
        max_batch_size: b.max_batch_size,
        max_batch_tokens: b.max_batch_tokens,
        max_queue_delay: b.max_queue_delay,
        queue_capacity: b.queue_capacity,
    };
    let pool = ModelPool::new(PoolConfig {
        cache_dir: cache.clone(),
        batch: batch(cfg.batch()),
        per_model: cfg.per_model.iter().map(|(k, v)| (k.clone(), batch(*v))).collect(),
        load_wait: cfg.load_wait,
        intra_threads: cfg.intra_threads,
        memory_budget_bytes: cfg.model_memory_mb.map(|mb| mb * 1024 * 1024),
    });
    if cfg.load_default_model {
        let custom = cfg.default_model_dir.clone();
        let dir = custom.clone().unwrap_or_else(|| fetch::default_model_dir(&cache));
        let fetch_cache = cache.clone();
        // A given directory needs only the runtime library; the default needs its files too.
        let prepare = move || {
            if custom.is_none() || !ort_env::library_path(&fetch_cache).is_file() {
                fetch::fetch(&fetch_cache, &mut |step| info!(step, "fetching the default model"))?;
            }
            Ok(())
        };
        let source = ModelSource {
            name: fetch::DEFAULT_MODEL.into(),
            version: "1".into(),
            kind: SourceKind::Bert(dir),
            pinned: true,
        };
        pool.load(source, Some(Box::new(prepare)));
    }
    pool
}

/// Registers the default embedding model as a platform model (once).
async fn register_default_model(store: &dyn MetadataStore, sys: &SystemCtx) -> anyhow::Result<()> {
    let new = NewModel {
        name: fetch::DEFAULT_MODEL.into(),
        task: "embedding".into(),
        runtime: "bert".into(),
        base_model: None,
        segment: None,
        scope: None,
        config: None,
    };
    let actor = AuditActor { key_id: None, request_id: Some("bootstrap".into()) };
    match store.create_model(ModelScope::Platform(sys), &new, None, &actor).await {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot register the default model: {e}")),
    }
}

/// With no `TESSERA_ADMIN_KEY` and no active platform key, mints one, saves
/// it to `<data-dir>/admin.key` (mode 0600) and prints it once. The file is
/// written before the key is stored, so a crash between the two leaves no
/// key that nobody holds.
async fn bootstrap_admin_key(
    store: &dyn MetadataStore,
    sys: &SystemCtx,
    data_dir: &Path,
) -> anyhow::Result<()> {
    if store.count_active_platform_keys(sys).await? > 0 {
        return Ok(());
    }
    let req = NewKey {
        name: "bootstrap".into(),
        role: Role::PlatformAdmin,
        scopes: None,
        expires_at: None,
    };
    let minted = mint(None, req, None, Timestamp::now());
    let path = data_dir.join("admin.key");
    write_private(&path, &minted.plaintext)
        .with_context(|| format!("cannot write {}", path.display()))?;
    let actor = AuditActor { key_id: None, request_id: Some("bootstrap".into()) };
    store.insert_key(KeyOwner::Platform(sys), &minted.record, &actor).await?;
    println!("created the platform admin key (shown once; also saved to {}):", path.display());
    println!("  {}", minted.plaintext);
    Ok(())
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

async fn shutdown_signal() {
    let ctrl_c = async {
        // If the handler cannot be installed, wait on SIGTERM alone rather
        // than shutting down at once.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
