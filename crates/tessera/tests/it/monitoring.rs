//! Drift and alerts end to end (O3, O4): a trained head fed first with
//! inputs like its training set, then with one column shifted; the drift
//! report names the shifted column only, and an alert on the drift share
//! fires and then resolves at a local webhook receiver that verifies each
//! delivery's signature. A webhook that is down is retried, and its
//! failure shows in the rule's events.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;
use crate::rollouts::{Points, train, truth};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// What the receiver got: each request's signature header and body.
type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// A webhook receiver on a port of its own: answers 200 to every POST.
async fn receiver() -> (String, Received) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let keep = got.clone();
    tokio::spawn(async move {
        while let Ok((conn, _)) = listener.accept().await {
            let got = keep.clone();
            tokio::spawn(async move {
                let (r, mut w) = conn.into_split();
                let mut r = BufReader::new(r);
                loop {
                    let (mut len, mut sig) = (0usize, String::new());
                    let mut line = String::new();
                    if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        line.clear();
                        r.read_line(&mut line).await.unwrap();
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        let (k, v) = l.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "x-tessera-signature" => sig = v.trim().to_owned(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).await.unwrap();
                    got.lock().unwrap().push((sig, body));
                    w.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await.unwrap();
                }
            });
        }
    });
    (url, got)
}

/// Checks `t=<t>,v1=<hex>` against HMAC-SHA256(secret, "<t>.<body>").
fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = header.split_once(",v1=") else { return false };
    let t = t.trim_start_matches("t=");
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    hex::decode(v1).is_ok_and(|sig| mac.verify_slice(&sig).is_ok())
}

