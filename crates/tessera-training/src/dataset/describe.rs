//! Column statistics gathered in one pass: which kinds of value a column
//! holds (its type is the narrowest that holds them all), nulls, the range
//! and mean of numbers, and the count of each value while there are few.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{Column, Dtype, MAX_DISTINCT, PREVIEW_ROWS, ParseError, Schema};

#[derive(Debug, Default)]
struct Stats {
    nulls: u64,
    bools: u64,
    ints: u64,
    floats: u64,
    strings: u64,
    lists: u64,
    /// `None` once more than [`MAX_DISTINCT`] values were seen.
    values: Option<BTreeMap<String, u64>>,
    min: f64,
    max: f64,
    sum: f64,
    /// The rows before this column first appeared (JSON Lines): nulls.
    missing_before: u64,
}

impl Stats {
    fn new(missing_before: u64) -> Self {
        Self {
            values: Some(BTreeMap::new()),
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            missing_before,
            ..Self::default()
        }
    }

    fn add(&mut self, v: &Value) {
        let key = match v {
            Value::Null => {
                self.nulls += 1;
                return;
            }
            Value::Bool(b) => {
                self.bools += 1;
                b.to_string()
            }
            Value::Number(n) => {
                if n.is_i64() || n.is_u64() {
                    self.ints += 1;
                } else {
                    self.floats += 1;
                }
                let x = n.as_f64().unwrap_or(0.0);
                self.min = self.min.min(x);
                self.max = self.max.max(x);
                self.sum += x;
                n.to_string()
            }
            Value::String(s) => {
                self.strings += 1;
                s.clone()
            }
            Value::Array(_) | Value::Object(_) => {
                self.lists += 1;
                return;
            }
        };
        if let Some(values) = &mut self.values {
            *values.entry(key).or_insert(0) += 1;
            if values.len() > MAX_DISTINCT {
                self.values = None;
            }
        }
    }

    fn dtype(&self) -> Dtype {
        let numbers = self.ints + self.floats;
        let kinds =
            [self.bools, numbers, self.strings, self.lists].iter().filter(|n| **n > 0).count();
        match () {
            _ if kinds != 1 => Dtype::String,
            _ if self.bools > 0 => Dtype::Bool,
            _ if self.lists > 0 => Dtype::Float64List,
            _ if self.floats > 0 => Dtype::Float64,
            _ if self.ints > 0 => Dtype::Int64,
            _ => Dtype::String,
        }
    }

    fn column(self, name: String) -> Column {
        let dtype = self.dtype();
        let numbers = self.ints + self.floats;
        let numeric = matches!(dtype, Dtype::Int64 | Dtype::Float64) && numbers > 0;
        let distinct = self.values.as_ref().map(|v| v.len() as u64);
        Column {
            name,
            dtype,
            nulls: self.nulls + self.missing_before,
            distinct,
            values: if dtype == Dtype::Float64List { None } else { self.values },
            min: numeric.then_some(self.min),
            max: numeric.then_some(self.max),
            mean: numeric.then(|| self.sum / numbers as f64),
        }
    }
}

/// Gathers a dataset's schema and preview from its rows.
#[derive(Debug, Default)]
pub struct Describer {
    columns: Vec<String>,
    stats: Vec<Stats>,
    rows: u64,
    preview: Vec<Map<String, Value>>,
}

impl Describer {
    /// Takes one row (its cells aligned with `columns`, which may have grown).
    pub fn row(
        &mut self,
        _line: u64,
        columns: &[String],
        cells: Vec<Value>,
    ) -> Result<(), ParseError> {
        while self.stats.len() < columns.len() {
            self.stats.push(Stats::new(self.rows));
            self.columns.push(columns[self.stats.len() - 1].clone());
        }
        for (i, s) in self.stats.iter_mut().enumerate() {
            s.add(cells.get(i).unwrap_or(&Value::Null));
        }
        if self.preview.len() < PREVIEW_ROWS {
            let row = columns
                .iter()
                .cloned()
                .zip(cells.into_iter().chain(std::iter::repeat(Value::Null)))
                .collect();
            self.preview.push(row);
        }
        self.rows += 1;
        Ok(())
    }

    pub fn finish(self) -> (Schema, Vec<Map<String, Value>>) {
        let columns = self.columns.into_iter().zip(self.stats).map(|(n, s)| s.column(n)).collect();
        (Schema { rows: self.rows, columns }, self.preview)
    }
}
