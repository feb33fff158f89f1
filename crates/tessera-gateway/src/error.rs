//! The gateway's error type and its one mapping to HTTP: status, stable code
//! and the OpenAI-style envelope
//! `{"error": {"message", "type", "code", "param"}}`. The `match` has no
//! wildcard arm, so a new variant cannot silently become a 500. Bodies of 5xx
//! answers say nothing internal; the detail travels in a response extension to
//! the request middleware, which logs it with the request id.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tessera_core::ValidationError;
use tessera_core::auth::AuthError;
use tessera_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthenticated(AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("no route for {method} {path}")]
    RouteNotFound { method: String, path: String },
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid { message: String, param: Option<String> },
    /// Well-formed, but the data it needs is missing (422).
    #[error("{message}")]
    Unprocessable { message: String, code: &'static str, param: Option<String> },
    /// A version that failed its validation gate was asked to take live traffic (409).
    #[error("{message}")]
    GateFailed { message: String, failing: Vec<tessera_core::governance::Check> },
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A well-formed body over one of the route's own limits (events per batch, bytes per event).
    #[error("{message}")]
    TooLarge { message: String, param: Option<String> },
    /// The body's content type is not one the route reads; says which it reads.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The model is loading or could not be loaded.
    #[error("{0}")]
    ModelNotReady(String),
    /// A rate, token or concurrency limit is reached.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64, headers: Box<axum::http::HeaderMap> },
    /// The tenant's monthly budget is used up.
    #[error("{message}")]
    BudgetExceeded { message: String, retry_after_secs: u64 },
    /// A queue is full; retry after the given seconds.
    #[error("{message}")]
    Overloaded { message: String, retry_after_secs: u64 },
    /// The backend's circuit breaker is open.
    #[error("backend {backend} is failing; its circuit breaker is open")]
    BreakerOpen { backend: String, retry_after_secs: u64 },
    /// A dependency (the database) is down.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// An upstream we call (an identity provider's JWKS) is down.
    #[error("upstream unavailable: {0}")]
    UpstreamUnavailable(String),
    /// A remote provider failed (5xx, no connection, malformed answer, cut stream).
    #[error("model {backend}: its upstream {reason}")]
    UpstreamFailed { backend: String, reason: String },
    /// A remote provider did not answer in time.
    #[error("model {backend}: its upstream did not answer in time ({phase} timeout)")]
    UpstreamTimeout { backend: String, phase: &'static str },
    /// A remote provider is rate-limiting the gateway.
    #[error("model {backend}: its upstream is rate-limiting requests")]
    UpstreamRateLimited { backend: String, retry_after_secs: u64 },
    /// A remote provider rejected the request as invalid (its 4xx and message).
    #[error("the upstream rejected the request: {message}")]
    UpstreamRejected { status: u16, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid { message: message.into(), param: Some(param.into()) }
    }

    /// Status, `type`, stable `code`, public message, `param`.
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String, Option<String>) {
        use StatusCode as S;
        match self {
            ApiError::Unauthenticated(e) => {
                (S::UNAUTHORIZED, "authentication_error", "invalid_api_key", e.to_string(), None)
            }
            ApiError::Forbidden(m) => {
                (S::FORBIDDEN, "permission_error", "permission_denied", m.clone(), None)
            }
            ApiError::NotFound(m) => {
                (S::NOT_FOUND, "invalid_request_error", "not_found", m.clone(), None)
            }
            ApiError::RouteNotFound { .. } => {
                (S::NOT_FOUND, "invalid_request_error", "not_found", self.to_string(), None)
            }
            ApiError::MethodNotAllowed { .. } => (
                S::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "method_not_allowed",
                self.to_string(),
                None,
            ),
            ApiError::Conflict(m) => {
                (S::CONFLICT, "invalid_request_error", "conflict", m.clone(), None)
            }
            ApiError::Invalid { message, param } => (
                S::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                message.clone(),
                param.clone(),
            ),
            ApiError::Unprocessable { message, code, param } => (
                S::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                code,
                message.clone(),
                param.clone(),
            ),
            ApiError::GateFailed { message, .. } => {
                (S::CONFLICT, "invalid_request_error", "gate_failed", message.clone(), None)
            }
            ApiError::PayloadTooLarge { .. } => (
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                self.to_string(),
                None,
            ),
            ApiError::TooLarge { message, param } => (
                S::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                "payload_too_large",
                message.clone(),
                param.clone(),
            ),
            ApiError::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "invalid_request_error",
                "unsupported_media_type",
                self.to_string(),
                None,
            ),
            ApiError::ModelNotReady(m) => {
                (S::SERVICE_UNAVAILABLE, "service_unavailable", "model_not_ready", m.clone(), None)
            }
            ApiError::RateLimited { message, .. } => (
                S::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limit_exceeded",
                message.clone(),
                None,
            ),
            ApiError::BudgetExceeded { message, .. } => (
                S::PAYMENT_REQUIRED,
                "insufficient_quota",
                "budget_exceeded",
                message.clone(),
                None,
            ),
            ApiError::Overloaded { message, .. } => {
                (S::TOO_MANY_REQUESTS, "rate_limit_error", "overloaded", message.clone(), None)
            }
            ApiError::BreakerOpen { .. } => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "upstream_unavailable",
                self.to_string(),
                None,
            ),
            ApiError::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "service_unavailable",
                "a dependency is unavailable; retry shortly".into(),
                None,
            ),
            ApiError::UpstreamUnavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "service_unavailable",
                "upstream_unavailable",
                "an upstream service is unavailable; retry shortly".into(),
                None,
            ),
            ApiError::UpstreamFailed { .. } => {
                (S::BAD_GATEWAY, "upstream_error", "upstream_error", self.to_string(), None)
            }
            ApiError::UpstreamTimeout { .. } => {
                (S::GATEWAY_TIMEOUT, "upstream_error", "upstream_timeout", self.to_string(), None)
            }
            ApiError::UpstreamRateLimited { .. } => (
                S::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "upstream_rate_limited",
                self.to_string(),
                None,
            ),
            ApiError::UpstreamRejected { status, .. } => (
                S::from_u16(*status).ok().filter(|s| s.is_client_error()).unwrap_or(S::BAD_REQUEST),
                "invalid_request_error",
                "upstream_rejected",
                self.to_string(),
                None,
            ),
            ApiError::Internal(_) => (
                S::INTERNAL_SERVER_ERROR,
                "server_error",
                "internal_error",
                "internal error".into(),
                None,
            ),
        }
    }
}

