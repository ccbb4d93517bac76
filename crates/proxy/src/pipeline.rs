//! The request path, composed in one place.
//!
//! ```text
//! caller ─▶ check form ─▶ route (prefix → upstream) ─▶ normalise path
//!        ─▶ caller: key → client, ACL (401 / 403; `[clients]` only) ─▶ body limit
//!        ─▶ header hygiene + static headers ─▶ client's slot ─▶ concurrency slot (max_concurrency)
//!        ─┬▶ client's rate limit ─▶ pause + rate limit ─▶ token (cached; single flight when missing)
//!         │  ─▶ attempt (pooled client, request_timeout) ─▶ learn pauses from the answer
//!         └─ on 401: new token, replay once; on 502/503/504/429/connect: retry (policy, budget)
//!        ─▶ link rewriting (Location, Link, streamed JSON) ─▶ response headers ─▶ caller
//!                 every step records metrics; errors become JSON in `respond`
//! ```
//!
//! Bodies stream in both directions: only a body of at most `replay_buffer` is collected (see
//! `caller_body.rs`), before the concurrency slot is taken, so a slow uploader holds no slot. A
//! body the caller breaks or stalls is answered as the caller's error (400, 408, 413), never as
//! the partner's.
//!
//! Callers are identified and checked against their ACL (`callers/`) before anything is read,
//! fetched or spent; without `[clients]` that step is one `Option` check. A client's own limits
//! on the upstream come before the upstream's: its slot before the upstream's slot, its cell
//! before the upstream's cell on every attempt.

mod access;
mod caller_body;
pub(crate) mod callers;

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Version};
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use tollgate_metrics::{ErrorKind, RetryReason};

use self::access::{printable, record_head, rid, Arrival, Read, Trace};
pub(crate) use self::access::{Access, Logged};
use self::caller_body::{CallerBody, Watch};
use self::callers::{Caller, CallerLimit};
use crate::body::{self, Body, BoxError};
use crate::config::clients::ClientId;
use crate::config::Server;
use crate::error::{GatewayError, Side, UpstreamCause};
use crate::gateway::{Gateway, Runtime, UpstreamRuntime};
use crate::headers::{self, REQUEST_ID, TOLLGATE_ENVIRONMENT, TOLLGATE_UPSTREAM};
use crate::respond::error_response;
use crate::{retry, route};

/// Handles one caller request from arrival to response headers. `peer` is the caller's socket
/// address, for the access log; `cert` the names its connection's client certificate offers
/// (mTLS). The [`Access`] writes the log line once the answer's body has ended.
///
/// `B`, the caller's body: hyper's [`Incoming`] from Tollgate's own data listener (`server/`),
/// or the boxed [`Body`] an embedder's request arrives in ([`crate::GatewayService`]).
pub(crate) async fn handle<B>(
    gw: &Gateway,
    req: Request<B>,
    peer: Option<SocketAddr>,
    cert: Option<&[ClientId]>,
) -> (Response<Body>, Access)
where
    B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    // The config in force when the request arrived serves it to the end, whatever a reload does.
    let rt = gw.runtime();
    let arrival = Arrival::of(&req, peer);
    let request_id = &arrival.request_id;
    let h1 = req.version() <= Version::HTTP_11;
    // Whether the caller may still be sending a body that nothing has read.
    let mut body_unread = !req.body().is_end_stream();

    let (upstream, rest) = match route(&rt, &req) {
        Ok(found) => found,
        Err(err) => {
            let resp = finish(fail(&err, None, request_id), request_id, None);
            let resp = close_if_unread(resp, h1, body_unread);
            let caller = Caller::default();
            let trace = Trace::default();
            let access = record_head(rt.clone(), arrival, None, caller, &resp, Duration::ZERO, trace);
            return (resp, access);
        }
    };
    let up = &rt.upstreams[upstream];
    let _inflight = up.metrics.inflight();
    let rest = rest.into_owned();
    let caller = match &rt.callers {
        None => Caller::default(),
        Some(callers) => match callers.check(req.headers(), cert, upstream, &arrival.method, &rest) {
            Ok(caller) => caller,
            Err((caller, err)) => {
                let resp = fail(&err, Some(&up.cfg.name), request_id);
                let resp = finish(close_if_unread(resp, h1, body_unread), request_id, Some(up));
                let trace = Trace::default();
                let access = record_head(
                    rt.clone(),
                    arrival,
                    Some(upstream),
                    caller,
                    &resp,
                    Duration::ZERO,
                    trace,
                );
                return (resp, access);
            }
        },
    };
    let host = up.links.as_ref().and_then(|_| caller_host(&req));
    let server = &rt.config.server;
    let started = arrival.started;
    let mut trace = Trace::default();
    let sent = forward(
        up,
        server,
        req,
        &rest,
        request_id,
        started,
        &mut body_unread,
        caller.limits,
        &mut trace,
    )
    .await;
    up.metrics.traffic().queued(trace.queued.as_secs_f64());
    let (resp, partner_time) = match sent {
        Ok((resp, waited)) => match &up.links {
            Some(links) => (
                links.rewrite(host.as_ref(), &up.metrics, resp, body::stream),
                waited,
            ),
            None => (resp, waited),
        },
        Err(err) => (
            close_if_unread(fail(&err, Some(&up.cfg.name), request_id), h1, body_unread),
            Duration::ZERO,
        ),
    };
    let resp = finish(resp, request_id, Some(up));
    let access = record_head(
        rt.clone(),
        arrival,
        Some(upstream),
        caller,
        &resp,
        partner_time,
        trace,
    );
    (resp, access)
}

