//! Background work with an owner. Every task the gateway starts outside a
//! request (shadow copies, usage records, Redis retries, heartbeats) is
//! spawned here, so shutdown can stop the loops and wait for the rest: the
//! loops watch [`Tasks::cancelled`]; one-off tasks run to their end, bounded
//! by [`Tasks::shutdown`]'s grace period. A bare `tokio::spawn` is refused
//! by clippy (`disallowed-methods` in `clippy.toml`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Clone, Default)]
pub struct Tasks {
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Tasks {
    /// Runs `fut` in the background, tracked until it ends.
    pub fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tracker.spawn(fut);
    }

    /// Runs a loop until shutdown: `fut` is dropped when shutdown starts.
    pub fn spawn_loop<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = fut => {}
            }
        });
    }

    /// Resolves when shutdown starts.
    pub async fn cancelled(&self) {
        self.cancel.cancelled().await;
    }

    /// How many tasks are running.
    pub fn len(&self) -> usize {
        self.tracker.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tracker.is_empty()
    }

    /// Stops the loops and waits up to `grace` for every task to end;
    /// returns how many were still running then.
    pub async fn shutdown(&self, grace: Duration) -> usize {
        self.cancel.cancel();
        self.tracker.close();
        match tokio::time::timeout(grace, self.tracker.wait()).await {
            Ok(()) => 0,
            Err(_) => self.tracker.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[tokio::test(start_paused = true)]
    async fn shutdown_stops_loops_and_waits_for_one_off_tasks() {
        let tasks = Tasks::default();
        let done = Arc::new(AtomicBool::new(false));
        tasks.spawn_loop(std::future::pending());
        let d = done.clone();
        tasks.spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            d.store(true, Ordering::SeqCst);
        });
        assert_eq!(tasks.len(), 2);
        assert_eq!(tasks.shutdown(Duration::from_secs(1)).await, 0);
        assert!(done.load(Ordering::SeqCst), "the one-off task ran to its end");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_up_after_the_grace_period() {
        let tasks = Tasks::default();
        tasks.spawn(async { tokio::time::sleep(Duration::from_secs(60)).await });
        assert_eq!(tasks.shutdown(Duration::from_millis(100)).await, 1);
    }
}
