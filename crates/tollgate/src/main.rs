//! The `tollgate` binary: parses the command line, sets up logging, and runs one command.
//!
//! It only loads config, builds the gateway and waits for shutdown; everything else lives in the
//! `tollgate-proxy` and `tollgate-sandbox` crates.

mod check;
mod cli;
mod clients;
mod demo;
mod demo_receiver;
mod health;
mod logging;
mod run;
mod webhooks;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// jemalloc: 3-5% less CPU per proxied request than glibc's malloc on the load benchmark, with the
/// peak RSS still under the 32 MiB target at 256 connections (mimalloc was faster still but went
/// over it); BENCHMARKS.md has the figures.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Reads stdin and prints one line: no logging, no runtime.
    if let Command::Clients { action } = &cli.command {
        return match clients::clients(action) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match runtime(cli.workers.map_or_else(default_workers, usize::from)) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config).await,
            Command::Check { config } => check::check(&config).await,
            Command::Demo => demo::demo().await,
            Command::Sandbox { listen } => demo::sandbox(listen).await,
            Command::Webhooks { action } => webhooks::webhooks(action).await,
            Command::Health { admin } => health::health(admin).await,
            Command::Clients { action } => clients::clients(&action),
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

/// One worker runs on the current-thread scheduler: no work-stealing queues or cross-thread
/// wake-ups to pay for (see BENCHMARKS.md for what it gained).
fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build()
}

fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
