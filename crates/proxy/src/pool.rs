//! Keep-alive connections to partners: an idle stack per origin, and the origin's HTTP/2 connection.
//!
//! A request takes the most recently used idle HTTP/1 connection (or the origin's HTTP/2 one) and
//! its HTTP/1 connection goes back on the stack the moment its response body ends, from inside the
//! body, provided the connection can take a request at once (otherwise a task waits for it, so no
//! request ever queues behind another's upload). hyper-util's legacy client, used before, sent every
//! request through a dispatch channel and spawned a task per request to hand the connection back;
//! the load benchmark measured both (see BENCHMARKS.md). What a pool must still get right is here
//! or in `forward.rs`: a request that a reused connection never sent goes out on another one, and a
//! sweeper closes connections idle for `IDLE_TIMEOUT` (HTTP/2 included), counting sweeps rather than
//! reading the clock on the request path.
//!
//! Each worker (`--workers`) has its own idle stack and HTTP/2 connection per origin: a connection
//! is driven by the runtime that opened it, and a worker that used another's would wake that
//! thread twice per request.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use tollgate_metrics::PoolMetrics;

use crate::body::Body;

/// How often the sweeper looks at an origin's idle connections.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// Connections left unused for this many sweeps (90 to 100 s) are closed.
const IDLE_SWEEPS: u8 = 9;

/// Every origin one client has talked to: the API's, found without a lock, and any other
/// (the token endpoint's, when it lives elsewhere).
#[derive(Debug)]
pub struct Pool {
    api: Option<Arc<Origin>>,
    others: Mutex<Vec<Arc<Origin>>>,
    metrics: Option<PoolMetrics>,
}

/// The connections to one scheme + authority.
#[derive(Debug)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
    /// `Host` for HTTP/1: the authority without a default port.
    host: HeaderValue,
    /// One per worker slot (`worker::slots`).
    shards: Box<[Shard]>,
    /// The sweeper task runs (it is started by the first connection kept).
    sweeping: AtomicBool,
    /// The upstream's `tollgate_upstream_connections` handles (`None`: webhook deliveries).
    metrics: Option<PoolMetrics>,
}

/// One worker's connections to an origin, on a cache line of its own: workers never contend.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<State>);

#[derive(Debug, Default)]
struct State {
    /// Most recently used at the back.
    idle: VecDeque<Idle>,
    h2: Option<Idle<http2::SendRequest<Body>>>,
}

/// A connection and the sweeps it has been idle through (HTTP/2: unused through).
#[derive(Debug)]
struct Idle<T = http1::SendRequest<Body>> {
    tx: T,
    sweeps: u8,
}

/// A connection taken from the pool (or just opened) for one request.
pub enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Pool {
    /// A pool for the API at `base` (an absolute URI), counting its connections in `metrics`.
    pub fn new(base: &Uri, metrics: Option<PoolMetrics>) -> Self {
        Self {
            api: Origin::of(base, metrics.clone()).map(Arc::new),
            others: Mutex::default(),
            metrics,
        }
    }

    /// The origin of an absolute URI; `None` when it has no scheme or authority.
    pub fn origin(&self, uri: &Uri) -> Option<Arc<Origin>> {
        let (scheme, authority) = (uri.scheme()?, uri.authority()?);
        let same = |o: &Arc<Origin>| o.scheme == *scheme && o.authority == *authority;
        if let Some(api) = self.api.as_ref().filter(|o| same(o)) {
            return Some(api.clone());
        }
        let mut others = lock(&self.others);
        if let Some(found) = others.iter().find(|o| same(o)) {
            return Some(found.clone());
        }
        let origin = Arc::new(Origin::of(uri, self.metrics.clone())?);
        others.push(origin.clone());
        Some(origin)
    }
}

impl Origin {
    fn of(uri: &Uri, metrics: Option<PoolMetrics>) -> Option<Self> {
        let (scheme, authority) = (uri.scheme()?, uri.authority()?);
        let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
        let host = match authority.port_u16() {
            Some(port) if port != default_port => authority.as_str().to_owned(),
            _ => authority.host().to_owned(),
        };
        Some(Self {
            scheme: scheme.clone(),
            authority: authority.clone(),
            host: HeaderValue::from_str(&host).ok()?,
            shards: (0..crate::worker::slots()).map(|_| Shard::default()).collect(),
            sweeping: AtomicBool::new(false),
            metrics,
        })
    }

    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    pub fn metrics(&self) -> Option<&PoolMetrics> {
        self.metrics.as_ref()
    }

