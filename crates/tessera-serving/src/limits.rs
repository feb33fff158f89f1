//! Admission (G6): every limit that applies to a request (its key's, its
//! tenant's plan, the model's) is checked and consumed in one atomic step:
//! one Lua script on Redis when Redis is configured, so any number of
//! replicas together never exceed a limit; a mutex-guarded table in process
//! otherwise.
//!
//! Requests and tokens count in fixed one-minute windows (the
//! `x-ratelimit-reset-*` headers say when the window ends); tokens reserve an
//! estimate up front and settle to the actual count afterwards, so concurrent
//! requests cannot overrun a token limit. Concurrency counts requests in
//! flight and is released when the answer (a stream included) is done.
//!
//! Redis down or slow (each call is bounded by a short timeout): this replica
//! enforces its share of each limit (the limit divided by the replicas it last
//! saw through Redis heartbeats), counts it in `tessera_limits_fallback_total`,
//! skips Redis for a second, and returns to global enforcement by itself.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue};
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tessera_core::metrics::{ScrapedGauge, latency_histogram};

use crate::redis_link::RedisLink;

const WINDOW_SECS: u64 = 60;
/// Heartbeats: how often, and after how long a silent replica no longer counts.
const HEARTBEAT: Duration = Duration::from_secs(2);
const REPLICA_TTL_MS: u64 = 10_000;
/// A request's concurrency lease in Redis: the slot of a replica that died
/// mid-request frees itself after this long (a request running longer stops
/// counting against the limit then).
const CONCURRENCY_TTL_MS: u64 = 900_000;
/// A month's spend counter outlives the month.
const SPEND_TTL_MS: u64 = 35 * 86_400_000;

fn seconds_to_next_month() -> u64 {
    let now = tessera_core::time::Timestamp::now();
    // The 1st of next month: 32 days past this month's start, back to its 1st.
    let next = now.month_start().plus_millis(32 * 86_400_000).month_start();
    ((next.millis() - now.millis()).max(1000) / 1000) as u64
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Requests,
    Tokens,
    Concurrency,
    /// Micro-dollars this calendar month (UTC): the monthly budget.
    Spend,
    /// Events sent per minute (`POST /v1/events`).
    Events,
}

impl Dim {
    fn as_str(self) -> &'static str {
        match self {
            Dim::Requests => "requests",
            Dim::Tokens => "tokens",
            Dim::Concurrency => "concurrency",
            Dim::Spend => "spend",
            Dim::Events => "events",
        }
    }
}

impl EncodeLabelValue for Dim {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> std::fmt::Result {
        use std::fmt::Write as _;
        encoder.write_str(self.as_str())
    }
}

/// One limit that applies to a request.
#[derive(Debug, Clone)]
pub struct Check {
    /// Whose limit: `key`, `tenant` or `model`.
    pub owner: &'static str,
    /// The key, tenant or model id.
    pub id: String,
    pub dim: Dim,
    pub limit: u64,
    /// What this request takes: 1 request, the token estimate, 1 in flight.
    pub cost: u64,
}

impl Check {
    fn key(&self, window: u64) -> String {
        match self.dim {
            Dim::Concurrency => format!("tessera:cc:{}:{}", self.owner, self.id),
            Dim::Spend => format!("tessera:spend:{}:{}:{}", self.owner, self.id, month_id()),
            d => format!("tessera:rl:{}:{}:{}:{window}", self.owner, self.id, d.as_str()),
        }
    }
}

/// The current month, `YYYYMM`-like: milliseconds of its first instant.
fn month_id() -> i64 {
    tessera_core::time::Timestamp::now().month_start().millis()
}

/// A limit that refused a request.
#[derive(Debug, Clone)]
pub struct Denied {
    pub dim: Dim,
    pub message: String,
    pub retry_after_secs: u64,
    pub headers: HeaderMap,
}

/// Where a decision was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Global,
    Local,
}

struct Decided {
    checks: Vec<Check>,
    keys: Vec<String>,
    /// The counter value after this request, per check.
    after: Vec<u64>,
    /// The limit actually enforced (a share when falling back).
    enforced: Vec<u64>,
    mode: Mode,
    /// This request's lease in Redis concurrency sets.
    lease: String,
}

