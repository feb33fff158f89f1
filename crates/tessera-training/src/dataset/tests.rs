use super::*;
use serde_json::json;

fn col<'a>(s: &'a Schema, name: &str) -> &'a Column {
    s.columns.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no column {name}"))
}

#[test]
fn csv_columns_are_typed_and_described() {
    let text = "text,label,score,ok,n\n\
                \"great, really\",pos,0.5,true,1\n\
                \"bad\nvery\",neg,1,false,2\n\
                meh,pos,,true,3\n";
    let i = inspect_bytes(Format::Csv, text.as_bytes()).unwrap();
    assert_eq!(i.schema.rows, 3);
    let label = col(&i.schema, "label");
    assert_eq!(label.dtype, Dtype::String);
    assert_eq!(
        label.values.as_ref().unwrap(),
        &[("neg".to_owned(), 1), ("pos".to_owned(), 2)].into()
    );
    let score = col(&i.schema, "score");
    assert_eq!(
        (score.dtype, score.nulls, score.min, score.max),
        (Dtype::Float64, 1, Some(0.5), Some(1.0))
    );
    assert_eq!(col(&i.schema, "ok").dtype, Dtype::Bool);
    let n = col(&i.schema, "n");
    assert_eq!((n.dtype, n.mean), (Dtype::Int64, Some(2.0)));
    assert_eq!(i.preview[1]["text"], json!("bad\nvery"));
    assert_eq!(i.preview[0]["score"], json!(0.5));
}

#[test]
fn a_malformed_csv_row_is_named_by_line() {
    let text = "a,b\n1,2\n3,4\n5\n";
    let e = inspect_bytes(Format::Csv, text.as_bytes()).unwrap_err();
    assert_eq!(e.line, Some(4), "{e}");
    assert!(e.message.contains("1 fields where the header has 2"), "{e}");
    let e = inspect_bytes(Format::Csv, b"a,a\n1,2\n").unwrap_err();
    assert_eq!((e.line, e.column.as_deref()), (Some(1), Some("a")), "{e}");
    let e = inspect_bytes(Format::Csv, b"a,b\n").unwrap_err();
    assert!(e.message.contains("no rows"), "{e}");
    let e = inspect_bytes(Format::Csv, b"").unwrap_err();
    assert!(e.line.is_none(), "{e}");
}

#[test]
fn many_distinct_values_list_no_distribution() {
    let mut text = String::from("id,label\n");
    for i in 0..(MAX_DISTINCT + 5) {
        text.push_str(&format!("u{i},{}\n", i % 2));
    }
    let i = inspect_bytes(Format::Csv, text.as_bytes()).unwrap();
    let id = col(&i.schema, "id");
    assert!(id.values.is_none() && id.distinct.is_none(), "{id:?}");
    assert_eq!(col(&i.schema, "label").distinct, Some(2));
    assert_eq!(i.preview.len(), PREVIEW_ROWS);
}

#[test]
fn json_lines_grow_columns_and_name_a_bad_line() {
    let text = "{\"a\": 1, \"b\": \"x\"}\n\n{\"a\": 2.5, \"c\": [1, 2]}\n{\"a\": null}\n";
    let i = inspect_bytes(Format::Jsonl, text.as_bytes()).unwrap();
    assert_eq!(i.schema.rows, 3);
    assert_eq!(col(&i.schema, "a").dtype, Dtype::Float64);
    let c = col(&i.schema, "c");
    assert_eq!((c.dtype, c.nulls), (Dtype::Float64List, 2), "{c:?}");
    assert_eq!(col(&i.schema, "b").nulls, 2);
    let e = inspect_bytes(Format::Jsonl, b"{\"a\": 1}\n{\"a\": {\"deep\": 1}}\n").unwrap_err();
    assert_eq!((e.line, e.column.as_deref()), (Some(2), Some("a")), "{e}");
    let e = inspect_bytes(Format::Jsonl, b"{\"a\": 1}\n[1]\n{oops\n").unwrap_err();
    assert_eq!(e.line, Some(2), "{e}");
    let e = inspect_bytes(Format::Jsonl, b"{\"a\": 1}\n{oops\n").unwrap_err();
    assert!(e.message.starts_with("line 2: not JSON"), "{e}");
}

#[test]
fn mixed_kinds_are_text() {
    let i = inspect_bytes(Format::Jsonl, b"{\"a\": 1}\n{\"a\": \"one\"}\n{\"a\": true}\n").unwrap();
    assert_eq!(col(&i.schema, "a").dtype, Dtype::String);
}

#[test]
fn a_file_that_is_not_parquet_says_so() {
    let e = inspect_bytes(Format::Parquet, b"a,b\n1,2\n").unwrap_err();
    assert!(e.message.starts_with("not a Parquet file"), "{e}");
    assert_eq!(Format::of_content_type("text/csv; charset=utf-8"), Some(Format::Csv));
    assert_eq!(Format::of_content_type("application/json"), None);
}
