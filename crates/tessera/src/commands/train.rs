//! `tessera train` (upload, start a job, follow it with a progress bar,
//! print the metrics and the report) and `tessera models report`.

use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::{Value, json};
use tessera_core::governance::Report;

use crate::cli::TrainArgs;
use crate::client::Client;

/// The content type of a dataset file, by its extension.
fn content_type(path: &std::path::Path) -> anyhow::Result<&'static str> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    Ok(match ext.as_str() {
        "csv" => "text/csv",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "parquet" => "application/vnd.apache.parquet",
        _ => bail!(
            "{}: name a .csv, .jsonl, .ndjson or .parquet file (the extension says its format)",
            path.display()
        ),
    })
}

pub async fn run(a: TrainArgs) -> anyhow::Result<()> {
    let c = Client::new(&a.client)?;
    let dataset = match (&a.data, &a.dataset) {
        (Some(path), _) => {
            let kind = content_type(path)?;
            let name = match &a.dataset_name {
                Some(n) => n.clone(),
                None => path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .context("the file has no name to call the dataset by; pass --dataset-name")?
                    .to_owned(),
            };
            let bytes =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            eprintln!("uploading {} ({} bytes) as dataset {name:?}", path.display(), bytes.len());
            let ds = c.upload(&format!("/v1/datasets?name={name}"), kind, bytes).await?;
            eprintln!(
                "dataset {} version {}: {} rows",
                ds["id"].as_str().unwrap_or("?"),
                ds["version"],
                ds["rows"]
            );
            ds["id"].as_str().context("the upload answered no dataset id")?.to_owned()
        }
        (None, Some(id)) => id.clone(),
        (None, None) => bail!("give --data FILE or --dataset ID"),
    };
    let mut spec = json!({"dataset": dataset, "task": a.task, "label": a.label, "model": a.model,
                          "holdout": a.holdout, "seed": a.seed});
    for (k, v) in [
        ("text", a.text.clone().map(Value::from)),
        ("features", a.features.clone().map(Value::from)),
        ("base_model", a.base_model.clone().map(Value::from)),
        ("class_weight", a.class_weight.clone().map(Value::from)),
        ("protected_attribute", a.protected_attribute.clone().map(Value::from)),
    ] {
        if let Some(v) = v {
            spec[k] = v;
        }
    }
    let job = c.call(Method::POST, "/v1/training-jobs", Some(spec)).await?;
    let id = job["id"].as_str().context("the server answered no job id")?.to_owned();
    if a.no_wait {
        if c.json {
            return super::print_json(&job);
        }
        println!("{id}");
        return Ok(());
    }
    eprintln!("job {id} queued");
    let done = follow(&c, &id).await?;
    if c.json {
        return super::print_json(&done);
    }
    match done["status"].as_str() {
        Some("succeeded") => {}
        Some(status) => {
            bail!("job {id} {status}: {}", done["error"].as_str().unwrap_or("no reason given"))
        }
        None => bail!("job {id} answered no status"),
    }
    let (model, version) =
        (done["model"].as_str().unwrap_or("?"), done["version"].as_i64().unwrap_or(0));
    println!(
        "{model}@{version} trained in {:.1} s",
        done["metrics"]["seconds"].as_f64().unwrap_or(0.0)
    );
    let h = &done["metrics"]["holdout"];
    if let Some(acc) = h["accuracy"].as_f64() {
        println!(
            "holdout: {} rows, accuracy {acc:.4}, macro-F1 {:.4}",
            h["samples"],
            h["macro_f1"].as_f64().unwrap_or(0.0)
        );
    } else {
        println!(
            "holdout: {} rows, MAE {:.4}, RMSE {:.4}, R2 {:.4}",
            h["samples"],
            h["mae"].as_f64().unwrap_or(0.0),
            h["rmse"].as_f64().unwrap_or(0.0),
            h["r2"].as_f64().unwrap_or(0.0)
        );
    }
    report(&c, &format!("{model}@{version}")).await
}

/// Follows the job's event stream with a progress bar until it is
/// finished; reconnects when the stream drops. Answers the finished job.
async fn follow(c: &Client, id: &str) -> anyhow::Result<Value> {
    let bar = indicatif::ProgressBar::new(1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {percent:>3}%  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let http = reqwest::Client::new();
    loop {
        let resp = http
            .get(format!("{}/v1/training-jobs/{id}/events", c.base()))
            .bearer_auth(c.key())
            .send()
            .await;
        let mut resp = match resp {
            Ok(r) if r.status().is_success() => r,
            Ok(r) if r.status().is_client_error() => {
                let body: Value = r.json().await.unwrap_or(Value::Null);
                bail!(
                    "cannot follow job {id}: {}",
                    body.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details")
                );
            }
            other => {
                let why = match other {
                    Ok(r) => format!("server answered {}", r.status().as_u16()),
                    Err(e) => e.to_string(),
                };
                bar.suspend(|| eprintln!("{why}; reconnecting"));
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut event, mut data) = ("", None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event: ") {
                        event = if v == "done" { "done" } else { "progress" };
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str::<Value>(v).ok();
                    }
                }
                let Some(job) = data else { continue };
                let p = &job["progress"];
                bar.set_position((p["fraction"].as_f64().unwrap_or(0.0) * 1000.0) as u64);
                let mut msg = format!(
                    "{} {}",
                    job["status"].as_str().unwrap_or("?"),
                    p["phase"].as_str().unwrap_or("")
                );
                if let Some(e) = p["epoch"].as_u64() {
                    msg.push_str(&format!("  epoch {e}"));
                }
                if let Some(l) = p["loss"].as_f64() {
                    msg.push_str(&format!("  loss {l:.4}"));
                }
                if let Some(eta) = p["eta_secs"].as_f64() {
                    msg.push_str(&format!("  eta {eta:.0}s"));
                }
                bar.set_message(msg);
                if event == "done" {
                    bar.finish_and_clear();
                    return Ok(job);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `tessera models report NAME@VERSION`.
pub async fn report(c: &Client, version: &str) -> anyhow::Result<()> {
    let (model, v) = version
        .rsplit_once('@')
        .filter(|(m, v)| !m.is_empty() && v.parse::<i64>().is_ok())
        .with_context(|| {
            format!("{version:?}: name the version as NAME@VERSION, e.g. sentiment@2")
        })?;
    let body =
        c.call(Method::GET, &format!("/v1/models/{model}/versions/{v}/report"), None).await?;
    if c.json {
        return super::print_json(&body);
    }
    let r: Report = serde_json::from_value(body).context("the server's report does not parse")?;
    print!("{}", r.summary(model, v.parse().unwrap_or(0)));
    Ok(())
}
