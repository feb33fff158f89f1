//! Operational surface: health, readiness, metrics, request ids, the error
//! envelope on every kind of bad request, body limits, config layering and
//! graceful shutdown.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

use crate::common;

use common::{Backend, Options, Server};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Server::start(Options::new(&Backend::Sqlite, dir.path())).await, dir)
}

#[tokio::test]
async fn health_readiness_and_metrics_are_open() {
    let (s, _d) = server().await;
    for path in ["/healthz", "/readyz", "/v2/health/live", "/v2/health/ready", "/openapi.json"] {
        let r = s.api.call(Method::GET, path, None, None).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {r:?}");
    }
    assert_eq!(s.api.call(Method::GET, "/readyz", None, None).await.body["store"], "sqlite");
    s.api.get("/v1/me", "tsk_bad").await;
    let m = s.api.http.get(format!("{}/metrics", s.url)).send().await.unwrap();
    assert_eq!(
        m.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    let text = m.text().await.unwrap();
    common::assert_families_are_grouped(&text);
    assert!(
        text.contains(
            r#"tessera_http_requests_total{method="GET",route="/healthz",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"route="/v1/me",status="401""#), "{text}");
    assert!(
        text.contains(
            "tessera_http_request_duration_seconds_bucket{le=\"+Inf\",route=\"/readyz\"} 2"
        ),
        "{text}"
    );
}

#[tokio::test]
async fn request_ids_are_echoed_or_minted() {
    let (s, _d) = server().await;
    let r = s
        .api
        .http
        .get(format!("{}/healthz", s.url))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "trace-abc-123");
    let r = s.api.http.get(format!("{}/nowhere", s.url)).send().await.unwrap();
    assert!(r.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
    let r = s
        .api
        .http
        .get(format!("{}/healthz", s.url))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert!(r.headers()["x-request-id"].to_str().unwrap().starts_with("req_"));
}

fn assert_envelope(body: &Value, code: &str) {
    let e = &body["error"];
    assert_eq!(e["code"], code, "{body}");
    assert!(
        e["message"].is_string() && e["type"].is_string() && e.get("param").is_some(),
        "{body}"
    );
}

#[tokio::test]
async fn every_error_uses_the_envelope() {
    let (s, _d) = server().await;
    let url = |p: &str| format!("{}{p}", s.url);
    let r = s.api.call(Method::GET, "/no/such/route", None, None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_envelope(&r.body, "not_found");
    let r = s.api.call(Method::PUT, "/healthz", None, None).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_envelope(&r.body, "method_not_allowed");
    let send = |body: &'static str, ct: &'static str| {
        let http = s.api.http.clone();
        let key = s.admin_key.clone();
        let u = url("/admin/v1/tenants");
        async move {
            let r = http
                .post(u)
                .bearer_auth(key)
                .header("content-type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), r.json::<Value>().await.unwrap())
        }
    };
    let (st, b) = send("{\"name\": ", "application/json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_envelope(&b, "invalid_request");
    let (st, b) = send("{\"name\": \"a\"}", "text/plain").await;
    assert_eq!(st, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_envelope(&b, "unsupported_media_type");
    let (st, b) = send("[1, 2]", "application/json").await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    assert_envelope(&b, "invalid_request");
    // A body over the limit is refused from its declared length, before it is read.
    let head = format!(
        "POST /admin/v1/tenants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        s.admin_key,
        3 * 1024 * 1024
    );
    let raw = raw_request(&s.url, head.as_bytes()).await;
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    assert!(raw.contains("payload_too_large"), "{raw}");
    let r = s.api.call(Method::GET, "/v1/me", Some("tsk_x"), None).await;
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_envelope(&r.body, "invalid_api_key");
}

#[tokio::test]
async fn configured_admin_key_replaces_the_generated_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options::new(&Backend::Sqlite, dir.path())
        .env("TESSERA_ADMIN_KEY", "operator-chosen-admin-key-1");
    let s = Server::start(opts).await;
    assert!(!dir.path().join("admin.key").exists(), "no key file when the operator sets one");
    assert_eq!(
        s.api.get("/admin/v1/tenants", "operator-chosen-admin-key-1").await.status,
        StatusCode::OK
    );
    assert_eq!(
        s.api.get("/admin/v1/tenants", "operator-chosen-admin-key-2").await.status,
        StatusCode::UNAUTHORIZED
    );
    let t = s.admin(Method::POST, "/admin/v1/tenants", Some(json!({"name": "a"}))).await;
    let audit = s.admin(Method::GET, "/admin/v1/audit?limit=1", None).await;
    assert_eq!(audit.body["data"][0]["target"], t.body["id"]);
    assert_eq!(audit.body["data"][0]["actor_key_id"], "key_configured");
}

#[tokio::test]
async fn generated_admin_key_is_private_and_printed_once() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    let file = dir.path().join("admin.key");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), s.admin_key);
    assert!(s.admin_key.starts_with("tsk_"));
    drop(s);
    // A restart keeps the key and mints no new one.
    let again = Server::start(Options::new(&Backend::Sqlite, dir.path())).await;
    assert_eq!(again.admin_key, std::fs::read_to_string(&file).unwrap().trim());
    assert_eq!(
        again.api.get("/admin/v1/keys", &again.admin_key).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn config_file_env_and_flags_layer() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tessera.toml");
    std::fs::write(
        &cfg,
        "listen = \"127.0.0.1:1\"\nmax_body_bytes = 2048\n[auth]\nkey_cache_ttl_ms = 100\n",
    )
    .unwrap();
    // The flag (--listen 127.0.0.1:0 from the harness) beats the file; the file's body limit applies.
    let mut opts = Options::new(&Backend::Sqlite, dir.path());
    opts.args = vec!["--config".into(), cfg.display().to_string()];
    let s = Server::start(opts).await;
    let body = format!("{{\"name\": \"{}\"}}", "a".repeat(4000));
    let r = s
        .api
        .http
        .post(format!("{}/admin/v1/tenants", s.url))
        .bearer_auth(&s.admin_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    drop(s);

    // TESSERA__* variables override the file.
    let mut opts =
        Options::new(&Backend::Sqlite, dir.path()).env("TESSERA__MAX_BODY_BYTES", "1000000");
    opts.args = vec!["--config".into(), cfg.display().to_string()];
    let s = Server::start(opts).await;
    let body = format!("{{\"name\": \"{}\"}}", "a".repeat(4000));
    let r = s
        .api
        .http
        .post(format!("{}/admin/v1/tenants", s.url))
        .bearer_auth(&s.admin_key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "the name is too long, but the body is within the limit"
    );
    drop(s);

    // Bad configuration fails at start with a message naming the field.
    std::fs::write(&cfg, "lisen = \"x\"\n").unwrap();
    let mut opts = Options::new(&Backend::Sqlite, dir.path());
    opts.args = vec!["--config".into(), cfg.display().to_string()];
    let err = Server::try_start(opts).await.err().expect("unknown key is refused");
    assert!(err.contains("lisen"), "{err}");
    let mut opts = Options::new(&Backend::Sqlite, dir.path());
    opts.args = vec!["--redis-url".into(), "http://nope".into()];
    let err = Server::try_start(opts).await.err().expect("bad redis url is refused");
    assert!(err.contains("redis_url"), "{err}");
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() {
    let (s, _d) = server().await;
    assert_eq!(s.api.call(Method::GET, "/healthz", None, None).await.status, StatusCode::OK);
    let status = s.terminate().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn json_logs_carry_request_ids() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = Options::new(&Backend::Sqlite, dir.path());
    opts.args = vec!["--log-format".into(), "json".into()];
    let s = Server::start(opts).await;
    let r = s
        .api
        .http
        .get(format!("{}/healthz", s.url))
        .header("x-request-id", "log-probe-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let line = s
        .log()
        .lines()
        .find(|l| l.contains("log-probe-42"))
        .map(str::to_owned)
        .expect("request logged");
    let v: Value = serde_json::from_str(&line).expect("log line is json");
    assert_eq!(v["status"], 200);
}

/// Sends raw bytes and returns what the server answers before closing or pausing.
async fn raw_request(url: &str, bytes: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = vec![0u8; 8192];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}
