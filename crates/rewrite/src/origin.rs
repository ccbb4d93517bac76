//! Exact-origin matching of absolute URLs against the active environment's
//! `base_url`, and the rewrite to the gateway's own base.
//!
//! This is the one security-relevant decision of link rewriting: a link is
//! only sent through Tollgate (with credentials injected) when it certainly
//! points into the partner's `base_url`. The parser here is hand-written over
//! bytes on purpose: a general URL parser normalises (case, dot segments,
//! percent-encoding, default ports), which would change bytes we must keep
//! identical, and would cost an allocation per JSON string on the hot path.
//! Anything unusual is answered with "no match", which leaves the link
//! untouched: a missed rewrite is a nuisance, a wrong one is a leak.

use std::fmt;

/// Where links pointing into the partner's `base_url` are sent instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkTarget {
    /// `http` or `https`, lower case.
    scheme: &'static str,
    /// Host as written in `base_url`, lower-cased for the comparison.
    host: String,
    /// Port with the scheme default made explicit.
    port: u16,
    /// Base path without trailing slashes; empty for the root.
    path: String,
    /// Public base plus route prefix, without trailing slash.
    replacement: String,
}

/// Why a `base_url` cannot be used as a link target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBase(&'static str);

impl fmt::Display for InvalidBase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid base URL for link rewriting: {}", self.0)
    }
}

impl std::error::Error for InvalidBase {}

/// The pieces of an absolute `http(s)` URL, as byte ranges of the original.
struct Parts<'a> {
    host: &'a str,
    port: u16,
    path: &'a str,
    /// `?query#fragment`, kept byte-for-byte.
    tail: &'a str,
}

fn default_port(scheme: &str) -> u16 {
    if scheme == "https" {
        443
    } else {
        80
    }
}

/// Splits `rest` (what follows `scheme://`) into authority parts, path and
/// tail. Returns `None` for anything we would not trust to mean one host.
fn split_after_scheme(rest: &str, default: u16) -> Option<Parts<'_>> {
    let bytes = rest.as_bytes();
    let auth_end = bytes
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(bytes.len());
    let authority = &rest[..auth_end];
    // userinfo can make a URL look like ours while meaning another host to
    // some clients; it is never rewritten.
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    let port = match port {
        // WHATWG URL: an empty port means the default one.
        None | Some("") => default,
        Some(p) => parse_port(p)?,
    };
    let after = &rest[auth_end..];
    let path_end = after
        .as_bytes()
        .iter()
        .position(|&b| matches!(b, b'?' | b'#'))
        .unwrap_or(after.len());
    Some(Parts {
        host,
        port,
        path: &after[..path_end],
        tail: &after[path_end..],
    })
}

fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if authority.starts_with('[') {
        let close = authority.find(']')?;
        let host = &authority[..=close];
        let after = &authority[close + 1..];
        match after.strip_prefix(':') {
            Some(port) => Some((host, Some(port))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) if !host.is_empty() => Some((host, Some(port))),
            Some(_) => None,
            None => Some((authority, None)),
        }
    }
}

/// Digits only (leading zeros allowed, as browsers do), at most 65535.
fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u32>().ok().and_then(|n| u16::try_from(n).ok())
}

/// Strips a case-insensitive `http://` / `https://` and says which it was.
fn strip_scheme(url: &str) -> Option<(&'static str, &str)> {
    for scheme in ["https", "http"] {
        let n = scheme.len();
        if url.len() > n + 3
            && url.as_bytes()[..n].eq_ignore_ascii_case(scheme.as_bytes())
            && &url.as_bytes()[n..n + 3] == b"://"
        {
            return Some((scheme, &url[n + 3..]));
        }
    }
    None
}

/// A `.` or `..` segment (also percent-encoded) would let a path that is
/// textually under the base path resolve outside it.
fn has_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let mut rest = seg.as_bytes();
        let mut dots = 0;
        while !rest.is_empty() && dots < 3 {
            if rest[0] == b'.' {
                rest = &rest[1..];
            } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(b"%2e") {
                rest = &rest[3..];
            } else {
                return false;
            }
            dots += 1;
        }
        rest.is_empty() && (dots == 1 || dots == 2)
    })
}