/// Refuses what an egress gateway must never do, then picks the upstream by path alone.
fn route<'r, B>(rt: &Runtime, req: &'r Request<B>) -> Result<(usize, Cow<'r, str>), GatewayError> {
    if req.method() == Method::CONNECT {
        return Err(GatewayError::BadRequest(
            "CONNECT is refused: Tollgate routes by path prefix and is not an open proxy",
        ));
    }
    // HTTP/2 always carries scheme and authority; in HTTP/1 they mean absolute-form.
    if req.version() <= Version::HTTP_11 && req.uri().authority().is_some() {
        return Err(GatewayError::BadRequest(
            "absolute-form request targets are refused: Tollgate is not an open proxy",
        ));
    }
    if req.headers().get_all(header::HOST).iter().nth(1).is_some() {
        return Err(GatewayError::BadRequest("more than one Host header"));
    }
    let (idx, rest) = rt.routes.find(req.uri().path()).ok_or(GatewayError::NoRoute)?;
    let rest = route::normalise(rest).map_err(|e| GatewayError::BadRequest(e.message()))?;
    Ok((idx, rest))
}

/// Sends the request to the partner; returns its response and the time spent waiting on purpose,
/// on partners or on the caller's upload (queueing, backoff, token calls, partner time, reading a
/// kept body), which is not Tollgate's overhead.
///
/// Bodies up to `replay_buffer` are read first, within `request_timeout` and the body idle timeout,
/// and kept so the request can be sent again: once after a 401 with a fresh token (not a retry),
/// and on the retry policy's say, within the retry budget and never past `request_timeout`.
/// Larger bodies stream once. Then the client's slot (`limits`, its share of this upstream) and
/// a concurrency slot are held for the rest of the request. Each attempt passes the client's rate
/// limit, the pause and the upstream's rate limit, then carries the current token. `body_unread`
/// is cleared once the caller's body has been read whole.
#[allow(clippy::too_many_arguments)]
async fn forward<B>(
    up: &UpstreamRuntime,
    server: &Server,
    req: Request<B>,
    rest: &str,
    request_id: &HeaderValue,
    started: Instant,
    body_unread: &mut bool,
    caller_limits: Option<&CallerLimit>,
    trace: &mut Trace,
) -> Result<(Response<Body>, Duration), GatewayError>
where
    B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let deadline = started + up.cfg.request_timeout;
    let (parts, incoming) = req.into_parts();
    let max_body = up.cfg.max_body;
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|len| len > max_body) {
        return Err(GatewayError::PayloadTooLarge { limit: max_body });
    }
    // The first attempt takes these; a later attempt (kept body only) builds them again, which is
    // cheaper overall than copying them for every request in case of a retry.
    let underscores = server.underscore_headers;
    let mut headers = Some(headers::upstream_request_headers_with(
        &parts.headers,
        &up.injected,
        request_id,
        underscores,
    )?);
    let upstream_uri = || {
        up.uri(rest, parts.uri.query())
            .map_err(|_| GatewayError::BadRequest("the path or query cannot be sent upstream"))
    };
    // Moved into the first attempt and built again for a later one, as the headers are: a clone
    // of a fresh URI allocates (its path's first clone shares the bytes), which every request paid.
    let mut uri = Some(upstream_uri()?);
    // The caller's upload is read before a slot is taken: a slow or stalled uploader then holds
    // only its own connection, never a share of the partner's max_concurrency.
    let reading = Instant::now();
    let limits = BodyLimits {
        keep: up.cfg.replay_buffer,
        max_body,
        idle: server.body_idle_timeout,
        deadline,
        request_timeout: up.cfg.request_timeout,
    };
    let mut body = Outgoing::new(incoming, declared, &limits).await?;
    if body.replayable() {
        *body_unread = false;
    }
    trace.read = body.read();
    let queued = Instant::now();
    let mut waited = queued - reading;
    // The client's share first, its slot and its first cell: a client over its share waits (or is
    // refused) without holding one of the partner's slots or spending any of its budget. The time
    // it waits is in `entered - queued` below. With `[shared]` the client's cell is judged with the
    // upstream's, in one script call per attempt (`fleet_share`).
    let _client_slot = match caller_limits {
        Some(limits) => {
            let slot = limits.enter(deadline).await?;
            limits.admit(deadline).await?;
            Some(slot)
        }
        None => None,
    };
    let fleet_share = caller_limits.and_then(CallerLimit::fleet);
    let mut slot = Some(up.admission.enter(deadline).await?);
    let entered = Instant::now();
    waited += entered - queued;
    trace.queued += entered - queued;
    let policy = retry::Request::new(&parts.method, &parts.headers, body.replayable());
    // Only a request whose body could be read earns retries for others.
    up.budget.deposit(entered);

    let mut attempt_no = 1;
    let mut replayed = false;
    // The first attempt's local client cell was taken above (the fleet's is taken with the
    // upstream's); a 401 replay is Tollgate's own doing and is not charged to the client either.
    let mut client_cell_due = fleet_share.is_some();
    // The previous attempt's result, answered if the limit refuses the next attempt.
    let mut last: Option<Result<(Response<Body>, Duration), Failure>> = None;
    loop {
        // A retry's client cell before the upstream's, so a client over its share spends none of
        // the partner's budget.
        if let (true, Some(limits)) = (client_cell_due, caller_limits) {
            match limits.admit(deadline).await {
                Ok(wait) => {
                    waited += wait;
                    trace.queued += wait;
                }
                Err(refused) => return last.map_or(Err(refused), |l| l.map_err(|f| f.error)),
            }
        }
        let share = fleet_share.filter(|_| client_cell_due);
        client_cell_due = true;
        let admitted = up.admission.admit(deadline, share.as_ref()).await;
        match (admitted, caller_limits) {
            (Ok(wait), _) => {
                waited += wait;
                trace.queued += wait;
            }
            (Err(GatewayError::CallerRateLimited { retry_after }), Some(limits)) if share.is_some() => {
                // The client's fleet-wide share is spent: wait for the client's cell without
                // holding one of the partner's slots, then take a slot and ask the upstream
                // alone (the client's cell is taken). Boxed: only a request that waits here
                // carries the waiting state.
                drop(slot.take());
                match Box::pin(limits.wait_for_fleet(retry_after, deadline)).await {
                    Ok(wait) => {
                        waited += wait;
                        trace.queued += wait;
                    }
                    Err(refused) => return last.map_or(Err(refused), |l| l.map_err(|f| f.error)),
                }
                slot = Some(up.admission.enter(deadline).await?);
                client_cell_due = false;
                continue;
            }
            (Err(refused), _) => return last.map_or(Err(refused), |l| l.map_err(|f| f.error)),
        }
        drop(last.take());
        let mut attempt_headers = match headers.take() {
            Some(first) => first,
            None => {
                headers::upstream_request_headers_with(&parts.headers, &up.injected, request_id, underscores)?
            }
        };
        let token = match (&up.credentials, &up.token_header) {
            (Some(creds), Some(name)) => {
                let (token, wait) = creds
                    .get(deadline)
                    .await
                    .map_err(GatewayError::TokenUnavailable)?;
                waited += wait;
                attempt_headers.insert(name.clone(), token.header.clone());
                Some((creds, token))
            }
            _ => None,
        };
        trace.attempts += 1;
        let sent = attempt(
            up,
            parts.method.clone(),
            match uri.take() {
                Some(first) => first,
                None => upstream_uri()?,
            },
            attempt_headers,
            body.next(),
            body.caller(),
            deadline,
        )
        .await;
        // Only the partner's failures may be retried: one on the caller's side (a body it broke,
        // stalled or grew past max_body mid-stream) is answered as it is. Which of the partner's
        // are retried is the policy's finer say below (what was sent, idempotency, the budget).
        if sent.as_ref().is_err_and(|f| f.error.side() != Side::Upstream) {
            return sent.map_err(|f| f.error);
        }
        let outcome = match &sent {
            Ok((resp, elapsed)) => {
                waited += *elapsed;
                trace.upstream_status = Some(resp.status().as_u16());
                retry::Outcome::Status {
                    status: resp.status().as_u16(),
                    retry_after: up.admission.observe(resp.status().as_u16(), resp.headers()).await,
                }
            }
            Err(Failure {
                before_send: true, ..
            }) => retry::Outcome::ConnectFailed,
            Err(Failure {
                error: GatewayError::UpstreamTimeout(_),
                ..
            }) => return sent.map_err(|f| f.error),
            Err(_) => retry::Outcome::Failed,
        };
        if let (retry::Outcome::Status { status: 401, .. }, Some((creds, token))) = (outcome, &token) {
            // The partner refused this token: drop it (only if it is still the current one) whatever
            // the body, so the next request fetches a new one; replay only a body that was kept.
            creds.invalidate(token);
            if body.replayable() && !replayed {
                replayed = true;
                client_cell_due = false;
                last = Some(sent);
                continue;
            }
        }
        let time_left = || deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(reason) = retry::should_retry(policy, outcome, attempt_no, &up.cfg.retry, time_left) else {
            return sent.map_err(|f| f.error);
        };
        let time_left = time_left();
        let retry_after = match outcome {
            retry::Outcome::Status { retry_after, .. } => retry_after,
            _ => None,
        };
        let wait = retry::backoff(&up.cfg.retry, attempt_no, retry_after, up.jitter.draw());
        if wait >= time_left {
            return sent.map_err(|f| f.error);
        }
        if !up.budget.withdraw(Instant::now()) {
            up.metrics.retry(RetryReason::BudgetExhausted);
            return sent.map_err(|f| f.error);
        }
        up.metrics.retry(reason);
        tracing::debug!(upstream = %up.cfg.name, reason = reason.label(), attempt = attempt_no, wait_ms = wait.as_millis() as u64, "retrying");
        last = Some(sent);
        Box::pin(tokio::time::sleep(wait)).await;
        waited += wait;
        attempt_no += 1;
    }
}

