//! A dataset's columns as a trainer's inputs: the label of every row (rows
//! without one are skipped and counted), and either a text column or
//! numeric feature columns as a matrix; labels encoded as class indices
//! (classification) or numbers (regression).

use std::fs::File;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataset::{Format, ParseError, read};
use crate::linear::Matrix;

/// A feature column and how it is read: numbers as they are (the trainer
/// standardizes them), or categories one-hot.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub categorical: bool,
}

/// What the model reads.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    Text(&'a str),
    Features(&'a [Feature]),
}

/// How one input column became matrix columns, in order: the layout the
/// artifact records, so a caller can build the same vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputColumn {
    Numeric {
        name: String,
    },
    /// One matrix column per category, in this order; a value seen in no
    /// training row is all zeros.
    Categorical {
        name: String,
        categories: Vec<String>,
    },
}

impl InputColumn {
    pub fn width(&self) -> usize {
        match self {
            InputColumn::Numeric { .. } => 1,
            InputColumn::Categorical { categories, .. } => categories.len(),
        }
    }
}

/// The rows a trainer uses, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub labels: Vec<Value>,
    /// The text column's values (text inputs).
    pub texts: Vec<String>,
    /// The feature columns (numeric inputs), categorical ones one-hot.
    pub features: Option<Matrix>,
    /// How the feature columns were laid out.
    pub layout: Vec<InputColumn>,
    /// Each row's group under the protected attribute, if one was named.
    pub groups: Option<Vec<String>>,
    /// Rows left out for a null label (or a null text).
    pub skipped: u64,
}

