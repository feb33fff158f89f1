//! Shadow traffic: after the primary answered, the same request runs on the
//! deployment's shadow versions in the background. Answers are discarded;
//! each shadow's latency and whether its output matched the primary's are
//! recorded. Shadows are bounded by a shared number of slots (beyond them a
//! shadow is dropped and counted) and the primary never waits for them.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::ServeError;
use crate::services::ShadowStats;
use crate::tasks::Tasks;

/// What shadows need from the server: slots, counters, the task owner.
#[derive(Clone)]
pub struct Shadows {
    pub slots: Arc<Semaphore>,
    pub stats: Arc<ShadowStats>,
    pub tasks: Tasks,
}

/// What the primary answered, to compare shadows with.
pub struct Primary {
    pub model: String,
    /// The compared part of the answer; `None` when there is nothing to
    /// compare (a stream).
    pub output: Option<Value>,
    pub time: Duration,
}

/// Runs `run(version)` for each shadow version in the background. `run`
/// answers the compared part of the shadow's output.
pub fn mirror<F, Fut>(shadows: &Shadows, versions: Vec<i64>, primary: Primary, run: F)
where
    F: Fn(i64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<Value>, ServeError>> + Send + 'static,
{
    if versions.is_empty() {
        return;
    }
    let run = Arc::new(run);
    let primary = Arc::new(primary);
    for version in versions {
        let Ok(permit) = shadows.slots.clone().try_acquire_owned() else {
            shadows.stats.dropped();
            continue;
        };
        let (run, primary, metrics) = (run.clone(), primary.clone(), shadows.stats.clone());
        shadows.tasks.spawn(async move {
            let _permit = permit;
            let start = Instant::now();
            let outcome = run(version).await;
            let elapsed = start.elapsed();
            match outcome {
                Ok(output) => {
                    let same = match (&primary.output, &output) {
                        (Some(p), Some(o)) => Some(p == o),
                        _ => None,
                    };
                    metrics.done(true, elapsed);
                    tracing::info!(target: "tessera::shadow", model = %primary.model, version,
                        shadow_ms = elapsed.as_secs_f64() * 1e3,
                        primary_ms = primary.time.as_secs_f64() * 1e3,
                        same_output = ?same, "shadow answered");
                }
                Err(e) => {
                    metrics.done(false, elapsed);
                    tracing::info!(target: "tessera::shadow", model = %primary.model, version,
                        error = %e, "shadow failed");
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shadows(slots: usize) -> Shadows {
        Shadows {
            slots: Arc::new(Semaphore::new(slots)),
            stats: Arc::new(ShadowStats::default()),
            tasks: Tasks::default(),
        }
    }

    fn primary() -> Primary {
        Primary { model: "m".into(), output: Some(Value::from(1)), time: Duration::ZERO }
    }

    fn render(s: &Shadows) -> String {
        let mut r = prometheus_client::registry::Registry::default();
        s.stats.register(&mut r);
        tessera_core::metrics::encode(&r).unwrap()
    }

    fn metric(s: &Shadows, line_start: &str) -> String {
        render(s).lines().filter(|l| l.starts_with(line_start)).collect::<Vec<_>>().join("\n")
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_shadow_never_holds_the_primary_and_full_slots_drop_the_rest() {
        let s = shadows(1);
        let started = Instant::now();
        mirror(&s, vec![2, 3], primary(), |_| async {
            std::future::pending::<()>().await;
            Ok(None)
        });
        // mirror returned at once; one shadow runs, the other found no slot.
        assert_eq!(started.elapsed(), Duration::ZERO);
        assert_eq!(s.tasks.len(), 1);
        assert!(
            metric(&s, "tessera_shadow_requests_total").contains("dropped\"} 1"),
            "{}",
            render(&s)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_shadow_is_counted_by_outcome() {
        let s = shadows(4);
        mirror(&s, vec![2, 3], primary(), |v| async move {
            if v == 2 {
                Ok(Some(Value::from(1)))
            } else {
                Err(ServeError::ModelNotReady("x".into()))
            }
        });
        assert_eq!(s.tasks.shutdown(Duration::from_secs(1)).await, 0);
        let text = render(&s);
        for line in [
            "tessera_shadow_requests_total{outcome=\"ok\"} 1\n",
            "tessera_shadow_requests_total{outcome=\"error\"} 1\n",
            "tessera_shadow_requests_total{outcome=\"dropped\"} 0\n",
            "tessera_shadow_duration_seconds_count{outcome=\"ok\"} 1\n",
            "tessera_shadow_duration_seconds_count{outcome=\"error\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }

    #[tokio::test]
    async fn no_versions_no_tasks() {
        let s = shadows(4);
        mirror(&s, vec![], primary(), |_| async { Ok(None) });
        assert!(s.tasks.is_empty());
    }
}
