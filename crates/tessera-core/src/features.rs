//! Feature store definitions (F1): entities, feature views and feature
//! services, as a tenant declares them. Their names, shapes and checks live
//! here; storage, the online store and the routes build on them.
//!
//! The concepts are Feast's, so its users find their way: an entity names
//! the join keys a feature row is looked up by; a feature view is a typed
//! set of features over some entities, with a TTL and a source (`push`: the
//! tenant writes rows; `stream`: aggregations over an event type of the
//! log); a feature service is a named set of `view:feature` references, the
//! features one model version reads.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ValidationError;
use crate::ids::validate_name;
use crate::time::Timestamp;

/// The kinds of definition, as the routes name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Entity,
    View,
    Service,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Entity => "entity",
            Kind::View => "view",
            Kind::Service => "service",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Kind::Entity, Kind::View, Kind::Service].into_iter().find(|k| k.as_str() == s)
    }
}

/// A feature's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Dtype {
    Int64,
    Float64,
    String,
    Bool,
    /// RFC 3339 text or milliseconds since the epoch on the way in; RFC 3339
    /// on the way out.
    Timestamp,
    Float64List,
}

impl Dtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Dtype::Int64 => "int64",
            Dtype::Float64 => "float64",
            Dtype::String => "string",
            Dtype::Bool => "bool",
            Dtype::Timestamp => "timestamp",
            Dtype::Float64List => "float64_list",
        }
    }

    /// The value in its stored form, or why it is not of this type. `null`
    /// is every type's missing value.
    pub fn coerce(self, v: &Value) -> Result<Value, String> {
        let bad = || format!("expected {}, got {}", self.as_str(), short(v));
        Ok(match (self, v) {
            (_, Value::Null) => Value::Null,
            (Dtype::Int64, Value::Number(n)) if n.is_i64() => v.clone(),
            (Dtype::Float64, Value::Number(n)) => Value::from(n.as_f64().ok_or_else(bad)?),
            (Dtype::String, Value::String(_)) | (Dtype::Bool, Value::Bool(_)) => v.clone(),
            (Dtype::Timestamp, _) => Value::from(parse_timestamp(v).ok_or_else(bad)?.to_rfc3339()),
            (Dtype::Float64List, Value::Array(items)) => Value::Array(
                items
                    .iter()
                    .map(|i| i.as_f64().map(Value::from).ok_or_else(bad))
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(bad()),
        })
    }
}

/// A value as an error message shows it: short.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 { format!("{}...", &s[..s.floor_char_boundary(40)]) } else { s }
}

/// A timestamp as pushes and entity rows give it: RFC 3339 text (`Z` or an
/// offset; Feast's `2022-05-13 10:59:42+00:00` too) or epoch milliseconds.
pub fn parse_timestamp(v: &Value) -> Option<Timestamp> {
    match v {
        Value::Number(n) => n.as_i64().map(Timestamp::from_millis),
        Value::String(s) => {
            let s = s.trim().replacen(' ', "T", 1);
            // Naive times (Feast's `created`) are UTC.
            Timestamp::parse_rfc3339("ts", &s)
                .or_else(|_| Timestamp::parse_rfc3339("ts", &format!("{s}Z")))
                .ok()
        }
        _ => None,
    }
}

/// The type of an entity's join key values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum KeyType {
    String,
    Int64,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::String => "string",
            KeyType::Int64 => "int64",
        }
    }

    /// A join key value in canonical text (the online store's key part), or
    /// why it is not of this type.
    pub fn key_text(self, v: &Value) -> Result<String, String> {
        match (self, v) {
            (KeyType::String, Value::String(s)) => Ok(s.clone()),
            (KeyType::Int64, Value::Number(n)) if n.is_i64() => Ok(n.to_string()),
            _ => Err(format!("expected {}, got {}", self.as_str(), short(v))),
        }
    }

    /// A key value back from its canonical text.
    pub fn key_value(self, text: &str) -> Value {
        match self {
            KeyType::String => Value::from(text),
            KeyType::Int64 => text.parse::<i64>().map_or_else(|_| Value::from(text), Value::from),
        }
    }
}

/// Body of `PUT /v1/features/entities/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EntitySpec {
    /// The columns that identify a row, e.g. `["customer_id"]`.
    pub join_keys: Vec<String>,
    /// The type of the join key values.
    #[serde(default = "default_key_type")]
    pub value_type: KeyType,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

