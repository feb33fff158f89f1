//! A dataset's columns as a trainer's inputs: the label of every row (rows
//! without one are skipped and counted), and either a text column or
//! numeric feature columns as a matrix; labels encoded as class indices
//! (classification) or numbers (regression).

use std::fs::File;

use serde_json::Value;

use crate::dataset::{Format, ParseError, read};
use crate::linear::Matrix;

/// What the model reads.
#[derive(Debug, Clone, Copy)]
pub enum Inputs<'a> {
    Text(&'a str),
    Features(&'a [String]),
}

/// The rows a trainer uses, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub labels: Vec<Value>,
    /// The text column's values (text inputs).
    pub texts: Vec<String>,
    /// The feature columns (numeric inputs).
    pub features: Option<Matrix>,
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

/// Reads the columns a job needs; a column the file lacks, or a feature
/// that is not a number, fails naming it.
pub fn prepare(
    format: Format,
    file: File,
    label: &str,
    inputs: Inputs<'_>,
) -> Result<Prepared, ParseError> {
    let mut out = Prepared { labels: Vec::new(), texts: Vec::new(), features: None, skipped: 0 };
    let width = match inputs {
        Inputs::Text(_) => 0,
        Inputs::Features(f) => f.len(),
    };
    let mut data: Vec<f32> = Vec::new();
    let mut columns_seen: Vec<String> = Vec::new();
    read(format, file, &mut |line, columns, cells| {
        // Columns can grow (JSON Lines): the last row's list is the file's.
        if columns.len() != columns_seen.len() {
            columns_seen = columns.to_vec();
        }
        let at = |name: &str| columns.iter().position(|c| c == name);
        let cell = |i: Option<usize>| i.and_then(|i| cells.get(i)).unwrap_or(&Value::Null);
        let label_i = at(label);
        let l = cell(label_i);
        if l.is_null() {
            out.skipped += 1;
            return Ok(());
        }
        match inputs {
            Inputs::Text(t) => match cell(at(t)) {
                Value::String(s) if !s.trim().is_empty() => out.texts.push(s.clone()),
                // No text: nothing to learn from.
                Value::Null | Value::String(_) => {
                    out.skipped += 1;
                    return Ok(());
                }
                other => out.texts.push(other.to_string()),
            },
            Inputs::Features(names) => {
                for name in names {
                    let Some(i) = at(name) else {
                        return Err(ParseError::at(
                            line,
                            Some(name),
                            "the row has no value for this feature",
                        ));
                    };
                    let v = cell(Some(i));
                    let x = number(v).ok_or_else(|| {
                        ParseError::at(
                            line,
                            Some(name),
                            format!("a feature must be a number, got {v}"),
                        )
                    })?;
                    data.push(x);
                }
            }
        }
        out.labels.push(l.clone());
        Ok(())
    })?;
    let names: Vec<&str> = match inputs {
        Inputs::Text(t) => vec![t],
        Inputs::Features(f) => f.iter().map(String::as_str).collect(),
    };
    for name in names.into_iter().chain([label]) {
        if !columns_seen.iter().any(|c| c == name) {
            return Err(ParseError::file(format!(
                "the dataset has no column {name:?}; it has {}",
                columns_seen.join(", ")
            )));
        }
    }
    if width > 0 {
        out.features = Some(Matrix::new(out.labels.len(), width, data));
    }
    Ok(out)
}

/// Classification labels as class indices, with the classes' names in
/// sorted order; fewer than two classes is an error.
pub fn classes(labels: &[Value]) -> Result<(Vec<usize>, Vec<String>), String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
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
            Inputs::Features(&["a".into(), "b".into()]),
        )
        .unwrap();
        assert_eq!(p.skipped, 1);
        assert_eq!(p.features.unwrap().data, vec![1.0, 2.0, 5.0, 1.0]);
        let (idx, names) = classes(&p.labels).unwrap();
        assert_eq!((idx, names), (vec![0, 1], vec!["x".to_owned(), "z".to_owned()]));
    }

    #[test]
    fn bad_columns_and_values_are_named() {
        let e = prepare(Format::Csv, file("a,y\nfoo,1\n"), "y", Inputs::Features(&["a".into()]))
            .unwrap_err();
        assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("a")), "{e}");
        let e = prepare(Format::Csv, file("t,y\nhi,1\n"), "label", Inputs::Text("t")).unwrap_err();
        assert!(e.message.contains("no column \"label\""), "{e}");
        let p =
            prepare(Format::Csv, file("t,y\nhi,1\n,0\nyo,1\n"), "y", Inputs::Text("t")).unwrap();
        assert_eq!((p.texts.len(), p.skipped), (2, 1));
        assert!(classes(&p.labels).unwrap_err().contains("1 class"));
        assert_eq!(targets(&p.labels).unwrap(), vec![1.0, 1.0]);
        assert!(targets(&[Value::from("x")]).is_err());
    }
}
