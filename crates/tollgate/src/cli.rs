//! The command line (DESIGN.md "CLI").

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about = "An egress API gateway for partner APIs")]
pub struct Cli {
    /// Log line format.
    #[arg(long, global = true, value_enum, env = "TOLLGATE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (e.g. `debug`, `info,tollgate::access=off`); overrides RUST_LOG.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
    /// `tollgate run`: workers serving the data listener (default: one per core), each a
    /// single-threaded runtime on a thread of its own, accepting on its own SO_REUSEPORT socket
    /// of `server.listen` (the other commands run on one).
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
        /// The config file [default: $TOLLGATE_CONFIG, else ./config/tollgate.toml, else
        /// /etc/tollgate/tollgate.toml].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Validate the config and print the resolved routes (no secrets); exit 0 or 1.
    Check {
        /// The config file [default: $TOLLGATE_CONFIG, else ./config/tollgate.toml, else
        /// /etc/tollgate/tollgate.toml].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Start the partner emulators and the gateway together, and print curl examples.
    Demo(DemoArgs),
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
    /// Make a running gateway read its config file again (as SIGHUP does) and say what changed;
    /// an invalid file changes nothing and exits 1.
    Reload {
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
    /// Print a fresh random key for `shared.encryption_key` (32 bytes, base64).
    Keygen,
    /// Print a shell completion script, e.g. `tollgate completions bash > /etc/bash_completion.d/tollgate`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// `tollgate demo`'s ports. The defaults are `config/demo.toml`'s (a unit test in `demo.rs`
/// keeps them equal); each flag moves one listener, and a port in use is reported with the flag
/// that moves it.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct DemoArgs {
    /// The gateway's data listener (callers).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The gateway's admin listener (/status, /metrics).
    #[arg(long, default_value = "127.0.0.1:9180")]
    pub admin_listen: SocketAddr,
    /// The gateway's webhook listener, where Osigu's emulator POSTs its events.
    #[arg(long, default_value = "127.0.0.1:8443")]
    pub webhook_listen: SocketAddr,
    /// The first emulator: Ottimate, OAS and Osigu listen on ports P, P+1, P+2 (port 0: any
    /// three free ports).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub emulators: SocketAddr,
    /// The demo's receiver, which the gateway delivers webhook events to (a fixed port, not 0).
    #[arg(long, default_value = "127.0.0.1:8099", value_parser = fixed_port)]
    pub receiver_listen: SocketAddr,
}

/// The receiver's address becomes the webhook's `deliver_to` before it is bound, so port 0
/// (whose real port is known only after binding) cannot be used there.
fn fixed_port(s: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = s.parse().map_err(|e: std::net::AddrParseError| e.to_string())?;
    if addr.port() == 0 {
        return Err("needs a fixed port (0 is not allowed here)".to_owned());
    }
    Ok(addr)
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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command, LogFormat};

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_is_optional_so_the_search_can_run() {
        let cli = Cli::try_parse_from(["tollgate", "check"]).unwrap();
        assert!(matches!(cli.command, Command::Check { config: None }));
        let cli = Cli::try_parse_from(["tollgate", "run", "--config", "/x.toml"]).unwrap();
        match cli.command {
            Command::Run { config } => assert_eq!(config, Some("/x.toml".into())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_log_format_flag_parses_json() {
        let cli = Cli::try_parse_from(["tollgate", "--log-format", "json", "keygen"]).unwrap();
        assert_eq!(cli.log_format, LogFormat::Json);
    }

    #[test]
    fn the_receiver_needs_a_fixed_port() {
        let err = Cli::try_parse_from(["tollgate", "demo", "--receiver-listen", "127.0.0.1:0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("0 is not allowed"), "{err}");
        let cli = Cli::try_parse_from(["tollgate", "demo", "--receiver-listen", "127.0.0.1:9099"]).unwrap();
        match cli.command {
            Command::Demo(args) => assert_eq!(args.receiver_listen.port(), 9099),
            other => panic!("{other:?}"),
        }
    }
}
