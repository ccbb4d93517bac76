//! Keep-alive connections to partners: an idle stack per origin, and the origin's HTTP/2 connection.
//!
//! A request takes the most recently used idle HTTP/1 connection (or the origin's HTTP/2 one) and
//! its HTTP/1 connection goes back on the stack the moment its response body ends, from inside the
//! body. hyper-util's legacy client, used before, sent every request through a dispatch channel
//! and spawned a task per request to hand the connection back; the load benchmark measured both
//! (see BENCHMARKS.md). What a pool must still get right is here: a request that a reused
//! connection never sent (the partner closed it while idle) goes out on another one, and idle
//! connections older than `IDLE_TIMEOUT` are closed.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http::{HeaderValue, Uri};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};

use crate::body::Body;

/// Idle connections older than this are closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Every origin one client has talked to: the API's, found without a lock, and any other
/// (the token endpoint's, when it lives elsewhere).
#[derive(Debug)]
pub struct Pool {
    api: Option<Arc<Origin>>,
    others: Mutex<Vec<Arc<Origin>>>,
}

/// The connections to one scheme + authority.
#[derive(Debug)]
pub struct Origin {
    scheme: Scheme,
    authority: Authority,
    /// `Host` for HTTP/1: the authority without a default port.
    host: HeaderValue,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Most recently used at the back.
    idle: VecDeque<Idle>,
    h2: Option<http2::SendRequest<Body>>,
}

#[derive(Debug)]
struct Idle {
    tx: http1::SendRequest<Body>,
    since: Instant,
}

/// A connection taken from the pool (or just opened) for one request.
pub enum Conn {
    H1(http1::SendRequest<Body>),
    H2(http2::SendRequest<Body>),
}

impl Pool {
    /// A pool for the API at `base` (an absolute URI).
    pub fn new(base: &Uri) -> Self {
        Self {
            api: Origin::of(base).map(Arc::new),
            others: Mutex::default(),
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
        let origin = Arc::new(Origin::of(uri)?);
        others.push(origin.clone());
        Some(origin)
    }
}

impl Origin {
    fn of(uri: &Uri) -> Option<Self> {
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
            state: Mutex::default(),
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

    /// An open connection, if one is idle: HTTP/2 first (it multiplexes), then the newest HTTP/1.
    pub fn checkout(&self) -> Option<Conn> {
        let mut state = lock(&self.state);
        if let Some(h2) = &state.h2 {
            if !h2.is_closed() {
                return Some(Conn::H2(h2.clone()));
            }
            state.h2 = None;
        }
        while let Some(idle) = state.idle.pop_back() {
            if !idle.tx.is_closed() && idle.since.elapsed() < IDLE_TIMEOUT {
                return Some(Conn::H1(idle.tx));
            }
        }
        None
    }

    /// Keeps a new HTTP/2 connection for every later request to this origin.
    pub fn share_h2(&self, tx: &http2::SendRequest<Body>) {
        lock(&self.state).h2 = Some(tx.clone());
    }

    /// Returns an HTTP/1 connection whose response has been read to the end.
    fn checkin(&self, tx: http1::SendRequest<Body>) {
        if tx.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut state = lock(&self.state);
        // The stack's bottom is the longest idle: close what a busy spell left behind.
        while state
            .idle
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.since) >= IDLE_TIMEOUT)
        {
            state.idle.pop_front();
        }
        state.idle.push_back(Idle { tx, since: now });
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
