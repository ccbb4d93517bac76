//! The OAuth2 `client_credentials` token endpoint shared by Ottimate and Osigu (RFC 6749 §4.4).
//!
//! Client authentication is accepted either in the form body (`client_id`, `client_secret`) or
//! as HTTP Basic, but not both at once (RFC 6749 §2.3: a client MUST NOT use more than one
//! method), so a gateway that sends both is caught here rather than by a stricter real server.
//! Errors use the RFC's body, `{"error": "...", "error_description": "..."}`.
//!
//! Checks run in this order: rate limit (charged to the presented `client_id`, so bad
//! credentials count too, as they would at a real authorization server), content type, API key
//! (Ottimate only), `grant_type`, client credentials.

use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, PRAGMA, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use serde_json::json;

use crate::reply::{self, with_header};
use crate::state::Shared;
use crate::tokens::{self, Use};
use crate::urlencoded::{decode, first, pairs};

/// Serves one token request. `api_key_header` names the header that must carry the partner's
/// API key on the token request too (Ottimate's `X-API-Key`), if any.
pub(crate) fn client_credentials(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
    api_key_header: Option<&str>,
) -> Response {
    let is_form = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"));
    let form = if is_form {
        pairs(&String::from_utf8_lossy(body))
    } else {
        Vec::new()
    };
    let basic = basic_credentials(headers);

    let presented = match &basic {
        Some(Some((id, _))) => Some(id.as_str()),
        _ => first(&form, "client_id"),
    };
    if let Err((limit, wait)) = shared.admit_token(presented.unwrap_or("anonymous")) {
        let resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            &format!("At most {limit} token requests per minute per client; retry in {wait} s."),
        );
        return reply::retry_after(resp, Some(wait));
    }

    if !is_form {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "The request body must be application/x-www-form-urlencoded.",
        );
    }
    if let Some(name) = api_key_header {
        match headers.get(name).map(|v| v.as_bytes()) {
            None => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    &format!("Missing {name} header."),
                )
            }
            Some(key) if key != shared.credentials.api_key.as_bytes() => {
                return error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    &format!("Invalid {name}."),
                )
            }
            Some(_) => {}
        }
    }
    match first(&form, "grant_type") {
        None => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Missing grant_type parameter.",
            )
        }
        Some("client_credentials") => {}
        Some(other) => {
            return error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("Grant type '{other}' is not supported; use client_credentials."),
            )
        }
    }

    let used_basic = basic.is_some();
    let (id, secret) = match basic {
        Some(_) if first(&form, "client_secret").is_some() => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "Use either HTTP Basic or client_secret in the body, not both.",
            )
        }
        Some(None) => return invalid_client("Malformed HTTP Basic credentials.", true),
        Some(Some(pair)) => pair,
        None => match (first(&form, "client_id"), first(&form, "client_secret")) {
            (Some(id), Some(secret)) => (id.to_owned(), secret.to_owned()),
            _ => {
                return invalid_client(
                    "Client authentication failed: client_id and client_secret are required.",
                    false,
                )
            }
        },
    };
    let creds = &shared.credentials;
    if id != creds.client_id || secret != creds.client_secret {
        return invalid_client("Client authentication failed.", used_basic);
    }

    let token = tokens::opaque();
    let ttl = shared.knobs().token_ttl;
    shared.tokens.issue(&token, &id, Use::Access, ttl);
    shared.count_issued();
    let resp = reply::json(
        StatusCode::OK,
        json!({"access_token": token, "token_type": "Bearer", "expires_in": ttl.as_secs()}),
    );
    // RFC 6749 §5.1: token responses must not be cached.
    with_header(with_header(resp, CACHE_CONTROL, "no-store"), PRAGMA, "no-cache")
}

/// `Some(None)` when an `Authorization: Basic` header is present but unreadable.
fn basic_credentials(headers: &HeaderMap) -> Option<Option<(String, String)>> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok();
    let text = decoded.and_then(|d| String::from_utf8(d).ok());
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before being joined and encoded.
    Some(text.and_then(|t| t.split_once(':').map(|(id, secret)| (decode(id), decode(secret)))))
}

pub(crate) fn error(status: StatusCode, code: &str, description: &str) -> Response {
    reply::json(status, json!({"error": code, "error_description": description}))
}

fn invalid_client(description: &str, used_basic: bool) -> Response {
    let resp = error(StatusCode::UNAUTHORIZED, "invalid_client", description);
    if used_basic {
        // RFC 6749 §5.2: a failed Basic authentication gets a challenge for that scheme.
        with_header(resp, WWW_AUTHENTICATE, "Basic realm=\"oauth\"")
    } else {
        resp
    }
}

/// The RFC 6749 error code closest to a scripted failure's status.
pub(crate) fn error_code(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request",
        401 => "invalid_client",
        403 => "unauthorized_client",
        429 => "rate_limit_exceeded",
        503 => "temporarily_unavailable",
        _ => "server_error",
    }
}
