//! Storage for Tessera: the [`MetadataStore`] trait (tenants, plans, keys,
//! audit) and its SQLite and PostgreSQL implementations, chosen by URL. Both
//! pass the one conformance suite in [`conformance`].

pub mod artifacts;
/// The conformance suite and test-service helpers, for tests only.
#[cfg(feature = "testsuite")]
pub mod conformance;
mod error;
mod metadata;
mod migrate;
pub mod postgres;
mod sql_alerts;
mod sql_common;
mod sql_datasets;
mod sql_features;
mod sql_feedback;
mod sql_governance;
mod sql_registry;
mod sql_rollouts;
mod sql_rows;
mod sql_training;
mod sql_usage;
pub mod sqlite;

use std::sync::Arc;

pub use error::StoreError;
pub use metadata::{
    AuditQuery, AuditScope, FeatureDefWrite, JobUpdate, KeyOwner, MetadataStore, ModelScope,
    ModelView, UsageScope, verify_audit_chain,
};
use tessera_core::config::DatabaseUrl;

/// Opens the metadata store at `url` and the artifact store that goes with
/// it: on SQLite a directory under `data_dir`; on PostgreSQL the database
/// itself (shared by every replica), read through a local copy in `data_dir`.
pub async fn open_with_artifacts(
    url: &DatabaseUrl,
    data_dir: &std::path::Path,
) -> Result<(Arc<dyn MetadataStore>, Arc<dyn artifacts::ArtifactStore>), StoreError> {
    let dir = data_dir.join("artifacts");
    Ok(match url {
        DatabaseUrl::Sqlite(path) => (
            Arc::new(sqlite::SqliteStore::open(path).await?),
            Arc::new(artifacts::DirArtifacts::new(dir)),
        ),
        DatabaseUrl::Postgres(u) => {
            let pg = postgres::PgStore::connect(u, None).await?;
            let a = Arc::new(pg.artifacts(dir));
            (Arc::new(pg), a)
        }
    })
}

/// Opens (creating and migrating as needed) the metadata store at `url`.
pub async fn open(url: &DatabaseUrl) -> Result<Arc<dyn MetadataStore>, StoreError> {
    Ok(match url {
        DatabaseUrl::Sqlite(path) => Arc::new(sqlite::SqliteStore::open(path).await?),
        DatabaseUrl::Postgres(u) => Arc::new(postgres::PgStore::connect(u, None).await?),
    })
}
