//! The request path, composed in one place.
//!
//! ```text
//! caller ─▶ check form ─▶ route (prefix → upstream) ─▶ normalise path ─▶ body limit
//!        ─▶ header hygiene + static headers ─▶ concurrency slot (max_concurrency)
//!        ─┬▶ pause + rate limit ─▶ token (cached; single flight when missing)
//!         │  ─▶ attempt (pooled client, request_timeout) ─▶ learn pauses from the answer
//!         └─ on 401: new token, replay once; on 502/503/504/429/connect: retry (policy, budget)
//!        ─▶ link rewriting (Location, Link, streamed JSON) ─▶ response headers ─▶ caller
//!                 every step records metrics; errors become JSON in `respond`
//! ```
//!
//! Bodies stream in both directions: nothing here collects one.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tollgate_metrics::{ErrorKind, RetryReason, UpstreamMetrics};

use crate::body::{self, Body};
use crate::error::GatewayError;
use crate::gateway::{Gateway, UpstreamRuntime};
use crate::headers::{self, REQUEST_ID, TOLLGATE_ENVIRONMENT, TOLLGATE_UPSTREAM};
use crate::respond::error_response;
use crate::{retry, route};

/// Handles one caller request from arrival to response headers.
pub async fn handle(gw: &Gateway, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    let method = req.method().clone();
    let uri = req.uri().clone();

    let (upstream, rest) = match route(gw, &req) {
        Ok(found) => found,
        Err(err) => {
            let resp = finish(error_response(&err, None, rid(&request_id)), &request_id, None);
            record(
                &gw.unrouted,
                "-",
                &method,
                &uri,
                &resp,
                started,
                Duration::ZERO,
                &request_id,
            );
            return resp;
        }
    };
    let up = &gw.upstreams[upstream];
    let _inflight = up.metrics.inflight();
    let rest = rest.into_owned();
    let host = up.links.as_ref().and_then(|_| caller_host(&req));
    let (resp, partner_time) = match forward(up, req, &rest, &request_id, started).await {
        Ok((resp, waited)) => match &up.links {
            Some(links) => (links.rewrite(host.as_ref(), &up.metrics, resp), waited),
            None => (resp, waited),
        },
        Err(err) => (
            error_response(&err, Some(&up.cfg.name), rid(&request_id)),
            Duration::ZERO,
        ),
    };
    let resp = finish(resp, &request_id, Some(up));
    record(
        &up.metrics,
        &up.cfg.name,
        &method,
        &uri,
        &resp,
        started,
        partner_time,
        &request_id,
    );
    resp
}

/// Refuses what an egress gateway must never do, then picks the upstream by path alone.
fn route<'r>(gw: &Gateway, req: &'r Request<Incoming>) -> Result<(usize, Cow<'r, str>), GatewayError> {
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
    let (idx, rest) = gw.routes.find(req.uri().path()).ok_or(GatewayError::NoRoute)?;
    let rest = route::normalise(rest).map_err(|e| GatewayError::BadRequest(e.message()))?;
    Ok((idx, rest))
}

