//! Header hygiene (RFC 9110 §7.6.1) for both directions, and the request id.
//!
//! Towards the partner, the caller's headers are copied minus everything that is hop-by-hop, named
//! by the caller's `Connection`, a credential, or a header Tollgate injects itself; then the
//! injected headers are added. `Connection` can therefore never remove an injected header, and may
//! not name framing headers at all. No `Forwarded`/`X-Forwarded-*` leaves: they would leak internal
//! addresses to partners. Caller-sent `X-Tollgate-*` never leaves either: those names are Tollgate's.
//!
//! Header names spelt with `_` get their own rule (`server.underscore_headers`): CGI, WSGI, PHP and
//! Rack servers turn `-` and `_` into the same variable (`HTTP_X_API_KEY`), so `X_Api_Key` would
//! reach such a partner as a second key next to the injected `X-API-Key`. Whatever the mode, a name
//! that reads as a withheld one once `_` is taken as `-` is never forwarded.
//!
//! Towards the caller, hop-by-hop headers of the partner's response are dropped.

use std::borrow::Cow;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use crate::config::UnderscoreHeaders;
use crate::error::GatewayError;

/// `X-Request-Id`: kept from the caller when sane, else created; sent upstream and returned.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub const TOLLGATE_ENVIRONMENT: HeaderName = HeaderName::from_static("x-tollgate-environment");
pub const TOLLGATE_UPSTREAM: HeaderName = HeaderName::from_static("x-tollgate-upstream");

/// Headers that describe one connection, never the message (RFC 9110 §7.6.1), plus the ones
/// Tollgate owns towards partners (`Host` comes from the route, `Expect` is answered here).
const HOP_BY_HOP: [HeaderName; 10] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::HOST,
];

/// What the gateway adds to every request to one upstream, prepared once at start-up.
#[derive(Debug, Clone, Default)]
pub struct Injected {
    /// Static headers from config, values marked sensitive.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Names the caller may never send: the static ones and the token header.
    pub reserved: Vec<HeaderName>,
}

/// The headers to send upstream, built from the caller's, with `underscore_headers = "drop"`
/// (the default): the tests' shorthand.
#[cfg(test)]
fn upstream_request_headers(
    caller: &HeaderMap,
    injected: &Injected,
    request_id: &HeaderValue,
) -> Result<HeaderMap, GatewayError> {
    upstream_request_headers_with(caller, injected, request_id, UnderscoreHeaders::Drop)
}

/// The headers to send upstream, built from the caller's; `underscores` says what happens to
/// names spelt with `_`.
pub fn upstream_request_headers_with(
    caller: &HeaderMap,
    injected: &Injected,
    request_id: &HeaderValue,
    underscores: UnderscoreHeaders,
) -> Result<HeaderMap, GatewayError> {
    let named = connection_named(caller)?;
    let mut out = HeaderMap::with_capacity(caller.len() + injected.headers.len() + 1);
    for (name, value) in caller {
        if withheld(name, injected, &named) {
            continue;
        }
        if name.as_str().contains('_') {
            match underscores {
                UnderscoreHeaders::Drop => continue,
                UnderscoreHeaders::Reject => {
                    return Err(GatewayError::BadRequest(
                        "header names with `_` are refused (server.underscore_headers = \"reject\"): \
                         many servers read `_` as `-`",
                    ))
                }
                UnderscoreHeaders::Allow => {
                    if withheld_as_dashed(name.as_str(), injected, &named) {
                        continue;
                    }
                }
            }
        }
        out.append(name.clone(), value.clone());
    }
    for (name, value) in &injected.headers {
        out.append(name.clone(), value.clone());
    }
    out.insert(REQUEST_ID, request_id.clone());
    Ok(out)
}

/// Drops the partner response's hop-by-hop headers and the ones its `Connection` names.
///
/// A scan of the names the response has (a handful) for each one to drop, rather than a removal
/// per hop-by-hop name: each removal hashes, and this runs for every response.
pub fn clean_response_headers(headers: &mut HeaderMap) {
    let named = connection_tokens(headers);
    // One doomed name at a time rather than a list of them: a response has a handful of names
    // and one or two doomed ones (`Connection`, `Keep-Alive`), and the list allocated per response.
    while let Some(name) = headers
        .keys()
        .find(|name| is_hop_by_hop(name) || named.iter().any(|n| n == name.as_str()))
        .cloned()
    {
        headers.remove(name);
    }
}

