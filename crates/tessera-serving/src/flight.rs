//! Single flight for the per-replica caches: when an entry expires under
//! load, one request reads the database and the others wait for it, then
//! find the fresh entry. Without this every request in flight at the moment
//! of expiry reads the database, and under heavy traffic the pile-up feeds
//! itself (slower reads, more requests in flight, more reads).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

type Gate = Arc<tokio::sync::Mutex<()>>;

/// Per key: the gate and how many requests hold or wait for it.
pub struct Flights<K = String> {
    gates: Mutex<HashMap<K, (Gate, usize)>>,
}

impl<K> Default for Flights<K> {
    fn default() -> Self {
        Self { gates: Mutex::new(HashMap::new()) }
    }
}

/// Held while one request loads a key; dropping it lets the next waiter in.
pub struct Flight<'a, K: Hash + Eq + Clone = String> {
    flights: &'a Flights<K>,
    key: K,
    /// Empty while waiting: a request cancelled in the queue still counts itself out.
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl<K: Hash + Eq + Clone> Flights<K> {
    /// Waits until no other request is loading `key`. The caller then checks
    /// its cache again before reading the database.
    pub async fn enter<Q>(&self, key: &Q) -> Flight<'_, K>
    where
        Q: ToOwned<Owned = K> + ?Sized,
    {
        let key = key.to_owned();
        let gate = match self.gates.lock() {
            Ok(mut g) => {
                let e = g.entry(key.clone()).or_insert_with(|| (Gate::default(), 0));
                e.1 += 1;
                e.0.clone()
            }
            Err(_) => Gate::default(),
        };
        let mut flight = Flight { flights: self, key, held: None };
        flight.held = Some(gate.lock_owned().await);
        flight
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.gates.lock().map(|g| g.len()).unwrap_or(0)
    }
}

impl<K: Hash + Eq + Clone> Drop for Flight<'_, K> {
    fn drop(&mut self) {
        // Release first, so a waiter is not woken into a map we still lock.
        drop(self.held.take());
        // The last one out removes the gate; anyone still waiting keeps it.
        if let Ok(mut g) = self.flights.gates.lock()
            && let Some(e) = g.get_mut(&self.key)
        {
            e.1 = e.1.saturating_sub(1);
            if e.1 == 0 {
                g.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods, reason = "tests own the tasks they spawn")]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_load_at_a_time_per_key_and_gates_are_cleaned_up() {
        let flights = Arc::new(Flights::default());
        let cache = Arc::new(Mutex::new(None::<u32>));
        let loads = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let (flights, cache, loads) = (flights.clone(), cache.clone(), loads.clone());
            tasks.push(tokio::spawn(async move {
                let _f = flights.enter("k").await;
                if cache.lock().unwrap().is_some() {
                    return;
                }
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                *cache.lock().unwrap() = Some(7);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        assert_eq!(flights.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_waiter_cancelled_in_the_queue_counts_itself_out() {
        let flights = Arc::new(Flights::default());
        let first = flights.enter("k").await;
        let f2 = flights.clone();
        let waiter = tokio::spawn(async move {
            let _f = f2.enter("k").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waiter.abort();
        assert!(waiter.await.is_err_and(|e| e.is_cancelled()), "the waiter was still queued");
        drop(first);
        assert_eq!(flights.len(), 0);
    }
}
