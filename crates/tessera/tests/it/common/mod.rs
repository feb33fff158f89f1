//! Shared harness for the integration tests: start the real `tessera` binary
//! on port 0 against SQLite or a fresh PostgreSQL schema, and call it.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods
)]

pub mod data;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_tessera");

/// Where a test server keeps its metadata.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// A URL pinned to a fresh schema.
    Postgres(String),
}

impl Backend {
    /// A PostgreSQL backend on a new schema, or `None` (skip) without
    /// `TESSERA_TEST_POSTGRES_URL`; fails instead with `TESSERA_REQUIRE_SERVICES=1`.
    pub async fn postgres() -> Option<Backend> {
        let url = tessera_store::conformance::service_url("TESSERA_TEST_POSTGRES_URL")?;
        Some(Backend::Postgres(fresh_pg_schema(&url).await))
    }

    pub fn database_url(&self, data_dir: &Path) -> String {
        match self {
            Backend::Sqlite => format!("sqlite:{}", data_dir.join("tessera.db").display()),
            Backend::Postgres(u) => u.clone(),
        }
    }
}

/// A URL whose connections use a fresh schema.
pub async fn fresh_pg_schema(url: &str) -> String {
    let schema = tessera_store::conformance::fresh_pg_schema(url).await;
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// A running `tessera serve`, killed on drop.
pub struct Server {
    child: Child,
    pub url: String,
    pub admin_key: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub api: Api,
}

pub struct Options {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub env: Vec<(String, String)>,
    pub args: Vec<String>,
}

impl Options {
    pub fn new(backend: &Backend, data_dir: &Path) -> Options {
        Options {
            data_dir: data_dir.to_owned(),
            database_url: backend.database_url(data_dir),
            env: Vec::new(),
            args: Vec::new(),
        }
    }

    pub fn env(mut self, k: &str, v: &str) -> Options {
        self.env.push((k.into(), v.into()));
        self
    }
}

impl Server {
    pub async fn start(opts: Options) -> Server {
        Self::try_start(opts).await.expect("server starts")
    }

    pub async fn try_start(opts: Options) -> Result<Server, String> {
        std::fs::create_dir_all(&opts.data_dir).unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(opts.data_dir.join("server.log"))
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&opts.data_dir)
            .arg("--database-url")
            .arg(&opts.database_url)
            .args(&opts.args)
            .env_remove("TESSERA_ADMIN_KEY")
            .env_remove("TESSERA_DATABASE_URL")
            .env("TESSERA_LOG", "info,sqlx=warn")
            .env("TESSERA__ENGINE__LOAD_DEFAULT_MODEL", "false")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut printed_key = None;
        let url = tokio::time::timeout(Duration::from_secs(30), async {
            let mut next_is_key = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if next_is_key {
                    printed_key = Some(line.trim().to_owned());
                    next_is_key = false;
                } else if line.starts_with("created the platform admin key") {
                    next_is_key = true;
                } else if let Some(u) = line.strip_prefix("listening on ") {
                    return Some(u.trim().to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(url) = url else {
            let _ = child.kill().await;
            let log = std::fs::read_to_string(opts.data_dir.join("server.log")).unwrap_or_default();
            return Err(format!("server did not start; log:\n{log}"));
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let admin_key = opts
            .env
            .iter()
            .find(|(k, _)| k == "TESSERA_ADMIN_KEY")
            .map(|(_, v)| v.clone())
            .or(printed_key)
            .or_else(|| {
                std::fs::read_to_string(opts.data_dir.join("admin.key"))
                    .ok()
                    .map(|s| s.trim().to_owned())
            })
            .unwrap_or_default();
        Ok(Server {
            child,
            api: Api::new(&url),
            url,
            admin_key,
            data_dir: opts.data_dir,
            database_url: opts.database_url,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    /// kill -9.
    pub async fn kill9(mut self) {
        self.child.kill().await.unwrap();
        let _ = self.child.wait().await;
    }

    /// SIGTERM, then waits for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.pid().to_string();
        std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("exits after SIGTERM")
            .unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.api.call(method, path, Some(&self.admin_key), body).await
    }

    /// Creates a tenant on a plan without limits (so tests that are not
    /// about limits never meet one) and a key with `role` in it; returns
    /// (tenant id, key, key id).
    pub async fn tenant_with_key(&self, name: &str, role: &str) -> (String, String, String) {
        let p = self
            .admin(Method::POST, "/admin/v1/plans", Some(serde_json::json!({"name": "unlimited"})))
            .await;
        assert!(matches!(p.status.as_u16(), 201 | 409), "{p:?}");
        self.tenant_on_plan(name, "unlimited", role).await
    }

    /// Creates a tenant on `plan` and a key with `role` in it.
    pub async fn tenant_on_plan(
        &self,
        name: &str,
        plan: &str,
        role: &str,
    ) -> (String, String, String) {
        let t = self
            .admin(
                Method::POST,
                "/admin/v1/tenants",
                Some(serde_json::json!({"name": name, "plan": plan})),
            )
            .await;
        assert_eq!(t.status, StatusCode::CREATED, "{t:?}");
        let id = t.body["id"].as_str().unwrap().to_owned();
        let (key, key_id) = self.key_for(&id, role).await;
        (id, key, key_id)
    }

    pub async fn key_for(&self, tenant: &str, role: &str) -> (String, String) {
        let k = self
            .admin(
                Method::POST,
                &format!("/admin/v1/tenants/{tenant}/keys"),
                Some(serde_json::json!({"name": format!("{role}-key"), "role": role})),
            )
            .await;
        assert_eq!(k.status, StatusCode::CREATED, "{k:?}");
        (k.body["key"].as_str().unwrap().to_owned(), k.body["id"].as_str().unwrap().to_owned())
    }
}

#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Resp {
    /// The stable error code of an error answer.
    pub fn code(&self) -> &str {
        self.body.pointer("/error/code").and_then(Value::as_str).unwrap_or("")
    }
}

/// An open event tail (server-sent events).
pub struct Tail {
    resp: reqwest::Response,
    buf: String,
}

impl Tail {
    /// The next event (its offset and data), or `None` if none comes within `wait`.
    pub async fn next_event(&mut self, wait: Duration) -> Option<(u64, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let mut id = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str(v).ok();
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Some((id, data));
                }
            }
            match tokio::time::timeout_at(deadline, self.resp.chunk()).await {
                Ok(Ok(Some(c))) => self.buf.push_str(&String::from_utf8_lossy(&c)),
                _ => return None,
            }
        }
    }
}

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
}

impl Api {
    pub fn new(url: &str) -> Api {
        Api { http: reqwest::Client::new(), url: url.to_owned() }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Resp { status, body, headers }
    }

    pub async fn get(&self, path: &str, key: &str) -> Resp {
        self.call(Method::GET, path, Some(key), None).await
    }

    /// `POST /v1/events` with `events` (a JSON array).
    pub async fn send_events(&self, key: &str, events: Value) -> Resp {
        self.call(
            Method::POST,
            "/v1/events",
            Some(key),
            Some(serde_json::json!({"events": events})),
        )
        .await
    }

    /// Opens `GET /v1/events/stream?{query}`, resuming after `last` when given.
    pub async fn tail(&self, key: &str, query: &str, last: Option<u64>) -> Tail {
        let mut req =
            self.http.get(format!("{}/v1/events/stream?{query}", self.url)).bearer_auth(key);
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        let resp = req.send().await.expect("request reaches the server");
        assert_eq!(resp.status(), StatusCode::OK, "{query}");
        Tail { resp, buf: String::new() }
    }

    /// POSTs raw bytes (a model artifact) to `path`.
    pub async fn upload(&self, path: &str, key: &str, bytes: Vec<u8>) -> Resp {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(key)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("request reaches the server");
        let status = r.status();
        let headers = r.headers().clone();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        Resp { status, body, headers }
    }

    /// Registers a remote (`openai-compatible`) model in the caller's tenant.
    pub async fn remote_model(&self, key: &str, name: &str, task: &str, config: Value) -> Resp {
        let body = serde_json::json!({"name": name, "task": task, "runtime": "openai-compatible", "config": config});
        self.call(Method::POST, "/v1/models", Some(key), Some(body)).await
    }

    /// `POST /v1/embeddings`.
    pub async fn embed(&self, key: &str, body: Value) -> Resp {
        self.call(Method::POST, "/v1/embeddings", Some(key), Some(body)).await
    }

    /// `POST /v1/chat/completions`.
    pub async fn chat(&self, key: &str, body: Value) -> Resp {
        self.call(Method::POST, "/v1/chat/completions", Some(key), Some(body)).await
    }

    /// The server's `/metrics` text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(format!("{}/metrics", self.url)).send().await;
        r.expect("request reaches the server").text().await.unwrap_or_default()
    }
}

/// Runs an async test body against SQLite and (when configured) PostgreSQL.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if let Some(b) = $crate::common::Backend::postgres().await {
                        super::$name(b).await;
                    }
                }
            }
        )*
    };
}

