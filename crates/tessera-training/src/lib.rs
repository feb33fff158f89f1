//! The training side of Tessera (SPEC L2, L3): datasets a tenant uploads
//! (CSV, JSON Lines or Parquet), read once at upload to check every row and
//! describe every column; the trainers and the validation report read them
//! again through the same readers.

pub mod dataset;
pub mod drift;
pub mod linear;
pub mod metrics;
pub mod mlp;
pub mod prepare;
pub mod rng;
pub mod validate;