/// Sends the request to the partner; returns its response and the time spent waiting on purpose or
/// on partners (queueing, backoff, token calls, partner time), which is not Tollgate's overhead.
///
/// Holds a concurrency slot for the whole request. Each attempt passes the pause and the rate
/// limit, then carries the current token. Bodies up to `replay_buffer` are kept so the request can
/// be sent again: once after a 401 with a fresh token (not a retry), and on the retry policy's say,
/// within the retry budget and never past `request_timeout`. Larger bodies stream once.
async fn forward(
    up: &UpstreamRuntime,
    req: Request<Incoming>,
    rest: &str,
    request_id: &HeaderValue,
    started: Instant,
) -> Result<(Response<Body>, Duration), GatewayError> {
    let deadline = tokio::time::Instant::from_std(started) + up.cfg.request_timeout;
    let (parts, incoming) = req.into_parts();
    let max_body = up.cfg.max_body;
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|len| len > max_body) {
        return Err(GatewayError::PayloadTooLarge { limit: max_body });
    }
    // The first attempt takes these; a later attempt (kept body only) builds them again, which is
    // cheaper overall than copying them for every request in case of a retry.
    let mut headers = Some(headers::upstream_request_headers(
        &parts.headers,
        &up.injected,
        request_id,
    )?);
    let uri = up
        .uri(rest, parts.uri.query())
        .map_err(|_| GatewayError::BadRequest("the path or query cannot be sent upstream"))?;
    let mut waited = Duration::ZERO;
    let queued = Instant::now();
    let _slot = up.admission.enter(deadline).await?;
    let entered = Instant::now();
    waited += entered - queued;
    let mut body = Outgoing::new(incoming, declared, up.cfg.replay_buffer, max_body).await?;
    let policy = retry::Request::new(&parts.method, &parts.headers, body.replayable());
    // Only a request whose body could be read earns retries for others.
    up.budget.deposit(entered);

    let mut attempt_no = 1;
    let mut replayed = false;
    // The previous attempt's result, answered if the limit refuses the next attempt.
    let mut last: Option<Result<(Response<Body>, Duration), Failure>> = None;
    loop {
        match up.admission.admit(deadline).await {
            Ok(wait) => waited += wait,
            Err(refused) => return last.map_or(Err(refused), |l| l.map_err(|f| f.error)),
        }
        drop(last.take());
        let mut attempt_headers = match headers.take() {
            Some(first) => first,
            None => headers::upstream_request_headers(&parts.headers, &up.injected, request_id)?,
        };
        let token = match (&up.credentials, &up.token_header) {
            (Some(creds), Some(name)) => {
                let (token, wait) = creds.get(deadline).await.map_err(token_unavailable)?;
                waited += wait;
                attempt_headers.insert(name.clone(), token.header.clone());
                Some((creds, token))
            }
            _ => None,
        };
        let sent = attempt(
            up,
            parts.method.clone(),
            uri.clone(),
            attempt_headers,
            body.next(),
            deadline,
        )
        .await;
        let outcome = match &sent {
            Ok((resp, elapsed)) => {
                waited += *elapsed;
                up.admission.observe(resp.status().as_u16(), resp.headers());
                retry::Outcome::Status {
                    status: resp.status().as_u16(),
                    retry_after: crate::retry_after::parse(resp.headers(), std::time::SystemTime::now),
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
        let wait = retry::backoff(&up.cfg.retry, attempt_no, retry_after, rand::random::<f64>());
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

/// The request body as sent upstream: kept (small, can be sent again) or streamed once.
enum Outgoing {
    Kept(Bytes),
    Stream(Option<Body>),
}

impl Outgoing {
    async fn new(
        incoming: Incoming,
        declared: Option<u64>,
        keep: u64,
        max_body: u64,
    ) -> Result<Self, GatewayError> {
        if incoming.is_end_stream() {
            return Ok(Outgoing::Kept(Bytes::new()));
        }
        if declared.is_some_and(|len| len <= keep) {
            let collected = Box::pin(Limited::new(incoming, limit(keep)).collect())
                .await
                .map_err(|_| GatewayError::BadRequest("the request body could not be read"))?;
            return Ok(Outgoing::Kept(collected.to_bytes()));
        }
        Ok(Outgoing::Stream(Some(body::stream(Limited::new(
            incoming,
            limit(max_body),
        )))))
    }

    fn replayable(&self) -> bool {
        matches!(self, Outgoing::Kept(_))
    }

    /// The body for the next attempt. A streamed body goes once; the retry policy never asks twice.
    fn next(&mut self) -> Body {
        match self {
            Outgoing::Kept(bytes) => body::full(bytes.clone()),
            Outgoing::Stream(stream) => stream.take().unwrap_or_else(|| body::full(Bytes::new())),
        }
    }
}

/// A failed attempt, and whether no byte of it can have reached the partner.
#[derive(Debug)]
struct Failure {
    error: GatewayError,
    before_send: bool,
}

/// One attempt at the partner, bounded by the request's deadline.
async fn attempt(
    up: &UpstreamRuntime,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<(Response<Body>, Duration), Failure> {
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    let sent = Instant::now();
    match tokio::time::timeout_at(deadline, up.client.send(out)).await {
        Err(_) => {
            up.metrics.upstream_error(ErrorKind::Timeout);
            Err(Failure {
                error: GatewayError::UpstreamTimeout(up.cfg.request_timeout),
                before_send: false,
            })
        }
        Ok(Err(e)) if e.body_too_large => Err(Failure {
            error: GatewayError::PayloadTooLarge {
                limit: up.cfg.max_body,
            },
            before_send: false,
        }),
        Ok(Err(e)) => {
            up.metrics.upstream_error(e.kind);
            tracing::debug!(upstream = %up.cfg.name, error = %e, "upstream attempt failed");
            Err(Failure {
                before_send: e.before_send,
                error: GatewayError::UpstreamUnreachable(e.to_string()),
            })
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

fn token_unavailable(e: crate::credentials::TokenError) -> GatewayError {
    GatewayError::TokenUnavailable {
        retry_after: e.retry_after,
        message: e.message,
    }
}

fn limit(bytes: u64) -> usize {
    usize::try_from(bytes).unwrap_or(usize::MAX)
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

/// Metrics and the access-log line. Caller-controlled values are logged with `?` so control
/// characters are escaped; the query is never logged (it may hold personal data).
#[allow(clippy::too_many_arguments)]
fn record(
    metrics: &UpstreamMetrics,
    upstream: &str,
    method: &Method,
    uri: &http::Uri,
    resp: &Response<Body>,
    started: Instant,
    partner_time: Duration,
    request_id: &HeaderValue,
) {
    let total = started.elapsed();
    let status = resp.status().as_u16();
    metrics.request_done(status, total, partner_time);
    tracing::info!(
        target: "tollgate::access",
        method = %method,
        upstream,
        path = ?uri.path(),
        status,
        duration_ms = total.as_secs_f64() * 1000.0,
        request_id = ?rid(request_id),
        error = resp.headers().get(crate::respond::ERROR_HEADER).and_then(|v| v.to_str().ok()),
        "request"
    );
}

/// The authority the caller used: `Host` (HTTP/1) or `:authority` (HTTP/2).
fn caller_host(req: &Request<Incoming>) -> Option<HeaderValue> {
    req.headers().get(header::HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    })
}

fn rid(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("-")
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