/// The `/metrics` text is OpenMetrics, line by line: each family declared
/// once (`# HELP`, `# TYPE`) before its samples, which stay together; every
/// other line is `name{label="value",...} value` with a name of the family
/// (plus the suffixes its type allows) and a number; it ends with `# EOF`.
pub fn assert_families_are_grouped(text: &str) {
    let body = text.strip_suffix("# EOF\n").unwrap_or_else(|| panic!("no final # EOF:\n{text}"));
    let mut declared = std::collections::HashSet::new();
    let mut family: Option<(String, String)> = None;
    for line in body.lines() {
        let fail = |why: &str| -> ! { panic!("{why}: {line:?} in\n{text}") };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !valid_metric_name(name) || !declared.insert(name.to_owned()) {
                fail("a family declared twice or badly named");
            }
            family = None;
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) =
                rest.split_once(' ').unwrap_or_else(|| fail("a TYPE without a type"));
            if !["counter", "gauge", "histogram", "info", "stateset", "unknown"].contains(&kind) {
                fail("an unknown type");
            }
            if !declared.contains(name) {
                fail("a TYPE without its HELP");
            }
            family = Some((name.to_owned(), kind.to_owned()));
        } else if line.starts_with('#') {
            fail("an unexpected comment");
        } else {
            let Some((name, kind)) = &family else { fail("a sample outside a family") };
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total", "_created"],
                "histogram" => &["_bucket", "_sum", "_count", "_created"],
                "info" => &["_info"],
                _ => &[""],
            };
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| fail("no value"));
            let (sample, labels) = match series.split_once('{') {
                Some((n, l)) => {
                    (n, Some(l.strip_suffix('}').unwrap_or_else(|| fail("open labels"))))
                }
                None => (series, None),
            };
            if !suffixes.iter().any(|s| sample.strip_suffix(s) == Some(name.as_str())) {
                fail("a sample of another family");
            }
            if let Some(labels) = labels
                && !valid_labels(labels)
            {
                fail("malformed labels");
            }
            if value.parse::<f64>().is_err() {
                fail("a value that is not a number");
            }
        }
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// `k="v",...` with `\\`, `\"` and `\n` the only escapes.
fn valid_labels(mut s: &str) -> bool {
    loop {
        let Some((key, rest)) = s.split_once("=\"") else { return false };
        if !valid_metric_name(key) || key.contains(':') {
            return false;
        }
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => {
                    if !matches!(chars.next(), Some((_, '\\' | '"' | 'n'))) {
                        return false;
                    }
                }
                Some((i, '"')) => break i,
                Some((_, '\n')) | None => return false,
                Some(_) => {}
            }
        };
        match rest[end + 1..].strip_prefix(',') {
            Some(next) => s = next,
            None => return rest[end + 1..].is_empty(),
        }
    }
}

