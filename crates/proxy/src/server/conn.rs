//! One connection from accept to close: HTTP/1.1 or h2c, the timeouts hyper does not keep, the
//! `Content-Length` + `Transfer-Encoding` refusal, and the count of what the parser refused.
//!
//! hyper starts no clock before a connection's first byte (telling HTTP/1 from h2c waits for
//! bytes without a limit), so a silent connection would be held forever. Here a connection must
//! deliver a complete request head within `header_read_timeout` of the accept, and of the first
//! byte of each later request; a keep-alive connection with nothing in flight is closed after
//! `idle_timeout` (HTTP/2: GOAWAY). What the connection is doing is read from [`Activity`],
//! which the socket wrapper ([`Tracked`]: bytes arrived), the service (a head arrived) and the
//! response body (`pipeline::Logged`: the answer is done) keep current. For HTTP/1 all three run inside
//! the connection's own task, so the driver re-reads it after every poll and needs no wake-up of
//! its own; one timer per connection is re-armed only when a deadline moves earlier.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{header, HeaderValue, Request, Response, Version};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tollgate_metrics::{ConnectionMetrics, Listener, Rejected};

use super::head_scan::HeadScan;
use crate::body::{Body, BoxError};
use crate::config::clients::ClientId;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::pipeline::callers::identities;
use crate::pipeline::{Access, Logged};
use crate::{admin, headers, pipeline, respond, webhook};

/// After an idle close began (GOAWAY, or keep-alive turned off), the connection gets this long
/// to finish before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The h2c connection preface starts so; an HTTP/1 request line never does.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0";

/// `server.header_read_timeout` and `server.idle_timeout`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub header_read: Duration,
    pub idle: Duration,
}

/// What every connection shares.
#[derive(Debug)]
pub(super) struct ConnCtx {
    pub gw: Arc<Gateway>,
    pub builder: auto::Builder<TokioExecutor>,
    pub timeouts: Timeouts,
    pub metrics: ConnectionMetrics,
}

/// Serves one accepted connection: over TLS when the listener has one (`server.tls` on the data
/// listener), else as it is.
pub(super) async fn serve(
    ctx: Arc<ConnCtx>,
    listener: Listener,
    stream: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<()>,
) {
    let _ = stream.set_nodelay(true);
    let tls = match (listener, &ctx.gw.tls) {
        (Listener::Data, Some(tls)) => tls.clone(),
        _ => return serve_http(ctx, listener, stream, peer, None, Instant::now(), stop).await,
    };
    // The handshake is part of the head: a caller that never finishes it is closed when a
    // silent plain-text one would be.
    let epoch = Instant::now();
    let accepted =
        tokio::time::timeout_at(epoch + ctx.timeouts.header_read, tls.acceptor().accept(stream)).await;
    let stream = match accepted {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            ctx.metrics.rejected(Rejected::TlsHandshake);
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            ctx.metrics.rejected(Rejected::TlsHandshake);
            tracing::debug!(%peer, "no TLS handshake within server.header_read_timeout");
            return;
        }
    };
    let cert: Option<Arc<[ClientId]>> = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| identities(leaf).into());
    serve_http(ctx, listener, stream, peer, cert, epoch, stop).await;
}

