//! Rollouts end to end (L4 with L5): heads trained by training jobs, live
//! traffic through KServe predict with feedback for every answer, and the
//! controller moving the weights. A candidate with known errors passes its
//! gate (its training data has them) and the shadow and 5% steps (the
//! traffic avoids them), then the traffic shifts, its accuracy falls below
//! the check, and it is rolled back by itself; a good candidate is promoted
//! with `champion` moved. Every step is in the audit log. On two replicas
//! sharing PostgreSQL, Redis and NATS, killing the replica that drove the
//! rollout hands it to the other.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use std::time::{Duration, Instant};

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Points on [-1, 1]^2, the same every run.
pub struct Points(pub u64);

impl Points {
    pub fn next(&mut self) -> f64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    }
}

/// The truth: `pos` right of the y axis.
pub fn truth(x: f64, _y: f64) -> &'static str {
    if x > 0.0 { "pos" } else { "neg" }
}

/// The candidate's training labels: `pos` below the diagonal. They agree
/// with the truth near y = 0 and disagree often for y > 0.5.
fn skewed(x: f64, y: f64) -> &'static str {
    if x > y { "pos" } else { "neg" }
}

/// Trains a version of `model` on 1,500 points labelled by `label`; its number.
pub async fn train(
    s: &Server,
    key: &str,
    model: &str,
    label: fn(f64, f64) -> &'static str,
    seed: u64,
) -> i64 {
    let mut p = Points(seed);
    let mut csv = String::from("x,y,label\n");
    for _ in 0..1500 {
        let (x, y) = (p.next(), p.next());
        csv.push_str(&format!("{x},{y},{}\n", label(x, y)));
    }
    let r = s
        .api
        .http
        .post(format!("{}/v1/datasets?name={model}-{seed}", s.url))
        .bearer_auth(key)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let ds = r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
    let spec = json!({"dataset": ds, "task": "classification", "label": "label",
        "features": ["x", "y"], "model": model, "seed": seed});
    let r = s.api.call(Method::POST, "/v1/training-jobs", Some(key), Some(spec)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{r:?}");
    let id = r.body["id"].as_str().unwrap();
    let (j, _) = crate::training::wait(s, key, id, Duration::from_secs(300)).await;
    assert_eq!(j["status"], "succeeded", "{j}");
    assert_eq!(j["metrics"]["report"]["passed"], true, "the gate: {j}");
    j["version"].as_i64().unwrap()
}

/// Where the simulated traffic's points come from.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Region {
    /// Near y = 0, where the skewed candidate is right.
    Calm,
    /// Anywhere.
    All,
    /// y > 0.5, where the skewed candidate is often wrong.
    Shifted,
}

/// Simulated users: predictions through KServe, and each answer's truth
/// sent as feedback a little later (once its record is in the log).
struct Traffic<'a> {
    servers: Vec<&'a Server>,
    key: &'a str,
    model: &'a str,
    points: Points,
    pending: Vec<(Instant, String, &'static str)>,
    sent: usize,
    joined: u64,
}

impl<'a> Traffic<'a> {
    fn new(servers: Vec<&'a Server>, key: &'a str, model: &'a str) -> Self {
        Self { servers, key, model, points: Points(99), pending: Vec::new(), sent: 0, joined: 0 }
    }

