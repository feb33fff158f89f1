//! The one connection to Redis that limits and the L2 cache share: every
//! call is bounded by a short timeout, and after a failure Redis is skipped
//! for a moment so that requests never queue up behind a dead or slow Redis.
//! The connection reconnects by itself; the first call that succeeds after an
//! outage marks Redis up again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long Redis is skipped after a failed call.
const BACKOFF: Duration = Duration::from_secs(1);

pub struct RedisLink {
    client: redis::Client,
    conn: tokio::sync::Mutex<Option<redis::aio::ConnectionManager>>,
    timeout: Duration,
    down_until: Mutex<Option<Instant>>,
    up: AtomicBool,
}

impl RedisLink {
    pub fn open(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            client: redis::Client::open(url).map_err(|e| format!("redis_url: {e}"))?,
            conn: tokio::sync::Mutex::new(None),
            timeout,
            down_until: Mutex::new(None),
            up: AtomicBool::new(true),
        })
    }

    /// Whether the last call succeeded.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Runs one call within the timeout; `Err(())` when Redis is skipped,
    /// failed or too slow (the caller falls back).
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, ()>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if self.down_until.lock().ok().and_then(|d| *d).is_some_and(|t| Instant::now() < t) {
            return Err(());
        }
        self.call_now(f).await
    }

    /// Like [`RedisLink::call`], but tried even while Redis is being skipped:
    /// for work that must land (releasing a slot, settling a reservation),
    /// done off the request path.
    pub async fn call_now<T, F, Fut>(&self, f: F) -> Result<T, ()>
    where
        F: FnOnce(redis::aio::ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let outcome = tokio::time::timeout(self.timeout, async {
            let conn = {
                let mut slot = self.conn.lock().await;
                match &*slot {
                    Some(c) => c.clone(),
                    None => {
                        let c = redis::aio::ConnectionManager::new(self.client.clone()).await?;
                        *slot = Some(c.clone());
                        c
                    }
                }
            };
            f(conn).await
        })
        .await;
        match outcome {
            Ok(Ok(v)) => {
                if !self.up.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        "redis answers again: limits are global and the shared cache is back"
                    );
                }
                Ok(v)
            }
            failed => {
                if let Ok(mut d) = self.down_until.lock() {
                    *d = Some(Instant::now() + BACKOFF);
                }
                if self.up.swap(false, Ordering::Relaxed) {
                    let why = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {} ms", self.timeout.as_millis()),
                    };
                    tracing::warn!(error = %why, "redis unavailable: each replica enforces its share of every limit; cache L1 only");
                }
                Err(())
            }
        }
    }
}
