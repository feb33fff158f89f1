//! The admin CLI against a running server: tenants, keys, audit; `--help`
//! everywhere; JSON output; clear errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{BIN, Backend, Options, Server};
use reqwest::StatusCode;
use serde_json::Value;

fn tessera(s: &Server, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(BIN)
        .args(args)
        .env("TESSERA_URL", &s.url)
        .env("TESSERA_KEY", &s.admin_key)
        .env_remove("TESSERA_DATABASE_URL")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(s: &Server, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (ok, out, err) = tessera(s, &a);
    assert!(ok, "{args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no json ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;

    let t =
        json(&s, &["tenants", "create", "--name", "acme", "--plan", "pro", "--segment", "retail"]);
    let id = t["id"].as_str().unwrap().to_owned();
    assert_eq!((t["plan"].as_str(), t["segment"].as_str()), (Some("pro"), Some("retail")));
    let (ok, table, _) = tessera(&s, &["tenants", "list"]);
    assert!(
        ok && table.contains("acme") && table.contains(&id) && table.starts_with("ID"),
        "{table}"
    );
    assert_eq!(json(&s, &["tenants", "get", &id])["name"], "acme");

    let k = json(
        &s,
        &[
            "keys",
            "create",
            "--tenant",
            &id,
            "--name",
            "ci",
            "--role",
            "developer",
            "--scopes",
            r#"{"operations": ["tenant.read"]}"#,
        ],
    );
    let key = k["key"].as_str().unwrap().to_owned();
    let key_id = k["id"].as_str().unwrap().to_owned();
    assert_eq!(s.api.get("/v1/me", &key).await.status, StatusCode::OK);
    let (ok, out, _) =
        tessera(&s, &["keys", "create", "--tenant", &id, "--name", "second", "--role", "viewer"]);
    assert!(ok && out.contains("shown once"), "{out}");
    let listed = json(&s, &["keys", "list", "--tenant", &id]);
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);
    assert!(!listed.to_string().contains(&key), "keys list shows a secret");
    let (ok, out, _) = tessera(&s, &["keys", "revoke", "--tenant", &id, &key_id]);
    assert!(ok && out.contains(&key_id), "{out}");
    assert_eq!(s.api.get("/v1/me", &key).await.status, StatusCode::UNAUTHORIZED);

    let platform = json(&s, &["keys", "list"]);
    assert_eq!(platform["data"][0]["role"], "platform_admin");
    let (ok, out, err) = tessera(&s, &["audit", "verify"]);
    assert!(ok && out.contains("audit chain ok"), "{out}{err}");
    let audit = json(&s, &["audit", "list", "--tenant", &id, "--limit", "2"]);
    assert_eq!(audit["data"][0]["action"], "key.revoke");

    let (ok, _, _) = tessera(&s, &["tenants", "delete", &id]);
    assert!(ok);
    let (ok, _, err) = tessera(&s, &["tenants", "get", &id]);
    assert!(!ok && err.contains("404") && err.contains("not_found"), "{err}");

    // Errors are one clear line; a bad key says so.
    let out = std::process::Command::new(BIN)
        .args(["tenants", "list", "--url", &s.url, "--key", "tsk_wrong"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("invalid_api_key"), "{err}");
    let out = std::process::Command::new(BIN)
        .args(["tenants", "list", "--url", "http://127.0.0.1:9", "--key", "k"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn every_command_has_help() {
    let commands: &[&[&str]] = &[
        &[],
        &["serve"],
        &["tenants"],
        &["tenants", "create"],
        &["tenants", "list"],
        &["tenants", "get"],
        &["tenants", "delete"],
        &["keys"],
        &["keys", "create"],
        &["keys", "list"],
        &["keys", "revoke"],
        &["audit"],
        &["audit", "verify"],
        &["audit", "list"],
        &["openapi"],
        &["models"],
        &["models", "fetch"],
        &["models", "report"],
        &["train"],
        &["features"],
        &["features", "apply"],
        &["loadtest"],
        &["events"],
        &["events", "send"],
        &["events", "tail"],
    ];
    for c in commands {
        let out = std::process::Command::new(BIN).args(*c).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && text.contains("Usage:"), "{c:?} --help: {text}");
    }
}

/// `tessera train` uploads a file, follows the job's event stream to the
/// end and prints the metrics and the report; `tessera models report`
/// prints a report; a bad version name is a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn train_follows_a_job_and_prints_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("acme", "developer").await;
    // Two classes split by x, with z as noise; deterministic.
    let mut csv = String::from("x,z,kind\n");
    for i in 0..400u32 {
        let x = f64::from(i % 100) / 100.0;
        let z = f64::from((i * 37) % 11) / 11.0;
        csv.push_str(&format!("{x},{z},{}\n", if x > 0.5 { "high" } else { "low" }));
    }
    let file = dir.path().join("points.csv");
    std::fs::write(&file, csv).unwrap();
    let (ok, out, err) = tessera(
        &s,
        &[
            "train",
            "--key",
            &key,
            "--data",
            file.to_str().unwrap(),
            "--model",
            "points",
            "--label",
            "kind",
            "--features",
            "x,z",
            "--seed",
            "1",
        ],
    );
    assert!(ok, "train failed: {err}\n{out}");
    assert!(err.contains("dataset \"points\"") && err.contains("400 rows"), "{err}");
    assert!(out.contains("points@1 trained") && out.contains("holdout: 80 rows"), "{out}");
    assert!(out.contains("points@1: PASSED") && out.contains("ok   accuracy"), "{out}");
    let (ok, out, _) = tessera(&s, &["models", "report", "points@1", "--key", &key]);
    assert!(ok && out.contains("latency_p99_ms") && out.contains("robustness"), "{out}");
    let (ok, _, err) = tessera(&s, &["models", "report", "points", "--key", &key]);
    assert!(!ok && err.contains("NAME@VERSION"), "{err}");
    let (ok, _, err) = tessera(
        &s,
        &[
            "train",
            "--key",
            &key,
            "--data",
            file.to_str().unwrap(),
            "--model",
            "p2",
            "--label",
            "nope",
            "--features",
            "x",
        ],
    );
    assert!(!ok && err.contains("no column \"nope\""), "{err}");
}

#[test]
fn openapi_command_prints_the_document() {
    let out = std::process::Command::new(BIN).arg("openapi").output().unwrap();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(doc["paths"]["/v1/me"]["get"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_send_a_file_and_tail_it() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("cli-events", "developer").await;
    let as_tenant = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .env("TESSERA_URL", &s.url)
            .env("TESSERA_KEY", &key)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let file = dir.path().join("events.jsonl");
    let lines: Vec<String> = (0..7)
        .map(|i| {
            format!(r#"{{"id": "e{i}", "type": "click", "entity": {{"user_id": "u{}"}}}}"#, i % 2)
        })
        .collect();
    std::fs::write(&file, lines.join("\n") + "\n\n").unwrap();
    let path = file.display().to_string();
    let (ok, out, err) = as_tenant(&["events", "send", "-f", &path, "--batch", "3"]);
    assert!(ok, "{err}");
    assert!(out.contains("sent 7 events: 7 stored, 0 already there"), "{out}");
    let (ok, out, _) = as_tenant(&["events", "send", "-f", &path, "--json"]);
    assert!(ok);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        (v["stored"].as_u64(), v["duplicates"].as_u64()),
        (Some(0), Some(7)),
        "a re-run stores nothing twice"
    );

    // A malformed line stops the run before anything is sent, naming the line.
    std::fs::write(&file, "{\"type\": \"t\", \"entity\": {\"u\": \"1\"}}\nnot json\n").unwrap();
    let (ok, _, err) = as_tenant(&["events", "send", "-f", &path]);
    assert!(!ok && err.contains("line 2"), "{err}");
    // An event the server refuses is named by its place in the file.
    std::fs::write(&file, "{\"type\": \"t\", \"entity\": {\"u\": \"1\"}}\n{\"type\": \"bad type\", \"entity\": {\"u\": \"1\"}}\n").unwrap();
    let (ok, _, err) = as_tenant(&["events", "send", "-f", &path]);
    assert!(!ok && err.contains("event 2 of the file") && err.contains("events[1].type"), "{err}");

    // The tail prints each event as a JSON line.
    let mut child = tokio::process::Command::new(BIN)
        .args([
            "events",
            "tail",
            "--from",
            "1",
            "--type",
            "click",
            "--entity",
            "user_id:u1",
            "--json",
        ])
        .env("TESSERA_URL", &s.url)
        .env("TESSERA_KEY", &key)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(child.stdout.take().unwrap()));
    let mut ids = Vec::new();
    while ids.len() < 3 {
        let line = tokio::time::timeout(std::time::Duration::from_secs(10), lines.next_line())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let e: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(e["entity"]["user_id"], "u1");
        ids.push(e["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids, ["e1", "e3", "e5"]);
    let (ok, help, _) = as_tenant(&["events", "tail", "--help"]);
    assert!(ok && help.contains("--entity") && help.contains("Follow"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features_apply_plans_then_applies() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let (_, key, _) = s.tenant_with_key("cli-features", "developer").await;
    let apply = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(["features", "apply"])
            .args(args)
            .env("TESSERA_URL", &s.url)
            .env("TESSERA_KEY", &key)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success(), text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let file = dir.path().join("features.yaml");
    let path = file.display().to_string();
    let yaml = |features: &str, spend: &str| {
        format!(
            "entities:\n  customer:\n    join_keys: [customer_id]\nviews:\n  stats:\n    entities: [customer]\n    ttl: 1h\n    source: {{push: {{}}}}\n    schema:\n      - {{name: spend, dtype: {spend}}}\n{features}services:\n  churn:\n    features: ['stats:spend']\n"
        )
    };
    std::fs::write(&file, yaml("", "float64")).unwrap();
    let (ok, out, err) = apply(&["-f", &path, "--dry-run"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("+ entity customer: create")
            && out.contains("+ feature service churn: create"),
        "{out}"
    );
    assert_eq!(
        s.api.get("/v1/features/entities", &key).await.body["data"],
        serde_json::json!([]),
        "a dry run applies nothing"
    );
    let (ok, out, err) = apply(&["-f", &path]);
    assert!(ok && out.contains("3 applied"), "{out} {err}");
    let (ok, out, _) = apply(&["-f", &path]);
    assert!(
        ok && out.contains("= feature view stats: unchanged") && out.contains("0 applied"),
        "{out}"
    );

    std::fs::write(&file, yaml("      - {name: visits, dtype: int64}\n", "float64")).unwrap();
    let (ok, out, err) = apply(&["-f", &path]);
    assert!(ok && out.contains("~ feature view stats: +feature visits"), "{out} {err}");
    assert_eq!(s.api.get("/v1/features/views/stats", &key).await.body["version"], 2);

    // An incompatible change stops with the server's reason.
    std::fs::write(&file, yaml("", "string")).unwrap();
    let (ok, out, err) = apply(&["-f", &path]);
    assert!(out.contains("~feature spend"), "{out}");
    assert!(!ok && err.contains("cannot change type"), "{err}");
    std::fs::write(&file, "tables: {}\n").unwrap();
    let (ok, _, err) = apply(&["-f", &path]);
    assert!(!ok && err.contains("unknown section \"tables\""), "{err}");
}
