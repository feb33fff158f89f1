//! The embedded metadata store: one SQLite file in WAL mode with
//! `synchronous = FULL`, so an acknowledged write survives a crash. Writes go
//! through a single connection (SQLite allows one writer anyway; queueing in
//! the pool beats `SQLITE_BUSY`), reads through a small read-only pool.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::migrate::{COMMON, CREATE_TABLE, check_not_newer};

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
}

impl SqliteStore {
    /// Opens or creates the database file at `path` and migrates it.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
            .await?;
        migrate(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore { writer, reader })
    }

    async fn begin(&self, _scope: TxScope<'_>, write: bool) -> Result<Tx, StoreError> {
        Ok(if write {
            self.writer.begin_with("BEGIN IMMEDIATE").await?
        } else {
            self.reader.begin().await?
        })
    }

    async fn ping_db(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }
}

async fn migrate(pool: &SqlitePool) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    sqlx::query(CREATE_TABLE).execute(&mut *tx).await?;
    let applied: Option<i64> = sqlx::query("SELECT MAX(version) AS v FROM tessera_migrations")
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
    let known = COMMON.iter().map(|m| m.version).max().unwrap_or(0);
    check_not_newer(applied, known)?;
    for m in COMMON.iter().filter(|m| Some(m.version) > applied) {
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO tessera_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
        )
        .bind(m.version)
        .bind(m.name)
        .bind(Timestamp::now().millis())
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

crate::sql_common::sql_metadata_store!(
    SqliteStore,
    sqlx::Sqlite,
    "sqlite",
    lock = "",
    skip_locked = "",
    lock_of_t = ""
);