/// Sends batches of 8 points for `d`, `shift` added to x.
async fn feed(s: &Server, key: &str, p: &mut Points, shift: f64, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until {
        let rows: Vec<Value> = (0..8).map(|_| json!([p.next() + shift, p.next()])).collect();
        let r = s
            .api
            .http
            .post(format!("{}/v1/models/scorer:predict", s.url))
            .bearer_auth(key)
            .json(&json!({"instances": rows}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
}

async fn drift(s: &Server, key: &str) -> Value {
    let r = s.api.get("/v1/models/scorer/drift?window=4s", key).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    r.body
}

/// One line per column: name, method, value, threshold, verdict.
fn columns(report: &Value) -> String {
    report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {:.4} (threshold {:.4}) drifted={}",
                c["name"].as_str().unwrap(),
                c["method"].as_str().unwrap(),
                c["value"].as_f64().unwrap_or(f64::NAN),
                c["threshold"].as_f64().unwrap_or(f64::NAN),
                c["drifted"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn drifted_inputs(report: &Value) -> Vec<String> {
    report["columns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "input" && c["drifted"] == true)
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Events of a rule (newest first) until `want` holds, or panics.
async fn events_until(
    s: &Server,
    key: &str,
    id: &str,
    within: Duration,
    want: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    loop {
        let r = s.api.get(&format!("/v1/alerts/{id}"), key).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let events = r.body["events"].as_array().unwrap().clone();
        if want(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "rule {id} never got there: {:#}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_of_a_shifted_column_fires_an_alert_that_resolves_at_a_signed_webhook() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path()).env("TESSERA__ALERTS__EVAL_INTERVAL_MS", "500"),
    )
    .await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let keep = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"store_inputs": true})),
        )
        .await;
    assert_eq!(keep.status, StatusCode::OK, "{keep:?}");
    assert_eq!(train(&s, &key, "scorer", truth, 1).await, 1);
    let (url, got) = receiver().await;
    let rule = json!({"name": "scorer-drift", "metric": "drift_share", "model": "scorer", "op": ">=",
        "threshold": 0.5, "for": "0s", "window": "4s", "severity": "warning", "webhook_url": url});
    let r = s.api.call(Method::POST, "/v1/alerts", Some(&key), Some(rule.clone())).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let (id, secret) =
        (r.body["id"].as_str().unwrap().to_owned(), r.body["secret"].as_str().unwrap().to_owned());
    assert!(
        secret.starts_with("whsec_") && r.body["secret_hint"].as_str().unwrap().len() < 10,
        "{r:?}"
    );
    // The same rule with a webhook nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut down = rule.clone();
    down["name"] = json!("scorer-drift-down");
    down["webhook_url"] = json!(format!("http://{closed}/hook"));
    let r = s.api.call(Method::POST, "/v1/alerts", Some(&key), Some(down)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let down_id = r.body["id"].as_str().unwrap().to_owned();
    // Breakers are measured too (none is open here).
    let breaker = json!({"name": "scorer-breaker", "metric": "breaker_open", "model": "scorer", "op": ">=",
        "threshold": 1, "severity": "critical"});
    let r = s.api.call(Method::POST, "/v1/alerts", Some(&key), Some(breaker)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let breaker_id = r.body["id"].as_str().unwrap().to_owned();
    // Another tenant reaches neither the rule nor the model.
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;
    assert_eq!(s.api.get(&format!("/v1/alerts/{id}"), &other).await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.api.get("/v1/alerts", &other).await.body["data"], json!([]));
    assert_eq!(s.api.get("/v1/models/scorer/drift", &other).await.status, StatusCode::NOT_FOUND);
    let mut bad = rule.clone();
    bad["model"] = json!("scorer");
    let r = s.api.call(Method::POST, "/v1/alerts", Some(&other), Some(bad)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // Like the training set: nothing drifts.
    let mut p = Points(7);
    feed(&s, &key, &mut p, 0.0, Duration::from_secs(5)).await;
    let calm = drift(&s, &key).await;
    assert_eq!(calm["reference"]["kind"], "training", "{calm:#}");
    assert!(calm["current"]["rows"].as_u64().unwrap() >= 200, "{calm:#}");
    assert_eq!(drifted_inputs(&calm), Vec::<String>::new(), "{calm:#}");
    let methods: Vec<&str> =
        calm["columns"].as_array().unwrap().iter().map(|c| c["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["wasserstein", "wasserstein", "jensen_shannon"], "{calm:#}");
    assert!(got.lock().unwrap().is_empty());
    eprintln!("reference-like: {}", columns(&calm));

    // x shifted: x drifts, y does not; the alert fires.
    feed(&s, &key, &mut p, 2.5, Duration::from_secs(5)).await;
    let moved = drift(&s, &key).await;
    assert_eq!(drifted_inputs(&moved), ["x"], "{moved:#}");
    let nanny = s.api.get("/v1/models/scorer/drift?window=4s&mode=nannyml", &key).await.body;
    assert_eq!(drifted_inputs(&nanny), ["x"], "{nanny:#}");
    eprintln!("x shifted: {}", columns(&moved));
    eprintln!("x shifted, NannyML: {}", columns(&nanny));
    let events = events_until(&s, &key, &id, Duration::from_secs(30), |e| {
        e.iter().any(|e| e["kind"] == "firing")
    })
    .await;
    assert!(events.iter().any(|e| e["kind"] == "firing"), "{events:?}");
    // The CLI shows both as tables.
    let cli = |args: &[&str]| {
        let mut a: Vec<String> = args.iter().map(|x| (*x).to_owned()).collect();
        a.extend(["--url".to_owned(), s.url.clone(), "--key".to_owned(), key.clone()]);
        async move {
            let out = tokio::process::Command::new(common::BIN).args(&a).output().await.unwrap();
            assert!(out.status.success(), "{a:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let text = cli(&["drift", "show", "scorer", "--window", "4s"]).await;
    let x_line = text.lines().find(|l| l.starts_with("x ")).unwrap_or_default();
    assert!(x_line.contains("DRIFT") && text.contains("DATASET DRIFT"), "{text}");
    let text = cli(&["alerts", "list"]).await;
    let first = text.lines().nth(1).unwrap_or_default();
    assert!(first.contains("scorer-drift") && first.contains("firing"), "firing first: {text}");

    // Back to normal: it resolves.
    feed(&s, &key, &mut p, 0.0, Duration::from_secs(6)).await;
    events_until(&s, &key, &id, Duration::from_secs(30), |e| {
        e.iter().any(|e| e["kind"] == "resolved")
    })
    .await;
    let events = events_until(&s, &key, &id, Duration::from_secs(30), |e| {
        e.iter().filter(|e| e["kind"] == "delivered").count() >= 2
    })
    .await;
    // The receiver got firing then resolved, once each, every one signed.
    let got = got.lock().unwrap().clone();
    let kinds: Vec<String> = got
        .iter()
        .map(|(sig, body)| {
            assert!(verify(&secret, sig, body), "bad signature {sig}");
            assert!(!verify("whsec_wrong", sig, body));
            let v: Value = serde_json::from_slice(body).unwrap();
            assert_eq!(
                (v["rule"]["id"].as_str(), v["subject"].as_str()),
                (Some(id.as_str()), Some("scorer")),
                "{v}"
            );
            v["status"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(kinds, ["firing", "resolved"], "{events:?}");
    for e in events.iter().rev() {
        eprintln!(
            "{} {} {} {}",
            e["at"].as_str().unwrap(),
            e["kind"].as_str().unwrap(),
            e["value"],
            e["detail"].as_str().unwrap_or("")
        );
    }
    let alerts = s.api.get("/v1/alerts", &key).await.body;
    let mine =
        alerts["data"].as_array().unwrap().iter().find(|r| r["id"] == id.as_str()).unwrap().clone();
    assert_eq!(mine["instances"]["scorer"]["status"], "ok", "{mine}");
    assert!(mine.get("secret").is_none(), "the secret is shown once: {mine}");
    let b =
        alerts["data"].as_array().unwrap().iter().find(|r| r["id"] == breaker_id.as_str()).unwrap();
    assert_eq!(
        (b["instances"]["scorer"]["status"].as_str(), b["instances"]["scorer"]["value"].as_f64()),
        (Some("ok"), Some(0.0)),
        "{b}"
    );

    // The rule whose webhook is down: retried, then its failure recorded.
    let events = events_until(&s, &key, &down_id, Duration::from_secs(40), |e| {
        e.iter().filter(|e| e["kind"] == "delivery_failed").count() >= 2
    })
    .await;
    let failed = events.iter().find(|e| e["kind"] == "delivery_failed").unwrap();
    assert!(failed["detail"].as_str().unwrap().contains("5 attempts"), "{failed}");
    let metrics = s.api.metrics().await;
    assert!(metrics.contains("tessera_alert_deliveries_total{outcome=\"failed\"}"), "{metrics}");
    assert!(metrics.contains("tessera_alerts_firing"), "{metrics}");
    // The platform's built-in budget rules are there for operators.
    let builtin = s.admin(Method::GET, "/admin/v1/alerts", None).await;
    let names: Vec<&str> = builtin.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["spec"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["budget-soft", "budget-spent"], "{builtin:?}");
}

/// A feature view's rows: the last hour against the hour before; the
/// shifted feature drifts, the steady one does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feature_views_shifted_feature_drifts_from_the_hour_before() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let (_, owner, _) = s.tenant_with_key("shop", "tenant_admin").await;
    for (path, body) in [
        ("/v1/features/entities/customer", json!({"join_keys": ["customer_id"]})),
        (
            "/v1/features/views/stats",
            json!({"entities": ["customer"], "source": {"push": {}},
                   "schema": [{"name": "spend", "dtype": "float64"}, {"name": "tier", "dtype": "string"}]}),
        ),
    ] {
        let r = s.api.call(Method::PUT, path, Some(&owner), Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    }
    let now = tessera_core::time::Timestamp::now().millis();
    let mut p = Points(3);
    let mut push = |from_ms: i64, shift: f64| {
        let (mut ids, mut ts, mut spend, mut tier) = (vec![], vec![], vec![], vec![]);
        for i in 0..300 {
            ids.push(format!("c{i}"));
            ts.push(tessera_core::time::Timestamp::from_millis(from_ms + i * 10_000).to_rfc3339());
            spend.push(50.0 + 20.0 * p.next() + shift);
            tier.push(if p.next() > 0.0 { "gold" } else { "basic" });
        }
        json!({"push_source_name": "stats", "to": "offline",
               "df": {"customer_id": ids, "event_timestamp": ts, "spend": spend, "tier": tier}})
    };
    let before = push(now - 7_000_000, 0.0);
    let last = push(now - 3_500_000, 30.0);
    for body in [before, last] {
        let r = s.api.call(Method::POST, "/v1/features/push", Some(&owner), Some(body)).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
    let r = s.api.get("/v1/features/views/stats/drift?window=1h", &owner).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let verdicts: Vec<(&str, &str, bool)> = r.body["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap(),
                c["method"].as_str().unwrap(),
                c["drifted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(verdicts, [("spend", "ks", true), ("tier", "z_test", false)], "{:#}", r.body);
    assert_eq!(
        (r.body["reference"]["rows"].as_u64(), r.body["current"]["rows"].as_u64()),
        (Some(300), Some(300))
    );
    // Another tenant's view of that name is not found.
    let other = s.api.get("/v1/features/views/stats/drift", &key).await;
    assert_eq!(other.status, StatusCode::NOT_FOUND, "{other:?}");
}

/// A text model's inputs: the embeddings of kept input texts against its
/// training texts, judged by a domain classifier. Held-out reviews like
/// the training set do not drift; log lines do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_models_inputs_drift_by_their_embeddings() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let keep = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"store_inputs": true, "gate_thresholds": {"accuracy": 0.5}})),
        )
        .await;
    assert_eq!(keep.status, StatusCode::OK, "{keep:?}");
    let rows = common::data::sentiment();
    // Every fourth of the first 1,200 reviews held out: the same mix of sites.
    let train_rows: Vec<(String, i64)> = rows[..1200]
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0)
        .map(|(_, r)| r.clone())
        .collect();
    let held_out: Vec<(String, i64)> = rows[..1200].iter().step_by(4).cloned().collect();
    let r = s
        .api
        .http
        .post(format!("{}/v1/datasets?name=reviews", s.url))
        .bearer_auth(&key)
        .header("content-type", "text/csv")
        .body(common::data::to_csv(&["text", "label"], &train_rows))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let ds = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let spec = json!({"dataset": ds, "task": "classification", "label": "label", "text": "text", "model": "reviews"});
    let job = s.api.call(Method::POST, "/v1/training-jobs", Some(&key), Some(spec)).await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{job:?}");
    let id = job.body["id"].as_str().unwrap();
    let (j, _) = crate::training::wait(&s, &key, id, Duration::from_secs(600)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    let send = |texts: Vec<String>| {
        let (s, key) = (&s, &key);
        async move {
            for t in texts {
                let r = s
                    .api
                    .call(
                        Method::POST,
                        "/v1/models/reviews:predict",
                        Some(key),
                        Some(json!({"instances": [t]})),
                    )
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{r:?}");
            }
        }
    };
    let embedding = |report: &Value| {
        report["columns"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "embedding")
            .cloned()
            .unwrap_or_default()
    };
    send(held_out.iter().map(|(t, _)| t.clone()).collect()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calm = s.api.get("/v1/models/reviews/drift?window=15s", &key).await;
    assert_eq!(calm.status, StatusCode::OK, "{calm:?}");
    let e = embedding(&calm.body);
    assert_eq!(
        (e["method"].as_str(), e["drifted"].as_bool()),
        (Some("domain_classifier"), Some(false)),
        "{:#}",
        calm.body
    );
    assert!(e["current_values"].as_u64().unwrap() >= 250, "{e}");
    eprintln!(
        "held-out reviews: domain classifier AUC {} (drift above {})",
        e["value"], e["threshold"]
    );
    // A window later, log lines instead of reviews.
    tokio::time::sleep(Duration::from_secs(16)).await;
    let logs: Vec<String> = (0..300)
        .map(|i| {
            format!(
                "2026-12-04T03:{:02}:{:02}Z worker-{} GET /api/v2/orders/{} 200 {}ms cache=miss",
                i % 60,
                (i * 7) % 60,
                i % 9,
                10_000 + i * 37,
                3 + i % 40
            )
        })
        .collect();
    send(logs).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let moved = s.api.get("/v1/models/reviews/drift?window=15s", &key).await.body;
    let e = embedding(&moved);
    assert_eq!(e["drifted"].as_bool(), Some(true), "{moved:#}");
    eprintln!("log lines: domain classifier AUC {} (drift above {})", e["value"], e["threshold"]);
}
