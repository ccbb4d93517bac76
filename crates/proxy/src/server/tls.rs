//! The data listener's TLS (`server.tls`): the rustls config in force, and re-reading it.
//!
//! Each accepted connection takes the config in force at its accept ([`TlsListener::acceptor`]),
//! so a swap never touches a connection already open: a rotation drops nothing in flight. The
//! files are re-read when their modification time changes ([`TlsListener::watch`], polled every
//! `WATCH_EVERY`) and on SIGHUP ([`crate::Gateway::reload_tls`]). A new certificate that does not
//! load changes nothing: the one in force stays, and the failure is logged by key path.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

use crate::config::tls::Tls;
use crate::config::ConfigError;

/// How often the certificate files' modification times are looked at.
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// The config in force, and where it came from.
#[derive(Debug)]
pub(crate) struct TlsListener {
    current: ArcSwap<ServerConfig>,
    /// The settings the config in force was built from, with the files' modification times then.
    source: Mutex<(Tls, Vec<Stamp>)>,
}

/// A watched file and its modification time when last read (`None`: unreadable then).
type Stamp = (PathBuf, Option<SystemTime>);

fn stamps(tls: &Tls) -> Vec<Stamp> {
    tls.files()
        .map(|p| (p.to_owned(), std::fs::metadata(p).and_then(|m| m.modified()).ok()))
        .collect()
}

impl TlsListener {
    pub(crate) fn new(tls: &Tls) -> Result<Self, ConfigError> {
        // Stamped before reading, so a write between the two is seen by the next look.
        let stamped = stamps(tls);
        let config = tls.server_config()?;
        Ok(Self {
            current: ArcSwap::from_pointee(config),
            source: Mutex::new((tls.clone(), stamped)),
        })
    }

    /// For one new connection.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.load_full())
    }

    /// Re-reads `tls` (the settings in force, or new ones from a re-read config file) and swaps
    /// it in; on an error the config in force stays.
    pub(crate) fn reload(&self, tls: &Tls) -> Result<(), ConfigError> {
        let stamped = stamps(tls);
        let config = tls.server_config()?;
        self.current.store(Arc::new(config));
        *self.source.lock().unwrap_or_else(|p| p.into_inner()) = (tls.clone(), stamped);
        Ok(())
    }

    /// Re-reads the files when one of them changed since it was last looked at: one attempt
    /// (and one log line) per change, so a bad file is not retried every tick.
    fn reload_if_changed(&self) -> Option<Result<(), ConfigError>> {
        let tls = {
            let mut source = self.source.lock().unwrap_or_else(|p| p.into_inner());
            let now = stamps(&source.0);
            if now == source.1 {
                return None;
            }
            source.1 = now;
            source.0.clone()
        };
        Some(
            tls.server_config()
                .map(|config| self.current.store(Arc::new(config))),
        )
    }

    /// Polls the files until the task is aborted (at shutdown).
    pub(crate) fn watch(self: Arc<Self>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(WATCH_EVERY);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                // A file half-written fails to load and is tried again on its next change,
                // which the rest of the write is.
                match self.reload_if_changed() {
                    None => {}
                    Some(Ok(())) => tracing::info!("server.tls: the certificate files changed; re-read them"),
                    Some(Err(e)) => tracing::error!(
                        error = %e,
                        "server.tls: the certificate files changed but do not load; still serving the previous ones"
                    ),
                }
            }
        })
    }
}
