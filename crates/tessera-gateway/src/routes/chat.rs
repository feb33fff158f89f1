//! `POST /v1/chat/completions`, OpenAI-compatible, on remote models: the
//! request passes through with the upstream's model name; `stream: true`
//! answers server-sent events relayed as they arrive. Usage is read from the
//! answer (for streams the gateway asks the upstream for the final usage
//! chunk, and passes it on only if the client asked for it too).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::admission::{admit, estimate_tokens};
use super::embeddings::timing_headers;
use super::oip::user_of;
use super::remote::{
    Answered, Ask, Backend, CacheSlot, Call, Source, Target, cached_headers, mirror_json,
    output_of, primary, run_with_fallbacks,
};
use crate::auth::Authed;
use crate::breaker::Breaker;
use crate::cache::Policy;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::limits::Admitted;
use crate::metering::{Draft, Tokens};
use crate::state::AppState;
use crate::upstream::UpstreamStats;

const PATH: &str = "/chat/completions";
/// Completion tokens reserved when the request sets no `max_tokens`.
const DEFAULT_COMPLETION_RESERVE: u64 = 256;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    pub model: String,
    #[schema(value_type = Vec<Object>)]
    pub messages: Vec<Value>,
    #[serde(default)]
    pub stream: Option<bool>,
    /// End-user id: keeps one user on one variant of a traffic split.
    #[serde(default)]
    pub user: Option<String>,
    /// Every other OpenAI field passes through unchanged.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub rest: Map<String, Value>,
}

fn require_chat(t: &Target) -> Result<(), ApiError> {
    if t.model.task != "chat" || !matches!(t.backend, Backend::Remote(_)) {
        return Err(ApiError::invalid(
            "model",
            format!(
                "model {:?} is a {} model on runtime {}; this route serves chat models",
                t.model.name, t.model.task, t.model.runtime
            ),
        ));
    }
    Ok(())
}

/// The body sent upstream for `t`.
fn upstream_body(base: &Value, t: &Target) -> Value {
    let mut b = base.clone();
    b["model"] = Value::from(t.upstream_model());
    b
}

fn record_usage(s: &AppState, auth: &Authed, version: &str, usage: &Value) -> (u64, u64) {
    let prompt = usage.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let completion = usage.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0);
    s.upstreams().stats.tokens(prompt, completion);
    tracing::info!(target: "tessera::usage", tenant = ?auth.principal.tenant_id().map(|t| t.as_str().to_owned()),
        model = %version, prompt_tokens = prompt, completion_tokens = completion, "usage");
    (prompt, completion)
}