/// An admitted request. Dropping it releases its concurrency slots;
/// [`Admitted::settle`] corrects the token reservation.
pub struct Admitted {
    limiter: Arc<Limiter>,
    decided: Option<Decided>,
    reset_secs: u64,
    /// Prices the actual usage for the spend settlement.
    pub pricer: Option<Box<dyn Fn(u64, u64) -> u64 + Send + Sync>>,
    /// Whether the reservation was settled; if not, dropping settles it to
    /// nothing used (the request failed or was abandoned).
    settled: bool,
}

impl Admitted {
    /// A request nothing limits.
    pub fn unlimited(limiter: Arc<Limiter>) -> Self {
        Self { limiter, decided: None, reset_secs: 0, pricer: None, settled: true }
    }

    /// Replaces the token and spend estimates with what the request used.
    pub fn settle(&mut self, prompt: u64, completion: u64) {
        self.settled = true;
        let Some(d) = &mut self.decided else { return };
        let tokens = prompt.saturating_add(completion);
        let spend = self.pricer.as_ref().map_or(0, |p| p(prompt, completion));
        let mut deltas = Vec::new();
        for (i, c) in d.checks.iter_mut().enumerate() {
            let actual = match c.dim {
                Dim::Tokens => tokens,
                Dim::Spend => spend,
                _ => continue,
            };
            if c.cost != actual {
                let delta = actual as i64 - c.cost as i64;
                deltas.push((d.keys[i].clone(), delta));
                c.cost = actual;
            }
        }
        if !deltas.is_empty() {
            self.limiter.adjust(d.mode, deltas);
        }
    }

    /// How much of a `dim` limit is used after this request (0-1+).
    pub fn used(&self, dim: Dim) -> Option<f64> {
        let d = self.decided.as_ref()?;
        let i = d.checks.iter().position(|c| c.dim == dim)?;
        Some(d.after[i] as f64 / d.enforced[i].max(1) as f64)
    }

    /// `x-ratelimit-*` headers for the tightest request and token limits.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(d) = &self.decided {
            rate_headers(&mut h, d, self.reset_secs);
        }
        h
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(0, 0);
        }
        let Some(d) = &self.decided else { return };
        let slots: Vec<String> = d
            .checks
            .iter()
            .zip(&d.keys)
            .filter(|(c, _)| c.dim == Dim::Concurrency)
            .map(|(_, k)| k.clone())
            .collect();
        if slots.is_empty() {
            return;
        }
        match d.mode {
            Mode::Local => {
                self.limiter.adjust(Mode::Local, slots.into_iter().map(|k| (k, -1)).collect())
            }
            // Redis: the request's lease leaves each concurrency set, retried
            // until it lands (a lost release would hold the slot for the lease).
            Mode::Global => {
                let Some(link) = self.limiter.redis.clone() else { return };
                let lease = d.lease.clone();
                self.limiter.tasks.spawn(async move {
                    for attempt in 0..10u32 {
                        let (slots, lease) = (slots.clone(), lease.clone());
                        let done = link
                            .call_now(|mut c| async move {
                                let mut p = redis::pipe();
                                for k in &slots {
                                    p.zrem(k, &lease).ignore();
                                }
                                p.query_async::<()>(&mut c).await
                            })
                            .await;
                        if done.is_ok() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1)))
                            .await;
                    }
                    tracing::warn!(
                        "a concurrency slot could not be released in redis; it frees itself when its lease ends"
                    );
                });
            }
        }
    }
}

fn rate_headers(h: &mut HeaderMap, d: &Decided, reset_secs: u64) {
    for (dim, suffix) in [(Dim::Requests, "requests"), (Dim::Tokens, "tokens")] {
        let tightest = (0..d.checks.len())
            .filter(|i| d.checks[*i].dim == dim)
            .min_by_key(|i| d.enforced[*i].saturating_sub(d.after[*i]));
        if let Some(i) = tightest {
            let remaining = d.enforced[i].saturating_sub(d.after[i]);
            for (name, value) in [
                (format!("x-ratelimit-limit-{suffix}"), d.enforced[i].to_string()),
                (format!("x-ratelimit-remaining-{suffix}"), remaining.to_string()),
                (format!("x-ratelimit-reset-{suffix}"), format!("{reset_secs}s")),
            ] {
                if let (Ok(n), Ok(v)) =
                    (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value))
                {
                    h.insert(n, v);
                }
            }
        }
    }
}

