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

    /// For each `(key, from, to)`: the tiles of aggregation `agg` for the
    /// key starting in `[from, to)`, merged (one round trip for them all).
    async fn merged(
        &self,
        tenant: &TenantId,
        spec: &TileSpec,
        agg: usize,
        wants: &[(EntityKey, i64, i64)],
    ) -> Result<Vec<Partial>, OnlineError>;
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
        let newest: Vec<i64> = keys
            .iter()
            .zip(stored)
            .map(|(key, row)| newest[key].max(row.map_or(i64::MIN, |r| r.event_ts.millis())))
            .collect();
        let mut values: Vec<Map<String, Value>> = vec![Map::new(); keys.len()];
        for (i, (a, w)) in view.aggregations.iter().zip(&view.tiles.windowings).enumerate() {
            let wants: Vec<(EntityKey, i64, i64)> = keys
                .iter()
                .zip(&newest)
                .map(|(key, ts)| {
                    let end = w.tile(*ts) + w.slide;
                    (key.clone(), end - w.window, end)
                })
                .collect();
            let merged = tiles.merged(tenant, &view.tiles, i, &wants).await?;
            for (v, p) in values.iter_mut().zip(merged) {
                v.insert(a.feature_name(), p.value(a));
            }
        }
        let rows: Vec<(EntityKey, Row)> = keys
            .into_iter()
            .zip(newest)
            .zip(values)
            .map(|((key, ts), values)| {
                (key, Row { values, event_ts: Timestamp::from_millis(ts), created: now })
            })
            .collect();
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

pub mod embedded;
pub mod redis_tiles;

#[cfg(test)]
mod tests;
