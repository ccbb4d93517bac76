//! The request path, composed in one place.
//!
//! ```text
//! caller ─▶ check form ─▶ route (prefix → upstream) ─▶ normalise path ─▶ body limit
//!        ─▶ header hygiene + static headers ─▶ token (cached; single flight when missing)
//!        ─▶ forward (pooled client, request_timeout) ─▶ on 401: new token, replay once
//!        ─▶ response headers ─▶ caller
//!                 every step records metrics; errors become JSON in `respond`
//! ```
//!
//! Bodies stream in both directions: nothing here collects one.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tollgate_metrics::{ErrorKind, UpstreamMetrics};

use crate::body::{self, Body};
use crate::error::GatewayError;
use crate::gateway::{Gateway, UpstreamRuntime};
use crate::headers::{self, REQUEST_ID, TOLLGATE_ENVIRONMENT, TOLLGATE_UPSTREAM};
use crate::respond::error_response;
use crate::route;

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
    let (resp, partner_time) = match forward(up, req, &rest, &request_id).await {
        Ok(ok) => ok,
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

/// Sends the request to the partner; returns its response and the time spent waiting for it.
///
/// With a token: bodies up to `replay_buffer` are kept, so that a 401 (the partner refused the
/// token) invalidates that token and replays the request once with a fresh one. A second 401, or a
/// larger (streamed) body, goes back to the caller as is.
async fn forward(
    up: &UpstreamRuntime,
    req: Request<Incoming>,
    rest: &str,
    request_id: &HeaderValue,
) -> Result<(Response<Body>, Duration), GatewayError> {
    let deadline = tokio::time::Instant::now() + up.cfg.request_timeout;
    let (parts, incoming) = req.into_parts();
    let max_body = up.cfg.max_body;
    let declared = content_length(&parts.headers);
    if declared.is_some_and(|len| len > max_body) {
        return Err(GatewayError::PayloadTooLarge { limit: max_body });
    }
    let mut headers = headers::upstream_request_headers(&parts.headers, &up.injected, request_id)?;
    let uri = up
        .uri(rest, parts.uri.query())
        .map_err(|_| GatewayError::BadRequest("the path or query cannot be sent upstream"))?;

    let (Some(creds), Some(token_header)) = (&up.credentials, &up.token_header) else {
        let body = body::stream(Limited::new(incoming, limit(max_body)));
        return attempt(up, parts.method, uri, headers, body, deadline).await;
    };
    let kept = if incoming.is_end_stream() {
        Some(Bytes::new())
    } else if declared.is_some_and(|len| len <= up.cfg.replay_buffer) {
        let collected = Limited::new(incoming, limit(up.cfg.replay_buffer))
            .collect()
            .await
            .map_err(|_| GatewayError::BadRequest("the request body could not be read"))?;
        Some(collected.to_bytes())
    } else {
        let token = creds.get(deadline).await.map_err(token_unavailable)?;
        headers.insert(token_header.clone(), token.header.clone());
        let body = body::stream(Limited::new(incoming, limit(max_body)));
        return attempt(up, parts.method, uri, headers, body, deadline).await;
    };
    let kept = kept.unwrap_or_default();
    let token = creds.get(deadline).await.map_err(token_unavailable)?;
    let mut first = headers.clone();
    first.insert(token_header.clone(), token.header.clone());
    let (resp, waited) = attempt(
        up,
        parts.method.clone(),
        uri.clone(),
        first,
        body::full(kept.clone()),
        deadline,
    )
    .await?;
    if resp.status() != StatusCode::UNAUTHORIZED {
        return Ok((resp, waited));
    }
    creds.invalidate(&token);
    let fresh = creds.get(deadline).await.map_err(token_unavailable)?;
    headers.insert(token_header.clone(), fresh.header.clone());
    let (resp, again) = attempt(up, parts.method, uri, headers, body::full(kept), deadline).await?;
    Ok((resp, waited + again))
}

/// One attempt at the partner, bounded by the request's deadline.
async fn attempt(
    up: &UpstreamRuntime,
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Body,
    deadline: tokio::time::Instant,
) -> Result<(Response<Body>, Duration), GatewayError> {
    let mut out = Request::new(body);
    *out.method_mut() = method;
    *out.uri_mut() = uri;
    *out.headers_mut() = headers;
    let sent = Instant::now();
    match tokio::time::timeout_at(deadline, up.client.send(out)).await {
        Err(_) => {
            up.metrics.upstream_error(ErrorKind::Timeout);
            Err(GatewayError::UpstreamTimeout(up.cfg.request_timeout))
        }
        Ok(Err(e)) if e.body_too_large => Err(GatewayError::PayloadTooLarge {
            limit: up.cfg.max_body,
        }),
        Ok(Err(e)) => {
            up.metrics.upstream_error(e.kind);
            tracing::debug!(upstream = %up.cfg.name, error = %e, "upstream attempt failed");
            Err(GatewayError::UpstreamUnreachable(e.to_string()))
        }
        Ok(Ok(resp)) => {
            let elapsed = sent.elapsed();
            up.metrics.upstream_response(resp.status().as_u16(), elapsed);
            let mut resp = resp.map(body::stream);
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

fn rid(v: &HeaderValue) -> &str {
    v.to_str().unwrap_or("-")
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}