/// How a caller's body may be read.
struct BodyLimits {
    /// `replay_buffer`: a declared body up to this is read whole and kept.
    keep: u64,
    max_body: u64,
    /// `server.body_idle_timeout`: the longest the caller may go without sending a byte.
    idle: Duration,
    /// `request_timeout` after the request arrived.
    deadline: tokio::time::Instant,
    request_timeout: Duration,
}

/// The request body as sent upstream: kept (small, can be sent again) or streamed once, with the
/// [`Watch`] that tells whether the caller broke it.
enum Outgoing {
    Kept(Bytes),
    Stream(Option<Body>, std::sync::Arc<Watch>),
}

impl Outgoing {
    async fn new<B>(incoming: B, declared: Option<u64>, limits: &BodyLimits) -> Result<Self, GatewayError>
    where
        B: HttpBody<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        if incoming.is_end_stream() {
            return Ok(Outgoing::Kept(Bytes::new()));
        }
        if let Some(len) = declared.filter(|len| *len <= limits.keep) {
            // Boxed: the read would otherwise grow every request's future, bodiless ones too.
            let kept = Box::pin(caller_body::collect(
                incoming,
                len,
                limits.idle,
                limits.deadline,
                limits.request_timeout,
            ))
            .await?;
            return Ok(Outgoing::Kept(kept));
        }
        let (stream, watch) = CallerBody::new(incoming, limits.max_body, limits.idle);
        Ok(Outgoing::Stream(Some(body::stream(stream)), watch))
    }

    fn replayable(&self) -> bool {
        matches!(self, Outgoing::Kept(_))
    }

    /// The body for the next attempt. A streamed body goes once; the retry policy never asks twice.
    fn next(&mut self) -> Body {
        match self {
            Outgoing::Kept(bytes) => body::full(bytes.clone()),
            Outgoing::Stream(stream, _) => stream.take().unwrap_or_else(|| body::full(Bytes::new())),
        }
    }

    /// How the access log counts the caller's body bytes.
    fn read(&self) -> Read {
        match self {
            Outgoing::Kept(bytes) if bytes.is_empty() => Read::Nothing,
            Outgoing::Kept(bytes) => Read::Kept(bytes.len() as u64),
            Outgoing::Stream(_, watch) => Read::Streamed(watch.clone()),
        }
    }

    /// What the caller's side of a streamed body did; `None` for a kept body (already read).
    fn caller(&self) -> Option<&Watch> {
        match self {
            Outgoing::Kept(_) => None,
            Outgoing::Stream(_, watch) => Some(watch),
        }
    }
}

