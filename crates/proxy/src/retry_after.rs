//! `Retry-After` (RFC 9110 §10.2.3): delta-seconds or an HTTP-date, as a wait from now; and
//! `retry-after-ms` (milliseconds, as some AI APIs send it), which wins when both are present
//! since it is the finer. The other rate-limit dialects are `rate_headers.rs`'s.

use std::time::{Duration, SystemTime};

use http::{header, HeaderMap};

/// The wait a response asks for, if it carries a parseable `Retry-After`. The clock is read only
/// for an HTTP-date: most responses carry no `Retry-After` and should not pay for one.
pub fn parse(headers: &HeaderMap, now: impl FnOnce() -> SystemTime) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms >= 0.0)
    {
        return Some(crate::rate_headers::seconds(ms / 1000.0));
    }
    let value = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now()).unwrap_or(Duration::ZERO))
}

/// Whole seconds, rounded up, for a `Retry-After` we send.
pub fn header_value(wait: Duration) -> http::HeaderValue {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    http::HeaderValue::from(secs.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, v.parse().unwrap());
        h
    }

    #[test]
    fn parses_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse(&with("7"), || now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse(&with(&later), || now), Some(Duration::from_secs(30)));
        let past = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse(&with(&past), || now), Some(Duration::ZERO));
        assert_eq!(parse(&with("soon"), || now), None);
        assert_eq!(parse(&with("-3"), || now), None);
        assert_eq!(parse(&HeaderMap::new(), || now), None);
    }

    #[test]
    fn retry_after_ms_wins_and_hostile_values_are_ignored() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut h = with("7");
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(parse(&h, || now), Some(Duration::from_millis(1500)));
        for hostile in ["-1", "NaN", "x", "inf"] {
            h.insert("retry-after-ms", hostile.parse().unwrap());
            assert_eq!(parse(&h, || now), Some(Duration::from_secs(7)), "{hostile}");
        }
        h.insert("retry-after-ms", "1e300".parse().unwrap());
        assert_eq!(parse(&h, || now), Some(Duration::MAX), "saturates, never panics");
    }

    #[test]
    fn rounds_up_to_whole_seconds() {
        assert_eq!(header_value(Duration::from_millis(1)), "1");
        assert_eq!(header_value(Duration::from_millis(2001)), "3");
        assert_eq!(header_value(Duration::from_secs(2)), "2");
        assert_eq!(header_value(Duration::ZERO), "1");
    }
}
