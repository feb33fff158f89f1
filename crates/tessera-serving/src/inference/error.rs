//! `ServeError`: why the inference pipeline (and the services it uses:
//! caches, limits, breakers, remote providers) could not answer. It knows no
//! HTTP; the edge maps it to a status and envelope in one exhaustive match
//! (`From<ServeError> for ApiError`). Whether a fallback may answer instead
//! is a property of the error: [`ServeError::is_fallbackable`].

use std::time::Duration;

use tessera_core::ValidationError;
use tessera_core::auth::AuthError;
use tessera_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The caller may not use this model (key scopes, plan, role).
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid { message: String, param: Option<String> },
    /// A feature the model reads is missing or stale, and its binding says
    /// fail (or the feature is no longer defined).
    #[error("{message}")]
    FeaturesMissing { message: String, param: String },
    /// The version failed its validation gate and may not take live
    /// traffic (`failing`: the checks it failed).
    #[error("{message}")]
    GateFailed { message: String, failing: Vec<tessera_core::governance::Check> },
    /// The model is loading, could not be loaded, or has no usable version.
    #[error("{0}")]
    ModelNotReady(String),
    /// A rate, token or concurrency limit is reached; `headers` are the
    /// `x-ratelimit-*` values of the limit that refused.
    #[error("{message}")]
    RateLimited { message: String, retry_after_secs: u64, headers: Vec<(String, String)> },
    /// The tenant's monthly budget is used up.
    #[error("{message}")]
    BudgetExceeded { message: String, retry_after_secs: u64 },
    /// A model's queue is full.
    #[error("{message}")]
    Overloaded { message: String, retry_after_secs: u64 },
    /// The backend's circuit breaker is open.
    #[error("backend {backend} is failing; its circuit breaker is open")]
    BreakerOpen { backend: String, retry_after_secs: u64 },
    /// The model did not answer within its deployment's `timeout_ms`.
    #[error("model {model} took longer than {} ms", after.as_millis())]
    TimedOut { model: String, after: Duration },
    /// A dependency (the database) is down.
    #[error("service unavailable: {0}")]
    Unavailable(String),
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

impl ServeError {
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        ServeError::Invalid { message: message.into(), param: Some(param.into()) }
    }

    /// Whether a fallback model (or the stale cache) may answer instead: the
    /// backend is down, overloaded, not loaded, too slow or failing. A bad
    /// request, a refusal by limits or permissions, or an upstream that
    /// rejected the request as invalid is the caller's answer, never a
    /// reason to try elsewhere.
    pub fn is_fallbackable(&self) -> bool {
        match self {
            ServeError::BreakerOpen { .. }
            | ServeError::ModelNotReady(_)
            | ServeError::Overloaded { .. }
            | ServeError::TimedOut { .. }
            | ServeError::Unavailable(_)
            | ServeError::UpstreamFailed { .. }
            | ServeError::UpstreamTimeout { .. }
            | ServeError::UpstreamRateLimited { .. }
            | ServeError::Internal(_) => true,
            ServeError::Forbidden(_)
            | ServeError::NotFound(_)
            | ServeError::Conflict(_)
            | ServeError::Invalid { .. }
            | ServeError::FeaturesMissing { .. }
            | ServeError::GateFailed { .. }
            | ServeError::RateLimited { .. }
            | ServeError::BudgetExceeded { .. }
            | ServeError::UpstreamRejected { .. } => false,
        }
    }
}

impl From<StoreError> for ServeError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. } => ServeError::NotFound(e.to_string()),
            StoreError::Conflict(m) => ServeError::Conflict(m),
            StoreError::Invalid(v) => v.into(),
            StoreError::Unavailable(m) => ServeError::Unavailable(m),
            StoreError::Internal(m) => ServeError::Internal(m),
            StoreError::Corrupt(m) => {
                ServeError::ModelNotReady(format!("{m}; upload the version again"))
            }
        }
    }
}

impl From<tessera_providers::ProviderError> for ServeError {
    fn from(e: tessera_providers::ProviderError) -> Self {
        use tessera_providers::ProviderError as P;
        match e {
            P::BreakerOpen { backend, retry_after_secs } => {
                ServeError::BreakerOpen { backend, retry_after_secs }
            }
            P::Failed { backend, reason } => ServeError::UpstreamFailed { backend, reason },
            P::Timeout { backend, phase } => ServeError::UpstreamTimeout { backend, phase },
            P::RateLimited { backend, retry_after_secs } => {
                ServeError::UpstreamRateLimited { backend, retry_after_secs }
            }
            P::Rejected { status, message } => ServeError::UpstreamRejected { status, message },
            P::BadConfig(m) => ServeError::Internal(m),
        }
    }
}

impl From<ValidationError> for ServeError {
    fn from(e: ValidationError) -> Self {
        ServeError::Invalid { message: e.message, param: e.param }
    }
}

impl From<AuthError> for ServeError {
    fn from(e: AuthError) -> Self {
        ServeError::Forbidden(e.to_string())
    }
}

impl From<tessera_engine::EngineError> for ServeError {
    fn from(e: tessera_engine::EngineError) -> Self {
        use tessera_engine::EngineError as E;
        match e {
            E::NotReady { .. } => ServeError::ModelNotReady(e.to_string()),
            E::Overloaded { retry_after, .. } => ServeError::Overloaded {
                message: e.to_string(),
                retry_after_secs: retry_after.as_secs().max(1),
            },
            E::InvalidInput(m) => ServeError::Invalid { message: m, param: Some("input".into()) },
            E::InvalidModel(_) | E::Runtime(_) | E::Fetch(_) => ServeError::Internal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_backend_failures_fall_back() {
        assert!(
            ServeError::TimedOut { model: "m".into(), after: Duration::from_millis(5) }
                .is_fallbackable()
        );
        assert!(ServeError::ModelNotReady("loading".into()).is_fallbackable());
        assert!(!ServeError::invalid("input", "empty").is_fallbackable());
        assert!(
            !ServeError::UpstreamRejected { status: 400, message: "bad".into() }.is_fallbackable()
        );
        assert!(!ServeError::Forbidden("scope".into()).is_fallbackable());
    }
}