/// A failed attempt, and whether no byte of it can have reached the partner.
#[derive(Debug)]
struct Failure {
    error: GatewayError,
    before_send: bool,
}

/// One attempt at the partner, bounded by the request's deadline. `caller` watches a streamed
/// body: when the attempt failed because of the caller's side, the error is the caller's and no
/// partner error is counted (dropping the send aborts the upstream request).
async fn attempt(
    up: &UpstreamRuntime,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
    caller: Option<&Watch>,
    deadline: tokio::time::Instant,
) -> Result<(Response<Body>, Duration), Failure> {
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    let sent = Instant::now();
    match tokio::time::timeout_at(deadline, up.client.send(out)).await {
        Err(_) if caller.is_some_and(Watch::waiting_on_caller) => Err(Failure {
            error: GatewayError::RequestTimeout(up.cfg.request_timeout),
            before_send: false,
        }),
        Err(_) => {
            up.metrics.upstream_error(ErrorKind::Timeout);
            Err(Failure {
                error: GatewayError::UpstreamTimeout(up.cfg.request_timeout),
                before_send: false,
            })
        }
        Ok(Err(e)) => {
            if let Some(error) = caller.and_then(Watch::fault) {
                tracing::debug!(upstream = %up.cfg.name, error = %e, "the caller's body failed the attempt");
                return Err(Failure {
                    error,
                    before_send: false,
                });
            }
            if e.body_too_large {
                return Err(Failure {
                    error: GatewayError::PayloadTooLarge {
                        limit: up.cfg.max_body,
                    },
                    before_send: false,
                });
            }
            up.metrics.upstream_error(e.kind);
            tracing::debug!(upstream = %up.cfg.name, error = %e, "upstream attempt failed");
            let before_send = e.before_send;
            let error = if e.invalid_response {
                GatewayError::UpstreamInvalidResponse(UpstreamCause::new(e))
            } else {
                GatewayError::UpstreamUnreachable(UpstreamCause::new(e))
            };
            Err(Failure { before_send, error })
        }
        Ok(Ok(resp)) => {
            let elapsed = sent.elapsed();
            up.metrics.upstream_response(resp.status().as_u16(), elapsed);
            let mut resp = resp;
            headers::clean_response_headers(resp.headers_mut());
            Ok((resp, elapsed))
        }
    }
}

