//! One module per command group; `run` dispatches.

mod audit;
mod keys;
mod tenants;

use crate::cli::{Cli, Command};

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => crate::serve::run(args).await,
        Command::Tenants(cmd) => tenants::run(cmd).await,
        Command::Keys(cmd) => keys::run(cmd).await,
        Command::Audit(cmd) => audit::run(cmd).await,
        Command::Openapi => {
            use utoipa::OpenApi as _;
            let doc = tessera_gateway::routes::openapi::ApiDoc::openapi();
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
