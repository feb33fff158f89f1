//! Online reads and pushes in the shapes of Feast's feature server, so a
//! Feast user's requests (and Feast's own `remote` online store) work as
//! they are: `entities` and `df` as columns, `metadata.feature_names`, and
//! per feature a column of `values`, `statuses` and `event_timestamps`.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tessera_core::ValidationError;
use tessera_core::features::{Dtype, Source, ViewSpec, parse_timestamp, resolve_refs};
use tessera_core::ids::TenantId;
use tessera_core::time::Timestamp;
use utoipa::ToSchema;

use crate::offline::OfflineRow;
use crate::{Catalog, EntityKey, OnlineError, OnlineStore, Row, Write};

/// Most entity rows one read or push takes.
pub const MAX_ROWS: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error(transparent)]
    Store(#[from] OnlineError),
}

fn invalid(param: &str, message: impl Into<String>) -> FeatureError {
    FeatureError::Invalid(ValidationError::new(param, message))
}

/// Body of `POST /v1/features/online` (Feast's `/get-online-features`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct OnlineRequest {
    /// Join key columns: `{"customer_id": ["c1", "c2"]}`.
    #[schema(value_type = Object)]
    pub entities: Map<String, Value>,
    /// `view:feature` references (`view:*` for all of a view's).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// A feature service's name, instead of `features`.
    #[serde(default)]
    pub feature_service: Option<String>,
    /// Name features `view__feature` instead of `feature`.
    #[serde(default)]
    pub full_feature_names: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    Present,
    /// A row was found and the value is null.
    NullValue,
    /// No row for the entity key, or its row was written before the feature
    /// was added to the view.
    NotFound,
    /// The row is older than the view's TTL (its value is still given).
    OutsideMaxAge,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Column {
    #[schema(value_type = Vec<Object>)]
    pub values: Vec<Value>,
    pub statuses: Vec<Status>,
    /// RFC 3339; `1970-01-01T00:00:00Z` where there is no row.
    pub event_timestamps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Metadata {
    pub feature_names: Vec<String>,
}

/// The answer: the entity columns first, then one column per feature, in
/// the order asked; `results[i]` is the column of `metadata.feature_names[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct OnlineResponse {
    pub metadata: Metadata,
    pub results: Vec<Column>,
}

const EPOCH: &str = "1970-01-01T00:00:00Z";

/// A named column of a request: one value per row.
type Col<'a> = (&'a str, Vec<&'a Value>);

/// The typed columns of a request's `entities` or `df`: every value a list
/// of one length (a single value stands for every row).
fn columns<'a>(
    param: &str,
    cols: &'a Map<String, Value>,
    max: usize,
) -> Result<(usize, Vec<Col<'a>>), FeatureError> {
    let n = cols.values().filter_map(Value::as_array).map(Vec::len).max().unwrap_or(1);
    if n > max {
        return Err(invalid(param, format!("at most {max} rows per request, got {n}")));
    }
    let mut out = Vec::with_capacity(cols.len());
    for (name, v) in cols {
        let values: Vec<&Value> = match v {
            Value::Array(items) if items.len() == n => items.iter().collect(),
            Value::Array(items) => {
                return Err(invalid(
                    &format!("{param}.{name}"),
                    format!("{param}.{name} has {} values, other columns {n}", items.len()),
                ));
            }
            one => vec![one; n],
        };
        out.push((name.as_str(), values));
    }
    Ok((n, out))
}

