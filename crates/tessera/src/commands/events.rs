//! `tessera events send` and `tessera events tail`.

use std::io::{BufRead as _, Write as _};
use std::time::Duration;

use anyhow::{Context as _, bail};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::cli::EventsCmd;
use crate::client::Client;

pub async fn run(cmd: EventsCmd) -> anyhow::Result<()> {
    match cmd {
        EventsCmd::Send { client, file, batch } => send(&Client::new(&client)?, &file, batch).await,
        EventsCmd::Tail { client, event_type, entity, from, topic } => {
            let mut query = vec![format!("topic={topic}")];
            for (k, v) in [("type", event_type), ("entity", entity), ("from", from)] {
                if let Some(v) = v {
                    query.push(format!("{k}={}", urlencode(&v)));
                }
            }
            tail(&Client::new(&client)?, &query.join("&")).await
        }
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads the file whole first, so a malformed line stops the run before
/// anything is sent; each line must be a JSON object.
fn read_events(file: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let reader: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        let f =
            std::fs::File::open(file).with_context(|| format!("cannot open {}", file.display()))?;
        Box::new(std::io::BufReader::new(f))
    };
    let mut events = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("cannot read {}", file.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {} is not JSON", file.display(), i + 1))?;
        if !v.is_object() {
            bail!("{}: line {} is not a JSON object", file.display(), i + 1);
        }
        events.push(v);
    }
    Ok(events)
}

async fn send(c: &Client, file: &std::path::Path, batch: usize) -> anyhow::Result<()> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let events = read_events(file)?;
    let bar = indicatif::ProgressBar::new(events.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} events  {per_sec}  eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
    let (mut stored, mut duplicates) = (0u64, 0u64);
    for (n, chunk) in events.chunks(batch).enumerate() {
        let mut attempt = 0;
        let answer = loop {
            let resp = http
                .post(format!("{}/v1/events", c.base()))
                .bearer_auth(c.key())
                .json(&json!({"events": chunk}))
                .send()
                .await
                .with_context(|| format!("cannot reach {}", c.base()))?;
            let status = resp.status();
            let wait = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(1);
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            if status == StatusCode::ACCEPTED {
                break body;
            }
            let retry =
                matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE);
            attempt += 1;
            if !retry || attempt > 10 {
                bar.abandon();
                let msg =
                    body.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
                // A bad event is named by its index in the batch: say which line it is.
                let line = body
                    .pointer("/error/param")
                    .and_then(Value::as_str)
                    .and_then(|p| p.strip_prefix("events["))
                    .and_then(|p| p.split(']').next())
                    .and_then(|i| i.parse::<usize>().ok())
                    .map(|i| format!(" (event {} of the file)", n * batch + i + 1))
                    .unwrap_or_default();
                bail!(
                    "batch {} refused: {msg}{line} ({}); {stored} events were stored before it",
                    n + 1,
                    status.as_u16()
                );
            }
            bar.suspend(|| eprintln!("server busy ({}); retrying in {wait}s", status.as_u16()));
            tokio::time::sleep(Duration::from_secs(wait.clamp(1, 60))).await;
        };
        let d = answer["duplicates"].as_u64().unwrap_or(0);
        duplicates += d;
        stored += chunk.len() as u64 - d;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if c.json {
        return super::print_json(
            &json!({"sent": events.len(), "stored": stored, "duplicates": duplicates}),
        );
    }
    println!("sent {} events: {stored} stored, {duplicates} already there", events.len());
    Ok(())
}

/// Follows the stream; when the connection drops, reconnects with the last
/// offset seen (Last-Event-ID), so nothing is skipped or repeated.
async fn tail(c: &Client, query: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let mut last: Option<u64> = None;
    let mut out = std::io::stdout();
    loop {
        let mut req =
            http.get(format!("{}/v1/events/stream?{query}", c.base())).bearer_auth(c.key());
        if let Some(l) = last {
            req = req.header("last-event-id", l.to_string());
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("cannot reach {}: {e}; retrying", c.base());
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let status = resp.status();
        if !status.is_success() {
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let msg =
                body.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
            if status.is_server_error() {
                eprintln!("server answered {}: {msg}; retrying", status.as_u16());
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            bail!("tail refused: {msg} ({})", status.as_u16());
        }
        let mut resp = resp;
        let mut buf = String::new();
        while let Ok(Some(chunk)) = resp.chunk().await {
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        id = v.parse::<u64>().ok();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        data = serde_json::from_str::<Value>(v).ok();
                    }
                }
                let Some(event) = data else { continue };
                if let Some(i) = id {
                    last = Some(i);
                }
                let line = if c.json {
                    event.to_string()
                } else {
                    format!(
                        "{:>8}  {}  {:<16}  {}  {}",
                        event["offset"].as_u64().unwrap_or(0),
                        event["ingested_at"].as_str().unwrap_or("-"),
                        event["type"].as_str().unwrap_or("-"),
                        event["entity"],
                        event["properties"]
                    )
                };
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(()); // stdout closed (a pipe to head): done
                }
            }
        }
        eprintln!(
            "stream ended; reconnecting after offset {}",
            last.map_or("-".into(), |l| l.to_string())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
