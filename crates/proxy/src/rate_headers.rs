//! What a partner announces about its rate limit, in every dialect partners send, read in one
//! place: the IETF structured `RateLimit` field (draft 7's `limit=, remaining=, reset=`, and
//! draft 8's `"policy";r=;t=` with `RateLimit-Policy: "policy";q=;w=`), the older
//! `RateLimit-Limit` / `-Remaining` / `-Reset` triple, and the `X-RateLimit-*` triple. (`Retry-After`
//! and `retry-after-ms` are `retry_after.rs`'s.)
//!
//! A reset is read by magnitude, because partners disagree on its unit: at least 10^12 is a unix
//! time in milliseconds, at least 10^9 a unix time in seconds, anything smaller seconds from now.
//! A reset in the past reads as zero. Values that are negative, not numbers, or absurdly large are
//! ignored or saturate; nothing here panics, and the caller caps any wait at `max_pause`.

use std::time::Duration;

use http::HeaderMap;

/// What one response said about the partner's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Announced {
    /// Requests per window.
    pub limit: Option<u64>,
    /// Requests left in the current window.
    pub remaining: Option<u64>,
    /// Until the window resets.
    pub reset: Option<Duration>,
}

impl Announced {
    /// Out of budget until the reset: the wait, if the partner said so.
    pub fn exhausted_for(&self) -> Option<Duration> {
        (self.remaining? == 0).then_some(self.reset?)
    }
}

/// Reads the first dialect present. `now_unix` (seconds since 1970) is asked only for a reset
/// given as a unix time.
pub fn read(headers: &HeaderMap, now_unix: impl Fn() -> f64) -> Option<Announced> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(field) = text("ratelimit") {
        if let Some(found) = structured(field, text("ratelimit-policy"), &now_unix) {
            return Some(found);
        }
    }
    // Static names: this runs on every partner answer, which must not allocate to ask.
    for [limit, remaining, reset_at] in [
        ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"],
        ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"],
    ] {
        let found = Announced {
            limit: text(limit).and_then(count),
            remaining: text(remaining).and_then(count),
            reset: text(reset_at).and_then(|v| reset(v, &now_unix)),
        };
        if found != Announced::default() {
            return Some(found);
        }
    }
    None
}

/// `RateLimit: limit=100, remaining=50, reset=30` (draft 7) or `RateLimit: "default";r=50;t=30`
/// with `RateLimit-Policy: "default";q=100;w=60` (draft 8 and later; the first policy named).
fn structured(field: &str, policy: Option<&str>, now_unix: &impl Fn() -> f64) -> Option<Announced> {
    let mut found = Announced::default();
    // Draft 7: one dictionary.
    for item in field.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key.trim().to_ascii_lowercase().as_str() {
            "limit" => found.limit = count(value),
            "remaining" => found.remaining = count(value),
            "reset" => found.reset = reset(value, now_unix),
            _ => {}
        }
    }
    if found != Announced::default() {
        return Some(found);
    }
    // Draft 8: a list of `name;param=value;...`; the first member speaks.
    let first = field.split(',').next()?;
    let (name, params) = first.split_once(';')?;
    for param in params.split(';') {
        let Some((key, value)) = param.split_once('=') else {
            continue;
        };
        match key.trim() {
            "r" => found.remaining = count(value),
            "t" => found.reset = reset(value, now_unix),
            _ => {}
        }
    }
    let name = name.trim();
    found.limit = policy.and_then(|p| {
        p.split(',')
            .find(|member| member.split(';').next().map(str::trim) == Some(name))
            .or_else(|| p.split(',').next())
            .and_then(|member| {
                member
                    .split(';')
                    .find_map(|param| param.trim().strip_prefix("q="))
                    .and_then(count)
            })
    });
    (found != Announced::default()).then_some(found)
}

/// A count of requests: a non-negative whole number (a fraction is truncated).
fn count(value: &str) -> Option<u64> {
    let v: f64 = value.trim().trim_matches('"').parse().ok()?;
    (v.is_finite() && v >= 0.0).then(|| v.min(u64::MAX as f64) as u64)
}

/// A reset by magnitude (see the module doc), as a wait from now.
fn reset(value: &str, now_unix: &impl Fn() -> f64) -> Option<Duration> {
    let v: f64 = value.trim().trim_matches('"').parse().ok()?;
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let secs = if v >= 1e12 {
        v / 1000.0 - now_unix()
    } else if v >= 1e9 {
        v - now_unix()
    } else {
        v
    };
    Some(seconds(secs))
}