    /// Sends predictions and feedback until `done` holds for the rollout
    /// (polled every 250 ms) or `within` passes; the rollout as last read.
    async fn until(
        &mut self,
        id: &str,
        region: Region,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + within;
        let mut polled = Instant::now();
        loop {
            let (x, mut y) = (self.points.next(), self.points.next());
            y = match region {
                Region::Calm => y * 0.05,
                Region::All => y,
                Region::Shifted => 0.75 + y * 0.25,
            };
            let s = self.servers[self.sent % self.servers.len()];
            self.sent += 1;
            let r = s
                .api
                .http
                .post(format!("{}/v1/models/{}:predict", s.url, self.model))
                .bearer_auth(self.key)
                .json(&json!({"instances": [[x, y]]}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
            let pid = r.headers()["x-tessera-prediction-id"].to_str().unwrap().to_owned();
            self.pending.push((Instant::now(), pid, truth(x, y)));
            if polled.elapsed() >= Duration::from_millis(250) {
                polled = Instant::now();
                self.feedback(s).await;
                let r = s.api.get(&format!("/v1/rollouts/{id}"), self.key).await;
                assert_eq!(r.status, StatusCode::OK, "{r:?}");
                if done(&r.body) {
                    return r.body;
                }
                assert!(Instant::now() < deadline, "rollout never got there: {:#}", r.body);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Feedback for the answers older than the record writer's linger.
    async fn feedback(&mut self, s: &Server) {
        let ripe =
            self.pending.iter().take_while(|p| p.0.elapsed() > Duration::from_millis(400)).count();
        if ripe == 0 {
            return;
        }
        let items: Vec<Value> = self
            .pending
            .drain(..ripe)
            .map(|(_, id, label)| json!({"prediction_id": id, "label": label}))
            .collect();
        let r = s
            .api
            .call(Method::POST, "/v1/feedback", Some(self.key), Some(json!({"feedback": items})))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        self.joined += r.body["joined"].as_u64().unwrap();
    }
}

fn step(r: &Value) -> usize {
    r["step"].as_u64().unwrap() as usize
}

fn timeline(r: &Value) -> String {
    r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let checks: Vec<String> = h["checks"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter(|c| c["name"] != "requests")
                .map(|c| format!("{}={}", c["name"].as_str().unwrap(), c["value"]))
                .collect();
            format!(
                "{} {:<11} {:<6} {} {} {}",
                h["at"].as_str().unwrap(),
                h["event"].as_str().unwrap(),
                h["step"].as_str().unwrap(),
                checks.join(" "),
                h["detail"].as_str().unwrap_or(""),
                h["by"].as_str().map(|b| format!("({b})")).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn deployment_weights(d: &Value) -> Vec<(Value, u64)> {
    d["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["version"].clone(), t["weight"].as_u64().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_candidate_rolls_back_by_itself_and_a_good_one_is_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (acme, key, _) = s.tenant_with_key("acme", "developer").await;
    let (_, other, _) = s.tenant_with_key("globex", "developer").await;
    let champion = train(&s, &key, "scorer", truth, 1).await;
    let bad = train(&s, &key, "scorer", skewed, 2).await;
    let good = train(&s, &key, "scorer", truth, 3).await;
    assert_eq!((champion, bad, good), (1, 2, 3));
    let a = s
        .api
        .call(
            Method::PUT,
            "/v1/models/scorer/aliases/champion",
            Some(&key),
            Some(json!({"version": 1})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    let d = json!({"targets": [{"version": "champion", "weight": 100}]});
    let r = s.api.call(Method::PUT, "/v1/deployments/scorer", Some(&key), Some(d)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    let spec = |candidate: i64| {
        json!({"model": "scorer", "candidate": candidate, "steps": ["shadow", 5, 50, 100], "interval": "2s",
            "checks": {"accuracy_min": 0.85, "min_samples": 10, "error_rate_max": 0.05, "p99_ms_max": 2000},
            "failures_before_rollback": 2})
    };
    let r = s.api.call(Method::POST, "/v1/rollouts", Some(&key), Some(spec(bad))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (r.body["state"].as_str(), r.body["primary"].as_str()),
        (Some("running"), Some("champion"))
    );
    // One rollout per model at a time; the deployment is the rollout's now.
    let again = s.api.call(Method::POST, "/v1/rollouts", Some(&key), Some(spec(good))).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{again:?}");
    let by_hand = json!({"targets": [{"version": 1, "weight": 100}]});
    let r = s.api.call(Method::PUT, "/v1/deployments/scorer", Some(&key), Some(by_hand)).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{r:?}");
    let d = s.api.get("/v1/deployments/scorer", &key).await.body;
    assert_eq!(d["shadow"], json!([{"version": bad, "percent": 100}]), "{d}");
    // Another tenant reaches none of it.
    for (m, path) in [
        (Method::GET, format!("/v1/rollouts/{id}")),
        (Method::POST, format!("/v1/rollouts/{id}/abort")),
        (Method::POST, format!("/v1/rollouts/{id}/pause")),
    ] {
        let r = s.api.call(m, &path, Some(&other), None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}: {r:?}");
    }
    assert_eq!(s.api.get("/v1/rollouts", &other).await.body["data"], json!([]));
    let r = s.api.get("/v1/models/scorer/quality", &other).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");

    // Calm traffic: right in shadow and at 5%.
    let mut t = Traffic::new(vec![&s], &key, "scorer");
    let r = t.until(&id, Region::Calm, Duration::from_secs(90), |r| step(r) >= 2).await;
    let d = s.api.get("/v1/deployments/scorer", &key).await.body;
    assert_eq!(deployment_weights(&d), [(json!("champion"), 50), (json!(bad), 50)], "{d}");
    assert_eq!(r["failures"], 0, "{}", timeline(&r));
    // The traffic shifts: its accuracy falls, and it is rolled back.
    let r =
        t.until(&id, Region::Shifted, Duration::from_secs(90), |r| r["state"] != "running").await;
    let bad_timeline = timeline(&r);
    assert_eq!(r["state"], "rolled_back", "{bad_timeline}");
    let failed: Vec<&Value> =
        r["history"].as_array().unwrap().iter().filter(|h| h["event"] == "failed").collect();
    assert!(failed.len() >= 2, "{bad_timeline}");
    let accuracy = failed[failed.len() - 1]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "accuracy")
        .unwrap();
    assert!(
        accuracy["value"].as_f64().unwrap() < 0.85 && accuracy["passed"] == false,
        "{accuracy}"
    );
    let d = s.api.get("/v1/deployments/scorer", &key).await.body;
    assert_eq!(deployment_weights(&d), [(json!("champion"), 100)], "{d}");
    assert_eq!(d["shadow"], json!([]), "{d}");
    let q = s.api.get(&format!("/v1/models/scorer/quality?window=1h&version={bad}"), &key).await;
    assert_eq!(q.status, StatusCode::OK, "{q:?}");
    let samples = q.body["versions"][0]["classification"]["samples"].as_u64().unwrap();
    assert!(samples >= 20, "the candidate's labelled answers: {}", q.body);
    eprintln!("bad candidate, rolled back:\n{bad_timeline}");

    // The good candidate goes all the way on any traffic.
    let r = s.api.call(Method::POST, "/v1/rollouts", Some(&key), Some(spec(good))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let id2 = r.body["id"].as_str().unwrap().to_owned();
    let r = t.until(&id2, Region::All, Duration::from_secs(120), |r| r["state"] != "running").await;
    let good_timeline = timeline(&r);
    assert_eq!(r["state"], "promoted", "{good_timeline}");
    let events: Vec<&str> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["event"].as_str().unwrap())
        .filter(|e| *e != "passed" && *e != "waiting")
        .collect();
    assert_eq!(
        events,
        ["started", "advanced", "advanced", "advanced", "promoted"],
        "{good_timeline}"
    );
    let aliases = s.api.get("/v1/models/scorer/aliases", &key).await.body;
    assert_eq!(aliases["data"][0]["alias"], "champion");
    assert_eq!(aliases["data"][0]["version"], good, "{aliases}");
    let d = s.api.get("/v1/deployments/scorer", &key).await.body;
    assert_eq!(deployment_weights(&d), [(json!("champion"), 100)], "{d}");
    // Live traffic now answers with the good version.
    let r = s
        .api
        .http
        .post(format!("{}/v1/models/scorer:predict", s.url))
        .bearer_auth(&key)
        .json(&json!({"instances": [[0.3, 0.9]]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-tessera-model-version"].to_str().unwrap(), format!("scorer@{good}"));
    eprintln!("good candidate, promoted:\n{good_timeline}");
    assert!(t.joined > 100, "feedback joined: {}", t.joined);

    // The audit log has every step of both.
    let (admin, _) = s.key_for(&acme, "tenant_admin").await;
    let audit = s.api.get("/v1/audit?limit=1000", &admin).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    let audit = audit.body;
    let actions: Vec<&str> =
        audit["data"].as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    let count = |a: &str| actions.iter().filter(|x| **x == a).count();
    assert_eq!(count("rollout.start"), 2, "{actions:?}");
    assert!(count("rollout.step") >= 2 + 3, "{actions:?}");
    assert!(count("rollout.check_failed") >= 2, "{actions:?}");
    assert_eq!((count("rollout.rollback"), count("rollout.promote")), (1, 1), "{actions:?}");

    // The CLI shows a rollout as a table and its history.
    let out = tokio::process::Command::new(common::BIN)
        .args(["rollouts", "status", &id, "--url", &s.url, "--key", &key])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("state rolled_back")
            && text.contains("rolled_back")
            && text.contains("accuracy"),
        "{text}"
    );
    // A candidate that does not exist is refused, naming the field.
    let m = s.api.call(Method::POST, "/v1/rollouts", Some(&key), Some(spec(99))).await;
    assert_eq!(
        (m.status, m.body["error"]["param"].as_str()),
        (StatusCode::BAD_REQUEST, Some("candidate")),
        "{m:?}"
    );
}

/// Two replicas on PostgreSQL, Redis and NATS: both run the controller;
/// the replica that drove the rollout is killed, and the other goes on
/// from the state in the store to the promotion.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_rollout_hands_it_over() {
    let Some(nats) = tessera_store::conformance::service_url("TESSERA_TEST_NATS_URL") else {
        return;
    };
    let Some(common::Pair { a, b, dirs: _dirs, nats_prefix }) =
        common::Pair::start_with("rollout-pair-admin-key-0123456789", &["--nats-url".into(), nats])
            .await
    else {
        return;
    };
    let (tenant, key, _) = a.tenant_with_key("acme", "developer").await;
    let one = train(&a, &key, "scorer", truth, 1).await;
    let two = train(&a, &key, "scorer", truth, 3).await;
    let spec = json!({"model": "scorer", "candidate": two, "steps": [10, 50, 100], "interval": "2s",
        "checks": {"accuracy_min": 0.8, "min_samples": 5, "error_rate_max": 0.05}});
    let r = b.api.call(Method::POST, "/v1/rollouts", Some(&key), Some(spec)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.body["primary"], one);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let owner = |s: &Server| {
        let log = s.log();
        let line =
            log.lines().find(|l| l.contains("rollout controller started")).unwrap().to_owned();
        line.split("owner=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .trim_matches('"')
            .to_owned()
    };
    let (owner_a, owner_b) = (owner(&a), owner(&b));
    // Until the first step moved; who moved it?
    let r = {
        let mut t = Traffic::new(vec![&a, &b], &key, "scorer");
        t.until(&id, Region::All, Duration::from_secs(90), |r| step(r) >= 1).await
    };
    let advanced =
        r["history"].as_array().unwrap().iter().find(|h| h["event"] == "advanced").unwrap();
    let driver = advanced["by"].as_str().unwrap().to_owned();
    assert!(driver == owner_a || driver == owner_b, "{driver} is neither {owner_a} nor {owner_b}");
    let (dead, alive) = if driver == owner_a { (a, b) } else { (b, a) };
    let killed_at = Instant::now();
    let killed = tessera_core::time::Timestamp::now();
    dead.kill9().await;
    let mut t = Traffic::new(vec![&alive], &key, "scorer");
    let r = t.until(&id, Region::All, Duration::from_secs(90), |r| r["state"] != "running").await;
    let timeline = timeline(&r);
    assert_eq!(r["state"], "promoted", "{timeline}");
    let after: Vec<&Value> = r["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["event"] == "advanced" || h["event"] == "promoted")
        .collect();
    let survivor = owner(&alive);
    assert!(after.iter().skip(1).all(|h| h["by"] == survivor.as_str()), "{timeline}");
    // The survivor's first evaluation came within an interval (2 s) of the
    // kill, give or take its one-second tick.
    let at = |h: &Value| {
        tessera_core::time::Timestamp::parse_rfc3339("at", h["at"].as_str().unwrap()).unwrap()
    };
    let next = r["history"].as_array().unwrap().iter().find(|h| at(h) > killed).unwrap();
    let gap = at(next).millis() - killed.millis();
    assert!(gap <= 3_500, "the survivor took over after {gap} ms: {timeline}");
    eprintln!(
        "two replicas, {driver} killed {:.1}s before the promotion:\n{timeline}",
        killed_at.elapsed().as_secs_f64()
    );
    common::drop_nats_stream(&nats_prefix, &tenant).await;
}