/// Checks every limit and, only if all pass, consumes them all. Returns the
/// counter values after, or the index of the first limit that refused.
///
/// Per key, four arguments: limit, cost, TTL in ms, and a lease id. A key
/// with a lease id is a concurrency set: each request in flight is a member
/// whose score is when its lease ends, so the slots of a replica that died
/// mid-request free themselves when their leases run out.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = #KEYS
local current = {}
for i = 1, n do
  local limit = tonumber(ARGV[4 * i - 3])
  local cost = tonumber(ARGV[4 * i - 2])
  if ARGV[4 * i] ~= '' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    current[i] = redis.call('ZCARD', KEYS[i])
  else
    current[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  end
  if cost > 0 and current[i] + cost > limit then
    return {0, i, current[i]}
  end
end
local out = {1}
for i = 1, n do
  local cost = tonumber(ARGV[4 * i - 2])
  local ttl = tonumber(ARGV[4 * i - 1])
  local v
  if ARGV[4 * i] ~= '' then
    redis.call('ZADD', KEYS[i], now + ttl, ARGV[4 * i])
    v = current[i] + 1
  else
    v = redis.call('INCRBY', KEYS[i], cost)
  end
  redis.call('PEXPIRE', KEYS[i], ttl)
  out[#out + 1] = v
end
return out
";

/// Adds `ARGV[i]` to `KEYS[i]` where the key still exists.
const ADJUST: &str = r"
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('INCRBY', KEYS[i], tonumber(ARGV[i]))
  end
end
return 0
";

/// The labels of `tessera_ratelimit_rejected_total`: whose limit, what it counts.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectedLabels {
    limit: &'static str,
    dim: Dim,
}

struct LimitStats {
    budget_alerts: Counter,
    rejected: Family<RejectedLabels, Counter>,
    fallbacks: Counter,
    admission: Histogram,
}

impl Default for LimitStats {
    fn default() -> Self {
        Self {
            budget_alerts: Counter::default(),
            rejected: Family::default(),
            fallbacks: Counter::default(),
            admission: latency_histogram(),
        }
    }
}

pub struct Limiter {
    /// Tenants whose spend counter this process has seeded from the
    /// database this month, and those it has alerted about.
    seeded: Mutex<HashMap<(String, i64), Instant>>,
    alerted: Mutex<std::collections::HashSet<(String, i64)>>,
    local: Mutex<HashMap<String, (i64, Instant)>>,
    redis: Option<Arc<RedisLink>>,
    script: redis::Script,
    adjust_script: Arc<redis::Script>,
    /// Replicas seen through Redis heartbeats (at least 1).
    replicas: Gauge<u64, AtomicU64>,
    replica_id: String,
    stats: LimitStats,
    /// Owns the background retries and the heartbeat.
    tasks: crate::tasks::Tasks,
    /// Where rate windows are read from.
    clock: tessera_core::time::Clock,
}

impl Limiter {
    /// A limiter over Redis (shared by every replica), or in process.
    pub fn new(redis: Option<Arc<RedisLink>>, tasks: crate::tasks::Tasks) -> Arc<Self> {
        Self::with_clock(redis, tasks, tessera_core::time::Clock::system())
    }

    /// A limiter whose windows follow `clock`.
    pub fn with_clock(
        redis: Option<Arc<RedisLink>>,
        tasks: crate::tasks::Tasks,
        clock: tessera_core::time::Clock,
    ) -> Arc<Self> {
        Arc::new(Self {
            tasks,
            clock,
            seeded: Mutex::default(),
            alerted: Mutex::default(),
            local: Mutex::new(HashMap::new()),
            redis,
            script: redis::Script::new(SCRIPT),
            adjust_script: Arc::new(redis::Script::new(ADJUST)),
            replicas: {
                let seen = Gauge::default();
                seen.set(1);
                seen
            },
            replica_id: tessera_core::ids::random_lower(12),
            stats: LimitStats::default(),
        })
    }

    /// Makes sure a tenant's spend counter for this month starts from what
    /// the database has recorded (once per process and month; on Redis
    /// only if no replica has started it yet).
    pub async fn seed_spend<F>(&self, tenant: &str, load: F)
    where
        F: std::future::Future<Output = Option<i64>>,
    {
        let mark = (tenant.to_owned(), month_id());
        // Seeded again now and then: should Redis lose its data, the spend
        // comes back from the usage records within a minute.
        let fresh = |s: &HashMap<(String, i64), Instant>| {
            s.get(&mark).is_some_and(|at| at.elapsed() < Duration::from_secs(60))
        };
        if self.seeded.lock().map(|s| fresh(&s)).unwrap_or(true) {
            return;
        }
        let Some(spent) = load.await else { return };
        let key =
            Check { owner: "tenant", id: tenant.to_owned(), dim: Dim::Spend, limit: 0, cost: 0 }
                .key(0);
        let done = match &self.redis {
            Some(link) => link
                .call(|mut c| {
                    let key = key.clone();
                    async move {
                        redis::cmd("SET")
                            .arg(&key)
                            .arg(spent)
                            .arg("NX")
                            .arg("PX")
                            .arg(SPEND_TTL_MS)
                            .query_async::<Option<String>>(&mut c)
                            .await
                    }
                })
                .await
                .is_ok(),
            None => true,
        };
        if let Ok(mut map) = self.local.lock() {
            map.entry(key).or_insert((spent, Instant::now() + Duration::from_millis(SPEND_TTL_MS)));
        }
        if done && let Ok(mut s) = self.seeded.lock() {
            if s.len() > 100_000 {
                s.clear();
            }
            s.insert(mark, Instant::now());
        }
    }

    /// Keeps this replica's spend counters at Redis's values, for when it
    /// must decide alone.
    fn mirror_spend(&self, checks: &[Check], keys: &[String], answer: &[i64]) {
        if answer.first() != Some(&1) {
            return;
        }
        let Ok(mut map) = self.local.lock() else { return };
        for (i, c) in checks.iter().enumerate() {
            if c.dim == Dim::Spend
                && let Some(v) = answer.get(i + 1)
            {
                map.insert(
                    keys[i].clone(),
                    (*v, Instant::now() + Duration::from_millis(SPEND_TTL_MS)),
                );
            }
        }
    }

    /// Reports a tenant past its budget's soft threshold, once a month per
    /// replica: an alert in the log and a metric.
    pub fn budget_alert(&self, tenant: &str, used: f64) {
        let mark = (tenant.to_owned(), month_id());
        if self.alerted.lock().map(|mut a| a.insert(mark)).unwrap_or(false) {
            self.stats.budget_alerts.inc();
            tracing::warn!(target: "tessera::alert", tenant, used_percent = (used * 100.0).round(), "tenant passed the soft threshold of its monthly budget");
        }
    }

    /// A limiter for one process, without Redis.
    pub fn in_process() -> Arc<Self> {
        Self::new(None, crate::tasks::Tasks::default())
    }

    /// Starts the heartbeat that counts replicas and notices Redis coming back.
    pub fn start_heartbeat(self: &Arc<Self>) {
        if self.redis.is_none() {
            return;
        }
        let me = Arc::downgrade(self);
        self.tasks.spawn_loop(async move {
            loop {
                let Some(l) = me.upgrade() else { return };
                l.heartbeat().await;
                drop(l);
                tokio::time::sleep(HEARTBEAT).await;
            }
        });
    }

    async fn heartbeat(&self) {
        let now_ms = self.clock.now().millis().max(0) as u128;
        let Some(link) = &self.redis else { return };
        let r = link
            .call(|mut c| {
                let id = self.replica_id.clone();
                async move {
                    let (_, _, n): (i64, i64, u64) = redis::pipe()
                        .atomic()
                        .zadd("tessera:replicas", id, now_ms as u64)
                        .zrembyscore(
                            "tessera:replicas",
                            0,
                            (now_ms as u64).saturating_sub(REPLICA_TTL_MS),
                        )
                        .zcard("tessera:replicas")
                        .query_async(&mut c)
                        .await?;
                    Ok(n)
                }
            })
            .await;
        if let Ok(n) = r {
            self.replicas.set(n.max(1));
        }
    }

    /// Whether Redis is configured and answering (limits hold across replicas).
    pub fn is_global(&self) -> bool {
        self.redis.as_ref().is_some_and(|r| r.is_up())
    }

    /// Checks and consumes `checks` atomically.
    pub async fn admit(self: &Arc<Self>, checks: Vec<Check>) -> Result<Admitted, Denied> {
        if checks.is_empty() {
            return Ok(Admitted::unlimited(self.clone()));
        }
        let started = Instant::now();
        let now = (self.clock.now().millis().max(0) / 1000) as u64;
        let window = now / WINDOW_SECS;
        let reset_secs = WINDOW_SECS - now % WINDOW_SECS;
        let keys: Vec<String> = checks.iter().map(|c| c.key(window)).collect();
        let lease = tessera_core::ids::random_lower(16);
        let mut decision = None;
        if let Some(link) = &self.redis {
            let ttl_ms = (reset_secs + 5) * 1000;
            let mut inv = self.script.prepare_invoke();
            for (c, k) in checks.iter().zip(&keys) {
                inv.key(k);
                let ttl = match c.dim {
                    Dim::Concurrency => CONCURRENCY_TTL_MS,
                    Dim::Spend => SPEND_TTL_MS,
                    _ => ttl_ms,
                };
                let lease = if c.dim == Dim::Concurrency { lease.as_str() } else { "" };
                inv.arg(c.limit).arg(c.cost).arg(ttl).arg(lease);
            }
            let answer = link
                .call(|mut conn| async move { inv.invoke_async::<Vec<i64>>(&mut conn).await })
                .await;
            match answer {
                Ok(v) => {
                    self.mirror_spend(&checks, &keys, &v);
                    decision = Some((v, Mode::Global));
                }
                Err(()) => {
                    self.stats.fallbacks.inc();
                }
            }
        }
        let (answer, mode, enforced) = match decision {
            Some((v, mode)) => (v, mode, checks.iter().map(|c| c.limit).collect::<Vec<_>>()),
            None => {
                // Without Redis (by configuration: the whole limit; after a
                // failure: this replica's share).
                let replicas = if self.redis.is_some() { self.replicas.get().max(1) } else { 1 };
                // A monthly budget is not split: the spend counter here follows
                // Redis while it answers, and a month is long next to an outage.
                let enforced: Vec<u64> = checks
                    .iter()
                    .map(|c| if c.dim == Dim::Spend { c.limit } else { c.limit.div_ceil(replicas) })
                    .collect();
                (self.admit_local(&checks, &keys, &enforced, reset_secs), Mode::Local, enforced)
            }
        };
        self.stats.admission.observe(started.elapsed().as_secs_f64());
        if answer.first() == Some(&1) {
            let after = answer[1..].iter().map(|v| (*v).max(0) as u64).collect();
            return Ok(Admitted {
                limiter: self.clone(),
                decided: Some(Decided { checks, keys, after, enforced, mode, lease }),
                reset_secs,
                pricer: None,
                settled: false,
            });
        }
        let i = answer.get(1).map_or(1, |i| (*i).max(1) as usize) - 1;
        let c = &checks[i.min(checks.len() - 1)];
        self.stats.rejected.get_or_create(&RejectedLabels { limit: c.owner, dim: c.dim }).inc();
        let limit = enforced[i.min(checks.len() - 1)];
        let (what, retry_after_secs) = match c.dim {
            Dim::Requests => ("requests per minute", reset_secs),
            Dim::Tokens => ("tokens per minute", reset_secs),
            Dim::Concurrency => ("concurrent requests", 1),
            Dim::Spend => ("monthly budget (in micro-dollars)", seconds_to_next_month()),
            Dim::Events => ("events per minute", reset_secs),
        };
        let mut headers = HeaderMap::new();
        let used: Vec<u64> =
            checks.iter().enumerate().map(|(j, _)| if j == i { limit } else { 0 }).collect();
        rate_headers(
            &mut headers,
            &Decided {
                checks: checks.clone(),
                keys: Vec::new(),
                after: used,
                enforced: enforced.clone(),
                mode,
                lease: String::new(),
            },
            reset_secs,
        );
        let share = if mode == Mode::Local && self.redis.is_some() {
            " (this replica's share while Redis is unavailable)"
        } else {
            ""
        };
        Err(Denied {
            dim: c.dim,
            message: format!("the {} {what} limit ({limit}{share}) is reached", c.owner),
            retry_after_secs: retry_after_secs.max(1),
            headers,
        })
    }

    fn admit_local(
        &self,
        checks: &[Check],
        keys: &[String],
        enforced: &[u64],
        reset_secs: u64,
    ) -> Vec<i64> {
        let Ok(mut map) = self.local.lock() else { return vec![1] };
        let now = Instant::now();
        if map.len() > 200_000 {
            map.retain(|_, (_, exp)| *exp > now);
        }
        for (i, (c, k)) in checks.iter().zip(keys).enumerate() {
            let current =
                map.get(k).filter(|(_, exp)| *exp > now).map_or(0, |(v, _)| *v).max(0) as u64;
            if c.cost > 0 && current + c.cost > enforced[i] {
                return vec![0, i as i64 + 1, current as i64];
            }
        }
        let mut out = vec![1];
        for (c, k) in checks.iter().zip(keys) {
            let ttl = match c.dim {
                Dim::Concurrency => Duration::from_millis(CONCURRENCY_TTL_MS),
                Dim::Spend => Duration::from_millis(SPEND_TTL_MS),
                _ => Duration::from_secs(reset_secs + 5),
            };
            let e = map.entry(k.clone()).or_insert((0, now + ttl));
            if e.1 <= now {
                *e = (0, now + ttl);
            }
            e.0 += c.cost as i64;
            out.push(e.0);
        }
        out
    }

    /// Adds `delta` to counters (token settlement, concurrency release),
    /// where the request was admitted.
    fn adjust(self: &Arc<Self>, mode: Mode, deltas: Vec<(String, i64)>) {
        match mode {
            Mode::Local => {
                if let Ok(mut map) = self.local.lock() {
                    for (k, d) in deltas {
                        if let Some(e) = map.get_mut(&k) {
                            e.0 = (e.0 + d).max(0);
                        }
                    }
                }
            }
            // Redis: only counters that still exist are adjusted (a settlement
            // after its window closed must not recreate a key without expiry),
            // retried until it lands.
            Mode::Global => {
                let Some(link) = self.redis.clone() else { return };
                let script = self.adjust_script.clone();
                self.tasks.spawn(async move {
                    for attempt in 0..10u32 {
                        let mut inv = script.prepare_invoke();
                        for (k, d) in &deltas {
                            inv.key(k).arg(*d);
                        }
                        let done = link
                            .call_now(|mut c| async move { inv.invoke_async::<()>(&mut c).await })
                            .await;
                        if done.is_ok() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1)))
                            .await;
                    }
                    tracing::warn!("a token or spend settlement could not reach redis");
                });
            }
        }
    }

    pub fn register(self: &Arc<Self>, registry: &mut Registry) {
        let stats = &self.stats;
        registry.register(
            "tessera_ratelimit_rejected",
            "Requests refused by a limit, by whose limit and what it counts",
            stats.rejected.clone(),
        );
        registry.register(
            "tessera_budget_alerts",
            "Tenants that passed the soft threshold of their monthly budget",
            stats.budget_alerts.clone(),
        );
        registry.register(
            "tessera_limits_fallback",
            "Admissions decided by this replica alone because Redis was unavailable",
            stats.fallbacks.clone(),
        );
        let me = Arc::downgrade(self);
        registry.register_collector(ScrapedGauge::new(
            "tessera_limits_global",
            "1 while limits are enforced across replicas through Redis",
            move || i64::from(me.upgrade().is_some_and(|l| l.is_global())),
        ));
        registry.register(
            "tessera_limits_replicas",
            "Replicas seen through Redis heartbeats",
            self.replicas.clone(),
        );
        registry.register(
            "tessera_admission_duration_seconds",
            "Time to check and consume a request's limits",
            stats.admission.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(owner: &'static str, dim: Dim, limit: u64, cost: u64) -> Check {
        Check { owner, id: "x".into(), dim, limit, cost }
    }

    #[tokio::test]
    async fn a_rate_window_ends_when_the_clock_reaches_the_next_minute() {
        use tessera_core::time::{Clock, Timestamp};
        let clock = Clock::manual(Timestamp::from_millis(1_700_000_040_000)); // a minute's start
        let l = Limiter::with_clock(None, crate::tasks::Tasks::default(), clock.clone());
        let one = || vec![check("tenant", Dim::Requests, 2, 1)];
        let _a = l.admit(one()).await.unwrap();
        let _b = l.admit(one()).await.unwrap();
        clock.advance(Duration::from_secs(59));
        let denied = l.admit(one()).await.err().unwrap();
        assert_eq!(denied.retry_after_secs, 1, "the window ends in a second");
        clock.advance(Duration::from_secs(1));
        let c = l.admit(one()).await.unwrap();
        assert_eq!(c.headers()["x-ratelimit-remaining-requests"], "1", "a new window");
    }

    #[tokio::test]
    async fn all_limits_or_none_are_consumed() {
        let l = Limiter::in_process();
        let mut ok = Vec::new();
        for _ in 0..3 {
            ok.push(l.admit(vec![check("tenant", Dim::Requests, 3, 1)]).await.unwrap());
        }
        let denied = l.admit(vec![check("tenant", Dim::Requests, 3, 1)]).await.err().unwrap();
        assert!(
            denied.message.contains("tenant requests per minute limit (3)"),
            "{}",
            denied.message
        );
        assert_eq!(denied.headers["x-ratelimit-remaining-requests"], "0");
        // A refused request consumes nothing: the key limit still has room.
        let refused = l
            .admit(vec![check("key", Dim::Requests, 10, 1), check("tenant", Dim::Requests, 3, 1)])
            .await;
        assert!(refused.is_err());
        let a = l.admit(vec![check("key", Dim::Requests, 1, 1)]).await.unwrap();
        assert_eq!(a.headers()["x-ratelimit-remaining-requests"], "0");
    }

    #[tokio::test]
    async fn tokens_settle_and_concurrency_releases() {
        let l = Limiter::in_process();
        let mut a = l.admit(vec![check("tenant", Dim::Tokens, 100, 80)]).await.unwrap();
        assert!(l.admit(vec![check("tenant", Dim::Tokens, 100, 30)]).await.is_err());
        a.settle(10, 0);
        let b = l.admit(vec![check("tenant", Dim::Tokens, 100, 30)]).await.unwrap();
        assert_eq!(b.headers()["x-ratelimit-remaining-tokens"], "60");
        let c1 = l.admit(vec![check("tenant", Dim::Concurrency, 1, 1)]).await.unwrap();
        assert!(l.admit(vec![check("tenant", Dim::Concurrency, 1, 1)]).await.is_err());
        drop(c1);
        assert!(l.admit(vec![check("tenant", Dim::Concurrency, 1, 1)]).await.is_ok());
    }

    #[tokio::test]
    async fn refusals_are_counted_by_whose_limit_and_what_it_counts() {
        let l = Limiter::in_process();
        let mut r = Registry::default();
        l.register(&mut r);
        let _a = l.admit(vec![check("tenant", Dim::Requests, 1, 1)]).await.unwrap();
        assert!(l.admit(vec![check("tenant", Dim::Requests, 1, 1)]).await.is_err());
        assert!(l.admit(vec![check("key", Dim::Tokens, 1, 5)]).await.is_err());
        let text = tessera_core::metrics::encode(&r).unwrap();
        for line in [
            "tessera_ratelimit_rejected_total{limit=\"tenant\",dim=\"requests\"} 1\n",
            "tessera_ratelimit_rejected_total{limit=\"key\",dim=\"tokens\"} 1\n",
            "tessera_budget_alerts_total 0\n",
            "tessera_limits_fallback_total 0\n",
            "tessera_limits_global 0\n",
            "tessera_limits_replicas 1\n",
            "tessera_admission_duration_seconds_count 3\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
