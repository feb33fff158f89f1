//! Remote model backends: calls to OpenAI-compatible providers (G8): one HTTP client per
//! connect timeout, the version's config read once from its artifact, the
//! credential resolved at call time from its reference, three timeouts
//! (connect, first byte, total), retries with exponential backoff and jitter
//! under a shared retry budget, and every outcome fed to the backend's breaker.
//!
//! What is retried: a refused or failed connection, a timeout before the
//! first byte, 429 (when its `retry-after` is short), 500, 502, 503 and 504;
//! never anything after a byte of the answer has reached the client.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde_json::Value;
use tessera_core::breaker::Breakers;
use tessera_core::metrics::counters;
use tessera_core::model::{RemoteConfig, SecretRef};

/// Why a call to a remote model failed, as its caller sees it.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The backend's circuit breaker is open.
    #[error("backend {backend} is failing; its circuit breaker is open")]
    BreakerOpen { backend: String, retry_after_secs: u64 },
    /// 5xx, no connection, a malformed answer, a cut stream, no credential.
    #[error("model {backend}: its upstream {reason}")]
    Failed { backend: String, reason: String },
    /// No answer in time; `phase` is `first byte` or `total`.
    #[error("model {backend}: its upstream did not answer in time ({phase} timeout)")]
    Timeout { backend: String, phase: &'static str },
    /// The provider is rate-limiting the gateway.
    #[error("model {backend}: its upstream is rate-limiting requests")]
    RateLimited { backend: String, retry_after_secs: u64 },
    /// The provider rejected the request as invalid (its 4xx and message).
    #[error("the upstream rejected the request: {message}")]
    Rejected { status: u16, message: String },
    /// A version's stored config does not parse.
    #[error("{0}")]
    BadConfig(String),
}

/// The largest answer read from an upstream (a plain, non-streamed one).
const MAX_ANSWER_BYTES: usize = 64 << 20;
const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(2);

/// One remote model version, ready to call.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The breaker's name: `<model>@<version> (<model id>)`.
    pub backend: String,
    pub config: Arc<RemoteConfig>,
}

/// Why a call to an upstream failed.
#[derive(Debug)]
pub enum Failure {
    /// No connection (refused, DNS, TLS, connect timeout): nothing was sent.
    Connect(String),
    /// No answer in time; `phase` is `first byte` or `total`.
    Timeout(&'static str),
    /// A non-2xx answer.
    Status { status: u16, retry_after: Option<Duration>, message: String },
    /// A 2xx answer that is not the JSON it should be.
    Malformed(String),
    /// The connection broke while the answer was being read.
    Cut(String),
    /// The credential reference cannot be resolved here.
    Credential(String),
}

impl Failure {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Connect(_) => "connect",
            Failure::Timeout(_) => "timeout",
            Failure::Status { status: 429, .. } => "rate_limited",
            Failure::Status { status, .. } if *status >= 500 => "status_5xx",
            Failure::Status { status: 401 | 403, .. } => "auth",
            Failure::Status { .. } => "rejected",
            Failure::Malformed(_) => "malformed",
            Failure::Cut(_) => "stream_cut",
            Failure::Credential(_) => "credential",
        }
    }

    /// Whether the backend is to blame (the breaker counts it). A request the
    /// upstream rejects as bad is the client's problem, not the backend's.
    pub fn counts_against_backend(&self) -> bool {
        !matches!(self, Failure::Status { status, .. } if *status < 500 && !matches!(status, 401 | 403 | 408 | 429))
    }

    fn retryable(&self) -> bool {
        match self {
            Failure::Connect(_) | Failure::Timeout("first byte") => true,
            Failure::Status { status, retry_after, .. } => match status {
                429 | 503 => retry_after.is_none_or(|r| r <= BACKOFF_CAP),
                500 | 502 | 504 => true,
                _ => false,
            },
            _ => false,
        }
    }

    /// The answer for the client, naming the model version that failed.
    pub fn into_error(self, backend: &str) -> ProviderError {
        let reason = match self {
            Failure::Connect(_) => "could not be reached".to_owned(),
            Failure::Timeout(phase) => {
                return ProviderError::Timeout { backend: backend.to_owned(), phase };
            }
            Failure::Status { status: 429, retry_after, .. } => {
                return ProviderError::RateLimited {
                    backend: backend.to_owned(),
                    retry_after_secs: retry_after.map_or(1, |d| d.as_secs().max(1)),
                };
            }
            Failure::Status { status: s @ (401 | 403), .. } => {
                format!("refused the gateway's credential ({s})")
            }
            Failure::Status { status, message, .. } if status < 500 => {
                return ProviderError::Rejected { status, message };
            }
            Failure::Status { status, .. } => format!("answered {status}"),
            Failure::Malformed(_) => "sent an answer that is not valid JSON".to_owned(),
            Failure::Cut(_) => "closed the connection mid-answer".to_owned(),
            Failure::Credential(m) => m,
        };
        ProviderError::Failed { backend: backend.to_owned(), reason }
    }
}

