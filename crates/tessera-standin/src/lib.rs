//! An OpenAI-compatible stand-in for a paid provider: `POST /v1/chat/completions`
//! (plain and `stream: true`), `POST /v1/embeddings`, `GET /v1/models`.
//!
//! What it does is chosen by the requested model name, so each version of a
//! remote model in Tessera can point at a different behaviour through its
//! `upstream_model`. A name is a list of parts joined by `+`:
//!
//! | part | behaviour |
//! |---|---|
//! | `slow-<ms>` | waits before answering |
//! | `fail-<status>` | answers that status with an OpenAI error body |
//! | `flaky-<n>` | the first `n` calls with this name answer 503, later ones succeed |
//! | `ratelimit` | 429 with `retry-after: 1` |
//! | `malformed` | 200 with a body that is not JSON |
//! | `cut-<k>` | streams `k` chunks, then drops the connection (plain answers are cut mid-body) |
//! | `drip-<ms>` | waits between stream chunks |
//! | `hang` | never answers |
//!
//! Anything else answers normally: a chat reply naming the model, with usage;
//! embeddings are deterministic unit vectors of `dim` (default 8). Every answer
//! also waits the server-wide `delay` (for gateway-overhead benchmarks).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What the stand-in has seen, for tests to check.
#[derive(Default)]
pub struct Stats {
    /// Requests per requested model name.
    hits: Mutex<HashMap<String, u64>>,
    /// Streams whose body is still held by a client.
    open_streams: AtomicI64,
    /// Every request.
    pub requests: AtomicU64,
    /// The last `Authorization` header received.
    last_auth: Mutex<Option<String>>,
    /// While set, every request answers 503 (a provider outage).
    down: std::sync::atomic::AtomicBool,
}

impl Stats {
    pub fn hits(&self, model: &str) -> u64 {
        self.hits.lock().map(|h| h.get(model).copied().unwrap_or(0)).unwrap_or(0)
    }
    pub fn open_streams(&self) -> i64 {
        self.open_streams.load(Ordering::SeqCst)
    }
    /// Starts or ends an outage: every request answers 503 meanwhile.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    pub fn last_auth(&self) -> Option<String> {
        self.last_auth.lock().ok().and_then(|a| a.clone())
    }
    fn hit(&self, model: &str) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let Ok(mut h) = self.hits.lock() else { return 0 };
        let n = h.entry(model.to_owned()).or_default();
        *n += 1;
        *n
    }
}

#[derive(Clone, Debug)]
pub struct Options {
    /// Added to every answer before anything else.
    pub delay: Duration,
    /// Embedding width.
    pub dim: usize,
    /// When set, requests must carry `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self { delay: Duration::ZERO, dim: 8, api_key: None }
    }
}

#[derive(Clone)]
struct App {
    opts: Arc<Options>,
    stats: Arc<Stats>,
}

/// The stand-in's routes over `stats`.
pub fn router(opts: Options, stats: Arc<Stats>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .with_state(App { opts: Arc::new(opts), stats })
}

/// A running stand-in on an ephemeral local port.
pub struct Standin {
    pub url: String,
    pub stats: Arc<Stats>,
    task: tokio::task::JoinHandle<()>,
}

impl Standin {
    /// Starts on 127.0.0.1 with a free port; `url` ends in `/v1`.
    pub async fn start(opts: Options) -> std::io::Result<Standin> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        let stats = Arc::new(Stats::default());
        let app = router(opts, stats.clone());
        #[expect(
            clippy::disallowed_methods,
            reason = "a dev tool; the stand-in's handle aborts the server task"
        )]
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Standin { url, stats, task })
    }
}

impl Drop for Standin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The behaviour parts of a model name.
#[derive(Debug, Default, PartialEq)]
struct Behaviour {
    slow: Option<Duration>,
    fail: Option<u16>,
    flaky: Option<u64>,
    ratelimit: bool,
    malformed: bool,
    cut: Option<usize>,
    drip: Option<Duration>,
    hang: bool,
}

