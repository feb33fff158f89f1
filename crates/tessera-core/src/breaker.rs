//! Circuit breakers (G4), one per backend (a loaded model version, later an
//! upstream). CLOSED -> OPEN after `consecutive_failures` failures in a row,
//! or when at least `min_calls` calls in the rolling `window` failed at
//! `failure_ratio` or more; OPEN -> HALF_OPEN after `cool_down`; in HALF_OPEN
//! up to `probes` calls go through: all succeed -> CLOSED, any fails -> OPEN.
//! Only backend failures count (a runtime error, a timeout), never a client's
//! bad input or backpressure.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    pub window: Duration,
    pub min_calls: usize,
    pub failure_ratio: f64,
    pub consecutive_failures: u32,
    pub cool_down: Duration,
    pub probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self::from(crate::config::BreakerSettings::default())
    }
}

impl From<crate::config::BreakerSettings> for BreakerConfig {
    fn from(b: crate::config::BreakerSettings) -> Self {
        Self {
            window: b.window,
            min_calls: b.min_calls,
            failure_ratio: b.failure_ratio,
            consecutive_failures: b.consecutive_failures,
            cool_down: b.cool_down,
            probes: b.probes,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed,
    Open {
        since: Instant,
    },
    /// `since`: when the probes were let through. A probe whose outcome is
    /// never recorded (its caller went away) is forgotten after a cool-down,
    /// so lost probes cannot keep the breaker half open for good.
    HalfOpen {
        admitted: u32,
        succeeded: u32,
        since: Instant,
    },
}

#[derive(Debug)]
struct Inner {
    state: State,
    calls: VecDeque<(Instant, bool)>,
    consecutive: u32,
}

/// A snapshot for `GET /admin/v1/breakers` and metrics.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BreakerView {
    pub backend: String,
    pub state: BreakerState,
    /// Calls and failures in the rolling window.
    pub calls: usize,
    pub failures: usize,
    pub consecutive_failures: u32,
}

pub struct Breaker {
    name: String,
    cfg: BreakerConfig,
    inner: Mutex<Inner>,
}

/// Why a call was not let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub retry_after: Duration,
}

