//! Wall-clock helpers: Unix seconds and RFC 3339 timestamps (UTC, whole seconds, through
//! `humantime`) for JSON bodies and JWT claims.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `2025-01-31T12:00:00Z` for a Unix time in seconds.
pub(crate) fn rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

pub(crate) fn rfc3339_now() -> String {
    rfc3339(unix_now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // The `iat` of the OAS guide's sample token.
        assert_eq!(rfc3339(1_775_790_377), "2026-04-10T03:06:17Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }
}