fn behaviour(model: &str) -> Behaviour {
    let mut b = Behaviour::default();
    for part in model.split('+') {
        let (word, n) = match part.rsplit_once('-') {
            Some((w, n)) => (w, n.parse::<u64>().ok()),
            None => (part, None),
        };
        match (word, n) {
            ("slow", Some(ms)) => b.slow = Some(Duration::from_millis(ms)),
            ("fail", Some(code)) => b.fail = u16::try_from(code).ok(),
            ("flaky", Some(k)) => b.flaky = Some(k),
            ("cut", Some(k)) => b.cut = usize::try_from(k).ok(),
            ("drip", Some(ms)) => b.drip = Some(Duration::from_millis(ms)),
            _ if part == "ratelimit" => b.ratelimit = true,
            _ if part == "malformed" => b.malformed = true,
            _ if part == "hang" => b.hang = true,
            _ => {}
        }
    }
    b
}

fn error(status: StatusCode, message: &str) -> Response {
    let body =
        json!({"error": {"message": message, "type": "standin_error", "code": status.as_u16()}});
    (status, axum::Json(body)).into_response()
}

/// The checks every route shares: the key, the body, the delays and the
/// failure modes. `Ok` carries the request and its behaviour.
async fn admit(
    app: &App,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(Value, Behaviour), Response> {
    if !app.opts.delay.is_zero() {
        tokio::time::sleep(app.opts.delay).await;
    }
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Ok(mut last) = app.stats.last_auth.lock() {
        last.clone_from(&auth);
    }
    if let Some(key) = &app.opts.api_key
        && auth.as_deref() != Some(&format!("Bearer {key}"))
    {
        return Err(error(StatusCode::UNAUTHORIZED, "invalid api key"));
    }
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}")))?;
    let Some(model) = req.get("model").and_then(Value::as_str) else {
        return Err(error(StatusCode::BAD_REQUEST, "model is required"));
    };
    let n = app.stats.hit(model);
    if app.stats.down.load(Ordering::SeqCst) {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, "the provider is down"));
    }
    let b = behaviour(model);
    if b.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if let Some(d) = b.slow {
        tokio::time::sleep(d).await;
    }
    if let Some(code) = b.fail {
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(error(status, &format!("told to fail with {code}")));
    }
    if b.flaky.is_some_and(|k| n <= k) {
        return Err(error(StatusCode::SERVICE_UNAVAILABLE, &format!("flaky call {n}")));
    }
    if b.ratelimit {
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate limited");
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Err(r);
    }
    if b.malformed {
        let mut r = (StatusCode::OK, "{\"id\": \"x\", \"choices\": [").into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        return Err(r);
    }
    Ok((req, b))
}

fn words(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(a) => a.iter().map(words).sum(),
        Value::Object(o) => o.values().map(words).sum(),
        _ => 0,
    }
}

async fn chat(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, b) = match admit(&app, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let model = req["model"].as_str().unwrap_or_default().to_owned();
    let reply = format!("Hello from {model}. This is a stand-in reply.");
    let prompt_tokens = words(&req["messages"]);
    let completion_tokens = reply.split_whitespace().count() as u64;
    let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens});
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let with_usage =
            req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        return stream_reply(&app, &model, &reply, with_usage.then_some(usage), &b);
    }
    let answer = json!({
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "created": 0,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}],
        "usage": usage,
    });
    let bytes = answer.to_string().into_bytes();
    match b.cut {
        // Promise the whole body, send half, then drop the connection.
        Some(_) => {
            let half = Bytes::from(bytes[..bytes.len() / 2].to_vec());
            let parts = futures_util::stream::unfold(Some(half), |half| async move {
                match half {
                    Some(h) => Some((Ok(h), None)),
                    None => {
                        // Let the first half reach the client before the cut.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        let e: Result<Bytes, std::io::Error> =
                            Err(std::io::Error::other("cut by the stand-in"));
                        Some((e, None))
                    }
                }
            });
            let mut r = Response::new(Body::from_stream(parts));
            r.headers_mut().insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            r
        }
        None => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
    }
}

