//! Events (F4) through the real binary: ingestion (idempotent ids, a bad
//! event refuses its whole batch, limits), reading back with filters and
//! pages, the live tail resumed with `Last-Event-ID`, roles, prediction
//! records; on NATS: two replicas share one log, kill -9 loses no
//! acknowledged event, and an outage answers 503 and heals by itself.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use reqwest::StatusCode;
use serde_json::{Value, json};

const ADMIN: &str = "events-admin-key-0123456789";

fn click(user: &str, n: u64) -> Value {
    json!({"type": "click", "entity": {"user_id": user}, "properties": {"n": n}})
}

fn offsets(r: &common::Resp) -> Vec<u64> {
    r.body["offsets"].as_array().unwrap().iter().map(|o| o.as_u64().unwrap()).collect()
}

fn page(r: &common::Resp) -> Vec<u64> {
    r.body["data"].as_array().unwrap().iter().map(|e| e["offset"].as_u64().unwrap()).collect()
}

fn nats_url() -> Option<String> {
    tessera_store::conformance::service_url("TESSERA_TEST_NATS_URL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_read_back_and_tail() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA_ADMIN_KEY", ADMIN)
            .env("TESSERA__EVENTS__MAX_BATCH", "5"),
    )
    .await;
    let (acme, dev, _) = s.tenant_with_key("acme", "developer").await;
    let (viewer, _) = s.key_for(&acme, "viewer").await;
    let (service, _) = s.key_for(&acme, "service").await;
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;

    let first = s
        .api
        .send_events(
            &dev,
            json!([click("u1", 1), click("u2", 2), {"id": "e-3", "type": "view",
            "entity": {"user_id": "u1"}, "ts": "2026-01-02T03:04:05Z"}]),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{first:?}");
    assert_eq!(offsets(&first), [1, 2, 3]);
    assert_eq!(first.body["duplicates"], 0);
    // A retry of e-3 is stored once.
    let retry = s
        .api
        .send_events(
            &dev,
            json!([{"id": "e-3", "type": "view", "entity": {"user_id": "u1"}}, click("u1", 4)]),
        )
        .await;
    assert_eq!(offsets(&retry), [3, 4]);
    assert_eq!(
        (retry.body["duplicates"].as_u64(), retry.body["events"][0]["duplicate"].as_bool()),
        (Some(1), Some(true))
    );

    // A bad event refuses its batch, naming the event and the field.
    let bad = s
        .api
        .send_events(
            &dev,
            json!([click("u1", 5), {"type": "no spaces", "entity": {"user_id": "u1"}}]),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("events[1].type")),
        "{bad:?}"
    );
    let unknown = s
        .api
        .send_events(&dev, json!([{"type": "t", "entity": {"u": "1"}, "colour": "red"}]))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST, "{unknown:?}");
    assert!(unknown.body["error"]["message"].as_str().unwrap().contains("colour"), "{unknown:?}");
    let many: Vec<Value> = (0..6).map(|n| click("u1", n)).collect();
    let big = s.api.send_events(&dev, json!(many)).await;
    assert_eq!(
        (big.status, big.body["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")),
        "{big:?}"
    );
    let all = s.api.get("/v1/events", &viewer).await;
    assert_eq!(page(&all), [1, 2, 3, 4], "nothing of a refused batch is stored");
    assert_eq!(all.body["data"][2]["ts"], "2026-01-02T03:04:05Z");
    assert_eq!(all.body["data"][0]["properties"]["n"], 1);

    // Filters and pages.
    let u1 = s.api.get("/v1/events?type=click&entity=user_id:u1&limit=1", &viewer).await;
    assert_eq!((page(&u1), u1.body["end"].as_bool()), (vec![1], Some(false)), "{u1:?}");
    let next = u1.body["next"].as_u64().unwrap();
    let rest =
        s.api.get(&format!("/v1/events?type=click&entity=user_id:u1&from={next}"), &viewer).await;
    assert_eq!((page(&rest), rest.body["end"].as_bool()), (vec![4], Some(true)));
    for q in ["from=yesterday", "entity=nocolon", "limit=0", "topic=nope"] {
        let r = s.api.get(&format!("/v1/events?{q}"), &viewer).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}: {r:?}");
    }

    // Roles: a service key sends but does not read; a viewer reads but does not send.
    assert_eq!(
        s.api.send_events(&service, json!([click("u3", 5)])).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(s.api.get("/v1/events", &service).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        s.api.send_events(&viewer, json!([click("u3", 6)])).await.status,
        StatusCode::FORBIDDEN
    );
    // Another tenant sees none of it, and its offsets are its own.
    let theirs = s.api.get("/v1/events", &other).await;
    assert_eq!(page(&theirs), Vec::<u64>::new());
    assert_eq!(offsets(&s.api.send_events(&other, json!([click("g1", 1)])).await), [1]);

    // The tail starts at the end of the log and follows it.
    let mut tail = s.api.tail(&viewer, "type=click", None).await;
    assert!(tail.next_event(Duration::from_millis(300)).await.is_none(), "nothing old is replayed");
    s.api
        .send_events(&dev, json!([{"type": "view", "entity": {"user_id": "u9"}}, click("u9", 7)]))
        .await;
    let (id, data) = tail.next_event(Duration::from_secs(10)).await.expect("the tail delivers");
    assert_eq!(
        (id, data["type"].as_str(), data["entity"]["user_id"].as_str()),
        (7, Some("click"), Some("u9"))
    );
    drop(tail);
    // Reconnecting with Last-Event-ID resumes after it.
    let mut resumed = s.api.tail(&viewer, "", Some(3)).await;
    let got: Vec<u64> = [
        resumed.next_event(Duration::from_secs(5)).await.unwrap().0,
        resumed.next_event(Duration::from_secs(5)).await.unwrap().0,
    ]
    .into();
    assert_eq!(got, [4, 5]);
    let mut theirs = s.api.tail(&other, "from=1", None).await;
    let (_, only) = theirs.next_event(Duration::from_secs(5)).await.unwrap();
    assert_eq!(only["entity"]["user_id"], "g1");
    assert!(theirs.next_event(Duration::from_millis(300)).await.is_none());
}

