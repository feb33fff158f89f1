//! Two-level response cache (G5). L1 is in process (moka, bounded by bytes);
//! L2 is Redis when configured (shared by every replica; every call bounded
//! by the Redis link's timeout, so a slow or dead Redis only costs L2).
//!
//! A key is the tenant, the model, its purge generation, the resolved
//! version and a hash of the route and the normalized request: no entry is
//! ever shared across tenants, and a new version misses by construction.
//! `DELETE /v1/cache?model=` bumps the model's generation (in Redis too, so
//! other replicas see it within a second). Entries live past their TTL for a
//! grace period, in which they are served only as the first fallback when
//! the backend fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tessera_core::metrics::{ScrapedGauge, counters};

use crate::redis_link::RedisLink;

/// How long an entry is kept past its TTL, to answer when the backend fails.
const STALE_GRACE: Duration = Duration::from_secs(600);
/// How long a replica trusts the purge generation it last read.
const GENERATION_TTL: Duration = Duration::from_secs(1);
/// Default time an answer is fresh, when the deployment does not say.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// A cached answer and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// The answer's JSON.
    pub body: String,
    pub model: String,
    pub tier: String,
    pub version: String,
    pub stored_ms: u64,
    pub ttl_ms: u64,
    /// The answer's prediction record summary (label and score, ...), so a
    /// hit's record holds what feedback compares; null when not known.
    #[serde(default)]
    pub summary: serde_json::Value,
}

impl Entry {
    /// Whether the entry is within its TTL at `now_ms`.
    pub fn is_fresh_at(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.stored_ms) < self.ttl_ms
    }

    /// Whether the entry is within its TTL and grace period at `now_ms`.
    fn is_kept_at(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.stored_ms) < self.ttl_ms + STALE_GRACE.as_millis() as u64
    }
}

/// How an answer relates to the cache (`x-tessera-cache`, the usage record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Answered from a fresh entry.
    Hit,
    /// Looked up, not found (or not fresh); the answer was stored.
    Miss,
    /// Not looked up: not cacheable here, `no-store`, or a TTL of 0.
    Bypass,
    /// The model failed and a stale entry answered.
    Stale,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
            CacheStatus::Stale => "stale",
        }
    }

    /// Whether the answer came from the cache (and so costs nothing).
    pub fn from_cache(self) -> bool {
        matches!(self, CacheStatus::Hit | CacheStatus::Stale)
    }
}

/// What the request's `Cache-Control` allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Look up, and store a miss.
    Use,
    /// `no-cache`: do not answer from the cache, but store the fresh answer.
    Refresh,
    /// `no-store`: neither.
    Bypass,
}

impl Policy {
    pub fn of(headers: &http::HeaderMap) -> Policy {
        let cc = headers
            .get_all(http::header::CACHE_CONTROL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|d| d.trim().to_ascii_lowercase())
            .collect::<Vec<_>>();
        if cc.iter().any(|d| d == "no-store") {
            Policy::Bypass
        } else if cc.iter().any(|d| d == "no-cache") {
            Policy::Refresh
        } else {
            Policy::Use
        }
    }
}