/// Lower-cased names listed in a caller's `Connection`. Naming a framing header is an attack on
/// the partner's framing (request smuggling), not a preference: refuse it.
fn connection_named(headers: &HeaderMap) -> Result<Vec<String>, GatewayError> {
    if headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| v.to_str().is_err())
    {
        return Err(GatewayError::BadRequest("the Connection header is not ASCII"));
    }
    let named = connection_tokens(headers);
    if named
        .iter()
        .any(|t| t == "content-length" || t == "transfer-encoding")
    {
        return Err(GatewayError::BadRequest(
            "the Connection header may not name Content-Length or Transfer-Encoding",
        ));
    }
    Ok(named)
}

/// Lower-cased header names listed in `Connection` (values that are not ASCII are skipped).
/// `close` and `keep-alive` are connection options, not names (`Keep-Alive` is hop-by-hop anyway),
/// so the common case allocates nothing.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.is_empty() && !t.eq_ignore_ascii_case("keep-alive") && !t.eq_ignore_ascii_case("close")
        })
        .map(str::to_ascii_lowercase)
        .collect()
}

/// A caller header that never reaches a partner under its own name.
fn withheld(name: &HeaderName, injected: &Injected, named: &[String]) -> bool {
    is_hop_by_hop(name)
        || *name == header::AUTHORIZATION
        || *name == header::EXPECT
        || *name == REQUEST_ID
        || is_forwarding(name.as_str())
        || is_tollgate(name.as_str())
        || injected.reserved.contains(name)
        || named.iter().any(|n| n == name.as_str())
}

/// Whether an underscore name reads, with `_` taken as `-`, as a header that is withheld, or as
/// `Content-Length` (a CGI server might take it for the framing).
fn withheld_as_dashed(name: &str, injected: &Injected, named: &[String]) -> bool {
    let owned = dashed(name);
    let d: &str = &owned;
    HOP_BY_HOP.iter().any(|h| h.as_str() == d)
        || d == header::AUTHORIZATION.as_str()
        || d == header::EXPECT.as_str()
        || d == header::CONTENT_LENGTH.as_str()
        || d == REQUEST_ID.as_str()
        || is_forwarding(d)
        || is_tollgate(d)
        || injected.reserved.iter().any(|r| *dashed(r.as_str()) == *d)
        || named.iter().any(|n| *dashed(n) == *d)
}

