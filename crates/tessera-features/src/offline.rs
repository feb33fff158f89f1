//! The offline store (F2): every row pushed or aggregated, kept per tenant
//! and view with its event and write times, for point-in-time training sets.
//! Embedded: a table in the feature store's SQLite file; scale-out: a table
//! in PostgreSQL that every replica reads. [`as_of`] is the join: for an
//! entity row at time `t`, the newest feature row with `event_ts <= t` (and,
//! with a TTL, `event_ts >= t - ttl`), ties broken by the later write.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use sqlx::Row as _;
use tessera_core::ids::TenantId;

use crate::{EntityKey, OnlineError};

/// One stored feature row.
#[derive(Debug, Clone, PartialEq)]
pub struct OfflineRow {
    pub key: EntityKey,
    pub event_ts: i64,
    pub created: i64,
    pub values: Map<String, Value>,
}

#[async_trait]
pub trait OfflineStore: Send + Sync + 'static {
    /// Appends the rows, all of them or none.
    async fn append(
        &self,
        tenant: &TenantId,
        view: &str,
        rows: &[OfflineRow],
    ) -> Result<u64, OnlineError>;

    /// The view's rows for `keys` with `from <= event_ts <= to`, in
    /// (key, event_ts, created) order.
    async fn scan(
        &self,
        tenant: &TenantId,
        view: &str,
        keys: &[EntityKey],
        from: i64,
        to: i64,
    ) -> Result<Vec<OfflineRow>, OnlineError>;

    /// The view's rows of every key with `from <= event_ts <= to`, newest
    /// first, at most `limit` (drift monitoring reads a window of them).
    async fn scan_window(
        &self,
        tenant: &TenantId,
        view: &str,
        from: i64,
        to: i64,
        limit: usize,
    ) -> Result<Vec<OfflineRow>, OnlineError>;

    /// Removes the view's rows (it was deleted).
    async fn drop_view(&self, tenant: &TenantId, view: &str) -> Result<(), OnlineError>;
}

/// For each `(key, t)` query, the index in `rows` of its as-of match, if any.
/// `rows` must be in (key, event_ts, created) order.
pub fn as_of(
    rows: &[OfflineRow],
    queries: &[(EntityKey, i64)],
    ttl: Option<Duration>,
) -> Vec<Option<usize>> {
    let mut by_key: HashMap<&EntityKey, (usize, usize)> = HashMap::new();
    let mut i = 0;
    while i < rows.len() {
        let mut j = i;
        while j < rows.len() && rows[j].key == rows[i].key {
            j += 1;
        }
        by_key.insert(&rows[i].key, (i, j));
        i = j;
    }
    let ttl = ttl.map(|t| t.as_millis() as i64);
    queries
        .iter()
        .map(|(key, t)| {
            let (start, end) = *by_key.get(key)?;
            let run = &rows[start..end];
            // The last row at or before t: later writes of the same event time sort after.
            let n = run.partition_point(|r| r.event_ts <= *t);
            let found = n.checked_sub(1)?;
            let ok = ttl.is_none_or(|ttl| run[found].event_ts >= t - ttl);
            ok.then_some(start + found)
        })
        .collect()
}

fn err(e: impl std::fmt::Display) -> OnlineError {
    OnlineError::Internal(e.to_string())
}

/// Keys per statement.
const CHUNK: usize = 500;

/// The embedded offline store, in the feature store's SQLite file.
pub struct SqliteOffline {
    pool: sqlx::sqlite::SqlitePool,
}

impl SqliteOffline {
    /// A SQLite file of its own (WAL, `synchronous = FULL`).
    pub async fn open(path: &std::path::Path) -> Result<Self, OnlineError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                OnlineError::Unavailable(format!("cannot create {}: {e}", dir.display()))
            })?;
        }
        let opts = sqlx::sqlite::SqliteConnectOptions::from_str("sqlite://")
            .map_err(err)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await
            .map_err(|e| {
                OnlineError::Unavailable(format!("cannot open {}: {e}", path.display()))
            })?;
        Self::new(pool).await
    }

    /// Over a pool of a SQLite file (one writer connection).
    pub async fn new(pool: sqlx::sqlite::SqlitePool) -> Result<Self, OnlineError> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS offline (
                tenant TEXT NOT NULL, view TEXT NOT NULL, key TEXT NOT NULL,
                event_ts INTEGER NOT NULL, created INTEGER NOT NULL, vals TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS offline_by_key ON offline (tenant, view, key, event_ts, created);",
        )
        .execute(&pool)
        .await
        .map_err(err)?;
        Ok(Self { pool })
    }
}

/// The scale-out offline store: a table in PostgreSQL.
pub struct PgOffline {
    pool: sqlx::postgres::PgPool,
}

impl PgOffline {
    pub async fn connect(url: &str) -> Result<Self, OnlineError> {
        let opts = sqlx::postgres::PgConnectOptions::from_str(url).map_err(err)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(opts)
            .await
            .map_err(|e| OnlineError::Unavailable(e.to_string()))?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS feature_offline (
                tenant TEXT NOT NULL, view TEXT NOT NULL, key TEXT NOT NULL,
                event_ts BIGINT NOT NULL, created BIGINT NOT NULL, vals TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS feature_offline_by_key
                ON feature_offline (tenant, view, key, event_ts, created);",
        )
        .execute(&pool)
        .await
        .map_err(err)?;
        Ok(Self { pool })
    }
}