/// The answer to a request Tollgate failed: logged once ([`log_failure`]), then rendered by
/// `respond`, the one place errors become responses.
fn fail(err: &GatewayError, upstream: Option<&str>, request_id: &HeaderValue) -> Response<Body> {
    log_failure(err, upstream, request_id);
    error_response(err, upstream, rid(request_id))
}

/// One line per failed request with the message the caller read, as loud as who caused it
/// ([`Side`]): the caller's errors and Tollgate's own refusals (its limits) at debug (the access
/// line already names the code, and a burst of refusals must not flood the default level), the
/// partner's failures at warn, since they are what an operator may have to act on. The access
/// line (`tollgate::access`, info) is written for every request whatever this says; each
/// attempt's own failure is at debug.
fn log_failure(err: &GatewayError, upstream: Option<&str>, request_id: &HeaderValue) {
    let request_id = printable(rid(request_id));
    let code = err.code();
    match err.side() {
        // The caller's mistake, or a limit working: the access line already names the code, and a
        // burst of refusals must not double the log at the default level.
        Side::Downstream | Side::Gateway => {
            tracing::debug!(upstream, %request_id, code, error = %err, "request failed")
        }
        Side::Upstream => tracing::warn!(upstream, %request_id, code, error = %err, "request failed"),
    }
}

