//! Prometheus metrics under the `tessera_` prefix, rendered in the text
//! exposition format. Label values come from bounded sets only (route
//! templates, known methods, status codes), so cardinality stays bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tessera_core::metrics::{Histogram, LATENCY_BUCKETS};

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(&'static str, String, u16), u64>,
    latency: BTreeMap<String, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
    auth_cache_hits: AtomicU64,
    auth_cache_misses: AtomicU64,
}

fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let Ok(mut inner) = self.inner.lock() else { return };
        *inner.requests.entry((method_label(method), route.to_owned(), status)).or_default() += 1;
        match inner.latency.get_mut(route) {
            Some(h) => h.observe(elapsed.as_secs_f64()),
            None => {
                let mut h = Histogram::new(LATENCY_BUCKETS);
                h.observe(elapsed.as_secs_f64());
                inner.latency.insert(route.to_owned(), h);
            }
        }
    }

    pub fn auth_cache(&self, hit: bool) {
        let c = if hit { &self.auth_cache_hits } else { &self.auth_cache_misses };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let (requests, latency) = match self.inner.lock() {
            Ok(i) => (i.requests.clone(), i.latency.clone()),
            Err(_) => Default::default(),
        };
        out.push_str("# HELP tessera_http_requests_total HTTP requests by method, route template and status.\n");
        out.push_str("# TYPE tessera_http_requests_total counter\n");
        for ((method, route, status), n) in &requests {
            let _ = writeln!(
                out,
                "tessera_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str("# HELP tessera_http_request_duration_seconds HTTP request latency by route template.\n");
        out.push_str("# TYPE tessera_http_request_duration_seconds histogram\n");
        for (route, h) in &latency {
            h.render(
                &mut out,
                "tessera_http_request_duration_seconds",
                &format!("route=\"{}\"", escape(route)),
            );
        }
        out.push_str("# HELP tessera_auth_key_cache_total API key lookups by cache outcome.\n");
        out.push_str("# TYPE tessera_auth_key_cache_total counter\n");
        let _ = writeln!(
            out,
            "tessera_auth_key_cache_total{{outcome=\"hit\"}} {}",
            self.auth_cache_hits.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "tessera_auth_key_cache_total{{outcome=\"miss\"}} {}",
            self.auth_cache_misses.load(Ordering::Relaxed)
        );
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.observe_request("GET", "/v1/me", 200, Duration::from_micros(300));
        m.observe_request("GET", "/v1/me", 200, Duration::from_millis(3));
        m.observe_request("BREW", "/v1/me", 404, Duration::from_secs(20));
        let text = m.render();
        assert!(text.contains(
            "tessera_http_requests_total{method=\"GET\",route=\"/v1/me\",status=\"200\"} 2"
        ));
        assert!(text.contains(
            "tessera_http_requests_total{method=\"OTHER\",route=\"/v1/me\",status=\"404\"} 1"
        ));
        assert!(text.contains("le=\"0.0005\"} 1"));
        assert!(text.contains("le=\"0.005\"} 2"));
        assert!(text.contains("le=\"10\"} 2"));
        assert!(text.contains("le=\"+Inf\"} 3"));
    }
}