/// Create a chat completion (OpenAI-compatible), streamed as server-sent
/// events with `"stream": true`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "inference", request_body = ChatRequest,
    responses((status = 200, description = "a chat.completion, or text/event-stream of chat.completion.chunk"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody),
        (status = 502, body = ErrorBody), (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let start = Instant::now();
    let mut draft = super::admission::draft(&s, &auth, "/v1/chat/completions", &req.model).await;
    let r = create_inner(s, auth, headers, req, start, &mut draft).await;
    // A stream took its draft along; it records when the stream ends.
    super::admission::finish(draft, &r, start);
    r
}

async fn create_inner(
    s: AppState,
    auth: Authed,
    headers: HeaderMap,
    req: ChatRequest,
    start: Instant,
    draft: &mut Option<Draft>,
) -> Result<Response, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let stream = req.stream.unwrap_or(false);
    let user = req.user.clone().unwrap_or_else(|| user_of(&headers, &auth));
    let client_wants_usage = req
        .rest
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        == Some(true);
    let mut body = Value::Object(req.rest.clone());
    body["messages"] = Value::from(req.messages.clone());
    if let Some(u) = &req.user {
        body["user"] = Value::from(u.clone());
    }
    if stream {
        body["stream"] = Value::from(true);
        if !body["stream_options"].is_object() {
            body["stream_options"] = Value::Object(Map::new());
        }
        body["stream_options"]["include_usage"] = Value::from(true);
    }
    // Tokens reserved up front: the prompt's estimate plus the completion's cap.
    let max_out = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| req.rest.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_COMPLETION_RESERVE);
    let prompt = serde_json::to_string(&req.messages).unwrap_or_default();
    let mut admitted =
        admit(&s, &auth, &req.model, (estimate_tokens([prompt.as_str()]), max_out)).await?;
    let (s2, body2) = (&s, &body);
    let ask = Ask { name: &req.model, user: &user };
    let first = primary(&s, &auth, &ask, require_chat).await?;
    if !stream {
        // Chat answers are cached only when the deployment says so.
        let slot =
            CacheSlot::of(&s, &first, "/v1/chat/completions", &body, Policy::of(&headers), |t| {
                t.deployment.as_ref().and_then(|d| d.cache_chat) == Some(true)
            })
            .await;
        if let Some(hit) = slot.hit() {
            admitted.settle(0, 0);
            let mut h = cached_headers(hit, start.elapsed());
            h.extend(admitted.headers());
            return Ok((h, hit.body.clone()).into_response());
        }
        let call = |t: &Target| -> Call<'_, Value> {
            let backend = t.backend.clone();
            let b = upstream_body(body2, t);
            Box::pin(async move {
                match &backend {
                    Backend::Remote(r) => {
                        s2.upstreams().call_json(s2.breakers(), r, PATH, &b).await
                    }
                    Backend::Local(_) => Err(ApiError::invalid("model", "not a chat model")),
                }
            })
        };
        let model_start = Instant::now();
        let (t, mut answer, source) =
            run_with_fallbacks(&s, &auth, &ask, first, require_chat, call, slot.stale_json())
                .await?;
        let model_time = model_start.elapsed();
        if source == Source::Cache {
            admitted.settle(0, 0);
            s.cache().served_stale();
        } else if let Some(u) = answer.get("usage") {
            let (p, c) = record_usage(&s, &auth, &t.version, u);
            admitted.settle(p, c);
        }
        answer["model"] = Value::from(t.model.name.clone());
        if source == Source::Primary {
            slot.store(&s, &t, &answer);
        }
        if t.model.name == req.model {
            mirror_json(
                &s,
                &auth,
                &t,
                &user,
                PATH,
                &body,
                Answered { output: Some(output_of(&answer)), time: model_time },
            );
        }
        let mut h = timing_headers(&t.model, &t.version, start.elapsed(), model_time);
        h.extend(admitted.headers());
        h.insert("x-tessera-cache", HeaderValue::from_static(slot.header(source)));
        let tokens = answer.get("usage").filter(|_| source != Source::Cache).map(|u| {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            Tokens(n("prompt_tokens"), n("completion_tokens"))
        });
        let mut resp = (h, axum::Json(answer)).into_response();
        if let Some(t) = tokens {
            resp.extensions_mut().insert(t);
        }
        return Ok(resp);
    }
    let call = |t: &Target| -> Call<'_, (reqwest::Response, Instant)> {
        let backend = t.backend.clone();
        let b = upstream_body(body2, t);
        Box::pin(async move {
            match &backend {
                Backend::Remote(r) => s2.upstreams().open(s2.breakers(), r, PATH, &b).await,
                Backend::Local(_) => Err(ApiError::invalid("model", "not a chat model")),
            }
        })
    };
    let model_start = Instant::now();
    let (t, (resp, deadline), _) =
        run_with_fallbacks(&s, &auth, &ask, first, require_chat, call, None).await?;
    if t.model.name == req.model {
        mirror_json(
            &s,
            &auth,
            &t,
            &user,
            PATH,
            &body,
            Answered { output: None, time: model_start.elapsed() },
        );
    }
    let Backend::Remote(remote) = &t.backend else {
        return Err(ApiError::Internal("a chat target that is not remote".into()));
    };
    let relay = Relay {
        resp: Some(resp),
        buf: Vec::new(),
        deadline,
        idle: Duration::from_millis(remote.config.first_byte_timeout_ms),
        client_wants_usage,
        saw_done: false,
        finished: false,
        breaker: s.breakers().get(&remote.backend),
        backend: remote.backend.clone(),
        s: s.clone(),
        auth: auth.clone(),
        version: t.version.clone(),
        admitted: None,
        draft: None,
        started: start,
    };
    let mut h = timing_headers(&t.model, &t.version, start.elapsed(), model_start.elapsed());
    h.extend(admitted.headers());
    // The stream holds its concurrency slot, settles its tokens and records
    // its usage when it ends.
    let mut relay = relay;
    relay.admitted = Some(admitted);
    relay.draft = draft.take().map(|mut d| {
        d.model = t.model.name.clone();
        d.version = t.version.clone();
        d.tier = t.model.owner.as_str().to_owned();
        d.cache = "bypass";
        d
    });
    relay.started = start;
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let stream = futures_util::stream::unfold(relay, |mut r| async move {
        r.next().await.map(|b| (Ok::<Bytes, std::convert::Infallible>(b), r))
    });
    Ok((h, Body::from_stream(stream)).into_response())
}

/// Relays an upstream event stream event by event: records the usage chunk,
/// drops it if the client did not ask for it, and ends with an error event if
/// the upstream stops before `[DONE]`, times out, or sends something that is
/// not an event. Dropping it (the client went away) closes the upstream call.
struct Relay {
    resp: Option<reqwest::Response>,
    buf: Vec<u8>,
    deadline: Instant,
    idle: Duration,
    client_wants_usage: bool,
    saw_done: bool,
    finished: bool,
    breaker: Arc<Breaker>,
    backend: String,
    s: AppState,
    auth: Authed,
    version: String,
    /// Released when the stream ends or the client leaves.
    admitted: Option<Admitted>,
    /// This request's usage, recorded when the stream ends.
    draft: Option<Draft>,
    started: Instant,
}

