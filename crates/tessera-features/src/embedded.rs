//! The embedded online store: a SQLite file of its own in the data dir
//! (WAL, `synchronous = FULL`, one writer connection), a row per (tenant,
//! view, entity key), and in front of it a bounded in-memory cache of rows
//! (found or not), dropped for every key a write touches: the one process
//! that writes the file is the one that reads it, so the cache is never
//! behind. The default for one replica; with `redis_url` every replica
//! shares the Redis store instead.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::Row as _;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use crate::{EntityKey, OnlineError, OnlineStore, Row, Write};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS online (
    tenant TEXT NOT NULL,
    view TEXT NOT NULL,
    key TEXT NOT NULL,
    vals TEXT NOT NULL,
    event_ts INTEGER NOT NULL,
    created INTEGER NOT NULL,
    PRIMARY KEY (tenant, view, key)
) WITHOUT ROWID;
";

/// Keys per statement (SQLite allows 32766 parameters).
const CHUNK: usize = 500;

/// Rows kept in memory (about 1 KiB each with ten features).
const CACHED_ROWS: u64 = 200_000;

type CacheKey = (TenantId, String, String);

pub struct EmbeddedOnline {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Whole rows (every feature), or none where the file has none.
    cache: moka::sync::Cache<CacheKey, Option<Arc<Row>>>,
    /// Writes begun and writes done (their keys dropped from the cache): a
    /// read fills the cache only if no write was under way from before its
    /// query to its fill (else it might put back a row the write replaced).
    started: AtomicU64,
    done: AtomicU64,
}

fn err(e: impl std::fmt::Display) -> OnlineError {
    OnlineError::Internal(e.to_string())
}

impl EmbeddedOnline {
    pub async fn open(path: &Path) -> Result<Self, OnlineError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                OnlineError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = SqliteConnectOptions::from_str("sqlite://")
            .map_err(err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let writer =
            SqlitePoolOptions::new().max_connections(1).connect_with(opts.clone()).await.map_err(
                |e| OnlineError::Unavailable(format!("cannot open {}: {e}", path.display())),
            )?;
        sqlx::raw_sql(SCHEMA).execute(&writer).await.map_err(err)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await
            .map_err(err)?;
        Ok(Self {
            writer,
            reader,
            cache: moka::sync::Cache::new(CACHED_ROWS),
            started: AtomicU64::new(0),
            done: AtomicU64::new(0),
        })
    }
}

impl EmbeddedOnline {
    /// The file's writer connection (the stream tiles live in the same file).
    pub fn writer(&self) -> SqlitePool {
        self.writer.clone()
    }
}

#[async_trait]
impl OnlineStore for EmbeddedOnline {
    async fn write(&self, tenant: &TenantId, w: Write<'_>) -> Result<u64, OnlineError> {
        let mut tx = self.writer.begin().await.map_err(err)?;
        let mut stored = 0;
        for chunk in w.rows.chunks(CHUNK) {
            let vals: Vec<String> = chunk
                .iter()
                .map(|(_, r)| serde_json::to_string(&r.values))
                .collect::<Result<_, _>>()
                .map_err(err)?;
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO online (tenant, view, key, vals, event_ts, created) ",
            );
            q.push_values(chunk.iter().zip(&vals), |mut b, ((key, row), vals)| {
                b.push_bind(tenant.as_str())
                    .push_bind(w.view)
                    .push_bind(key.as_str())
                    .push_bind(vals.as_str())
                    .push_bind(row.event_ts.millis())
                    .push_bind(row.created.millis());
            });
            // The newer row wins (event time, then write time).
            q.push(
                " ON CONFLICT (tenant, view, key) DO UPDATE SET vals = excluded.vals,
                  event_ts = excluded.event_ts, created = excluded.created
                  WHERE (excluded.event_ts, excluded.created) >= (online.event_ts, online.created)",
            );
            stored += q.build().execute(&mut *tx).await.map_err(err)?.rows_affected();
        }
        self.started.fetch_add(1, Ordering::SeqCst);
        let committed = tx.commit().await;
        // Committed or not (an error may come after the commit landed), the
        // keys are read from the file again.
        for (key, _) in &w.rows {
            self.cache.invalidate(&(tenant.clone(), w.view.to_owned(), key.0.clone()));
        }
        self.done.fetch_add(1, Ordering::SeqCst);
        committed.map_err(err)?;
        Ok(stored)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        view: &str,
        features: &[String],
        keys: &[EntityKey],
    ) -> Result<Vec<Option<Row>>, OnlineError> {
        let only = |r: &Row| Row {
            values: features
                .iter()
                .filter_map(|f| r.values.get(f).map(|v| (f.clone(), v.clone())))
                .collect(),
            event_ts: r.event_ts,
            created: r.created,
        };
        let cache_key = |k: &EntityKey| (tenant.clone(), view.to_owned(), k.0.clone());
        let cached: Vec<Option<Option<Arc<Row>>>> =
            keys.iter().map(|k| self.cache.get(&cache_key(k))).collect();
        if cached.iter().all(Option::is_some) {
            return Ok(cached.into_iter().map(|c| c.flatten().map(|r| only(&r))).collect());
        }
        let before = self.started.load(Ordering::SeqCst);
        let quiet = self.done.load(Ordering::SeqCst) == before;
        let missing: Vec<EntityKey> =
            keys.iter().zip(&cached).filter(|(_, c)| c.is_none()).map(|(k, _)| k.clone()).collect();
        let mut found: HashMap<String, Arc<Row>> = HashMap::new();
        for chunk in missing.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT key, vals, event_ts, created FROM online WHERE tenant = ",
            );
            q.push_bind(tenant.as_str()).push(" AND view = ").push_bind(view).push(" AND key IN (");
            let mut list = q.separated(", ");
            for k in chunk {
                list.push_bind(k.as_str());
            }
            q.push(")");
            for r in q.build().fetch_all(&self.reader).await.map_err(err)? {
                let vals: String = r.try_get("vals").map_err(err)?;
                let row = Row {
                    values: serde_json::from_str(&vals).map_err(err)?,
                    event_ts: Timestamp::from_millis(r.try_get("event_ts").map_err(err)?),
                    created: Timestamp::from_millis(r.try_get("created").map_err(err)?),
                };
                found.insert(r.try_get("key").map_err(err)?, Arc::new(row));
            }
        }
        let fill = quiet && self.started.load(Ordering::SeqCst) == before;
        Ok(keys
            .iter()
            .zip(cached)
            .map(|(k, c)| {
                let row = c.unwrap_or_else(|| {
                    let row = found.get(k.as_str()).cloned();
                    if fill {
                        self.cache.insert(cache_key(k), row.clone());
                    }
                    row
                });
                row.map(|r| only(&r))
            })
            .collect())
    }

    async fn drop_view(&self, tenant: &TenantId, view: &str) -> Result<(), OnlineError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let deleted = sqlx::query("DELETE FROM online WHERE tenant = ? AND view = ?")
            .bind(tenant.as_str())
            .bind(view)
            .execute(&self.writer)
            .await;
        self.cache.invalidate_all();
        self.done.fetch_add(1, Ordering::SeqCst);
        deleted.map_err(err)?;
        Ok(())
    }
}