/// Holds a stream open in the stats while the client reads it.
struct OpenStream(Arc<Stats>);

impl OpenStream {
    fn new(stats: Arc<Stats>) -> Self {
        stats.open_streams.fetch_add(1, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::SeqCst);
    }
}

fn stream_reply(
    app: &App,
    model: &str,
    reply: &str,
    usage: Option<Value>,
    b: &Behaviour,
) -> Response {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut events: Vec<String> =
        vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string()];
    for w in reply.split_inclusive(' ') {
        events.push(chunk(json!({"content": w}), Value::Null).to_string());
    }
    events.push(chunk(json!({}), Value::from("stop")).to_string());
    if let Some(u) = usage {
        events.push(
            json!({"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0,
            "model": model, "choices": [], "usage": u})
            .to_string(),
        );
    }
    events.push("[DONE]".to_owned());
    let cut = b.cut;
    let drip = b.drip;
    let guard = OpenStream::new(app.stats.clone());
    let stream = futures_util::stream::unfold(
        (0usize, events, guard),
        move |(i, events, guard)| async move {
            if let Some(d) = drip
                && i > 0
            {
                tokio::time::sleep(d).await;
            }
            if cut.is_some_and(|k| i >= k) {
                if i == cut.unwrap_or(0) {
                    // Let what was sent reach the client before the cut.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    let e: Result<Bytes, std::io::Error> =
                        Err(std::io::Error::other("cut by the stand-in"));
                    return Some((e, (i + 1, events, guard)));
                }
                return None;
            }
            let ev = events.get(i)?;
            let item: Result<Bytes, std::io::Error> = Ok(Bytes::from(format!("data: {ev}\n\n")));
            Some((item, (i + 1, events, guard)))
        },
    );
    let mut r = Response::new(Body::from_stream(stream));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// A deterministic unit vector for `text`.
fn vector(text: &str, dim: usize) -> Vec<f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut v = Vec::with_capacity(dim);
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    for _ in 0..dim {
        h ^= h >> 33;
        h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
        v.push(((h >> 40) as f32 / (1u64 << 24) as f32) - 0.5);
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

async fn embeddings(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let (req, _) = match admit(&app, &headers, &body).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let texts: Vec<String> = match &req["input"] {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        _ => return error(StatusCode::BAD_REQUEST, "input must be a string or a list of strings"),
    };
    let data: Vec<Value> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| json!({"object": "embedding", "index": i, "embedding": vector(t, app.opts.dim)}))
        .collect();
    let tokens: u64 = texts.iter().map(|t| t.split_whitespace().count() as u64).sum();
    axum::Json(json!({"object": "list", "data": data, "model": req["model"],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}))
    .into_response()
}

async fn models() -> Result<axum::Json<Value>, Infallible> {
    Ok(axum::Json(
        json!({"object": "list", "data": [{"id": "standin", "object": "model", "owned_by": "tessera"}]}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_choose_behaviours() {
        assert_eq!(behaviour("gpt"), Behaviour::default());
        let b = behaviour("x+slow-250+cut-3+drip-10");
        assert_eq!(b.slow, Some(Duration::from_millis(250)));
        assert_eq!(b.cut, Some(3));
        assert_eq!(b.drip, Some(Duration::from_millis(10)));
        assert_eq!(behaviour("fail-503").fail, Some(503));
        assert!(behaviour("ratelimit").ratelimit && behaviour("hang").hang);
        assert_eq!(behaviour("flaky-2").flaky, Some(2));
    }

    #[test]
    fn vectors_are_unit_and_deterministic() {
        let a = vector("hello", 8);
        assert_eq!(a, vector("hello", 8));
        assert_ne!(a, vector("world", 8));
        assert!((a.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