/// A small valid ONNX model (`y = Identity(x)`, FP32 `[N, 1]`); `tag`
/// names the graph, so different tags give different artifacts.
pub fn tiny_onnx(tag: &str) -> Vec<u8> {
    onnx_with_op("Identity", tag)
}

/// An ONNX model that decodes but that ONNX Runtime cannot load (an unknown
/// operator): it fails at load time, as a model broken at runtime does.
pub fn unloadable_onnx() -> Vec<u8> {
    onnx_with_op("NoSuchOperator", "unloadable")
}

fn onnx_with_op(op: &str, tag: &str) -> Vec<u8> {
    use tessera_engine::onnx::graph::{Dim, GraphBuilder};
    const FLOAT: i32 = 1;
    let mut g = GraphBuilder::default();
    g.input("x", FLOAT, &[Dim::Named("n"), Dim::Fixed(1)]);
    let y = g.op(op, &["x"], Vec::new());
    g.output(&y, FLOAT, &[Dim::Named("n"), Dim::Fixed(1)]);
    g.finish(tag)
}

/// Two replicas of one service: the same PostgreSQL schema and Redis, each
/// with its own data directory; `None` when PostgreSQL or Redis is not
/// configured (a failure instead with `TESSERA_REQUIRE_SERVICES=1`).
pub struct Pair {
    pub a: Server,
    pub b: Server,
    /// Their data directories: keep them alive as long as the servers.
    pub dirs: (tempfile::TempDir, tempfile::TempDir),
    /// Their NATS prefix (their streams are `<PREFIX>_<tenant>`).
    pub nats_prefix: String,
}