/// Posts batches from four clients until stopped; returns every event id
/// the server acknowledged.
async fn post_until_killed(s: &Server, key: &str, stop: Duration) -> BTreeSet<String> {
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let deadline = Instant::now() + stop;
    let mut clients = Vec::new();
    for c in 0..4 {
        let (api, key, acked) = (common::Api::new(&s.url), key.to_owned(), acked.clone());
        clients.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                let batch: Vec<Value> = (0..10)
                    .map(|i| json!({"id": format!("c{c}-{n}-{i}"), "type": "click", "entity": {"user_id": "u"}}))
                    .collect();
                n += 1;
                let Ok(r) = api.http.post(format!("{}/v1/events", api.url)).bearer_auth(&key)
                    .json(&json!({"events": batch})).send().await else { break };
                if r.status() == StatusCode::ACCEPTED
                    && let Ok(body) = r.json::<Value>().await
                {
                    let mut a = acked.lock().unwrap();
                    for e in body["events"].as_array().unwrap() {
                        a.insert(e["id"].as_str().unwrap().to_owned());
                    }
                }
            }
        }));
    }
    for c in clients {
        let _ = c.await;
    }
    acked.lock().unwrap().clone()
}

async fn all_ids(s: &Server, key: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut from = 1;
    loop {
        let r = s.api.get(&format!("/v1/events?from={from}&limit=1000"), key).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        for e in r.body["data"].as_array().unwrap() {
            ids.insert(e["id"].as_str().unwrap().to_owned());
        }
        if r.body["end"].as_bool().unwrap() {
            return ids;
        }
        from = r.body["next"].as_u64().unwrap();
    }
}

