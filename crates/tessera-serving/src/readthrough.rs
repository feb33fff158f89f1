//! One read-through cache for the per-replica copies of database state
//! (tenants, model resolution, deployments, prices): an entry is fresh for
//! `ttl`; an expired one is loaded once while other requests for the same key
//! wait (single flight, `flight.rs`); when the load fails because the
//! database is down, the last value read is served for up to `stale_for`
//! (serving survives a database outage); at `capacity` the map is cleared
//! (it refills at the cost of one load per key). A change that drops entries
//! while a load is in flight wins: the possibly older value that load read
//! is returned to its caller but not cached.
//!
//! Time is tokio's clock, so TTLs are tested with `tokio::time::pause()`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::RwLock;
use std::time::Duration;

use tokio::time::Instant;

use crate::flight::Flights;

/// How a cache treats its entries.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// How long a loaded value is used without asking the database.
    pub ttl: Duration,
    /// How long past its load a value still serves while the database is down.
    pub stale_for: Duration,
    /// Most entries kept; beyond it the map starts over.
    pub capacity: usize,
    /// Serve the stale value on any failed load, not only on an outage
    /// (prices: pricing must never turn free because one read failed).
    pub stale_on_any_error: bool,
}

impl Policy {
    /// A TTL, stale for as long as the outage lasts, 100,000 entries.
    pub fn ttl(ttl: Duration) -> Self {
        Self { ttl, stale_for: Duration::MAX, capacity: 100_000, stale_on_any_error: false }
    }
}

/// Errors a load can fail with: an outage lets a stale value serve.
pub trait Outage {
    fn is_outage(&self) -> bool;
}

impl Outage for crate::inference::ServeError {
    fn is_outage(&self) -> bool {
        matches!(self, crate::inference::ServeError::Unavailable(_))
    }
}

impl Outage for tessera_store::StoreError {
    fn is_outage(&self) -> bool {
        matches!(self, tessera_store::StoreError::Unavailable(_))
    }
}

/// What the cache holds for a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup<V> {
    Fresh(V),
    /// Expired; loaded at the given instant.
    Stale(V, Instant),
    Missing,
}

pub struct ReadThrough<K, V> {
    policy: Policy,
    entries: RwLock<HashMap<K, (V, Instant)>>,
    flights: Flights<K>,
    /// Moves on with every removal: a load that started before one does
    /// not cache what it read.
    epoch: std::sync::atomic::AtomicU64,
}

