//! [`GatewayService`]: the request path as a `tower::Service`, for embedding Tollgate in one's own
//! hyper or axum server instead of running [`crate::serve`].
//!
//! ```text
//! embedder's server ──▶ GatewayService::call ──▶ pipeline::handle (the data listener's own
//!                       (with the peer address)      function: routes, callers, limits, tokens,
//!                                                    retries, rewriting) ──▶ Response<body::Body>
//! ```
//!
//! The service answers every request: a gateway error is already a JSON response
//! (`respond.rs`), so its error type is [`Infallible`]; `poll_ready` is always ready (the limits
//! queue or refuse inside the call, per upstream). A request body of any type is taken, `Sync`
//! or not (axum's is not), and streamed as the data listener streams hyper's. The access-log line
//! is written when the answer's body ends or is dropped, with the bytes sent.
//!
//! What Tollgate's own connection layer (`server/`) does and an embedder's server does instead:
//! the header-read and idle timeouts, connection caps, TLS, and the refusal of a head with both
//! `Content-Length` and `Transfer-Encoding` (hyper reads such a body as chunked). `[clients]`
//! identify callers by key here (`Proxy-Authorization`); a client named by its certificate
//! (`cert_san`, `cert_subject`) needs Tollgate's own TLS listener (`server.tls.client_ca`), which
//! verified the certificate. The admin API and the webhook listener are not part of the service.
//!
//! The background work `serve` runs (Redis for `[shared]`, token refreshers, webhook delivery)
//! runs while the [`Background`] from [`Gateway::start_background`] is kept; without it tokens are
//! still fetched when a request needs one, but `[shared]` stays degraded (`1/replicas` of every
//! budget) for want of Redis.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body as HttpBody;
use tower_service::Service;

use crate::body::{self, Body, BoxError};
use crate::gateway::Gateway;
use crate::pipeline::{self, Logged};

/// Tollgate's request path as a [`tower_service::Service`]: mount it in a hyper or axum server
/// (hyper: `hyper_util::service::TowerToHyperService`; axum: `Router::nest_service`). Cheap to
/// clone: one per connection, with the caller's address ([`GatewayService::with_peer`]).
#[derive(Debug, Clone)]
pub struct GatewayService {
    gw: Arc<Gateway>,
    /// The caller's socket address, for the access log.
    peer: Option<SocketAddr>,
}

impl Gateway {
    /// The request path as a `tower::Service` (see [`GatewayService`]).
    pub fn service(self: &Arc<Self>) -> GatewayService {
        GatewayService {
            gw: self.clone(),
            peer: None,
        }
    }

    /// Starts the background work [`crate::serve`] runs beside the request path, for a gateway
    /// served through [`GatewayService`]: Redis and its listeners (`[shared]`), the token
    /// refreshers (tokens fetched before the first request and before each expiry), and the
    /// webhook delivery workers. It stops when the [`Background`] is dropped.
    pub async fn start_background(self: &Arc<Self>) -> Background {
        Background {
            tasks: self.start_tasks().await,
            gw: self.clone(),
        }
    }
}

impl GatewayService {
    /// The caller's socket address, written in the access log.
    pub fn with_peer(mut self, peer: SocketAddr) -> Self {
        self.peer = Some(peer);
        self
    }

    /// The gateway this service serves (for `reload`, `metrics`, `config`).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gw
    }
}

impl<B> Service<Request<B>> for GatewayService
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (gw, peer) = (self.gw.clone(), self.peer);
        let req = req.map(body::stream_unsync);
        Box::pin(async move {
            let (resp, access) = pipeline::handle(&gw, req, peer, None).await;
            Ok::<_, Infallible>(resp.map(|inner| body::stream(Logged::<()>::new(inner, Some(access), None))))
        })
    }
}

/// The background work of a gateway served through [`GatewayService`]; stopped when dropped.
#[derive(Debug)]
#[must_use = "the background work stops when this is dropped"]
pub struct Background {
    gw: Arc<Gateway>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Background {
    fn drop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
        self.gw.stop_refreshers();
    }
}