/// Seconds as a wait: zero when negative, saturating instead of panicking when huge.
pub(crate) fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_700_000_000.0;

    fn read_all(pairs: &[(&str, &str)]) -> Option<Announced> {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        read(&h, || NOW)
    }

    fn a(limit: Option<u64>, remaining: Option<u64>, reset: Option<u64>) -> Option<Announced> {
        Some(Announced {
            limit,
            remaining,
            reset: reset.map(Duration::from_secs),
        })
    }

    /// (what, the headers, what they announce)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], Option<Announced>);

    #[test]
    fn every_dialect_reads_the_same_budget() {
        let cases: &[Case] = &[
            (
                "draft 7 structured",
                &[("ratelimit", "limit=100, remaining=5, reset=30")],
                a(Some(100), Some(5), Some(30)),
            ),
            (
                "draft 8 structured with its policy",
                &[
                    ("ratelimit", "\"default\";r=5;t=30"),
                    ("ratelimit-policy", "\"burst\";q=10;w=1, \"default\";q=100;w=60"),
                ],
                a(Some(100), Some(5), Some(30)),
            ),
            (
                "draft 8 without a policy",
                &[("ratelimit", "\"default\";r=0;t=12")],
                a(None, Some(0), Some(12)),
            ),
            (
                "RateLimit-* triple",
                &[
                    ("ratelimit-limit", "50"),
                    ("ratelimit-remaining", "0"),
                    ("ratelimit-reset", "20"),
                ],
                a(Some(50), Some(0), Some(20)),
            ),
            (
                "X-RateLimit-* with delta seconds",
                &[("x-ratelimit-remaining", "3"), ("x-ratelimit-reset", "45")],
                a(None, Some(3), Some(45)),
            ),
            (
                "X-RateLimit-* with a unix time",
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1700000040"),
                ],
                a(None, Some(0), Some(40)),
            ),
            (
                "X-RateLimit-* with unix milliseconds",
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1700000009000"),
                ],
                a(None, Some(0), Some(9)),
            ),
            (
                "a unix time in the past is now",
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", "1690000000"),
                ],
                a(None, Some(0), Some(0)),
            ),
            ("nothing", &[("content-type", "text/plain")], None),
        ];
        for (what, headers, want) in cases {
            assert_eq!(read_all(headers), *want, "{what}");
        }
    }

    #[test]
    fn hostile_values_are_ignored_or_saturate_and_never_panic() {
        // (the value, what it reads as): not a number, negative or infinite is no reset; a
        // finite one too large for a wait is the largest wait (the caller caps it).
        let resets = [
            ("-5", None),
            ("abc", None),
            ("NaN", None),
            ("inf", None),
            ("1e400", None),
            ("-1e300", None),
            ("", None),
            ("\"\"", None),
            ("99999999999999999999999", Some(Duration::MAX)),
        ];
        let remainings = [
            ("0", Some(0)),
            ("-1", None),
            ("x", None),
            ("1e30", Some(u64::MAX)),
            ("NaN", None),
        ];
        for (reset, reset_read) in resets {
            for (remaining, remaining_read) in remainings {
                for dialect in ["ratelimit", "x-ratelimit"] {
                    let got = read_all(&[
                        (&format!("{dialect}-remaining"), remaining),
                        (&format!("{dialect}-reset"), reset),
                    ]);
                    let want = Announced {
                        limit: None,
                        remaining: remaining_read,
                        reset: reset_read,
                    };
                    assert_eq!(got.unwrap_or_default(), want, "{dialect} {remaining} {reset}");
                }
                let _ = read_all(&[(
                    "ratelimit",
                    &format!("limit=1, remaining={remaining}, reset={reset}"),
                )]);
                let _ = read_all(&[("ratelimit", &format!("\"p\";r={remaining};t={reset}"))]);
            }
        }
        // A reset of 1e300 seconds from now (no unix reading: below 1e9 is impossible, so it is
        // read as a unix time) saturates rather than panicking.
        let huge = read_all(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", "1e300")]);
        assert_eq!(huge.and_then(|a| a.exhausted_for()), Some(Duration::MAX));
        assert_eq!(
            read_all(&[("ratelimit-remaining", "-1"), ("ratelimit-reset", "-5")]),
            None
        );
    }

    #[test]
    fn only_a_spent_budget_with_a_reset_means_wait() {
        assert_eq!(
            a(Some(10), Some(0), Some(7)).unwrap().exhausted_for(),
            Some(Duration::from_secs(7))
        );
        assert_eq!(a(Some(10), Some(1), Some(7)).unwrap().exhausted_for(), None);
        assert_eq!(a(Some(10), Some(0), None).unwrap().exhausted_for(), None);
    }
}
