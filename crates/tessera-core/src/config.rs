//! The configuration schema: raw layers as read from a TOML file, the
//! environment and flags, merged and validated once into a typed [`Config`].
//! Reading files and the environment is the binary's job; this is the shape.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::ValidationError;
use crate::jwt::JwtRules;

/// The configuration as layers give it, merged as TOML tables (file, then
/// `TESSERA__*` variables, then flags) and deserialized once.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub redis_url: Option<String>,
    /// Longest wait for one Redis call, in ms, before a replica decides alone.
    pub redis_timeout_ms: Option<u64>,
    /// MiB of answers the in-process (L1) cache keeps.
    pub cache_max_mb: Option<u64>,
    pub nats_url: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: Option<usize>,
    /// Largest model artifact upload, in bytes.
    pub max_artifact_bytes: Option<usize>,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_grace_secs: Option<u64>,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub engine: RawEngine,
    #[serde(default)]
    pub breaker: RawBreaker,
    #[serde(default)]
    pub events: RawEvents,
    #[serde(default)]
    pub alerts: RawAlerts,
}

/// `[alerts]`: how often alert rules are evaluated.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// Milliseconds between evaluations of a rule (default 15000, at least 100).
    pub eval_interval_ms: Option<u64>,
}

/// `[events]`: what the event log keeps and what one ingestion request may hold.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEvents {
    /// Hours a tenant's events are kept (default 168, a week).
    pub retention_hours: Option<u64>,
    /// Hours after a prediction that feedback for it is still joined
    /// (default and at most the retention: its record must still be there).
    pub feedback_horizon_hours: Option<u64>,
    /// MiB of events kept per tenant; the oldest go first (default 1024).
    pub max_mb_per_tenant: Option<u64>,
    /// Seconds an event id is remembered for idempotent retries on NATS
    /// (default 86400; the embedded log remembers as long as it keeps the event).
    pub dedupe_window_secs: Option<u64>,
    /// Events per `POST /v1/events` (default 1000).
    pub max_batch: Option<usize>,
    /// Bytes per event, as stored (default 65536, at most 1 MiB).
    pub max_event_bytes: Option<usize>,
    /// Seconds between retention and compaction passes (default 300).
    pub compact_every_secs: Option<u64>,
    /// Longest wait for NATS, in ms, before a call fails as unavailable (default 2000).
    pub nats_timeout_ms: Option<u64>,
    /// Names this deployment's subjects (`<prefix>.<tenant>.<topic>`) and
    /// streams (`<PREFIX>_<tenant>`) on NATS (default `tessera`): deployments
    /// sharing a NATS server need their own, or each consumes the other's.
    pub nats_prefix: Option<String>,
}

/// `[breaker]`: when a backend's circuit breaker opens and how it recovers.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBreaker {
    /// Rolling window over which the failure ratio is computed.
    pub window_ms: Option<u64>,
    /// Calls in the window before the ratio can open the breaker.
    pub min_calls: Option<usize>,
    /// Failure ratio (0-1] that opens the breaker.
    pub failure_ratio: Option<f64>,
    /// Consecutive failures that open the breaker whatever the ratio.
    pub consecutive_failures: Option<u32>,
    /// Time open before probe calls are let through.
    pub cool_down_ms: Option<u64>,
    /// Successful probes that close it again.
    pub probes: Option<u32>,
}

/// Validated `[breaker]` settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerSettings {
    pub window: Duration,
    pub min_calls: usize,
    pub failure_ratio: f64,
    pub consecutive_failures: u32,
    pub cool_down: Duration,
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(30),
            min_calls: 20,
            failure_ratio: 0.5,
            consecutive_failures: 5,
            cool_down: Duration::from_secs(10),
            probes: 3,
        }
    }
}

