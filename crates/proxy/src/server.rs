//! Listeners, connections and graceful shutdown.
//!
//! `serve` takes already-bound listeners (tests bind `127.0.0.1:0`) and a shutdown future. Callers
//! may speak HTTP/1.1 or HTTP/2 with prior knowledge (h2c) on the same port. On shutdown the
//! listeners close at once, `/readyz` turns 503, and in-flight requests get `shutdown_timeout` to finish.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::Gateway;
use crate::{admin, pipeline, webhook};

/// Request headers (with the request line) above this size get 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub data: TcpListener,
    pub admin: TcpListener,
    /// `server.webhook_listen`: partners' webhook deliveries, and nothing else.
    pub webhook: Option<TcpListener>,
}

impl Listeners {
    pub async fn bind(config: &crate::config::Server) -> std::io::Result<Self> {
        let data = TcpListener::bind(config.listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on server.listen {}: {e}", config.listen),
            )
        })?;
        let admin = TcpListener::bind(config.admin_listen).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on server.admin_listen {}: {e}",
                    config.admin_listen
                ),
            )
        })?;
        let webhook = match config.webhook_listen {
            None => None,
            Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("cannot listen on server.webhook_listen {addr}: {e}"),
                )
            })?),
        };
        Ok(Self { data, admin, webhook })
    }
}

/// Serves both listeners until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(gw: Arc<Gateway>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let builder = connection_builder();
    let graceful = GracefulShutdown::new();
    // Redis first, so the first token fetches already go through the fleet.
    let mut background = gw.start_shared().await;
    background.extend(gw.start_refreshers());
    if let Some(hooks) = &gw.webhooks {
        background.extend(hooks.start());
    }
    gw.set_ready(true);
    tracing::info!(
        listen = %listeners.data.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        admin = %listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        webhook = %listeners.webhook.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.to_string()).unwrap_or_else(|| "off".to_owned()),
        upstreams = gw.config().upstreams.len(),
        webhooks = gw.config().webhooks.len(),
        "tollgate ready"
    );
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listeners.data.accept() => match accepted {
                Ok((stream, _)) => {
                    let gw = gw.clone();
                    let svc = service_fn(move |req| {
                        let gw = gw.clone();
                        async move { Ok::<_, Infallible>(pipeline::handle(&gw, req).await) }
                    });
                    watch(&builder, &graceful, stream, svc);
                }
                Err(e) => accept_error(e).await,
            },
            accepted = listeners.admin.accept() => match accepted {
                Ok((stream, _)) => {
                    let gw = gw.clone();
                    let svc = service_fn(move |req| {
                        let gw = gw.clone();
                        async move { Ok::<_, Infallible>(admin::handle(&gw, req).await) }
                    });
                    watch(&builder, &graceful, stream, svc);
                }
                Err(e) => accept_error(e).await,
            },
            accepted = accept_webhook(listeners.webhook.as_ref()) => match accepted {
                Ok((stream, _)) => {
                    let gw = gw.clone();
                    let svc = service_fn(move |req| {
                        let gw = gw.clone();
                        async move {
                            let resp = match &gw.webhooks {
                                Some(hooks) => webhook::handle(hooks, req).await,
                                None => crate::respond::error_response(&crate::error::GatewayError::NoRoute, None, "-"),
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    watch(&builder, &graceful, stream, svc);
                }
                Err(e) => accept_error(e).await,
            },
        }
    }
    gw.set_ready(false);
    drop(listeners);
    for task in background {
        task.abort();
    }
    let grace = gw.config().server.shutdown_timeout;
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "shutting down: draining in-flight requests"
    );
    match tokio::time::timeout(grace, graceful.shutdown()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown_timeout passed with requests still in flight; dropping them"),
    }
}

fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

fn watch<S>(builder: &auto::Builder<TokioExecutor>, graceful: &GracefulShutdown, stream: TcpStream, svc: S)
where
    S: hyper::service::Service<
            http::Request<hyper::body::Incoming>,
            Response = http::Response<crate::body::Body>,
            Error = Infallible,
        > + Send
        + 'static,
    S::Future: Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
    let conn = graceful.watch(conn);
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}

/// The webhook listener's next connection; never resolves when webhooks are off.
async fn accept_webhook(
    listener: Option<&TcpListener>,
) -> std::io::Result<(TcpStream, std::net::SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Accept fails under fd exhaustion; back off instead of spinning.
async fn accept_error(e: std::io::Error) {
    tracing::warn!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}
