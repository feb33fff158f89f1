//! Per-request plumbing on the outermost layer: the request id (echoed from
//! `x-request-id` or minted), a tracing span, metrics by route template, an
//! access log line, and the error envelope for answers axum makes itself
//! (405 without a body; the OIP form under `/v2`).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::error::{ApiError, Envelope, InternalDetail};
use crate::state::AppState;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the current request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Filled in by the route layer with the matched route template.
#[derive(Debug, Clone, Default)]
pub struct RouteSlot(Arc<OnceLock<String>>);

impl RouteSlot {
    pub fn set(&self, route: &str) {
        let _ = self.0.set(route.to_owned());
    }
    fn get(&self) -> Option<&str> {
        self.0.get().map(String::as_str)
    }
}

fn usable_request_id(v: &HeaderValue) -> Option<String> {
    let s = v.to_str().ok()?;
    (!s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_graphic()))
        .then(|| s.to_owned())
}

pub async fn request_layer(
    State(state): State<AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let start = Instant::now();
    let id = req
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(usable_request_id)
        // Unique per process and call (no system call per request).
        .unwrap_or_else(|| format!("req_{}", tessera_core::ids::unique_suffix()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let has_body = req.headers().contains_key(axum::http::header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(axum::http::header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let slot = RouteSlot::default();
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(slot.clone());
    let span = tracing::info_span!("request", request_id = %id, method = %method, route = tracing::field::Empty);
    let mut resp = next.run(req).instrument(span.clone()).await;

    if resp.status() == StatusCode::METHOD_NOT_ALLOWED
        && resp.headers().get("content-type").is_none()
    {
        // The envelope, keeping the `allow` header axum lists the methods in.
        let allow = resp.headers().get(axum::http::header::ALLOW).cloned();
        resp = ApiError::MethodNotAllowed { method: method.to_string(), path: path.clone() }
            .respond(Envelope::of_path(&path));
        if let Some(allow) = allow {
            resp.headers_mut().insert(axum::http::header::ALLOW, allow);
        }
    }
    // A refusal may come before the body is read (a 404 for the model, a
    // 429, a bad name), which leaves the connection unusable: say so, or
    // the client's next request on it breaks.
    if has_body && (resp.status().is_client_error() || resp.status().is_server_error()) {
        resp.headers_mut()
            .insert(axum::http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    let route = slot.get().unwrap_or("unmatched").to_owned();
    span.record("route", route.as_str());
    let status = resp.status();
    let elapsed = start.elapsed();
    state.metrics().observe_request(method.as_str(), &route, status.as_u16(), elapsed);
    let _guard = span.enter();
    if let Some(InternalDetail(detail)) = resp.extensions().get::<InternalDetail>() {
        tracing::error!(status = status.as_u16(), error = %detail, "request failed");
    }
    tracing::info!(status = status.as_u16(), path = %path, latency_us = elapsed.as_micros() as u64, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    resp
}