impl BreakerSettings {
    pub fn from_raw(r: &RawBreaker) -> Result<Self, ValidationError> {
        let d = Self::default();
        let ratio = r.failure_ratio.unwrap_or(d.failure_ratio);
        if !(ratio > 0.0 && ratio <= 1.0) {
            return Err(ValidationError::new(
                "breaker.failure_ratio",
                format!("breaker.failure_ratio must be in (0, 1], got {ratio}"),
            ));
        }
        let positive = |name: &str, v: u64| {
            if v == 0 {
                Err(ValidationError::new(name, format!("{name} must be at least 1")))
            } else {
                Ok(v)
            }
        };
        Ok(Self {
            window: Duration::from_millis(positive(
                "breaker.window_ms",
                r.window_ms.unwrap_or(d.window.as_millis() as u64),
            )?),
            min_calls: positive("breaker.min_calls", r.min_calls.unwrap_or(d.min_calls) as u64)?
                as usize,
            failure_ratio: ratio,
            consecutive_failures: positive(
                "breaker.consecutive_failures",
                u64::from(r.consecutive_failures.unwrap_or(d.consecutive_failures)),
            )? as u32,
            cool_down: Duration::from_millis(positive(
                "breaker.cool_down_ms",
                r.cool_down_ms.unwrap_or(d.cool_down.as_millis() as u64),
            )?),
            probes: positive("breaker.probes", u64::from(r.probes.unwrap_or(d.probes)))? as u32,
        })
    }
}

/// `[engine]`: models and dynamic batching.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEngine {
    /// Load (fetching if missing) the default embedding model at start.
    pub load_default_model: Option<bool>,
    /// Model cache directory [default: $TESSERA_HOME/models or ~/.cache/tessera/models].
    pub model_cache_dir: Option<PathBuf>,
    /// Serve this BERT-family directory (or Hugging Face cache entry) as the
    /// default model instead of fetching all-MiniLM-L6-v2.
    pub default_model_dir: Option<PathBuf>,
    pub max_batch_size: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub max_queue_delay_us: Option<u64>,
    /// Requests queued per model beyond which callers get 429.
    pub queue_capacity: Option<usize>,
    /// How long a request waits for a loading model before 503.
    pub load_wait_ms: Option<u64>,
    /// Intra-op threads per inference worker.
    pub intra_threads: Option<usize>,
    /// Memory budget for loaded models, in MiB; least recently used models
    /// beyond it are unloaded.
    pub model_memory_mb: Option<u64>,
    /// Per-model batching overrides, by model name (platform models) or
    /// model id (`mdl_...`): `[engine.models.all-minilm-l6-v2] max_batch_size = 64`.
    #[serde(default)]
    pub models: std::collections::BTreeMap<String, RawBatch>,
}

/// Batching settings of one model; unset fields take the `[engine]` values.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBatch {
    pub max_batch_size: Option<usize>,
    pub max_batch_tokens: Option<usize>,
    pub max_queue_delay_us: Option<u64>,
    pub queue_capacity: Option<usize>,
}

/// Validated batching settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_queue_delay: Duration,
    pub queue_capacity: usize,
}

/// `[auth]`: key cache and JWT verification.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// How long a verified key is trusted before it is re-read from the store,
    /// in milliseconds. Bounds how long a revocation takes on other replicas.
    pub key_cache_ttl_ms: Option<u64>,
    /// HS256 secret, as a reference: `env:NAME` or `file:/path`.
    pub jwt_hs256_secret: Option<String>,
    /// JWKS URL of an OIDC provider, for RS256/ES256 tokens.
    pub jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub jwt_tenant_claim: Option<String>,
    pub jwt_role_claim: Option<String>,
}

/// A secret value; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Self(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// Path of the SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` URL.
    Postgres(String),
}

