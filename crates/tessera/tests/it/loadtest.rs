//! `tessera loadtest` against the real server: closed and open loop, the
//! seed's phases, status counts, errors and the JSON report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{BIN, Backend, Options, Server};
use serde_json::Value;

fn loadtest(args: &[&str]) -> (bool, Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let o = std::process::Command::new(BIN)
        .arg("loadtest")
        .args(args)
        .arg("--json-out")
        .arg(&out)
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let report = std::fs::read(&out)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    (o.status.success(), report, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_and_open_loop_with_phases() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let health = format!("{}/healthz", s.url);

    let (ok, r, text) = loadtest(&["--url", &health, "--concurrency", "4", "--duration", "1s"]);
    assert!(ok, "{text}");
    let p = &r["phases"][0];
    assert!(p["completed"].as_u64().unwrap() > 50, "{r}");
    assert_eq!(p["statuses"]["200"], p["completed"]);
    assert!(p["latency_ms"]["p99"].as_f64().unwrap() >= p["latency_ms"]["p50"].as_f64().unwrap());
    assert!(text.contains("sustained"), "{text}");

    // Open loop keeps the offered rate.
    let (ok, r, text) = loadtest(&["--url", &health, "--rate", "100", "--duration", "2s"]);
    assert!(ok, "{text}");
    let done = r["phases"][0]["completed"].as_u64().unwrap();
    assert!((150..=250).contains(&done), "100 req/s for 2 s gave {done}");

    // The seed's phases, with a knee from the breakdown.
    let (ok, r, text) = loadtest(&[
        "--url",
        &health,
        "--rate",
        "40",
        "--duration",
        "1s",
        "--phases",
        "ramp-up,sustained,spike,breakdown",
        "--breakdown-steps",
        "2",
    ]);
    assert!(ok, "{text}");
    let names: Vec<&str> =
        r["phases"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ramp-up", "sustained", "spike", "breakdown-0", "breakdown-1"]);
    assert!(r["knee"]["rate"].as_f64().unwrap() > 0.0, "{r}");

    // Auth headers and bodies reach the server; wrong keys show up as 401s.
    let me = format!("{}/v1/me", s.url);
    let (ok, r, _) = loadtest(&[
        "--url",
        &me,
        "--concurrency",
        "2",
        "--duration",
        "500ms",
        "-H",
        "Authorization: Bearer tsk_wrong",
    ]);
    assert!(ok);
    assert!(r["phases"][0]["statuses"]["401"].as_u64().unwrap() > 0, "{r}");
    let tenants = format!("{}/admin/v1/tenants", s.url);
    let auth = format!("Authorization: Bearer {}", s.admin_key);
    let (ok, r, text) = loadtest(&[
        "--url",
        &tenants,
        "--method",
        "POST",
        "-H",
        &auth,
        "--body",
        r#"{"name": "t{{counter}}"}"#,
        "--concurrency",
        "2",
        "--duration",
        "500ms",
    ]);
    assert!(ok, "{text}");
    let created = r["phases"][0]["statuses"]["201"].as_u64().unwrap();
    let listed = s.admin(reqwest::Method::GET, "/admin/v1/tenants", None).await.body["data"]
        .as_array()
        .unwrap()
        .len() as u64;
    assert_eq!(created, listed, "every counter made a distinct tenant");
}

#[test]
fn refused_connections_are_errors_and_bad_flags_are_refused() {
    let (ok, r, text) =
        loadtest(&["--url", "http://127.0.0.1:9/", "--concurrency", "1", "--duration", "300ms"]);
    assert!(ok, "{text}");
    let p = &r["phases"][0];
    assert_eq!(p["errors"], p["completed"]);
    assert!(p["statuses"]["connect_error"].as_u64().unwrap() > 0, "{r}");
    let (ok, _, text) =
        loadtest(&["--url", "http://127.0.0.1:9/", "--rate", "5", "--concurrency", "2"]);
    assert!(!ok && text.contains("not both"), "{text}");
    let (ok, _, text) = loadtest(&["--url", "http://127.0.0.1:9/", "--phases", "warp"]);
    assert!(!ok && text.contains("unknown phase"), "{text}");
}