fn default_key_type() -> KeyType {
    KeyType::String
}

/// A typed column of a feature view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Field {
    pub name: String,
    pub dtype: Dtype,
}

/// An aggregation function of a stream view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Function {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    Stddev,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::Count => "count",
            Function::Sum => "sum",
            Function::Mean => "mean",
            Function::Min => "min",
            Function::Max => "max",
            Function::Stddev => "stddev",
        }
    }
}

/// One aggregation of a stream view: `function` of the events' `column`
/// over a sliding `window`, advanced every `slide`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Aggregation {
    /// A property of the events (`count` may leave it out).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub column: String,
    pub function: Function,
    /// e.g. `"5m"`.
    pub window: String,
    /// e.g. `"30s"`; the window when left out (tumbling).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slide: Option<String>,
    /// The feature's name; `{column}_{function}_{window}` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl Aggregation {
    /// The feature this aggregation writes.
    pub fn feature_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None if self.column.is_empty() => format!("{}_{}", self.function.as_str(), self.window),
            None => format!("{}_{}_{}", self.column, self.function.as_str(), self.window),
        }
    }

    pub fn dtype(&self) -> Dtype {
        match self.function {
            Function::Count => Dtype::Int64,
            _ => Dtype::Float64,
        }
    }
}

/// Where a view's rows come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// The tenant writes rows with `POST /v1/features/push`.
    Push {},
    /// Aggregations over an event type of the tenant's event log.
    Stream {
        event_type: String,
        aggregations: Vec<Aggregation>,
        /// How late (by event time, behind the newest event seen) an event
        /// may come and still count; default `"1m"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allowed_lateness: Option<String>,
    },
}

/// Body of `PUT /v1/features/views/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    /// The entities a row is keyed by (their join keys).
    pub entities: Vec<String>,
    /// The features. A stream view may leave it out: its aggregations give it.
    #[serde(default)]
    pub schema: Vec<Field>,
    /// How long a value stays fresh online (`"1h"`); `OUTSIDE_MAX_AGE` after.
    /// Also bounds the as-of join of training sets. None: forever.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
    pub source: Source,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}

impl ViewSpec {
    pub fn ttl(&self) -> Option<Duration> {
        self.ttl.as_deref().and_then(|t| parse_duration(t).ok())
    }

    pub fn field(&self, name: &str) -> Option<&Field> {
        self.schema.iter().find(|f| f.name == name)
    }
}

/// Body of `PUT /v1/features/services/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// `view:feature` references, or `view:*` for all of a view's features.
    pub features: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// A stored definition: its spec, and the version it is at (1 on creation,
