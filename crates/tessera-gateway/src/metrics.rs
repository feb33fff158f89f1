//! The HTTP edge's metrics under the `tessera_` prefix, registered in the
//! process's one registry ([`Metrics::register`]). Label values come from
//! bounded sets only (route templates, known methods, status codes), so
//! cardinality stays bounded.

use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tessera_core::metrics::{counters, latency_histogram};

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(clippy::upper_case_acronyms, reason = "the variants are the exported label values")]
enum Method {
    GET,
    POST,
    PUT,
    PATCH,
    DELETE,
    HEAD,
    OPTIONS,
    OTHER,
}

impl Method {
    fn of(m: &str) -> Self {
        match m {
            "GET" => Self::GET,
            "POST" => Self::POST,
            "PUT" => Self::PUT,
            "PATCH" => Self::PATCH,
            "DELETE" => Self::DELETE,
            "HEAD" => Self::HEAD,
            "OPTIONS" => Self::OPTIONS,
            _ => Self::OTHER,
        }
    }
}

/// The labels of `tessera_http_requests_total`, in their exported order.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: Method,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(non_camel_case_types, reason = "the variants are the exported label values")]
enum KeyCacheOutcome {
    hit,
    miss,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyCacheLabels {
    outcome: KeyCacheOutcome,
}

pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    key_cache: Family<KeyCacheLabels, Counter>,
    key_cache_hits: Counter,
    key_cache_misses: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let key_cache = Family::default();
        let [key_cache_hits, key_cache_misses] = counters(
            &key_cache,
            [KeyCacheOutcome::hit, KeyCacheOutcome::miss].map(|outcome| KeyCacheLabels { outcome }),
        );
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            key_cache,
            key_cache_hits,
            key_cache_misses,
        }
    }
}

impl Metrics {
    pub fn observe_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        let labels = RequestLabels { method: Method::of(method), route: route.to_owned(), status };
        self.requests.get_or_create(&labels).inc();
        let route = RouteLabels { route: labels.route };
        self.latency.get_or_create(&route).observe(elapsed.as_secs_f64());
    }

    pub fn auth_cache(&self, hit: bool) {
        if hit { &self.key_cache_hits } else { &self.key_cache_misses }.inc();
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tessera_http_requests",
            "HTTP requests by method, route template and status",
            self.requests.clone(),
        );
        registry.register(
            "tessera_http_request_duration_seconds",
            "HTTP request latency by route template",
            self.latency.clone(),
        );
        registry.register(
            "tessera_auth_key_cache",
            "API key lookups by cache outcome",
            self.key_cache.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_method_route_and_status_and_timed_by_route() {
        let m = Metrics::default();
        let mut r = Registry::default();
        m.register(&mut r);
        m.observe_request("GET", "/v1/me", 200, Duration::from_micros(300));
        m.observe_request("GET", "/v1/me", 200, Duration::from_millis(3));
        m.observe_request("BREW", "/v1/me", 404, Duration::from_secs(20));
        m.observe_request("GET", "/v1/\"odd\"", 200, Duration::ZERO);
        m.auth_cache(true);
        let text = tessera_core::metrics::encode(&r).unwrap();
        for line in [
            "# HELP tessera_http_requests HTTP requests by method, route template and status.\n",
            "# TYPE tessera_http_requests counter\n",
            "tessera_http_requests_total{method=\"GET\",route=\"/v1/me\",status=\"200\"} 2\n",
            "tessera_http_requests_total{method=\"OTHER\",route=\"/v1/me\",status=\"404\"} 1\n",
            "tessera_http_requests_total{method=\"GET\",route=\"/v1/\\\"odd\\\"\",status=\"200\"} 1\n",
            "# TYPE tessera_http_request_duration_seconds histogram\n",
            "tessera_http_request_duration_seconds_bucket{le=\"0.0005\",route=\"/v1/me\"} 1\n",
            "tessera_http_request_duration_seconds_bucket{le=\"0.005\",route=\"/v1/me\"} 2\n",
            "tessera_http_request_duration_seconds_bucket{le=\"10.0\",route=\"/v1/me\"} 2\n",
            "tessera_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/v1/me\"} 3\n",
            "tessera_http_request_duration_seconds_count{route=\"/v1/me\"} 3\n",
            "tessera_auth_key_cache_total{outcome=\"hit\"} 1\n",
            "tessera_auth_key_cache_total{outcome=\"miss\"} 0\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