impl DatabaseUrl {
    pub fn parse(s: &str) -> Result<DatabaseUrl, ValidationError> {
        if let Some(path) = s.strip_prefix("sqlite://").or_else(|| s.strip_prefix("sqlite:")) {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(ValidationError::new("database_url", "sqlite: url needs a file path"));
            }
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(s.to_owned()));
        }
        Err(ValidationError::new(
            "database_url",
            format!("database_url {:?} must start with sqlite: or postgres://", redact_url(s)),
        ))
    }

    /// The URL with any password replaced, for logs.
    pub fn display(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(p) => format!("sqlite:{}", p.display()),
            DatabaseUrl::Postgres(u) => redact_url(u),
        }
    }
}

/// Replaces the password in `scheme://user:pass@host` with `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let Some((auth, host)) = rest.split_once('@') else { return url.to_owned() };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// JWT settings, present when any JWT source is configured.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    pub hs256_secret: Option<Secret>,
    pub jwks_url: Option<String>,
    pub rules: JwtRules,
}

/// The validated configuration of `tessera serve`.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub redis_url: Option<String>,
    pub redis_timeout: Duration,
    pub cache_max_bytes: u64,
    pub nats_url: Option<String>,
    pub log_format: LogFormat,
    pub max_body_bytes: usize,
    pub max_artifact_bytes: usize,
    pub shutdown_grace: Duration,
    pub key_cache_ttl: Duration,
    pub jwt: Option<JwtConfig>,
    /// The platform admin key from `TESSERA_ADMIN_KEY`.
    pub admin_key: Option<Secret>,
    pub engine: EngineConfig,
    pub breaker: BreakerSettings,
    pub events: EventsConfig,
    /// How often each alert rule is evaluated.
    pub alert_eval_interval: Duration,
}

/// Validated `[events]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsConfig {
    pub retention: Duration,
    pub feedback_horizon: Duration,
    pub max_bytes_per_tenant: u64,
    pub dedupe_window: Duration,
    pub max_batch: usize,
    pub max_event_bytes: usize,
    pub compact_every: Duration,
    pub nats_timeout: Duration,
    pub nats_prefix: String,
}

/// A NATS subject prefix: a lowercase letter, then lowercase letters,
/// digits or `_`, at most 32 (it names streams upper-cased).
fn nats_prefix(p: Option<&str>) -> Result<String, ValidationError> {
    let p = p.unwrap_or("tessera");
    let ok = p.len() <= 32
        && p.starts_with(|c: char| c.is_ascii_lowercase())
        && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(p.to_owned())
    } else {
        Err(ValidationError::new(
            "events.nats_prefix",
            format!(
                "events.nats_prefix must be a lowercase letter then up to 31 lowercase letters, digits or _, got {p:?}"
            ),
        ))
    }
}

impl EventsConfig {
    fn from_raw(r: &RawEvents) -> Result<Self, ValidationError> {
        let positive = |field: &str, v: Option<u64>, default: u64| match v {
            Some(0) => Err(ValidationError::new(field, format!("{field} must be at least 1"))),
            Some(v) => Ok(v),
            None => Ok(default),
        };
        let max_batch = r.max_batch.unwrap_or(1000);
        if !(1..=100_000).contains(&max_batch) {
            return Err(ValidationError::new(
                "events.max_batch",
                format!("events.max_batch must be 1-100000, got {max_batch}"),
            ));
        }
        let max_event_bytes = r.max_event_bytes.unwrap_or(64 << 10);
        if !(256..=(1 << 20)).contains(&max_event_bytes) {
            return Err(ValidationError::new(
                "events.max_event_bytes",
                format!("events.max_event_bytes must be 256-1048576, got {max_event_bytes}"),
            ));
        }
        let retention_hours = positive("events.retention_hours", r.retention_hours, 168)?;
        let horizon_hours =
            positive("events.feedback_horizon_hours", r.feedback_horizon_hours, retention_hours)?;
        if horizon_hours > retention_hours {
            return Err(ValidationError::new(
                "events.feedback_horizon_hours",
                format!(
                    "events.feedback_horizon_hours ({horizon_hours}) is at most events.retention_hours ({retention_hours}): feedback joins to a prediction's record in the log"
                ),
            ));
        }
        Ok(Self {
            retention: Duration::from_secs(3600 * retention_hours),
            feedback_horizon: Duration::from_secs(3600 * horizon_hours),
            max_bytes_per_tenant: positive("events.max_mb_per_tenant", r.max_mb_per_tenant, 1024)?
                << 20,
            dedupe_window: Duration::from_secs(positive(
                "events.dedupe_window_secs",
                r.dedupe_window_secs,
                86_400,
            )?),
            max_batch,
            max_event_bytes,
            compact_every: Duration::from_secs(positive(
                "events.compact_every_secs",
                r.compact_every_secs,
                300,
            )?),
            nats_timeout: Duration::from_millis(
                positive("events.nats_timeout_ms", r.nats_timeout_ms, 2000)?.min(60_000),
            ),
            nats_prefix: nats_prefix(r.nats_prefix.as_deref())?,
        })
    }
}