/// one more on every change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Definition<S> {
    pub name: String,
    pub version: u32,
    pub spec: S,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A definition as the store keeps it: the spec as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDefinition {
    pub kind: Kind,
    pub name: String,
    pub version: u32,
    pub spec: Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl StoredDefinition {
    pub fn typed<S: serde::de::DeserializeOwned>(&self) -> Result<Definition<S>, String> {
        Ok(Definition {
            name: self.name.clone(),
            version: self.version,
            spec: serde_json::from_value(self.spec.clone()).map_err(|e| e.to_string())?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// Parses `"30s"`, `"5m"`, `"1h30m"`, `"7d"`, `"250ms"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration like \"30s\", \"5m\" or \"1h\": {e}"))
}

fn invalid(param: &str, message: impl Into<String>) -> ValidationError {
    ValidationError::new(param, message)
}

/// Names of feature columns: like identifiers, so `view:feature` and
/// `view__feature` stay unambiguous.
fn validate_column(param: &str, name: &str) -> Result<(), ValidationError> {
    let ok = (1..=64).contains(&name.len())
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(invalid(
            param,
            format!(
                "{param} {name:?} must be 1-64 letters, digits or '_' (no '__'), starting with a letter or '_'"
            ),
        ))
    }
}

/// Names the reads reserve in a row.
const RESERVED: [&str; 2] = ["event_timestamp", "created"];

pub fn validate_entity(name: &str, spec: &EntitySpec) -> Result<(), ValidationError> {
    validate_column("name", name)?;
    if spec.join_keys.is_empty() {
        return Err(invalid("join_keys", "an entity needs at least one join key"));
    }
    let mut seen = BTreeSet::new();
    for k in &spec.join_keys {
        validate_column("join_keys", k)?;
        if RESERVED.contains(&k.as_str()) {
            return Err(invalid("join_keys", format!("join key {k:?} is a reserved column name")));
        }
        if !seen.insert(k) {
            return Err(invalid("join_keys", format!("join key {k:?} is listed twice")));
        }
    }
    Ok(())
}

/// Checks a view on its own and against the entities it names; returns the
/// spec with a stream view's schema filled in from its aggregations.
pub fn validate_view(
    name: &str,
    spec: &ViewSpec,
    entities: &BTreeMap<String, EntitySpec>,
) -> Result<ViewSpec, ValidationError> {
    validate_column("name", name)?;
    if spec.entities.is_empty() {
        return Err(invalid("entities", "a feature view needs at least one entity"));
    }
    let mut keys = BTreeSet::new();
    for e in &spec.entities {
        let Some(entity) = entities.get(e) else {
            return Err(invalid("entities", format!("unknown entity {e:?}: define it first")));
        };
        for k in &entity.join_keys {
            if !keys.insert(k.clone()) {
                return Err(invalid("entities", format!("join key {k:?} comes from two entities")));
            }
        }
    }
    if let Some(t) = &spec.ttl {
        let d = parse_duration(t).map_err(|m| invalid("ttl", m))?;
        if d.is_zero() {
            return Err(invalid("ttl", "ttl must be above zero (leave it out for no limit)"));
        }
    }
    let mut out = spec.clone();
    if let Source::Stream { event_type, aggregations, allowed_lateness } = &spec.source {
        validate_name("source.stream.event_type", event_type)?;
        if aggregations.is_empty() {
            return Err(invalid(
                "source.stream.aggregations",
                "a stream view needs at least one aggregation",
            ));
        }
        if let Some(l) = allowed_lateness {
            parse_duration(l).map_err(|m| invalid("source.stream.allowed_lateness", m))?;
        }
        let mut derived = Vec::new();
        for (i, a) in aggregations.iter().enumerate() {
            let param = format!("source.stream.aggregations[{i}]");
            if a.column.is_empty() && a.function != Function::Count {
                return Err(invalid(&param, format!("{} needs a column", a.function.as_str())));
            }
            let window =
                parse_duration(&a.window).map_err(|m| invalid(&format!("{param}.window"), m))?;
            let slide = match &a.slide {
                Some(s) => parse_duration(s).map_err(|m| invalid(&format!("{param}.slide"), m))?,
                None => window,
            };
            if slide.is_zero() || window < slide || window.as_millis() % slide.as_millis() != 0 {
                return Err(invalid(
                    &format!("{param}.window"),
                    format!(
                        "window {} must be a whole number of slides ({})",
                        a.window,
                        a.slide.as_deref().unwrap_or(&a.window)
                    ),
                ));
            }
            if window.as_millis() / slide.as_millis() > 1_000 {
                return Err(invalid(&format!("{param}.slide"), "at most 1000 slides per window"));
            }
            derived.push(Field { name: a.feature_name(), dtype: a.dtype() });
        }
        if spec.schema.is_empty() {
            out.schema = derived.clone();
        } else if spec.schema != derived {
            return Err(invalid(
                "schema",
                format!(
                    "a stream view's schema is its aggregations' features: {}",
                    derived
                        .iter()
                        .map(|f| format!("{}: {}", f.name, f.dtype.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if out.schema.is_empty() {
        return Err(invalid("schema", "a feature view needs at least one feature"));
    }
    let mut names = BTreeSet::new();
    for f in &out.schema {
        validate_column("schema", &f.name)?;
        if RESERVED.contains(&f.name.as_str()) || keys.contains(&f.name) {
            return Err(invalid(
                "schema",
                format!("feature {:?} is a join key or a reserved column name", f.name),
            ));
        }
        if !names.insert(&f.name) {
            return Err(invalid("schema", format!("feature {:?} is listed twice", f.name)));
        }
    }
    Ok(out)
}

/// Why a changed view may not replace the stored one: rows already written
/// (online, offline, by a stream) would no longer fit it.
pub fn view_change_refused(old: &ViewSpec, new: &ViewSpec) -> Option<String> {
    if old.entities != new.entities {
        return Some(format!(
            "the entities cannot change (from {:?} to {:?}): stored rows are keyed by them; create a new view",
            old.entities, new.entities
        ));
    }
    for f in &old.schema {
        if let Some(n) = new.field(&f.name)
            && n.dtype != f.dtype
        {
            return Some(format!(
                "feature {:?} cannot change type from {} to {}: stored values are {}; add a feature under a new name",
                f.name,
                f.dtype.as_str(),
                n.dtype.as_str(),
                f.dtype.as_str()
            ));
        }
    }
    match (&old.source, &new.source) {
        (Source::Push {}, Source::Push {}) => None,
        (Source::Stream { event_type: a, .. }, Source::Stream { event_type: b, .. }) if a == b => None,
        _ => Some("the source cannot change (push or stream, and the stream's event type): create a new view".into()),
    }
}

/// Why a changed entity may not replace the stored one.
pub fn entity_change_refused(old: &EntitySpec, new: &EntitySpec) -> Option<String> {
    (old.join_keys != new.join_keys || old.value_type != new.value_type).then(|| {
        "an entity's join keys and value type cannot change: stored rows are keyed by them; create a new entity".into()
    })
}

/// A `view:feature` reference, checked against the views; `view:*` stands
/// for every feature of the view. Returns (view, features) pairs in order.
pub fn resolve_refs<'v>(
    param: &str,
    refs: &[String],
    views: impl Fn(&str) -> Option<&'v ViewSpec>,
) -> Result<Vec<(String, Vec<String>)>, ValidationError> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    if refs.is_empty() {
        return Err(invalid(param, "name at least one feature as \"view:feature\""));
    }
    for r in refs {
        let Some((view, feature)) = r.split_once(':') else {
            return Err(invalid(param, format!("{r:?} is not a \"view:feature\" reference")));
        };
        let Some(spec) = views(view) else {
            return Err(invalid(param, format!("unknown feature view {view:?} (in {r:?})")));
        };
        let features: Vec<String> = if feature == "*" {
            spec.schema.iter().map(|f| f.name.clone()).collect()
        } else if spec.field(feature).is_some() {
            vec![feature.to_owned()]
        } else {
            return Err(invalid(
                param,
                format!("feature view {view:?} has no feature {feature:?}"),
            ));
        };
        match out.iter_mut().find(|(v, _)| v == view) {
            Some((_, fs)) => {
                for f in features {
                    if !fs.contains(&f) {
                        fs.push(f);
                    }
                }
            }
            None => out.push((view.to_owned(), features)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entities() -> BTreeMap<String, EntitySpec> {
        let customer: EntitySpec =
            serde_json::from_value(json!({"join_keys": ["customer_id"]})).unwrap();
        BTreeMap::from([("customer".to_owned(), customer)])
    }

    fn view(v: Value) -> ViewSpec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_push_view_checks_its_entities_schema_and_ttl() {
        let ok = view(json!({"entities": ["customer"], "ttl": "1h", "source": {"push": {}},
            "schema": [{"name": "spend", "dtype": "float64"}, {"name": "tier", "dtype": "string"}]}));
        let checked = validate_view("stats", &ok, &entities()).unwrap();
        assert_eq!(checked.ttl(), Some(Duration::from_secs(3600)));
        let unknown = view(json!({"entities": ["driver"], "source": {"push": {}},
            "schema": [{"name": "x", "dtype": "int64"}]}));
        let e = validate_view("stats", &unknown, &entities()).unwrap_err();
        assert!(e.message.contains("unknown entity \"driver\""), "{}", e.message);
        let twice = view(json!({"entities": ["customer"], "source": {"push": {}},
            "schema": [{"name": "x", "dtype": "int64"}, {"name": "x", "dtype": "bool"}]}));
        assert!(validate_view("stats", &twice, &entities()).is_err());
        let key = view(json!({"entities": ["customer"], "source": {"push": {}},
            "schema": [{"name": "customer_id", "dtype": "string"}]}));
        assert!(validate_view("stats", &key, &entities()).is_err());
        let bad_ttl = view(json!({"entities": ["customer"], "ttl": "soon", "source": {"push": {}},
            "schema": [{"name": "x", "dtype": "int64"}]}));
        assert_eq!(
            validate_view("s", &bad_ttl, &entities()).unwrap_err().param.as_deref(),
            Some("ttl")
        );
    }

    #[test]
    fn a_stream_view_gets_its_schema_from_its_aggregations() {
        let v =
            view(json!({"entities": ["customer"], "source": {"stream": {"event_type": "purchase",
            "aggregations": [{"column": "total", "function": "sum", "window": "5m", "slide": "30s"},
                             {"function": "count", "window": "1h"}]}}}));
        let checked = validate_view("spend", &v, &entities()).unwrap();
        assert_eq!(
            checked.schema,
            vec![
                Field { name: "total_sum_5m".into(), dtype: Dtype::Float64 },
                Field { name: "count_1h".into(), dtype: Dtype::Int64 }
            ]
        );
        let uneven = view(
            json!({"entities": ["customer"], "source": {"stream": {"event_type": "purchase",
            "aggregations": [{"column": "total", "function": "sum", "window": "5m", "slide": "7m"}]}}}),
        );
        assert!(validate_view("spend", &uneven, &entities()).is_err());
    }

    #[test]
    fn incompatible_changes_are_refused_and_additions_pass() {
        let old = view(json!({"entities": ["customer"], "source": {"push": {}},
            "schema": [{"name": "spend", "dtype": "float64"}]}));
        let added = view(json!({"entities": ["customer"], "source": {"push": {}},
            "schema": [{"name": "spend", "dtype": "float64"}, {"name": "n", "dtype": "int64"}]}));
        assert_eq!(view_change_refused(&old, &added), None);
        let retyped = view(json!({"entities": ["customer"], "source": {"push": {}},
            "schema": [{"name": "spend", "dtype": "string"}]}));
        let why = view_change_refused(&old, &retyped).unwrap();
        assert!(why.contains("\"spend\" cannot change type from float64 to string"), "{why}");
        let rekeyed = view(json!({"entities": [], "source": {"push": {}}, "schema": []}));
        assert!(view_change_refused(&old, &rekeyed).unwrap().contains("entities"));
    }

    #[test]
    fn refs_resolve_with_stars_and_name_what_is_unknown() {
        let v = view(json!({"entities": ["customer"], "source": {"push": {}},
            "schema": [{"name": "a", "dtype": "int64"}, {"name": "b", "dtype": "bool"}]}));
        let views = BTreeMap::from([("stats".to_owned(), v)]);
        let refs = ["stats:b".to_owned(), "stats:*".to_owned()];
        assert_eq!(
            resolve_refs("features", &refs, |v| views.get(v)).unwrap(),
            vec![("stats".to_owned(), vec!["b".to_owned(), "a".to_owned()])]
        );
        let e = resolve_refs("features", &["stats:c".to_owned()], |v| views.get(v)).unwrap_err();
        assert!(e.message.contains("no feature \"c\""), "{}", e.message);
        let e = resolve_refs("features", &["other:c".to_owned()], |v| views.get(v)).unwrap_err();
        assert!(e.message.contains("unknown feature view \"other\""), "{}", e.message);
    }

    #[test]
    fn values_are_coerced_by_type_or_refused() {
        assert_eq!(Dtype::Float64.coerce(&json!(3)), Ok(json!(3.0)));
        assert_eq!(Dtype::Int64.coerce(&json!(3)), Ok(json!(3)));
        assert!(Dtype::Int64.coerce(&json!(3.5)).unwrap_err().contains("expected int64, got 3.5"));
        assert!(Dtype::String.coerce(&json!(1)).is_err());
        assert_eq!(Dtype::Bool.coerce(&Value::Null), Ok(Value::Null));
        assert_eq!(
            Dtype::Timestamp.coerce(&json!("2022-05-13 10:59:42+00:00")),
            Ok(json!("2022-05-13T10:59:42Z"))
        );
        assert_eq!(Dtype::Float64List.coerce(&json!([1, 2.5])), Ok(json!([1.0, 2.5])));
        assert!(Dtype::Float64List.coerce(&json!([1, "x"])).is_err());
        assert_eq!(KeyType::Int64.key_text(&json!(1001)), Ok("1001".into()));
        assert!(KeyType::Int64.key_text(&json!("1001")).is_err());
        assert_eq!(
            parse_timestamp(&json!("2022-05-13 10:59:42")),
            parse_timestamp(&json!("2022-05-13T10:59:42Z"))
        );
    }
}