/// Serves HTTP on one connection until it closes, times out, or `stop` changes (then
/// gracefully: in-flight requests finish). `cert`: the names its verified client certificate offers;
/// `accepted`: when the head clock started.
#[allow(clippy::too_many_arguments)]
async fn serve_http<S>(
    ctx: Arc<ConnCtx>,
    listener: Listener,
    stream: S,
    peer: SocketAddr,
    cert: Option<Arc<[ClientId]>>,
    accepted: Instant,
    mut stop: watch::Receiver<()>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let _open = ctx.metrics.opened(listener);
    // From the accept, for the access log (`pipeline::handle`); an argument rather than a request
    // extension, which would allocate for every request.
    let peer = Some(peer);
    let activity = Arc::new(Activity::since(accepted));
    let io = TokioIo::new(Tracked::new(stream, activity.clone()));
    let svc = {
        let (ctx, activity) = (ctx.clone(), activity.clone());
        service_fn(move |req: Request<Incoming>| {
            let guard = activity.begin();
            let (ctx, cert) = (ctx.clone(), cert.clone());
            async move {
                let (resp, access) = if guard.ambiguous_length && has_transfer_encoding(&req) {
                    refuse_ambiguous(&ctx, listener, &req, peer)
                } else {
                    handle(&ctx, listener, req, peer, cert.as_deref()).await
                };
                Ok::<_, Infallible>(resp.map(|body| Logged::new(body, access, Some(guard))))
            }
        })
    };
    let conn = ctx.builder.serve_connection(io, svc);
    let mut conn = pin!(conn);
    let timeouts = ctx.timeouts;
    let mut armed = activity.epoch + timeouts.header_read;
    let mut timer = pin!(tokio::time::sleep_until(armed));
    // Borrowed, not moved: the receiver must live as long as the connection, since the drain
    // ends when the last receiver is dropped (a moved one went with the finished future at once).
    let mut stopped = pin!(async {
        let _ = stop.changed().await;
    });
    let mut stopping = false;
    let mut closing_by: Option<Instant> = None;

    let ended = std::future::poll_fn(|cx| {
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            return Poll::Ready(Ended::Closed(result));
        }
        if !stopping && stopped.as_mut().poll(cx).is_ready() {
            stopping = true;
            if closing_by.is_none() {
                conn.as_mut().graceful_shutdown();
                // Let the connection act on it (an idle one closes at once).
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
        }
        let due = match closing_by {
            // A request that arrived while the close was under way (an HTTP/2 stream opened
            // before the client saw GOAWAY) finishes first: its own timeouts bound it.
            Some(_) if activity.busy() => None,
            Some(by) => Some((by, Due::Drop)),
            None => activity.due(&timeouts),
        };
        let Some((at, what)) = due else {
            return Poll::Pending;
        };
        // Read only when a deadline exists: while a request is in flight there is none.
        let now = Instant::now();
        if at <= now {
            match what {
                Due::Drop => return Poll::Ready(Ended::Dropped),
                Due::Head => return Poll::Ready(Ended::HeadTimeout),
                Due::Idle if stopping => {}
                Due::Idle => {
                    conn.as_mut().graceful_shutdown();
                    closing_by = Some(now + CLOSE_GRACE);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
        }
        // A later deadline waits for the armed one to fire first: re-arming on every request
        // would touch the timer wheel twice per request for nothing.
        if at < armed || armed <= now {
            timer.as_mut().reset(at);
            armed = at;
        }
        // Registers the wake-up; firing for a deadline that has since moved only re-runs this.
        let _ = timer.as_mut().poll(cx);
        Poll::Pending
    })
    .await;

    match ended {
        Ended::Closed(Ok(())) | Ended::Dropped => {}
        Ended::Closed(Err(e)) => match refused_head(&*e) {
            Some((why, status)) => {
                ctx.metrics.rejected(why);
                if listener == Listener::Data {
                    pipeline::record_unparsed(&ctx.gw, status, why.label());
                } else {
                    tracing::debug!(
                        listener = listener.label(),
                        status,
                        reason = why.label(),
                        "request refused by the HTTP parser"
                    );
                }
            }
            None => {
                tracing::debug!(listener = listener.label(), error = %e, "connection ended with an error")
            }
        },
        Ended::HeadTimeout => {
            ctx.metrics.rejected(Rejected::HeaderTimeout);
            tracing::debug!(
                listener = listener.label(),
                "no complete request head within server.header_read_timeout; connection closed"
            );
        }
    }
}

/// How a connection's driver ended.
enum Ended {
    /// hyper finished the connection (an error: hyper's own, e.g. a refused head).
    Closed(Result<(), BoxError>),
    /// No complete request head in time; dropped.
    HeadTimeout,
    /// An idle close did not finish within `CLOSE_GRACE`; dropped.
    Dropped,
}

/// Which deadline is next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// A request head must be complete by then.
    Head,
    /// Nothing in flight since `idle_timeout`.
    Idle,
    /// The graceful idle close has had its time.
    Drop,
}

/// The listener's handler; the data listener's answers come with their access-log line.
async fn handle(
    ctx: &ConnCtx,
    listener: Listener,
    req: Request<Incoming>,
    peer: Option<SocketAddr>,
    cert: Option<&[ClientId]>,
) -> (Response<Body>, Option<Access>) {
    match listener {
        Listener::Data => {
            let (resp, access) = pipeline::handle(&ctx.gw, req, peer, cert).await;
            (resp, Some(access))
        }
        Listener::Admin => (admin::handle(&ctx.gw, req).await, None),
        Listener::Webhook => match &ctx.gw.webhooks {
            Some(hooks) => (webhook::handle(hooks, req).await, None),
            None => (respond::error_response(&GatewayError::NoRoute, None, "-"), None),
        },
    }
}

/// hyper hands over a request with both framing headers as chunked, `Content-Length` removed;
/// the raw head said both (see `head_scan.rs`).
fn has_transfer_encoding(req: &Request<Incoming>) -> bool {
    req.version() <= Version::HTTP_11 && req.headers().contains_key(header::TRANSFER_ENCODING)
}

/// 400 and `Connection: close` for a request whose head had both `Content-Length` and
/// `Transfer-Encoding`: its body's length is ambiguous, so it is neither read nor forwarded.
fn refuse_ambiguous(
    ctx: &ConnCtx,
    listener: Listener,
    req: &Request<Incoming>,
    peer: Option<SocketAddr>,
) -> (Response<Body>, Option<Access>) {
    ctx.metrics.rejected(Rejected::AmbiguousLength);
    let err = GatewayError::BadRequest(
        "Content-Length and Transfer-Encoding together are refused: the body's length is ambiguous",
    );
    let mut resp = match listener {
        Listener::Data => {
            let (resp, access) = pipeline::refuse(&ctx.gw, req, &err, peer);
            return (resp, Some(access));
        }
        Listener::Admin => respond::error_response(&err, None, "-"),
        Listener::Webhook => {
            let request_id = headers::request_id(req.headers());
            respond::webhook_error_response(&err, None, request_id.to_str().unwrap_or("-"))
        }
    };
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    (resp, None)
}

/// The status hyper answered for a request head it refused, and why, from the error that ended
/// the connection.
fn refused_head(e: &(dyn std::error::Error + 'static)) -> Option<(Rejected, u16)> {
    let e = e.downcast_ref::<hyper::Error>()?;
    if e.is_parse_too_large() {
        Some((Rejected::HeaderTooLarge, 431))
    } else if e.is_parse() {
        Some((Rejected::BadRequest, 400))
    } else {
        None
    }
}

/// `first_byte` when no byte has arrived since the connection went idle.
const NONE: u64 = u64::MAX;

/// What one connection is doing, kept current by its socket, its service and its answers.
/// Times are milliseconds after `epoch` (the accept).
#[derive(Debug)]
struct Activity {
    epoch: Instant,
    /// Requests whose answer is not done.
    in_flight: AtomicUsize,
    /// Request heads dispatched so far.
    requests: AtomicU64,
    /// When `in_flight` last fell to zero (0: the accept).
    idle_since: AtomicU64,
    /// The first byte read since then, or `NONE`.
    first_byte: AtomicU64,
    /// The head being read had both `Content-Length` and `Transfer-Encoding`.
    ambiguous_length: AtomicBool,
    /// The connection is h2c: no request-head clock (HTTP/2 pings arrive while idle).
    h2: AtomicBool,
}

impl Activity {
    #[cfg(test)]
    fn new() -> Self {
        Self::since(Instant::now())
    }

    /// `epoch`: the accept (before a TLS handshake, which spends the same head time).
    fn since(epoch: Instant) -> Self {
        Self {
            epoch,
            in_flight: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            idle_since: AtomicU64::new(0),
            first_byte: AtomicU64::new(NONE),
            ambiguous_length: AtomicBool::new(false),
            h2: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(NONE - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// A request head arrived.
    fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.requests.fetch_add(1, Ordering::AcqRel);
        self.first_byte.store(NONE, Ordering::Release);
        RequestGuard {
            ambiguous_length: self.ambiguous_length.swap(false, Ordering::AcqRel),
            activity: self.clone(),
        }
    }

    /// Whether a request is in flight.
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Bytes arrived while no request is in flight: the start of the next head.
    fn bytes_while_idle(&self) {
        if self.first_byte.load(Ordering::Acquire) == NONE {
            self.first_byte.store(self.now_ms(), Ordering::Release);
        }
    }

    /// The next deadline and what it is for; `None` while a request is in flight (its own
    /// timeouts bound it).
    fn due(&self, t: &Timeouts) -> Option<(Instant, Due)> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        let idle_since = self.at(self.idle_since.load(Ordering::Acquire));
        if self.requests.load(Ordering::Acquire) == 0 {
            return Some((idle_since + t.header_read, Due::Head));
        }
        let idle = (idle_since + t.idle, Due::Idle);
        match self.first_byte.load(Ordering::Acquire) {
            NONE => Some(idle),
            ms => {
                let head = (self.at(ms) + t.header_read, Due::Head);
                Some(if head.0 < idle.0 { head } else { idle })
            }
        }
    }
}

/// One request in flight, from its head until its answer is done.
#[derive(Debug)]
struct RequestGuard {
    activity: Arc<Activity>,
    /// Its head had both `Content-Length` and `Transfer-Encoding`.
    ambiguous_length: bool,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let a = &self.activity;
        a.idle_since.store(a.now_ms(), Ordering::Release);
        a.first_byte.store(NONE, Ordering::Release);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The accepted socket, telling [`Activity`] when bytes arrive between requests and scanning
/// HTTP/1 heads for both framing headers.
#[derive(Debug)]
struct Tracked<S> {
    stream: S,
    activity: Arc<Activity>,
    scan: HeadScan,
    /// Bytes of the h2c preface matched so far; `None` once the connection is known HTTP/1.
    preface: Option<usize>,
}

impl<S> Tracked<S> {
    fn new(stream: S, activity: Arc<Activity>) -> Self {
        Self {
            stream,
            activity,
            scan: HeadScan::new(0),
            preface: Some(0),
        }
    }

    fn on_read(&mut self, bytes: &[u8]) {
        if let Some(matched) = self.preface.filter(|m| *m < H2_PREFACE.len()) {
            let take = (H2_PREFACE.len() - matched).min(bytes.len());
            self.preface = (bytes[..take] == H2_PREFACE[matched..matched + take]).then_some(matched + take);
            if self.preface == Some(H2_PREFACE.len()) {
                self.activity.h2.store(true, Ordering::Release);
            }
        }
        let a = &self.activity;
        if a.h2.load(Ordering::Acquire) || a.in_flight.load(Ordering::Acquire) > 0 {
            return;
        }
        a.bytes_while_idle();
        let generation = a.requests.load(Ordering::Acquire);
        if self.scan.generation() != generation {
            self.scan = HeadScan::new(generation);
        }
        if self.scan.feed(bytes) {
            a.ambiguous_length.store(true, Ordering::Release);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.on_read(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        header_read: Duration::from_secs(10),
        idle: Duration::from_secs(60),
    };

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_what_the_connection_is_doing() {
        let a = Arc::new(Activity::new());
        let epoch = a.epoch;
        // Silent since the accept: the first head is due header_read after it, bytes or not.
        assert_eq!(a.due(&T), Some((epoch + T.header_read, Due::Head)));
        tokio::time::advance(Duration::from_secs(3)).await;
        a.bytes_while_idle();
        assert_eq!(a.due(&T), Some((epoch + T.header_read, Due::Head)));
        // A request in flight has no connection deadline.
        let guard = a.begin();
        assert_eq!(a.due(&T), None);
        tokio::time::advance(Duration::from_secs(100)).await;
        assert_eq!(a.due(&T), None);
        drop(guard);
        let done = epoch + Duration::from_secs(103);
        assert_eq!(a.due(&T), Some((done + T.idle, Due::Idle)));
        // The first byte of the next request starts its head clock, if that is sooner.
        tokio::time::advance(Duration::from_secs(5)).await;
        a.bytes_while_idle();
        assert_eq!(
            a.due(&T),
            Some((done + Duration::from_secs(5) + T.header_read, Due::Head))
        );
        tokio::time::advance(Duration::from_secs(50)).await;
        a.bytes_while_idle(); // later bytes of the same head do not move it
        assert_eq!(
            a.due(&T),
            Some((done + Duration::from_secs(5) + T.header_read, Due::Head))
        );
        let short_idle = Timeouts {
            header_read: T.header_read,
            idle: Duration::from_secs(2),
        };
        assert_eq!(
            a.due(&short_idle),
            Some((done + Duration::from_secs(2), Due::Idle))
        );
        // Two requests in flight (HTTP/2): idle only once both are done.
        let (one, two) = (a.begin(), a.begin());
        drop(one);
        assert_eq!(a.due(&T), None);
        drop(two);
        assert!(matches!(a.due(&T), Some((_, Due::Idle))));
    }

    #[tokio::test]
    async fn the_ambiguous_flag_belongs_to_the_next_request_only() {
        let a = Arc::new(Activity::new());
        a.ambiguous_length.store(true, Ordering::Release);
        let first = a.begin();
        assert!(first.ambiguous_length);
        drop(first);
        assert!(!a.begin().ambiguous_length);
    }

    #[test]
    fn refused_heads_are_told_from_other_connection_errors() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(refused_head(&io), None);
    }
}