/// The two implementations differ in their pool and table name only.
macro_rules! sql_offline {
    ($store:ty, $db:ty, $table:literal) => {
        #[async_trait]
        impl OfflineStore for $store {
            async fn append(
                &self,
                tenant: &TenantId,
                view: &str,
                rows: &[OfflineRow],
            ) -> Result<u64, OnlineError> {
                let mut tx = self.pool.begin().await.map_err(err)?;
                let mut n = 0;
                for chunk in rows.chunks(CHUNK) {
                    let vals: Vec<String> = chunk
                        .iter()
                        .map(|r| serde_json::to_string(&r.values))
                        .collect::<Result<_, _>>()
                        .map_err(err)?;
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                        "INSERT INTO ",
                        $table,
                        " (tenant, view, key, event_ts, created, vals) "
                    ));
                    q.push_values(chunk.iter().zip(&vals), |mut b, (r, v)| {
                        b.push_bind(tenant.as_str().to_owned())
                            .push_bind(view.to_owned())
                            .push_bind(r.key.0.clone())
                            .push_bind(r.event_ts)
                            .push_bind(r.created)
                            .push_bind(v.clone());
                    });
                    n += q.build().execute(&mut *tx).await.map_err(err)?.rows_affected();
                }
                tx.commit().await.map_err(err)?;
                Ok(n)
            }

            async fn scan(
                &self,
                tenant: &TenantId,
                view: &str,
                keys: &[EntityKey],
                from: i64,
                to: i64,
            ) -> Result<Vec<OfflineRow>, OnlineError> {
                let mut out = Vec::new();
                for chunk in keys.chunks(CHUNK) {
                    let mut q = sqlx::QueryBuilder::<$db>::new(concat!(
                        "SELECT key, event_ts, created, vals FROM ",
                        $table,
                        " WHERE tenant = "
                    ));
                    q.push_bind(tenant.as_str().to_owned())
                        .push(" AND view = ")
                        .push_bind(view.to_owned());
                    q.push(" AND event_ts >= ")
                        .push_bind(from)
                        .push(" AND event_ts <= ")
                        .push_bind(to);
                    q.push(" AND key IN (");
                    let mut list = q.separated(", ");
                    for k in chunk {
                        list.push_bind(k.0.clone());
                    }
                    q.push(") ORDER BY key, event_ts, created");
                    for r in q.build().fetch_all(&self.pool).await.map_err(err)? {
                        let vals: String = r.try_get("vals").map_err(err)?;
                        out.push(OfflineRow {
                            key: EntityKey(r.try_get("key").map_err(err)?),
                            event_ts: r.try_get("event_ts").map_err(err)?,
                            created: r.try_get("created").map_err(err)?,
                            values: serde_json::from_str(&vals).map_err(err)?,
                        });
                    }
                }
                // Chunks are each in order; together they are by key again.
                out.sort_by(|a, b| {
                    (&a.key, a.event_ts, a.created).cmp(&(&b.key, b.event_ts, b.created))
                });
                Ok(out)
            }

            async fn scan_window(
                &self,
                tenant: &TenantId,
                view: &str,
                from: i64,
                to: i64,
                limit: usize,
            ) -> Result<Vec<OfflineRow>, OnlineError> {
                let rows = sqlx::query(concat!(
                    "SELECT key, event_ts, created, vals FROM ",
                    $table,
                    " WHERE tenant = $1 AND view = $2 AND event_ts >= $3 AND event_ts <= $4 \
                     ORDER BY event_ts DESC LIMIT $5"
                ))
                .bind(tenant.as_str())
                .bind(view)
                .bind(from)
                .bind(to)
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .fetch_all(&self.pool)
                .await
                .map_err(err)?;
                rows.iter()
                    .map(|r| {
                        let vals: String = r.try_get("vals").map_err(err)?;
                        Ok(OfflineRow {
                            key: EntityKey(r.try_get("key").map_err(err)?),
                            event_ts: r.try_get("event_ts").map_err(err)?,
                            created: r.try_get("created").map_err(err)?,
                            values: serde_json::from_str(&vals).map_err(err)?,
                        })
                    })
                    .collect()
            }

            async fn drop_view(&self, tenant: &TenantId, view: &str) -> Result<(), OnlineError> {
                sqlx::query(concat!("DELETE FROM ", $table, " WHERE tenant = $1 AND view = $2"))
                    .bind(tenant.as_str())
                    .bind(view)
                    .execute(&self.pool)
                    .await
                    .map_err(err)?;
                Ok(())
            }
        }
    };
}

