//! The `tollgate` binary: parses the command line, sets up logging, and runs one command.
//!
//! It only loads config, builds the gateway and waits for shutdown; everything else lives in the
//! `tollgate-proxy` and `tollgate-sandbox` crates.

mod check;
mod cli;
mod clients;
mod completions;
mod config_path;
mod demo;
mod demo_receiver;
mod health;
mod keygen;
mod logging;
mod reload;
mod run;
mod webhooks;

use std::process::ExitCode;

use clap::Parser;

use cli::{Cli, Command};

/// jemalloc: 3-5% less CPU per proxied request than glibc's malloc on the load benchmark, with the
/// peak RSS still under the 32 MiB target at 256 connections (mimalloc was faster still but went
/// over it); BENCHMARKS.md has the figures. Without the `jemalloc` feature (on by default) the
/// system's allocator serves, for heap profilers that see only malloc (valgrind's dhat and massif).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // These print one thing on stdout: no logging, no runtime.
    let offline = match &cli.command {
        Command::Clients { action } => Some(clients::clients(action)),
        Command::Keygen => Some(keygen::keygen()),
        Command::Completions { shell } => Some(completions::print(*shell)),
        _ => None,
    };
    if let Some(result) = offline {
        return exit_code(result);
    }
    if let Err(e) = logging::init(cli.log_format, cli.log_level.as_deref()) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let workers = cli.workers.map_or_else(default_workers, usize::from);
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config_path::find(config.as_deref())?, workers).await,
            Command::Check { config } => check::check(&config_path::find(config.as_deref())?).await,
            Command::Demo(args) => demo::demo(args).await,
            Command::Sandbox { listen } => demo::sandbox(listen).await,
            Command::Webhooks { action } => webhooks::webhooks(action).await,
            Command::Health { admin } => health::health(admin).await,
            Command::Reload { admin } => reload::reload(admin).await,
            Command::Clients { action } => clients::clients(&action),
            Command::Keygen => keygen::keygen(),
            Command::Completions { shell } => completions::print(shell),
        }
    });
    exit_code(result)
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--workers`' default: one per core the process may use. The runtime above is worker 0;
/// `tollgate run` starts the others (`tollgate_proxy::serve`), each on a single-threaded runtime of
/// its own, as nginx runs its worker processes: no work-stealing queues or cross-thread wake-ups
/// to pay for (BENCHMARKS.md has what the multi-thread runtime cost).
/// Elsewhere than unix there is no `SO_REUSEPORT` to spread connections: one worker.
fn default_workers() -> usize {
    if cfg!(unix) {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        1
    }
}