/// The envelope every error answer uses.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub param: Option<String>,
    /// The checks a version failed (`gate_failed` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<tessera_core::governance::Check>>,
}

/// The Open Inference Protocol's error form, which `/v2` routes answer:
/// the message as a string, with the stable code beside it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct OipErrorBody {
    pub error: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub code: String,
    pub param: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<Vec<tessera_core::governance::Check>>,
}

/// Internal detail of a 5xx answer, for the request log only.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub String);

/// The error envelope an answer is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    /// `{"error": {"message", "type", "code", "param"}}`: every route but `/v2`.
    OpenAi,
    /// The Open Inference Protocol's `{"error": "<message>", "code", "type", "param"}`.
    Oip,
}

impl Envelope {
    /// The envelope of a request path: OIP under `/v2`.
    pub fn of_path(path: &str) -> Envelope {
        if path == "/v2" || path.starts_with("/v2/") { Envelope::Oip } else { Envelope::OpenAi }
    }
}

/// An error answered in the Open Inference Protocol's form: what the `/v2`
/// handlers return.
#[derive(Debug)]
pub struct OipError(pub ApiError);

impl From<ApiError> for OipError {
    fn from(e: ApiError) -> Self {
        OipError(e)
    }
}

impl From<tessera_serving::inference::ServeError> for OipError {
    fn from(e: tessera_serving::inference::ServeError) -> Self {
        OipError(e.into())
    }
}

impl From<StoreError> for OipError {
    fn from(e: StoreError) -> Self {
        OipError(e.into())
    }
}

impl From<AuthError> for OipError {
    fn from(e: AuthError) -> Self {
        OipError(e.into())
    }
}

impl IntoResponse for OipError {
    fn into_response(self) -> Response {
        self.0.respond(Envelope::Oip)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.respond(Envelope::OpenAi)
    }
}