/// Each row's entity key for a view, from the columns.
fn keys_for(
    catalog: &Catalog,
    view_name: &str,
    view: &ViewSpec,
    param: &str,
    n: usize,
    cols: &[Col<'_>],
) -> Result<Vec<EntityKey>, FeatureError> {
    let join = catalog.join_keys(view);
    let mut texts: Vec<Vec<(&str, String)>> = vec![Vec::with_capacity(join.len()); n];
    for (key, ty) in &join {
        let Some((_, values)) = cols.iter().find(|(c, _)| c == key) else {
            return Err(invalid(
                param,
                format!(
                    "feature view {view_name:?} is keyed by {key:?}: give it as a column of {param}"
                ),
            ));
        };
        for (i, v) in values.iter().enumerate() {
            let t = ty.key_text(v).map_err(|m| {
                invalid(&format!("{param}.{key}[{i}]"), format!("{param}.{key}[{i}]: {m}"))
            })?;
            texts[i].push((key.as_str(), t));
        }
    }
    Ok(texts.into_iter().map(EntityKey::of).collect())
}

/// Reads the features asked for, for every entity row.
pub async fn online(
    catalog: &Catalog,
    store: &dyn OnlineStore,
    tenant: &TenantId,
    req: &OnlineRequest,
    now: Timestamp,
) -> Result<OnlineResponse, FeatureError> {
    let refs = refs_of(catalog, req.feature_service.as_deref(), req.features.as_deref())?;
    let wanted = resolve_refs("features", &refs, |v| catalog.views.get(v).map(|d| &d.spec))?;
    let (n, cols) = columns("entities", &req.entities, MAX_ROWS)?;
    let mut names: Vec<String> = cols.iter().map(|(c, _)| (*c).to_owned()).collect();
    let mut results: Vec<Column> = cols
        .iter()
        .map(|(_, values)| Column {
            values: values.iter().map(|v| (*v).clone()).collect(),
            statuses: vec![Status::Present; n],
            event_timestamps: vec![EPOCH.to_owned(); n],
        })
        .collect();
    let mut seen: BTreeSet<String> = names.iter().cloned().collect();
    for (view_name, features) in &wanted {
        let view = &catalog.views[view_name].spec;
        let keys = keys_for(catalog, view_name, view, "entities", n, &cols)?;
        let rows = store.read(tenant, view_name, features, &keys).await?;
        let ttl = view.ttl();
        for f in features {
            let name = if req.full_feature_names { format!("{view_name}__{f}") } else { f.clone() };
            if !seen.insert(name.clone()) {
                return Err(invalid(
                    "features",
                    format!("two features answer to {name:?}: ask with full_feature_names"),
                ));
            }
            let mut col = Column {
                values: Vec::with_capacity(n),
                statuses: Vec::with_capacity(n),
                event_timestamps: Vec::with_capacity(n),
            };
            for row in &rows {
                let (value, status, ts) = match row {
                    None => (Value::Null, Status::NotFound, EPOCH.to_owned()),
                    // A row written before the feature was added lacks it (as Feast says).
                    Some(r) if !r.values.contains_key(f) => {
                        (Value::Null, Status::NotFound, r.event_ts.to_rfc3339())
                    }
                    Some(r) => {
                        let v = r.values.get(f).cloned().unwrap_or(Value::Null);
                        let stale = ttl.is_some_and(|t| {
                            now.millis() - r.event_ts.millis() > t.as_millis() as i64
                        });
                        let status = if stale {
                            Status::OutsideMaxAge
                        } else if v.is_null() {
                            Status::NullValue
                        } else {
                            Status::Present
                        };
                        (v, status, r.event_ts.to_rfc3339())
                    }
                };
                col.values.push(value);
                col.statuses.push(status);
                col.event_timestamps.push(ts);
            }
            names.push(name);
            results.push(col);
        }
    }
    Ok(OnlineResponse { metadata: Metadata { feature_names: names }, results })
}

/// Where pushed rows go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PushTo {
    #[default]
    Online,
    Offline,
    /// Feast's name for both.
    OnlineAndOffline,
    Both,
}

/// Body of `POST /v1/features/push` (Feast's `/push`).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PushRequest {
    /// The push view's name (Feast's push source).
    #[serde(alias = "feature_view_name")]
    pub push_source_name: String,
    /// Columns: the view's join keys, `event_timestamp`, optionally `created`,
    /// and its features (a missing feature is null).
    #[schema(value_type = Object)]
    pub df: Map<String, Value>,
    #[serde(default)]
    pub to: PushTo,
    /// Accepted for Feast's clients; Tessera always reads current definitions.
    #[serde(default)]
    pub allow_registry_cache: Option<bool>,
    #[serde(default)]
    pub transform_on_write: Option<bool>,
}

