//! Edge plumbing the inference adapters share (not an adapter itself): the
//! pipeline's caller from the authenticated request, the answer headers
//! from an outcome's typed metadata, and the usage record each request
//! leaves, filled from that metadata.

use std::time::Instant;

use axum::http::{HeaderMap, HeaderValue};
use axum::response::Response;
use serde_json::{Map, Value};
use tessera_core::role::Operation;

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;
use tessera_serving::inference::{Caller, Meta};
use tessera_serving::limits::Admitted;
use tessera_serving::metering::Draft;

/// Names the response header of an answer's prediction id.
pub const PREDICTION_ID: &str = "x-tessera-prediction-id";

/// The pipeline's caller for an inference request. The end user for sticky
/// splits is `user` (a body field), else the `x-tessera-user` header, else
/// the request id.
pub fn caller(auth: &Authed, headers: &HeaderMap, user: Option<&str>) -> Result<Caller, ApiError> {
    let ctx = auth.tenant(Operation::Inference)?;
    let header = headers.get("x-tessera-user").and_then(|v| v.to_str().ok());
    let user = user
        .filter(|u| !u.is_empty())
        .or(header.filter(|u| !u.is_empty()))
        .map_or_else(|| auth.request_id.clone(), str::to_owned);
    Ok(caller_in(auth, ctx, user))
}

/// A caller in `ctx` (already authorized for what the route does) that
/// resolves model names as inference does, for routes that name a model
/// without running it (metadata, cache purge).
pub fn caller_in(auth: &Authed, ctx: tessera_core::auth::TenantCtx, user: String) -> Caller {
    Caller { ctx, principal: auth.principal.clone(), request_id: auth.request_id.clone(), user }
}

/// Headers on every inference answer: the model that answered, its tier,
/// its version, the time spent outside the model, the cache outcome, the
/// prediction id, and the limits' `x-ratelimit-*`.
pub fn headers(meta: &Meta, admitted: &Admitted, started: Instant) -> HeaderMap {
    let mut h = admitted.headers();
    let mut put = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    put("x-tessera-model", &meta.model);
    put("x-tessera-tier", &meta.tier);
    put("x-tessera-model-version", &meta.version.to_string());
    let overhead = started.elapsed().saturating_sub(meta.model_time).as_secs_f64() * 1000.0;
    put("x-tessera-overhead-ms", &format!("{overhead:.3}"));
    put("x-tessera-cache", meta.cache.as_str());
    put(PREDICTION_ID, &meta.prediction_id);
    h
}

/// The usage record of one inference request, started before anything can
/// fail so that refused requests are recorded too.
pub struct UsageRecorder(Option<Draft>);

impl UsageRecorder {
    pub async fn start(
        s: &AppState,
        auth: &Authed,
        route: &'static str,
        model: &str,
    ) -> UsageRecorder {
        let draft = async {
            let ctx = auth.tenant(Operation::Inference).ok()?;
            let plan = s.tenants().get(s.store(), &ctx).await.ok()?.plan.name.clone();
            let who = (auth.request_id.as_str(), auth.principal.actor());
            Some(Draft::new(s.meter().clone(), who, ctx.tenant_id().clone(), plan, route, model))
        };
        UsageRecorder(draft.await)
    }

    /// Fills the record from what answered.
    pub fn note(&mut self, meta: &Meta) {
        if let Some(d) = &mut self.0 {
            d.note(meta);
        }
    }

    /// Hands the record to a stream, which records it when it ends.
    pub fn take(&mut self) -> Option<Draft> {
        self.0.take()
    }

    /// Records it (unless a stream took it) with the answer's status.
    pub fn finish(self, s: &AppState, result: &Result<Response, ApiError>) {
        let status = match result {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.status().as_u16(),
        };
        if let Some(d) = self.0 {
            s.tasks().spawn(d.finish(status));
        }
    }
}

/// The leaves of a nested JSON array, in row-major order.
pub fn flatten<'a>(v: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

/// An OpenAI request as the cache keys it: `user` does not change the
/// answer, so it is left out.
pub fn cache_key_body(body: &serde_json::Value) -> serde_json::Value {
    let mut request = body.clone();
    if let Some(o) = request.as_object_mut() {
        o.remove("user");
    }
    request
}

/// The entity a request's `parameters` name, if any.
pub(super) fn entity_param(
    parameters: Option<&Map<String, Value>>,
) -> Result<Option<Map<String, Value>>, ApiError> {
    match parameters.and_then(|p| p.get("entity")) {
        None => Ok(None),
        Some(Value::Object(e)) if !e.is_empty() => Ok(Some(e.clone())),
        Some(_) => Err(ApiError::invalid(
            "parameters.entity",
            "parameters.entity must be an object of join keys, e.g. {\"customer_id\": \"c1\"}",
        )),
    }
}
