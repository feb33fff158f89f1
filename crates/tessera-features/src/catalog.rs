//! A tenant's definitions, typed, and the checks a change must pass against
//! the others: a view names entities that exist, a service names features
//! that exist, nothing in use is deleted, and a change never makes stored
//! rows unreadable (see [`tessera_core::features::view_change_refused`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;
use tessera_core::ValidationError;
use tessera_core::features::{
    Definition, EntitySpec, KeyType, Kind, ServiceSpec, StoredDefinition, ViewSpec,
    entity_change_refused, resolve_refs, validate_entity, validate_view, view_change_refused,
};

/// Why a definition change is refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// It would break what is stored or what uses it.
    #[error("{0}")]
    Conflict(String),
}

#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub entities: BTreeMap<String, Definition<EntitySpec>>,
    pub views: BTreeMap<String, Definition<ViewSpec>>,
    pub services: BTreeMap<String, Definition<ServiceSpec>>,
}

impl Catalog {
    /// The catalog of stored definitions; one that no longer parses (written
    /// by a newer binary) is left out and logged.
    pub fn from_stored(defs: &[StoredDefinition]) -> Self {
        let mut c = Catalog::default();
        for d in defs {
            let kept = match d.kind {
                Kind::Entity => d.typed().map(|t| {
                    c.entities.insert(d.name.clone(), t);
                }),
                Kind::View => d.typed().map(|t| {
                    c.views.insert(d.name.clone(), t);
                }),
                Kind::Service => d.typed().map(|t| {
                    c.services.insert(d.name.clone(), t);
                }),
            };
            if let Err(e) = kept {
                tracing::warn!(kind = d.kind.as_str(), name = %d.name, error = %e, "stored feature definition skipped");
            }
        }
        c
    }

    /// The stored version of a definition, if it exists.
    pub fn version(&self, kind: Kind, name: &str) -> Option<u32> {
        match kind {
            Kind::Entity => self.entities.get(name).map(|d| d.version),
            Kind::View => self.views.get(name).map(|d| d.version),
            Kind::Service => self.services.get(name).map(|d| d.version),
        }
    }

    fn entity_specs(&self) -> BTreeMap<String, EntitySpec> {
        self.entities.iter().map(|(n, d)| (n.clone(), d.spec.clone())).collect()
    }

    fn view_specs(&self) -> BTreeMap<String, ViewSpec> {
        self.views.iter().map(|(n, d)| (n.clone(), d.spec.clone())).collect()
    }

    /// Checks a definition to put; returns its spec as it is stored.
    pub fn check_put(&self, kind: Kind, name: &str, spec: &Value) -> Result<Value, CatalogError> {
        let parse_err = |e: serde_json::Error| ValidationError::new("body", e.to_string());
        let out = match kind {
            Kind::Entity => {
                let new: EntitySpec = serde_json::from_value(spec.clone()).map_err(parse_err)?;
                validate_entity(name, &new)?;
                if let Some(old) = self.entities.get(name)
                    && let Some(why) = entity_change_refused(&old.spec, &new)
                {
                    return Err(CatalogError::Conflict(format!("entity {name:?}: {why}")));
                }
                serde_json::to_value(&new)
            }
            Kind::View => {
                let new: ViewSpec = serde_json::from_value(spec.clone()).map_err(parse_err)?;
                let new = validate_view(name, &new, &self.entity_specs())?;
                if let Some(old) = self.views.get(name) {
                    if let Some(why) = view_change_refused(&old.spec, &new) {
                        return Err(CatalogError::Conflict(format!(
                            "feature view {name:?}: {why}"
                        )));
                    }
                    // A feature a service reads may not go.
                    let mut views = self.view_specs();
                    views.insert(name.to_owned(), new.clone());
                    for (s, d) in &self.services {
                        if let Err(e) = resolve_refs("features", &d.spec.features, |v| views.get(v))
                        {
                            return Err(CatalogError::Conflict(format!(
                                "feature view {name:?}: feature service {s:?} would break: {}",
                                e.message
                            )));
                        }
                    }
                }
                serde_json::to_value(&new)
            }
            Kind::Service => {
                let new: ServiceSpec = serde_json::from_value(spec.clone()).map_err(parse_err)?;
                tessera_core::ids::validate_name("name", name)?;
                resolve_refs("features", &new.features, |v| self.views.get(v).map(|d| &d.spec))?;
                serde_json::to_value(&new)
            }
        };
        out.map_err(|e| CatalogError::Invalid(ValidationError::new("body", e.to_string())))
    }

    /// Checks that nothing uses a definition about to be deleted.
    pub fn check_delete(&self, kind: Kind, name: &str) -> Result<(), CatalogError> {
        let users: Vec<String> = match kind {
            Kind::Entity => self
                .views
                .iter()
                .filter(|(_, d)| d.spec.entities.iter().any(|e| e == name))
                .map(|(v, _)| format!("feature view {v:?}"))
                .collect(),
            Kind::View => self
                .services
                .iter()
                .filter(|(_, d)| {
                    d.spec
                        .features
                        .iter()
                        .any(|r| r.split_once(':').is_some_and(|(v, _)| v == name))
                })
                .map(|(s, _)| format!("feature service {s:?}"))
                .collect(),
            Kind::Service => Vec::new(),
        };
        if users.is_empty() {
            Ok(())
        } else {
            Err(CatalogError::Conflict(format!(
                "{} {name:?} is used by {}: delete or change them first",
                kind.as_str(),
                users.join(", ")
            )))
        }
    }

    /// The view's join keys with their types, in name order.
    pub fn join_keys(&self, view: &ViewSpec) -> Vec<(String, KeyType)> {
        let mut keys: Vec<(String, KeyType)> = view
            .entities
            .iter()
            .filter_map(|e| self.entities.get(e))
            .flat_map(|e| e.spec.join_keys.iter().map(|k| (k.clone(), e.spec.value_type)))
            .collect();
        keys.sort_by(|a, b| a.0.cmp(&b.0));
        keys
    }

    /// How long values keyed like `view` are worth keeping: the longest TTL
    /// of the views with the same join keys; none if one of them keeps
    /// values for good.
    pub fn keep_for(&self, view: &ViewSpec) -> Option<Duration> {
        let keys = self.join_keys(view);
        let mut longest = Duration::ZERO;
        for d in self.views.values().filter(|d| self.join_keys(&d.spec) == keys) {
            longest = longest.max(d.spec.ttl()?);
        }
        Some(longest.max(view.ttl()?))
    }
}