/// Checks every cell, then writes the rows (all or none); returns how many.
pub async fn push(
    catalog: &Catalog,
    stores: &crate::Stores,
    tenant: &TenantId,
    req: &PushRequest,
    now: Timestamp,
) -> Result<u64, FeatureError> {
    let name = &req.push_source_name;
    let Some(view) = catalog.views.get(name).map(|d| &d.spec) else {
        return Err(invalid("push_source_name", format!("unknown feature view {name:?}")));
    };
    if !matches!(view.source, Source::Push {}) {
        return Err(invalid(
            "push_source_name",
            format!("feature view {name:?} is a stream view: its rows come from its events"),
        ));
    }
    let (n, cols) = columns("df", &req.df, MAX_ROWS)?;
    let join = catalog.join_keys(view);
    for (c, _) in &cols {
        let known = *c == "event_timestamp"
            || *c == "created"
            || join.iter().any(|(k, _)| k == c)
            || view.field(c).is_some();
        if !known {
            return Err(invalid(
                &format!("df.{c}"),
                format!("df.{c}: feature view {name:?} has no column {c:?}"),
            ));
        }
    }
    let keys = keys_for(catalog, name, view, "df", n, &cols)?;
    let col = |c: &str| cols.iter().find(|(n, _)| *n == c).map(|(_, v)| v);
    let Some(ts) = col("event_timestamp") else {
        return Err(invalid("df.event_timestamp", "df needs an event_timestamp column"));
    };
    let created = col("created");
    let mut rows = Vec::with_capacity(n);
    for (i, key) in keys.into_iter().enumerate() {
        let stamp = |c: &str, v: &Value| {
            parse_timestamp(v).ok_or_else(|| {
                invalid(
                    &format!("df.{c}[{i}]"),
                    format!("df.{c}[{i}]: expected RFC 3339 or epoch milliseconds, got {v}"),
                )
            })
        };
        let event_ts = stamp("event_timestamp", ts[i])?;
        let created = match created {
            Some(c) if !c[i].is_null() => stamp("created", c[i])?,
            _ => now,
        };
        let mut values = Map::new();
        for f in &view.schema {
            let v = match col(&f.name) {
                Some(c) => f.dtype.coerce(c[i]).map_err(|m| {
                    invalid(&format!("df.{}[{i}]", f.name), format!("df.{}[{i}]: {m}", f.name))
                })?,
                None => Value::Null,
            };
            values.insert(f.name.clone(), v);
        }
        rows.push((key, Row { values, event_ts, created }));
    }
    let n = rows.len() as u64;
    // The offline log first: a failure after it repeats a row there on the
    // retry (harmless to the as-of join), never loses one online.
    if req.to != PushTo::Online {
        let offline: Vec<OfflineRow> = rows
            .iter()
            .map(|(key, r)| OfflineRow {
                key: key.clone(),
                event_ts: r.event_ts.millis(),
                created: r.created.millis(),
                values: r.values.clone(),
            })
            .collect();
        stores.offline.append(tenant, name, &offline).await?;
    }
    if req.to != PushTo::Offline {
        let keep = catalog.keep_for(view);
        stores.online.write(tenant, Write { view: name, rows: rows.clone(), keep }).await?;
    }
    stores.monitor.observe(tenant, name, &rows);
    Ok(n)
}

/// Most entity rows one training set takes.
pub const MAX_HISTORICAL_ROWS: usize = 200_000;

/// Body of `POST /v1/features/historical`: entity rows with timestamps
/// (Feast's `entity_df`, as columns), and the features to join to them.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct HistoricalRequest {
    /// Columns: the views' join keys, `event_timestamp`, and any others
    /// (labels), which pass through.
    #[schema(value_type = Object)]
    pub entity_df: Map<String, Value>,
    #[serde(default)]
    pub features: Option<Vec<String>>,
    #[serde(default)]
    pub feature_service: Option<String>,
    #[serde(default)]
    pub full_feature_names: bool,
}

/// A training set: the entity columns as given, then one column per
/// feature, a row per entity row, in order.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Table {
    pub columns: Vec<String>,
    #[schema(value_type = Vec<Vec<Object>>)]
    pub rows: Vec<Vec<Value>>,
    /// Each column's declared type: a feature's dtype, `None` for entity
    /// and pass-through columns (typed by their values where it matters).
    #[serde(skip)]
    pub dtypes: Vec<Option<Dtype>>,
}