/// Headers every response carries, the gateway's own errors included.
fn finish(
    mut resp: Response<Body>,
    request_id: &HeaderValue,
    up: Option<&UpstreamRuntime>,
) -> Response<Body> {
    *resp.version_mut() = Version::HTTP_11;
    let h = resp.headers_mut();
    h.insert(REQUEST_ID, request_id.clone());
    if let Some(up) = up {
        h.insert(TOLLGATE_ENVIRONMENT, up.environment_header.clone());
        h.insert(TOLLGATE_UPSTREAM, up.name_header.clone());
    }
    resp
}

/// Answers a request the connection layer refused before routing (`Content-Length` with
/// `Transfer-Encoding`): the error JSON with `Connection: close` (the body's framing cannot be
/// trusted, so it is not read), counted and logged like any unrouted request.
pub(crate) fn refuse(
    gw: &Gateway,
    req: &Request<Incoming>,
    err: &GatewayError,
    peer: Option<SocketAddr>,
) -> (Response<Body>, Access) {
    let rt = gw.runtime();
    let arrival = Arrival::of(req, peer);
    let resp = finish(fail(err, None, &arrival.request_id), &arrival.request_id, None);
    let resp = close_if_unread(resp, true, true);
    let caller = Caller::default();
    let access = record_head(
        rt.clone(),
        arrival,
        None,
        caller,
        &resp,
        Duration::ZERO,
        Trace::default(),
    );
    (resp, access)
}

/// Counts a request head the HTTP parser refused (hyper answered `status` itself, before any
/// request existed) under `upstream="none"`, and logs it at debug: there is no method, path or
/// request id to log.
pub(crate) fn record_unparsed(gw: &Gateway, status: u16, reason: &'static str) {
    let rt = gw.runtime();
    rt.unrouted.request_done(status, Duration::ZERO, Duration::ZERO);
    tracing::debug!(target: "tollgate::access", status, reason, "request refused by the HTTP parser");
}

/// `Connection: close` on an answer given while the caller's body may still be unread: hyper
/// closes such a connection after the answer, and a client told so does not send its next
/// request into a closing socket. HTTP/2 resets the stream instead, and forbids the header.
fn close_if_unread(mut resp: Response<Body>, h1: bool, body_unread: bool) -> Response<Body> {
    if h1 && body_unread {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The authority the caller used: `Host` (HTTP/1) or `:authority` (HTTP/2).
fn caller_host<B>(req: &Request<B>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_is_said_only_on_http1_with_an_unread_body() {
        let says_close = |h1, unread| {
            close_if_unread(Response::new(body::full(Bytes::new())), h1, unread)
                .headers()
                .get(header::CONNECTION)
                .is_some_and(|v| v == "close")
        };
        assert!(says_close(true, true));
        assert!(!says_close(true, false));
        assert!(!says_close(false, true));
    }
}