/// `name` with every `_` as `-` (names are already lower case); borrowed when there is none.
fn dashed(name: &str) -> Cow<'_, str> {
    if name.contains('_') {
        Cow::Owned(name.replace('_', "-"))
    } else {
        Cow::Borrowed(name)
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

fn is_forwarding(n: &str) -> bool {
    matches!(
        n,
        "forwarded"
            | "x-real-ip"
            | "x-client-ip"
            | "client-ip"
            | "true-client-ip"
            | "cf-connecting-ip"
            | "x-cluster-client-ip"
    ) || n.starts_with("x-forwarded-")
}

/// `X-Tollgate-*` names are Tollgate's own (errors, upstream, environment): a caller may not
/// speak for the gateway to a partner.
fn is_tollgate(n: &str) -> bool {
    n.starts_with("x-tollgate-")
}

/// The caller's `X-Request-Id` when it is 1..=128 visible ASCII characters, else a new UUID.
pub fn request_id(caller: &HeaderMap) -> HeaderValue {
    if let Some(v) = caller.get(REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).expect("a UUID is a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn injected() -> Injected {
        let key = HeaderName::from_static("x-api-key");
        Injected {
            headers: vec![(key.clone(), HeaderValue::from_static("real-key"))],
            reserved: vec![key, header::AUTHORIZATION],
        }
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        m
    }

    #[test]
    fn strips_credentials_hop_by_hop_and_forwarding() {
        let caller = map(&[
            ("authorization", "Bearer caller"),
            ("proxy-authorization", "Basic x"),
            ("x-api-key", "caller-key"),
            ("X-API-KEY", "caller-key-2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "websocket"),
            ("host", "internal.svc"),
            ("forwarded", "for=10.0.0.1"),
            ("x-forwarded-for", "10.0.0.1"),
            ("x-forwarded-proto", "http"),
            ("accept", "application/json"),
            ("x-custom", "1"),
        ]);
        let rid = HeaderValue::from_static("rid");
        let out = upstream_request_headers(&caller, &injected(), &rid).unwrap();
        assert_eq!(out.get_all("x-api-key").iter().collect::<Vec<_>>(), ["real-key"]);
        for gone in [
            "authorization",
            "proxy-authorization",
            "keep-alive",
            "te",
            "upgrade",
            "host",
            "forwarded",
            "x-forwarded-for",
            "x-forwarded-proto",
        ] {
            assert!(!out.contains_key(gone), "{gone} leaked");
        }
        assert_eq!(out["accept"], "application/json");
        assert_eq!(out["x-custom"], "1");
        assert_eq!(out[REQUEST_ID], "rid");
    }

    #[test]
    fn connection_removes_what_it_names_but_never_injected_headers() {
        let caller = map(&[
            ("connection", "X-API-Key, x-custom"),
            ("x-custom", "1"),
            ("x-other", "2"),
        ]);
        let out = upstream_request_headers(&caller, &injected(), &HeaderValue::from_static("r")).unwrap();
        assert_eq!(out["x-api-key"], "real-key");
        assert!(!out.contains_key("x-custom"));
        assert_eq!(out["x-other"], "2");
    }

    #[test]
    fn connection_naming_framing_is_refused() {
        for v in ["Content-Length", "close, transfer-encoding"] {
            let caller = map(&[("connection", v)]);
            let err =
                upstream_request_headers(&caller, &injected(), &HeaderValue::from_static("r")).unwrap_err();
            assert_eq!(err.code(), "bad_request");
        }
    }

    fn names(out: &HeaderMap) -> Vec<&str> {
        out.keys().map(HeaderName::as_str).collect()
    }

    #[test]
    fn underscore_names_are_dropped_by_default_and_tollgate_names_always() {
        let caller = map(&[
            ("x_api_key", "caller-key"),
            ("x_forwarded_for", "10.0.0.1"),
            ("x_custom", "1"),
            ("x-tollgate-upstream", "spoof"),
            ("x-tollgate-error", "spoof"),
            ("x-custom", "2"),
        ]);
        let rid = HeaderValue::from_static("r");
        let out = upstream_request_headers(&caller, &injected(), &rid).unwrap();
        assert_eq!(names(&out), ["x-custom", "x-api-key", "x-request-id"]);
        assert_eq!(out.get_all("x-api-key").iter().collect::<Vec<_>>(), ["real-key"]);
        let same =
            upstream_request_headers_with(&caller, &injected(), &rid, UnderscoreHeaders::Drop).unwrap();
        assert_eq!(same, out);
    }

    #[test]
    fn underscore_names_are_refused_in_reject_mode() {
        let caller = map(&[("x_custom", "1")]);
        let err = upstream_request_headers_with(
            &caller,
            &injected(),
            &HeaderValue::from_static("r"),
            UnderscoreHeaders::Reject,
        )
        .unwrap_err();
        assert_eq!(err.code(), "bad_request");
        // A caller that sends none is not affected.
        let plain = map(&[("x-custom", "1")]);
        let out = upstream_request_headers_with(
            &plain,
            &injected(),
            &HeaderValue::from_static("r"),
            UnderscoreHeaders::Reject,
        )
        .unwrap();
        assert_eq!(out["x-custom"], "1");
    }

    #[test]
    fn allow_mode_still_withholds_what_reads_as_a_withheld_name() {
        let caller = map(&[
            ("connection", "x-hop-me"),
            ("x_api_key", "caller-key"),
            ("x_forwarded_for", "10.0.0.1"),
            ("x_real_ip", "10.0.0.1"),
            ("transfer_encoding", "chunked"),
            ("content_length", "5"),
            ("proxy_authorization", "Basic x"),
            ("x_request_id", "forged"),
            ("x_tollgate_upstream", "spoof"),
            ("x_hop_me", "1"),
            ("x_custom", "kept"),
        ]);
        let out = upstream_request_headers_with(
            &caller,
            &injected(),
            &HeaderValue::from_static("r"),
            UnderscoreHeaders::Allow,
        )
        .unwrap();
        assert_eq!(names(&out), ["x_custom", "x-api-key", "x-request-id"]);
        assert_eq!(out["x_custom"], "kept");
        assert_eq!(out[REQUEST_ID], "r");
    }

    #[test]
    fn dashed_replaces_every_underscore_and_borrows_otherwise() {
        assert_eq!(dashed("x_api__key_"), "x-api--key-");
        assert!(matches!(dashed("x-api-key"), Cow::Borrowed("x-api-key")));
    }

    #[test]
    fn request_id_is_kept_when_sane() {
        assert_eq!(request_id(&map(&[("x-request-id", "abc-123")])), "abc-123");
        let made = request_id(&map(&[("x-request-id", "has space")]));
        assert_eq!(made.len(), 36);
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    #[test]
    fn response_hop_by_hop_is_dropped() {
        let mut h = map(&[
            ("connection", "x-secret-hop"),
            ("x-secret-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("content-type", "text/plain"),
        ]);
        clean_response_headers(&mut h);
        assert!(!h.contains_key("x-secret-hop"));
        assert!(!h.contains_key("transfer-encoding"));
        assert!(!h.contains_key("connection"));
        assert_eq!(h["content-type"], "text/plain");
        // A partner's Connection naming a framing header still removes what else it names.
        let mut h = map(&[("connection", "content-length, x-hop"), ("x-hop", "1")]);
        clean_response_headers(&mut h);
        assert!(!h.contains_key("x-hop"));
    }
}