impl ApiError {
    /// The answer in `envelope`: status, body, `retry-after` and the other
    /// headers the error calls for.
    pub fn respond(self, envelope: Envelope) -> Response {
        let (status, kind, code, message, param) = self.parts();
        let checks = match &self {
            ApiError::GateFailed { failing, .. } => Some(failing.clone()),
            _ => None,
        };
        let mut resp = match envelope {
            Envelope::OpenAi => {
                let body = ErrorBody {
                    error: ErrorDetail {
                        message,
                        kind: kind.into(),
                        code: code.into(),
                        param,
                        checks,
                    },
                };
                (status, axum::Json(body)).into_response()
            }
            Envelope::Oip => {
                let body = OipErrorBody {
                    error: message,
                    kind: kind.into(),
                    code: code.into(),
                    param,
                    checks,
                };
                (status, axum::Json(body)).into_response()
            }
        };
        let retry_after = match &self {
            ApiError::Overloaded { retry_after_secs, .. }
            | ApiError::BreakerOpen { retry_after_secs, .. }
            | ApiError::UpstreamRateLimited { retry_after_secs, .. }
            | ApiError::RateLimited { retry_after_secs, .. }
            | ApiError::BudgetExceeded { retry_after_secs, .. } => Some(*retry_after_secs),
            ApiError::ModelNotReady(_) => Some(5),
            _ if status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        if let Some(secs) = retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let ApiError::RateLimited { headers, .. } = &self {
            resp.headers_mut().extend((**headers).clone());
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status.is_server_error() {
            resp.extensions_mut().insert(InternalDetail(self.to_string()));
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ApiError::NotFound(e.to_string()),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::Invalid(v) => v.into(),
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Internal(m) => ApiError::Internal(m),
            StoreError::Corrupt(m) => {
                ApiError::ModelNotReady(format!("{m}; upload the version again"))
            }
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::RoleForbids { .. }
            | AuthError::ScopeForbids { .. }
            | AuthError::Forbidden(_) => ApiError::Forbidden(e.to_string()),
            AuthError::Missing
            | AuthError::InvalidKey
            | AuthError::Expired
            | AuthError::Revoked
            | AuthError::InvalidToken(_) => ApiError::Unauthenticated(e),
        }
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        ApiError::Invalid { message: e.message, param: e.param }
    }
}

impl From<tessera_engine::EngineError> for ApiError {
    fn from(e: tessera_engine::EngineError) -> Self {
        use tessera_engine::EngineError as E;
        match e {
            E::NotReady { .. } => ApiError::ModelNotReady(e.to_string()),
            E::Overloaded { retry_after, .. } => ApiError::Overloaded {
                message: e.to_string(),
                retry_after_secs: retry_after.as_secs().max(1),
            },
            E::InvalidInput(m) => ApiError::Invalid { message: m, param: Some("input".into()) },
            E::InvalidModel(_) | E::Runtime(_) | E::Fetch(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<tessera_serving::inference::ServeError> for ApiError {
    fn from(e: tessera_serving::inference::ServeError) -> Self {
        use tessera_serving::inference::ServeError as S;
        match e {
            S::Forbidden(m) => ApiError::Forbidden(m),
            S::NotFound(m) => ApiError::NotFound(m),
            S::Conflict(m) => ApiError::Conflict(m),
            S::Invalid { message, param } => ApiError::Invalid { message, param },
            S::GateFailed { message, failing } => ApiError::GateFailed { message, failing },
            S::FeaturesMissing { message, param } => {
                ApiError::Unprocessable { message, code: "features_missing", param: Some(param) }
            }
            S::ModelNotReady(m) => ApiError::ModelNotReady(m),
            S::RateLimited { message, retry_after_secs, headers } => {
                let mut h = axum::http::HeaderMap::new();
                for (name, value) in headers {
                    if let (Ok(n), Ok(v)) = (
                        axum::http::HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        h.insert(n, v);
                    }
                }
                ApiError::RateLimited { message, retry_after_secs, headers: Box::new(h) }
            }
            S::BudgetExceeded { message, retry_after_secs } => {
                ApiError::BudgetExceeded { message, retry_after_secs }
            }
            S::Overloaded { message, retry_after_secs } => {
                ApiError::Overloaded { message, retry_after_secs }
            }
            S::BreakerOpen { backend, retry_after_secs } => {
                ApiError::BreakerOpen { backend, retry_after_secs }
            }
            e @ S::TimedOut { .. } => ApiError::UpstreamUnavailable(e.to_string()),
            S::Unavailable(m) => ApiError::Unavailable(m),
            S::UpstreamFailed { backend, reason } => ApiError::UpstreamFailed { backend, reason },
            S::UpstreamTimeout { backend, phase } => ApiError::UpstreamTimeout { backend, phase },
            S::UpstreamRateLimited { backend, retry_after_secs } => {
                ApiError::UpstreamRateLimited { backend, retry_after_secs }
            }
            S::UpstreamRejected { status, message } => {
                ApiError::UpstreamRejected { status, message }
            }
            S::Internal(m) => ApiError::Internal(m),
        }
    }
}
