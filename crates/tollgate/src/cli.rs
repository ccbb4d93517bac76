//! The command line (DESIGN.md "CLI").

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about = "An egress API gateway for partner APIs")]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (e.g. `debug`, `info,tollgate::access=off`); overrides RUST_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// Runtime worker threads (default: one per core; 1 runs a single-threaded scheduler).
    #[arg(long, global = true, env = "TOLLGATE_WORKERS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve.
    Run {
        #[arg(long, env = "TOLLGATE_CONFIG", default_value = "config/tollgate.toml")]
        config: PathBuf,
    },
    /// Validate the config and print the resolved routes (no secrets); exit 0 or 1.
    Check {
        #[arg(long, env = "TOLLGATE_CONFIG", default_value = "config/tollgate.toml")]
        config: PathBuf,
    },
    /// Start the partner emulators and the gateway together, and print curl examples.
    Demo,
    /// Run only the partner emulators (Ottimate, OAS, Osigu on ports P, P+1, P+2).
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:7001")]
        listen: SocketAddr,
    },
    /// Probe a running gateway's `/readyz`: exit 0 when ready, 1 otherwise (a container
    /// HEALTHCHECK that needs no shell or curl).
    Health {
        #[arg(long, env = "TOLLGATE_ADMIN", default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
    },
    /// Inspect and replay stored webhook events through a running gateway's admin listener.
    Webhooks {
        #[command(subcommand)]
        action: WebhooksCommand,
    },
    /// Caller keys for `[clients.NAME]`.
    Clients {
        #[command(subcommand)]
        action: ClientsCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
    /// Read a caller key from stdin and print the `key_sha256 = "..."` line for its
    /// `[clients.NAME]` block (surrounding whitespace, such as echo's newline, is not part of the key).
    Hash,
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List a webhook's pending events or dead letters (ids, times, attempts, last error; no bodies).
    List {
        /// The webhook's name (`[webhooks.NAME]`).
        name: String,
        #[arg(long, value_enum, default_value_t = EventState::Pending)]
        state: EventState,
        /// At most this many events, oldest first (1-1000).
        #[arg(long, default_value_t = 100)]
        limit: u16,
        /// The gateway's admin listener.
        #[arg(long, env = "TOLLGATE_ADMIN", default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
    },
    /// Send dead letters again: one by event id, or every dead letter that arrived since a time.
    Replay {
        name: String,
        /// The dead letter's event id.
        #[arg(long, required_unless_present = "dead_since", conflicts_with = "dead_since")]
        event_id: Option<String>,
        /// Every dead letter that arrived at or after this time (RFC 3339, e.g. 2026-11-30T12:00:00Z, or unix seconds).
        #[arg(long)]
        dead_since: Option<String>,
        #[arg(long, env = "TOLLGATE_ADMIN", default_value = "127.0.0.1:9180")]
        admin: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EventState {
    Pending,
    Dead,
}