    fn idle_changed(&self, delta: i64) {
        if let (Some(m), false) = (&self.metrics, delta == 0) {
            m.idle(delta);
        }
    }

    /// An open connection, if one is idle: HTTP/2 first (it multiplexes), then the newest HTTP/1.
    pub fn checkout(&self) -> Option<Conn> {
        let mut state = self.state();
        if let Some(h2) = &mut state.h2 {
            if !h2.tx.is_closed() {
                h2.sweeps = 0;
                return Some(Conn::H2(h2.tx.clone()));
            }
            state.h2 = None;
        }
        let before = state.idle.len();
        let mut found = None;
        while let Some(idle) = state.idle.pop_back() {
            if !idle.tx.is_closed() {
                found = Some(Conn::H1(idle.tx));
                break;
            }
        }
        self.idle_changed(state.idle.len() as i64 - before as i64);
        found
    }

    /// Keeps a new HTTP/2 connection for every later request to this origin.
    pub fn share_h2(self: &Arc<Self>, tx: &http2::SendRequest<Body>) {
        self.state().h2 = Some(Idle {
            tx: tx.clone(),
            sweeps: 0,
        });
        self.start_sweeper();
    }

    /// Returns an HTTP/1 connection whose response has been read to the end.
    fn checkin(self: &Arc<Self>, mut tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        if !tx.is_ready() {
            // The request body may still be going out (the partner answered before reading it
            // all): the connection joins the pool only once it can take a request.
            let origin = self.clone();
            tokio::spawn(async move {
                if tx.ready().await.is_ok() {
                    origin.push_idle(tx);
                }
            });
            return;
        }
        self.push_idle(tx);
    }

    fn push_idle(self: &Arc<Self>, tx: http1::SendRequest<Body>) {
        self.state().idle.push_back(Idle { tx, sweeps: 0 });
        self.idle_changed(1);
        self.start_sweeper();
    }

