//! Single values every config section parses the same way: durations, sizes, URLs and path
//! prefixes, each error naming its key path. `validate.rs` (upstreams, server, shared) and the
//! sections in their own files (`webhook.rs`, `clients.rs`) all use these, so none of them has to
//! import another.

use std::net::IpAddr;
use std::time::Duration;

use url::{Host, Url};

use super::units;
use super::ConfigError;

pub(super) fn prefix(path: &str, p: String) -> Result<String, ConfigError> {
    if p.is_empty() {
        return Err(ConfigError::new(
            path,
            "the prefix is empty; write e.g. \"/osigu\"",
        ));
    }
    if !p.starts_with('/') {
        return Err(ConfigError::new(path, format!("`{p}` must start with `/`")));
    }
    let trimmed = if p.len() > 1 { p.trim_end_matches('/') } else { &p };
    let bad = trimmed.len() > 1
        && trimmed[1..].split('/').any(|seg| {
            seg.is_empty() || seg == "." || seg == ".." || seg.contains(['%', '?', '#', '\\', ';'])
        });
    if bad || trimmed.is_empty() {
        return Err(ConfigError::new(
            path,
            format!("`{p}` is not a plain path prefix (no empty or dot segments, `%`, `?`, `#`, `;`, `\\`)"),
        ));
    }
    Ok(trimmed.to_owned())
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum UrlUse {
    /// An upstream `base_url`: no query or fragment.
    Base,
    /// A token or login endpoint.
    Endpoint,
    /// `server.public_url`: where callers reach Tollgate; plain http anywhere.
    PublicUrl,
}

pub(super) fn url(path: &str, raw: &str, usage: UrlUse) -> Result<Url, ConfigError> {
    let u = Url::parse(raw)
        .map_err(|e| ConfigError::new(path, format!("`{raw}` is not an absolute http(s) URL ({e})")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(ConfigError::new(
            path,
            format!("`{raw}`: the scheme must be http or https"),
        ));
    }
    let Some(host) = u.host() else {
        return Err(ConfigError::new(path, format!("`{raw}` has no host")));
    };
    if !u.username().is_empty() || u.password().is_some() {
        return Err(ConfigError::new(
            path,
            "credentials in the URL are not allowed; use headers or auth",
        ));
    }
    if usage != UrlUse::Endpoint && (u.query().is_some() || u.fragment().is_some()) {
        return Err(ConfigError::new(
            path,
            format!("`{raw}` must not have a query or fragment"),
        ));
    }
    if usage != UrlUse::PublicUrl && u.scheme() == "http" && !is_loopback(&host) {
        return Err(ConfigError::new(
            path,
            format!("`{raw}`: plain http is only allowed to loopback hosts; use https"),
        ));
    }
    Ok(u)
}

fn is_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => IpAddr::V4(*ip).is_loopback(),
        Host::Ipv6(ip) => IpAddr::V6(*ip).is_loopback(),
    }
}

pub(super) fn dur(path: &str, v: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    units::duration(v.as_deref().unwrap_or(default)).map_err(|m| ConfigError::new(path, m))
}

/// A duration where zero makes no sense (a timeout of zero would fail every request).
pub(super) fn positive_dur(path: &str, v: Option<String>, default: &str) -> Result<Duration, ConfigError> {
    let d = dur(path, v, default)?;
    if d.is_zero() {
        return Err(ConfigError::new(path, "must be longer than zero"));
    }
    Ok(d)
}

pub(super) fn size(path: &str, v: Option<String>, default: &str) -> Result<u64, ConfigError> {
    units::size(v.as_deref().unwrap_or(default)).map_err(|m| ConfigError::new(path, m))
}
