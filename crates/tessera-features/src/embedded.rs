//! The embedded online store: a SQLite file of its own in the data dir
//! (WAL, `synchronous = FULL`, one writer connection), a row per (tenant,
//! view, entity key). The default for one replica; with `redis_url` every
//! replica shares the Redis store instead.

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr as _;
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

pub struct EmbeddedOnline {
    writer: SqlitePool,
    reader: SqlitePool,
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
        Ok(Self { writer, reader })
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
        tx.commit().await.map_err(err)?;
        Ok(stored)
    }

    async fn read(
        &self,
        tenant: &TenantId,
        view: &str,
        features: &[String],
        keys: &[EntityKey],
    ) -> Result<Vec<Option<Row>>, OnlineError> {
        let mut found: HashMap<String, Row> = HashMap::new();
        for chunk in keys.chunks(CHUNK) {
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
                let mut all: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&vals).map_err(err)?;
                let values =
                    features.iter().filter_map(|f| all.remove(f).map(|v| (f.clone(), v))).collect();
                let row = Row {
                    values,
                    event_ts: Timestamp::from_millis(r.try_get("event_ts").map_err(err)?),
                    created: Timestamp::from_millis(r.try_get("created").map_err(err)?),
                };
                found.insert(r.try_get("key").map_err(err)?, row);
            }
        }
        Ok(keys.iter().map(|k| found.get(k.as_str()).cloned()).collect())
    }

    async fn drop_view(&self, tenant: &TenantId, view: &str) -> Result<(), OnlineError> {
        sqlx::query("DELETE FROM online WHERE tenant = ? AND view = ?")
            .bind(tenant.as_str())
            .bind(view)
            .execute(&self.writer)
            .await
            .map_err(err)?;
        Ok(())
    }
}
