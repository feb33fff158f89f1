//! One module per command group; `run` dispatches.

mod alerts;
mod audit;
mod connections;
mod events;
mod features;
mod keys;
mod loadtest;
mod rollouts;
mod tenants;
mod train;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Tenants(cmd) => tenants::run(cmd).await,
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Events(cmd) => events::run(cmd).await,
        Command::Features(cmd) => features::run(cmd).await,
        Command::Rollouts(cmd) => rollouts::run(cmd).await,
        Command::Drift(cmd) => alerts::drift(cmd).await,
        Command::Alerts(cmd) => alerts::run(cmd).await,
        Command::Models(crate::cli::ModelsCmd::Fetch { cache_dir }) => {
            let cache = cache_dir.unwrap_or_else(tessera_engine::fetch::cache_dir);
            let result = tokio::task::spawn_blocking(move || {
                tessera_engine::fetch::fetch(&cache, &mut |step| eprintln!("fetch: {step}"))?;
                eprintln!("fetch: exporting the ONNX graph");
                let onnx = tessera_engine::bert::prepare_export(
                    &tessera_engine::fetch::default_model_dir(&cache),
                    &cache.join("onnx"),
                )?;
                eprintln!("fetch: ready ({})", onnx.display());
                Ok::<(), tessera_engine::EngineError>(())
            })
            .await?;
            result.map_err(|e| anyhow::anyhow!("{e}"))
        }
        Command::Train(args) => train::run(args).await,
        Command::Models(crate::cli::ModelsCmd::Report { client, version }) => {
            train::report(&crate::client::Client::new(&client)?, &version).await
        }
        Command::Loadtest(args) => loadtest::run(args).await,
        Command::Openapi => {
            let doc = tessera_gateway::routes::openapi::document();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            Ok(())
        }
    }
}

/// Prints a JSON value prettily.
fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
