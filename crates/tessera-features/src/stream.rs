//! Streaming aggregations (F3): a `stream` view's events become partial
//! aggregates per tile (one slide wide) in a [`TileStore`], and each key a
//! batch touched gets its window value written to the online store.
//!
//! - **Once per event**: a tile remembers the offsets it has counted, so a
//!   batch handed out again (a restart, a replica taking over) adds nothing
//!   twice; the online value is rewritten from the tiles either way.
//! - **Event time**: an event is late when it reached the log more than
//!   the view's allowed lateness after it happened (its event time against
//!   its ingestion time): counted, not added. Judged per event, so the result
//!   is the same whichever replica handles which batch, in whatever order.
//! - **Both stores**: the window values go to the offline log (for training
//!   sets) and the online store.
//! - **The value written** for a key is its window ending with the tile of
//!   its newest event (the window a reader would see at that moment), with
//!   that event's time as the row's event time; the view's TTL marks it
//!   `OUTSIDE_MAX_AGE` once it is old.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};
use tessera_core::features::{Aggregation, Source, ViewSpec, parse_duration};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;

use crate::window::{Partial, Windowing, number};
use crate::{Catalog, EntityKey, OnlineError, Row, Write};

/// Lateness when a view does not say.
pub const DEFAULT_LATENESS: Duration = Duration::from_secs(60);

/// One event of a stream view, ready for its tiles.
#[derive(Debug, Clone, PartialEq)]
pub struct TileEvent {
    pub key: EntityKey,
    /// Its offset in the tenant's log (what makes a second delivery a no-op).
    pub offset: u64,
    /// Event time, epoch milliseconds.
    pub ts: i64,
    /// When the log stored it, epoch milliseconds.
    pub ingested: i64,
    /// Per aggregation of the view: the column's number, if any.
    pub values: Vec<Option<f64>>,
}

/// A stream view as its tiles need it.
#[derive(Debug, Clone, PartialEq)]
pub struct TileSpec {
    pub view: String,
    pub windowings: Vec<Windowing>,
    pub lateness: i64,
}

impl TileSpec {
    /// How long a tile is kept: past every window that may still read it.
    pub fn keep(&self) -> i64 {
        let longest = self.windowings.iter().map(|w| w.window + w.slide).max().unwrap_or(0);
        longest + self.lateness
    }
}

/// What one apply did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    pub added: u64,
    /// Events already counted (a redelivery).
    pub duplicates: u64,
    /// Events that came later than the allowed lateness.
    pub late: u64,
}

/// Tiles of stream views, per (tenant, view, aggregation, key, tile).
#[async_trait]
pub trait TileStore: Send + Sync + 'static {
    /// Adds each event to its tile of every aggregation, once; late events
    /// are counted and left out. Durable when it returns.
    async fn apply(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        events: &[TileEvent],
    ) -> Result<Applied, OnlineError>;

    /// The tiles of aggregation `agg` for `key` starting in `[from, to)`,
    /// merged.
    async fn merged(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        agg: usize,
        key: &EntityKey,
        from: i64,
        to: i64,
    ) -> Result<Partial, OnlineError>;
}

/// A stream view of the catalog: its tile spec and aggregations.
pub struct StreamView<'a> {
    pub name: &'a str,
    pub spec: &'a ViewSpec,
    pub event_type: &'a str,
    pub aggregations: &'a [Aggregation],
    pub tiles: TileSpec,
}

/// The catalog's stream views.
pub fn stream_views(catalog: &Catalog) -> Vec<StreamView<'_>> {
    catalog
        .views
        .iter()
        .filter_map(|(name, d)| match &d.spec.source {
            Source::Stream { event_type, aggregations, allowed_lateness } => {
                let windowings: Option<Vec<Windowing>> =
                    aggregations.iter().map(Windowing::of).collect();
                let lateness = allowed_lateness
                    .as_deref()
                    .and_then(|l| parse_duration(l).ok())
                    .unwrap_or(DEFAULT_LATENESS);
                Some(StreamView {
                    name,
                    spec: &d.spec,
                    event_type,
                    aggregations,
                    tiles: TileSpec {
                        view: name.clone(),
                        windowings: windowings?,
                        lateness: lateness.as_millis() as i64,
                    },
                })
            }
            Source::Push {} => None,
        })
        .collect()
}