    /// The current worker's connections.
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shards[crate::worker::slot(self.shards.len())].0)
    }

    fn start_sweeper(self: &Arc<Self>) {
        if !self.sweeping.swap(true, Ordering::Relaxed) {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    /// One sweep of every worker's connections: closes what has been idle (or closed) too long.
    fn expire(&self) {
        for shard in &self.shards {
            self.expire_shard(&mut lock(&shard.0));
        }
    }

    fn expire_shard(&self, state: &mut State) {
        let before = state.idle.len();
        state.idle.retain_mut(|idle| {
            idle.sweeps += 1;
            idle.sweeps < IDLE_SWEEPS && !idle.tx.is_closed()
        });
        self.idle_changed(state.idle.len() as i64 - before as i64);
        if let Some(h2) = &mut state.h2 {
            h2.sweeps += 1;
            if h2.sweeps >= IDLE_SWEEPS || h2.tx.is_closed() {
                // Requests still on it finish: they hold their own handles.
                state.h2 = None;
            }
        }
    }
}

impl Drop for Origin {
    /// A client replaced by a reload takes its idle connections with it.
    fn drop(&mut self) {
        let idle: usize = self.shards.iter().map(|s| lock(&s.0).idle.len()).sum();
        self.idle_changed(-(idle as i64));
    }
}

/// Sweeps one origin every `SWEEP_EVERY` for as long as its client exists.
async fn sweep(origin: Weak<Origin>) {
    let mut every = tokio::time::interval(SWEEP_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    loop {
        every.tick().await;
        match origin.upgrade() {
            Some(origin) => origin.expire(),
            None => return,
        }
    }
}

/// A poisoned pool lock only means another request panicked mid-update; the list is still sound.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A partner's response body on an HTTP/1 connection; the connection goes back to the pool when
/// the body has been read to its end, and is closed if the body is dropped before.
pub struct PooledBody {
    inner: Incoming,
    conn: Option<(http1::SendRequest<Body>, Arc<Origin>)>,
}

impl PooledBody {
    pub fn new(inner: Incoming, tx: http1::SendRequest<Body>, origin: Arc<Origin>) -> Self {
        let mut body = Self {
            inner,
            conn: Some((tx, origin)),
        };
        body.release_if_done();
        body
    }

    fn release_if_done(&mut self) {
        if http_body::Body::is_end_stream(&self.inner) {
            self.release();
        }
    }

    fn release(&mut self) {
        if let Some((tx, origin)) = self.conn.take() {
            origin.checkin(tx);
        }
    }
}

impl http_body::Body for PooledBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) => self.release_if_done(),
            // A broken body leaves a connection in an unknown state: never reuse it.
            Poll::Ready(Some(Err(_))) => self.conn = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;

    /// A client connection to an in-memory server that answers 200 (HTTP/1, or HTTP/2).
    async fn connection(h2: bool) -> Conn {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let svc = hyper::service::service_fn(|_req| async {
            Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Empty::<Bytes>::new()))
        });
        tokio::spawn(
            hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server), svc)
                .into_owned(),
        );
        let io = TokioIo::new(client);
        if h2 {
            let (tx, conn) = http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            Conn::H2(tx)
        } else {
            let (tx, conn) = http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Conn::H1(tx)
        }
    }

    fn origin() -> Arc<Origin> {
        Arc::new(Origin::of(&Uri::from_static("http://partner.test"), None).unwrap())
    }

    #[test]
    fn origins_are_found_by_scheme_and_authority_with_host_as_http1_wants_it() {
        let pool = Pool::new(&Uri::from_static("https://api.partner.test:443/v1"), None);
        let api = pool
            .origin(&Uri::from_static("https://api.partner.test:443/v1/x?y=1"))
            .unwrap();
        assert!(Arc::ptr_eq(&api, pool.api.as_ref().unwrap()));
        assert_eq!(api.host(), "api.partner.test", "the default port is left out");
        let token = pool
            .origin(&Uri::from_static("https://auth.partner.test:8443/token"))
            .unwrap();
        assert!(!Arc::ptr_eq(&api, &token));
        assert_eq!(token.host(), "auth.partner.test:8443");
        let again = pool
            .origin(&Uri::from_static("https://auth.partner.test:8443/other"))
            .unwrap();
        assert!(Arc::ptr_eq(&token, &again), "one origin, one set of connections");
        let plain = pool
            .origin(&Uri::from_static("http://api.partner.test:443/v1"))
            .unwrap();
        assert!(!Arc::ptr_eq(&api, &plain), "the scheme is part of the origin");
        assert!(pool.origin(&Uri::from_static("/relative")).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_after_nine_sweeps_and_a_used_one_stays() {
        let origin = origin();
        let (Conn::H1(mut old), Conn::H1(mut young)) = (connection(false).await, connection(false).await)
        else {
            unreachable!()
        };
        old.ready().await.unwrap();
        young.ready().await.unwrap();
        origin.push_idle(old);
        tokio::time::sleep(SWEEP_EVERY * 5 + SWEEP_EVERY / 2).await;
        origin.push_idle(young);
        tokio::time::sleep(SWEEP_EVERY * 3).await;
        assert_eq!(origin.state().idle.len(), 2, "8 and 3 sweeps: both kept");
        tokio::time::sleep(SWEEP_EVERY).await;
        assert_eq!(origin.state().idle.len(), 1, "9 sweeps: the older one is closed");
        assert_eq!(origin.state().idle[0].sweeps, 4, "the younger one stays");
        assert!(matches!(origin.checkout(), Some(Conn::H1(_))));
        assert!(origin.checkout().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_h2_connection_is_dropped_after_nine_unused_sweeps() {
        let origin = origin();
        let Conn::H2(tx) = connection(true).await else {
            unreachable!()
        };
        origin.share_h2(&tx);
        drop(tx);
        tokio::time::sleep(SWEEP_EVERY * 8 + SWEEP_EVERY / 2).await;
        // Used: its idle count starts again.
        assert!(matches!(origin.checkout(), Some(Conn::H2(_))));
        tokio::time::sleep(SWEEP_EVERY * 8).await;
        assert!(origin.state().h2.is_some(), "8 sweeps since it was used");
        tokio::time::sleep(SWEEP_EVERY).await;
        assert!(origin.state().h2.is_none(), "9 unused sweeps");
        assert!(origin.checkout().is_none());
    }

    #[tokio::test]
    async fn a_connection_still_busy_joins_the_pool_only_when_ready() {
        let origin = origin();
        let Conn::H1(tx) = connection(false).await else {
            unreachable!()
        };
        // Not ready yet: the connection task has not run. It must not be handed out before.
        assert!(!tx.is_ready());
        origin.checkin(tx);
        assert!(origin.state().idle.is_empty());
        let joined = async {
            while origin.state().idle.is_empty() {
                tokio::task::yield_now().await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), joined)
            .await
            .unwrap();
        assert!(matches!(origin.checkout(), Some(Conn::H1(_))));
    }
}
