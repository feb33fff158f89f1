//! Shared pieces of the process's metrics. Every metric lives in one
//! `prometheus_client` registry (built with the serving layer's `Services`,
//! the HTTP edge adding its own) and is encoded as OpenMetrics text on
//! `GET /metrics`. Counting is the crate's atomic `Counter`s and `Histogram`s;
//! what is only known at scrape time (queue lengths, states) is read then, by
//! a collector.
//!
//! `Registry::register` ends each help text with a period; collectors write
//! theirs whole.

use std::fmt;
use std::hash::Hash;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds, from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Buckets for sizes (batch sizes, counts).
pub const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// A histogram over [`LATENCY_BUCKETS`] (seconds).
pub fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS.iter().copied())
}

/// A histogram over [`SIZE_BUCKETS`].
pub fn size_histogram() -> Histogram {
    Histogram::new(SIZE_BUCKETS.iter().copied())
}

/// The counters of a family whose label sets are all known up front: each is
/// exported (at 0) before it first counts, and counting is one atomic add.
pub fn counters<S: Clone + Hash + Eq, const N: usize>(
    family: &Family<S, Counter>,
    labels: [S; N],
) -> [Counter; N] {
    labels.map(|l| family.get_or_create_owned(&l))
}

/// Encodes one gauge family from values read now (`help` whole, with its period).
pub fn encode_gauges<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (S, i64)>,
) -> fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A gauge without labels whose value is read when metrics are scraped.
pub struct ScrapedGauge {
    name: &'static str,
    help: String,
    read: Box<dyn Fn() -> i64 + Send + Sync>,
}

impl ScrapedGauge {
    /// `help` as for `Registry::register` (the period is added).
    pub fn new(
        name: &'static str,
        help: &str,
        read: impl Fn() -> i64 + Send + Sync + 'static,
    ) -> Box<Self> {
        Box::new(Self { name, help: format!("{help}."), read: Box::new(read) })
    }
}

impl fmt::Debug for ScrapedGauge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScrapedGauge").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Collector for ScrapedGauge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let metric = encoder.encode_descriptor(self.name, &self.help, None, MetricType::Gauge)?;
        ConstGauge::new((self.read)()).encode(metric)
    }
}

/// The registry as OpenMetrics text, ending with `# EOF`.
pub fn encode(registry: &Registry) -> Result<String, fmt::Error> {
    let mut out = String::with_capacity(16 << 10);
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_cumulative_and_overflow_counts_only_in_inf() {
        let mut r = Registry::default();
        let h = latency_histogram();
        r.register("x", "Latency", h.clone());
        h.observe(0.0003);
        h.observe(0.003);
        h.observe(20.0);
        let s = encode(&r).unwrap();
        assert!(s.contains("# HELP x Latency.\n# TYPE x histogram\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.0005\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"0.005\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"10.0\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
        assert!(s.ends_with("# EOF\n"), "{s}");
    }

    #[test]
    fn known_counters_show_zero_before_they_count_and_scraped_gauges_read_now() {
        let mut r = Registry::default();
        let family = Family::<Vec<(&'static str, &'static str)>, Counter>::default();
        r.register("c", "Things", family.clone());
        let [a, _b] = counters(&family, [vec![("k", "a")], vec![("k", "b")]]);
        a.inc();
        let n = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(7));
        let m = n.clone();
        r.register_collector(ScrapedGauge::new("g", "Now", move || {
            m.load(std::sync::atomic::Ordering::Relaxed)
        }));
        n.store(9, std::sync::atomic::Ordering::Relaxed);
        let s = encode(&r).unwrap();
        assert!(s.contains("c_total{k=\"a\"} 1\n") && s.contains("c_total{k=\"b\"} 0\n"), "{s}");
        assert!(s.contains("# HELP g Now.\n# TYPE g gauge\ng 9\n"), "{s}");
    }
}
