//! The engine's error type.

use std::time::Duration;

#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The model (or the runtime library it needs) is not available yet.
    #[error("model {model} is not ready: {reason}")]
    NotReady { model: String, reason: String },
    /// The model's queue is full.
    #[error("model {model} is overloaded; retry later")]
    Overloaded { model: String, retry_after: Duration },
    /// A request the model cannot take (empty input, too many items, ...).
    #[error("{0}")]
    InvalidInput(String),
    /// Model files that cannot be used.
    #[error("invalid model: {0}")]
    InvalidModel(String),
    /// The runtime failed while computing.
    #[error("runtime error: {0}")]
    Runtime(String),
    /// Fetching model files failed.
    #[error("{0}")]
    Fetch(String),
}