impl LinkTarget {
    /// `base_url` is the active environment's base (scheme http/https, host,
    /// optional port, optional path prefix); `replacement` is what replaces
    /// it in rewritten links, e.g. `http://tollgate.internal:8080/oas`.
    pub fn new(base_url: &str, replacement: &str) -> Result<Self, InvalidBase> {
        let (scheme, rest) = strip_scheme(base_url).ok_or(InvalidBase("scheme must be http or https"))?;
        let parts = split_after_scheme(rest, default_port(scheme)).ok_or(InvalidBase("bad authority"))?;
        if !valid_authority(parts.host) {
            return Err(InvalidBase("bad host"));
        }
        if !parts.tail.is_empty() {
            return Err(InvalidBase("query or fragment not allowed"));
        }
        if parts.path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'\\') {
            return Err(InvalidBase("bad path"));
        }
        if has_dot_segment(parts.path) {
            return Err(InvalidBase("dot segment in path"));
        }
        Ok(Self {
            scheme,
            host: parts.host.to_ascii_lowercase(),
            port: parts.port,
            path: parts.path.trim_end_matches('/').to_owned(),
            replacement: replacement.trim_end_matches('/').to_owned(),
        })
    }

    /// The rewritten form of `url` when it points into the base URL's origin
    /// and path; `None` (without allocating) for anything else.
    pub fn rewrite(&self, url: &str) -> Option<String> {
        let (scheme, rest) = strip_scheme(url)?;
        if scheme != self.scheme {
            return None;
        }
        let parts = split_after_scheme(rest, default_port(scheme))?;
        if parts.port != self.port || !parts.host.eq_ignore_ascii_case(&self.host) {
            return None;
        }
        let under = parts.path.strip_prefix(self.path.as_str())?;
        if !(under.is_empty() || under.starts_with('/')) {
            return None;
        }
        // Whitespace and controls are stripped or rejected inconsistently by
        // clients, and `\` is a path separator to browsers: refuse them
        // rather than guess what the partner meant.
        if url.bytes().any(|b| b <= b' ' || b == 0x7f) || under.contains('\\') {
            return None;
        }
        if has_dot_segment(under) {
            return None;
        }
        let mut out = String::with_capacity(self.replacement.len() + under.len() + parts.tail.len());
        out.push_str(&self.replacement);
        out.push_str(under);
        out.push_str(parts.tail);
        Some(out)
    }
}

