//! `tollgate run`: load the config, bind, serve until SIGTERM/SIGINT; SIGHUP reloads the config.

use std::path::Path;
use std::sync::Arc;

use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

/// `workers`: how many runtimes serve the data listener (`--workers`).
pub async fn run(path: &Path, workers: usize) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    // The file may have been found by a search (config_path.rs): say which one is in force.
    tracing::info!(config = %path.display(), "config loaded");
    let listeners = Listeners::bind(&config.server, workers).await?;
    serve_on(config, listeners, Some(path)).await
}

/// Builds the gateway from a loaded config and serves it on listeners the caller has bound
/// (`tollgate demo` binds its own, to name the flag that moves a port in use). `path`: the config
/// file SIGHUP and `POST /reload` read again.
pub async fn serve_on(config: Config, listeners: Listeners, path: Option<&Path>) -> anyhow::Result<()> {
    // A `BuildError` prints as one line: it has no source, so `{:#}` in main.rs repeats nothing.
    let mut gateway = Gateway::new(config, Metrics::new(tollgate_proxy::VERSION))?;
    if let Some(path) = path {
        gateway = gateway.with_source(path.to_owned());
    }
    let gateway = Arc::new(gateway);
    gateway.preflight().await?;
    let hangups = tokio::spawn(on_hangup(gateway.clone()));
    tollgate_proxy::serve(gateway, listeners, shutdown_signal()).await;
    hangups.abort();
    Ok(())
}

/// SIGHUP's default action kills the process with every request in flight, so it is caught: it
/// reloads the config (`Gateway::reload` logs what changed, or why nothing did).
async fn on_hangup(gateway: Arc<Gateway>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangups) = signal(SignalKind::hangup()) else {
            return;
        };
        while hangups.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the config");
            // The outcome is logged and counted by `reload` itself.
            let _ = gateway.reload().await;
        }
    }
    #[cfg(not(unix))]
    drop(gateway);
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
