//! The integration tests: one binary, so the suite links once. Each module
//! starts the real `tessera` binary (or two) against the machine's services
//! and real clients; `common` is the test kit.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::disallowed_methods)]

#[macro_use]
mod common;

mod api;
mod audit;
mod cache;
mod cli;
mod clients;
mod datasets;
mod deployments;
mod durability;
mod embeddings;
mod events;
mod faults;
mod feature_models;
mod features;
mod isolation;
mod jwks;
mod limits;
mod loadtest;
mod models;
mod monitoring;
mod openapi_fuzz;
mod operations;
mod remote;
mod rollouts;
mod scale_out;
mod tensor_models;
mod training;
mod usage;
