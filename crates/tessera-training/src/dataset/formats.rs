//! The three formats, read into one shape: each row's cells, aligned with
//! the columns seen so far (JSON Lines can add a column on any line; a
//! shorter row's missing cells are null), with the line it came from.
//!
//! CSV: a header row, then records; an empty field is null, `true`/`false`
//! a bool, an integer an int64, another finite number a float64, the rest
//! text. JSON Lines: one object per line (blank lines skipped); values
//! null, bools, numbers, strings or lists of numbers. Parquet: every row
//! group in order; its line numbers count rows from 1.

use std::fs::File;
use std::io::{BufRead, BufReader};

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use serde_json::Value;

use super::{Format, MAX_COLUMNS, ParseError};

/// Called per row: its line, the columns so far, its cells.
pub type RowFn<'a> = dyn FnMut(u64, &[String], Vec<Value>) -> Result<(), ParseError> + 'a;

/// Reads every row of `input` as `format`, stopping at the first problem.
pub fn read(format: Format, input: File, on_row: &mut RowFn<'_>) -> Result<(), ParseError> {
    match format {
        Format::Csv => csv(input, on_row),
        Format::Jsonl => jsonl(input, on_row),
        Format::Parquet => parquet(input, on_row),
    }
}

fn check_columns(columns: &[String]) -> Result<(), ParseError> {
    if columns.len() > MAX_COLUMNS {
        return Err(ParseError::file(format!(
            "the dataset has {} columns; at most {MAX_COLUMNS}",
            columns.len()
        )));
    }
    Ok(())
}

/// A CSV field as its value.
fn cell(text: &str) -> Value {
    let t = text.trim();
    if t.is_empty() {
        return Value::Null;
    }
    match t {
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Ok(i) = t.parse::<i64>() {
        return Value::from(i);
    }
    match t.parse::<f64>() {
        Ok(f) if f.is_finite() => Value::from(f),
        _ => Value::String(text.to_owned()),
    }
}

fn csv(input: File, on_row: &mut RowFn<'_>) -> Result<(), ParseError> {
    let mut r = ::csv::ReaderBuilder::new().has_headers(true).from_reader(BufReader::new(input));
    let header = r.headers().map_err(|e| csv_error(&e, &[]))?.clone();
    let columns: Vec<String> = header.iter().map(|h| h.trim().to_owned()).collect();
    if columns.iter().all(String::is_empty) {
        return Err(ParseError::file("the CSV file has no header row"));
    }
    check_columns(&columns)?;
    let mut seen = std::collections::HashSet::new();
    for (i, c) in columns.iter().enumerate() {
        if c.is_empty() {
            return Err(ParseError::at(1, None, format!("column {} has no name", i + 1)));
        }
        if !seen.insert(c.as_str()) {
            return Err(ParseError::at(1, Some(c), "the header names this column twice"));
        }
    }
    let mut record = ::csv::StringRecord::new();
    loop {
        match r.read_record(&mut record) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let line = record.position().map_or(0, |p| p.line());
                // A blank line in a one-column file reads as one empty field.
                if record.len() == 1
                    && record.get(0).is_some_and(str::is_empty)
                    && columns.len() > 1
                {
                    continue;
                }
                let cells = record.iter().map(cell).collect();
                on_row(line, &columns, cells)?;
            }
            Err(e) => return Err(csv_error(&e, &columns)),
        }
    }
}

fn csv_error(e: &::csv::Error, columns: &[String]) -> ParseError {
    let line = e.position().map_or(0, |p| p.line());
    match e.kind() {
        ::csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            ParseError::at(line, None, format!("{len} fields where the header has {expected_len}"))
        }
        ::csv::ErrorKind::Utf8 { err, .. } => {
            let column = columns.get(err.field()).map(String::as_str);
            ParseError::at(line, column, "not UTF-8 text")
        }
        _ if line > 0 => ParseError::at(line, None, e),
        _ => ParseError::file(format!("not a CSV file: {e}")),
    }
}

