//! When to try a failing token endpoint, or a lost Redis connection, again: a pure policy, apart
//! from the loops that use it (`credentials/cache.rs`, `shared/mod.rs`). A bottom module: it
//! imports nothing of the crate, so both sides can use it without depending on each other.
//!
//! Exponential with jitter: the n-th consecutive failure waits `base * 2^(n-1)`, capped at 60 s, then
//! scaled by a random factor in [0.8, 1.0] so replicas drift apart. A partner's `Retry-After` wins
//! when it is longer. The first retry comes after about 2 s ("a few seconds").

use std::time::Duration;

pub const BASE: Duration = Duration::from_secs(2);
pub const CAP: Duration = Duration::from_secs(60);

/// The wait after `failures` consecutive failures (`failures >= 1`), given a jitter draw in [0, 1).
pub fn delay(failures: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    let raw = BASE.saturating_mul(1u32 << exp).min(CAP);
    let jittered = raw.mul_f64(0.8 + 0.2 * jitter.clamp(0.0, 1.0));
    match retry_after {
        Some(ra) if ra > jittered => ra.min(CAP.saturating_mul(10)),
        _ => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_to_the_cap() {
        assert_eq!(delay(1, None, 1.0), Duration::from_secs(2));
        assert_eq!(delay(2, None, 1.0), Duration::from_secs(4));
        assert_eq!(delay(3, None, 1.0), Duration::from_secs(8));
        assert_eq!(delay(6, None, 1.0), Duration::from_secs(60));
        assert_eq!(delay(1000, None, 1.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_a_little() {
        assert_eq!(delay(1, None, 0.0), Duration::from_millis(1600));
        assert!(delay(3, None, 0.5) < Duration::from_secs(8));
        assert!(delay(3, None, 0.5) >= Duration::from_millis(6400));
    }

    #[test]
    fn a_longer_retry_after_wins() {
        assert_eq!(
            delay(1, Some(Duration::from_secs(30)), 1.0),
            Duration::from_secs(30)
        );
        assert_eq!(
            delay(6, Some(Duration::from_secs(5)), 1.0),
            Duration::from_secs(60)
        );
    }

    /// Under total failure the schedule alone keeps a 60 s window to a handful of calls.
    #[test]
    fn total_failure_stays_far_below_ten_a_minute() {
        let mut t = Duration::ZERO;
        let mut calls = vec![t];
        for n in 1..40 {
            t += delay(n, None, 0.0);
            calls.push(t);
        }
        for (i, start) in calls.iter().enumerate() {
            let in_window = calls[i..]
                .iter()
                .take_while(|c| **c < *start + Duration::from_secs(60))
                .count();
            assert!(in_window <= 10, "{in_window} calls in the minute from {start:?}");
        }
    }
}