async fn kill9_loses_no_acknowledged_event(nats: Option<String>) {
    let dir = tempfile::tempdir().unwrap();
    // Its own NATS prefix: other tests' servers do not read its stream.
    let prefix = common::nats_prefix();
    let options = || {
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA_ADMIN_KEY", ADMIN)
            .env("TESSERA__EVENTS__NATS_PREFIX", &prefix)
    };
    let mut opts = options();
    if let Some(url) = &nats {
        opts.args = vec!["--nats-url".into(), url.clone()];
    }
    let args = opts.args.clone();
    let s = Server::start(opts).await;
    let (tenant, key, _) = s.tenant_with_key("durable", "developer").await;
    // Kill while the clients are mid-flight.
    let posting = post_until_killed(&s, &key, Duration::from_secs(3));
    let killer = async {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let pid = s.pid();
        std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    };
    let (acked, ()) = tokio::join!(posting, killer);
    assert!(acked.len() >= 50, "only {} events were acknowledged before the kill", acked.len());
    drop(s);
    let mut opts = options();
    opts.args = args;
    let s = Server::start(opts).await;
    let stored = all_ids(&s, &key).await;
    let lost: Vec<_> = acked.difference(&stored).collect();
    assert!(lost.is_empty(), "{} acknowledged events lost, e.g. {:?}", lost.len(), lost.first());
    common::drop_nats_stream(&prefix, &tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_event_embedded() {
    kill9_loses_no_acknowledged_event(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_no_acknowledged_event_on_nats() {
    let Some(url) = nats_url() else { return };
    kill9_loses_no_acknowledged_event(Some(url)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_on_nats_share_one_log() {
    let Some(url) = nats_url() else { return };
    let Some(common::Pair { a, b, dirs: _dirs, nats_prefix }) =
        common::Pair::start_with(ADMIN, &["--nats-url".into(), url]).await
    else {
        return;
    };
    let (tenant, key, _) = a.tenant_with_key("shared", "developer").await;
    let mut tail = b.api.tail(&key, "", None).await;
    let sent = a.api.send_events(&key, json!([click("u1", 1), click("u2", 2)])).await;
    assert_eq!(offsets(&sent), [1, 2], "{sent:?}");
    let on_b = b.api.get("/v1/events", &key).await;
    assert_eq!(page(&on_b), [1, 2], "{on_b:?}");
    let (id, _) = tail.next_event(Duration::from_secs(10)).await.expect("b's tail sees a's events");
    assert_eq!(id, 1);
    // Idempotency holds across replicas: the same id sent to b is a duplicate.
    let first =
        a.api.send_events(&key, json!([{"id": "x", "type": "t", "entity": {"u": "1"}}])).await;
    let again =
        b.api.send_events(&key, json!([{"id": "x", "type": "t", "entity": {"u": "1"}}])).await;
    assert_eq!(offsets(&again), offsets(&first));
    assert_eq!(again.body["duplicates"], 1);
    common::drop_nats_stream(&nats_prefix, &tenant).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_outage_answers_503_and_heals() {
    if nats_url().is_none() {
        return;
    }
    let mut nats = tessera_events::testkit::OwnNats::start();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA_ADMIN_KEY", ADMIN)
        .env("TESSERA__EVENTS__NATS_TIMEOUT_MS", "1000");
    opts.args = vec!["--nats-url".into(), nats.url()];
    let s = Server::start(opts).await;
    let (_, key, _) = s.tenant_with_key("outage", "developer").await;
    let before = s.api.send_events(&key, json!([click("u1", 1)])).await;
    assert_eq!(offsets(&before), [1]);
    let first_id = before.body["events"][0]["id"].as_str().unwrap().to_owned();

    nats.down();
    let started = Instant::now();
    let r = s.api.send_events(&key, json!([click("u1", 2)])).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("service_unavailable")),
        "{r:?}"
    );
    assert!(r.headers.contains_key("retry-after"), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "answered in {:?}", started.elapsed());
    assert_eq!(s.api.get("/v1/events", &key).await.status, StatusCode::SERVICE_UNAVAILABLE);

    nats.up();
    let deadline = Instant::now() + Duration::from_secs(20);
    let healed = loop {
        let r = s
            .api
            .send_events(
                &key,
                json!([{"id": "after", "type": "click", "entity": {"user_id": "u1"}}]),
            )
            .await;
        if r.status == StatusCode::ACCEPTED {
            break r;
        }
        assert!(Instant::now() < deadline, "not healed: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(healed.body["duplicates"], 0);
    // A 503 is an unknown outcome (a batch in flight when the connection
    // broke may land when it comes back), which is why retries carry ids:
    // the event from before the outage and the one after are there once each.
    let all = s.api.get("/v1/events", &key).await;
    let ids: Vec<&str> =
        all.body["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.first(), Some(&first_id.as_str()), "{all:?}");
    assert_eq!(ids.iter().filter(|i| **i == "after").count(), 1, "{all:?}");
    assert!(ids.len() <= 3, "{all:?}");
}

/// Polls the tenant's prediction records until one has `id`.
async fn prediction(s: &Server, key: &str, id: &str) -> Option<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let r = s
            .api
            .get(&format!("/v1/events?topic=predictions&entity=prediction_id:{id}"), key)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        if let Some(e) = r.body["data"].as_array().and_then(|d| d.first()) {
            return Some(e.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inference_leaves_a_prediction_record() {
    let up = tessera_standin::Standin::start(Default::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let (tenant, key, _) = s.tenant_with_key("predicting", "developer").await;
    let m = s
        .api
        .remote_model(&key, "llm", "chat", json!({"base_url": up.url, "upstream_model": "gpt"}))
        .await;
    assert_eq!(m.status, StatusCode::CREATED, "{m:?}");
    let ask = |text: &str| json!({"model": "llm", "user": "alice", "messages": [{"role": "user", "content": text}]});

    let r = s.api.chat(&key, ask("private words")).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let id = r.headers["x-tessera-prediction-id"].to_str().unwrap().to_owned();
    let rec = prediction(&s, &key, &id).await.expect("a prediction record");
    assert_eq!(
        (rec["type"].as_str(), rec["id"].as_str(), rec["topic"].as_str()),
        (Some("prediction"), Some(id.as_str()), Some("predictions"))
    );
    assert_eq!(rec["entity"]["user"], "alice");
    let p = &rec["properties"];
    assert_eq!(
        (p["model"].as_str(), p["tier"].as_str(), p["cache"].as_str()),
        (Some("llm"), Some("tenant"), Some("bypass")),
        "{rec}"
    );
    assert_eq!(p["input_digest"].as_str().map(str::len), Some(64), "{rec}");
    assert!(p.get("input").is_none(), "inputs are kept only on opt-in: {rec}");
    assert_eq!(p["output"]["finish_reason"], "stop", "{rec}");
    assert!(p["latency_ms"].as_f64().unwrap() >= p["model_ms"].as_f64().unwrap());
    // Other tenants' reads never see it.
    let (_, other, _) = s.tenant_with_key("bystander", "developer").await;
    let theirs =
        s.api.get(&format!("/v1/events?topic=predictions&entity=prediction_id:{id}"), &other).await;
    assert_eq!(page(&theirs), Vec::<u64>::new());

    // Opting in keeps the text; a sample rate of 0 keeps nothing.
    let opt_in = s
        .admin(
            reqwest::Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"store_inputs": true})),
        )
        .await;
    assert_eq!(opt_in.status, StatusCode::OK, "{opt_in:?}");
    assert_eq!(opt_in.body["store_inputs"], true);
    let r = s.api.chat(&key, ask("keep me")).await;
    let id = r.headers["x-tessera-prediction-id"].to_str().unwrap().to_owned();
    let rec = prediction(&s, &key, &id).await.expect("a prediction record");
    assert_eq!(rec["properties"]["input"], "keep me");
    let bad = s
        .admin(
            reqwest::Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"prediction_sample_rate": 1.5})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("prediction_sample_rate"))
    );
    s.admin(
        reqwest::Method::PATCH,
        &format!("/admin/v1/tenants/{tenant}"),
        Some(json!({"prediction_sample_rate": 0.0})),
    )
    .await;
    let r = s.api.chat(&key, ask("not recorded")).await;
    let id = r.headers["x-tessera-prediction-id"].to_str().unwrap().to_owned();
    let later = s.api.chat(&key, ask("flush")).await;
    assert_eq!(later.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let none =
        s.api.get(&format!("/v1/events?topic=predictions&entity=prediction_id:{id}"), &key).await;
    assert_eq!(page(&none), Vec::<u64>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_limits_events_per_minute() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let p = s
        .admin(
            reqwest::Method::POST,
            "/admin/v1/plans",
            Some(json!({"name": "chatty", "events_per_minute": 10})),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{p:?}");
    let (_, key, _) = s.tenant_on_plan("chatty-co", "chatty", "developer").await;
    let eight: Vec<Value> = (0..8).map(|n| click("u", n)).collect();
    assert_eq!(s.api.send_events(&key, json!(eight)).await.status, StatusCode::ACCEPTED);
    let three: Vec<Value> = (0..3).map(|n| click("u", n)).collect();
    let r = s.api.send_events(&key, json!(three)).await;
    assert_eq!(
        (r.status, r.body["error"]["code"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limit_exceeded")),
        "{r:?}"
    );
    assert!(r.body["error"]["message"].as_str().unwrap().contains("events per minute"), "{r:?}");
    assert!(r.headers.contains_key("retry-after"));
    let all = s.api.get("/v1/events", &key).await;
    assert_eq!(page(&all).len(), 8, "the refused batch wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_type_schemas_refuse_what_does_not_match() {
    let dir = tempfile::tempdir().unwrap();
    let s =
        Server::start(Options::new(&Backend::Sqlite, dir.path()).env("TESSERA_ADMIN_KEY", ADMIN))
            .await;
    let (_, dev, _) = s.tenant_with_key("typed", "developer").await;
    let (_, other, _) = s.tenant_with_key("untyped", "developer").await;
    let schema = json!({"type": "object", "required": ["total"], "additionalProperties": false,
        "properties": {"total": {"type": "number", "minimum": 0}, "currency": {"enum": ["EUR", "USD"]}}});
    let put = s
        .api
        .call(
            reqwest::Method::PUT,
            "/v1/event-types/order",
            Some(&dev),
            Some(json!({"schema": schema})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put:?}");
    assert_eq!((put.body["type"].as_str(), &put.body["schema"]), (Some("order"), &schema));
    let bad = s
        .api
        .call(
            reqwest::Method::PUT,
            "/v1/event-types/order",
            Some(&dev),
            Some(json!({"schema": {"type": 7}})),
        )
        .await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("schema")),
        "{bad:?}"
    );
    let listed = s.api.get("/v1/event-types", &dev).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

    let order = |props: Value| json!({"type": "order", "entity": {"customer_id": "c1"}, "properties": props});
    let ok = s
        .api
        .send_events(&dev, json!([order(json!({"total": 9.5, "currency": "EUR"})), click("c1", 1)]))
        .await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{ok:?}");
    for (props, field) in [
        (json!({"currency": "EUR"}), "events[1].properties.total"),
        (json!({"total": -1}), "events[1].properties.total"),
        (json!({"total": 1, "colour": "red"}), "events[1].properties.colour"),
        (json!({"total": 1, "currency": "GBP"}), "events[1].properties.currency"),
    ] {
        let r = s.api.send_events(&dev, json!([click("c1", 2), order(props.clone())])).await;
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(field)),
            "{props}: {r:?}"
        );
    }
    assert_eq!(
        page(&s.api.get("/v1/events", &dev).await).len(),
        2,
        "refused batches wrote nothing"
    );
    // Schemas are the tenant's own: another tenant's orders are unchecked.
    assert_eq!(
        s.api.send_events(&other, json!([order(json!({"colour": "red"}))])).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(s.api.get("/v1/event-types/order", &other).await.status, StatusCode::NOT_FOUND);
    // Without its schema the type is accepted as it comes.
    assert_eq!(
        s.api.call(reqwest::Method::DELETE, "/v1/event-types/order", Some(&dev), None).await.status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        s.api.send_events(&dev, json!([order(json!({"colour": "red"}))])).await.status,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        s.api.call(reqwest::Method::DELETE, "/v1/event-types/order", Some(&dev), None).await.status,
        StatusCode::NOT_FOUND
    );
}
