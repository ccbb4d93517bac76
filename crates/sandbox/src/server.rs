//! The accept loop of one emulator.
//!
//! Hand-rolled instead of `axum::serve` for two reasons: every accepted TCP connection is counted
//! (a gateway's pooling tests assert on [`crate::Emulator::connections`]), and every connection
//! task lives in a `JoinSet` owned by the loop, so stopping the loop also closes keep-alive
//! connections a gateway still holds in its pool. After `shutdown` the emulator is really gone,
//! which is what an "upstream unreachable" test needs.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use crate::state::Shared;

/// Serves `router` on `listener` until `stop` fires (or is dropped), then closes every connection.
pub(crate) async fn run(
    listener: TcpListener,
    router: Router,
    shared: Arc<Shared>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's HTTP/1 header-read timeout needs a timer to be enforced.
    builder.http1().timer(TokioTimer::new());
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    shared.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    let service = TowerToHyperService::new(router.clone());
                    let builder = builder.clone();
                    connections.spawn(async move {
                        if let Err(e) = builder.serve_connection(TokioIo::new(stream), service).await {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.shutdown().await;
}
