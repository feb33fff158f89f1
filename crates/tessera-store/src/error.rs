//! The storage layer's error type.

use tessera_core::ValidationError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// The database cannot be reached; callers answer 503.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database error: {0}")]
    Internal(String),
    /// Stored bytes that fail their integrity check.
    #[error("{0}")]
    Corrupt(String),
}

impl StoreError {
    pub fn not_found(what: &'static str, id: impl std::fmt::Display) -> Self {
        StoreError::NotFound { what, id: id.to_string() }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_owned())
            }
            sqlx::Error::Database(db) if is_unavailable_code(db.code().as_deref()) => {
                StoreError::Unavailable(e.to_string())
            }
            _ => StoreError::Internal(e.to_string()),
        }
    }
}

/// PostgreSQL classes 08 (connection) and 57P (shutdown), SQLite BUSY/LOCKED.
fn is_unavailable_code(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("08") || c.starts_with("57P") || c == "5" || c == "6")
}