/// A shared allowance of retries: each request deposits `ratio` of a retry,
/// each retry withdraws one, and a small floor per second always remains, so
/// a failing upstream sees at most about `1 + ratio` times its normal load.
pub struct RetryBudget {
    inner: Mutex<(f64, Instant)>,
    ratio: f64,
    floor_per_sec: f64,
    cap: f64,
}

impl RetryBudget {
    pub fn new(ratio: f64, floor_per_sec: f64) -> Self {
        let cap = (floor_per_sec * 10.0).max(10.0);
        Self { inner: Mutex::new((floor_per_sec, Instant::now())), ratio, floor_per_sec, cap }
    }

    pub fn deposit(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.0 = (g.0 + self.ratio).min(self.cap);
        }
    }

    pub fn try_withdraw(&self) -> bool {
        self.try_withdraw_at(Instant::now())
    }

    fn try_withdraw_at(&self, now: Instant) -> bool {
        let Ok(mut g) = self.inner.lock() else { return false };
        let elapsed = now.saturating_duration_since(g.1).as_secs_f64();
        g.1 = now;
        g.0 = (g.0 + elapsed * self.floor_per_sec).min(self.cap);
        // A whisker below one still pays: 0.2 five times is not exactly 1.0.
        if g.0 >= 1.0 - 1e-9 {
            g.0 = (g.0 - 1.0).max(0.0);
            true
        } else {
            false
        }
    }
}

/// The label of `tessera_upstream_failures_total` (a [`Failure`] kind, or
/// the edge's for streams).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    kind: &'static str,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(non_camel_case_types, reason = "the variants are the exported label values")]
enum RetryOutcome {
    made,
    refused_by_budget,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RetryLabels {
    outcome: RetryOutcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(non_camel_case_types, reason = "the variants are the exported label values")]
enum TokenKind {
    prompt,
    completion,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TokenLabels {
    kind: TokenKind,
}

/// Counters for `/metrics` ([`UpstreamStats::register`]).
pub struct UpstreamStats {
    calls: Counter,
    failures: Family<FailureLabels, Counter>,
    retry_outcomes: Family<RetryLabels, Counter>,
    retries: Counter,
    retries_refused: Counter,
    token_kinds: Family<TokenLabels, Counter>,
    prompt_tokens: Counter,
    completion_tokens: Counter,
}

impl Default for UpstreamStats {
    fn default() -> Self {
        let retry_outcomes = Family::default();
        let [retries, retries_refused] = counters(
            &retry_outcomes,
            [RetryOutcome::made, RetryOutcome::refused_by_budget]
                .map(|outcome| RetryLabels { outcome }),
        );
        let token_kinds = Family::default();
        let [prompt_tokens, completion_tokens] = counters(
            &token_kinds,
            [TokenKind::prompt, TokenKind::completion].map(|kind| TokenLabels { kind }),
        );
        Self {
            calls: Counter::default(),
            failures: Family::default(),
            retry_outcomes,
            retries,
            retries_refused,
            token_kinds,
            prompt_tokens,
            completion_tokens,
        }
    }
}

impl UpstreamStats {
    pub fn failure(&self, kind: &'static str) {
        self.failures.get_or_create(&FailureLabels { kind }).inc();
    }

