//! Features as a model's input (the seed's tenant-aware model server): a
//! model version is bound to a feature service when it is uploaded
//! ([`bind`]: the service's features frozen in input order, the join keys a
//! request names), and an inference request that names an entity gets its
//! input read from the online store ([`vectors`]), missing or stale values
//! handled as the binding declares.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use tessera_core::ValidationError;
use tessera_core::features::{Dtype, resolve_refs};
use tessera_core::ids::TenantId;
use tessera_core::model_features::{FeatureBinding, OnMissing};
use tessera_core::time::Timestamp;

use crate::serve::{FeatureError, OnlineRequest, Status, online};
use crate::{Catalog, OnlineError, OnlineStore};

/// The feature rows of a request as the model's input: `rows` x `width`
/// numbers, row-major, in the binding's feature order.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub rows: usize,
    pub width: usize,
    pub values: Vec<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The request's entity is malformed (a join key absent or mistyped).
    #[error(transparent)]
    Invalid(ValidationError),
    /// A feature the model needs is missing or stale and the binding says
    /// fail, or it is no longer defined.
    #[error("{message}")]
    Missing { message: String, param: String },
    #[error(transparent)]
    Store(#[from] OnlineError),
}

fn invalid(param: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(param, message)
}

/// The numeric dtypes a model can read, and whether the feature is a list.
fn numeric(d: Dtype) -> Option<bool> {
    match d {
        Dtype::Int64 | Dtype::Float64 | Dtype::Bool => Some(false),
        Dtype::Float64List => Some(true),
        Dtype::String | Dtype::Timestamp => None,
    }
}

/// Binds a model version to `service` as the catalog has it now: every
/// feature must be numeric; `defaults` (only with `on_missing: default`)
/// must name the service's features, and a list feature needs one.
pub fn bind(
    catalog: &Catalog,
    service: &str,
    on_missing: OnMissing,
    defaults: BTreeMap<String, Value>,
) -> Result<FeatureBinding, ValidationError> {
    let Some(def) = catalog.services.get(service) else {
        return Err(invalid("feature_service", format!("unknown feature service {service:?}")));
    };
    let wanted = resolve_refs("feature_service", &def.spec.features, |v| {
        catalog.views.get(v).map(|d| &d.spec)
    })?;
    let mut features = Vec::new();
    let mut entity: Vec<String> = Vec::new();
    for (view_name, names) in &wanted {
        let view = &catalog.views[view_name].spec;
        for (key, _) in catalog.join_keys(view) {
            if !entity.contains(&key) {
                entity.push(key);
            }
        }
        for f in names {
            let r = format!("{view_name}:{f}");
            let dtype = view.field(f).map(|x| x.dtype).unwrap_or(Dtype::String);
            let Some(list) = numeric(dtype) else {
                return Err(invalid(
                    "feature_service",
                    format!(
                        "feature {r:?} of service {service:?} is a {}; a model reads numbers (int64, float64, bool or float64_list)",
                        dtype.as_str()
                    ),
                ));
            };
            if list && on_missing == OnMissing::Default && !defaults.contains_key(&r) {
                return Err(invalid(
                    "defaults",
                    format!("feature {r:?} is a float64_list: give its default, a list of numbers"),
                ));
            }
            features.push((r, list));
        }
    }
    entity.sort();
    if on_missing == OnMissing::Fail && !defaults.is_empty() {
        return Err(invalid("defaults", "defaults apply only with on_missing=default"));
    }
    for (name, v) in &defaults {
        let Some((_, list)) = features.iter().find(|(r, _)| r == name) else {
            return Err(invalid(
                "defaults",
                format!("defaults names {name:?}, which service {service:?} does not have"),
            ));
        };
        let ok = if *list {
            v.as_array().is_some_and(|a| a.iter().all(Value::is_number))
        } else {
            v.is_number() || v.is_boolean()
        };
        if !ok {
            let want = if *list { "a list of numbers" } else { "a number" };
            return Err(invalid("defaults", format!("the default of {name:?} must be {want}")));
        }
    }
    Ok(FeatureBinding {
        service: service.to_owned(),
        features: features.into_iter().map(|(r, _)| r).collect(),
        entity,
        on_missing,
        defaults,
    })
}

