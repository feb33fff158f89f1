//! `tessera features apply`: a file of feature store definitions, planned
//! against what the server holds, then applied in dependency order.

use std::io::Read as _;

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::{Map, Value};

use crate::cli::FeaturesCmd;
use crate::client::Client;

pub async fn run(cmd: FeaturesCmd) -> anyhow::Result<()> {
    match cmd {
        FeaturesCmd::Apply { client, file, dry_run } => {
            apply(&Client::new(&client)?, &file, dry_run).await
        }
    }
}

/// The kinds in the order they depend on each other.
const KINDS: [(&str, &str); 3] =
    [("entities", "entity"), ("views", "feature view"), ("services", "feature service")];

fn read(file: &std::path::Path) -> anyhow::Result<Map<String, Value>> {
    let mut text = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut text).context("cannot read standard input")?;
    } else {
        text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
    }
    let doc: Value = serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not YAML or JSON", file.display()))?;
    let Value::Object(doc) = doc else {
        bail!("{}: expected a map with entities, views and services", file.display())
    };
    for k in doc.keys() {
        if !KINDS.iter().any(|(kind, _)| kind == k) {
            bail!("{}: unknown section {k:?} (entities, views or services)", file.display());
        }
    }
    Ok(doc)
}

/// What applying one definition would do.
enum Step {
    Create,
    Change(Vec<String>),
    Same,
}

/// The differences that matter to a reader: the keys the file gives.
fn changes(kind: &str, file: &Value, stored: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(file) = file.as_object() else { return vec!["the spec is not a map".into()] };
    for (k, v) in file {
        let old = stored.get(k).unwrap_or(&Value::Null);
        if v == old {
            continue;
        }
        if kind == "views" && k == "schema" {
            let names = |s: &Value| -> Vec<(String, String)> {
                s.as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| (f["name"].as_str().unwrap_or("").to_owned(), f["dtype"].to_string()))
                    .collect()
            };
            let (new, old) = (names(v), names(old));
            for (n, t) in &new {
                match old.iter().find(|(o, _)| o == n) {
                    None => out.push(format!("+feature {n}")),
                    Some((_, ot)) if ot != t => out.push(format!("~feature {n}: {ot} -> {t}")),
                    _ => {}
                }
            }
            for (n, _) in old.iter().filter(|(o, _)| !new.iter().any(|(n, _)| n == o)) {
                out.push(format!("-feature {n}"));
            }
        } else {
            out.push(format!("{k}: {old} -> {v}"));
        }
    }
    out
}

async fn apply(c: &Client, file: &std::path::Path, dry_run: bool) -> anyhow::Result<()> {
    let doc = read(file)?;
    let mut plan = Vec::new();
    for (kind, what) in KINDS {
        let Some(section) = doc.get(kind) else { continue };
        let Some(defs) = section.as_object() else {
            bail!("{}: {kind} must be a map of name to definition", file.display())
        };
        for (name, spec) in defs {
            let path = format!("/v1/features/{kind}/{name}");
            let step = match c.call(Method::GET, &path, None).await {
                Ok(stored) => {
                    let diff = changes(kind, spec, &stored["spec"]);
                    if diff.is_empty() { Step::Same } else { Step::Change(diff) }
                }
                Err(e) if e.to_string().contains("(404 ") => Step::Create,
                Err(e) => return Err(e),
            };
            match &step {
                Step::Create => println!("+ {what} {name}: create"),
                Step::Change(diff) => println!("~ {what} {name}: {}", diff.join(", ")),
                Step::Same => println!("= {what} {name}: unchanged"),
            }
            plan.push((path, what, name.clone(), spec.clone(), step));
        }
    }
    if plan.is_empty() {
        println!("nothing to apply: {} has no definitions", file.display());
        return Ok(());
    }
    if dry_run {
        return Ok(());
    }
    let mut applied = 0;
    for (path, what, name, spec, step) in plan {
        if matches!(step, Step::Same) {
            continue;
        }
        let d = c.call(Method::PUT, &path, Some(spec)).await.with_context(|| {
            format!("{what} {name} was refused; what came before it is applied")
        })?;
        println!("applied {what} {name} (version {})", d["version"]);
        applied += 1;
    }
    println!("{applied} applied");
    Ok(())
}
