//! The feature store (SPEC F1-F3): a tenant's [`Catalog`] of definitions
//! (entities, feature views, feature services), the [`OnlineStore`] that
//! serves the newest row of each view per entity key (embedded SQLite or
//! Redis; one conformance suite), and the online read and push in Feast's
//! feature-server shapes ([`serve`]).
//!
//! Every call takes the tenant: rows of one tenant are never found by
//! another's key, whatever the view is called.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

pub mod catalog;
pub mod embedded;
pub mod model_input;
pub mod monitor;
pub mod offline;
pub mod parquet_out;
pub mod redis_store;
pub mod serve;
pub mod stream;
pub mod window;

#[cfg(test)]
mod conformance;

pub use catalog::Catalog;

/// The canonical text of an entity key: a view's join keys in name order,
/// each `name=value` (the value as its entity types it), joined by `\u{1f}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntityKey(pub String);

impl EntityKey {
    /// Builds a key from (join key, canonical value) pairs in any order.
    pub fn of(mut parts: Vec<(&str, String)>) -> Self {
        parts.sort_by(|a, b| a.0.cmp(b.0));
        let text: Vec<String> = parts.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
        Self(text.join("\u{1f}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// One view's row for one entity key: the feature values and when they
/// held (`event_ts`) and were written (`created`).
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub values: Map<String, Value>,
    pub event_ts: Timestamp,
    pub created: Timestamp,
}

impl Row {
    /// Whether this row replaces `old`: newer by event time, then by when it
    /// was written (Feast's rule); an equal one replaces too (a retry).
    pub fn supersedes(&self, old: &Row) -> bool {
        (self.event_ts, self.created) >= (old.event_ts, old.created)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// The store does not answer (or not in time); nothing was written.
    #[error("online store unavailable: {0}")]
    Unavailable(String),
    #[error("online store: {0}")]
    Internal(String),
}

/// The stores a server's feature store runs on: the online store and the
/// tiles of its stream views (both embedded, or both in Redis), and the
/// offline log (embedded, or in PostgreSQL).
#[derive(Clone)]
pub struct Stores {
    pub online: std::sync::Arc<dyn OnlineStore>,
    pub tiles: std::sync::Arc<dyn stream::TileStore>,
    pub offline: std::sync::Arc<dyn offline::OfflineStore>,
    /// What is written, per view, for `/metrics`.
    pub monitor: std::sync::Arc<monitor::Monitor>,
}

/// A write of one view's rows.
#[derive(Debug, Clone)]
pub struct Write<'a> {
    pub view: &'a str,
    pub rows: Vec<(EntityKey, Row)>,
    /// How long the entity's values are worth keeping (the longest TTL of
    /// the views on its keys); `None`: for good. Stores may drop them after.
    pub keep: Option<Duration>,
}

/// The newest row per (view, entity key) of each tenant.
#[async_trait]
pub trait OnlineStore: Send + Sync + 'static {
    /// Stores the rows, all of them or none; a row older than the stored
    /// one ([`Row::supersedes`]) leaves the stored one. Returns how many
    /// rows were stored.
    async fn write(&self, tenant: &TenantId, write: Write<'_>) -> Result<u64, OnlineError>;

    /// For each key (in order), the view's row with only `features`, or none.
    async fn read(
        &self,
        tenant: &TenantId,
        view: &str,
        features: &[String],
        keys: &[EntityKey],
    ) -> Result<Vec<Option<Row>>, OnlineError>;

    /// Removes every row of the view (it was deleted).
    async fn drop_view(&self, tenant: &TenantId, view: &str) -> Result<(), OnlineError>;
}
