//! The one mapping from a gateway error to the JSON response callers see.

use http::{header, HeaderValue, Response};
use serde::Serialize;

use crate::body::{full, Body};
use crate::error::GatewayError;

/// `X-Tollgate-Error`: the machine-readable code of a gateway-made error.
pub const ERROR_HEADER: &str = "x-tollgate-error";

#[derive(Serialize)]
struct Envelope<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook: Option<&'a str>,
    request_id: &'a str,
}

/// `{"error": {"code", "message", "upstream", "request_id"}}` with `X-Tollgate-Error: <code>`.
pub fn error_response(err: &GatewayError, upstream: Option<&str>, request_id: &str) -> Response<Body> {
    render(err, upstream, None, request_id)
}

/// The same envelope for the webhook listener, naming the webhook instead of an upstream.
pub(crate) fn webhook_error_response(
    err: &GatewayError,
    webhook: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    render(err, None, webhook, request_id)
}

fn render(
    err: &GatewayError,
    upstream: Option<&str>,
    webhook: Option<&str>,
    request_id: &str,
) -> Response<Body> {
    let body = serde_json::to_vec(&Envelope {
        error: Detail {
            code: err.code(),
            message: err.to_string(),
            upstream,
            webhook,
            request_id,
        },
    })
    .expect("serialising plain strings cannot fail");
    let mut resp = Response::new(full(body));
    *resp.status_mut() = err.status();
    let headers = resp.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(ERROR_HEADER, HeaderValue::from_static(err.code()));
    if let GatewayError::MethodNotAllowed(allowed) = err {
        headers.insert(header::ALLOW, HeaderValue::from_static(allowed));
    }
    if let GatewayError::Unauthorized(_) = err {
        // The status DESIGN fixes is 401, but the credential is the proxy's (`Proxy-Authorization`):
        // name the scheme the way a 407 would, so a client library knows what to send.
        headers.insert(
            header::PROXY_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tollgate\""),
        );
    }
    if let Some(wait) = err.retry_after() {
        headers.insert(header::RETRY_AFTER, crate::retry_after::header_value(wait));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn renders_the_design_envelope() {
        let resp = error_response(&GatewayError::NoRoute, None, "req-1");
        assert_eq!(resp.status(), 404);
        assert_eq!(resp.headers()[ERROR_HEADER], "no_route");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["code"], "no_route");
        assert_eq!(v["error"]["request_id"], "req-1");
        assert!(v["error"].get("upstream").is_none());

        let resp = error_response(&GatewayError::BadRequest("bad \"path\""), Some("osigu"), "r");
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["upstream"], "osigu");
        assert_eq!(v["error"]["message"], "bad \"path\"");
    }
}
