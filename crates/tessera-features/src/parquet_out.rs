//! A training set as a Parquet file (what pandas, Spark and DuckDB read
//! directly): one column per table column, typed by the feature's dtype or,
//! for entity and pass-through columns, by its values; every column
//! optional (null where the join found nothing). Row groups of
//! [`ROW_GROUP`] rows, Snappy-compressed.

use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, TimeUnit, Type as Physical};
use parquet::column::writer::ColumnWriter;
use parquet::data_type::ByteArray;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::Type;
use serde_json::Value;
use tessera_core::features::{Dtype, parse_timestamp};

use crate::serve::Table;

/// Rows per row group: a reader can skip or stream by group.
pub const ROW_GROUP: usize = 65_536;

/// What a column is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int64,
    Double,
    Text,
    /// UTC milliseconds.
    Timestamp,
    DoubleList,
}

impl Kind {
    fn of_dtype(d: Dtype) -> Kind {
        match d {
            Dtype::Int64 => Kind::Int64,
            Dtype::Float64 => Kind::Double,
            Dtype::String => Kind::Text,
            Dtype::Bool => Kind::Bool,
            Dtype::Timestamp => Kind::Timestamp,
            Dtype::Float64List => Kind::DoubleList,
        }
    }

    /// A column without a declared type, by its values (nulls say nothing):
    /// one kind if they all have it, else text; `event_timestamp` is a
    /// timestamp when every value reads as one.
    fn infer<'a>(name: &str, values: impl Iterator<Item = &'a Value> + Clone) -> Kind {
        let present = values.filter(|v| !v.is_null());
        let all = |f: fn(&Value) -> bool| present.clone().all(f);
        if name == "event_timestamp" && all(|v| parse_timestamp(v).is_some()) {
            Kind::Timestamp
        } else if all(Value::is_boolean) {
            Kind::Bool
        } else if all(|v| v.is_i64()) {
            Kind::Int64
        } else if all(Value::is_number) {
            Kind::Double
        } else if all(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_number))) {
            Kind::DoubleList
        } else {
            Kind::Text
        }
    }

    fn field(self, name: &str) -> parquet::errors::Result<Type> {
        let leaf = |name: &str, physical, logical: Option<LogicalType>, rep| {
            Type::primitive_type_builder(name, physical)
                .with_repetition(rep)
                .with_logical_type(logical)
                .build()
        };
        let opt = Repetition::OPTIONAL;
        match self {
            Kind::Bool => leaf(name, Physical::BOOLEAN, None, opt),
            Kind::Int64 => leaf(name, Physical::INT64, None, opt),
            Kind::Double => leaf(name, Physical::DOUBLE, None, opt),
            Kind::Text => leaf(name, Physical::BYTE_ARRAY, Some(LogicalType::String), opt),
            Kind::Timestamp => leaf(
                name,
                Physical::INT64,
                Some(LogicalType::Timestamp { is_adjusted_to_u_t_c: true, unit: TimeUnit::MILLIS }),
                opt,
            ),
            // The standard three-level list: optional group (LIST) > repeated
            // group `list` > optional `element`.
            Kind::DoubleList => {
                let element = leaf("element", Physical::DOUBLE, None, opt)?;
                let list = Type::group_type_builder("list")
                    .with_repetition(Repetition::REPEATED)
                    .with_fields(vec![Arc::new(element)])
                    .build()?;
                Type::group_type_builder(name)
                    .with_repetition(opt)
                    .with_logical_type(Some(LogicalType::List))
                    .with_fields(vec![Arc::new(list)])
                    .build()
            }
        }
    }
}

/// Text of a value in a text column: a string as it is, anything else as JSON.
fn text(v: &Value) -> ByteArray {
    match v {
        Value::String(s) => ByteArray::from(s.as_str()),
        other => ByteArray::from(other.to_string().as_str()),
    }
}

/// Writes one column of `rows` (already of `kind`'s shape) to `w`.
fn write_column(
    w: &mut ColumnWriter<'_>,
    kind: Kind,
    rows: &[Vec<Value>],
    j: usize,
) -> parquet::errors::Result<()> {
    let cells = rows.iter().map(|r| &r[j]);
    let defs: Vec<i16> = cells.clone().map(|v| i16::from(!v.is_null())).collect();
    match (w, kind) {
        (ColumnWriter::BoolColumnWriter(w), Kind::Bool) => {
            let vals: Vec<bool> = cells.filter_map(Value::as_bool).collect();
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), Kind::Int64) => {
            let vals: Vec<i64> = cells.filter_map(Value::as_i64).collect();
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::Int64ColumnWriter(w), Kind::Timestamp) => {
            let stamps: Vec<Option<i64>> =
                cells.map(|v| parse_timestamp(v).map(|t| t.millis())).collect();
            let defs: Vec<i16> = stamps.iter().map(|s| i16::from(s.is_some())).collect();
            let vals: Vec<i64> = stamps.into_iter().flatten().collect();
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::DoubleColumnWriter(w), Kind::Double) => {
            let vals: Vec<f64> = cells.filter_map(Value::as_f64).collect();
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::ByteArrayColumnWriter(w), Kind::Text) => {
            let vals: Vec<ByteArray> = cells.filter(|v| !v.is_null()).map(text).collect();
            w.write_batch(&vals, Some(&defs), None)?;
        }
        (ColumnWriter::DoubleColumnWriter(w), Kind::DoubleList) => {
            // Levels: 0 null list, 1 empty list, 3 an element (2 would be a
            // null element, which a float64_list never holds); a row's first
            // element repeats at level 0, the others at 1.
            let (mut vals, mut defs, mut reps) = (Vec::new(), Vec::new(), Vec::new());
            for v in cells {
                match v.as_array() {
                    None => {
                        defs.push(0);
                        reps.push(0);
                    }
                    Some(items) if items.is_empty() => {
                        defs.push(1);
                        reps.push(0);
                    }
                    Some(items) => {
                        for (i, x) in items.iter().enumerate() {
                            vals.push(x.as_f64().unwrap_or(f64::NAN));
                            defs.push(3);
                            reps.push(i16::from(i > 0));
                        }
                    }
                }
            }
            w.write_batch(&vals, Some(&defs), Some(&reps))?;
        }
        (_, kind) => {
            return Err(parquet::errors::ParquetError::General(format!(
                "column {j} has no writer for {kind:?}"
            )));
        }
    }
    Ok(())
}

