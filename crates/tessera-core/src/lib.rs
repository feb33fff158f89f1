//! Tessera's domain: ids, tenants, plans, keys, roles, audit records, the
//! authentication primitives that turn a bearer token into a tenant context,
//! and the configuration schema. Nothing here does IO.

pub mod alert;
pub mod apikey;
pub mod audit;
pub mod auth;
pub mod breaker;
pub mod config;
pub mod dataset;
pub mod error;
pub mod event_type;
pub mod features;
pub mod feedback;
pub mod governance;
pub mod ids;
pub mod jwt;
pub mod metrics;
pub mod model;
pub mod model_features;
pub mod role;
pub mod rollout;
pub mod tenant;
pub mod time;
pub mod training;
pub mod usage;

pub use error::ValidationError;