/// The point-in-time join: for each entity row and view, the newest row
/// with `event_ts <= event_timestamp` (and within the view's TTL), ties to
/// the later write; no match is nulls, and the row is kept.
pub async fn historical(
    catalog: &Catalog,
    offline: &dyn crate::offline::OfflineStore,
    tenant: &TenantId,
    req: &HistoricalRequest,
) -> Result<Table, FeatureError> {
    let refs = refs_of(catalog, req.feature_service.as_deref(), req.features.as_deref())?;
    let wanted = resolve_refs("features", &refs, |v| catalog.views.get(v).map(|d| &d.spec))?;
    let (n, cols) = columns("entity_df", &req.entity_df, MAX_HISTORICAL_ROWS)?;
    let Some((_, stamps)) = cols.iter().find(|(c, _)| *c == "event_timestamp") else {
        return Err(invalid(
            "entity_df.event_timestamp",
            "entity_df needs an event_timestamp column",
        ));
    };
    let times: Vec<i64> = stamps
        .iter()
        .enumerate()
        .map(|(i, v)| {
            parse_timestamp(v).map(|t| t.millis()).ok_or_else(|| {
                let p = format!("entity_df.event_timestamp[{i}]");
                invalid(&p, format!("{p}: expected RFC 3339 or epoch milliseconds, got {v}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let mut columns: Vec<String> = cols.iter().map(|(c, _)| (*c).to_owned()).collect();
    let mut dtypes: Vec<Option<Dtype>> = vec![None; columns.len()];
    let mut rows: Vec<Vec<Value>> =
        (0..n).map(|i| cols.iter().map(|(_, v)| v[i].clone()).collect()).collect();
    for (view_name, features) in &wanted {
        let view = &catalog.views[view_name].spec;
        let keys = keys_for(catalog, view_name, view, "entity_df", n, &cols)?;
        let ttl = view.ttl();
        let earliest = times.iter().min().copied().unwrap_or(0);
        let from = ttl.map_or(i64::MIN, |t| earliest - t.as_millis() as i64);
        let to = times.iter().max().copied().unwrap_or(0);
        let mut unique: Vec<EntityKey> = keys.clone();
        unique.sort();
        unique.dedup();
        let found = offline.scan(tenant, view_name, &unique, from, to).await?;
        let queries: Vec<(EntityKey, i64)> = keys.into_iter().zip(times.iter().copied()).collect();
        let matches = crate::offline::as_of(&found, &queries, ttl);
        for f in features {
            columns.push(if req.full_feature_names {
                format!("{view_name}__{f}")
            } else {
                f.clone()
            });
            dtypes.push(view.field(f).map(|x| x.dtype));
        }
        for (row, m) in rows.iter_mut().zip(matches) {
            for f in features {
                row.push(m.and_then(|i| found[i].values.get(f).cloned()).unwrap_or(Value::Null));
            }
        }
    }
    let mut seen = BTreeSet::new();
    if let Some(dup) = columns.iter().find(|c| !seen.insert(c.as_str())) {
        return Err(invalid(
            "features",
            format!("two columns are named {dup:?}: ask with full_feature_names"),
        ));
    }
    Ok(Table { columns, rows, dtypes })
}

/// A CSV field (RFC 4180: a field with a comma, quote or line break is
/// quoted; null is empty; a list is its JSON).
fn csv_field(v: &Value) -> String {
    let s = match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s }
}

/// A table's CSV header line.
pub fn csv_header(t: &Table) -> String {
    let header: Vec<String> =
        t.columns.iter().map(|c| csv_field(&Value::from(c.as_str()))).collect();
    format!("{}\n", header.join(","))
}

/// Rows as CSV lines.
pub fn csv_rows(rows: &[Vec<Value>]) -> String {
    let mut out = String::new();
    for r in rows {
        out.push_str(&r.iter().map(csv_field).collect::<Vec<_>>().join(","));
        out.push('\n');
    }
    out
}

/// A table as CSV, whole.
pub fn to_csv(t: &Table) -> String {
    csv_header(t) + &csv_rows(&t.rows)
}

/// The features a request names: a service's, or its own list.
fn refs_of(
    catalog: &Catalog,
    service: Option<&str>,
    features: Option<&[String]>,
) -> Result<Vec<String>, FeatureError> {
    match (service, features) {
        (Some(s), _) => match catalog.services.get(s) {
            Some(d) => Ok(d.spec.features.clone()),
            None => Err(invalid("feature_service", format!("unknown feature service {s:?}"))),
        },
        (None, Some(f)) => Ok(f.to_vec()),
        (None, None) => {
            Err(invalid("features", "name `features` (\"view:feature\") or a `feature_service`"))
        }
    }
}
