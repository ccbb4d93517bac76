//! Small constructors for the answers every partner module builds: JSON with a status, an added
//! `Retry-After`, a status from a test's `u16`.

use axum::response::{IntoResponse, Response};
use axum::Json;
use http::header::{HeaderValue, RETRY_AFTER};
use http::StatusCode;
use serde_json::Value;

pub(crate) fn json(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

pub(crate) fn retry_after(mut resp: Response, secs: Option<u64>) -> Response {
    if let Some(secs) = secs {
        resp.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    resp
}

/// A test may script any code; an invalid one (outside 100..=999) becomes a 500.
pub(crate) fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

pub(crate) fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

/// Adds a header; names and values here are constants or digits, so they are always valid.
pub(crate) fn with_header(mut resp: Response, name: http::HeaderName, value: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
    resp
}