    pub fn tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.inc_by(prompt);
        self.completion_tokens.inc_by(completion);
    }

    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "tessera_upstream_calls",
            "Calls to remote providers, retries included",
            self.calls.clone(),
        );
        registry.register(
            "tessera_upstream_failures",
            "Failed calls to remote providers by kind",
            self.failures.clone(),
        );
        registry.register(
            "tessera_upstream_retries",
            "Retries to remote providers: made, or refused by the retry budget",
            self.retry_outcomes.clone(),
        );
        registry.register(
            "tessera_upstream_tokens",
            "Tokens reported by remote providers",
            self.token_kinds.clone(),
        );
    }
}

pub struct Upstreams {
    clients: Mutex<HashMap<u64, reqwest::Client>>,
    configs: Mutex<HashMap<String, Arc<RemoteConfig>>>,
    budget: RetryBudget,
    pub stats: UpstreamStats,
    jitter: AtomicU64,
}

impl Default for Upstreams {
    fn default() -> Self {
        Self {
            clients: Mutex::default(),
            configs: Mutex::default(),
            budget: RetryBudget::new(0.2, 5.0),
            stats: UpstreamStats::default(),
            jitter: AtomicU64::new(0x9e37_79b9_7f4a_7c15),
        }
    }
}

impl Upstreams {
    /// A version's config, parsed once per artifact: `read` fetches the
    /// artifact's bytes the first time.
    pub async fn config<E, F, Fut>(&self, sha256: &str, read: F) -> Result<Arc<RemoteConfig>, E>
    where
        E: From<ProviderError>,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        if let Some(c) = self.configs.lock().ok().and_then(|m| m.get(sha256).cloned()) {
            return Ok(c);
        }
        let bytes = read().await?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ProviderError::BadConfig(format!("remote config {sha256} is not JSON: {e}"))
        })?;
        let c = Arc::new(RemoteConfig::from_json(&v).map_err(|e| {
            ProviderError::BadConfig(format!("remote config {sha256} is invalid: {}", e.message))
        })?);
        if let Ok(mut m) = self.configs.lock() {
            m.insert(sha256.to_owned(), c.clone());
        }
        Ok(c)
    }

    fn client(&self, connect_timeout_ms: u64) -> Result<reqwest::Client, Failure> {
        let Ok(mut m) = self.clients.lock() else {
            return Err(Failure::Connect("client table poisoned".into()));
        };
        if let Some(c) = m.get(&connect_timeout_ms) {
            return Ok(c.clone());
        }
        let c = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(connect_timeout_ms))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Failure::Connect(format!("cannot build an HTTP client: {e}")))?;
        m.insert(connect_timeout_ms, c.clone());
        Ok(c)
    }

    /// The credential behind a reference, read at call time so a rotated
    /// secret takes effect without a restart.
    async fn secret(config: &RemoteConfig) -> Result<Option<String>, Failure> {
        match config.secret() {
            None => Ok(None),
            Some(SecretRef::Env(name)) => std::env::var(&name).map(Some).map_err(|_| {
                Failure::Credential(format!(
                    "has no credential: environment variable {name} is not set"
                ))
            }),
            Some(SecretRef::File(path)) => match tokio::fs::read_to_string(&path).await {
                Ok(s) => Ok(Some(s.trim().to_owned())),
                Err(e) => {
                    Err(Failure::Credential(format!("has no credential: cannot read {path}: {e}")))
                }
            },
        }
    }

    /// Sends one request and waits for the answer's status line.
    async fn send_once(
        &self,
        remote: &Remote,
        path: &str,
        body: &Value,
        deadline: Instant,
    ) -> Result<reqwest::Response, Failure> {
        let cfg = &remote.config;
        let client = self.client(cfg.connect_timeout_ms)?;
        let url = format!("{}{path}", cfg.base_url.trim_end_matches('/'));
        let mut rb = client.post(url).json(body);
        if let Some(key) = Self::secret(cfg).await? {
            rb = rb.bearer_auth(key);
        }
        self.stats.calls.inc();
        let first_byte = Duration::from_millis(cfg.first_byte_timeout_ms)
            .min(deadline.saturating_duration_since(Instant::now()));
        let resp = match tokio::time::timeout(first_byte, rb.send()).await {
            Err(_) => return Err(Failure::Timeout("first byte")),
            Ok(Err(e)) if e.is_timeout() => return Err(Failure::Timeout("first byte")),
            Ok(Err(e)) if e.is_connect() => return Err(Failure::Connect(e.to_string())),
            // Sent, but the connection closed before an answer: not retried,
            // since the upstream may have done the work.
            Ok(Err(e)) => return Err(Failure::Cut(e.to_string())),
            Ok(Ok(r)) => r,
        };
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // The upstream's own message, for a request it rejected as bad.
        let left = deadline.saturating_duration_since(Instant::now()).min(Duration::from_secs(5));
        let text = match tokio::time::timeout(left, read_capped(resp, 64 << 10)).await {
            Ok(Ok(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        };
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| format!("the upstream answered {status}"));
        Err(Failure::Status { status, retry_after, message: truncate(message, 500) })
    }

    /// One backoff step: exponential from 100 ms, capped at 2 s, with full
    /// jitter over its upper half; a short `retry-after` is honoured.
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = BACKOFF_BASE.saturating_mul(1 << attempt.min(10)).min(BACKOFF_CAP);
        let r = splitmix(&self.jitter);
        let jittered = exp / 2 + Duration::from_nanos(r % (exp.as_nanos() as u64 / 2 + 1));
        retry_after.map_or(jittered, |ra| ra.max(jittered))
    }

    /// Opens a call under the backend's breaker with retries; returns the 2xx
    /// answer with its body unread. The breaker records the outcome of each attempt.
    pub async fn open(
        &self,
        breakers: &Breakers,
        remote: &Remote,
        path: &str,
        body: &Value,
    ) -> Result<(reqwest::Response, Instant), ProviderError> {
        let deadline = Instant::now() + Duration::from_millis(remote.config.total_timeout_ms);
        let breaker = breakers.get(&remote.backend);
        self.budget.deposit();
        let mut attempt = 0;
        loop {
            breaker.admit(Instant::now()).map_err(|r| ProviderError::BreakerOpen {
                backend: remote.backend.clone(),
                retry_after_secs: r.retry_after.as_secs().max(1),
            })?;
            let failure = match self.send_once(remote, path, body, deadline).await {
                Ok(resp) => {
                    // Success is recorded when the body has been read.
                    return Ok((resp, deadline));
                }
                Err(f) => f,
            };
            self.stats.failure(failure.kind());
            breaker.record(Instant::now(), !failure.counts_against_backend());
            tracing::warn!(backend = %remote.backend, kind = failure.kind(), attempt, detail = ?failure, "upstream call failed");
            if failure.retryable() && attempt < remote.config.max_retries {
                let retry_after = match &failure {
                    Failure::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let pause = self.backoff(attempt, retry_after);
                if Instant::now() + pause < deadline {
                    if self.budget.try_withdraw() {
                        self.stats.retries.inc();
                        tokio::time::sleep(pause).await;
                        attempt += 1;
                        continue;
                    }
                    self.stats.retries_refused.inc();
                }
            }
            return Err(failure.into_error(&remote.backend));
        }
    }

    /// A whole JSON answer: `open`, then the body within the total timeout.
    pub async fn call_json(
        &self,
        breakers: &Breakers,
        remote: &Remote,
        path: &str,
        body: &Value,
    ) -> Result<Value, ProviderError> {
        let (resp, deadline) = self.open(breakers, remote, path, body).await?;
        let breaker = breakers.get(&remote.backend);
        let read = tokio::time::timeout(
            deadline.saturating_duration_since(Instant::now()),
            read_capped(resp, MAX_ANSWER_BYTES),
        )
        .await;
        let outcome = match read {
            Err(_) => Err(Failure::Timeout("total")),
            Ok(Err(f)) => Err(f),
            Ok(Ok(bytes)) => serde_json::from_slice::<Value>(&bytes)
                .map_err(|e| Failure::Malformed(e.to_string()))
                .and_then(|v| {
                    if v.is_object() {
                        Ok(v)
                    } else {
                        Err(Failure::Malformed("not a JSON object".into()))
                    }
                }),
        };
        breaker.record(Instant::now(), outcome.is_ok());
        outcome.map_err(|f| {
            self.stats.failure(f.kind());
            tracing::warn!(backend = %remote.backend, kind = f.kind(), detail = ?f, "upstream answer unusable");
            f.into_error(&remote.backend)
        })
    }
}

