//! `tessera loadtest`: HTTP load with the seed's phases (ramp-up, sustained,
//! spike, breakdown), HDR latency percentiles, counts by status, a live
//! progress line on stderr and a JSON report.
//!
//! Closed loop with `--concurrency N` (N workers, each sends when its last
//! answer arrives) or open loop with `--rate N` (requests start on a schedule,
//! whatever the answers do, so slow answers show up as latency rather than
//! as a lower offered rate).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::cli::LoadtestArgs;

/// What every request sends.
struct Template {
    method: reqwest::Method,
    url: String,
    headers: Vec<(String, String)>,
    bodies: Vec<String>,
    counter: AtomicU64,
}

impl Template {
    /// The next body: `{{counter}}` becomes a per-request number, and with
    /// several bodies one is picked by the counter.
    fn body(&self) -> Option<String> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let b = self.bodies.get((n as usize) % self.bodies.len().max(1))?;
        Some(b.replace("{{counter}}", &n.to_string()))
    }
}

/// Results of one phase.
struct Stats {
    latency_us: Histogram<u64>,
    /// Latency of the 2xx answers alone (admitted requests under overload).
    ok_latency_us: Histogram<u64>,
    statuses: BTreeMap<String, u64>,
    errors: u64,
}

impl Stats {
    fn new() -> anyhow::Result<Stats> {
        Ok(Stats {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            ok_latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)?,
            statuses: BTreeMap::new(),
            errors: 0,
        })
    }

    fn record(&mut self, outcome: Result<u16, String>, elapsed: Duration) {
        let _ = self.latency_us.record((elapsed.as_micros() as u64).clamp(1, 120_000_000));
        match outcome {
            Ok(code) => {
                if (200..300).contains(&code) {
                    let _ = self
                        .ok_latency_us
                        .record((elapsed.as_micros() as u64).clamp(1, 120_000_000));
                }
                *self.statuses.entry(code.to_string()).or_default() += 1;
                if code >= 500 || code == 429 {
                    self.errors += 1;
                }
            }
            Err(kind) => {
                *self.statuses.entry(kind).or_default() += 1;
                self.errors += 1;
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
}

#[derive(Debug, Serialize)]
struct PhaseReport {
    name: String,
    seconds: f64,
    /// Offered rate (open loop) or `null` (closed loop).
    target_rate: Option<f64>,
    concurrency: Option<usize>,
    completed: u64,
    errors: u64,
    error_rate: f64,
    rps: f64,
    latency_ms: Latency,
    /// p50 and p99 of the 2xx answers alone.
    ok_p50_ms: f64,
    ok_p99_ms: f64,
    statuses: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
struct Knee {
    /// The highest rate that stayed within the error and p99 bounds.
    rate: f64,
    p99_ms: f64,
    error_rate: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    url: String,
    method: String,
    phases: Vec<PhaseReport>,
    knee: Option<Knee>,
}

/// How to drive one phase.
#[derive(Debug, Clone, Copy)]
enum Drive {
    Concurrency(usize),
    /// Open loop from `from` to `to` requests per second, linearly.
    Rate {
        from: f64,
        to: f64,
    },
}

pub async fn run(args: LoadtestArgs) -> anyhow::Result<()> {
    let duration = humantime_secs(&args.duration).context("--duration")?;
    let timeout = humantime_secs(&args.timeout).context("--timeout")?;
    let bodies = match (&args.body, &args.bodies_file) {
        (Some(_), Some(_)) => bail!("give --body or --bodies-file, not both"),
        (Some(b), None) => vec![b.clone()],
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            let lines: Vec<String> =
                text.lines().filter(|l| !l.trim().is_empty()).map(str::to_owned).collect();
            if lines.is_empty() {
                bail!("{} has no bodies (one per line)", f.display());
            }
            lines
        }
        (None, None) => Vec::new(),
    };
    let mut headers = Vec::new();
    for h in &args.header {
        let (k, v) = h
            .split_once(':')
            .with_context(|| format!("header {h:?} must look like 'Name: value'"))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    if !bodies.is_empty() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
        headers.push(("content-type".into(), "application/json".into()));
    }
    let method =
        reqwest::Method::from_bytes(args.method.to_uppercase().as_bytes()).context("--method")?;
    let template = Arc::new(Template {
        method: method.clone(),
        url: args.url.clone(),
        headers,
        bodies,
        counter: AtomicU64::new(0),
    });
    if let Some(n) = args.connections {
        return held_connections(&args, n, duration, &template).await;
    }
    let client =
        reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(4096).build()?;

    let base = match (args.rate, args.concurrency) {
        (Some(_), Some(_)) => bail!("give --rate or --concurrency, not both"),
        (Some(r), None) if r > 0.0 => Drive::Rate { from: r, to: r },
        (None, Some(c)) if c > 0 => Drive::Concurrency(c),
        (None, None) => Drive::Concurrency(8),
        _ => bail!("--rate and --concurrency must be positive"),
    };
    let phases: Vec<String> = match &args.phases {
        None => vec!["sustained".into()],
        Some(p) => p.split(',').map(|s| s.trim().to_owned()).collect(),
    };
    let mut report = Report {
        url: args.url.clone(),
        method: method.to_string(),
        phases: Vec::new(),
        knee: None,
    };
    for phase in &phases {
        let scale = |d: Drive, k: f64| match d {
            Drive::Concurrency(c) => Drive::Concurrency(((c as f64) * k).ceil().max(1.0) as usize),
            Drive::Rate { to, .. } => Drive::Rate { from: to * k, to: to * k },
        };
        match phase.as_str() {
            "ramp-up" => {
                let drive = match base {
                    Drive::Rate { to, .. } => Drive::Rate { from: (to / 10.0).max(1.0), to },
                    c => c,
                };
                report
                    .phases
                    .push(run_phase("ramp-up", drive, duration, &client, &template).await?);
            }
            "sustained" => report
                .phases
                .push(run_phase("sustained", base, duration, &client, &template).await?),
            "spike" => report.phases.push(
                run_phase("spike", scale(base, 3.0), duration / 2, &client, &template).await?,
            ),
            "breakdown" => {
                let bound_ms = args.p99_bound_ms;
                let mut k = 1.0;
                for step in 0..args.breakdown_steps {
                    let r = run_phase(
                        &format!("breakdown-{step}"),
                        scale(base, k),
                        duration / 2,
                        &client,
                        &template,
                    )
                    .await?;
                    let within =
                        r.error_rate <= args.max_error_rate && r.latency_ms.p99 <= bound_ms;
                    let (rps, p99, er) = (r.rps, r.latency_ms.p99, r.error_rate);
                    report.phases.push(r);
                    if !within {
                        break;
                    }
                    report.knee = Some(Knee { rate: rps, p99_ms: p99, error_rate: er });
                    k *= 1.5;
                }
            }
            other => {
                bail!("unknown phase {other:?}; phases are ramp-up, sustained, spike, breakdown")
            }
        }
    }
    print_summary(&report);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// `--connections N`: N connections held open, a low rate of requests over them.
async fn held_connections(
    args: &LoadtestArgs,
    n: usize,
    duration: Duration,
    t: &Template,
) -> anyhow::Result<()> {
    if n == 0 {
        bail!("--connections must be positive");
    }
    let rate = args.rate.unwrap_or(100.0);
    let (addr, request) =
        super::connections::request(t.method.as_str(), &t.url, &t.headers, t.body().as_deref())?;
    eprintln!("opening {n} connections to {addr}, then {rate} req/s over them for {duration:?}");
    let started = Instant::now();
    let seen = super::connections::run(super::connections::Plan {
        addr,
        request,
        connections: n,
        rate,
        duration,
    })
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    let mut h = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let mut ok = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for (us, is_ok) in &seen.latencies_us {
        let _ = h.record((*us).clamp(1, 120_000_000));
        if *is_ok {
            let _ = ok.record((*us).clamp(1, 120_000_000));
        }
    }
    let done = seen.latencies_us.len();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let phase = PhaseReport {
        name: format!("connections-{n}"),
        seconds,
        target_rate: Some(rate),
        concurrency: Some(seen.open_max),
        completed: done as u64,
        errors: seen.errors,
        error_rate: if done == 0 { 0.0 } else { seen.errors as f64 / done as f64 },
        rps: done as f64 / seconds,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: h.max() as f64 / 1000.0,
            mean: h.mean() / 1000.0,
        },
        ok_p50_ms: ok.value_at_quantile(0.5) as f64 / 1000.0,
        ok_p99_ms: ok.value_at_quantile(0.99) as f64 / 1000.0,
        statuses: seen.statuses,
    };
    let report = Report {
        url: t.url.clone(),
        method: t.method.to_string(),
        phases: vec![phase],
        knee: None,
    };
    eprintln!("connections open at once: {} of {n}", seen.open_max);
    print_summary(&report);
    if let Some(path) = &args.json_out {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

async fn one(client: &reqwest::Client, t: &Template) -> Result<u16, String> {
    let mut req = client.request(t.method.clone(), &t.url);
    for (k, v) in &t.headers {
        req = req.header(k, v);
    }
    if let Some(b) = t.body() {
        req = req.body(b);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            // Read the body so the connection can be reused.
            resp.bytes().await.map(|_| status).map_err(|_| "body_error".to_owned())
        }
        Err(e) if e.is_timeout() => Err("timeout".into()),
        Err(e) if e.is_connect() => Err("connect_error".into()),
        Err(_) => Err("request_error".into()),
    }
}

async fn run_phase(
    name: &str,
    drive: Drive,
    duration: Duration,
    client: &reqwest::Client,
    template: &Arc<Template>,
) -> anyhow::Result<PhaseReport> {
    let stats = Arc::new(Mutex::new(Stats::new()?));
    let start = Instant::now();
    let deadline = start + duration;
    let progress = {
        let stats = stats.clone();
        let name = name.to_owned();
        #[expect(clippy::disallowed_methods, reason = "load workers are awaited before the report")]
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Ok(s) = stats.lock() {
                    let n = s.latency_us.len();
                    let secs = start.elapsed().as_secs_f64();
                    eprint!(
                        "\r[{name}] {secs:>5.1}s  done {n:>8}  errors {:>6}  {:>8.1} req/s  p99 {:>8.2} ms   ",
                        s.errors,
                        n as f64 / secs,
                        s.latency_us.value_at_quantile(0.99) as f64 / 1000.0
                    );
                }
            }
        })
    };
    let mut tasks = tokio::task::JoinSet::new();
    match drive {
        Drive::Concurrency(c) => {
            for _ in 0..c {
                let (client, template, stats) = (client.clone(), template.clone(), stats.clone());
                tasks.spawn(async move {
                    while Instant::now() < deadline {
                        let t0 = Instant::now();
                        let outcome = one(&client, &template).await;
                        if let Ok(mut s) = stats.lock() {
                            s.record(outcome, t0.elapsed());
                        }
                    }
                });
            }
        }
        Drive::Rate { from, to } => {
            let total = duration.as_secs_f64();
            let mut sent = 0f64;
            while Instant::now() < deadline {
                let t = start.elapsed().as_secs_f64();
                // Requests due by now under a linear ramp from `from` to `to`.
                let due = from * t + (to - from) * t * t / (2.0 * total);
                while sent < due {
                    sent += 1.0;
                    let (client, template, stats) =
                        (client.clone(), template.clone(), stats.clone());
                    tasks.spawn(async move {
                        let t0 = Instant::now();
                        let outcome = one(&client, &template).await;
                        if let Ok(mut s) = stats.lock() {
                            s.record(outcome, t0.elapsed());
                        }
                    });
                }
                while tasks.try_join_next().is_some() {}
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    progress.abort();
    eprintln!();
    let seconds = start.elapsed().as_secs_f64();
    let s = stats.lock().map_err(|_| anyhow::anyhow!("stats lock poisoned"))?;
    let n = s.latency_us.len();
    let ms = |q: f64| s.latency_us.value_at_quantile(q) as f64 / 1000.0;
    Ok(PhaseReport {
        name: name.to_owned(),
        seconds,
        target_rate: match drive {
            Drive::Rate { to, .. } => Some(to),
            Drive::Concurrency(_) => None,
        },
        concurrency: match drive {
            Drive::Concurrency(c) => Some(c),
            Drive::Rate { .. } => None,
        },
        completed: n,
        errors: s.errors,
        error_rate: if n == 0 { 0.0 } else { s.errors as f64 / n as f64 },
        rps: n as f64 / seconds,
        latency_ms: Latency {
            p50: ms(0.5),
            p90: ms(0.9),
            p99: ms(0.99),
            p999: ms(0.999),
            max: s.latency_us.max() as f64 / 1000.0,
            mean: s.latency_us.mean() / 1000.0,
        },
        ok_p50_ms: s.ok_latency_us.value_at_quantile(0.5) as f64 / 1000.0,
        ok_p99_ms: s.ok_latency_us.value_at_quantile(0.99) as f64 / 1000.0,
        statuses: s.statuses.clone(),
    })
}

fn print_summary(r: &Report) {
    println!(
        "{:<14} {:>9} {:>9} {:>8} {:>9} {:>9} {:>9} {:>9}  statuses",
        "phase", "req/s", "done", "errors", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for p in &r.phases {
        let statuses: Vec<String> = p.statuses.iter().map(|(k, v)| format!("{k}:{v}")).collect();
        println!(
            "{:<14} {:>9.1} {:>9} {:>8} {:>9.2} {:>9.2} {:>9.2} {:>9.2}  {}",
            p.name,
            p.rps,
            p.completed,
            p.errors,
            p.latency_ms.p50,
            p.latency_ms.p90,
            p.latency_ms.p99,
            p.latency_ms.max,
            statuses.join(" ")
        );
    }
    if let Some(k) = &r.knee {
        println!(
            "knee: {:.1} req/s within bounds (p99 {:.2} ms, errors {:.2}%)",
            k.rate,
            k.p99_ms,
            k.error_rate * 100.0
        );
    }
}

/// Parses `500ms`, `10s`, `2m` or a plain number of seconds.
fn humantime_secs(s: &str) -> anyhow::Result<Duration> {
    let (num, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .with_context(|| format!("{s:?} is not a duration like 500ms, 10s or 2m"))?;
    if !(v > 0.0 && v.is_finite()) {
        bail!("{s:?} must be a positive duration");
    }
    Ok(Duration::from_secs_f64(v * mult))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(humantime_secs("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(humantime_secs("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(humantime_secs("3").unwrap(), Duration::from_secs(3));
        assert!(humantime_secs("soon").is_err());
        assert!(humantime_secs("-1s").is_err());
    }

    #[test]
    fn bodies_count_and_rotate() {
        let t = Template {
            method: reqwest::Method::POST,
            url: String::new(),
            headers: Vec::new(),
            bodies: vec!["a{{counter}}".into(), "b{{counter}}".into()],
            counter: AtomicU64::new(0),
        };
        assert_eq!(
            (t.body(), t.body(), t.body()),
            (Some("a0".into()), Some("b1".into()), Some("a2".into()))
        );
    }
}
