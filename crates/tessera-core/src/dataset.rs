//! Datasets as the registry keeps them (L2): a tenant's named, versioned
//! files, content-addressed (the bytes live in the artifact store under
//! their sha256), with the schema and preview read from them at upload.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::time::Timestamp;

/// One version of a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Dataset {
    /// `ds_...`
    pub id: String,
    pub name: String,
    /// 1 for the first upload of a name, one more for each after.
    pub version: u32,
    /// `csv`, `jsonl` or `parquet`.
    pub format: String,
    /// Hex sha256 of the file as uploaded.
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    pub rows: u64,
    /// The columns: `name`, `dtype`, `nulls`, and where they apply `min`,
    /// `max`, `mean`, `distinct` and `values` (each value's row count: the
    /// label distribution).
    #[schema(value_type = Vec<Object>)]
    pub schema: Value,
    /// The first rows, for `GET /v1/datasets/{id}/preview`.
    #[serde(skip)]
    pub preview: Vec<Map<String, Value>>,
    pub created_at: Timestamp,
    /// The key (or `jwt:<subject>`) that uploaded it.
    pub created_by: Option<String>,
}

/// A dataset version to store: the store assigns its id and version.
#[derive(Debug, Clone)]
pub struct NewDataset<'a> {
    pub name: &'a str,
    pub format: &'a str,
    pub sha256: &'a str,
    pub size: u64,
    pub rows: u64,
    pub schema: &'a Value,
    pub preview: &'a [Map<String, Value>],
}

pub fn new_dataset_id() -> String {
    format!("ds_{}", crate::ids::random_lower(16))
}