/// Whether a caller's `Host` header may be written into a link as
/// `http://<host>`: a DNS name or IPv4 address, or a bracketed IPv6 literal,
/// with an optional numeric port, and nothing that could smuggle in another
/// authority, path or header (CR, LF, spaces, `/`, `@`, `\`, ...).
pub fn valid_authority(host: &str) -> bool {
    if host.is_empty() || host.len() > 261 {
        return false;
    }
    let (name, port) = if let Some(inner) = host.strip_prefix('[') {
        let Some(close) = inner.find(']') else {
            return false;
        };
        let literal = &inner[..close];
        if literal.is_empty()
            || !literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        let after = &inner[close + 1..];
        match after.strip_prefix(':') {
            Some(port) => (literal, Some(port)),
            None if after.is_empty() => (literal, None),
            None => return false,
        }
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        {
            return false;
        }
        (name, port)
    };
    debug_assert!(!name.is_empty());
    match port {
        None => true,
        Some(p) => parse_port(p).is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(base: &str) -> LinkTarget {
        LinkTarget::new(base, "http://tollgate.internal:8080/oas").unwrap()
    }

    #[test]
    fn same_origin_under_base_path_is_rewritten() {
        let t = target("https://api.example.com/v1");
        let cases = [
            ("https://api.example.com/v1", "http://tollgate.internal:8080/oas"),
            (
                "https://api.example.com/v1/",
                "http://tollgate.internal:8080/oas/",
            ),
            (
                "https://api.example.com/v1/x",
                "http://tollgate.internal:8080/oas/x",
            ),
            (
                "https://api.example.com/v1?q",
                "http://tollgate.internal:8080/oas?q",
            ),
            (
                "https://api.example.com/v1#f",
                "http://tollgate.internal:8080/oas#f",
            ),
            (
                "https://api.example.com/v1/api/organisations/?page=2",
                "http://tollgate.internal:8080/oas/api/organisations/?page=2",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(t.rewrite(input).as_deref(), Some(want), "{input}");
        }
    }

    #[test]
    fn base_path_boundary() {
        let t = target("https://api.example.com/v1");
        for input in [
            "https://api.example.com/v10",
            "https://api.example.com/v10/x",
            "https://api.example.com/v",
            "https://api.example.com/",
            "https://api.example.com",
            "https://api.example.com?q",
            "https://api.example.com/V1/x",
            "https://api.example.com/other/v1/x",
            "https://api.example.com/%761/x",
        ] {
            assert_eq!(t.rewrite(input), None, "{input}");
        }
    }

    #[test]
    fn trailing_slash_in_base_path_is_ignored() {
        let t = target("https://api.example.com/v1/");
        assert_eq!(
            t.rewrite("https://api.example.com/v1/x").as_deref(),
            Some("http://tollgate.internal:8080/oas/x")
        );
        assert_eq!(
            t.rewrite("https://api.example.com/v1").as_deref(),
            Some("http://tollgate.internal:8080/oas")
        );
        assert_eq!(t.rewrite("https://api.example.com/v1x"), None);
    }

    #[test]
    fn root_base_matches_every_path() {
        let t = target("https://api.example.com");
        assert_eq!(
            t.rewrite("https://api.example.com").as_deref(),
            Some("http://tollgate.internal:8080/oas")
        );
        assert_eq!(
            t.rewrite("https://api.example.com?page=2").as_deref(),
            Some("http://tollgate.internal:8080/oas?page=2")
        );
        assert_eq!(
            t.rewrite("https://api.example.com/a/b").as_deref(),
            Some("http://tollgate.internal:8080/oas/a/b")
        );
    }

    #[test]
    fn other_origins_are_left_alone() {
        let t = target("https://api.example.com");
        for input in [
            "https://api.example.com.evil.net/x",
            "https://evilapi.example.com/x",
            "https://api.example.com:8443/x",
            "http://api.example.com/x",
            "http://api.example.com:443/x",
            "https://user@api.example.com/x",
            "https://user:pw@api.example.com/x",
            "https://api.example.com@evil.net/x",
            "ftp://api.example.com/x",
            "/x",
            "x/y",
            "//api.example.com/x",
            "api.example.com/x",
            "",
            "https://",
            "https:///x",
            "https:api.example.com/x",
            "https:/api.example.com/x",
            "https:\\\\api.example.com/x",
            "https://api.example.com\\@evil.net/x",
            "https://:443/x",
            "https://api.example.com:99999/x",
            "https://api.example.com:4a3/x",
            "https://api.example.com./x",
            " https://api.example.com/x",
            "https://api.example.com/x y",
            "https://api.example.com/x\n",
            "https://api.example.com/a/../../admin",
            "https://api.example.com/a/%2e%2E/admin",
            "https://api.example.com/a\\..\\admin",
            "not a url at all",
        ] {
            assert_eq!(t.rewrite(input), None, "{input:?}");
        }
    }

    #[test]
    fn default_ports_are_made_explicit() {
        let https = target("https://api.example.com/v1");
        for input in [
            "https://api.example.com:443/v1/x",
            "https://api.example.com:/v1/x",
            "https://api.example.com:0443/v1/x",
        ] {
            assert_eq!(
                https.rewrite(input).as_deref(),
                Some("http://tollgate.internal:8080/oas/x"),
                "{input}"
            );
        }
        let explicit = target("https://api.example.com:443/v1");
        assert_eq!(
            explicit.rewrite("https://api.example.com/v1/x").as_deref(),
            Some("http://tollgate.internal:8080/oas/x")
        );
        let http = target("http://api.example.com");
        assert_eq!(
            http.rewrite("http://api.example.com:80/x").as_deref(),
            Some("http://tollgate.internal:8080/oas/x")
        );
        assert_eq!(http.rewrite("http://api.example.com:8080/x"), None);
        assert_eq!(http.rewrite("https://api.example.com/x"), None);
        let custom = target("http://127.0.0.1:9001/api");
        assert_eq!(
            custom.rewrite("http://127.0.0.1:9001/api/p?x=1").as_deref(),
            Some("http://tollgate.internal:8080/oas/p?x=1")
        );
        assert_eq!(custom.rewrite("http://127.0.0.1/api/p"), None);
        assert_eq!(custom.rewrite("http://127.0.0.1:80/api/p"), None);
    }

    #[test]
    fn scheme_and_host_compare_case_insensitively() {
        let t = target("https://API.Example.com/v1");
        for input in [
            "HTTPS://api.example.com/v1/x",
            "https://API.EXAMPLE.COM/v1/x",
            "HtTpS://Api.Example.Com:443/v1/x",
        ] {
            assert_eq!(
                t.rewrite(input).as_deref(),
                Some("http://tollgate.internal:8080/oas/x"),
                "{input}"
            );
        }
    }

    #[test]
    fn query_and_fragment_are_kept_byte_for_byte() {
        let t = target("https://api.example.com/v1");
        assert_eq!(
            t.rewrite("https://api.example.com/v1/a%2Fb?q=A%20b&x=/../y#Frag/..")
                .as_deref(),
            Some("http://tollgate.internal:8080/oas/a%2Fb?q=A%20b&x=/../y#Frag/..")
        );
        assert_eq!(
            t.rewrite("https://api.example.com/v1/caf\u{e9}?n=\u{e9}")
                .as_deref(),
            Some("http://tollgate.internal:8080/oas/caf\u{e9}?n=\u{e9}")
        );
        // `\` only means a path separator before the query.
        assert_eq!(
            t.rewrite("https://api.example.com/v1/a?x=\\y#\\z").as_deref(),
            Some("http://tollgate.internal:8080/oas/a?x=\\y#\\z")
        );
    }

    #[test]
    fn ipv6_hosts() {
        let t = target("http://[::1]:9000/base");
        assert_eq!(
            t.rewrite("http://[::1]:9000/base/x").as_deref(),
            Some("http://tollgate.internal:8080/oas/x")
        );
        assert_eq!(t.rewrite("http://[::1]/base/x"), None);
        assert_eq!(t.rewrite("http://[::2]:9000/base/x"), None);
        assert_eq!(t.rewrite("http://[::1]x:9000/base/x"), None);
    }

    #[test]
    fn replacement_trailing_slash_is_trimmed() {
        let t = LinkTarget::new("https://api.example.com", "http://gw/p/").unwrap();
        assert_eq!(t.replacement, "http://gw/p");
        assert_eq!(
            t.rewrite("https://api.example.com/x").as_deref(),
            Some("http://gw/p/x")
        );
    }

    #[test]
    fn invalid_bases_are_refused() {
        for base in [
            "ftp://api.example.com",
            "api.example.com",
            "https://",
            "https://user@api.example.com",
            "https://api.example.com/v1?x=1",
            "https://api.example.com/v1#f",
            "https://api.example.com:99999",
            "https://api.example.com/a/../b",
            "https://api example.com",
        ] {
            assert!(LinkTarget::new(base, "http://gw").is_err(), "{base}");
        }
    }

    #[test]
    fn authority_validation() {
        for ok in [
            "localhost",
            "localhost:8080",
            "tollgate.internal:8080",
            "my_service:80",
            "10.0.0.1",
            "10.0.0.1:65535",
            "[::1]",
            "[::1]:8080",
            "[2001:DB8::1]",
            "EXAMPLE.com",
        ] {
            assert!(valid_authority(ok), "{ok}");
        }
        for bad in [
            "",
            "a b",
            "a\r\nX-Injected: 1",
            "a\n",
            "a/b",
            "evil.net/x",
            "user@host",
            "a\\b",
            "host:",
            "host:abc",
            "host:65536",
            "host:8080:1",
            ":8080",
            "[::1",
            "[]",
            "[::1]x",
            "[::1]:",
            "[::g]",
            "h\u{e9}st",
            "a?b",
            "a#b",
            "a%20b",
        ] {
            assert!(!valid_authority(bad), "{bad:?}");
        }
    }
}
