//! Reading the caller's key from `Proxy-Authorization: Bearer <key>`.
//!
//! `Proxy-Authorization` because `Authorization` may be meant for the partner in other setups
//! and is the header Tollgate injects tokens into; both are removed before forwarding
//! (`headers.rs`), so the key never reaches a partner. Nothing here logs or returns the key
//! except as the bytes to hash.

use http::{header, HeaderMap};

/// What the caller presented.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Presented<'r> {
    /// No `Proxy-Authorization` at all.
    Nothing,
    /// The bytes after `Bearer `.
    Key(&'r [u8]),
    /// A `Proxy-Authorization` that is not one `Bearer <key>`; the reason names no value.
    Malformed(&'static str),
}

/// The key in the request's `Proxy-Authorization`, if any.
pub(super) fn presented(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(header::PROXY_AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Presented::Nothing;
    };
    if values.next().is_some() {
        return Presented::Malformed("send one Proxy-Authorization header, not several");
    }
    bearer(value.as_bytes())
}

/// Longer keys are malformed: real keys are tens of bytes.
const MAX_KEY_LEN: usize = 512;

/// `Bearer <key>`: the scheme in any case (RFC 9110 §11.1), one or more spaces, then the key.
fn bearer(value: &[u8]) -> Presented<'_> {
    const SCHEME: &[u8] = b"bearer";
    let malformed = Presented::Malformed("Proxy-Authorization must be `Bearer <key>`");
    if value.len() <= SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return malformed;
    }
    let rest = &value[SCHEME.len()..];
    let key_start = rest.iter().position(|b| *b != b' ').unwrap_or(rest.len());
    if key_start == 0 {
        return malformed; // `Bearerxyz`: no separator
    }
    let key = rest[key_start..].trim_ascii_end();
    // Bounded before it is hashed: an unauthenticated caller must not buy 64 KiB of SHA-256 work.
    if key.is_empty() || key.len() > MAX_KEY_LEN || key.iter().any(|b| !b.is_ascii_graphic()) {
        return malformed;
    }
    Presented::Key(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::PROXY_AUTHORIZATION, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn reads_one_bearer_key() {
        assert_eq!(presented(&HeaderMap::new()), Presented::Nothing);
        assert_eq!(presented(&with(&["Bearer k-123"])), Presented::Key(b"k-123"));
        assert_eq!(presented(&with(&["bearer   k-123"])), Presented::Key(b"k-123"));
        assert_eq!(presented(&with(&["BEARER k+/=="])), Presented::Key(b"k+/=="));
    }

    #[test]
    fn refuses_everything_else_without_echoing_it() {
        for bad in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearerk-123",
            "Bearer a b",
            "k-123",
            "Bear k",
        ] {
            match presented(&with(&[bad])) {
                Presented::Malformed(reason) => {
                    assert!(!reason.contains("k-123") && !reason.contains("dXNl"))
                }
                other => panic!("{bad:?} read as {other:?}"),
            }
        }
        assert!(matches!(
            presented(&with(&["Bearer a-1", "Bearer a-1"])),
            Presented::Malformed(_)
        ));
    }
}
