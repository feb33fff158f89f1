//! The protocol-independent inference pipeline: no axum, no HTTP. Protocol
//! adapters (`routes/{embeddings,chat,oip,kserve}.rs`) parse their bodies
//! into a [`Job`], run it through [`Call`], and render the [`Outcome`].
//!
//! - `resolve.rs`: the caller, the model name resolved once, the target
//!   version and its backend;
//! - `admission.rs`: limits and budget, one atomic step;
//! - `run.rs`: the run loop (timeout, stale cache, fallbacks, task check);
//! - `shadow.rs`: shadow traffic in the background;
//! - `pipeline.rs`: the `Job` trait, the cache slot, the typed outcome;
//! - `features.rs`: a request's entity read as the version's input;
//! - `backend.rs`: local backend calls under their breakers;
//! - `error.rs`: `ServeError` and its fallback classification.

mod admission;
pub mod backend;
mod error;
mod features;
mod pipeline;
pub mod resolve;
pub mod run;
pub mod shadow;

pub use admission::{BUDGET_SOFT, admit_events, estimate_tokens};

/// Most inputs (texts, instances) in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;
pub use error::ServeError;
pub use features::feature_tensor;
pub use pipeline::{Call, Job, Meta, Outcome, Reply};
pub use resolve::{
    Backend, Caller, Resolution, Target, Use, VersionRef, accepts_local, gate_refusal, load_tensor,
    pool_key, resolve, resolve_named, target,
};
pub use run::{Answer, Source};