/// The table as a Parquet file: a feature column typed by its dtype, the
/// others by their values.
pub fn to_parquet(t: &Table) -> Result<Vec<u8>, String> {
    let dtypes = &t.dtypes;
    let kinds: Vec<Kind> = t
        .columns
        .iter()
        .enumerate()
        .map(|(j, name)| match dtypes.get(j).copied().flatten() {
            Some(d) => Kind::of_dtype(d),
            None => Kind::infer(name, t.rows.iter().map(move |r| &r[j])),
        })
        .collect();
    // A value that does not fit its declared kind (never for stored
    // features) would be written as null; text columns take anything.
    let write = || -> parquet::errors::Result<Vec<u8>> {
        let fields = t
            .columns
            .iter()
            .zip(&kinds)
            .map(|(name, k)| k.field(name).map(Arc::new))
            .collect::<parquet::errors::Result<Vec<_>>>()?;
        let schema = Type::group_type_builder("schema").with_fields(fields).build()?;
        let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut out = Vec::new();
        let mut writer = SerializedFileWriter::new(&mut out, Arc::new(schema), Arc::new(props))?;
        for group in t.rows.chunks(ROW_GROUP) {
            let mut rg = writer.next_row_group()?;
            let mut j = 0;
            while let Some(mut col) = rg.next_column()? {
                write_column(col.untyped(), kinds[j], group, j)?;
                col.close()?;
                j += 1;
            }
            rg.close()?;
        }
        writer.close()?;
        Ok(out)
    };
    write().map_err(|e| format!("could not write Parquet: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use serde_json::json;

    #[test]
    fn a_table_reads_back_typed_with_its_nulls() {
        let t = Table {
            columns: ["customer_id", "event_timestamp", "label", "spend", "tier", "emb", "vip"]
                .map(String::from)
                .to_vec(),
            rows: vec![
                vec![
                    json!("c1"),
                    json!("2026-12-01T10:00:00Z"),
                    json!(1),
                    json!(2.5),
                    json!("gold"),
                    json!([1.0, 2.0]),
                    json!(true),
                ],
                vec![
                    json!("c2"),
                    json!(1_700_000_000_000i64),
                    json!(0),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    json!(false),
                ],
                vec![
                    json!("c3"),
                    json!("2026-12-01T11:00:00Z"),
                    Value::Null,
                    json!(3.0),
                    json!("basic"),
                    json!([]),
                    Value::Null,
                ],
            ],
            dtypes: vec![
                None,
                None,
                None,
                Some(Dtype::Float64),
                Some(Dtype::String),
                Some(Dtype::Float64List),
                Some(Dtype::Bool),
            ],
        };
        let bytes = to_parquet(&t).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let schema = reader.metadata().file_metadata().schema_descr();
        let ts = schema.column(1).logical_type_ref().cloned();
        assert!(matches!(ts, Some(LogicalType::Timestamp { .. })), "{ts:?}");
        let rows: Vec<String> =
            reader.get_row_iter(None).unwrap().map(|r| r.unwrap().to_string()).collect();
        assert_eq!(rows.len(), 3);
        assert!(
            rows[0].contains("customer_id: \"c1\"") && rows[0].contains("spend: 2.5"),
            "{}",
            rows[0]
        );
        assert!(rows[0].contains("emb: [1.0, 2.0]") && rows[0].contains("label: 1"), "{}", rows[0]);
        assert!(rows[1].contains("spend: null") && rows[1].contains("emb: null"), "{}", rows[1]);
        assert!(rows[2].contains("emb: []") && rows[2].contains("label: null"), "{}", rows[2]);
    }

    #[test]
    fn mixed_values_are_text_and_many_rows_make_several_groups() {
        let rows: Vec<Vec<Value>> = (0..ROW_GROUP + 10)
            .map(|i| vec![if i % 2 == 0 { json!(i) } else { json!("x") }])
            .collect();
        let t = Table { columns: vec!["odd".into()], rows, dtypes: Vec::new() };
        let bytes = to_parquet(&t).unwrap();
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 2);
        let first = reader.get_row_iter(None).unwrap().next().unwrap().unwrap().to_string();
        assert_eq!(first, "{odd: \"0\"}");
    }
}
