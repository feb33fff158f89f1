//! `POST /v1/chat/completions`, OpenAI-compatible, on remote models: the
//! request passes through with the upstream's model name; `stream: true`
//! answers server-sent events relayed as they arrive (`chat_sse.rs`). Usage
//! is read from the answer (for streams the gateway asks the upstream for
//! the final usage chunk, and passes it on only if the client asked too).

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value};
use tessera_core::model::{Model, REMOTE_RUNTIME};
use utoipa::ToSchema;

use super::chat_sse::{Opened, Relay};
use super::inference::{UsageRecorder, caller, headers};
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use tessera_serving::Services;
use tessera_serving::cache::Policy;
use tessera_serving::inference::{Answer, Backend, Call, Job, Reply, ServeError, Target};
use tessera_serving::predictions::RecordInput;

const PATH: &str = "/chat/completions";
const ROUTE: &str = "/v1/chat/completions";
/// Completion tokens reserved when the request sets no `max_tokens`.
const DEFAULT_COMPLETION_RESERVE: u64 = 256;

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatRequest {
    pub model: String,
    #[schema(value_type = Vec<Object>, min_items = 1)]
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

/// Chat runs on remote chat models only.
fn accepts_chat(m: &Model) -> Result<(), ServeError> {
    if m.task != "chat" || m.runtime != REMOTE_RUNTIME {
        return Err(ServeError::invalid(
            "model",
            format!(
                "model {:?} is a {} model on runtime {}; this route serves chat models",
                m.name, m.task, m.runtime
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

fn tokens_of(answer: &Value) -> Option<(u64, u64)> {
    let u = answer.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
    Some((n("prompt_tokens"), n("completion_tokens")))
}

/// The chat messages' content: what a shadow's answer is compared on.
fn contents(answer: &Value) -> Option<Value> {
    let choices = answer.get("choices")?.as_array()?;
    Some(Value::from(
        choices
            .iter()
            .map(|c| c.pointer("/message/content").cloned().unwrap_or(Value::Null))
            .collect::<Vec<_>>(),
    ))
}

/// A shadow of a chat request: the whole answer, never streamed; its
/// compared contents and its record's summary.
async fn shadow_answer(
    s: &Services,
    t: &Target,
    body: &Value,
) -> Result<(Option<Value>, Value), ServeError> {
    let Backend::Remote(r) = &t.backend else {
        return Err(ServeError::Internal("a chat shadow on a local model".into()));
    };
    let mut b = upstream_body(body, t);
    if let Some(o) = b.as_object_mut() {
        o.remove("stream");
        o.remove("stream_options");
    }
    let answer = s.upstreams().call_json(s.breakers(), r, PATH, &b).await?;
    Ok((contents(&answer), summary(&answer)))
}

/// A whole answer as its prediction record keeps it.
fn summary(out: &Value) -> Value {
    let choice = &out["choices"][0];
    serde_json::json!({
        "finish_reason": choice["finish_reason"],
        "chars": choice["message"]["content"].as_str().map_or(0, str::len),
    })
}

/// A chat completion answered whole.
struct ChatJob {
    body: Value,
}

/// What a chat's prediction record keeps of it: the messages' digest, and
/// as text the last user message.
fn record_input(body: &Value, keep_text: bool) -> RecordInput {
    let text = keep_text.then(|| body["messages"].as_array()).flatten().and_then(|m| {
        m.iter()
            .rev()
            .find(|m| m["role"] == "user")
            .and_then(|m| m["content"].as_str().map(str::to_owned))
    });
    RecordInput::of(&body["messages"], text)
}

impl Job for ChatJob {
    type Output = Value;

    fn cache_route(&self) -> &'static str {
        ROUTE
    }

    fn accepts_model(&self, m: &Model) -> Result<(), ServeError> {
        accepts_chat(m)
    }

    fn record_input(&self, keep_text: bool) -> RecordInput {
        record_input(&self.body, keep_text)
    }

    /// How the answer ended and how long it is.
    fn summary(&self, out: &Value) -> Value {
        summary(out)
    }

    async fn run(&self, s: &Services, t: &Target) -> Result<Answer<Value>, ServeError> {
        let Backend::Remote(r) = &t.backend else {
            return Err(ServeError::Internal("a chat job on a local model".into()));
        };
        let mut answer =
            s.upstreams().call_json(s.breakers(), r, PATH, &upstream_body(&self.body, t)).await?;
        answer["model"] = Value::from(t.model.name.clone());
        let tokens = tokens_of(&answer);
        Ok(Answer { output: answer, tokens })
    }

    fn uses_cache(&self) -> bool {
        true
    }

    /// Chat answers are cached only when the deployment says so; `user`
    /// does not change the answer.
    fn cache_request(&self, t: &Target) -> Option<Value> {
        if t.deployment.as_ref().and_then(|d| d.cache_chat) != Some(true) {
            return None;
        }
        Some(super::inference::cache_key_body(&self.body))
    }

    fn cache_body(&self, out: &Value) -> Option<String> {
        Some(out.to_string())
    }

    fn compared(&self, out: &Value) -> Option<Value> {
        contents(out)
    }

    async fn shadow(&self, s: &Services, t: &Target) -> Result<(Option<Value>, Value), ServeError> {
        shadow_answer(s, t, &self.body).await
    }
}

/// A chat completion streamed: the job opens the upstream call; the relay
/// reads it.
struct StreamJob {
    body: Value,
}

impl Job for StreamJob {
    type Output = Opened;

    fn cache_route(&self) -> &'static str {
        ROUTE
    }

    fn accepts_model(&self, m: &Model) -> Result<(), ServeError> {
        accepts_chat(m)
    }

    fn record_input(&self, keep_text: bool) -> RecordInput {
        record_input(&self.body, keep_text)
    }

    /// A stream's answer is not known when it opens.
    fn summary(&self, _out: &Opened) -> Value {
        serde_json::json!({"stream": true})
    }

    async fn run(&self, s: &Services, t: &Target) -> Result<Answer<Opened>, ServeError> {
        let Backend::Remote(r) = &t.backend else {
            return Err(ServeError::Internal("a chat job on a local model".into()));
        };
        let opened = Instant::now();
        let (resp, deadline) =
            s.upstreams().open(s.breakers(), r, PATH, &upstream_body(&self.body, t)).await?;
        Ok(Answer::new(Opened {
            resp,
            deadline,
            opened,
            idle: Duration::from_millis(r.config.first_byte_timeout_ms),
            backend: r.backend.clone(),
        }))
    }

    async fn shadow(&self, s: &Services, t: &Target) -> Result<(Option<Value>, Value), ServeError> {
        // A stream's output is not compared.
        let (_, summary) = shadow_answer(s, t, &self.body).await?;
        Ok((None, summary))
    }
}

/// Create a chat completion (OpenAI-compatible), streamed as server-sent
/// events with `"stream": true`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "inference", request_body = ChatRequest,
    responses((status = 200, description = "a chat.completion, or text/event-stream of chat.completion.chunk",
            headers(("x-tessera-prediction-id" = String, description = "unique, time-sortable id of this answer"))),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 402, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody),
        (status = 415, body = ErrorBody), (status = 429, body = ErrorBody), (status = 502, body = ErrorBody),
        (status = 503, body = ErrorBody), (status = 504, body = ErrorBody)))]
pub async fn create(
    State(s): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let mut usage = UsageRecorder::start(&s, &auth, ROUTE, &req.model).await;
    let r = chat(&s, &auth, &headers, req, &mut usage, started).await;
    // A stream took its record along; it records when the stream ends.
    usage.finish(&s, &r);
    r
}

async fn chat(
    s: &AppState,
    auth: &Authed,
    req_headers: &HeaderMap,
    req: ChatRequest,
    usage: &mut UsageRecorder,
    started: Instant,
) -> Result<Response, ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let stream = req.stream.unwrap_or(false);
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
    let estimate = (tessera_serving::inference::estimate_tokens([prompt.as_str()]), max_out);
    let caller = caller(auth, req_headers, req.user.as_deref())?;
    let call = Call::open(s, caller, &req.model, None, estimate).await?;
    if !stream {
        let outcome = call.serve(ChatJob { body }, Policy::of(req_headers)).await?;
        usage.note(&outcome.meta);
        let mut h = headers(&outcome.meta, &outcome.admitted, started);
        return Ok(match outcome.reply {
            Reply::Fresh(answer) => (h, axum::Json(answer)).into_response(),
            Reply::Cached(e) => {
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                (h, e.body.clone()).into_response()
            }
        });
    }
    // Streams are never cached.
    let outcome = call.serve(StreamJob { body }, Policy::Bypass).await?;
    usage.note(&outcome.meta);
    let mut h = headers(&outcome.meta, &outcome.admitted, started);
    let Reply::Fresh(opened) = outcome.reply else {
        return Err(ApiError::Internal("a stream answered from the cache".into()));
    };
    let relay = Relay::new(s, opened, client_wants_usage, outcome.admitted, usage.take());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let stream = futures_util::stream::unfold(relay, |mut r| async move {
        r.next().await.map(|b| (Ok::<Bytes, std::convert::Infallible>(b), r))
    });
    Ok((h, Body::from_stream(stream)).into_response())
}
