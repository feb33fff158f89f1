//! A small HTTP client for the admin commands.

use anyhow::{Context as _, bail};
use reqwest::Method;
use serde_json::Value;

use crate::cli::ClientArgs;

pub struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
    pub json: bool,
}

impl Client {
    pub fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let key = match &args.key {
            Some(k) => k.clone(),
            None => default_key().context(
                "no API key: pass --key, set TESSERA_KEY, or run where $TESSERA_DATA_DIR/admin.key is readable",
            )?,
        };
        let http =
            reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?;
        Ok(Client { http, base: args.url.trim_end_matches('/').to_owned(), key, json: args.json })
    }

    /// The server's URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The API key the client sends.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Sends a request and returns the JSON answer, or the server's error message.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if !status.is_success() {
            let msg =
                value.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
            let code = value.pointer("/error/code").and_then(Value::as_str).unwrap_or("unknown");
            bail!("{method} {path} failed: {msg} ({} {code})", status.as_u16());
        }
        Ok(value)
    }
}

impl Client {
    /// Sends `bytes` as the raw body with `content_type`; the JSON answer or the server's error.
    pub async fn upload(
        &self,
        path: &str,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let resp = reqwest::Client::new()
            .post(&url)
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes)
            .send()
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg =
                value.pointer("/error/message").and_then(Value::as_str).unwrap_or("no details");
            bail!("upload to {path} failed: {msg} ({})", status.as_u16());
        }
        Ok(value)
    }
}

fn default_key() -> Option<String> {
    let dir = std::env::var("TESSERA_DATA_DIR")
        .unwrap_or_else(|_| tessera_core::config::DEFAULT_DATA_DIR.into());
    let key = std::fs::read_to_string(std::path::Path::new(&dir).join("admin.key")).ok()?;
    Some(key.trim().to_owned()).filter(|k| !k.is_empty())
}

/// Prints `rows` as aligned columns under `headers`.
pub fn print_table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    #[expect(clippy::print_stdout, reason = "CLI output")]
    {
        println!("{}", line(headers.to_vec()));
        for r in rows {
            println!("{}", line(r.iter().map(String::as_str).collect()));
        }
    }
}

/// A field of a JSON object as display text.
pub fn field(v: &Value, name: &str) -> String {
    match v.get(name) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}
