//! The `tollgate` binary: parses the command line, sets up logging, and runs one command.
//!
//! It only loads config, builds the gateway and waits for shutdown; everything else lives in the
//! `tollgate-proxy` and `tollgate-sandbox` crates.

mod check;
mod cli;
mod demo;
mod logging;
mod run;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cli.workers.unwrap_or_else(default_workers))
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config).await,
            Command::Check { config } => check::check(&config),
            Command::Demo => demo::demo().await,
            Command::Sandbox { listen } => demo::sandbox(listen).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
