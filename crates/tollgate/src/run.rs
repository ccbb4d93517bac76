//! `tollgate run`: load the config, bind, serve until SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // The file may have been found by a search (config_path.rs): say which one is in force.
    tracing::info!(config = %path.display(), "config loaded");
    serve(config).await
}

/// Builds the gateway from a loaded config and serves it until a shutdown signal.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    serve_on(config, listeners).await
}

/// [`serve`] on listeners the caller has bound (`tollgate demo` binds its own, to name the flag
/// that moves a port in use).
pub async fn serve_on(config: Config, listeners: Listeners) -> anyhow::Result<()> {
    let gateway = Gateway::new(config, Metrics::new(tollgate_proxy::VERSION)).map_err(anyhow::Error::msg)?;
    gateway.preflight().await.map_err(anyhow::Error::msg)?;
    let hangups = tokio::spawn(log_hangups());
    tollgate_proxy::serve(Arc::new(gateway), listeners, shutdown_signal()).await;
    hangups.abort();
    Ok(())
}

/// SIGHUP's default action kills the process with every request in flight. Until reloading
/// lands, a SIGHUP is caught and logged, and changes nothing.
async fn log_hangups() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::warn!("SIGHUP received: reloading the config is not supported yet; nothing changed (restart to apply a new config)");
        }
    }
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
