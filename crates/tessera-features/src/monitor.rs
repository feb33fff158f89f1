//! Feature monitoring: per tenant and view, the rows and values written
//! (pushed or aggregated), how many values were null, and how fresh the
//! newest row is, for `/metrics`. The drift monitors read the offline log.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use crate::{EntityKey, Row};

#[derive(Debug, Clone, Default, PartialEq)]
struct ViewStats {
    rows: u64,
    values: u64,
    nulls: u64,
    /// The newest event time written, epoch milliseconds.
    newest: i64,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViewLabels {
    tenant: String,
    view: String,
}

#[derive(Debug, Default)]
pub struct Monitor {
    views: Mutex<HashMap<(TenantId, String), ViewStats>>,
}

impl Monitor {
    /// Counts rows written to a view.
    pub fn observe(&self, tenant: &TenantId, view: &str, rows: &[(EntityKey, Row)]) {
        if rows.is_empty() {
            return;
        }
        let mut views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        let s = views.entry((tenant.clone(), view.to_owned())).or_default();
        for (_, r) in rows {
            s.rows += 1;
            s.values += r.values.len() as u64;
            s.nulls += r.values.values().filter(|v| v.is_null()).count() as u64;
            s.newest = s.newest.max(r.event_ts.millis());
        }
    }

    /// A view is gone: its series go with it.
    pub fn forget(&self, tenant: &TenantId, view: &str) {
        self.views
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(tenant.clone(), view.to_owned()));
    }

    fn snapshot(&self) -> Vec<(ViewLabels, ViewStats)> {
        let views = self.views.lock().unwrap_or_else(PoisonError::into_inner);
        views
            .iter()
            .map(|((t, v), s)| {
                (ViewLabels { tenant: t.as_str().to_owned(), view: v.clone() }, s.clone())
            })
            .collect()
    }
}

fn counters(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    samples: impl Iterator<Item = (ViewLabels, u64)>,
) -> std::fmt::Result {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(v).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Collector for Monitor {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let views = self.snapshot();
        let now = Timestamp::now().millis();
        counters(
            &mut encoder,
            "tessera_feature_rows",
            "Feature rows written per view (pushed or aggregated).",
            views.iter().map(|(l, s)| (l.clone(), s.rows)),
        )?;
        counters(
            &mut encoder,
            "tessera_feature_values",
            "Feature values written per view.",
            views.iter().map(|(l, s)| (l.clone(), s.values)),
        )?;
        counters(
            &mut encoder,
            "tessera_feature_null_values",
            "Feature values written as null per view (the null rate is this over tessera_feature_values).",
            views.iter().map(|(l, s)| (l.clone(), s.nulls)),
        )?;
        tessera_core::metrics::encode_gauges(
            &mut encoder,
            "tessera_feature_freshness_seconds",
            "Age of the newest feature row written per view, by its event time.",
            views.iter().map(|(l, s)| (l.clone(), (now - s.newest).max(0) / 1000)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rows_nulls_and_freshness_show_per_view() {
        let m = Monitor::default();
        let t = TenantId::generate();
        let at = Timestamp::from_millis(Timestamp::now().millis() - 90_000);
        let row = |v: serde_json::Value| {
            (
                EntityKey("k".into()),
                Row { values: v.as_object().unwrap().clone(), event_ts: at, created: at },
            )
        };
        m.observe(
            &t,
            "stats",
            &[row(json!({"a": 1, "b": null})), row(json!({"a": null, "b": null}))],
        );
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register_collector(Box::new(m));
        let text = tessera_core::metrics::encode(&registry).unwrap();
        let labels = format!("{{tenant=\"{}\",view=\"stats\"}}", t.as_str());
        assert!(text.contains(&format!("tessera_feature_rows_total{labels} 2")), "{text}");
        assert!(text.contains(&format!("tessera_feature_values_total{labels} 4")), "{text}");
        assert!(text.contains(&format!("tessera_feature_null_values_total{labels} 3")), "{text}");
        let fresh =
            text.lines().find(|l| l.starts_with("tessera_feature_freshness_seconds{")).unwrap();
        let secs: i64 = fresh.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((89..=95).contains(&secs), "{fresh}");
    }
}