impl Breaker {
    pub fn new(name: &str, cfg: BreakerConfig) -> Self {
        Self {
            name: name.to_owned(),
            cfg,
            inner: Mutex::new(Inner {
                state: State::Closed,
                calls: VecDeque::new(),
                consecutive: 0,
            }),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Asks to make a call at `now`.
    pub fn admit(&self, now: Instant) -> Result<(), Rejected> {
        let Ok(mut g) = self.inner.lock() else { return Ok(()) };
        match g.state {
            State::Closed => Ok(()),
            State::Open { since } => {
                let open_for = now.saturating_duration_since(since);
                if open_for >= self.cfg.cool_down {
                    g.state = State::HalfOpen { admitted: 1, succeeded: 0, since: now };
                    Ok(())
                } else {
                    Err(Rejected { retry_after: self.cfg.cool_down - open_for })
                }
            }
            State::HalfOpen { admitted, succeeded, since } if admitted < self.cfg.probes => {
                g.state = State::HalfOpen { admitted: admitted + 1, succeeded, since };
                Ok(())
            }
            State::HalfOpen { since, .. }
                if now.saturating_duration_since(since) >= self.cfg.cool_down =>
            {
                g.state = State::HalfOpen { admitted: 1, succeeded: 0, since: now };
                Ok(())
            }
            State::HalfOpen { .. } => Err(Rejected { retry_after: Duration::from_secs(1) }),
        }
    }

    /// Records the outcome of an admitted call.
    pub fn record(&self, now: Instant, success: bool) {
        let Ok(mut g) = self.inner.lock() else { return };
        let window = self.cfg.window;
        g.calls.push_back((now, success));
        while g.calls.front().is_some_and(|(t, _)| now.saturating_duration_since(*t) > window) {
            g.calls.pop_front();
        }
        g.consecutive = if success { 0 } else { g.consecutive + 1 };
        g.state = match g.state {
            State::HalfOpen { .. } if !success => State::Open { since: now },
            State::HalfOpen { admitted, succeeded, since } => {
                if succeeded + 1 >= self.cfg.probes {
                    g.calls.clear();
                    State::Closed
                } else {
                    State::HalfOpen { admitted, succeeded: succeeded + 1, since }
                }
            }
            State::Closed if !success && self.should_open(&g) => State::Open { since: now },
            State::Open { since } => State::Open { since },
            State::Closed => State::Closed,
        };
    }

    fn should_open(&self, g: &Inner) -> bool {
        if g.consecutive >= self.cfg.consecutive_failures {
            return true;
        }
        let failures = g.calls.iter().filter(|(_, ok)| !ok).count();
        g.calls.len() >= self.cfg.min_calls
            && failures as f64 >= self.cfg.failure_ratio * g.calls.len() as f64
    }

    pub fn view(&self) -> BreakerView {
        let (state, calls, failures, consecutive) = match self.inner.lock() {
            Ok(g) => (
                match g.state {
                    State::Closed => BreakerState::Closed,
                    State::Open { .. } => BreakerState::Open,
                    State::HalfOpen { .. } => BreakerState::HalfOpen,
                },
                g.calls.len(),
                g.calls.iter().filter(|(_, ok)| !ok).count(),
                g.consecutive,
            ),
            Err(_) => (BreakerState::Closed, 0, 0, 0),
        };
        BreakerView {
            backend: self.name.clone(),
            state,
            calls,
            failures,
            consecutive_failures: consecutive,
        }
    }
}

/// All breakers of this replica, by backend.
#[derive(Default)]
pub struct Breakers {
    cfg: BreakerConfig,
    map: Mutex<HashMap<String, Arc<Breaker>>>,
}

impl Breakers {
    pub fn new(cfg: BreakerConfig) -> Self {
        Self { cfg, map: Mutex::new(HashMap::new()) }
    }

    pub fn get(&self, backend: &str) -> Arc<Breaker> {
        match self.map.lock() {
            Ok(mut m) => m
                .entry(backend.to_owned())
                .or_insert_with(|| Arc::new(Breaker::new(backend, self.cfg)))
                .clone(),
            Err(_) => Arc::new(Breaker::new(backend, self.cfg)),
        }
    }

    pub fn views(&self) -> Vec<BreakerView> {
        let mut v: Vec<BreakerView> = match self.map.lock() {
            Ok(m) => m.values().map(|b| b.view()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| a.backend.cmp(&b.backend));
        v
    }
}

/// The label of `tessera_breaker_state`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

impl std::fmt::Debug for Breakers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Breakers").finish_non_exhaustive()
    }
}

/// `tessera_breaker_state{backend}`: 0 closed, 1 half open, 2 open, read at scrape.
impl Collector for Breakers {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let states = self.views().into_iter().map(|v| {
            let n = match v.state {
                BreakerState::Closed => 0,
                BreakerState::HalfOpen => 1,
                BreakerState::Open => 2,
            };
            (BackendLabels { backend: v.backend }, n)
        });
        crate::metrics::encode_gauges(
            &mut encoder,
            "tessera_breaker_state",
            "Circuit breaker state by backend: 0 closed, 1 half open, 2 open.",
            states,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            min_calls: 4,
            failure_ratio: 0.5,
            consecutive_failures: 3,
            cool_down: Duration::from_secs(5),
            probes: 2,
        }
    }