impl Pair {
    pub async fn start(admin_key: &str) -> Option<Pair> {
        Self::start_with(admin_key, &[]).await
    }

    /// Two replicas with `extra` flags each (e.g. `--nats-url`).
    pub async fn start_with(admin_key: &str, extra: &[String]) -> Option<Pair> {
        let pg = Backend::postgres().await?;
        let redis = tessera_store::conformance::service_url("TESSERA_TEST_REDIS_URL")?;
        let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // The replicas' own NATS prefix: servers of other tests on the same
        // NATS server would otherwise consume this pair's streams.
        let prefix = nats_prefix();
        let opts = |d: &Path| {
            let mut o = Options::new(&pg, d)
                .env("TESSERA_ADMIN_KEY", admin_key)
                .env("TESSERA__EVENTS__NATS_PREFIX", &prefix);
            o.args = vec!["--redis-url".into(), redis.clone()];
            o.args.extend(extra.iter().cloned());
            // A loaded CI machine must not push admissions onto the fallback path.
            o.env("TESSERA__REDIS_TIMEOUT_MS", "2000")
        };
        let a = Server::start(opts(dirs.0.path())).await;
        let b = Server::start(opts(dirs.1.path())).await;
        Some(Pair { a, b, dirs, nats_prefix: prefix })
    }
}

/// Deletes the stream servers with NATS prefix `prefix` made for `tenant`
/// on the machine's NATS, so runs do not pile them up. Best effort: a
/// stream left over is only disk (and its prefix is never used again).
pub async fn drop_nats_stream(prefix: &str, tenant: &str) {
    let Some(url) = tessera_store::conformance::service_url("TESSERA_TEST_NATS_URL") else {
        return;
    };
    let Ok(client) = async_nats::connect(url).await else { return };
    let stream = format!("{}_{tenant}", prefix.to_uppercase());
    if let Err(e) = async_nats::jetstream::new(client).delete_stream(&stream).await {
        eprintln!("test clean-up: stream {stream} stays: {e}");
    }
}

/// A NATS subject prefix of a test's own (its servers consume only its streams).
pub fn nats_prefix() -> String {
    format!("t{}", tessera_core::ids::random_lower(12))
}
