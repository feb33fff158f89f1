//! `tessera loadtest --connections N`: holds N keep-alive HTTP/1.1
//! connections open for the whole run and sends a low total rate of
//! requests over them (each connection in turn), to show what the server
//! does with many idle clients: every request must still answer, and the
//! server's memory should not grow with time. Raw HTTP/1.1 on tokio sockets,
//! so the load tool itself stays small at 10,000 connections.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// What each connection sends: the request's bytes, already formatted.
pub struct Plan {
    pub addr: String,
    pub request: Vec<u8>,
    pub connections: usize,
    /// Requests per second over all connections.
    pub rate: f64,
    pub duration: Duration,
}

/// What a run saw.
pub struct Seen {
    /// Each request's latency, and whether it answered 2xx.
    pub latencies_us: Vec<(u64, bool)>,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub errors: u64,
    /// Connections open at once, at most.
    pub open_max: usize,
}

/// Builds the request bytes for `url` (http only).
pub fn request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&str>,
) -> anyhow::Result<(String, Vec<u8>)> {
    let u = reqwest::Url::parse(url).context("--url")?;
    if u.scheme() != "http" {
        bail!("--connections speaks plain http only, not {}", u.scheme());
    }
    let host = u.host_str().context("--url has no host")?;
    let port = u.port_or_known_default().unwrap_or(80);
    let path = match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    };
    let mut req = format!("{method} {path} HTTP/1.1\r\nhost: {host}:{port}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    let body = body.unwrap_or("");
    req.push_str(&format!("content-length: {}\r\n\r\n{body}", body.len()));
    Ok((format!("{host}:{port}"), req.into_bytes()))
}

/// Opens the connections (spread over the first seconds), then sends the
/// requests, each connection every `connections / rate` seconds.
pub async fn run(plan: Plan) -> anyhow::Result<Seen> {
    let seen = Arc::new(Mutex::new(Seen {
        latencies_us: Vec::new(),
        statuses: Default::default(),
        errors: 0,
        open_max: 0,
    }));
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let period = Duration::from_secs_f64(plan.connections as f64 / plan.rate.max(0.001));
    let deadline = Instant::now() + plan.duration;
    let request = Arc::new(plan.request);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..plan.connections {
        let (addr, request, seen, open) =
            (plan.addr.clone(), request.clone(), seen.clone(), open.clone());
        // Connections open about 2,000 a second; requests are staggered over a period.
        let start_after = Duration::from_micros(i as u64 * 500);
        let first = period.mul_f64(i as f64 / plan.connections as f64);
        tasks.spawn(async move {
            tokio::time::sleep(start_after).await;
            let mut stream = match TcpStream::connect(&addr).await {
                Ok(s) => s,
                Err(_) => {
                    if let Ok(mut s) = seen.lock() {
                        *s.statuses.entry("connect_error".into()).or_default() += 1;
                        s.errors += 1;
                    }
                    return;
                }
            };
            let now_open = open.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if let Ok(mut s) = seen.lock() {
                s.open_max = s.open_max.max(now_open);
            }
            let _ = stream.set_nodelay(true);
            tokio::time::sleep(first.saturating_sub(start_after)).await;
            let mut buf = Vec::with_capacity(4096);
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let outcome = exchange(&mut stream, &request, &mut buf).await;
                let failed = outcome.is_err();
                if let Ok(mut s) = seen.lock() {
                    let ok = matches!(outcome, Ok(200..=299));
                    s.latencies_us.push((t0.elapsed().as_micros() as u64, ok));
                    let key = match &outcome {
                        Ok(code) => code.to_string(),
                        Err(e) => e.clone(),
                    };
                    *s.statuses.entry(key).or_default() += 1;
                    if failed || !matches!(outcome, Ok(200..=299)) {
                        s.errors += 1;
                    }
                }
                if failed {
                    break;
                }
                tokio::time::sleep(period.saturating_sub(t0.elapsed())).await;
            }
            open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    let mut s = seen.lock().map_err(|_| anyhow::anyhow!("stats lock poisoned"))?;
    Ok(std::mem::replace(
        &mut *s,
        Seen { latencies_us: Vec::new(), statuses: Default::default(), errors: 0, open_max: 0 },
    ))
}

/// Sends one request and reads one response (by `content-length`) off a
/// kept-alive connection; answers its status.
async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<u16, String> {
    stream.write_all(request).await.map_err(|_| "write_error".to_owned())?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.map_err(|_| "read_error".to_owned())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| "malformed".to_owned())?;
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .ok_or_else(|| "no_content_length".to_owned())?;
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await.map_err(|_| "read_error".to_owned())?;
        if n == 0 {
            return Err("closed".into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_plain_http_1_1_with_a_length() {
        let h = vec![("authorization".to_owned(), "Bearer k".to_owned())];
        let (addr, req) = request("POST", "http://127.0.0.1:9/v1/x?a=1", &h, Some("{}")).unwrap();
        assert_eq!(addr, "127.0.0.1:9");
        let text = String::from_utf8(req).unwrap();
        assert!(text.starts_with("POST /v1/x?a=1 HTTP/1.1\r\nhost: 127.0.0.1:9\r\n"), "{text}");
        assert!(text.ends_with("content-length: 2\r\n\r\n{}"), "{text}");
        assert!(request("GET", "https://x/", &[], None).is_err());
    }
}
