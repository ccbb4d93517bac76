//! Reloading the config while serving: SIGHUP, `POST /reload` on the admin listener, and
//! `tollgate reload` (which asks the admin listener).
//!
//! The file is read and validated whole first; an invalid one changes nothing. A valid one is
//! turned into a new [`Runtime`] that takes over what it may of the old (`gateway.rs`: pools,
//! token caches, limiter state, a partner's pause, retry budgets, clients' unchanged shares) and
//! is swapped in at once: requests in flight finish on the runtime they started with (a removed
//! upstream drains that way), new ones get the new. What is bound or opened once at start-up
//! (listeners and their timeouts, `[shared]`, `data_dir`, `[webhooks]`, the first `[clients]`
//! block, turning TLS on or off) keeps its old value, and the answer names each such key.

use serde::Serialize;

use crate::build_error::BuildError;
use crate::config::{Config, ConfigError};
use crate::gateway::{Gateway, Runtime};

/// What a reload did.
#[derive(Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReloadReport {
    /// Upstreams that are new, by name.
    pub added: Vec<String>,
    /// Upstreams that are gone (their requests in flight finish).
    pub removed: Vec<String>,
    /// Upstreams whose settings changed.
    pub changed: Vec<String>,
    /// Of the changed upstreams, those whose token was kept (credentials unchanged).
    pub tokens_kept: Vec<String>,
    /// Whether `server.tls` was re-read.
    pub tls_reloaded: bool,
    /// Key paths whose new value waits for a restart (the old value stays in force).
    pub restart_needed: Vec<String>,
}

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("this gateway was not started from a config file: there is nothing to read again")]
    NoSource,
    /// The message `tollgate check` prints for the same file.
    #[error("{0}")]
    Invalid(ConfigError),
    /// The new runtime could not be built (a `ca_file` that no longer parses).
    #[error("{0}")]
    Build(BuildError),
    /// The thread reading the file panicked or was cancelled.
    #[error("reading the config failed: {0}")]
    Read(tokio::task::JoinError),
}

impl Gateway {
    /// Reads the config file again and puts it in force (see the module doc). Counted in
    /// `tollgate_config_reloads_total`.
    pub async fn reload(&self) -> Result<ReloadReport, ReloadError> {
        let result = match self.source() {
            None => Err(ReloadError::NoSource),
            Some(path) => {
                let path = path.to_owned();
                match tokio::task::spawn_blocking(move || Config::load(&path)).await {
                    Ok(Ok(config)) => self.apply(config).await,
                    Ok(Err(e)) => Err(ReloadError::Invalid(e)),
                    Err(e) => Err(ReloadError::Read(e)),
                }
            }
        };
        match &result {
            Ok(report) => {
                self.metrics.reloads().loaded(crate::clock::now_unix(), true);
                tracing::info!(
                    added = ?report.added,
                    removed = ?report.removed,
                    changed = ?report.changed,
                    tokens_kept = ?report.tokens_kept,
                    tls_reloaded = report.tls_reloaded,
                    "config reloaded"
                );
                if !report.restart_needed.is_empty() {
                    tracing::warn!(
                        keys = ?report.restart_needed,
                        "config reloaded, but these changes need a restart; their old values stay in force"
                    );
                }
            }
            Err(e) => {
                self.metrics.reloads().refused();
                tracing::error!(error = %e, "config reload refused; nothing changed");
            }
        }
        result
    }

    /// Puts a validated config in force.
    pub(crate) async fn apply(&self, next: Config) -> Result<ReloadReport, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.runtime();
        let (effective, restart_needed) = in_force(&old.config, next);
        let tls_reloaded = self.reload_tls(&effective).map_err(ReloadError::Invalid)?;
        let mut report = ReloadReport {
            tls_reloaded,
            restart_needed,
            ..ReloadReport::default()
        };
        let runtime = Runtime::build(
            effective,
            &self.metrics,
            self.shared.as_ref(),
            Some(&old),
            self.jitter,
        )
        .map_err(ReloadError::Build)?;
        for up in &runtime.upstreams {
            match old.upstreams.iter().find(|o| o.cfg.name == up.cfg.name) {
                None => report.added.push(up.cfg.name.clone()),
                Some(o) if o.cfg != up.cfg => {
                    report.changed.push(up.cfg.name.clone());
                    let kept = match (&o.credentials, &up.credentials) {
                        (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                        _ => false,
                    };
                    if kept {
                        report.tokens_kept.push(up.cfg.name.clone());
                    }
                }
                Some(_) => {}
            }
        }
        report.removed = old
            .upstreams
            .iter()
            .filter(|o| !runtime.upstreams.iter().any(|u| u.cfg.name == o.cfg.name))
            .map(|o| o.cfg.name.clone())
            .collect();
        self.swap(runtime);
        self.sync_refreshers();
        Ok(report)
    }
}

/// The config to put in force: `next`, except what only a restart can change, which keeps its
/// value from `current`; and the key paths of those that differed.
fn in_force(current: &Config, mut next: Config) -> (Config, Vec<String>) {
    let mut restart = Vec::new();
    macro_rules! keep {
        ($($field:ident).+, $key:expr) => {
            if next.$($field).+ != current.$($field).+ {
                restart.push($key.to_owned());
                next.$($field).+ = current.$($field).+.clone();
            }
        };
    }
    keep!(server.listen, "server.listen");
    keep!(server.admin_listen, "server.admin_listen");
    keep!(server.webhook_listen, "server.webhook_listen");
    keep!(server.data_dir, "server.data_dir");
    keep!(server.header_read_timeout, "server.header_read_timeout");
    keep!(server.idle_timeout, "server.idle_timeout");
    keep!(server.max_connections, "server.max_connections");
    keep!(shared, "shared");
    keep!(webhooks, "webhooks");
    if next.server.tls.is_some() != current.server.tls.is_some() {
        restart.push("server.tls".to_owned());
        next.server.tls = current.server.tls.clone();
    }
    // The first client gives two metric families a `client` label, which only a new registry
    // can have.
    if current.clients.is_empty() && !next.clients.is_empty() {
        restart.push("clients".to_owned());
        next.clients = Vec::new();
        next.server.caller_auth = current.server.caller_auth;
    }
    (next, restart)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse(text, &|_| None).unwrap()
    }

    const UP: &str = "[upstreams.a.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n";

    #[test]
    fn what_only_a_restart_changes_keeps_its_value_and_is_named() {
        let current = parse(&format!("[server]\nlisten = \"127.0.0.1:8080\"\n{UP}"));
        let next = parse(&format!(
            "[server]\nlisten = \"127.0.0.1:8081\"\nbody_idle_timeout = \"3s\"\n{UP}[clients.x]\nkey = \"0123456789abcdefgh\"\nupstreams = [\"a\"]\n"
        ));
        let (effective, restart) = in_force(&current, next);
        assert_eq!(restart, ["server.listen", "clients"]);
        assert_eq!(effective.server.listen, current.server.listen);
        assert!(effective.clients.is_empty());
        // What a request reads each time is applied.
        assert_eq!(
            effective.server.body_idle_timeout,
            std::time::Duration::from_secs(3)
        );
        let same = parse(&format!("[server]\nlisten = \"127.0.0.1:8080\"\n{UP}"));
        assert!(in_force(&current, same).1.is_empty());
    }
}
