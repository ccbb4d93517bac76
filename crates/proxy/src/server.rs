//! Listeners, connections and graceful shutdown.
//!
//! `serve` takes already-bound listeners (tests bind `127.0.0.1:0`) and a shutdown future. Callers
//! may speak HTTP/1.1 or HTTP/2 with prior knowledge (h2c) on the same port. On shutdown the
//! listeners close at once, `/readyz` turns 503, and in-flight requests get `shutdown_timeout` to finish.
//!
//! - `accept.rs`: one accept task per listener; `max_connections` (data and webhook listeners)
//!   and the admin reserve; back-off when accept fails; the default from the open-file limit.
//! - `conn.rs`: one connection: `header_read_timeout` from the accept, `idle_timeout`, the
//!   `Content-Length` + `Transfer-Encoding` refusal, and the count of heads the parser refused.
//! - `head_scan.rs`: the raw-head scanner that spots both framing headers.
//! - `tls.rs`: `server.tls` on the data listener, and re-reading its files.
//! - `workers.rs`: `--workers N`: the data address bound N times (`SO_REUSEPORT`), and the N-1
//!   threads beyond this one, each a single-threaded runtime accepting on its own socket.
//!
//! Every listener gets the same protections; only the handler differs.

mod accept;
mod conn;
mod head_scan;
pub(crate) mod tls;
mod workers;

use std::future::Future;
use std::sync::Arc;

use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tollgate_metrics::Listener;

use crate::gateway::Gateway;

/// Request headers (with the request line) above this size get 431.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub data: TcpListener,
    pub admin: TcpListener,
    /// `server.webhook_listen`: partners' webhook deliveries, and nothing else.
    pub webhook: Option<TcpListener>,
    /// `--workers N`: N-1 more sockets on `data`'s address, each served by a thread of its own
    /// (the kernel spreads new connections over them). Empty: this runtime is the one worker.
    pub more_data: Vec<std::net::TcpListener>,
}

impl Listeners {
    /// Binds every listener of `config`, the data address once per worker (`workers` ≥ 1).
    pub async fn bind(config: &crate::config::Server, workers: usize) -> std::io::Result<Self> {
        let (data, more_data) = workers::bind(config.listen, workers).map_err(|e| {
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
        Ok(Self {
            data,
            admin,
            webhook,
            more_data,
        })
    }
}

/// Serves every listener until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(gw: Arc<Gateway>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    // Redis, token refreshers, webhook delivery: what an embedder's `Background` starts too.
    let mut background = gw.start_tasks().await;
    if let Some(tls) = &gw.tls {
        background.push(tls.clone().watch());
    }
    let config = gw.config();
    let server = &config.server;
    let max_connections = accept::max_connections(server.max_connections, 1 + listeners.more_data.len());
    let ctx = Arc::new(conn::ConnCtx {
        gw: gw.clone(),
        builder: connection_builder(),
        timeouts: conn::Timeouts {
            header_read: server.header_read_timeout,
            idle: server.idle_timeout,
        },
        metrics: gw.metrics().connections(),
    });
    // Connection tasks hold a receiver each: `closed()` on the sender is the drain's end.
    let (stop_tx, stop_rx) = watch::channel(());
    let callers = Arc::new(Semaphore::new(max_connections as usize));
    let admin_slots = Arc::new(Semaphore::new(accept::ADMIN_CONNECTIONS));
    // Partners' webhook deliveries get slots of their own (a quarter as many, at least 16): a
    // flood of silent caller connections must not make Tollgate refuse signed events.
    let webhook_slots = Arc::new(Semaphore::new((max_connections as usize / 4).max(16)));
    let Listeners {
        data,
        admin,
        webhook,
        more_data,
    } = listeners;
    let addr = |l: &TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
    // Connections a worker thread serves end with its runtime: each keeps it until `finish`.
    let (finish_tx, finish_rx) = watch::channel(false);
    let (threads, accepting) = workers::spawn(more_data, &callers, &ctx, &stop_rx, &finish_rx).await;
    gw.set_workers(1 + accepting);
    gw.set_ready(true);
    tracing::info!(
        listen = %addr(&data),
        workers = 1 + accepting,
        tls = gw.tls.is_some(),
        admin = %addr(&admin),
        webhook = %webhook.as_ref().map(addr).unwrap_or_else(|| "off".to_owned()),
        upstreams = config.upstreams.len(),
        webhooks = config.webhooks.len(),
        max_connections,
        "tollgate ready"
    );
    let spawn_acceptor = |listener: TcpListener, kind: Listener, slots: &Arc<Semaphore>| {
        tokio::spawn(accept::run(
            listener,
            kind,
            slots.clone(),
            ctx.clone(),
            stop_rx.clone(),
        ))
    };
    let mut acceptors = vec![
        spawn_acceptor(data, Listener::Data, &callers),
        spawn_acceptor(admin, Listener::Admin, &admin_slots),
    ];
    if let Some(webhook) = webhook {
        acceptors.push(spawn_acceptor(webhook, Listener::Webhook, &webhook_slots));
    }
    drop(stop_rx);
    shutdown.await;

    gw.set_ready(false);
    let _ = stop_tx.send(());
    // Each accept task returns at once and drops its listener: new connections are refused.
    for task in acceptors {
        let _ = task.await;
    }
    for task in background {
        task.abort();
    }
    gw.stop_refreshers();
    let grace = gw.config().server.shutdown_timeout;
    tracing::info!(
        grace_seconds = grace.as_secs_f64(),
        "shutting down: draining in-flight requests"
    );
    match tokio::time::timeout(grace, stop_tx.closed()).await {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!("shutdown_timeout passed with requests still in flight; dropping them"),
    }
    let _ = finish_tx.send(true);
    workers::join(threads).await;
}

/// HTTP/1.1 and h2c on one port. hyper's own HTTP/1 header timeout is off: `conn.rs` keeps one
/// from the accept, which hyper's (started by the first byte of a head) cannot.
fn connection_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Option::<std::time::Duration>::None)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        // Each stream may hold up to replay_buffer read before its slot: bound how many one
        // connection can open at once (hyper's default is 200).
        .max_concurrent_streams(100);
    builder
}