/// One record of the log, as the stream pipeline reads it.
pub struct Event<'a> {
    pub offset: u64,
    pub event_type: &'a str,
    pub entity: &'a BTreeMap<String, String>,
    pub ts: Timestamp,
    pub ingested: Timestamp,
    pub properties: &'a Map<String, Value>,
}

/// The view's events among `events`: its type, with every join key in the
/// entity (an entity value that is not of the key's type is skipped).
pub fn tile_events(
    catalog: &Catalog,
    view: &StreamView<'_>,
    events: &[Event<'_>],
) -> Vec<TileEvent> {
    let join = catalog.join_keys(view.spec);
    events
        .iter()
        .filter(|e| e.event_type == view.event_type)
        .filter_map(|e| {
            let mut parts = Vec::with_capacity(join.len());
            for (k, ty) in &join {
                let raw = e.entity.get(k)?;
                let v = match ty {
                    tessera_core::features::KeyType::String => Value::from(raw.as_str()),
                    tessera_core::features::KeyType::Int64 => Value::from(raw.parse::<i64>().ok()?),
                };
                parts.push((k.as_str(), ty.key_text(&v).ok()?));
            }
            Some(TileEvent {
                key: EntityKey::of(parts),
                offset: e.offset,
                ts: e.ts.millis(),
                ingested: e.ingested.millis(),
                values: view.aggregations.iter().map(|a| number(e.properties, &a.column)).collect(),
            })
        })
        .collect()
}

/// Adds a batch of one tenant's events to every stream view's tiles, then
/// writes the window values of the keys it touched. Returns what was done,
/// per view.
pub async fn process(
    catalog: &Catalog,
    stores: &crate::Stores,
    tenant: &TenantId,
    events: &[Event<'_>],
    now: Timestamp,
) -> Result<Vec<(String, Applied)>, OnlineError> {
    let (tiles, online) = (&*stores.tiles, &*stores.online);
    let mut out = Vec::new();
    for view in stream_views(catalog) {
        let batch = tile_events(catalog, &view, events);
        if batch.is_empty() {
            continue;
        }
        let applied = tiles.apply(tenant, &view.tiles, &batch).await?;
        // Each key's newest event: from this batch, or its row if newer.
        let mut newest: BTreeMap<EntityKey, i64> = BTreeMap::new();
        for e in &batch {
            let n = newest.entry(e.key.clone()).or_insert(e.ts);
            *n = (*n).max(e.ts);
        }
        let keys: Vec<EntityKey> = newest.keys().cloned().collect();
        let stored = online.read(tenant, view.name, &[], &keys).await?;
        let mut rows = Vec::with_capacity(keys.len());
        for (key, row) in keys.into_iter().zip(stored) {
            let ts = newest[&key].max(row.map_or(i64::MIN, |r| r.event_ts.millis()));
            let mut values = Map::new();
            for (i, (a, w)) in view.aggregations.iter().zip(&view.tiles.windowings).enumerate() {
                let end = w.tile(ts) + w.slide;
                let p = tiles.merged(tenant, &view.tiles, i, &key, end - w.window, end).await?;
                values.insert(a.feature_name(), p.value(a));
            }
            rows.push((key, Row { values, event_ts: Timestamp::from_millis(ts), created: now }));
        }
        let keep = catalog.keep_for(view.spec);
        // The offline log first: a failure after it repeats a row there
        // (harmless to the as-of join), never skips one.
        let offline: Vec<crate::offline::OfflineRow> = rows
            .iter()
            .map(|(key, r)| crate::offline::OfflineRow {
                key: key.clone(),
                event_ts: r.event_ts.millis(),
                created: r.created.millis(),
                values: r.values.clone(),
            })
            .collect();
        stores.offline.append(tenant, view.name, &offline).await?;
        online.write(tenant, Write { view: view.name, rows: rows.clone(), keep }).await?;
        stores.monitor.observe(tenant, view.name, &rows);
        out.push((view.name.to_owned(), applied));
    }
    Ok(out)
}

/// The embedded tile store: tables in the online store's SQLite file.
pub mod embedded {
    use std::collections::BTreeSet;

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
            // Tiles read once per apply, written back at the end.
            let mut tiles: BTreeMap<(usize, String, i64), (Partial, BTreeSet<u64>, bool)> =
                BTreeMap::new();
            for e in events {
                for (i, w) in spec.windowings.iter().enumerate() {
                    let id = (i, e.key.0.clone(), w.tile(e.ts));
                    if let std::collections::btree_map::Entry::Vacant(slot) = tiles.entry(id) {
                        let id = slot.key();
                        let row = sqlx::query(
                            "SELECT partial, seen FROM tiles WHERE tenant = ? AND view = ? AND agg = ? AND key = ? AND tile = ?",
                        )
                        .bind(tenant.as_str())
                        .bind(&spec.view)
                        .bind(i as i64)
                        .bind(&id.1)
                        .bind(id.2)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(err)?;
                        let loaded = match row {
                            Some(r) => {
                                let p: String = r.try_get("partial").map_err(err)?;
                                let s: String = r.try_get("seen").map_err(err)?;
                                (
                                    serde_json::from_str(&p).map_err(err)?,
                                    serde_json::from_str(&s).map_err(err)?,
                                    false,
                                )
                            }
                            None => (Partial::default(), BTreeSet::new(), false),
                        };
                        slot.insert(loaded);
                    }
                }
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
            for ((i, key, tile), (partial, seen, dirty)) in &tiles {
                if !dirty {
                    continue;
                }
                sqlx::query(
                    "INSERT INTO tiles (tenant, view, agg, key, tile, partial, seen) VALUES (?, ?, ?, ?, ?, ?, ?)
                     ON CONFLICT (tenant, view, agg, key, tile) DO UPDATE SET partial = excluded.partial, seen = excluded.seen",
                )
                .bind(tenant.as_str())
                .bind(&spec.view)
                .bind(*i as i64)
                .bind(key)
                .bind(*tile)
                .bind(serde_json::to_string(partial).map_err(err)?)
                .bind(serde_json::to_string(seen).map_err(err)?)
                .execute(&mut *tx)
                .await
                .map_err(err)?;
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
            key: &EntityKey,
            from: i64,
            to: i64,
        ) -> Result<Partial, OnlineError> {
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT partial FROM tiles WHERE tenant = ? AND view = ? AND agg = ? AND key = ? AND tile >= ? AND tile < ?",
            )
            .bind(tenant.as_str())
            .bind(&spec.view)
            .bind(agg as i64)
            .bind(key.as_str())
            .bind(from)
            .bind(to)
            .fetch_all(&self.pool)
            .await
            .map_err(err)?;
            let mut out = Partial::default();
            for r in rows {
                out.merge(&serde_json::from_str(&r).map_err(err)?);
            }
            Ok(out)
        }
    }
}

/// The Redis tile store, for replicas sharing Redis: a hash per tile
/// (`<prefix>:<tenant>:<view>:<agg>:<key>:<tile>`: events, n, sum, sum_sq,
/// min, max) with the set of offsets it counted beside it. One Lua script applies a batch, so replicas
/// adding to the same tile never lose an update and a redelivered event is
/// counted once. Tiles expire once no window can read them.
pub mod redis_tiles {
    use super::*;
    use crate::redis_store::Link;

    const APPLY: &str = r"
local lateness = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local na = tonumber(ARGV[3])
local ne = tonumber(ARGV[4])
local added, dup, late = 0, 0, 0
local i = 5
for e = 1, ne do
  local off = ARGV[i]
  local ts = tonumber(ARGV[i + 1])
  local ingested = tonumber(ARGV[i + 2])
  i = i + 3
  if redis.call('SISMEMBER', ARGV[i] .. ':seen', off) == 1 then
    dup = dup + 1
    i = i + 2 * na
  elseif ts < ingested - lateness then
    late = late + 1
    i = i + 2 * na
  else
    local counted = false
    for a = 1, na do
      local tk = ARGV[i]
      local v = ARGV[i + 1]
      i = i + 2
      if redis.call('SADD', tk .. ':seen', off) == 1 then
        counted = true
        redis.call('HINCRBY', tk, 'events', 1)
        if v ~= '' then
          local x = tonumber(v)
          redis.call('HINCRBY', tk, 'n', 1)
          redis.call('HINCRBYFLOAT', tk, 'sum', v)
          redis.call('HINCRBYFLOAT', tk, 'sum_sq', string.format('%.17g', x * x))
          local mn = tonumber(redis.call('HGET', tk, 'min') or '')
          if (not mn) or x < mn then redis.call('HSET', tk, 'min', v) end
          local mx = tonumber(redis.call('HGET', tk, 'max') or '')
          if (not mx) or x > mx then redis.call('HSET', tk, 'max', v) end
        end
        redis.call('PEXPIRE', tk, keep)
        redis.call('PEXPIRE', tk .. ':seen', keep)
      end
    end
    if counted then added = added + 1 else dup = dup + 1 end
  end
end
return {added, dup, late}
";

    pub struct RedisTiles {
        link: Link,
        prefix: String,
        script: redis::Script,
    }

    impl RedisTiles {
        pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<Self, OnlineError> {
            Ok(Self {
                link: Link::new(url, timeout)?,
                prefix: prefix.to_owned(),
                script: redis::Script::new(APPLY),
            })
        }

        fn tile_key(
            &self,
            tenant: &TenantId,
            view: &str,
            agg: usize,
            key: &EntityKey,
            tile: i64,
        ) -> String {
            format!("{}:{}:{view}:{agg}:{}:{tile}", self.prefix, tenant.as_str(), key.as_str())
        }
    }

    #[async_trait]
    impl TileStore for RedisTiles {
        async fn apply(
            &self,
            tenant: &TenantId,
            spec: &TileSpec,
            events: &[TileEvent],
        ) -> Result<Applied, OnlineError> {
            let mut inv = self.script.prepare_invoke();
            inv.arg(spec.lateness)
                // Tiles outlive their last window by an hour of wall time.
                .arg(spec.keep() + 3_600_000)
                .arg(spec.windowings.len())
                .arg(events.len());
            for e in events {
                inv.arg(e.offset).arg(e.ts).arg(e.ingested);
                for (i, w) in spec.windowings.iter().enumerate() {
                    inv.arg(self.tile_key(tenant, &spec.view, i, &e.key, w.tile(e.ts)));
                    inv.arg(
                        e.values[i]
                            .filter(|v| v.is_finite())
                            .map_or(String::new(), |v| format!("{v:?}")),
                    );
                }
            }
            let (added, duplicates, late): (u64, u64, u64) =
                self.link.call(|mut c| async move { inv.invoke_async(&mut c).await }).await?;
            Ok(Applied { added, duplicates, late })
        }

        async fn merged(
            &self,
            tenant: &TenantId,
            spec: &TileSpec,
            agg: usize,
            key: &EntityKey,
            from: i64,
            to: i64,
        ) -> Result<Partial, OnlineError> {
            let Some(w) = spec.windowings.get(agg) else { return Ok(Partial::default()) };
            let mut pipe = redis::pipe();
            let mut tile = from;
            while tile < to {
                pipe.cmd("HMGET")
                    .arg(self.tile_key(tenant, &spec.view, agg, key, tile))
                    .arg(&["events", "n", "sum", "sum_sq", "min", "max"]);
                tile += w.slide;
            }
            let tiles: Vec<Vec<Option<String>>> =
                self.link.call(|mut c| async move { pipe.query_async(&mut c).await }).await?;
            let mut out = Partial::default();
            for t in tiles {
                let num = |i: usize| {
                    t.get(i).and_then(|v| v.as_deref()).and_then(|v| v.parse::<f64>().ok())
                };
                let Some(events) = num(0) else { continue };
                out.merge(&Partial {
                    events: events as u64,
                    n: num(1).unwrap_or(0.0) as u64,
                    sum: num(2).unwrap_or(0.0),
                    sum_sq: num(3).unwrap_or(0.0),
                    min: num(4),
                    max: num(5),
                });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;
    use tessera_core::features::{Definition, EntitySpec};

    use super::*;
    use crate::OnlineStore as _;

    fn spec() -> TileSpec {
        TileSpec {
            view: "spend".into(),
            windowings: vec![
                Windowing { window: 300_000, slide: 30_000 },
                Windowing { window: 60_000, slide: 60_000 },
            ],
            lateness: 60_000,
        }
    }

    fn ev(key: &str, offset: u64, ts: i64, v: Option<f64>) -> TileEvent {
        TileEvent {
            key: EntityKey::of(vec![("customer_id", key.into())]),
            offset,
            ts,
            // It reached the log a second after it happened.
            ingested: ts + 1_000,
            values: vec![v, v],
        }
    }

    async fn tiles_count_once_and_leave_late_events_out(store: &dyn TileStore) {
        let t = TenantId::generate();
        let s = spec();
        let batch = vec![
            ev("c1", 1, 1_000_000, Some(2.0)),
            ev("c1", 2, 1_010_000, Some(4.0)),
            ev("c2", 3, 1_020_000, None),
        ];
        let a = store.apply(&t, &s, &batch).await.unwrap();
        assert_eq!(a, Applied { added: 3, duplicates: 0, late: 0 });
        let again = store.apply(&t, &s, &batch).await.unwrap();
        assert_eq!(
            again,
            Applied { added: 0, duplicates: 3, late: 0 },
            "a redelivery counts nothing"
        );
        let k1 = &batch[0].key;
        let p = store.merged(&t, &s, 0, k1, 750_000, 1_050_000).await.unwrap();
        assert_eq!((p.events, p.n, p.sum, p.min, p.max), (2, 2, 6.0, Some(2.0), Some(4.0)));
        // One that reached the log two minutes after it happened is late.
        let late = store
            .apply(
                &t,
                &s,
                &[
                    TileEvent { ingested: 950_000 + 120_000, ..ev("c1", 4, 950_000, Some(100.0)) },
                    ev("c1", 5, 990_000, Some(1.0)),
                ],
            )
            .await
            .unwrap();
        assert_eq!(late, Applied { added: 1, duplicates: 0, late: 1 });
        let p = store.merged(&t, &s, 0, k1, 750_000, 1_050_000).await.unwrap();
        assert_eq!((p.events, p.sum, p.min), (3, 7.0, Some(1.0)));
        // Another tenant's tiles are its own.
        let other = store.merged(&TenantId::generate(), &s, 0, k1, 0, 2_000_000).await.unwrap();
        assert_eq!(other, Partial::default());
    }

    /// Two writers at once (two replicas) add up.
    async fn concurrent_applies_add_up(store: std::sync::Arc<dyn TileStore>) {
        let t = TenantId::generate();
        let s = spec();
        let part = |from: u64| -> Vec<TileEvent> {
            (from..from + 200).map(|o| ev("c1", o, 1_000_000 + o as i64, Some(1.0))).collect()
        };
        let (a, b) = (part(0), part(200));
        let (ra, rb) = tokio::join!(store.apply(&t, &s, &a), store.apply(&t, &s, &b));
        assert_eq!(ra.unwrap().added + rb.unwrap().added, 400);
        let key = &a[0].key;
        let w = s.windowings[0];
        let end = w.tile(1_000_399) + w.slide;
        let p = store.merged(&t, &s, 0, key, end - w.window, end).await.unwrap();
        assert_eq!(p.events, 400);
    }

    async fn embedded()
    -> (tempfile::TempDir, crate::embedded::EmbeddedOnline, embedded::EmbeddedTiles) {
        let dir = tempfile::tempdir().unwrap();
        let online = crate::embedded::EmbeddedOnline::open(&dir.path().join("f.db")).await.unwrap();
        let tiles = embedded::EmbeddedTiles::new(online.writer()).await.unwrap();
        (dir, online, tiles)
    }

    fn redis() -> Option<redis_tiles::RedisTiles> {
        let url = crate::conformance::redis_url()?;
        Some(
            redis_tiles::RedisTiles::new(&url, "tessera-test:tiles", Duration::from_secs(2))
                .unwrap(),
        )
    }

    #[tokio::test]
    async fn embedded_tiles() {
        let (_d, _o, tiles) = embedded().await;
        tiles_count_once_and_leave_late_events_out(&tiles).await;
        concurrent_applies_add_up(std::sync::Arc::new(tiles)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_tiles() {
        let Some(tiles) = redis() else { return };
        tiles_count_once_and_leave_late_events_out(&tiles).await;
        concurrent_applies_add_up(std::sync::Arc::new(tiles)).await;
    }

    fn def<S>(spec: S) -> Definition<S> {
        let at = Timestamp::from_millis(0);
        Definition { name: String::new(), version: 1, spec, created_at: at, updated_at: at }
    }

    /// A stream view end to end: events in, window values online; a replay
    /// of the same events leaves the same values.
    #[tokio::test]
    async fn a_stream_view_writes_its_window_values_online() {
        let (_d, online, tiles) = embedded().await;
        let offline = crate::offline::SqliteOffline::new(online.writer()).await.unwrap();
        let online = std::sync::Arc::new(online);
        let stores = crate::Stores {
            online: online.clone(),
            tiles: std::sync::Arc::new(tiles),
            offline: std::sync::Arc::new(offline),
            monitor: std::sync::Arc::default(),
        };
        let mut catalog = Catalog::default();
        catalog.entities.insert(
            "customer".into(),
            def(serde_json::from_value::<EntitySpec>(json!({"join_keys": ["customer_id"]}))
                .unwrap()),
        );
        let view: ViewSpec =
            serde_json::from_value(json!({"entities": ["customer"], "source": {"stream": {
            "event_type": "purchase", "aggregations": [
                {"column": "total", "function": "sum", "window": "5m", "slide": "30s"},
                {"function": "count", "window": "5m", "slide": "30s"}]}}}))
            .unwrap();
        let view = tessera_core::features::validate_view(
            "spend",
            &view,
            &catalog.entities.iter().map(|(k, d)| (k.clone(), d.spec.clone())).collect(),
        )
        .unwrap();
        catalog.views.insert("spend".into(), def(view));
        let entity =
            |c: &str| std::collections::BTreeMap::from([("customer_id".to_owned(), c.to_owned())]);
        let (e1, e2) = (entity("c1"), entity("c2"));
        let props = |v: f64| json!({"total": v}).as_object().unwrap().clone();
        let (p1, p2, p3) = (props(10.0), props(5.0), props(1.0));
        let events = vec![
            Event {
                offset: 1,
                event_type: "purchase",
                entity: &e1,
                ts: Timestamp::from_millis(1_000_000),
                ingested: Timestamp::from_millis(1_000_000 + 1_000),
                properties: &p1,
            },
            Event {
                offset: 2,
                event_type: "click",
                entity: &e1,
                ts: Timestamp::from_millis(1_001_000),
                ingested: Timestamp::from_millis(1_001_000 + 1_000),
                properties: &p1,
            },
            Event {
                offset: 3,
                event_type: "purchase",
                entity: &e1,
                ts: Timestamp::from_millis(1_200_000),
                ingested: Timestamp::from_millis(1_200_000 + 1_000),
                properties: &p2,
            },
            Event {
                offset: 4,
                event_type: "purchase",
                entity: &e2,
                ts: Timestamp::from_millis(1_250_000),
                ingested: Timestamp::from_millis(1_250_000 + 1_000),
                properties: &p3,
            },
        ];
        let t = TenantId::generate();
        let now = Timestamp::now();
        let done = process(&catalog, &stores, &t, &events, now).await.unwrap();
        assert_eq!(done, vec![("spend".to_owned(), Applied { added: 3, duplicates: 0, late: 0 })]);
        let read = async || {
            let keys = [
                EntityKey::of(vec![("customer_id", "c1".into())]),
                EntityKey::of(vec![("customer_id", "c2".into())]),
            ];
            let f = vec!["total_sum_5m".to_owned(), "count_5m".to_owned()];
            online.read(&t, "spend", &f, &keys).await.unwrap()
        };
        let rows = read().await;
        let c1 = rows[0].as_ref().unwrap();
        // c1's newest event (1,200,000) ends its window at 1,230,000: both purchases are in it.
        assert_eq!((&c1.values["total_sum_5m"], &c1.values["count_5m"]), (&json!(15.0), &json!(2)));
        assert_eq!(c1.event_ts, Timestamp::from_millis(1_200_000));
        assert_eq!(rows[1].as_ref().unwrap().values["count_5m"], json!(1));
        let replay = process(&catalog, &stores, &t, &events, now).await.unwrap();
        assert_eq!(replay[0].1, Applied { added: 0, duplicates: 3, late: 0 });
        assert_eq!(read().await, rows, "a replay changes nothing");
        let c1 = EntityKey::of(vec![("customer_id", "c1".into())]);
        let logged = stores.offline.scan(&t, "spend", &[c1], i64::MIN, i64::MAX).await.unwrap();
        assert!(
            logged.iter().any(|r| r.values["total_sum_5m"] == json!(15.0)),
            "window values reach the offline log: {logged:?}"
        );
    }
}