fn number(v: &Value) -> Option<f32> {
    match v {
        Value::Number(n) => n.as_f64().map(|x| x as f32),
        Value::Bool(b) => Some(f32::from(u8::from(*b))),
        _ => None,
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The job's feature columns as the dataset's schema types them: numbers
/// (int64, float64, bool) are numeric; other columns with few distinct
/// values are categorical; a column with too many distinct values to be
/// categories is an error naming it.
pub fn features_of(schema: &Value, names: &[String]) -> Result<Vec<Feature>, String> {
    let cols = schema.as_array().map(Vec::as_slice).unwrap_or_default();
    names
        .iter()
        .map(|name| {
            let c = cols.iter().find(|c| c["name"] == name.as_str()).ok_or_else(|| {
                let all: Vec<&str> = cols.iter().filter_map(|c| c["name"].as_str()).collect();
                format!("the dataset has no column {name:?}; it has {}", all.join(", "))
            })?;
            let numeric = matches!(c["dtype"].as_str(), Some("int64" | "float64" | "bool"));
            if !numeric && c["distinct"].as_u64().is_none_or(|d| d as usize > MAX_CATEGORIES) {
                return Err(format!(
                    "feature {name:?} is {} with more than {MAX_CATEGORIES} distinct values: too many to be categories (a text column is `text`)",
                    c["dtype"]
                ));
            }
            if numeric && c["nulls"].as_u64().is_some_and(|n| n > 0) {
                return Err(format!(
                    "numeric feature {name:?} is empty in {} rows; a numeric feature needs a value in every row",
                    c["nulls"]
                ));
            }
            Ok(Feature { name: name.clone(), categorical: !numeric })
        })
        .collect()
}

/// At most this many categories per column: the distinct values a
/// dataset's schema counts.
pub const MAX_CATEGORIES: usize = crate::dataset::MAX_DISTINCT;

/// Reads the columns a job needs; a column the file lacks, or a numeric
/// feature that is not a number, fails naming it.
pub fn prepare(
    format: Format,
    file: File,
    label: &str,
    inputs: Inputs<'_>,
    protected: Option<&str>,
) -> Result<Prepared, ParseError> {
    let mut out = Prepared {
        labels: Vec::new(),
        texts: Vec::new(),
        features: None,
        layout: Vec::new(),
        groups: protected.map(|_| Vec::new()),
        skipped: 0,
    };
    let features: &[Feature] = match inputs {
        Inputs::Text(_) => &[],
        Inputs::Features(f) => f,
    };
    // Per feature: numbers, or category names, one per kept row.
    let mut numbers: Vec<Vec<f32>> = vec![Vec::new(); features.len()];
    let mut categories: Vec<Vec<String>> = vec![Vec::new(); features.len()];
    let mut columns_seen: Vec<String> = Vec::new();
    read(format, file, &mut |line, columns, cells| {
        // Columns can grow (JSON Lines): the last row's list is the file's.
        if columns.len() != columns_seen.len() {
            columns_seen = columns.to_vec();
        }
        let at = |name: &str| columns.iter().position(|c| c == name);
        let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).unwrap_or(&Value::Null);
        let l = cell(at(label));
        if l.is_null() {
            out.skipped += 1;
            return Ok(());
        }
        if let Inputs::Text(t) = inputs {
            match cell(at(t)) {
                Value::String(s) if !s.trim().is_empty() => out.texts.push(s.clone()),
                // No text: nothing to learn from.
                Value::Null | Value::String(_) => {
                    out.skipped += 1;
                    return Ok(());
                }
                other => out.texts.push(other.to_string()),
            }
        }
        for (k, f) in features.iter().enumerate() {
            let Some(i) = at(&f.name) else {
                return Err(ParseError::at(
                    line,
                    Some(&f.name),
                    "the row has no value for this feature",
                ));
            };
            let v = cell(Some(i));
            if f.categorical {
                categories[k].push(if v.is_null() { String::new() } else { text(v) });
            } else {
                let x = number(v).ok_or_else(|| {
                    ParseError::at(
                        line,
                        Some(&f.name),
                        format!("a numeric feature must be a number, got {v}"),
                    )
                })?;
                numbers[k].push(x);
            }
        }
        if let (Some(p), Some(groups)) = (protected, out.groups.as_mut()) {
            groups.push(text(cell(at(p))));
        }
        out.labels.push(l.clone());
        Ok(())
    })?;
    let names: Vec<&str> = match inputs {
        Inputs::Text(t) => vec![t],
        Inputs::Features(f) => f.iter().map(|f| f.name.as_str()).collect(),
    };
    for name in names.into_iter().chain([label]).chain(protected) {
        if !columns_seen.iter().any(|c| c == name) {
            return Err(ParseError::file(format!(
                "the dataset has no column {name:?}; it has {}",
                columns_seen.join(", ")
            )));
        }
    }
    if !features.is_empty() {
        let n = out.labels.len();
        for (k, f) in features.iter().enumerate() {
            out.layout.push(if f.categorical {
                InputColumn::Categorical {
                    name: f.name.clone(),
                    categories: vocabulary(&categories[k]),
                }
            } else {
                InputColumn::Numeric { name: f.name.clone() }
            });
        }
        let width: usize = out.layout.iter().map(InputColumn::width).sum();
        let mut data = vec![0.0f32; n * width];
        let mut offset = 0;
        for (k, col) in out.layout.iter().enumerate() {
            match col {
                InputColumn::Numeric { .. } => {
                    for (i, x) in numbers[k].iter().enumerate() {
                        data[i * width + offset] = *x;
                    }
                }
                InputColumn::Categorical { categories: vocab, .. } => {
                    let index: std::collections::HashMap<&str, usize> =
                        vocab.iter().enumerate().map(|(j, v)| (v.as_str(), j)).collect();
                    for (i, c) in categories[k].iter().enumerate() {
                        if let Some(j) = index.get(c.as_str()) {
                            data[i * width + offset + j] = 1.0;
                        }
                    }
                }
            }
            offset += col.width();
        }
        out.features = Some(Matrix::new(n, width, data));
    }
    Ok(out)
}

/// A column's categories, most frequent first (ties by name), at most
/// [`MAX_CATEGORIES`].
fn vocabulary(values: &[String]) -> Vec<String> {
    let mut counts: std::collections::HashMap<&str, u64> = std::collections::HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let mut v: Vec<(&str, u64)> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    v.into_iter().take(MAX_CATEGORIES).map(|(s, _)| s.to_owned()).collect()
}

/// One row's feature values encoded by `layout` (what serving and
/// validation send a tabular model).
pub fn encode_row(layout: &[InputColumn], row: &[Value]) -> Vec<f32> {
    let mut out = Vec::new();
    for (col, v) in layout.iter().zip(row) {
        match col {
            InputColumn::Numeric { .. } => out.push(number(v).unwrap_or(0.0)),
            InputColumn::Categorical { categories, .. } => {
                let t = if v.is_null() { String::new() } else { text(v) };
                out.extend(categories.iter().map(|c| f32::from(u8::from(*c == t))));
            }
        }
    }
    out
}

/// Classification labels as class indices, with the classes' names in
/// sorted order; fewer than two classes is an error.
pub fn classes(labels: &[Value]) -> Result<(Vec<usize>, Vec<String>), String> {
    let mut names: Vec<String> = labels.iter().map(text).collect();
    names.sort();
    names.dedup();
    if names.len() < 2 {
        return Err(format!(
            "the label column has {} class{}; a classifier needs at least two",
            names.len(),
            if names.len() == 1 { "" } else { "es" }
        ));
    }
    let idx = labels.iter().map(|v| names.binary_search(&text(v)).unwrap_or(0)).collect();
    Ok((idx, names))
}

/// Regression targets as numbers; a label that is not one is an error.
pub fn targets(labels: &[Value]) -> Result<Vec<f32>, String> {
    labels
        .iter()
        .enumerate()
        .map(|(i, v)| {
            number(v).ok_or_else(|| format!("label of row {} is {v}, not a number", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek as _, Write as _};

    fn num(name: &str) -> Feature {
        Feature { name: name.into(), categorical: false }
    }

    #[test]
    fn categories_one_hot_and_groups() {
        let p = prepare(
            Format::Csv,
            file("age,sex,y\n30,f,1\n40,m,0\n50,m,1\n"),
            "y",
            Inputs::Features(&[num("age"), Feature { name: "sex".into(), categorical: true }]),
            Some("sex"),
        )
        .unwrap();
        // m is the more frequent category: first.
        assert_eq!(
            p.layout[1],
            InputColumn::Categorical {
                name: "sex".into(),
                categories: vec!["m".into(), "f".into()]
            }
        );
        assert_eq!(p.features.unwrap().data, vec![30.0, 0.0, 1.0, 40.0, 1.0, 0.0, 50.0, 1.0, 0.0]);
        assert_eq!(p.groups.unwrap(), vec!["f", "m", "m"]);
        assert_eq!(encode_row(&p.layout, &[Value::from(7), Value::from("f")]), vec![7.0, 0.0, 1.0]);
        assert_eq!(encode_row(&p.layout, &[Value::from(7), Value::from("x")]), vec![7.0, 0.0, 0.0]);
        let e = prepare(Format::Csv, file("t,y\nhi,1\n"), "y", Inputs::Text("t"), Some("sex"))
            .unwrap_err();
        assert!(e.message.contains("no column \"sex\""), "{e}");
    }

    fn file(text: &str) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f.rewind().unwrap();
        f
    }

    #[test]
    fn features_and_labels_with_null_labels_skipped() {
        let p = prepare(
            Format::Csv,
            file("a,b,y\n1,2,x\n3,4,\n5,true,z\n"),
            "y",
            Inputs::Features(&[num("a"), num("b")]),
            None,
        )
        .unwrap();
        assert_eq!(p.skipped, 1);
        assert_eq!(p.features.unwrap().data, vec![1.0, 2.0, 5.0, 1.0]);
        let (idx, names) = classes(&p.labels).unwrap();
        assert_eq!((idx, names), (vec![0, 1], vec!["x".to_owned(), "z".to_owned()]));
    }

    #[test]
    fn bad_columns_and_values_are_named() {
        let e =
            prepare(Format::Csv, file("a,y\nfoo,1\n"), "y", Inputs::Features(&[num("a")]), None)
                .unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("a")), "{e}");
        let e = prepare(Format::Csv, file("t,y\nhi,1\n"), "label", Inputs::Text("t"), None)
            .unwrap_err();
        assert!(e.message.contains("no column \"label\""), "{e}");
        let p = prepare(Format::Csv, file("t,y\nhi,1\n,0\nyo,1\n"), "y", Inputs::Text("t"), None)
            .unwrap();
        assert_eq!((p.texts.len(), p.skipped), (2, 1));
        assert!(classes(&p.labels).unwrap_err().contains("1 class"));
        assert_eq!(targets(&p.labels).unwrap(), vec![1.0, 1.0]);
        assert!(targets(&[Value::from("x")]).is_err());
    }
}
