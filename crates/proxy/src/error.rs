//! Every error the gateway itself answers with: its code, status and which side caused it.
//!
//! `respond::error_response` is the only place these become responses; the words callers read
//! are this file's `Display`, written once here whatever the cause carries.

use std::time::Duration;

use http::StatusCode;
use tollgate_metrics::ErrorKind;

use crate::credentials::TokenError;
use crate::forward::ForwardError;

/// Who caused an error, as Pingora's error source tells them apart. It decides how loud a failed
/// request is logged (`pipeline::log_failure`: the partner's → warn; the caller's and Tollgate's
/// own refusals → debug, the access line names their code) and bounds retrying: only the partner's failures are ever retried.
/// *Which* of those are retried is `retry.rs`'s finer policy (whether anything was sent, whether the
/// request is idempotent, the budget), which knows what a side cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The caller sent something we refuse.
    Downstream,
    /// The partner failed or could not be reached.
    Upstream,
    /// Tollgate's own limits or state.
    Gateway,
}

/// Why an attempt at the partner got no usable answer, as the pooled client saw it. Its own text
/// names the kind only: the client's error is its `source`, and [`GatewayError`]'s text is where
/// that error's words are written into the caller's `message`, once.
#[derive(Debug, thiserror::Error)]
#[error("the attempt failed ({kind:?})")]
pub struct UpstreamCause {
    /// How the attempt failed, as `tollgate_upstream_errors_total{kind}` counts it (`forward.rs`
    /// classifies): `Connect` (DNS, TCP, a new connection that closed at once), `Tls` (a rustls
    /// error anywhere in the chain) or `Protocol` (the exchange broke once connected).
    pub kind: ErrorKind,
    /// The client's error; its text is the whole chain it saw, each cause after `": "`.
    #[source]
    error: ForwardError,
}

