//! The access log and the per-request counts: what `pipeline::handle` learnt of a request,
//! written when its answer ends.
//!
//! Metrics that describe the answer's head (`tollgate_requests_total`, the durations) are
//! recorded when the head leaves ([`record_head`]); the log line waits for the body, because only
//! then are the bytes sent known: the answer's body ([`Logged`], on the data listener and in
//! `GatewayService`) calls [`Access::done`] when it ends or is dropped (a caller that went away). The line holds
//! method, upstream, path (never the query), status, duration to the head, request id, client,
//! peer, attempts, the partner's last status, and body bytes in and out; caller-controlled values
//! go through [`printable`], so no value can end a line or forge a field.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::Instant;
use tollgate_metrics::UpstreamMetrics;

use super::caller_body::Watch;
use super::callers::Caller;
use crate::body::{Body, BoxError};
use crate::gateway::Runtime;

/// What the access log needs of a request, taken on arrival (the request itself moves on).
pub(super) struct Arrival {
    pub started: Instant,
    pub request_id: HeaderValue,
    pub method: Method,
    pub uri: http::Uri,
    pub peer: Option<SocketAddr>,
}

impl Arrival {
    pub(super) fn of<B>(req: &http::Request<B>, peer: Option<SocketAddr>) -> Self {
        Self {
            started: Instant::now(),
            request_id: crate::headers::request_id(req.headers()),
            method: req.method().clone(),
            uri: req.uri().clone(),
            peer,
        }
    }
}

/// What happened on the way to the partner, filled in by `forward`.
#[derive(Default)]
pub(super) struct Trace {
    /// Attempts sent (a 401 replay and each retry count).
    pub attempts: u32,
    /// The partner's status on the last attempt that got an answer.
    pub upstream_status: Option<u16>,
    /// Time held by the limits.
    pub queued: Duration,
    /// The caller's body as read.
    pub read: Read,
}

/// Body bytes read from the caller.
#[derive(Default)]
pub(super) enum Read {
    #[default]
    Nothing,
    Kept(u64),
    /// Streamed: counted as it goes.
    Streamed(Arc<Watch>),
}

impl Read {
    fn bytes(&self) -> u64 {
        match self {
            Read::Nothing => 0,
            Read::Kept(n) => *n,
            Read::Streamed(watch) => watch.received(),
        }
    }
}

/// An answer whose log line is written when its body ends.
pub(crate) struct Access {
    /// Keeps the names (upstream, client) the line refers to.
    rt: Arc<Runtime>,
    arrival: Arrival,
    /// `None`: no route matched.
    upstream: Option<usize>,
    /// Index of a configured client, when one was identified.
    client: Option<usize>,
    status: u16,
    /// `X-Tollgate-Error` of an answer Tollgate made (a static value: cloning is free).
    error: Option<HeaderValue>,
    to_head: Duration,
    trace: Trace,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Records the head's metrics and returns the pending line. `partner_time`: partner time and
/// deliberate waits, which are not Tollgate's overhead.
#[allow(clippy::too_many_arguments)]
pub(super) fn record_head(
    rt: Arc<Runtime>,
    arrival: Arrival,
    upstream: Option<usize>,
    caller: Caller<'_>,
    resp: &Response<Body>,
    partner_time: Duration,
    trace: Trace,
) -> Access {
    let to_head = arrival.started.elapsed();
    let status = resp.status().as_u16();
    metrics_of(&rt, upstream).request_done_by(caller.metrics, status, to_head, partner_time);
    let error = resp.headers().get(crate::respond::ERROR_HEADER).cloned();
    Access {
        rt,
        arrival,
        upstream,
        client: caller.client,
        status,
        error,
        to_head,
        trace,
    }
}

fn metrics_of(rt: &Runtime, upstream: Option<usize>) -> &UpstreamMetrics {
    match upstream {
        Some(i) => &rt.upstreams[i].metrics,
        None => &rt.unrouted,
    }
}

impl Access {
    /// The answer ended (or the caller went away) after `sent` body bytes: counts the bytes and
    /// writes the line.
    pub(crate) fn done(self, sent: u64) {
        let read = self.trace.read.bytes();
        metrics_of(&self.rt, self.upstream).traffic().bytes(read, sent);
        let upstream = self
            .upstream
            .map_or("-", |i| self.rt.upstreams[i].cfg.name.as_str());
        let client = self.rt.callers.as_ref().map(|c| c.name_of(self.client));
        let a = &self.arrival;
        tracing::info!(
            target: "tollgate::access",
            method = %a.method,
            upstream,
            path = %printable(a.uri.path()),
            status = self.status,
            duration_ms = self.to_head.as_secs_f64() * 1000.0,
            request_id = %printable(rid(&a.request_id)),
            client = client.map(tracing::field::display),
            peer = a.peer.map(tracing::field::display),
            attempts = self.trace.attempts,
            upstream_status = self.trace.upstream_status,
            bytes_in = read,
            bytes_out = sent,
            error = self.error.as_ref().and_then(|v| v.to_str().ok()),
            "request"
        );
    }
}

pub(super) fn rid(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("-")
}

/// A caller-supplied value as a log line may hold it: printable ASCII as it is, anything else
/// escaped (`\n`, `\u{7f}`), borrowed in the usual case.
pub(super) fn printable(s: &str) -> Cow<'_, str> {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        Cow::Borrowed(s)
    } else {
        Cow::Owned(s.escape_default().to_string())
    }
}

/// An answer's body that writes its access-log line, with the body bytes sent, when it ends or is
/// dropped (the caller went away). `until_end` is dropped as soon as the body ends: the data
/// listener's per-request bookkeeping; `()` where there is none (`GatewayService`).
#[derive(Debug)]
pub(crate) struct Logged<T = ()> {
    inner: Body,
    access: Option<Access>,
    until_end: Option<T>,
    /// Body bytes handed to the server so far.
    sent: u64,
}

impl<T> Logged<T> {
    /// `access`: `None` for answers no access line is written for (admin, webhook listeners).
    pub(crate) fn new(inner: Body, access: Option<Access>, until_end: Option<T>) -> Self {
        Self {
            inner,
            access,
            until_end,
            sent: 0,
        }
    }
}

impl<T> Drop for Logged<T> {
    fn drop(&mut self) {
        if let Some(access) = self.access.take() {
            access.done(self.sent);
        }
    }
}

impl<T: Unpin> HttpBody for Logged<T> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                this.sent += frame.data_ref().map_or(0, |data| data.len() as u64);
            }
            Poll::Ready(None | Some(Err(_))) => this.until_end = None,
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
    use super::*;

    #[test]
    fn printable_keeps_plain_values_and_escapes_the_rest() {
        assert!(matches!(printable("/p/x?y=\"z\""), Cow::Borrowed("/p/x?y=\"z\"")));
        assert_eq!(
            printable("/p\n{\"level\":\"ERROR\"}"),
            "/p\\n{\\\"level\\\":\\\"ERROR\\\"}"
        );
        assert_eq!(printable("a\rb\u{7f}é"), "a\\rb\\u{7f}\\u{e9}");
    }
}