sql_offline!(SqliteOffline, sqlx::Sqlite, "offline");
sql_offline!(PgOffline, sqlx::Postgres, "feature_offline");

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(c: &str) -> EntityKey {
        EntityKey::of(vec![("driver_id", c.to_owned())])
    }

    fn row(c: &str, ts: i64, created: i64, v: i64) -> OfflineRow {
        OfflineRow {
            key: key(c),
            event_ts: ts,
            created,
            values: json!({"v": v}).as_object().unwrap().clone(),
        }
    }

    /// The as-of join against a brute-force oracle on random data.
    #[test]
    fn as_of_matches_brute_force() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |m: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % m
        };
        for round in 0..50 {
            let keys = 1 + next(6);
            let mut rows: Vec<OfflineRow> = (0..next(200))
                .map(|i| {
                    row(&format!("d{}", next(keys)), next(1_000) as i64, next(5) as i64, i as i64)
                })
                .collect();
            rows.sort_by(|a, b| {
                (&a.key, a.event_ts, a.created).cmp(&(&b.key, b.event_ts, b.created))
            });
            let ttl = (round % 2 == 0).then(|| Duration::from_millis(next(300) + 1));
            let queries: Vec<(EntityKey, i64)> = (0..100)
                .map(|_| (key(&format!("d{}", next(keys + 1))), next(1_200) as i64 - 100))
                .collect();
            let got = as_of(&rows, &queries, ttl);
            for ((k, t), g) in queries.iter().zip(got) {
                let ttl_ms = ttl.map(|d| d.as_millis() as i64);
                let best = rows
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| {
                        r.key == *k
                            && r.event_ts <= *t
                            && ttl_ms.is_none_or(|d| r.event_ts >= t - d)
                    })
                    .max_by_key(|(i, r)| (r.event_ts, r.created, *i))
                    .map(|(i, _)| i);
                assert_eq!(g, best, "round {round}: {k:?} at {t} (ttl {ttl:?})");
            }
        }
    }

    /// Feast's documented example: a TTL of 2 hours; an entity row before
    /// the first feature row and one 11 hours after its feature row get
    /// nothing.
    #[test]
    fn feasts_point_in_time_example() {
        let h = 3_600_000;
        let rows = vec![
            row("1001", 8 * h, 8 * h, 1),
            row("1001", 9 * h, 9 * h, 2),
            row("1001", 10 * h, 10 * h, 3),
        ];
        let queries = vec![
            (key("1001"), 7 * h),
            (key("1001"), 9 * h + 1),
            (key("1001"), 10 * h),
            (key("1001"), 21 * h),
        ];
        assert_eq!(
            as_of(&rows, &queries, Some(Duration::from_millis(2 * h as u64))),
            vec![None, Some(1), Some(2), None]
        );
    }

    #[tokio::test]
    async fn the_embedded_store_appends_and_scans() {
        let dir = tempfile::tempdir().unwrap();
        let online = crate::embedded::EmbeddedOnline::open(&dir.path().join("f.db")).await.unwrap();
        let store = SqliteOffline::new(online.writer()).await.unwrap();
        scan_returns_the_window(&store).await;
    }

    #[tokio::test]
    async fn the_postgres_store_appends_and_scans() {
        let Some(url) = tessera_store_url() else { return };
        let store = PgOffline::connect(&url).await.unwrap();
        scan_returns_the_window(&store).await;
    }

    fn tessera_store_url() -> Option<String> {
        match std::env::var("TESSERA_TEST_POSTGRES_URL") {
            Ok(u) => Some(u),
            Err(_) if std::env::var("TESSERA_REQUIRE_SERVICES").as_deref() == Ok("1") => {
                panic!("TESSERA_REQUIRE_SERVICES=1 but TESSERA_TEST_POSTGRES_URL is not set")
            }
            Err(_) => None,
        }
    }

    async fn scan_returns_the_window(store: &dyn OfflineStore) {
        let (t, other) = (TenantId::generate(), TenantId::generate());
        let rows =
            vec![row("a", 10, 1, 1), row("a", 20, 1, 2), row("b", 15, 1, 3), row("a", 20, 2, 4)];
        assert_eq!(store.append(&t, "v", &rows).await.unwrap(), 4);
        store.append(&other, "v", &rows).await.unwrap();
        let got = store.scan(&t, "v", &[key("a"), key("c")], 15, 30).await.unwrap();
        assert_eq!(
            got.iter().map(|r| r.values["v"].clone()).collect::<Vec<_>>(),
            [json!(2), json!(4)]
        );
        // Every key in a window, newest first, bounded.
        let window = store.scan_window(&t, "v", 12, 20, 10).await.unwrap();
        let mut at: Vec<i64> = window.iter().map(|r| r.event_ts).collect();
        assert_eq!(at, [20, 20, 15]);
        at = store
            .scan_window(&t, "v", 0, 100, 2)
            .await
            .unwrap()
            .iter()
            .map(|r| r.event_ts)
            .collect();
        assert_eq!(at, [20, 20]);
        store.drop_view(&t, "v").await.unwrap();
        assert!(store.scan(&t, "v", &[key("a")], 0, 100).await.unwrap().is_empty());
        assert_eq!(
            store.scan(&other, "v", &[key("a")], 0, 100).await.unwrap().len(),
            3,
            "another tenant's rows stay"
        );
    }
}
