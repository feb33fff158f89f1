//! Training jobs (L2) end to end: the UCI sentiment set uploaded, a head
//! trained over the default embedding model through a job (queued, running
//! with progress, succeeded), its holdout metrics, the new version serving
//! on KServe and OIP; a queued job cancelled; specs that cannot train
//! refused with a 400 naming the problem.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn upload(s: &Server, key: &str, name: &str, csv: String) -> String {
    let r = s
        .api
        .http
        .post(format!("{}/v1/datasets?name={name}", s.url))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned()
}

async fn start(s: &Server, key: &str, spec: Value) -> common::Resp {
    s.api.call(Method::POST, "/v1/training-jobs", Some(key), Some(spec)).await
}

/// Polls the job until it is finished; the phases it went through.
pub async fn wait(s: &Server, key: &str, id: &str, within: Duration) -> (Value, Vec<String>) {
    let deadline = Instant::now() + within;
    let mut phases = Vec::new();
    loop {
        let r = s.api.get(&format!("/v1/training-jobs/{id}"), key).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let phase = r.body["progress"]["phase"].as_str().unwrap_or("").to_owned();
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
        if matches!(r.body["status"].as_str(), Some("succeeded" | "failed" | "cancelled")) {
            return (r.body, phases);
        }
        assert!(Instant::now() < deadline, "job {id} did not finish: {}", r.body);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_trained_on_the_sentiment_set_serves() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "true")
            .env("TESSERA__ENGINE__LOAD_WAIT_MS", "120000"),
    )
    .await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let rows = common::data::sentiment();
    let ds = upload(&s, &key, "sentiment", common::data::to_csv(&["text", "label"], &rows)).await;
    let spec = json!({"dataset": ds, "task": "classification", "label": "label", "text": "text",
                      "model": "sentiment", "seed": 7});
    let r = start(&s, &key, spec.clone()).await;
    assert_eq!(
        (r.status, r.body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("queued")),
        "{r:?}"
    );
    let id = r.body["id"].as_str().unwrap().to_owned();
    // A second job waits behind the first (one at a time per replica): cancel it.
    let second = start(&s, &key, spec).await;
    let second_id = second.body["id"].as_str().unwrap().to_owned();
    let c = s
        .api
        .call(Method::POST, &format!("/v1/training-jobs/{second_id}/cancel"), Some(&key), None)
        .await;
    assert_eq!((c.status, c.body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{c:?}");
    let again = s
        .api
        .call(Method::POST, &format!("/v1/training-jobs/{second_id}/cancel"), Some(&key), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");

    let (job, phases) = wait(&s, &key, &id, Duration::from_secs(600)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(phases.iter().any(|p| p == "embedding" || p == "training"), "{phases:?}");
    let m = &job["metrics"]["holdout"];
    let accuracy = m["accuracy"].as_f64().unwrap();
    eprintln!("sentiment holdout accuracy {accuracy} (macro-F1 {})", m["macro_f1"]);
    assert!(accuracy >= 0.85, "holdout accuracy {accuracy}: {job}");
    assert_eq!((m["samples"].as_u64(), &m["labels"]), (Some(600), &json!(["0", "1"])), "{job}");
    assert_eq!((job["model"].as_str(), job["version"].as_i64()), (Some("sentiment"), Some(1)));
    assert_eq!(job["metrics"]["dataset"]["id"], ds.as_str());

    // The version serves through KServe and OIP.
    let r = s
        .api
        .call(Method::POST, "/v1/models/sentiment:predict", Some(&key),
              Some(json!({"instances": ["I loved it, wonderful and great", "Terrible, it broke after a day"]})))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.body["predictions"][0]["label"].as_str(), r.body["predictions"][1]["label"].as_str()),
        (Some("1"), Some("0")),
        "{r:?}"
    );
    let oip = json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["what a great phone"]}]});
    let r = s.api.call(Method::POST, "/v2/models/sentiment/infer", Some(&key), Some(oip)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.body["outputs"][1]["data"], json!([1]), "{r:?}");
    // The version's lineage: the job, its dataset and hash, the base model's version.
    let l = s.api.get("/v1/models/sentiment/versions/1/lineage", &key).await;
    assert_eq!(
        (l.status, l.body["source"].as_str()),
        (StatusCode::OK, Some("training_job")),
        "{l:?}"
    );
    assert_eq!(l.body["job"]["id"], id.as_str());
    assert_eq!(l.body["job"]["metrics"]["dataset"]["id"], ds.as_str());
    assert!(
        l.body["job"]["metrics"]["dataset"]["sha256"].as_str().is_some_and(|h| h.len() == 64),
        "{l:?}"
    );
    assert_eq!(l.body["job"]["metrics"]["base_model"]["name"], "all-minilm-l6-v2", "{l:?}");
    assert_eq!(l.body["job"]["spec"]["seed"], 7);
    let missing = s.api.get("/v1/models/sentiment/versions/9/lineage", &key).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{missing:?}");
    let list = s.api.get("/v1/training-jobs", &key).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 2);

    // Its validation report passed every check; the gate lets it take traffic.
    assert_eq!(job["metrics"]["report"], json!({"passed": true, "failing": []}), "{job}");
    let rep = s.api.get("/v1/models/sentiment/versions/1/report", &key).await;
    assert_eq!((rep.status, rep.body["passed"].as_bool()), (StatusCode::OK, Some(true)), "{rep:?}");
    let names: Vec<&str> = rep.body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["accuracy", "latency_p99_ms", "robustness", "artifact"], "{rep:?}");
    let m = &rep.body["metrics"];
    assert!(m["holdout"]["roc_auc"].as_f64().unwrap() > 0.9, "{rep:?}");
    assert_eq!(m["holdout"]["confusion"].as_array().map(Vec::len), Some(2), "{rep:?}");
    assert!(m["latency"]["p99_ms"].as_f64().unwrap() <= 200.0, "{rep:?}");
    assert!(m["robustness"]["accuracy"].as_f64().unwrap() > 0.75, "{rep:?}");
    assert_eq!(m["artifact"]["agreement_with_trainer"].as_f64(), Some(1.0), "{rep:?}");
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/sentiment",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    // An alias, named by requests and by deployments.
    let a = s
        .api
        .call(
            Method::PUT,
            "/v1/models/sentiment/aliases/champion",
            Some(&key),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!((a.status, a.body["version"].as_i64()), (StatusCode::OK, Some(1)), "{a:?}");
    let oip = json!({"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["what a great phone"]}]});
    let r = s
        .api
        .call(Method::POST, "/v2/models/sentiment@champion/infer", Some(&key), Some(oip))
        .await;
    assert_eq!((r.status, &r.body["outputs"][1]["data"]), (StatusCode::OK, &json!([1])), "{r:?}");
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/sentiment@nope:predict",
            Some(&key),
            Some(json!({"instances": ["hi"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/sentiment",
            Some(&key),
            Some(json!({"targets": [{"version": "champion", "weight": 100}]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/sentiment:predict",
            Some(&key),
            Some(json!({"instances": ["great"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let aliases = s.api.get("/v1/models/sentiment/aliases", &key).await;
    assert_eq!(aliases.body["data"][0]["alias"], "champion", "{aliases:?}");
    let bad = s
        .api
        .call(
            Method::PUT,
            "/v1/models/sentiment/aliases/7",
            Some(&key),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad:?}");
    let (auditor, _) = s.key_for(&tenant, "tenant_admin").await;
    let audit = s.api.get("/v1/audit", &auditor).await;
    assert!(audit.body.to_string().contains("model_alias.put"), "{audit:?}");
}

/// UCI Adult, trained naively (sex among the features): its predictions
/// carry the data's bias, the report's disparate impact is below the
/// four-fifths rule and the gate keeps the version from live traffic,
/// until a platform admin overrides it with a reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_biased_model_fails_its_gate() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let ds = upload(&s, &key, "adult", common::data::adult_csv()).await;
    let features: Vec<&str> = common::data::ADULT_COLUMNS
        .iter()
        .copied()
        .filter(|c| !matches!(*c, "income" | "fnlwgt"))
        .collect();
    let spec = json!({"dataset": ds, "task": "classification", "label": "income", "features": features,
                      "model": "income", "seed": 3, "protected_attribute": "sex"});
    let r = start(&s, &key, spec).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let (job, _) = wait(&s, &key, r.body["id"].as_str().unwrap(), Duration::from_secs(600)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["metrics"]["holdout"]["accuracy"].as_f64().unwrap() > 0.8, "{job}");
    assert_eq!(job["metrics"]["report"]["passed"], false, "{job}");

    let rep = s.api.get("/v1/models/income/versions/1/report", &key).await;
    let di = rep.body["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "disparate_impact")
        .unwrap_or_else(|| panic!("no disparate impact check: {rep:?}"))
        .clone();
    assert!(di["value"].as_f64().unwrap() < 0.8 && di["passed"] == false, "{di}");
    assert_eq!(di["threshold"].as_f64(), Some(0.8));
    let fairness = &rep.body["metrics"]["fairness"]["results"][0];
    eprintln!(
        "adult: accuracy {}, disparate impact {} (labels {}), equalized-odds difference {}",
        rep.body["metrics"]["holdout"]["accuracy"],
        di["value"],
        fairness["label_disparate_impact"],
        fairness["equalized_odds_difference"]
    );
    assert_eq!(fairness["least_selected"], "Female", "{fairness}");
    assert!(fairness["label_disparate_impact"].as_f64().unwrap() < 0.5, "{fairness}");
    assert!(fairness["groups"]["Male"]["tp"].as_u64().unwrap() > 0, "{fairness}");

    // No live traffic: a deployment, an alias, a request are refused.
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/income",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}]})),
        )
        .await;
    assert_eq!((d.status, d.code()), (StatusCode::CONFLICT, "gate_failed"), "{d:?}");
    assert_eq!(d.body["error"]["checks"][0]["name"], "disparate_impact", "{d:?}");
    let a = s
        .api
        .call(
            Method::PUT,
            "/v1/models/income/aliases/champion",
            Some(&key),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!((a.status, a.code()), (StatusCode::CONFLICT, "gate_failed"), "{a:?}");
    let row: Vec<f64> = vec![0.0; job_width(&s, &key).await];
    let infer = json!({"inputs": [{"name": "features", "shape": [1, row.len()], "datatype": "FP32", "data": row}]});
    let r =
        s.api.call(Method::POST, "/v2/models/income/infer", Some(&key), Some(infer.clone())).await;
    assert_eq!(
        (r.status, r.body["code"].as_str()),
        (StatusCode::CONFLICT, Some("gate_failed")),
        "{r:?}"
    );

    // A platform admin lets it through, with a reason; the audit log keeps it.
    let id = s.api.get("/v1/models/income", &key).await.body["id"].as_str().unwrap().to_owned();
    let path = format!("/admin/v1/models/{id}/versions/1/gate-override");
    let o = s.api.call(Method::POST, &path, Some(&key), Some(json!({"reason": "pilot"}))).await;
    assert_eq!(o.status, StatusCode::FORBIDDEN, "a tenant key cannot override: {o:?}");
    let o = s
        .admin(
            Method::POST,
            &path,
            Some(json!({"reason": "pilot with human review of every decision"})),
        )
        .await;
    assert_eq!(o.status, StatusCode::OK, "{o:?}");
    assert_eq!(o.body["override"]["reason"], "pilot with human review of every decision");
    let r = s.api.call(Method::POST, "/v2/models/income/infer", Some(&key), Some(infer)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let d = s
        .api
        .call(
            Method::PUT,
            "/v1/deployments/income",
            Some(&key),
            Some(json!({"targets": [{"version": 1, "weight": 100}]})),
        )
        .await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let (auditor, _) = s.key_for(&tenant, "tenant_admin").await;
    let audit = s.api.get("/v1/audit", &auditor).await;
    let entry = audit.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "model_version.gate_override")
        .unwrap_or_else(|| panic!("no override in the audit log: {audit:?}"))
        .clone();
    assert_eq!(entry["target"], format!("{id}@1"), "{entry}");
}

/// The width of the income model's input, from its OIP metadata.
async fn job_width(s: &Server, key: &str) -> usize {
    let m = s.api.get("/v2/models/income/versions/1", key).await;
    m.body["inputs"][0]["shape"][1].as_u64().unwrap_or_else(|| panic!("{m:?}")) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn specs_that_cannot_train_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let mut one_class = String::from("text,label,n,word,gap\n");
    for i in 0..150 {
        let gap = if i % 10 == 0 { String::new() } else { i.to_string() };
        one_class.push_str(&format!("t{i},1,{i},w{},{gap}\n", i % 3));
    }
    let ds = upload(&s, &key, "one", one_class).await;
    let small = upload(&s, &key, "small", "text,label\na,0\nb,1\nc,0\nd,1\n".into()).await;
    let base = |v: Value| {
        let mut spec = json!({"dataset": ds, "task": "classification", "label": "label", "model": "m", "text": "text"});
        for (k, x) in v.as_object().unwrap() {
            spec[k] = x.clone();
        }
        spec
    };
    for (spec, param, words) in [
        (base(json!({})), "label", "needs at least two"),
        (base(json!({"label": "missing"})), "label", "no column \"missing\""),
        (
            base(json!({"text": null, "features": ["text"], "task": "regression", "label": "n"})),
            "features",
            "too many to be categories",
        ),
        (
            base(
                json!({"text": null, "features": ["word", "gap"], "task": "regression", "label": "n"}),
            ),
            "features",
            "empty in 15 rows",
        ),
        (
            base(json!({"label": "n", "task": "regression", "protected_attribute": "word"})),
            "protected_attribute",
            "classifiers",
        ),
        (
            base(json!({"label": "word", "protected_attribute": "nope"})),
            "protected_attribute",
            "no column \"nope\"",
        ),
        (base(json!({"dataset": small})), "holdout", "too few"),
        (base(json!({"dataset": "ds_nope"})), "dataset", "no dataset"),
        (
            base(json!({"base_model": "nope", "task": "regression", "label": "n"})),
            "base_model",
            "no embedding model",
        ),
        (base(json!({"holdout": 0.9})), "holdout", "at most 0.5"),
    ] {
        let r = start(&s, &key, spec.clone()).await;
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{spec}: {r:?}"
        );
        assert!(r.body["error"]["message"].as_str().unwrap().contains(words), "{spec}: {r:?}");
    }
    let (viewer, _) = s.key_for(&tenant, "viewer").await;
    let r = start(&s, &viewer, base(json!({"label": "n", "task": "regression"}))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(s.api.get("/v1/training-jobs/job_nope", &key).await.status, StatusCode::NOT_FOUND);
}

/// Two replicas on one PostgreSQL: a job started through one is visible,
/// with its progress, through the other and cancelled from it; the replica
/// running it stops, and the plan's bound on running jobs holds across both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_is_one_job_across_replicas() {
    let Some(common::Pair { a, b, dirs: _dirs, .. }) =
        common::Pair::start("training-pair-admin-key-0123456789").await
    else {
        return;
    };
    let p = a
        .admin(
            Method::POST,
            "/admin/v1/plans",
            Some(json!({"name": "one-job", "training_jobs": 1})),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{p:?}");
    let (_, key, _) = a.tenant_on_plan("acme", "one-job", "developer").await;
    let mut csv = String::from("x,z,y\n");
    for i in 0..3000u32 {
        let (x, z) = (f64::from(i % 97) / 97.0, f64::from((i * 31) % 89) / 89.0);
        csv.push_str(&format!("{x},{z},{}\n", 3.0 * x - z));
    }
    let ds = upload(&a, &key, "points", csv).await;
    // Long enough to be caught running: no early stop, many epochs.
    let spec = json!({"dataset": ds, "task": "regression", "label": "y", "features": ["x", "z"], "model": "slow",
                      "hyperparameters": {"max_epochs": 100000, "patience": 100000, "learning_rate": 0.0001}});
    let r = start(&a, &key, spec.clone()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let queued = start(&b, &key, spec).await.body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = b.api.get(&format!("/v1/training-jobs/{id}"), &key).await.body;
        if j["status"] == "running" && j["progress"]["epoch"].as_u64().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "never seen running from b: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The plan runs one job at a time per tenant, whichever replica asks.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let q = a.api.get(&format!("/v1/training-jobs/{queued}"), &key).await.body;
    let first = a.api.get(&format!("/v1/training-jobs/{id}"), &key).await.body;
    assert_eq!(q["status"], "queued", "{q} while {first}");
    let c =
        b.api.call(Method::POST, &format!("/v1/training-jobs/{id}/cancel"), Some(&key), None).await;
    assert_eq!((c.status, c.body["status"].as_str()), (StatusCode::OK, Some("cancelled")), "{c:?}");
    let j = a.api.get(&format!("/v1/training-jobs/{id}"), &key).await.body;
    assert_eq!(j["status"], "cancelled", "{j}");
    // With the first cancelled, the queued one runs (and is cancelled too).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = a.api.get(&format!("/v1/training-jobs/{queued}"), &key).await.body;
        if q["status"] == "running" {
            break;
        }
        assert!(Instant::now() < deadline, "the queued job never started: {q}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let c = a
        .api
        .call(Method::POST, &format!("/v1/training-jobs/{queued}/cancel"), Some(&key), None)
        .await;
    assert_eq!(c.status, StatusCode::OK, "{c:?}");
}

/// An uploaded version has no report, so no gate, until it is validated on
/// a dataset; the tenant's thresholds decide; a failed version stops
/// serving and the newest one that passed takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_uploaded_version_is_validated_against_the_tenants_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (tenant, key, _) = s.tenant_with_key("acme", "developer").await;
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models",
            Some(&key),
            Some(json!({"name": "points", "task": "classification", "runtime": "linear"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    // v1 says "high" above x = 0.5; v2 gets it backwards.
    for (w, b) in
        [([[10.0, 0.0], [-10.0, 0.0]], [-5.0, 5.0]), ([[-10.0, 0.0], [10.0, 0.0]], [5.0, -5.0])]
    {
        let head = json!({"format": "tessera.linear.v1", "task": "classification", "weights": w, "bias": b, "labels": ["high", "low"]});
        let up =
            s.api.upload("/v1/models/points/versions", &key, head.to_string().into_bytes()).await;
        assert_eq!(up.status, StatusCode::CREATED, "{up:?}");
    }
    let mut csv = String::from("x,z,kind\n");
    for i in 0..200u32 {
        let x = f64::from(i % 100) / 100.0;
        csv.push_str(&format!(
            "{x},{},{}\n",
            f64::from(i % 7),
            if x > 0.5 { "high" } else { "low" }
        ));
    }
    let ds = upload(&s, &key, "points", csv).await;
    let infer = json!({"inputs": [{"name": "features", "shape": [1, 2], "datatype": "FP32", "data": [0.9, 1.0]}]});
    let label = |r: &common::Resp| r.body["outputs"][1]["data"][0].as_i64();
    // Unvalidated: the latest serves.
    let r =
        s.api.call(Method::POST, "/v2/models/points/infer", Some(&key), Some(infer.clone())).await;
    assert_eq!((r.status, label(&r)), (StatusCode::OK, Some(1)), "{r:?}");
    assert_eq!(
        s.api.get("/v1/models/points/versions/2/report", &key).await.status,
        StatusCode::NOT_FOUND
    );
    let body = json!({"dataset": ds, "label": "kind", "features": ["x", "z"]});
    let v1 = s
        .api
        .call(Method::POST, "/v1/models/points/versions/1/validate", Some(&key), Some(body.clone()))
        .await;
    assert_eq!((v1.status, v1.body["passed"].as_bool()), (StatusCode::OK, Some(true)), "{v1:?}");
    assert_eq!(v1.body["metrics"]["holdout"]["samples"], 200, "{v1:?}");
    let v2 = s
        .api
        .call(Method::POST, "/v1/models/points/versions/2/validate", Some(&key), Some(body.clone()))
        .await;
    assert_eq!((v2.status, v2.body["passed"].as_bool()), (StatusCode::OK, Some(false)), "{v2:?}");
    // v2 failed: the newest passing version, v1, serves; v2 named outright is refused.
    let r =
        s.api.call(Method::POST, "/v2/models/points/infer", Some(&key), Some(infer.clone())).await;
    assert_eq!((r.status, label(&r)), (StatusCode::OK, Some(0)), "{r:?}");
    assert_eq!(r.headers["x-tessera-model-version"], "points@1", "{r:?}");
    let r = s
        .api
        .call(Method::POST, "/v2/models/points/versions/2/infer", Some(&key), Some(infer.clone()))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    // Shadow traffic may still reach it (that is how it is evaluated); weight may not.
    let shadowed = json!({"targets": [{"version": 1, "weight": 100}], "shadow": [{"version": 2, "percent": 100}]});
    let d = s.api.call(Method::PUT, "/v1/deployments/points", Some(&key), Some(shadowed)).await;
    assert_eq!(d.status, StatusCode::OK, "{d:?}");
    let r =
        s.api.call(Method::POST, "/v2/models/points/infer", Some(&key), Some(infer.clone())).await;
    assert_eq!(r.headers["x-tessera-model-version"], "points@1", "{r:?}");
    let split = json!({"targets": [{"version": 1, "weight": 90}, {"version": 2, "weight": 10}]});
    let d = s.api.call(Method::PUT, "/v1/deployments/points", Some(&key), Some(split)).await;
    assert_eq!((d.status, d.code()), (StatusCode::CONFLICT, "gate_failed"), "{d:?}");
    // A stricter tenant: accuracy 1.0 is more than v1 reaches on rows at the boundary.
    let p = s
        .admin(
            Method::PATCH,
            &format!("/admin/v1/tenants/{tenant}"),
            Some(json!({"gate_thresholds": {"accuracy": 1.0, "latency_p99_ms": 1000}})),
        )
        .await;
    assert_eq!(
        (p.status, p.body["gate_thresholds"]["accuracy"].as_f64()),
        (StatusCode::OK, Some(1.0)),
        "{p:?}"
    );
    let again = s
        .api
        .call(Method::POST, "/v1/models/points/versions/1/validate", Some(&key), Some(body))
        .await;
    assert_eq!(again.body["thresholds"]["latency_p99_ms"].as_f64(), Some(1000.0), "{again:?}");
    let acc = again.body["checks"][0]["value"].as_f64().unwrap();
    assert_eq!(again.body["passed"].as_bool(), Some(acc >= 1.0), "{again:?}");
    // Bad requests name the problem.
    for (body, param) in [
        (json!({"dataset": ds, "label": "kind"}), "text"),
        (json!({"dataset": "ds_nope", "label": "kind", "features": ["x"]}), "dataset"),
        (json!({"dataset": ds, "label": "nope", "features": ["x", "z"]}), "dataset"),
    ] {
        let r = s
            .api
            .call(Method::POST, "/v1/models/points/versions/1/validate", Some(&key), Some(body))
            .await;
        assert_eq!(
            (r.status, r.body["error"]["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some(param)),
            "{r:?}"
        );
    }
    let r = s
        .api
        .call(
            Method::POST,
            "/v1/models/points/versions/9/validate",
            Some(&key),
            Some(json!({"dataset": ds, "label": "kind", "features": ["x"]})),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
}

/// The MLP trainer: two rings no line separates; the linear head stays
/// near chance, the MLP head learns them, passes its gate and serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mlp_head_learns_what_a_line_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let mut csv = String::from("x,y,ring\n");
    for i in 0..1500u32 {
        let inner = i % 2 == 0;
        let r = if inner { 1.0 } else { 3.0 } + 0.2 * (f64::from((i * 7919) % 1000) / 500.0 - 1.0);
        let a = std::f64::consts::TAU * f64::from((i * 104_729) % 997) / 997.0;
        csv.push_str(&format!(
            "{},{},{}\n",
            r * a.cos(),
            r * a.sin(),
            if inner { "inner" } else { "outer" }
        ));
    }
    let ds = upload(&s, &key, "rings", csv).await;
    let base = json!({"dataset": ds, "task": "classification", "label": "ring", "features": ["x", "y"], "seed": 5});
    let mut linear = base.clone();
    linear["model"] = json!("rings-linear");
    let mut mlp = base;
    mlp["model"] = json!("rings");
    mlp["trainer"] = json!("mlp");
    mlp["hyperparameters"] = json!({"hidden_units": 16});
    let mut accuracy = Vec::new();
    for spec in [linear, mlp] {
        let r = start(&s, &key, spec).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
        let (job, _) =
            wait(&s, &key, r.body["id"].as_str().unwrap(), Duration::from_secs(300)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        accuracy.push(job["metrics"]["holdout"]["accuracy"].as_f64().unwrap());
        if job["model"] == "rings" {
            assert!(job["metrics"]["trainer"].as_str().unwrap().contains("MLP"), "{job}");
            assert_eq!(job["metrics"]["report"]["passed"], true, "{job}");
        }
    }
    assert!(
        accuracy[0] < 0.75 && accuracy[1] > 0.95,
        "linear {} vs MLP {}",
        accuracy[0],
        accuracy[1]
    );
    let infer = json!({"inputs": [{"name": "features", "shape": [2, 2], "datatype": "FP32", "data": [0.0, 1.0, -3.0, 0.2]}]});
    let r = s.api.call(Method::POST, "/v2/models/rings/infer", Some(&key), Some(infer)).await;
    assert_eq!(
        (r.status, &r.body["outputs"][1]["data"]),
        (StatusCode::OK, &json!([0, 1])),
        "{r:?}"
    );
    let bad = json!({"dataset": ds, "task": "classification", "label": "ring", "features": ["x"], "model": "m", "trainer": "forest"});
    let r = start(&s, &key, bad).await;
    assert_eq!(
        (r.status, r.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("trainer")),
        "{r:?}"
    );
}

/// A job cut off by kill -9 of the embedded server is marked failed when
/// the server starts again, with a reason, and a new job runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_cut_off_by_a_crash_is_marked_failed_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        Options::new(&Backend::Sqlite, dir.path())
            .env("TESSERA_ADMIN_KEY", "training-crash-admin-key-0123")
    };
    let s = Server::start(opts()).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    let mut csv = String::from("x,y\n");
    for i in 0..2000u32 {
        let x = f64::from(i % 97) / 97.0;
        csv.push_str(&format!("{x},{}\n", 2.0 * x));
    }
    let ds = upload(&s, &key, "line", csv).await;
    let slow = json!({"dataset": ds, "task": "regression", "label": "y", "features": ["x"], "model": "line",
                      "hyperparameters": {"max_epochs": 100000, "patience": 100000, "learning_rate": 0.0001}});
    let id = start(&s, &key, slow).await.body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.api.get(&format!("/v1/training-jobs/{id}"), &key).await.body["status"] != "running" {
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.kill9().await;
    let s = Server::start(opts()).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let job = loop {
        let j = s.api.get(&format!("/v1/training-jobs/{id}"), &key).await.body;
        if j["status"] != "running" {
            break j;
        }
        assert!(Instant::now() < deadline, "still running after the restart: {j}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(job["status"], "failed", "{job}");
    assert!(job["error"].as_str().unwrap().contains("start the job again"), "{job}");
    let quick = json!({"dataset": ds, "task": "regression", "label": "y", "features": ["x"], "model": "line"});
    let r = start(&s, &key, quick).await;
    let (done, _) = wait(&s, &key, r.body["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
}