    #[test]
    fn consecutive_failures_open_then_cool_down_half_opens_then_probes_close() {
        let b = Breaker::new("m@1", cfg());
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(b.admit(t0).is_ok());
            b.record(t0 + Duration::from_millis(i), false);
        }
        assert_eq!(b.view().state, BreakerState::Open);
        let r = b.admit(t0 + Duration::from_secs(2)).unwrap_err();
        assert!(
            r.retry_after <= Duration::from_millis(3_010) && r.retry_after > Duration::from_secs(2),
            "{r:?}"
        );
        // After the cool-down: half open, two probes, a third call waits.
        let t1 = t0 + Duration::from_secs(6);
        assert!(b.admit(t1).is_ok());
        assert_eq!(b.view().state, BreakerState::HalfOpen);
        assert!(b.admit(t1).is_ok());
        assert!(b.admit(t1).is_err());
        b.record(t1, true);
        b.record(t1, true);
        assert_eq!(b.view().state, BreakerState::Closed);
    }

    #[test]
    fn a_failed_probe_reopens() {
        let b = Breaker::new("m@1", cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record(t0, false);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert!(b.admit(t1).is_ok());
        b.record(t1, false);
        assert_eq!(b.view().state, BreakerState::Open);
        assert!(b.admit(t1 + Duration::from_secs(1)).is_err());
    }

    #[test]
    fn failure_ratio_needs_enough_calls_in_the_window() {
        let b = Breaker::new("m@1", cfg());
        let t0 = Instant::now();
        // Alternating failures never reach 3 in a row; 2 of 4 is the ratio.
        b.record(t0, false);
        b.record(t0, true);
        b.record(t0, false);
        assert_eq!(b.view().state, BreakerState::Closed, "3 calls are below min_calls");
        b.record(t0, true);
        b.record(t0, false);
        assert_eq!(b.view().state, BreakerState::Open);
        // Old calls leave the window.
        let b = Breaker::new("m@2", cfg());
        b.record(t0, false);
        b.record(t0, false);
        b.record(t0 + Duration::from_secs(20), true);
        b.record(t0 + Duration::from_secs(20), true);
        b.record(t0 + Duration::from_secs(20), false);
        assert_eq!(b.view().state, BreakerState::Closed);
        assert_eq!(b.view().calls, 3);
    }

    #[test]
    fn successes_reset_the_consecutive_count() {
        let b = Breaker::new("m@1", cfg());
        let t0 = Instant::now();
        for ok in [false, false, true, false, false, true] {
            b.record(t0, ok);
        }
        assert_eq!(b.view().state, BreakerState::Open, "4 of 6 failed: the ratio trips");
        let b = Breaker::new("m@2", BreakerConfig { min_calls: 100, ..cfg() });
        for ok in [false, false, true, false, false, true] {
            b.record(t0, ok);
        }
        assert_eq!(b.view().state, BreakerState::Closed);
    }

    #[test]
    fn probes_that_never_report_are_forgotten_after_a_cool_down() {
        let b = Breaker::new(
            "m@1",
            BreakerConfig {
                window: Duration::from_secs(10),
                min_calls: 4,
                failure_ratio: 0.5,
                consecutive_failures: 3,
                cool_down: Duration::from_secs(5),
                probes: 2,
            },
        );
        let t0 = Instant::now();
        for _ in 0..3 {
            b.record(t0, false);
        }
        let t1 = t0 + Duration::from_secs(6);
        assert!(b.admit(t1).is_ok());
        assert!(b.admit(t1).is_ok());
        // Both probes' callers went away: nothing is recorded.
        assert!(b.admit(t1 + Duration::from_secs(1)).is_err());
        assert!(b.admit(t1 + Duration::from_secs(6)).is_ok(), "new probes after a cool-down");
    }

    #[test]
    fn breaker_states_are_exported_by_backend() {
        let breakers = Arc::new(Breakers::new(cfg()));
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(breakers.clone()));
        let t0 = Instant::now();
        breakers.get("a@1");
        for _ in 0..3 {
            breakers.get("b\"@2").record(t0, false);
        }
        let text = crate::metrics::encode(&r).unwrap();
        assert!(text.contains("# TYPE tessera_breaker_state gauge\n"), "{text}");
        assert!(text.contains("tessera_breaker_state{backend=\"a@1\"} 0\n"), "{text}");
        assert!(text.contains("tessera_breaker_state{backend=\"b\\\"@2\"} 2\n"), "{text}");
    }
}