fn jsonl(input: File, on_row: &mut RowFn<'_>) -> Result<(), ParseError> {
    let mut columns: Vec<String> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut line_no = 0u64;
    for line in BufReader::new(input).lines() {
        line_no += 1;
        let line = line.map_err(|e| ParseError::at(line_no, None, format!("unreadable: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let Value::Object(obj) = serde_json::from_str::<Value>(&line)
            .map_err(|e| ParseError::at(line_no, None, format!("not JSON: {e}")))?
        else {
            return Err(ParseError::at(line_no, None, "not a JSON object"));
        };
        let mut cells = vec![Value::Null; columns.len()];
        for (k, v) in obj {
            let ok = match &v {
                Value::Object(_) => false,
                Value::Array(items) => items.iter().all(Value::is_number),
                _ => true,
            };
            if !ok {
                return Err(ParseError::at(
                    line_no,
                    Some(&k),
                    "nested values are not supported (a list of numbers is)",
                ));
            }
            let i = match index.get(&k) {
                Some(i) => *i,
                None => {
                    columns.push(k.clone());
                    check_columns(&columns)?;
                    index.insert(k, columns.len() - 1);
                    cells.push(Value::Null);
                    columns.len() - 1
                }
            };
            cells[i] = v;
        }
        on_row(line_no, &columns, cells)?;
    }
    Ok(())
}

/// A Parquet value as a cell, or what it is when it cannot be one.
fn field(f: &Field) -> Result<Value, &'static str> {
    Ok(match f {
        Field::Null => Value::Null,
        Field::Bool(b) => Value::Bool(*b),
        Field::Byte(x) => Value::from(*x),
        Field::Short(x) => Value::from(*x),
        Field::Int(x) => Value::from(*x),
        Field::Long(x) => Value::from(*x),
        Field::UByte(x) => Value::from(*x),
        Field::UShort(x) => Value::from(*x),
        Field::UInt(x) => Value::from(*x),
        Field::ULong(x) => Value::from(*x),
        Field::Float16(x) => Value::from(f64::from(f32::from(*x))),
        Field::Float(x) => Value::from(f64::from(*x)),
        Field::Double(x) => Value::from(*x),
        Field::Decimal(_) => return Err("a decimal (cast it to a float)"),
        Field::Str(s) => Value::String(s.clone()),
        Field::Bytes(b) => match std::str::from_utf8(b.data()) {
            Ok(s) => Value::String(s.to_owned()),
            Err(_) => return Err("binary data"),
        },
        Field::Date(days) => Value::String(
            tessera_core::time::Timestamp::from_millis(i64::from(*days) * 86_400_000).to_rfc3339(),
        ),
        Field::TimeMillis(_) | Field::TimeMicros(_) => return Err("a time of day"),
        Field::TimestampMillis(ms) => {
            Value::String(tessera_core::time::Timestamp::from_millis(*ms).to_rfc3339())
        }
        Field::TimestampMicros(us) => {
            Value::String(tessera_core::time::Timestamp::from_millis(us / 1000).to_rfc3339())
        }
        Field::ListInternal(list) => {
            let mut out = Vec::with_capacity(list.len());
            for e in list.elements() {
                match field(e)? {
                    Value::Number(n) => out.push(Value::Number(n)),
                    _ => return Err("a list of other than numbers"),
                }
            }
            Value::Array(out)
        }
        Field::Group(_) | Field::MapInternal(_) => return Err("a nested group or map"),
    })
}

fn parquet(input: File, on_row: &mut RowFn<'_>) -> Result<(), ParseError> {
    let reader = SerializedFileReader::new(input)
        .map_err(|e| ParseError::file(format!("not a Parquet file: {e}")))?;
    let schema = reader.metadata().file_metadata().schema_descr();
    let columns: Vec<String> =
        schema.root_schema().get_fields().iter().map(|f| f.name().to_owned()).collect();
    check_columns(&columns)?;
    let rows = reader
        .get_row_iter(None)
        .map_err(|e| ParseError::file(format!("unreadable Parquet file: {e}")))?;
    for (i, row) in rows.enumerate() {
        let line = i as u64 + 1;
        let row = row.map_err(|e| ParseError::at(line, None, format!("unreadable row: {e}")))?;
        let mut cells = vec![Value::Null; columns.len()];
        for (name, f) in row.get_column_iter() {
            let v = field(f).map_err(|what| {
                ParseError::at(line, Some(name), format!("{what} is not supported"))
            })?;
            if let Some(j) = columns.iter().position(|c| c == name) {
                cells[j] = v;
            }
        }
        on_row(line, &columns, cells)?;
    }
    Ok(())
}