/// Validated `[engine]` settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub load_default_model: bool,
    pub model_cache_dir: Option<PathBuf>,
    pub default_model_dir: Option<PathBuf>,
    pub max_batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_queue_delay: Duration,
    pub queue_capacity: usize,
    pub load_wait: Duration,
    pub intra_threads: usize,
    pub model_memory_mb: Option<u64>,
    /// Batching overrides by model name or id.
    pub per_model: std::collections::BTreeMap<String, BatchSettings>,
}

impl EngineConfig {
    /// The `[engine]` batching settings.
    pub fn batch(&self) -> BatchSettings {
        BatchSettings {
            max_batch_size: self.max_batch_size,
            max_batch_tokens: self.max_batch_tokens,
            max_queue_delay: self.max_queue_delay,
            queue_capacity: self.queue_capacity,
        }
    }

    fn from_raw(e: RawEngine) -> Result<EngineConfig, ValidationError> {
        let positive =
            |name: &str, v: Option<usize>, default: usize| -> Result<usize, ValidationError> {
                match v {
                    Some(0) => Err(ValidationError::new(
                        format!("engine.{name}"),
                        format!("engine.{name} must be at least 1"),
                    )),
                    Some(n) => Ok(n),
                    None => Ok(default),
                }
            };
        Ok(EngineConfig {
            load_default_model: e.load_default_model.unwrap_or(true),
            model_cache_dir: e.model_cache_dir,
            default_model_dir: e.default_model_dir,
            max_batch_size: positive("max_batch_size", e.max_batch_size, 32)?,
            max_batch_tokens: positive("max_batch_tokens", e.max_batch_tokens, 16_384)?,
            max_queue_delay: Duration::from_micros(e.max_queue_delay_us.unwrap_or(0)),
            queue_capacity: positive("queue_capacity", e.queue_capacity, 512)?,
            load_wait: Duration::from_millis(e.load_wait_ms.unwrap_or(10_000)),
            intra_threads: positive("intra_threads", e.intra_threads, 1)?,
            model_memory_mb: e.model_memory_mb,
            per_model: std::collections::BTreeMap::new(),
        })
        .and_then(|mut c: EngineConfig| {
            for (name, b) in e.models {
                let base = c.batch();
                let field = |f: &str| format!("engine.models.{name}.{f}");
                let pos = |f: &str, v: Option<usize>, d: usize| match v {
                    Some(0) => Err(ValidationError::new(
                        field(f),
                        format!("{} must be at least 1", field(f)),
                    )),
                    Some(n) => Ok(n),
                    None => Ok(d),
                };
                let s = BatchSettings {
                    max_batch_size: pos("max_batch_size", b.max_batch_size, base.max_batch_size)?,
                    max_batch_tokens: pos(
                        "max_batch_tokens",
                        b.max_batch_tokens,
                        base.max_batch_tokens,
                    )?,
                    max_queue_delay: b
                        .max_queue_delay_us
                        .map_or(base.max_queue_delay, Duration::from_micros),
                    queue_capacity: pos("queue_capacity", b.queue_capacity, base.queue_capacity)?,
                };
                c.per_model.insert(name, s);
            }
            Ok(c)
        })
    }
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATA_DIR: &str = "./tessera-data";
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;

impl Config {
    /// Validates a merged raw configuration. `resolve_secret` turns a secret
    /// reference (`env:NAME`, `file:/path`) into its value.
    pub fn from_raw(
        raw: RawConfig,
        admin_key: Option<Secret>,
        resolve_secret: impl Fn(&str) -> Result<Secret, String>,
    ) -> Result<Config, ValidationError> {
        let listen_s = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_s.parse::<SocketAddr>().map_err(|_| {
            ValidationError::new(
                "listen",
                format!("listen {listen_s:?} is not an address like 127.0.0.1:8080"),
            )
        })?;
        let data_dir = raw.data_dir.unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let database = match raw.database_url {
            Some(u) => DatabaseUrl::parse(&u)?,
            None => DatabaseUrl::Sqlite(data_dir.join("tessera.db")),
        };
        let redis_url = validate_scheme("redis_url", raw.redis_url, &["redis://", "rediss://"])?;
        let nats_url = validate_scheme("nats_url", raw.nats_url, &["nats://", "tls://"])?;
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ValidationError::new(
                    "log_format",
                    format!("log_format {other:?} must be text or json"),
                ));
            }
        };
        let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes < 1024 {
            return Err(ValidationError::new(
                "max_body_bytes",
                format!("max_body_bytes {max_body_bytes} is below the minimum of 1024"),
            ));
        }
        let a = raw.auth;
        let hs256_secret = a
            .jwt_hs256_secret
            .as_deref()
            .map(|r| {
                resolve_secret(r).map_err(|e| ValidationError::new("auth.jwt_hs256_secret", e))
            })
            .transpose()?;
        let jwks_url = validate_scheme("auth.jwks_url", a.jwks_url, &["http://", "https://"])?;
        let jwt = (hs256_secret.is_some() || jwks_url.is_some()).then(|| {
            let d = JwtRules::default();
            JwtConfig {
                hs256_secret,
                jwks_url,
                rules: JwtRules {
                    issuer: a.jwt_issuer,
                    audience: a.jwt_audience,
                    tenant_claim: a.jwt_tenant_claim.unwrap_or(d.tenant_claim),
                    role_claim: a.jwt_role_claim.unwrap_or(d.role_claim),
                    leeway_secs: d.leeway_secs,
                },
            }
        });
        if let Some(k) = &admin_key
            && k.expose().len() < 16
        {
            return Err(ValidationError::new(
                "TESSERA_ADMIN_KEY",
                "TESSERA_ADMIN_KEY must be at least 16 characters",
            ));
        }
        Ok(Config {
            listen,
            data_dir,
            database,
            redis_url,
            redis_timeout: Duration::from_millis(
                raw.redis_timeout_ms.unwrap_or(100).clamp(1, 10_000),
            ),
            cache_max_bytes: raw.cache_max_mb.unwrap_or(256).min(1 << 20) << 20,
            nats_url,
            log_format,
            max_body_bytes,
            max_artifact_bytes: raw.max_artifact_bytes.unwrap_or(512 * 1024 * 1024),
            shutdown_grace: Duration::from_secs(raw.shutdown_grace_secs.unwrap_or(30)),
            key_cache_ttl: Duration::from_millis(a.key_cache_ttl_ms.unwrap_or(2_000).min(5_000)),
            jwt,
            admin_key,
            breaker: BreakerSettings::from_raw(&raw.breaker)?,
            events: EventsConfig::from_raw(&raw.events)?,
            alert_eval_interval: match raw.alerts.eval_interval_ms {
                None => Duration::from_secs(15),
                Some(ms) if (100..=3_600_000).contains(&ms) => Duration::from_millis(ms),
                Some(ms) => {
                    return Err(ValidationError::new(
                        "alerts.eval_interval_ms",
                        format!("alerts.eval_interval_ms is 100 to 3600000, got {ms}"),
                    ));
                }
            },
            engine: EngineConfig::from_raw(raw.engine)?,
        })
    }
}

