//! `tollgate run`: load the config, bind, serve until SIGTERM/SIGINT.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // The file may have been found by a search (config_path.rs): say which one is in force.
    tracing::info!(config = %path.display(), "config loaded");
    let listeners = Listeners::bind(&config.server).await?;
    serve_on(config, listeners, Some(path)).await
}

/// Builds the gateway from a loaded config and serves it on listeners the caller has bound (`tollgate demo` binds its own, to name the flag
/// that moves a port in use). `path`: the config file SIGHUP re-reads.
pub async fn serve_on(config: Config, listeners: Listeners, path: Option<&Path>) -> anyhow::Result<()> {
    let gateway =
        Arc::new(Gateway::new(config, Metrics::new(tollgate_proxy::VERSION)).map_err(anyhow::Error::msg)?);
    gateway.preflight().await.map_err(anyhow::Error::msg)?;
    let hangups = tokio::spawn(on_hangup(gateway.clone(), path.map(Path::to_owned)));
    tollgate_proxy::serve(gateway, listeners, shutdown_signal()).await;
    hangups.abort();
    Ok(())
}

/// SIGHUP's default action kills the process with every request in flight, so it is caught.
/// It re-reads the config file and applies what can change in place today: the data listener's
/// certificate (`server.tls`). The file is validated whole first; an invalid one changes nothing.
async fn on_hangup(gateway: Arc<Gateway>, path: Option<PathBuf>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            let Some(path) = &path else {
                tracing::warn!(
                    "SIGHUP received: this gateway was not started from a config file; nothing changed"
                );
                continue;
            };
            let config = match Config::load(path) {
                Ok(config) => config,
                Err(e) => {
                    tracing::error!(config = %path.display(), error = %e, "SIGHUP: the config file is invalid; nothing changed");
                    continue;
                }
            };
            match gateway.reload_tls(&config) {
                Ok(true) => {
                    tracing::info!("SIGHUP: re-read server.tls (new connections get the new certificate)")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "SIGHUP: server.tls not re-read; the previous certificate stays")
                }
            }
            tracing::warn!(
                "SIGHUP: other config changes are not applied while running (restart to apply them)"
            );
        }
    }
    #[cfg(not(unix))]
    drop((gateway, path));
}

/// Resolves on the first SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received"),
        () = term => tracing::info!("SIGTERM received"),
    }
}
