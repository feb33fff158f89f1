//! Datasets: a file in one of three formats, read row by row ([`read`]),
//! each row checked (a malformed one is reported by line and column and
//! fails the whole file), each column described ([`describe`]: its type,
//! nulls, range, and the distribution of its values when there are few, the
//! label distribution a trainer needs).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

mod describe;
mod formats;

pub use describe::Describer;
pub use formats::read;

/// Rows a dataset's preview keeps.
pub const PREVIEW_ROWS: usize = 20;

/// Most distinct values a column's distribution lists; a column with more
/// has none (an id, free text, a measurement).
pub const MAX_DISTINCT: usize = 50;

/// Most columns a dataset may have.
pub const MAX_COLUMNS: usize = 1_000;

/// A dataset file's format, named by its content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    Csv,
    Jsonl,
    Parquet,
}

impl Format {
    /// The format of a content type (parameters such as `charset` ignored).
    pub fn of_content_type(ct: &str) -> Option<Format> {
        let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match base.as_str() {
            "text/csv" => Some(Format::Csv),
            "application/x-ndjson" | "application/jsonl" | "application/jsonlines" => {
                Some(Format::Jsonl)
            }
            "application/vnd.apache.parquet" | "application/x-parquet" => Some(Format::Parquet),
            _ => None,
        }
    }

    /// The format a stored dataset names (`csv`, `jsonl`, `parquet`).
    pub fn parse(s: &str) -> Option<Format> {
        [Format::Csv, Format::Jsonl, Format::Parquet].into_iter().find(|f| f.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv",
            Format::Jsonl => "application/x-ndjson",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }
}

/// A column's type, inferred from its values: the narrowest that holds all
/// (the feature store's types; a dataset column is never a `timestamp`).
pub use tessera_core::features::Dtype;

/// One column as the dataset shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Column {
    pub name: String,
    pub dtype: Dtype,
    /// Rows where it is empty or null.
    pub nulls: u64,
    /// Distinct non-null values, when at most [`MAX_DISTINCT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distinct: Option<u64>,
    /// How many rows hold each value (the label distribution of a label
    /// column), when there are at most [`MAX_DISTINCT`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub values: Option<std::collections::BTreeMap<String, u64>>,
    /// Numbers: their range and mean.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
}

/// What reading a dataset found: its columns and rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schema {
    pub rows: u64,
    pub columns: Vec<Column>,
}

/// Why a file is not a dataset: the line (or Parquet row) and column when
/// one is to blame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub line: Option<u64>,
    pub column: Option<String>,
    pub message: String,
}

impl ParseError {
    pub fn at(line: u64, column: Option<&str>, what: impl std::fmt::Display) -> Self {
        let message = match column {
            Some(c) => format!("line {line}, column {c:?}: {what}"),
            None => format!("line {line}: {what}"),
        };
        Self { line: Some(line), column: column.map(str::to_owned), message }
    }

    pub fn file(what: impl Into<String>) -> Self {
        Self { line: None, column: None, message: what.into() }
    }
}

/// A file read whole: its schema and first rows, or the first problem.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub schema: Schema,
    pub preview: Vec<Map<String, Value>>,
}

/// Reads `input` (a file: Parquet needs to seek) as `format`, checking
/// every row; an empty dataset (no rows) is an error too.
pub fn inspect(format: Format, input: std::fs::File) -> Result<Inspection, ParseError> {
    let mut d = Describer::default();
    read(format, input, &mut |line, columns, cells| d.row(line, columns, cells))?;
    let (schema, preview) = d.finish();
    if schema.rows == 0 {
        return Err(ParseError::file("the dataset has no rows"));
    }
    Ok(Inspection { schema, preview })
}

/// Reads bytes already in memory (tests, small inputs) through a temporary file.
pub fn inspect_bytes(format: Format, bytes: &[u8]) -> Result<Inspection, ParseError> {
    use std::io::{Seek as _, Write as _};
    let mut f = tempfile::tempfile().map_err(|e| ParseError::file(e.to_string()))?;
    f.write_all(bytes).and_then(|()| f.rewind()).map_err(|e| ParseError::file(e.to_string()))?;
    inspect(format, f)
}

#[cfg(test)]
mod tests;