/// Serializes `v` with object keys sorted at every level, so two requests
/// that differ only in key order share an entry.
pub fn canonical(v: &Value) -> String {
    fn walk(v: &Value, out: &mut String) {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::from(k.as_str()).to_string());
                    out.push(':');
                    walk(&m[*k], out);
                }
                out.push('}');
            }
            Value::Array(a) => {
                out.push('[');
                for (i, x) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    walk(x, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut s = String::new();
    walk(v, &mut s);
    s
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(non_camel_case_types, reason = "the variants are the exported label values")]
enum Outcome {
    hit_l1,
    hit_l2,
    miss,
    bypass,
    stale_fallback,
}

/// The label of `tessera_cache_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

struct Stats {
    requests: Family<OutcomeLabels, Counter>,
    hits_l1: Counter,
    hits_l2: Counter,
    misses: Counter,
    bypass: Counter,
    stale: Counter,
    stores: Counter,
}

impl Default for Stats {
    fn default() -> Self {
        use Outcome as O;
        let requests = Family::default();
        let [hits_l1, hits_l2, misses, bypass, stale] = counters(
            &requests,
            [O::hit_l1, O::hit_l2, O::miss, O::bypass, O::stale_fallback]
                .map(|outcome| OutcomeLabels { outcome }),
        );
        Self { requests, hits_l1, hits_l2, misses, bypass, stale, stores: Counter::default() }
    }
}

pub struct ResponseCache {
    l1: moka::sync::Cache<String, Arc<Entry>>,
    redis: Option<Arc<RedisLink>>,
    generations: Mutex<HashMap<String, (u64, Instant)>>,
    stats: Stats,
    tasks: crate::tasks::Tasks,
    /// Entries' ages are read from it (shared by replicas through L2, so wall time).
    clock: tessera_core::time::Clock,
}

impl ResponseCache {
    pub fn new(max_bytes: u64, redis: Option<Arc<RedisLink>>, tasks: crate::tasks::Tasks) -> Self {
        Self::with_clock(max_bytes, redis, tasks, tessera_core::time::Clock::system())
    }

    /// A cache whose entries age by `clock`.
    pub fn with_clock(
        max_bytes: u64,
        redis: Option<Arc<RedisLink>>,
        tasks: crate::tasks::Tasks,
        clock: tessera_core::time::Clock,
    ) -> Self {
        let l1 = moka::sync::Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|k: &String, e: &Arc<Entry>| {
                u32::try_from(k.len() + e.body.len() + e.model.len() + e.version.len() + 192)
                    .unwrap_or(u32::MAX)
            })
            .time_to_live(DEFAULT_TTL.max(Duration::from_secs(3600)) + STALE_GRACE)
            .support_invalidation_closures()
            .build();
        Self {
            l1,
            redis,
            generations: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            tasks,
            clock,
        }
    }

    fn gen_key(tenant: &str, model_id: &str) -> String {
        format!("tessera:cachegen:{tenant}:{model_id}")
    }

    /// The model's purge generation for this tenant (read from Redis at most
    /// once a second per model).
    async fn generation(&self, tenant: &str, model_id: &str) -> u64 {
        let k = Self::gen_key(tenant, model_id);
        let local = self.generations.lock().ok().and_then(|g| g.get(&k).copied());
        if let Some((g, at)) = local
            && (self.redis.is_none() || at.elapsed() < GENERATION_TTL)
        {
            return g;
        }
        let Some(link) = &self.redis else { return 0 };
        let k2 = k.clone();
        let remote = link
            .call(|mut c| async move {
                redis::cmd("GET").arg(&k2).query_async::<Option<u64>>(&mut c).await
            })
            .await;
        // Redis down: keep the last generation known here.
        let g = match remote {
            Ok(v) => v.unwrap_or(0),
            Err(()) => local.map_or(0, |(g, _)| g),
        };
        if let Ok(mut m) = self.generations.lock() {
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(k, (g, Instant::now()));
        }
        g
    }

    /// The cache key of a request.
    pub async fn key(
        &self,
        tenant: &str,
        model_id: &str,
        version: &str,
        route: &str,
        request: &Value,
    ) -> String {
        let generation = self.generation(tenant, model_id).await;
        let mut h = Sha256::new();
        h.update(route.as_bytes());
        h.update([0]);
        h.update(canonical(request).as_bytes());
        format!("{tenant}:{model_id}:g{generation}:{version}:{}", hex::encode(h.finalize()))
    }

    /// The cache's time, in milliseconds since the epoch.
    pub fn now_ms(&self) -> u64 {
        self.clock.now().millis().max(0) as u64
    }

    /// Whether `e` is within its TTL now.
    pub fn is_fresh(&self, e: &Entry) -> bool {
        e.is_fresh_at(self.now_ms())
    }

    /// An entry, fresh or within its grace period: L1 first, then L2.
    pub async fn get(&self, key: &str) -> Option<Arc<Entry>> {
        let now = self.now_ms();
        if let Some(e) = self.l1.get(key).filter(|e| e.is_kept_at(now)) {
            if e.is_fresh_at(now) {
                self.stats.hits_l1.inc();
            }
            return Some(e);
        }
        let link = self.redis.as_ref()?;
        let rk = format!("tessera:cache:{key}");
        let raw = link
            .call(|mut c| async move {
                redis::cmd("GET").arg(&rk).query_async::<Option<String>>(&mut c).await
            })
            .await
            .ok()
            .flatten()?;
        let e: Entry = serde_json::from_str(&raw).ok()?;
        if !e.is_kept_at(now) {
            return None;
        }
        let e = Arc::new(e);
        if e.is_fresh_at(now) {
            self.stats.hits_l2.inc();
        }
        self.l1.insert(key.to_owned(), e.clone());
        Some(e)
    }

    pub fn miss(&self) {
        self.stats.misses.inc();
    }

    pub fn bypassed(&self) {
        self.stats.bypass.inc();
    }

    pub fn served_stale(&self) {
        self.stats.stale.inc();
    }

    /// Stores an answer in L1 and, in the background, in L2.
    pub fn put(&self, key: String, entry: Entry) {
        self.stats.stores.inc();
        let keep_ms = entry.ttl_ms + STALE_GRACE.as_millis() as u64;
        let entry = Arc::new(entry);
        self.l1.insert(key.clone(), entry.clone());
        if let Some(link) = self.redis.clone()
            && let Ok(raw) = serde_json::to_string(&*entry)
        {
            self.tasks.spawn(async move {
                let rk = format!("tessera:cache:{key}");
                let _ = link
                    .call(|mut c| async move {
                        redis::cmd("SET")
                            .arg(&rk)
                            .arg(raw)
                            .arg("PX")
                            .arg(keep_ms)
                            .query_async::<()>(&mut c)
                            .await
                    })
                    .await;
            });
        }
    }

    /// Forgets every entry of a tenant's model, on every replica: the
    /// generation in the keys moves on (others see it within a second).
    pub async fn purge(&self, tenant: &str, model_id: &str) -> Result<(), ()> {
        let k = Self::gen_key(tenant, model_id);
        let next = match &self.redis {
            Some(link) => {
                let k2 = k.clone();
                link.call(|mut c| async move {
                    redis::cmd("INCR").arg(&k2).query_async::<u64>(&mut c).await
                })
                .await?
            }
            None => {
                self.generations.lock().ok().and_then(|g| g.get(&k).map(|x| x.0)).unwrap_or(0) + 1
            }
        };
        if let Ok(mut m) = self.generations.lock() {
            m.insert(k, (next, Instant::now()));
        }
        let prefix = format!("{tenant}:{model_id}:");
        let _ = self.l1.invalidate_entries_if(move |key, _| key.starts_with(&prefix));
        Ok(())
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tessera_cache_requests",
            "Cacheable requests by outcome",
            self.stats.requests.clone(),
        );
        registry.register(
            "tessera_cache_stores",
            "Answers stored in the cache",
            self.stats.stores.clone(),
        );
        let l1 = self.l1.clone();
        registry.register_collector(ScrapedGauge::new(
            "tessera_cache_l1_bytes",
            "Weighted size of the in-process cache",
            move || i64::try_from(l1.weighted_size()).unwrap_or(i64::MAX),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        assert_eq!(
            canonical(&json!({"b": 1, "a": [{"y": 2, "x": "s"}]})),
            canonical(&json!({"a": [{"x": "s", "y": 2}], "b": 1}))
        );
        assert_ne!(canonical(&json!({"a": [1, 2]})), canonical(&json!({"a": [2, 1]})));
    }

    #[test]
    fn cache_control_decides_the_policy() {
        let mut h = http::HeaderMap::new();
        assert_eq!(Policy::of(&h), Policy::Use);
        h.insert("cache-control", "max-age=0, No-Cache".parse().unwrap());
        assert_eq!(Policy::of(&h), Policy::Refresh);
        h.append("cache-control", "no-store".parse().unwrap());
        assert_eq!(Policy::of(&h), Policy::Bypass);
    }

    #[tokio::test]
    async fn entries_are_fresh_for_their_ttl_then_stale_for_the_grace_period_then_gone() {
        use tessera_core::time::{Clock, Timestamp};
        let clock = Clock::manual(Timestamp::from_millis(1_700_000_000_000));
        let c =
            ResponseCache::with_clock(1 << 20, None, crate::tasks::Tasks::default(), clock.clone());
        let key = c.key("ten_a", "mdl_1", "m@1", "/v1/embeddings", &json!({"input": "hi"})).await;
        c.put(
            key.clone(),
            Entry {
                body: "a".into(),
                model: "m".into(),
                tier: "platform".into(),
                version: "m@1".into(),
                stored_ms: c.now_ms(),
                ttl_ms: 1_000,
                summary: serde_json::Value::Null,
            },
        );
        assert!(c.is_fresh(&c.get(&key).await.unwrap()));
        clock.advance(Duration::from_millis(1_000));
        let stale = c.get(&key).await.expect("kept past its TTL, for the fallback");
        assert!(!c.is_fresh(&stale));
        clock.advance(STALE_GRACE);
        assert!(c.get(&key).await.is_none(), "gone after the grace period");
    }

    #[tokio::test]
    async fn tenants_never_share_and_a_purge_forgets() {
        let c = ResponseCache::new(1 << 20, None, crate::tasks::Tasks::default());
        let req = json!({"input": "hi"});
        let ka = c.key("ten_a", "mdl_1", "m@1", "/v1/embeddings", &req).await;
        let kb = c.key("ten_b", "mdl_1", "m@1", "/v1/embeddings", &req).await;
        assert_ne!(ka, kb);
        let entry = |body: &str| Entry {
            body: body.into(),
            model: "m".into(),
            tier: "platform".into(),
            version: "m@1".into(),
            stored_ms: c.now_ms(),
            ttl_ms: 60_000,
            summary: serde_json::Value::Null,
        };
        c.put(ka.clone(), entry("a"));
        assert_eq!(c.get(&ka).await.unwrap().body, "a");
        assert!(c.get(&kb).await.is_none());
        let v2 = c.key("ten_a", "mdl_1", "m@2", "/v1/embeddings", &req).await;
        assert!(c.get(&v2).await.is_none(), "a new version misses");
        c.purge("ten_a", "mdl_1").await.unwrap();
        let after = c.key("ten_a", "mdl_1", "m@1", "/v1/embeddings", &req).await;
        assert_ne!(after, ka);
        assert!(c.get(&after).await.is_none());
        assert!(c.get(&ka).await.is_none(), "L1 entries of the model are gone");
    }
}
