//! The `tessera` binary: parses the command line and hands off. No logic here.
#![expect(clippy::print_stdout, reason = "the CLI prints its results")]

mod cli;
mod client;
mod commands;
mod config;
mod serve;

use clap::Parser as _;

/// Allocation is a large share of a request's CPU (a response cache hit, a
/// prediction record: small maps and strings made and dropped on several
/// threads); glibc's allocator spent a third of the records' cost in
/// consolidating freed chunks.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