/// How many numbers a bound row has, when no feature is a list.
pub fn fixed_width(catalog: &Catalog, binding: &FeatureBinding) -> Option<usize> {
    for r in &binding.features {
        let (view, f) = r.split_once(':')?;
        let dtype = catalog.views.get(view)?.spec.field(f)?.dtype;
        if numeric(dtype)? {
            return None;
        }
    }
    Some(binding.features.len())
}

/// Appends a feature value's numbers to `out`, or says what it holds.
fn push_numbers(v: &Value, out: &mut Vec<f32>) -> Result<(), String> {
    match v {
        Value::Number(n) => out.push(n.as_f64().unwrap_or(0.0) as f32),
        Value::Bool(b) => out.push(f32::from(u8::from(*b))),
        Value::Array(items) => {
            for i in items {
                out.push(i.as_f64().ok_or_else(|| format!("holds {i}, not a number"))? as f32);
            }
        }
        other => return Err(format!("holds {other}, not a number")),
    }
    Ok(())
}

fn status_text(s: Status) -> &'static str {
    match s {
        Status::Present => "present",
        Status::NullValue => "null",
        Status::NotFound => "not found",
        Status::OutsideMaxAge => "older than its view's ttl",
    }
}

/// Reads the bound features of every entity row (`entity` holds the join
/// keys, a value or a column of values each) as the model's input.
pub async fn vectors(
    catalog: &Catalog,
    store: &dyn OnlineStore,
    tenant: &TenantId,
    binding: &FeatureBinding,
    entity: &Map<String, Value>,
    now: Timestamp,
) -> Result<Vectors, InputError> {
    for r in &binding.features {
        let defined = r.split_once(':').is_some_and(|(v, f)| {
            catalog
                .views
                .get(v)
                .and_then(|d| d.spec.field(f))
                .is_some_and(|x| numeric(x.dtype).is_some())
        });
        if !defined {
            return Err(InputError::Missing {
                message: format!(
                    "this model version reads feature {r:?}, which is no longer defined as a number; define it again or upload a version bound to service {:?} as it is now",
                    binding.service
                ),
                param: "features".into(),
            });
        }
    }
    for key in &binding.entity {
        if !entity.contains_key(key) {
            return Err(InputError::Invalid(invalid(
                "entity",
                format!(
                    "this model reads features keyed by {:?}: give {key:?} in the entity",
                    binding.entity
                ),
            )));
        }
    }
    let req = OnlineRequest {
        entities: entity.clone(),
        features: Some(binding.features.clone()),
        feature_service: None,
        full_feature_names: true,
    };
    let answer = online(catalog, store, tenant, &req, now).await.map_err(|e| match e {
        FeatureError::Invalid(v) => InputError::Invalid(v),
        FeatureError::Store(s) => InputError::Store(s),
    })?;
    let (keys, columns) = answer.results.split_at(entity.len());
    let rows = columns.first().map_or(0, |c| c.values.len());
    let mut values = Vec::with_capacity(rows * binding.features.len());
    let mut width = 0;
    for i in 0..rows {
        let start = values.len();
        for (r, col) in binding.features.iter().zip(columns) {
            let missing = |what: String| {
                let who: Vec<String> =
                    entity.keys().zip(keys).map(|(k, c)| format!("{k}={}", c.values[i])).collect();
                InputError::Missing {
                    message: format!("feature {r:?} {what} for entity {}", who.join(", ")),
                    param: "entity".into(),
                }
            };
            let value = match col.statuses[i] {
                Status::Present => col.values[i].clone(),
                s => binding
                    .default_for(r)
                    .ok_or_else(|| missing(format!("is {}", status_text(s))))?,
            };
            push_numbers(&value, &mut values).map_err(missing)?;
        }
        let n = values.len() - start;
        if i == 0 {
            width = n;
        } else if n != width {
            return Err(InputError::Missing {
                message: format!(
                    "entity row {i} has {n} feature values, row 0 has {width}: a float64_list feature differs in length"
                ),
                param: "entity".into(),
            });
        }
    }
    Ok(Vectors { rows, width, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::embedded::EmbeddedOnline;
    use crate::{EntityKey, Row, Write};
    use serde_json::json;
    use tessera_core::features::{Kind, StoredDefinition};

    fn catalog() -> Catalog {
        let def = |kind, name: &str, spec: Value| StoredDefinition {
            kind,
            name: name.into(),
            version: 1,
            spec,
            created_at: Timestamp::from_millis(0),
            updated_at: Timestamp::from_millis(0),
        };
        Catalog::from_stored(&[
            def(Kind::Entity, "customer", json!({"join_keys": ["customer_id"]})),
            def(
                Kind::View,
                "stats",
                json!({"entities": ["customer"], "ttl": "1h", "source": {"push": {}},
                       "schema": [{"name": "orders", "dtype": "int64"}, {"name": "spend", "dtype": "float64"},
                                  {"name": "vip", "dtype": "bool"}, {"name": "tier", "dtype": "string"},
                                  {"name": "emb", "dtype": "float64_list"}]}),
            ),
            def(
                Kind::Service,
                "scalar",
                json!({"features": ["stats:spend", "stats:orders", "stats:vip"]}),
            ),
            def(Kind::Service, "listy", json!({"features": ["stats:orders", "stats:emb"]})),
            def(Kind::Service, "texty", json!({"features": ["stats:tier"]})),
        ])
    }

    #[test]
    fn binding_freezes_the_service_and_checks_it() {
        let c = catalog();
        let b = bind(&c, "scalar", OnMissing::Fail, BTreeMap::new()).unwrap();
        assert_eq!(b.features, ["stats:spend", "stats:orders", "stats:vip"]);
        assert_eq!(b.entity, ["customer_id"]);
        assert_eq!(fixed_width(&c, &b), Some(3));
        let e = bind(&c, "texty", OnMissing::Fail, BTreeMap::new()).unwrap_err();
        assert!(e.message.contains("\"stats:tier\"") && e.message.contains("string"), "{e:?}");
        assert!(bind(&c, "nope", OnMissing::Fail, BTreeMap::new()).is_err());
        let e = bind(&c, "listy", OnMissing::Default, BTreeMap::new()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("defaults"));
        let d = BTreeMap::from([("stats:emb".to_owned(), json!([0.0, 0.0]))]);
        let b = bind(&c, "listy", OnMissing::Default, d.clone()).unwrap();
        assert_eq!(fixed_width(&c, &b), None);
        assert!(bind(&c, "listy", OnMissing::Fail, d).is_err(), "defaults need on_missing=default");
        let bad = BTreeMap::from([("stats:other".to_owned(), json!(1))]);
        assert!(bind(&c, "scalar", OnMissing::Default, bad).is_err());
        let bad = BTreeMap::from([("stats:spend".to_owned(), json!("x"))]);
        assert!(bind(&c, "scalar", OnMissing::Default, bad).is_err());
    }

    async fn store_with_rows(now: Timestamp) -> (tempfile::TempDir, EmbeddedOnline, TenantId) {
        let dir = tempfile::tempdir().unwrap();
        let store = EmbeddedOnline::open(&dir.path().join("f.db")).await.unwrap();
        let old = Timestamp::from_millis(now.millis() - 2 * 3_600_000);
        let row = |who: &str, values: Value, at: Timestamp| {
            let key = EntityKey::of(vec![("customer_id", who.to_owned())]);
            let values = values.as_object().unwrap().clone();
            (key, Row { values, event_ts: at, created: at })
        };
        let all = |orders: i64, spend: Value, vip: bool, emb: Value| json!({"orders": orders, "spend": spend, "vip": vip, "tier": "gold", "emb": emb});
        let rows = vec![
            row("c1", all(3, json!(1.5), true, json!([1.0, 2.0])), now),
            row("c2", all(5, Value::Null, false, json!([3.0, 4.0])), now),
            row("c3", all(7, json!(2.0), true, json!([5.0, 6.0])), old),
        ];
        let tenant = TenantId::generate();
        store.write(&tenant, Write { view: "stats", rows, keep: None }).await.unwrap();
        (dir, store, tenant)
    }

    #[tokio::test]
    async fn present_features_are_the_input_and_missing_ones_follow_the_policy() {
        let c = catalog();
        let now = Timestamp::from_millis(1_800_000_000_000);
        let (_dir, store, tenant) = store_with_rows(now).await;
        let entity = |v: Value| json!({"customer_id": v}).as_object().unwrap().clone();
        let fail = bind(&c, "scalar", OnMissing::Fail, BTreeMap::new()).unwrap();
        let v = vectors(&c, &store, &tenant, &fail, &entity(json!("c1")), now).await.unwrap();
        assert_eq!(v, Vectors { rows: 1, width: 3, values: vec![1.5, 3.0, 1.0] });
        // c2's spend is null, c3's row is older than the TTL, c9 has none.
        for (who, what) in [("c2", "is null"), ("c3", "older than"), ("c9", "not found")] {
            let e =
                vectors(&c, &store, &tenant, &fail, &entity(json!(who)), now).await.unwrap_err();
            let InputError::Missing { message, .. } = e else { panic!("{e:?}") };
            assert!(message.contains("stats:spend") && message.contains(what), "{message}");
            assert!(message.contains(&format!("customer_id=\"{who}\"")), "{message}");
        }
        let d = BTreeMap::from([("stats:spend".to_owned(), json!(-1.0))]);
        let dflt = bind(&c, "scalar", OnMissing::Default, d).unwrap();
        let v = vectors(&c, &store, &tenant, &dflt, &entity(json!(["c1", "c2", "c9"])), now)
            .await
            .unwrap();
        assert_eq!((v.rows, v.width), (3, 3));
        assert_eq!(v.values, [1.5, 3.0, 1.0, -1.0, 5.0, 0.0, -1.0, 0.0, 0.0]);
        // Lists widen the row; another tenant's rows are never read.
        let d = BTreeMap::from([("stats:emb".to_owned(), json!([0.0, 0.0]))]);
        let listy = bind(&c, "listy", OnMissing::Default, d).unwrap();
        let v = vectors(&c, &store, &tenant, &listy, &entity(json!("c2")), now).await.unwrap();
        assert_eq!(v.values, [5.0, 3.0, 4.0]);
        let other = TenantId::generate();
        let v = vectors(&c, &store, &other, &listy, &entity(json!("c2")), now).await.unwrap();
        assert_eq!(v.values, [0.0, 0.0, 0.0]);
        // No join key: a bad request, not a missing feature.
        let e = vectors(&c, &store, &tenant, &fail, &Map::new(), now).await.unwrap_err();
        assert!(matches!(e, InputError::Invalid(_)), "{e:?}");
    }

    #[tokio::test]
    async fn a_feature_no_longer_defined_is_named() {
        let mut c = catalog();
        let now = Timestamp::from_millis(1_800_000_000_000);
        let (_dir, store, tenant) = store_with_rows(now).await;
        let b = bind(&c, "scalar", OnMissing::Default, BTreeMap::new()).unwrap();
        c.views.clear();
        let entity = json!({"customer_id": "c1"}).as_object().unwrap().clone();
        let e = vectors(&c, &store, &tenant, &b, &entity, now).await.unwrap_err();
        let InputError::Missing { message, param } = e else { panic!("{e:?}") };
        assert!(message.contains("\"stats:spend\"") && param == "features", "{message}");
    }
}