fn validate_scheme(
    param: &str,
    value: Option<String>,
    schemes: &[&str],
) -> Result<Option<String>, ValidationError> {
    match value {
        Some(v) if !schemes.iter().any(|s| v.starts_with(s) && v.len() > s.len()) => {
            Err(ValidationError::new(
                param,
                format!("{param} {:?} must start with {}", redact_url(&v), schemes.join(" or ")),
            ))
        }
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_secrets(_: &str) -> Result<Secret, String> {
        Err("no secrets here".into())
    }

    #[test]
    fn empty_config_is_the_embedded_default() {
        let c = Config::from_raw(RawConfig::default(), None, no_secrets).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.database, DatabaseUrl::Sqlite(PathBuf::from("./tessera-data/tessera.db")));
        assert!(c.jwt.is_none());
    }

    #[test]
    fn a_per_model_batch_override_keeps_the_other_defaults() {
        let mut engine = RawEngine::default();
        engine
            .models
            .insert("m".into(), RawBatch { max_batch_size: Some(4), ..Default::default() });
        let raw = RawConfig { engine, ..Default::default() };
        let c = Config::from_raw(raw, None, no_secrets).unwrap();
        let m = c.engine.per_model["m"];
        assert_eq!((m.max_batch_size, m.queue_capacity), (4, 512));
    }

    #[test]
    fn bad_urls_name_their_field() {
        let raw = RawConfig { redis_url: Some("http://x".into()), ..Default::default() };
        let err = Config::from_raw(raw, None, no_secrets).unwrap_err();
        assert_eq!(err.param.as_deref(), Some("redis_url"));
        let raw =
            RawConfig { database_url: Some("mysql://u:pw@h/db".into()), ..Default::default() };
        let err = Config::from_raw(raw, None, no_secrets).unwrap_err();
        assert!(!err.message.contains("pw"), "{}", err.message);
    }

    #[test]
    fn the_nats_prefix_is_checked() {
        let c = Config::from_raw(RawConfig::default(), None, no_secrets).unwrap();
        assert_eq!(c.events.nats_prefix, "tessera");
        for bad in ["Tessera", "1x", "a.b", "", &"x".repeat(33)] {
            let events = RawEvents { nats_prefix: Some(bad.to_owned()), ..Default::default() };
            let err =
                Config::from_raw(RawConfig { events, ..Default::default() }, None, no_secrets)
                    .unwrap_err();
            assert_eq!(err.param.as_deref(), Some("events.nats_prefix"), "{bad:?}");
        }
        let events = RawEvents { nats_prefix: Some("staging_2".into()), ..Default::default() };
        let c = Config::from_raw(RawConfig { events, ..Default::default() }, None, no_secrets);
        assert_eq!(c.unwrap().events.nats_prefix, "staging_2");
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let raw = RawConfig::default();
        let c =
            Config::from_raw(raw, Some(Secret::new("a-very-long-admin-key".into())), no_secrets)
                .unwrap();
        assert!(!format!("{c:?}").contains("a-very-long-admin-key"));
    }

    #[test]
    fn unknown_keys_in_a_file_are_rejected() {
        assert!(toml_like("colour = 1").is_err());
    }

    fn toml_like(s: &str) -> Result<RawConfig, serde_json::Error> {
        let (k, v) = s.split_once(" = ").unwrap_or_default();
        serde_json::from_str(&format!("{{\"{k}\": {v}}}"))
    }
}
