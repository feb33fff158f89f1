//! The chat adapter's server-sent events relay: an upstream event stream
//! passed on event by event. It records the usage chunk (dropping it if the
//! client did not ask for it), and ends with an error event if the upstream
//! stops before `[DONE]`, times out, or sends something that is not an
//! event. Dropping it (the client went away) closes the upstream call. The
//! relay owns the request's admission and usage record: its concurrency
//! slot is held until the stream ends, and its usage is recorded then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use serde_json::{Value, json};

use crate::state::AppState;
use tessera_core::breaker::Breaker;
use tessera_serving::limits::Admitted;
use tessera_serving::metering::Draft;

/// Why a stream ended early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// No event within the idle timeout, or past the total deadline.
    Timeout,
    /// Not UTF-8, not JSON, or an event larger than the buffer.
    Malformed,
    /// The upstream reported an error event mid-stream.
    UpstreamError,
    /// The connection closed before `[DONE]`.
    Cut,
}

impl Fault {
    /// The label counted in the upstream failure metrics.
    fn kind(self) -> &'static str {
        match self {
            Fault::Timeout => "timeout",
            Fault::Malformed => "malformed",
            Fault::UpstreamError => "status_5xx",
            Fault::Cut => "stream_cut",
        }
    }

    fn message(self, backend: &str) -> String {
        match self {
            Fault::Timeout => format!("model {backend}: its upstream stopped sending in time"),
            Fault::Malformed => format!("model {backend}: its upstream sent a malformed event"),
            Fault::UpstreamError => {
                format!("model {backend}: its upstream reported an error mid-stream")
            }
            Fault::Cut => format!("model {backend}: its upstream closed the stream early"),
        }
    }
}

/// Largest amount of an unfinished event held.
const MAX_BUFFER: usize = 16 << 20;

pub(super) struct Relay {
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
    /// Released when the stream ends or the client leaves.
    admitted: Admitted,
    /// This request's usage, recorded when the stream ends.
    draft: Option<Draft>,
    /// When the upstream call was opened: the stream's time in the model.
    opened: Instant,
}

/// What a relay starts from.
pub(super) struct Opened {
    pub resp: reqwest::Response,
    pub deadline: Instant,
    pub opened: Instant,
    pub idle: Duration,
    pub backend: String,
}

impl Relay {
    pub(super) fn new(
        s: &AppState,
        up: Opened,
        client_wants_usage: bool,
        admitted: Admitted,
        draft: Option<Draft>,
    ) -> Relay {
        Relay {
            resp: Some(up.resp),
            buf: Vec::new(),
            deadline: up.deadline,
            idle: up.idle,
            client_wants_usage,
            saw_done: false,
            finished: false,
            breaker: s.breakers().get(&up.backend),
            backend: up.backend,
            s: s.clone(),
            admitted,
            draft,
            opened: up.opened,
        }
    }

    /// The next bytes for the client; `None` at the end.
    pub(super) async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some((end, sep)) = event_end(&self.buf) {
                let event: Vec<u8> = self.buf.drain(..end + sep).take(end).collect();
                match self.event(&event) {
                    Ok(Some(out)) => return Some(out),
                    Ok(None) => continue,
                    Err(fault) => return Some(self.fail(fault)),
                }
            }
            if self.finished {
                return None;
            }
            let resp = self.resp.as_mut()?;
            let wait = self.idle.min(self.deadline.saturating_duration_since(Instant::now()));
            match tokio::time::timeout(wait, resp.chunk()).await {
                Ok(Ok(Some(c))) => {
                    if self.buf.len() + c.len() > MAX_BUFFER {
                        return Some(self.fail(Fault::Malformed));
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
                            Err(fault) => return Some(self.fail(fault)),
                        }
                    }
                    if self.saw_done {
                        self.finish_ok();
                        return None;
                    }
                    return Some(self.fail(Fault::Cut));
                }
                Ok(Err(_)) => return Some(self.fail(Fault::Cut)),
                Err(_) => return Some(self.fail(Fault::Timeout)),
            }
        }
    }

    /// One event: what to send on, if anything; or why the stream is broken.
    fn event(&mut self, raw: &[u8]) -> Result<Option<Bytes>, Fault> {
        let text = std::str::from_utf8(raw).map_err(|_| Fault::Malformed)?;
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
        let v: Value = serde_json::from_str(&data).map_err(|_| Fault::Malformed)?;
        if v.get("error").is_some() {
            return Err(Fault::UpstreamError);
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            let (p, c) = (n("prompt_tokens"), n("completion_tokens"));
            self.s.upstreams().stats.tokens(p, c);
            self.admitted.settle(p, c);
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
            d.compute = self.opened.elapsed();
            self.s.tasks().spawn(d.finish(status));
        }
    }

    /// Ends the stream with an error event the OpenAI clients raise on.
    fn fail(&mut self, fault: Fault) -> Bytes {
        self.finished = true;
        self.resp = None;
        self.buf.clear();
        self.breaker.record(Instant::now(), false);
        self.record(502);
        self.s.upstreams().stats.failure(fault.kind());
        tracing::warn!(backend = %self.backend, kind = fault.kind(), "upstream stream failed");
        let message = fault.message(&self.backend);
        let e = json!({"error": {"message": message, "type": "upstream_error", "code": "upstream_error", "param": null}});
        Bytes::from(format!("data: {e}\n\n"))
    }
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

/// The end of the first complete event in `buf`, and its separator's length.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = buf.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
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

    #[test]
    fn each_fault_names_the_backend_and_counts_under_a_stable_kind() {
        for (f, kind) in [
            (Fault::Timeout, "timeout"),
            (Fault::Malformed, "malformed"),
            (Fault::UpstreamError, "status_5xx"),
            (Fault::Cut, "stream_cut"),
        ] {
            assert_eq!(f.kind(), kind);
            assert!(f.message("m@1 (mdl_x)").starts_with("model m@1 (mdl_x): "));
        }
    }
}