/// The end of the first complete event in `buf`, and its separator's length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl Relay {
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some((end, sep)) = event_end(&self.buf) {
                let event: Vec<u8> = self.buf.drain(..end + sep).take(end).collect();
                match self.event(&event) {
                    Ok(Some(out)) => return Some(out),
                    Ok(None) => continue,
                    Err(kind) => return Some(self.fail(kind)),
                }
            }
            if self.finished {
                return None;
            }
            let resp = self.resp.as_mut()?;
            let wait = self.idle.min(self.deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, resp.chunk()).await {
                Ok(Ok(Some(c))) => {
                    if self.buf.len() + c.len() > 16 << 20 {
                        return Some(self.fail("malformed"));
                    }
                    self.buf.extend_from_slice(&c);
                }
                Ok(Ok(None)) => {
                    self.resp = None;
                    if !self.buf.iter().all(u8::is_ascii_whitespace) {
                        // A last event without its blank line.
                        let rest = std::mem::take(&mut self.buf);
                        match self.event(&rest) {
                            Ok(Some(out)) if self.saw_done => {
                                self.finish_ok();
                                return Some(out);
                            }
                            Ok(_) => {}
                            Err(kind) => return Some(self.fail(kind)),
                        }
                    }
                    if self.saw_done {
                        self.finish_ok();
                        return None;
                    }
                    return Some(self.fail("stream_cut"));
                }
                Ok(Err(_)) => return Some(self.fail("stream_cut")),
                Err(_) => return Some(self.fail("timeout")),
            }
        }
    }

    /// One event: what to send on, if anything; or why the stream is broken.
    fn event(&mut self, raw: &[u8]) -> Result<Option<Bytes>, &'static str> {
        let text = std::str::from_utf8(raw).map_err(|_| "malformed")?;
        let data: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d)))
            .collect();
        if data.is_empty() {
            // Comments and keep-alives pass through.
            return Ok(Some(Bytes::from(format!("{text}\n\n"))));
        }
        let data = data.join("\n");
        if data.trim() == "[DONE]" {
            self.saw_done = true;
            return Ok(Some(Bytes::from_static(b"data: [DONE]\n\n")));
        }
        let v: Value = serde_json::from_str(&data).map_err(|_| "malformed")?;
        if v.get("error").is_some() {
            return Err("status_5xx");
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let (p, c) = record_usage(&self.s, &self.auth, &self.version, u);
            if let Some(a) = &mut self.admitted {
                a.settle(p, c);
            }
            if let Some(d) = &mut self.draft {
                d.prompt_tokens = p;
                d.completion_tokens = c;
            }
            let usage_only = v.get("choices").and_then(Value::as_array).is_some_and(Vec::is_empty);
            if usage_only && !self.client_wants_usage {
                return Ok(None);
            }
        }
        Ok(Some(Bytes::from(format!("data: {data}\n\n"))))
    }

    fn finish_ok(&mut self) {
        self.finished = true;
        self.breaker.record(Instant::now(), true);
        self.record(200);
    }

    /// Queues this stream's usage record once.
    fn record(&mut self, status: u16) {
        if let Some(mut d) = self.draft.take() {
            d.compute = self.started.elapsed();
            tokio::spawn(d.finish(status));
        }
    }

    /// Ends the stream with an error event the OpenAI clients raise on.
    fn fail(&mut self, kind: &'static str) -> Bytes {
        self.finished = true;
        self.resp = None;
        self.buf.clear();
        self.breaker.record(Instant::now(), false);
        self.record(502);
        stats(&self.s).failure(kind);
        tracing::warn!(backend = %self.backend, kind, "upstream stream failed");
        let message = match kind {
            "timeout" => format!("model {}: its upstream stopped sending in time", self.backend),
            "malformed" => format!("model {}: its upstream sent a malformed event", self.backend),
            "status_5xx" => {
                format!("model {}: its upstream reported an error mid-stream", self.backend)
            }
            _ => format!("model {}: its upstream closed the stream early", self.backend),
        };
        let e = json!({"error": {"message": message, "type": "upstream_error", "code": "upstream_error", "param": null}});
        Bytes::from(format!("data: {e}\n\n"))
    }
}

fn stats(s: &AppState) -> &UpstreamStats {
    &s.upstreams().stats
}

impl Drop for Relay {
    fn drop(&mut self) {
        // The client left before the end: what was used so far is recorded
        // (499, as proxies log a client that closed the request).
        self.record(499);
        if !self.finished && self.resp.is_some() {
            // The client went away mid-stream: not the upstream's fault.
            tracing::info!(backend = %self.backend, "client left mid-stream; upstream call closed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_of_either_kind() {
        assert_eq!(event_end(b"data: 1\n\ndata: 2"), Some((7, 2)));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some((7, 4)));
        assert_eq!(event_end(b"data: 1\n"), None);
    }
}
