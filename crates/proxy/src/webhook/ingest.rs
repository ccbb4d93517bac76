//! The inbound path of a partner's webhook delivery, composed in one place.
//!
//! ```text
//! partner ─▶ webhook listener (POST only, its own port) ─▶ path → webhook
//!         ─▶ body, capped at max_body (413) and read within BODY_READ_TIMEOUT (408)
//!         ─▶ signature over the raw bytes, then timestamp tolerance (401)
//!         ─▶ event id (header or JSON pointer; 400 when missing)
//!         ─▶ store: dedupe + insert in one committed transaction
//!              ├─ new       → 202, the delivery worker is woken
//!              ├─ duplicate → 200, nothing stored
//!              └─ failed    → 503 + Retry-After: nothing is acknowledged that is not stored
//!         every answer counted (tollgate_webhook_received_total, _ack_seconds) and logged
//! ```
//!
//! Nothing is stored before the signature verified, and no 2xx leaves before the store
//! committed: that order is the whole durability promise, so it lives in this one function.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tollgate_metrics::Received;

use super::store::{Inserted, NewEvent};
use super::verify::Rejection;
use super::{event_id, WebhookRuntime, Webhooks};
use crate::body::{full, Body};
use crate::config::webhook::EventId;
use crate::error::GatewayError;
use crate::headers;
use crate::respond::webhook_error_response;

/// A partner that has not sent its whole body by then is cut off (408). Partners send small
/// bodies in one go; this only bounds what a slow or hostile sender can hold.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a partner is asked to wait when the store could not commit.
const STORE_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The store must have answered by then, so the partner hears back well within the 10 s that
/// partners (Osigu's checklist) allow. A commit that lands after the 503 is harmless: the
/// partner's retry is then answered as a duplicate.
const STORE_TIMEOUT: Duration = Duration::from_secs(8);

/// Handles one request on the webhook listener.
pub(crate) async fn handle(hooks: &Webhooks, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let request_id = headers::request_id(req.headers());
    let rid = request_id.to_str().unwrap_or("-").to_owned();
    let Some(hook) = hooks.find(req.uri().path()) else {
        let resp = webhook_error_response(&GatewayError::NoRoute, None, &rid);
        tracing::info!(target: "tollgate::access", kind = "webhook", path = ?req.uri().path(), status = 404, request_id = %rid, "webhook delivery");
        return resp;
    };
    let name = hook.cfg.name.as_str();
    let (result, resp, event) = match receive(hooks, hook, req).await {
        Ok((stored, event_id)) => {
            let (result, status, word) = match stored {
                Inserted::Stored { .. } => (Received::Accepted, StatusCode::ACCEPTED, "accepted"),
                Inserted::Duplicate => (Received::Duplicate, StatusCode::OK, "duplicate"),
            };
            let body = serde_json::json!({ "status": word, "webhook": name, "event_id": event_id });
            let mut resp = Response::new(full(body.to_string()));
            *resp.status_mut() = status;
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            (result, resp, Some(event_id))
        }
        Err(err) => {
            let result = match &err {
                GatewayError::BadSignature(_) => Received::BadSignature,
                GatewayError::StaleTimestamp => Received::StaleTimestamp,
                GatewayError::PayloadTooLarge { .. } => Received::TooLarge,
                GatewayError::StoreUnavailable { .. } => Received::Unavailable,
                _ => Received::BadRequest,
            };
            (result, webhook_error_response(&err, Some(name), &rid), None)
        }
    };
    let elapsed = started.elapsed();
    hook.metrics.received(result, elapsed.as_secs_f64());
    let mut resp = resp;
    resp.headers_mut().insert(headers::REQUEST_ID, request_id);
    tracing::info!(
        target: "tollgate::access",
        kind = "webhook",
        webhook = name,
        result = result.label(),
        status = resp.status().as_u16(),
        event_id = event.as_deref().unwrap_or("-"),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %rid,
        "webhook delivery"
    );
    resp
}

/// Verifies and stores one delivery; returns what the store did and the event id.
async fn receive(
    hooks: &Webhooks,
    hook: &WebhookRuntime,
    req: Request<Incoming>,
) -> Result<(Inserted, String), GatewayError> {
    if req.method() != Method::POST {
        return Err(GatewayError::MethodNotAllowed("POST"));
    }
    let (parts, incoming) = req.into_parts();
    let body = read_body(incoming, &parts.headers, hook.cfg.max_body).await?;
    let now_ms = crate::clock::now_unix_ms();
    hook.verifier
        .verify(&parts.headers, &body, now_ms.div_euclid(1000))
        .map_err(GatewayError::from)?;
    let event_id = match &hook.cfg.event_id {
        EventId::Header(name) => event_id::from_header(&parts.headers, name),
        EventId::Json(pointer) => event_id::from_json(&body, pointer),
    }
    .map_err(GatewayError::BadRequest)?;
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let insert = hooks.store.insert(NewEvent {
        webhook: hook.cfg.name.clone(),
        event_id: event_id.clone(),
        content_type,
        body,
        received_ms: now_ms,
        dedupe_until_ms: now_ms.saturating_add(millis(hook.cfg.dedupe_for)),
    });
    let refused = |why: &dyn std::fmt::Display| {
        tracing::error!(webhook = %hook.cfg.name, error = %why, "webhook event not stored; answered 503");
        GatewayError::StoreUnavailable {
            retry_after: STORE_RETRY_AFTER,
        }
    };
    let stored = match tokio::time::timeout(STORE_TIMEOUT, insert).await {
        Ok(Ok(stored)) => stored,
        Ok(Err(e)) => return Err(refused(&e)),
        Err(_) => return Err(refused(&"the store did not answer within 8 s")),
    };
    if matches!(stored, Inserted::Stored { .. }) {
        hook.wake.notify_one();
    }
    Ok((stored, event_id))
}

/// The whole body, refused early when its declared length is over the cap.
async fn read_body(
    incoming: Incoming,
    headers: &http::HeaderMap,
    max_body: u64,
) -> Result<Bytes, GatewayError> {
    let too_large = GatewayError::PayloadTooLarge { limit: max_body };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body) {
        return Err(too_large);
    }
    let cap = usize::try_from(max_body).unwrap_or(usize::MAX);
    match tokio::time::timeout(BODY_READ_TIMEOUT, Limited::new(incoming, cap).collect()).await {
        Err(_) => Err(GatewayError::RequestTimeout(BODY_READ_TIMEOUT)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large),
        Ok(Err(_)) => Err(GatewayError::BadRequest("the request body could not be read")),
    }
}

/// Every rejection is a 401; the error's code (`bad_signature`, `stale_timestamp`) says which.
/// Written here, where a rejection is answered, so that the pure `verify.rs` imports no
/// `error.rs`: `error.rs` holds the upstream client's error (`forward.rs`), which reaches
/// `verify.rs`'s key errors through `build_error.rs`, so importing back would close a cycle.
impl From<Rejection> for GatewayError {
    fn from(r: Rejection) -> Self {
        match r {
            Rejection::BadSignature(why) => GatewayError::BadSignature(why),
            Rejection::StaleTimestamp => GatewayError::StaleTimestamp,
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}