impl UpstreamCause {
    /// The cause of an attempt that failed with `error`, of the kind `forward.rs` classified.
    pub(crate) fn new(error: ForwardError) -> Self {
        Self {
            kind: error.kind,
            error,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no upstream is configured for this path")]
    NoRoute,
    #[error("{0}")]
    BadRequest(&'static str),
    #[error("the request body is larger than this upstream's max_body ({limit} bytes)")]
    PayloadTooLarge { limit: u64 },
    #[error("the upstream could not be reached: {}", .0.error)]
    UpstreamUnreachable(UpstreamCause),
    /// The partner answered, but with something that is not a valid HTTP response (5,000 headers,
    /// a garbled status line): the partner's fault, not the network's.
    #[error("the upstream's answer is not a valid HTTP response: {}", .0.error)]
    UpstreamInvalidResponse(UpstreamCause),
    #[error("the upstream did not answer within request_timeout ({0:?})")]
    UpstreamTimeout(Duration),
    /// The token cache had no token to give: its error carries when to try again
    /// (`Retry-After`) and what went wrong. The caller reads the cause's words after these, the
    /// one place they are written into a message.
    #[error("no valid token for this upstream: {}", .0.cause())]
    TokenUnavailable(TokenError),
    #[error("this upstream's rate limit is reached; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    #[error("this upstream's max_concurrency is reached and no slot freed within max_wait")]
    Overloaded,
    /// Caller auth (`[clients]`): no key where one is required, a malformed
    /// `Proxy-Authorization`, or a key no client has. The reason never holds the key.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// Caller auth: a known client asked for an upstream, method or path it is not allowed.
    #[error("{0}")]
    Forbidden(&'static str),
    /// This caller's own share of the upstream (`[clients.NAME.limits.UPSTREAM] rate_limit`).
    #[error("this caller's rate limit for this upstream is reached; retry after {retry_after:?}")]
    CallerRateLimited { retry_after: Duration },
    /// This caller's own `max_concurrency` for the upstream.
    #[error("this caller's max_concurrency for this upstream is reached and no slot freed within max_wait")]
    CallerOverloaded,
    /// Webhook ingress: the signature is missing or does not verify (the reason names no value).
    #[error("{0}")]
    BadSignature(&'static str),
    /// Webhook ingress: correctly signed, but the timestamp is outside the webhook's tolerance.
    #[error("the signed timestamp is outside this webhook's tolerance")]
    StaleTimestamp,
    #[error("only {0} is served here")]
    MethodNotAllowed(&'static str),
    /// The caller did not send its whole body in time.
    #[error("the request body did not arrive within {0:?}")]
    RequestTimeout(Duration),
    /// Webhook ingress: the store could not commit the event, so it is not acknowledged.
    #[error("the event could not be stored; nothing was acknowledged, try again")]
    StoreUnavailable { retry_after: Duration },
}

impl GatewayError {
    /// The `X-Tollgate-Error` code and `error.code` field of DESIGN.md.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::NoRoute => "no_route",
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::PayloadTooLarge { .. } => "payload_too_large",
            GatewayError::UpstreamUnreachable(_) => "upstream_unreachable",
            GatewayError::UpstreamInvalidResponse(_) => "upstream_invalid_response",
            GatewayError::UpstreamTimeout(_) => "upstream_timeout",
            GatewayError::TokenUnavailable(_) => "token_unavailable",
            GatewayError::RateLimited { .. } => "rate_limited",
            GatewayError::Overloaded | GatewayError::CallerOverloaded => "overloaded",
            GatewayError::Unauthorized(_) => "unauthorized",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::CallerRateLimited { .. } => "rate_limited",
            GatewayError::BadSignature(_) => "bad_signature",
            GatewayError::StaleTimestamp => "stale_timestamp",
            GatewayError::MethodNotAllowed(_) => "method_not_allowed",
            GatewayError::RequestTimeout(_) => "request_timeout",
            GatewayError::StoreUnavailable { .. } => "store_unavailable",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamUnreachable(_)
            | GatewayError::UpstreamInvalidResponse(_)
            | GatewayError::TokenUnavailable(_) => StatusCode::BAD_GATEWAY,
            GatewayError::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::RateLimited { .. } | GatewayError::CallerRateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::Overloaded
            | GatewayError::CallerOverloaded
            | GatewayError::StoreUnavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::BadSignature(_) | GatewayError::StaleTimestamp | GatewayError::Unauthorized(_) => {
                StatusCode::UNAUTHORIZED
            }
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// Who caused this error (see [`Side`]). Exhaustive on purpose: a new variant must say.
    pub fn side(&self) -> Side {
        match self {
            GatewayError::NoRoute
            | GatewayError::BadRequest(_)
            | GatewayError::PayloadTooLarge { .. }
            | GatewayError::BadSignature(_)
            | GatewayError::StaleTimestamp
            | GatewayError::MethodNotAllowed(_)
            | GatewayError::RequestTimeout(_)
            | GatewayError::Unauthorized(_)
            | GatewayError::Forbidden(_) => Side::Downstream,
            GatewayError::UpstreamUnreachable(_)
            | GatewayError::UpstreamInvalidResponse(_)
            | GatewayError::UpstreamTimeout(_)
            | GatewayError::TokenUnavailable(_) => Side::Upstream,
            GatewayError::RateLimited { .. }
            | GatewayError::Overloaded
            | GatewayError::CallerRateLimited { .. }
            | GatewayError::CallerOverloaded
            | GatewayError::StoreUnavailable { .. } => Side::Gateway,
        }
    }

    /// How long the caller should wait before trying again, when we know.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            GatewayError::TokenUnavailable(cause) => cause.retry_after,
            GatewayError::RateLimited { retry_after }
            | GatewayError::CallerRateLimited { retry_after }
            | GatewayError::StoreUnavailable { retry_after } => Some(*retry_after),
            _ => None,
        }
    }
}
