//! The feature store (F1, F2) through the real binary: definitions with
//! their checks and versions, pushes checked cell by cell and written whole,
//! online reads in Feast's shape with every status, roles, another tenant's
//! views out of reach, durability across a restart (embedded), and two
//! replicas sharing the Redis online store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tessera_core::time::Timestamp;

const ADMIN: &str = "features-admin-key-0123456789";

fn ago(secs: i64) -> String {
    Timestamp::from_millis(Timestamp::now().millis() - secs * 1000).to_rfc3339()
}

async fn put(s: &Server, key: &str, path: &str, body: Value) -> common::Resp {
    s.api.call(Method::PUT, path, Some(key), Some(body)).await
}

async fn post(s: &Server, key: &str, path: &str, body: Value) -> common::Resp {
    s.api.call(Method::POST, path, Some(key), Some(body)).await
}

/// The customer entity, a push view over it and a service.
async fn define(s: &Server, key: &str) {
    let r = put(
        s,
        key,
        "/v1/features/entities/customer",
        json!({"join_keys": ["customer_id"], "value_type": "string"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let view = json!({"entities": ["customer"], "ttl": "1h", "source": {"push": {}},
        "schema": [{"name": "spend", "dtype": "float64"}, {"name": "orders", "dtype": "int64"},
                   {"name": "tier", "dtype": "string"}]});
    let r = put(s, key, "/v1/features/views/customer_stats", view).await;
    assert_eq!((r.status, &r.body["version"]), (StatusCode::CREATED, &json!(1)), "{r:?}");
    let r = put(
        s,
        key,
        "/v1/features/services/churn",
        json!({"features": ["customer_stats:spend", "customer_stats:tier"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

fn rows() -> Value {
    json!({"push_source_name": "customer_stats", "to": "online", "df": {
        "customer_id": ["c1", "c2", "c3"],
        "event_timestamp": [ago(10), ago(20), ago(7200)],
        "spend": [10.5, 3, 7.25],
        "orders": [2, null, 5],
        "tier": ["gold", "basic", "silver"]}})
}

fn read_all(ids: &[&str]) -> Value {
    json!({"entities": {"customer_id": ids},
        "features": ["customer_stats:spend", "customer_stats:orders", "customer_stats:tier"]})
}

/// The column of `name` in an online answer.
fn column<'a>(r: &'a common::Resp, name: &str) -> &'a Value {
    let names = r.body["metadata"]["feature_names"].as_array().unwrap();
    let i = names.iter().position(|n| n == name).unwrap_or_else(|| panic!("{name} in {names:?}"));
    &r.body["results"][i]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn define_push_and_read_online() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let (acme, dev, _) = s.tenant_with_key("acme", "developer").await;
    define(&s, &dev).await;

    // Definitions are checked against each other.
    let r = put(
        &s,
        &dev,
        "/v1/features/views/orphan",
        json!({"entities": ["driver"], "source": {"push": {}},
        "schema": [{"name": "x", "dtype": "int64"}]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("unknown entity \"driver\""),
        "{r:?}"
    );
    let r =
        put(&s, &dev, "/v1/features/services/bad", json!({"features": ["customer_stats:nope"]}))
            .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let same =
        put(&s, &dev, "/v1/features/entities/customer", json!({"join_keys": ["customer_id"]}))
            .await;
    assert_eq!(
        (same.status, &same.body["version"]),
        (StatusCode::OK, &json!(1)),
        "an unchanged entity: {same:?}"
    );
    let list = s.api.get("/v1/features/views", &dev).await;
    assert_eq!(list.body["data"][0]["name"], "customer_stats", "{list:?}");
    assert_eq!(list.body["data"][0]["spec"]["ttl"], "1h");

    // A push is checked cell by cell and written whole.
    let mut bad = rows();
    bad["df"]["orders"] = json!([2, "many", 5]);
    let r = post(&s, &dev, "/v1/features/push", bad).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("df.orders[1]")),
        "{r:?}"
    );
    let mut unknown = rows();
    unknown["df"]["color"] = json!(["red", "red", "red"]);
    let r = post(&s, &dev, "/v1/features/push", unknown).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("df.color")),
        "{r:?}"
    );
    let nothing = post(&s, &dev, "/v1/features/online", read_all(&["c1"])).await;
    assert_eq!(
        column(&nothing, "spend")["statuses"],
        json!(["NOT_FOUND"]),
        "a refused push wrote nothing"
    );
    let r = post(&s, &dev, "/v1/features/push", rows()).await;
    assert_eq!((r.status, &r.body), (StatusCode::OK, &Value::Null), "{r:?}");
    let metrics = s.api.metrics().await;
    let labels = format!("{{tenant=\"{acme}\",view=\"customer_stats\"}}");
    assert!(metrics.contains(&format!("tessera_feature_rows_total{labels} 3")), "{metrics}");
    assert!(metrics.contains(&format!("tessera_feature_null_values_total{labels} 1")), "{metrics}");
    assert!(metrics.contains(&format!("tessera_feature_freshness_seconds{labels}")), "{metrics}");

    // Every status, in Feast's column layout, the entity column first.
    let r = post(&s, &dev, "/v1/features/online", read_all(&["c1", "c2", "c3", "c9"])).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.body["metadata"]["feature_names"],
        json!(["customer_id", "spend", "orders", "tier"])
    );
    assert_eq!(column(&r, "customer_id")["values"], json!(["c1", "c2", "c3", "c9"]));
    let spend = column(&r, "spend");
    assert_eq!(spend["values"], json!([10.5, 3.0, 7.25, null]));
    assert_eq!(spend["statuses"], json!(["PRESENT", "PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]));
    assert_eq!(spend["event_timestamps"][3], "1970-01-01T00:00:00Z");
    assert!(spend["event_timestamps"][0].as_str().unwrap().ends_with('Z'));
    assert_eq!(column(&r, "orders")["statuses"][1], "NULL_VALUE");
    assert_eq!(column(&r, "orders")["values"][0], 2);

    // A feature service, full names, and Feast's own path.
    let by_service = json!({"entities": {"customer_id": ["c1"]}, "feature_service": "churn", "full_feature_names": true});
    let r = post(&s, &dev, "/v1/features/get-online-features", by_service).await;
    assert_eq!(
        r.body["metadata"]["feature_names"],
        json!(["customer_id", "customer_stats__spend", "customer_stats__tier"]),
        "{r:?}"
    );
    assert_eq!(column(&r, "customer_stats__tier")["values"], json!(["gold"]));
    let r = post(
        &s,
        &dev,
        "/v1/features/online",
        json!({"entities": {"customer_id": ["c1"]}, "features": ["nope:x"]}),
    )
    .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("unknown feature view \"nope\""),
        "{r:?}"
    );
    let r = post(
        &s,
        &dev,
        "/v1/features/online",
        json!({"entities": {"user": ["c1"]}, "features": ["customer_stats:spend"]}),
    )
    .await;
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("keyed by \"customer_id\""),
        "{r:?}"
    );

    // Roles: a viewer and a service read; a viewer cannot push or define.
    let (viewer, _) = s.key_for(&acme, "viewer").await;
    let (service, _) = s.key_for(&acme, "service").await;
    assert_eq!(
        post(&s, &viewer, "/v1/features/online", read_all(&["c1"])).await.status,
        StatusCode::OK
    );
    assert_eq!(post(&s, &viewer, "/v1/features/push", rows()).await.status, StatusCode::FORBIDDEN);
    assert_eq!(post(&s, &service, "/v1/features/push", rows()).await.status, StatusCode::OK);
    let r = put(&s, &viewer, "/v1/features/entities/x", json!({"join_keys": ["x"]})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // Another tenant cannot reach these values, even under the same view name.
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;
    let r = post(&s, &other, "/v1/features/online", read_all(&["c1"])).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    define(&s, &other).await;
    let r = post(&s, &other, "/v1/features/online", read_all(&["c1"])).await;
    assert_eq!(column(&r, "spend")["statuses"], json!(["NOT_FOUND"]), "{r:?}");

    // Changes: a new feature is a new version; a changed type or a removed
    // feature a service reads is refused; what is in use is not deleted.
    let grown = json!({"entities": ["customer"], "ttl": "1h", "source": {"push": {}},
        "schema": [{"name": "spend", "dtype": "float64"}, {"name": "orders", "dtype": "int64"},
                   {"name": "tier", "dtype": "string"}, {"name": "visits", "dtype": "int64"}]});
    let r = put(&s, &dev, "/v1/features/views/customer_stats", grown).await;
    assert_eq!((r.status, &r.body["version"]), (StatusCode::OK, &json!(2)), "{r:?}");
    // Rows written before the feature existed do not have it.
    let visits =
        json!({"entities": {"customer_id": ["c1"]}, "features": ["customer_stats:visits"]});
    let r = post(&s, &dev, "/v1/features/online", visits).await;
    assert_eq!(column(&r, "visits")["statuses"], json!(["NOT_FOUND"]), "{r:?}");
    let retyped = json!({"entities": ["customer"], "source": {"push": {}},
        "schema": [{"name": "spend", "dtype": "string"}, {"name": "tier", "dtype": "string"}]});
    let r = put(&s, &dev, "/v1/features/views/customer_stats", retyped).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    assert!(
        r.body["error"]["message"].as_str().unwrap().contains("\"spend\" cannot change type"),
        "{r:?}"
    );
    let dropped = json!({"entities": ["customer"], "source": {"push": {}}, "schema": [{"name": "orders", "dtype": "int64"}]});
    let r = put(&s, &dev, "/v1/features/views/customer_stats", dropped).await;
    assert!(
        r.status == StatusCode::CONFLICT
            && r.body["error"]["message"].as_str().unwrap().contains("churn"),
        "{r:?}"
    );
    let r = s.api.call(Method::DELETE, "/v1/features/entities/customer", Some(&dev), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let r = s.api.call(Method::DELETE, "/v1/features/views/customer_stats", Some(&dev), None).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let (admin, _) = s.key_for(&acme, "tenant_admin").await;
    let audit = s.api.get("/v1/audit", &admin).await;
    assert!(audit.body.to_string().contains("feature_view.update"), "{audit:?}");

    // Values survive a restart (the embedded store is durable).
    s.terminate().await;
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let r = post(&s, &dev, "/v1/features/online", read_all(&["c1"])).await;
    assert_eq!(column(&r, "tier")["values"], json!(["gold"]), "{r:?}");

    // Deleting in order: the service, then the view and its values.
    for path in ["/v1/features/services/churn", "/v1/features/views/customer_stats"] {
        let r = s.api.call(Method::DELETE, path, Some(&dev), None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{path}: {r:?}");
    }
    let r = s.api.get("/v1/features/views/customer_stats", &dev).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// Two replicas on PostgreSQL and Redis: a push on one is read on the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_redis_online_store() {
    let Some(common::Pair { a, b, dirs: _dirs, .. }) = common::Pair::start(ADMIN).await else {
        return;
    };
    let (_, key, _) = a.tenant_with_key("acme", "developer").await;
    define(&a, &key).await;
    let r = post(&b, &key, "/v1/features/push", rows()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let r = post(&a, &key, "/v1/features/online", read_all(&["c1", "c3", "c9"])).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(column(&r, "spend")["values"], json!([10.5, 7.25, null]));
    assert_eq!(column(&r, "spend")["statuses"], json!(["PRESENT", "OUTSIDE_MAX_AGE", "NOT_FOUND"]));
    // A newer push through the other replica wins; an older one does not.
    let mut newer = rows();
    newer["df"] =
        json!({"customer_id": "c1", "event_timestamp": ago(1), "spend": 99.0, "tier": "gold"});
    assert_eq!(post(&a, &key, "/v1/features/push", newer).await.status, StatusCode::OK);
    let mut older = rows();
    older["df"] =
        json!({"customer_id": "c1", "event_timestamp": ago(600), "spend": 1.0, "tier": "gold"});
    assert_eq!(post(&b, &key, "/v1/features/push", older).await.status, StatusCode::OK);
    let r = post(&b, &key, "/v1/features/online", read_all(&["c1"])).await;
    assert_eq!(column(&r, "spend")["values"], json!([99.0]), "{r:?}");
}

/// With the Redis online store and Redis away, reads and pushes answer 503
/// within the Redis timeout (nothing is acknowledged), and the definitions,
/// which live in the database, still answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_away_is_a_quick_503() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA_ADMIN_KEY", ADMIN)
        .env("TESSERA__REDIS_TIMEOUT_MS", "300");
    // Nothing listens on port 1.
    opts.args = vec!["--redis-url".into(), "redis://127.0.0.1:1".into()];
    let s = Server::start(opts).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    define(&s, &key).await;
    let started = std::time::Instant::now();
    let r = post(&s, &key, "/v1/features/online", read_all(&["c1"])).await;
    assert_eq!(
        (r.status, r.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "service_unavailable"),
        "{r:?}"
    );
    let r = post(&s, &key, "/v1/features/push", rows()).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "{:?}", started.elapsed());
    assert_eq!(s.api.get("/v1/features/views", &key).await.status, StatusCode::OK);
}

/// The stream views of the tests: a sum and a count over 5 minutes sliding
/// every 30 seconds.
async fn define_stream(s: &Server, key: &str) {
    let r =
        put(s, key, "/v1/features/entities/customer", json!({"join_keys": ["customer_id"]})).await;
    assert!(r.status.is_success(), "{r:?}");
    let view = json!({"entities": ["customer"], "source": {"stream": {"event_type": "purchase",
        "allowed_lateness": "1h", "aggregations": [
            {"column": "total", "function": "sum", "window": "5m", "slide": "30s", "name": "spend_5m"},
            {"function": "count", "window": "5m", "slide": "30s", "name": "orders_5m"}]}}});
    let r = put(s, key, "/v1/features/views/live", view).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

/// Purchase `i` of the stream: 10 customers, one event every 700 ms of
/// event time, totals 1..=9.
fn purchase(i: u64, base: i64) -> (String, i64, f64, Value) {
    let customer = format!("c{}", i % 10);
    let ts = base + i as i64 * 700;
    let total = (i % 9 + 1) as f64;
    let e = json!({"id": format!("p{i}"), "type": "purchase", "entity": {"customer_id": customer},
        "ts": Timestamp::from_millis(ts).to_rfc3339(), "properties": {"total": total}});
    (customer, ts, total, e)
}

/// What a brute-force pass gives for each customer: its window ending with
/// the slide of its newest event.
fn expected(
    events: &[(String, i64, f64, Value)],
) -> std::collections::BTreeMap<String, (f64, u64)> {
    let mut out = std::collections::BTreeMap::new();
    for c in events.iter().map(|e| e.0.clone()).collect::<std::collections::BTreeSet<_>>() {
        let newest = events.iter().filter(|e| e.0 == c).map(|e| e.1).max().unwrap();
        let end = newest.div_euclid(30_000) * 30_000 + 30_000;
        let inside: Vec<f64> = events
            .iter()
            .filter(|e| e.0 == c && (end - 300_000..end).contains(&e.1))
            .map(|e| e.2)
            .collect();
        out.insert(c, (inside.iter().sum(), inside.len() as u64));
    }
    out
}

/// Polls the online values until they are `want`.
async fn wait_for_windows(
    s: &Server,
    key: &str,
    want: &std::collections::BTreeMap<String, (f64, u64)>,
) {
    let ids: Vec<&String> = want.keys().collect();
    let body =
        json!({"entities": {"customer_id": ids}, "features": ["live:spend_5m", "live:orders_5m"]});
    let wanted_spend: Vec<Value> = want.values().map(|v| json!(v.0)).collect();
    let wanted_orders: Vec<Value> = want.values().map(|v| json!(v.1)).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let r = post(s, key, "/v1/features/online", body.clone()).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let (spend, orders) =
            (&column(&r, "spend_5m")["values"], &column(&r, "orders_5m")["values"]);
        if spend.as_array() == Some(&wanted_spend) && orders.as_array() == Some(&wanted_orders) {
            return;
        }
        if std::time::Instant::now() >= deadline {
            // The server's warnings (a handler failing, a consumer paused) say why.
            let log = s.log();
            let warnings: Vec<&str> =
                log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
            panic!(
                "windows never matched: got {spend} {orders}, want {wanted_spend:?} {wanted_orders:?}; {}: {}",
                s.url,
                warnings[warnings.len().saturating_sub(20)..].join("\n")
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Events through the log become sliding-window values online, equal to a
/// brute-force recount; a kill -9 mid-stream and the restart's redelivery
/// count nothing twice; a late event is counted, not added.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_views_aggregate_events_and_survive_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN);
    let s = Server::start(opts()).await;
    let (_, key, _) = s.tenant_with_key("streaming", "developer").await;
    define_stream(&s, &key).await;
    // Event times from half an hour ago: within the view's hour of lateness.
    let base = Timestamp::now().millis() - 1_800_000;
    let events: Vec<_> = (0..1_500).map(|i| purchase(i, base)).collect();
    let send = async |s: &Server, part: &[(String, i64, f64, Value)]| {
        for chunk in part.chunks(100) {
            let batch: Vec<Value> = chunk.iter().map(|e| e.3.clone()).collect();
            let r = s.api.send_events(&key, json!(batch)).await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        }
    };
    send(&s, &events[..800]).await;
    // Kill while the pipeline is still working through the first part.
    std::process::Command::new("kill").args(["-9", &s.pid().to_string()]).status().unwrap();
    drop(s);
    let s = Server::start(opts()).await;
    // Sending again what may or may not have landed: ids make it idempotent.
    send(&s, &events[700..]).await;
    wait_for_windows(&s, &key, &expected(&events)).await;

    // An event that comes more than the lateness after it happened is left
    // out and counted.
    let late = json!([{"type": "purchase", "entity": {"customer_id": "c1"},
        "ts": ago(7_200), "properties": {"total": 1000.0}}]);
    assert_eq!(s.api.send_events(&key, late).await.status, StatusCode::ACCEPTED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !s
        .api
        .metrics()
        .await
        .lines()
        .any(|l| l.starts_with("tessera_feature_stream_late_events_total 1"))
    {
        assert!(std::time::Instant::now() < deadline, "the late event was not counted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    wait_for_windows(&s, &key, &expected(&events)).await;
}

/// Two replicas on PostgreSQL, Redis and NATS: both consume the log as one
/// group, add to the same tiles in Redis, and serve the same windows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_views_on_two_replicas_share_their_tiles() {
    let Some(nats) = tessera_store::conformance::service_url("TESSERA_TEST_NATS_URL") else {
        return;
    };
    let Some(common::Pair { a, b, dirs: _dirs, nats_prefix }) =
        common::Pair::start_with(ADMIN, &["--nats-url".into(), nats.clone()]).await
    else {
        return;
    };
    let (tenant, key, _) = a.tenant_with_key("streaming-pair", "developer").await;
    define_stream(&a, &key).await;
    let base = Timestamp::now().millis() - 600_000;
    let events: Vec<_> = (0..600).map(|i| purchase(i, base)).collect();
    for (n, chunk) in events.chunks(50).enumerate() {
        let s = if n % 2 == 0 { &a } else { &b };
        let batch: Vec<Value> = chunk.iter().map(|e| e.3.clone()).collect();
        assert_eq!(s.api.send_events(&key, json!(batch)).await.status, StatusCode::ACCEPTED);
    }
    let want = expected(&events);
    wait_for_windows(&a, &key, &want).await;
    wait_for_windows(&b, &key, &want).await;
    common::drop_nats_stream(&nats_prefix, &tenant).await;
}

/// Pushes to the offline log become a point-in-time training set: Feast's
/// example (a TTL of two hours; an entity row before any feature row, and
/// one 11 hours after its row, get nulls), labels passed through, as JSON
/// and as CSV.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn training_sets_join_as_of() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let (_, key, _) = s.tenant_with_key("training", "developer").await;
    let r = put(
        &s,
        &key,
        "/v1/features/entities/driver",
        json!({"join_keys": ["driver_id"], "value_type": "int64"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let view = json!({"entities": ["driver"], "ttl": "2h", "source": {"push": {}},
        "schema": [{"name": "trips_today", "dtype": "int64"}, {"name": "earnings_today", "dtype": "float64"}]});
    assert_eq!(
        put(&s, &key, "/v1/features/views/driver_hourly_stats", view).await.status,
        StatusCode::CREATED
    );
    let at = |h: u32, m: u32| format!("2021-04-12T{h:02}:{m:02}:00Z");
    let push = json!({"push_source_name": "driver_hourly_stats", "to": "offline", "df": {
        "driver_id": [1001, 1001, 1001, 1002],
        "event_timestamp": [at(8, 0), at(9, 0), at(10, 0), at(9, 30)],
        "trips_today": [5, 7, 9, 3], "earnings_today": [50.0, 70.5, 90.0, 30.0]}});
    let r = post(&s, &key, "/v1/features/push", push).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // Offline only: nothing online.
    let online = post(
        &s,
        &key,
        "/v1/features/online",
        json!({"entities": {"driver_id": [1001]}, "features": ["driver_hourly_stats:trips_today"]}),
    )
    .await;
    assert_eq!(column(&online, "trips_today")["statuses"], json!(["NOT_FOUND"]));

    let entity_df = json!({
        "driver_id": [1001, 1001, 1002, 1001, 1002],
        "event_timestamp": [at(7, 0), at(9, 30), at(10, 0), at(21, 0), at(12, 0)],
        "trip_success": [0, 1, 1, 0, 1]});
    let body = json!({"entity_df": entity_df, "features": ["driver_hourly_stats:trips_today", "driver_hourly_stats:earnings_today"]});
    let r = post(&s, &key, "/v1/features/historical", body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.body["columns"],
        json!(["driver_id", "event_timestamp", "trip_success", "trips_today", "earnings_today"])
    );
    let rows = r.body["rows"].as_array().unwrap();
    let joined: Vec<(Value, Value)> = rows.iter().map(|r| (r[3].clone(), r[4].clone())).collect();
    assert_eq!(
        joined,
        vec![
            (Value::Null, Value::Null), // before any row of 1001
            (json!(7), json!(70.5)),    // 9:00 is the newest at 9:30
            (json!(3), json!(30.0)),    // 1002's 9:30 row, within 2 h
            (Value::Null, Value::Null), // 11 h after 1001's last row: outside the TTL
            (Value::Null, Value::Null), // 2.5 h after 1002's row: outside the TTL
        ]
    );
    assert_eq!(rows[1][2], json!(1), "labels pass through");
    // The same training set stored as a dataset, its types kept (Parquet).
    let ds = post(&s, &key, "/v1/datasets/from-features?name=trips", body.clone()).await;
    assert_eq!(
        (ds.status, ds.body["rows"].as_u64(), ds.body["format"].as_str()),
        (StatusCode::CREATED, Some(5), Some("parquet")),
        "{ds:?}"
    );
    let trips = ds.body["schema"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "trips_today")
        .unwrap()
        .clone();
    assert_eq!(
        (trips["dtype"].as_str(), trips["nulls"].as_u64()),
        (Some("int64"), Some(3)),
        "{trips}"
    );
    let bad = post(
        &s,
        &key,
        "/v1/datasets/from-features?name=trips",
        json!({"entity_df": {"driver_id": [1]}, "features": ["nope:x"]}),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");

    let csv = s
        .api
        .http
        .post(format!("{}/v1/features/historical?format=csv", s.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "driver_id,event_timestamp,trip_success,trips_today,earnings_today");
    assert_eq!(lines[2], "1001,2021-04-12T09:30:00Z,1,7,70.5");
    assert_eq!(lines[1], "1001,2021-04-12T07:00:00Z,0,,");
    let bad = post(
        &s,
        &key,
        "/v1/features/historical",
        json!({"entity_df": {"driver_id": [1]}, "features": ["driver_hourly_stats:trips_today"]}),
    )
    .await;
    assert_eq!(bad.body["error"]["param"], "entity_df.event_timestamp", "{bad:?}");
    // Past one chunk of the streamed answer (4,096 rows): whole, in order, in both forms.
    let many = 5000;
    let big = json!({"entity_df": {"driver_id": vec![1001; many], "event_timestamp": vec![at(9, 30); many],
        "n": (0..many).collect::<Vec<_>>()}, "features": ["driver_hourly_stats:trips_today"]});
    let r = post(&s, &key, "/v1/features/historical", big.clone()).await;
    let rows = r.body["rows"].as_array().unwrap();
    assert_eq!(rows.len(), many, "{}", r.body["columns"]);
    assert!(rows.iter().enumerate().all(|(i, row)| row[2] == json!(i) && row[3] == json!(7)));
    let text = s
        .api
        .http
        .post(format!("{}/v1/features/historical?format=csv", s.url))
        .bearer_auth(&key)
        .json(&big)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!((lines.len(), lines[4097]), (many + 1, "1001,2021-04-12T09:30:00Z,4096,7"));
    let xml = s
        .api
        .call(Method::POST, "/v1/features/historical?format=xml", Some(&key), Some(body.clone()))
        .await;
    assert_eq!(xml.body["error"]["param"], "format", "{xml:?}");

    // Parquet, read by pandas (pyarrow): typed columns, nulls where nothing joined.
    let parquet = s
        .api
        .http
        .post(format!("{}/v1/features/historical?format=parquet", s.url))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(parquet.headers()["content-type"], "application/vnd.apache.parquet");
    let bytes = parquet.bytes().await.unwrap();
    assert_eq!((&bytes[..4], &bytes[bytes.len() - 4..]), (&b"PAR1"[..], &b"PAR1"[..]));
    let Some(py) = tessera_store::conformance::service_url("TESSERA_TEST_PYTHON") else { return };
    let file = dir.path().join("training.parquet");
    std::fs::write(&file, &bytes).unwrap();
    let script = r#"
import json, sys
import pandas as pd
df = pd.read_parquet(sys.argv[1])
print(json.dumps({"dtypes": {c: str(t) for c, t in df.dtypes.items()},
                  "trips": [None if pd.isna(v) else int(v) for v in df["trips_today"]],
                  "first_ts": df["event_timestamp"][0].isoformat()}))
"#;
    let out = std::process::Command::new(&py)
        .args(["-c", script, file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let read: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(read["trips"], json!([null, 7, 3, null, null]), "{read}");
    assert_eq!(read["first_ts"], "2021-04-12T07:00:00+00:00", "{read}");
    assert_eq!(read["dtypes"]["earnings_today"], "float64", "{read}");
    assert_eq!(read["dtypes"]["driver_id"], "int64", "{read}");
    assert!(
        read["dtypes"]["event_timestamp"].as_str().unwrap().starts_with("datetime64"),
        "{read}"
    );
}

/// Feast's own SDK (the real `feast` package) reads Tessera's online values
/// unchanged: its `remote` online store points at `/v1/features`, and its
/// `oidc` client auth gets a JWT from a token endpoint the script serves,
/// which Tessera checks against the JWKS this test serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feast_sdk_reads_online_features_unchanged() {
    let Some(py) = tessera_store::conformance::service_url("TESSERA_TEST_PYTHON") else { return };
    let jwks = crate::jwks::jwks_server(Default::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA_ADMIN_KEY", ADMIN)
        .env("TESSERA__AUTH__JWKS_URL", &jwks)
        .env("TESSERA__AUTH__JWT_ISSUER", crate::jwks::ISS)
        .env("TESSERA__AUTH__JWT_AUDIENCE", crate::jwks::AUD);
    let s = Server::start(opts).await;
    let (tenant, key, _) = s.tenant_with_key("feast-user", "developer").await;
    define(&s, &key).await;
    assert_eq!(post(&s, &key, "/v1/features/push", rows()).await.status, StatusCode::OK);
    let claims = json!({"sub": "feast", "tenant_id": tenant, "role": "viewer", "iss": crate::jwks::ISS,
        "aud": crate::jwks::AUD, "exp": crate::jwks::now() + 600});
    let jwt = crate::jwks::token(jsonwebtoken::Algorithm::RS256, Some("rsa-1"), &claims);
    let work = tempfile::tempdir().unwrap();
    let script = format!("{}/tests/clients/feast_sdk.py", env!("CARGO_MANIFEST_DIR"));
    let out = tokio::process::Command::new(&py)
        .arg(&script)
        .args([s.url.as_str(), jwt.as_str(), work.path().to_str().unwrap()])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "feast_sdk.py failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let f = &got["features"];
    assert_eq!(f["customer_id"], json!(["c1", "c2", "nobody"]), "{got}");
    assert_eq!(f["spend"], json!([10.5, 3.0, null]), "{got}");
    assert_eq!(f["orders"], json!([2, null, null]), "{got}");
    assert_eq!(f["tier"], json!(["gold", "basic", null]), "{got}");
    assert!(got["token_calls"].as_u64().unwrap() >= 1, "the token came from the oidc flow: {got}");
}
