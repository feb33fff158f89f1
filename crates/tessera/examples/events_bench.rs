//! Peers and probes for `bench/events.sh` (not a test):
//!
//! - `jetstream NATS_URL BATCH SECONDS CLIENTS`: the raw JetStream reference:
//!   publishes the same events `POST /v1/events` gets (one message each,
//!   with a message id, pipelined, every ack awaited per batch) into a
//!   stream of its own; prints `events_per_sec p99_batch_ms`.
//! - `lag URL KEY SECONDS`: end-to-end lag: one event at a time through
//!   `POST /v1/events`, timed until the SSE tail (`GET /v1/events/stream`)
//!   delivers it; prints `p50_ms p99_ms count`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::disallowed_methods,
    reason = "a benchmark tool: it fails loudly, prints its figures and owns its few tasks"
)]

use std::time::{Duration, Instant};

use serde_json::json;

fn event(i: usize) -> serde_json::Value {
    json!({"type": "page_view", "entity": {"customer_id": format!("c{}", i % 1000)},
        "properties": {"path": "/products/42", "referrer": "search", "n": i}})
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

async fn jetstream(url: &str, batch: usize, secs: u64, clients: usize) {
    let client = async_nats::connect(url).await.expect("nats answers");
    // Enough acks in flight for every client's whole batch.
    let js = async_nats::jetstream::context::ContextBuilder::new()
        .max_ack_inflight(clients * batch + 1)
        .build(client);
    let name = format!("BENCH_{}", std::process::id());
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.clone(),
        subjects: vec![format!("bench.{}.>", std::process::id())],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let subject = format!("bench.{}.events", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (js, subject) = (js.clone(), subject.clone());
        tasks.push(tokio::spawn(async move {
            let mut times = Vec::new();
            let mut sent = 0usize;
            while Instant::now() < deadline {
                let t = Instant::now();
                let mut acks = Vec::with_capacity(batch);
                for i in 0..batch {
                    let n = sent + i;
                    let mut e = event(n);
                    e["id"] = json!(format!("evt_{c}_{n}"));
                    let publish = async_nats::jetstream::message::PublishMessage::build()
                        .payload(serde_json::to_vec(&e).unwrap().into())
                        .message_id(format!("{c}-{n}"));
                    acks.push(js.send_publish(subject.clone(), publish).await.unwrap());
                }
                for a in acks {
                    a.await.unwrap();
                }
                sent += batch;
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            (sent, times)
        }));
    }
    let started = Instant::now();
    let (mut total, mut times) = (0, Vec::new());
    for t in tasks {
        let (n, mut ts) = t.await.unwrap();
        total += n;
        times.append(&mut ts);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = js.delete_stream(&name).await;
    println!("{:.0} {:.2}", total as f64 / elapsed, quantile(&mut times, 0.99));
}

async fn lag(url: &str, key: &str, secs: u64) {
    let http = reqwest::Client::new();
    let mut tail =
        http.get(format!("{url}/v1/events/stream")).bearer_auth(key).send().await.unwrap();
    assert!(tail.status().is_success());
    let _opening = tail.chunk().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut lags = Vec::new();
    let mut buf = String::new();
    let mut i = 0;
    while Instant::now() < deadline {
        let sent = Instant::now();
        let r = http
            .post(format!("{url}/v1/events"))
            .bearer_auth(key)
            .json(&json!({"events": [event(i)]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        // Read until this event's block arrives.
        loop {
            if let Some(end) = buf.find("\n\n") {
                let block: String = buf.drain(..end + 2).collect();
                if block.contains(&format!("\"n\":{i}")) {
                    break;
                }
                continue;
            }
            let chunk = tail.chunk().await.unwrap().expect("the tail stays open");
            buf.push_str(&String::from_utf8_lossy(&chunk));
        }
        lags.push(sent.elapsed().as_secs_f64() * 1e3);
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let n = lags.len();
    println!("{:.2} {:.2} {n}", quantile(&mut lags, 0.5), quantile(&mut lags, 0.99));
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("jetstream") => {
            jetstream(
                &args[2],
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                args[5].parse().unwrap(),
            )
            .await
        }
        Some("lag") => lag(&args[2], &args[3], args[4].parse().unwrap()).await,
        _ => panic!(
            "usage: events_bench jetstream NATS_URL BATCH SECONDS CLIENTS | lag URL KEY SECONDS"
        ),
    }
}
