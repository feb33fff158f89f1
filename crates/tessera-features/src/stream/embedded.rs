//! The embedded tile store: tables in the online store's SQLite file.

use std::collections::{BTreeSet, HashMap};

use sqlx::Row as _;
use sqlx::sqlite::SqlitePool;

use super::*;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tiles (
    tenant TEXT NOT NULL,
    view TEXT NOT NULL,
    agg INTEGER NOT NULL,
    key TEXT NOT NULL,
    tile INTEGER NOT NULL,
    partial TEXT NOT NULL,
    seen TEXT NOT NULL,
    PRIMARY KEY (tenant, view, agg, key, tile)
) WITHOUT ROWID;
";

/// Tiles per statement (three or seven parameters each; SQLite allows 32766).
const CHUNK: usize = 300;

fn err(e: impl std::fmt::Display) -> OnlineError {
    OnlineError::Internal(e.to_string())
}

pub struct EmbeddedTiles {
    pool: SqlitePool,
}

impl EmbeddedTiles {
    /// Tiles in the database of `pool` (one writer connection).
    pub async fn new(pool: SqlitePool) -> Result<Self, OnlineError> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await.map_err(err)?;
        Ok(Self { pool })
    }
}

#[async_trait]
impl TileStore for EmbeddedTiles {
    async fn apply(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        events: &[TileEvent],
    ) -> Result<Applied, OnlineError> {
        let mut tx = self.pool.begin().await.map_err(err)?;
        let mut newest = i64::MIN;
        let mut out = Applied::default();
        // The batch's tiles, read in a few statements and written back at the end.
        let ids: BTreeSet<(usize, String, i64)> = events
            .iter()
            .flat_map(|e| {
                spec.windowings.iter().enumerate().map(|(i, w)| (i, e.key.0.clone(), w.tile(e.ts)))
            })
            .collect();
        let ids: Vec<(usize, String, i64)> = ids.into_iter().collect();
        let mut tiles: BTreeMap<(usize, String, i64), (Partial, BTreeSet<u64>, bool)> = ids
            .iter()
            .map(|id| (id.clone(), (Partial::default(), BTreeSet::new(), false)))
            .collect();
        for chunk in ids.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "SELECT agg, key, tile, partial, seen FROM tiles WHERE tenant = ",
            );
            q.push_bind(tenant.as_str())
                .push(" AND view = ")
                .push_bind(&spec.view)
                .push(" AND (agg, key, tile) IN (VALUES ");
            for (n, (agg, key, tile)) in chunk.iter().enumerate() {
                q.push(if n == 0 { "(" } else { ", (" })
                    .push_bind(*agg as i64)
                    .push(", ")
                    .push_bind(key.as_str())
                    .push(", ")
                    .push_bind(*tile)
                    .push(")");
            }
            q.push(")");
            for r in q.build().fetch_all(&mut *tx).await.map_err(err)? {
                let id: (usize, String, i64) = (
                    r.try_get::<i64, _>("agg").map_err(err)? as usize,
                    r.try_get("key").map_err(err)?,
                    r.try_get("tile").map_err(err)?,
                );
                let p: String = r.try_get("partial").map_err(err)?;
                let s: String = r.try_get("seen").map_err(err)?;
                let loaded = (
                    serde_json::from_str(&p).map_err(err)?,
                    serde_json::from_str(&s).map_err(err)?,
                    false,
                );
                tiles.insert(id, loaded);
            }
        }
        for e in events {
            // Counted before (a redelivery), or too late.
            let first = (0, e.key.0.clone(), spec.windowings[0].tile(e.ts));
            if tiles.get(&first).is_some_and(|(_, seen, _)| seen.contains(&e.offset)) {
                out.duplicates += 1;
                continue;
            }
            newest = newest.max(e.ingested);
            if e.ts < e.ingested - spec.lateness {
                out.late += 1;
                continue;
            }
            let mut counted = false;
            for (i, w) in spec.windowings.iter().enumerate() {
                let id = (i, e.key.0.clone(), w.tile(e.ts));
                let Some((partial, seen, dirty)) = tiles.get_mut(&id) else { continue };
                if seen.insert(e.offset) {
                    partial.add(e.values[i]);
                    *dirty = true;
                    counted = true;
                }
            }
            if counted { out.added += 1 } else { out.duplicates += 1 }
        }
        let dirty: Vec<(&(usize, String, i64), String, String)> = tiles
            .iter()
            .filter(|(_, (_, _, dirty))| *dirty)
            .map(|(id, (partial, seen, _))| {
                Ok::<_, OnlineError>((
                    id,
                    serde_json::to_string(partial).map_err(err)?,
                    serde_json::to_string(seen).map_err(err)?,
                ))
            })
            .collect::<Result<_, _>>()?;
        for chunk in dirty.chunks(CHUNK) {
            let mut q = sqlx::QueryBuilder::new(
                "INSERT INTO tiles (tenant, view, agg, key, tile, partial, seen) ",
            );
            q.push_values(chunk, |mut b, ((agg, key, tile), partial, seen)| {
                b.push_bind(tenant.as_str())
                    .push_bind(&spec.view)
                    .push_bind(*agg as i64)
                    .push_bind(key.as_str())
                    .push_bind(*tile)
                    .push_bind(partial.as_str())
                    .push_bind(seen.as_str());
            });
            q.push(
                " ON CONFLICT (tenant, view, agg, key, tile) DO UPDATE SET partial = excluded.partial, seen = excluded.seen",
            );
            q.build().execute(&mut *tx).await.map_err(err)?;
        }
        if newest != i64::MIN {
            // Tiles no event can reach any more (older ones are late).
            sqlx::query("DELETE FROM tiles WHERE tenant = ? AND view = ? AND tile < ?")
                .bind(tenant.as_str())
                .bind(&spec.view)
                .bind(newest.saturating_sub(spec.keep()))
                .execute(&mut *tx)
                .await
                .map_err(err)?;
        }
        tx.commit().await.map_err(err)?;
        Ok(out)
    }

    async fn merged(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        agg: usize,
        wants: &[(EntityKey, i64, i64)],
    ) -> Result<Vec<Partial>, OnlineError> {
        let mut tiles: HashMap<String, Vec<(i64, Partial)>> = HashMap::new();
        for chunk in wants.chunks(400) {
            let from = chunk.iter().map(|w| w.1).min().unwrap_or(0);
            let to = chunk.iter().map(|w| w.2).max().unwrap_or(0);
            let mut q =
                sqlx::QueryBuilder::new("SELECT key, tile, partial FROM tiles WHERE tenant = ");
            q.push_bind(tenant.as_str())
                .push(" AND view = ")
                .push_bind(&spec.view)
                .push(" AND agg = ")
                .push_bind(agg as i64)
                .push(" AND tile >= ")
                .push_bind(from)
                .push(" AND tile < ")
                .push_bind(to)
                .push(" AND key IN (");
            let mut list = q.separated(", ");
            for (key, _, _) in chunk {
                list.push_bind(key.as_str());
            }
            q.push(")");
            for r in q.build().fetch_all(&self.pool).await.map_err(err)? {
                let partial: String = r.try_get("partial").map_err(err)?;
                tiles.entry(r.try_get("key").map_err(err)?).or_default().push((
                    r.try_get("tile").map_err(err)?,
                    serde_json::from_str(&partial).map_err(err)?,
                ));
            }
        }
        Ok(wants
            .iter()
            .map(|(key, from, to)| {
                let mut out = Partial::default();
                for (tile, p) in tiles.get(key.as_str()).into_iter().flatten() {
                    if (*from..*to).contains(tile) {
                        out.merge(p);
                    }
                }
                out
            })
            .collect())
    }
}
