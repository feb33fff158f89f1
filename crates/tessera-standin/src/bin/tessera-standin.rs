//! `tessera-standin [--listen ADDR] [--delay-ms N] [--dim N] [--api-key KEY]`:
//! the OpenAI-compatible stand-in as its own process, for benchmarks (B1) and
//! for trying remote models by hand. See the library docs for its behaviours.

use std::time::Duration;

use tessera_standin::{Options, Stats, router};

const HELP: &str = "tessera-standin: an OpenAI-compatible stand-in for a paid provider

Usage: tessera-standin [--listen ADDR] [--delay-ms N] [--dim N] [--api-key KEY]

  --listen ADDR    address to listen on (default 127.0.0.1:9100)
  --delay-ms N     wait N ms before every answer (default 0)
  --dim N          embedding width (default 8)
  --api-key KEY    require Authorization: Bearer KEY

The requested model name picks a behaviour: slow-<ms>, fail-<status>, flaky-<n>,
ratelimit, malformed, cut-<k>, drip-<ms>, hang (parts joined by '+').";

fn parse() -> Result<(String, Options), String> {
    let mut listen = "127.0.0.1:9100".to_owned();
    let mut opts = Options::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--listen" => listen = value("--listen")?,
            "--delay-ms" => {
                let v = value("--delay-ms")?;
                let ms = v.parse().map_err(|_| format!("--delay-ms: {v:?} is not a number"))?;
                opts.delay = Duration::from_millis(ms);
            }
            "--dim" => {
                let v = value("--dim")?;
                opts.dim = v
                    .parse()
                    .ok()
                    .filter(|d| *d > 0)
                    .ok_or(format!("--dim: {v:?} is not a positive number"))?;
            }
            "--api-key" => opts.api_key = Some(value("--api-key")?),
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((listen, opts))
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> std::process::ExitCode {
    let (listen, opts) = match parse() {
        Ok(x) => x,
        Err(e) => {
            let code = if e.is_empty() { 0 } else { 2 };
            if !e.is_empty() {
                eprintln!("error: {e}\n");
            }
            eprintln!("{HELP}");
            return std::process::ExitCode::from(code);
        }
    };
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    eprintln!("tessera-standin listening on http://{listen}/v1");
    let app = router(opts, std::sync::Arc::new(Stats::default()));
    match axum::serve(listener, app).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::from(1)
        }
    }
}
