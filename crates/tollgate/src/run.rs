//! `tollgate run`: load the config, bind, serve until SIGTERM/SIGINT.

use std::path::Path;
use std::sync::Arc;

use tollgate_proxy::{Config, Gateway, Listeners, Metrics};

pub async fn run(path: &Path) -> anyhow::Result<()> {
    let config = Config::load(path)?;
    serve(config).await
}

/// Builds the gateway from a loaded config and serves it until a shutdown signal.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listeners = Listeners::bind(&config.server).await?;
    let gateway = Gateway::new(config, Metrics::new(tollgate_proxy::VERSION)).map_err(anyhow::Error::msg)?;
    tollgate_proxy::serve(Arc::new(gateway), listeners, shutdown_signal()).await;
    Ok(())
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
