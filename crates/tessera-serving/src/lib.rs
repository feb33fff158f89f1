//! Tessera's serving layer: the protocol-free inference pipeline
//! (`inference/`) and the services it runs on. Nothing here knows HTTP
//! routes or axum; the gateway (`tessera-gateway`) is the HTTP edge on top.
//!
//! - `services.rs`: [`Services`], everything a request needs, built once;
//! - `limits.rs`: rate, token, concurrency and budget limits, one atomic step;
//! - `cache.rs`: the two-level response cache (L1 moka, L2 Redis);
//! - `metering.rs`: usage records through a bounded queue to a batched writer;
//! - `readthrough.rs`, `flight.rs`: per-replica read-through caches;
//! - `tenant_cache.rs`, `registry_cache.rs`: tenants, names, deployments;
//! - `invalidate.rs`: the store decorator that announces changes to caches;
//! - `event_schemas.rs`: tenants' event type schemas, compiled and read through;
//! - `predictions.rs`: one prediction record per inference, off the request path;
//! - `alerts.rs`: the alert controller and its signed webhook deliveries (O4);
//! - `drift.rs`: a version's inputs and predictions against a reference (O3);
//! - `feedback.rs`: ground truth joined to prediction records, and its counters;
//! - `rollouts.rs`: starting, controlling and evaluating rollouts (the controller);
//! - `training.rs`: the training job runner (claims jobs, fits, stores versions);
//! - `redis_link.rs`: the shared Redis link; `tasks.rs`: background tasks.

pub mod alerts;
pub mod cache;
pub mod drift;
pub mod event_schemas;
pub mod feature_catalogs;
pub mod feedback;
pub mod flight;
pub mod inference;
pub mod invalidate;
pub mod limits;
pub mod metering;
pub mod predictions;
pub mod readthrough;
pub mod redis_link;
pub mod registry_cache;
pub mod rollouts;
mod services;
pub mod stream_features;
pub mod tasks;
pub mod tenant_cache;
pub mod training;
pub mod validation;

pub use services::{EventSettings, Services, ServingConfig, ShadowStats};