/// Reads a body up to `cap` bytes; a broken connection is a cut.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > cap {
                    return Err(Failure::Malformed(format!("answer larger than {cap} bytes")));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) if e.is_timeout() => return Err(Failure::Timeout("total")),
            Err(e) => return Err(Failure::Cut(e.to_string())),
        }
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

/// SplitMix64 over a shared counter: cheap jitter, no syscalls.
fn splitmix(state: &AtomicU64) -> u64 {
    let mut z = state
        .fetch_add(0x9e37_79b9_7f4a_7c15, Ordering::Relaxed)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_allows_a_share_of_retries_and_a_floor() {
        let b = RetryBudget::new(0.2, 0.0);
        // Nothing deposited, no floor: no retries.
        assert!(!b.try_withdraw());
        for _ in 0..10 {
            b.deposit();
        }
        // Ten requests pay for two retries.
        assert!(b.try_withdraw());
        assert!(b.try_withdraw());
        assert!(!b.try_withdraw());
        // The floor refills with time.
        // It starts with one second's floor.
        let f = RetryBudget::new(0.0, 2.0);
        let t = Instant::now();
        assert!(f.try_withdraw_at(t));
        assert!(f.try_withdraw_at(t));
        assert!(!f.try_withdraw_at(t));
        assert!(f.try_withdraw_at(t + Duration::from_millis(600)));
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let u = Upstreams::default();
        for attempt in 0..8 {
            let exp = BACKOFF_BASE.saturating_mul(1 << attempt).min(BACKOFF_CAP);
            let d = u.backoff(attempt, None);
            assert!(d >= exp / 2 && d <= exp, "attempt {attempt}: {d:?}");
        }
        let a: Vec<Duration> = (0..5).map(|_| u.backoff(3, None)).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]), "jitter varies: {a:?}");
        assert!(u.backoff(0, Some(Duration::from_secs(1))) >= Duration::from_secs(1));
    }

    #[test]
    fn only_safe_failures_are_retried_and_client_errors_do_not_count() {
        let st = |status: u16, ra: Option<u64>| Failure::Status {
            status,
            retry_after: ra.map(Duration::from_secs),
            message: String::new(),
        };
        assert!(Failure::Connect("refused".into()).retryable());
        assert!(Failure::Timeout("first byte").retryable());
        assert!(!Failure::Timeout("total").retryable());
        assert!(st(503, None).retryable() && st(429, Some(1)).retryable());
        assert!(!st(429, Some(30)).retryable(), "a long retry-after goes to the fallback instead");
        assert!(!st(400, None).retryable() && !st(501, None).retryable());
        assert!(!Failure::Malformed(String::new()).retryable());
        assert!(!Failure::Cut(String::new()).retryable());
        assert!(!st(400, None).counts_against_backend());
        assert!(!st(422, None).counts_against_backend());
        assert!(st(401, None).counts_against_backend() && st(429, None).counts_against_backend());
        assert!(st(500, None).counts_against_backend());
    }

    #[test]
    fn upstream_counters_are_exported_by_kind_and_outcome() {
        let stats = UpstreamStats::default();
        let mut r = Registry::default();
        stats.register(&mut r);
        stats.calls.inc();
        stats.failure("timeout");
        stats.failure("timeout");
        stats.retries.inc();
        stats.tokens(3, 4);
        let text = tessera_core::metrics::encode(&r).unwrap();
        for line in [
            "# TYPE tessera_upstream_calls counter\ntessera_upstream_calls_total 1\n",
            "tessera_upstream_failures_total{kind=\"timeout\"} 2\n",
            "tessera_upstream_retries_total{outcome=\"made\"} 1\n",
            "tessera_upstream_retries_total{outcome=\"refused_by_budget\"} 0\n",
            "tessera_upstream_tokens_total{kind=\"prompt\"} 3\n",
            "tessera_upstream_tokens_total{kind=\"completion\"} 4\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