impl<K: Hash + Eq + Clone, V: Clone> ReadThrough<K, V> {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            entries: RwLock::new(HashMap::new()),
            flights: Flights::default(),
            epoch: Default::default(),
        }
    }

    /// What is cached for `key`, without loading.
    pub fn lookup(&self, key: &K) -> Lookup<V> {
        let Ok(map) = self.entries.read() else { return Lookup::Missing };
        match map.get(key) {
            Some((v, at)) if at.elapsed() < self.policy.ttl => Lookup::Fresh(v.clone()),
            Some((v, at)) => Lookup::Stale(v.clone(), *at),
            None => Lookup::Missing,
        }
    }

    /// The value for `key`: fresh from the cache, else from `load` (once per
    /// key at a time), else, while the database is down, the stale one.
    /// Any other load error drops the entry and is returned.
    pub async fn get<E, F, Fut>(&self, key: &K, load: F) -> Result<V, E>
    where
        E: Outage,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
    {
        if let Lookup::Fresh(v) = self.lookup(key) {
            return Ok(v);
        }
        let _flight = self.flights.enter(key).await;
        let stale = match self.lookup(key) {
            Lookup::Fresh(v) => return Ok(v),
            Lookup::Stale(v, at) => Some((v, at)),
            Lookup::Missing => None,
        };
        let epoch = self.epoch.load(std::sync::atomic::Ordering::Acquire);
        match load().await {
            Ok(v) => {
                self.insert_unless_changed(key.clone(), v.clone(), epoch);
                Ok(v)
            }
            Err(e) if e.is_outage() || self.policy.stale_on_any_error => match stale {
                Some((v, at)) if at.elapsed() < self.policy.stale_for => Ok(v),
                _ => Err(e),
            },
            Err(e) => {
                self.remove(key);
                Err(e)
            }
        }
    }

    /// Caches a loaded value, unless entries were dropped since `epoch`.
    fn insert_unless_changed(&self, key: K, value: V, epoch: u64) {
        if let Ok(mut map) = self.entries.write()
            && self.epoch.load(std::sync::atomic::Ordering::Acquire) == epoch
        {
            Self::put(&mut map, self.policy.capacity, key, value);
        }
    }

    fn put(map: &mut HashMap<K, (V, Instant)>, capacity: usize, key: K, value: V) {
        if map.len() >= capacity && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, (value, Instant::now()));
    }

    pub fn remove(&self, key: &K) {
        if let Ok(mut map) = self.entries.write() {
            map.remove(key);
            self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Forgets every entry.
    pub fn clear(&self) {
        if let Ok(mut map) = self.entries.write() {
            map.clear();
            self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }

    /// Keeps only the entries `keep` says to.
    pub fn retain(&self, keep: impl Fn(&K, &V) -> bool) {
        if let Ok(mut map) = self.entries.write() {
            map.retain(|k, (v, _)| keep(k, v));
            self.epoch.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests own the tasks they spawn")]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tessera_store::StoreError;

    fn cache(ttl_ms: u64, stale_ms: u64) -> ReadThrough<String, u32> {
        ReadThrough::new(Policy {
            ttl: Duration::from_millis(ttl_ms),
            stale_for: Duration::from_millis(stale_ms),
            capacity: 2,
            stale_on_any_error: false,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn fresh_within_the_ttl_then_loaded_again() {
        let c = cache(1_000, 60_000);
        let loads = AtomicUsize::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            Ok::<_, StoreError>(7)
        };
        assert_eq!(c.get(&"k".into(), load).await.unwrap(), 7);
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(c.get(&"k".into(), load).await.unwrap(), 7);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_millis(2)).await;
        assert_eq!(c.get(&"k".into(), load).await.unwrap(), 7);
        assert_eq!(loads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_serves_through_an_outage_for_a_bounded_time() {
        let c = cache(1_000, 10_000);
        c.get(&"k".into(), || async { Ok::<_, StoreError>(1) }).await.unwrap();
        let down = || async { Err::<u32, _>(StoreError::Unavailable("db down".into())) };
        tokio::time::advance(Duration::from_millis(5_000)).await;
        assert_eq!(c.get(&"k".into(), down).await.unwrap(), 1);
        tokio::time::advance(Duration::from_millis(6_000)).await;
        assert!(c.get(&"k".into(), down).await.is_err(), "past stale_for the outage shows");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_load_that_is_not_an_outage_drops_the_entry() {
        let c = cache(1_000, 60_000);
        c.get(&"k".into(), || async { Ok::<_, StoreError>(1) }).await.unwrap();
        tokio::time::advance(Duration::from_millis(2_000)).await;
        let gone = || async { Err::<u32, _>(StoreError::Internal("deleted".into())) };
        assert!(c.get(&"k".into(), gone).await.is_err());
        assert_eq!(c.lookup(&"k".into()), Lookup::Missing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cache_told_to_may_serve_stale_on_any_error() {
        let c: ReadThrough<String, u32> = ReadThrough::new(Policy {
            stale_on_any_error: true,
            ..Policy::ttl(Duration::from_secs(1))
        });
        c.get(&"k".into(), || async { Ok::<_, StoreError>(1) }).await.unwrap();
        tokio::time::advance(Duration::from_secs(2)).await;
        let broken = || async { Err::<u32, _>(StoreError::Internal("bad row".into())) };
        assert_eq!(c.get(&"k".into(), broken).await.unwrap(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_capacity_the_map_starts_over() {
        let c = cache(1_000, 60_000);
        for k in ["a", "b", "c"] {
            c.get(&k.into(), || async { Ok::<_, StoreError>(1) }).await.unwrap();
        }
        assert_eq!(c.lookup(&"a".into()), Lookup::Missing);
        assert!(matches!(c.lookup(&"c".into()), Lookup::Fresh(1)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_removal_during_a_load_keeps_the_loaded_value_out_of_the_cache() {
        let c = Arc::new(cache(60_000, 60_000));
        let (c2, release) = (c.clone(), Arc::new(tokio::sync::Notify::new()));
        let r2 = release.clone();
        let load = tokio::spawn(async move {
            c2.get(&"k".into(), || async move {
                r2.notified().await;
                Ok::<_, StoreError>(1)
            })
            .await
        });
        tokio::task::yield_now().await;
        c.remove(&"k".into()); // a revocation while the read is in flight
        release.notify_one();
        assert_eq!(load.await.unwrap().unwrap(), 1, "the caller still gets what was read");
        assert_eq!(c.lookup(&"k".into()), Lookup::Missing, "but it is not cached");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_key_is_loaded_once_by_concurrent_requests() {
        let c = Arc::new(cache(60_000, 60_000));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (c, loads) = (c.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                c.get(&"k".into(), || async {
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok::<_, StoreError>(3)
                })
                .await
                .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), 3);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
