//! The outermost middleware of every emulator: record, then delay, then inject faults.
//!
//! The order is the point: a request is recorded before anything can refuse it (so tests see
//! requests answered 401/429/503 too), the delay applies to every answer including injected
//! failures (so a gateway timeout can be provoked on any path), and a scripted failure wins over
//! the partner's own logic (so it also hits requests that would have been refused anyway).
//! Partner-specific auth and rate limits run after this, inside each partner's router.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;

use crate::knobs::Kind;
use crate::lock::lock;
use crate::partner_api::PartnerApi;
use crate::record::Recorded;
use crate::reply;
use crate::state::Shared;
use crate::tee::{collect, drain, TeeBody};

/// What `gate` runs with: the emulator's shared state and its partner, picked once by `emulator`
/// so that this module never names a partner module.
#[derive(Clone)]
pub(crate) struct Gate {
    pub(crate) shared: Arc<Shared>,
    pub(crate) api: &'static dyn PartnerApi,
}

pub(crate) async fn gate(State(Gate { shared, api }): State<Gate>, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let kind = classify(api, path);
    tracing::debug!(partner = shared.partner.name(), method = %parts.method, path, ?kind, "request");
    let sink = shared.log.push(kind, Recorded::head(&parts, at));
    // Knobs are read on arrival so that scripted failures hit requests in arrival order.
    let (delay, fault) = {
        let mut knobs = shared.knobs();
        (knobs.delay(kind), knobs.take_fault(kind))
    };

    let body = if api.streams_body(&parts.method, path) {
        TeeBody::wrap(body, sink)
    } else {
        // Buffered up front so that handlers which never read the body still get it recorded.
        match collect(body, &sink).await {
            Ok(bytes) => Body::from(bytes),
            Err(_) => return StatusCode::BAD_REQUEST.into_response(),
        }
    };

    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(fault) = fault {
        drain(body).await;
        let status = reply::status(fault.status);
        let resp = api.fault(kind, status, parts.uri.path());
        return reply::retry_after(resp, fault.retry_after);
    }
    let mut resp = next.run(Request::from_parts(parts, body)).await;
    if kind == Kind::Api && shared.knobs().announce_budget {
        if let Some((limit, remaining, reset)) = *lock(&shared.budget) {
            let h = resp.headers_mut();
            h.insert("ratelimit-limit", limit.into());
            h.insert("ratelimit-remaining", remaining.into());
            h.insert("ratelimit-reset", reset.into());
        }
    }
    resp
}

/// Answers `resp` to a refused request after reading its body, so that the log holds all of it.
pub(crate) async fn refuse(req: Request, resp: Response) -> Response {
    drain(req.into_body()).await;
    resp
}

fn classify(api: &dyn PartnerApi, path: &str) -> Kind {
    if api.is_token_path(path) {
        Kind::Token
    } else {
        Kind::Api
    }
}
