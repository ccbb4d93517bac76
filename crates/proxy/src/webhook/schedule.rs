//! When a failed delivery is tried again, and when it becomes a dead letter: the policy, as pure
//! functions with table tests. The loop that delivers is in `deliver.rs`.

use std::time::Duration;

/// 5 s, 30 s, 2 m, 10 m, 30 m, 1 h, then hourly.
const STEPS_SECS: [u64; 6] = [5, 30, 120, 600, 1800, 3600];

/// How one delivery attempt ended, as far as the policy cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The service answered with this status.
    Status(u16),
    /// No answer: connect error, reset, or the delivery timeout.
    NetworkError,
}

/// What to do with the event after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: delivered; the event leaves the queue (its id stays for dedupe).
    Delivered,
    /// Try again at this unix time (ms).
    RetryAt(i64),
    /// Never again unless replayed.
    Dead(DeadReason),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadReason {
    /// A 4xx other than 408 and 429: the service refuses this event; retrying cannot help.
    Refused,
    /// `max_age` passed while retrying.
    TooOld,
}

impl DeadReason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            DeadReason::Refused => "refused by the service",
            DeadReason::TooOld => "max_age reached",
        }
    }
}

/// The delay before attempt `failed + 1`, after `failed` (≥ 1) failed attempts, with ±20 %
/// jitter (`jitter` in `[0, 1)`) so a fleet of events retried after one outage spreads out.
pub(crate) fn retry_delay(failed: u32, jitter: f64) -> Duration {
    let index = (failed.max(1) - 1) as usize;
    let base = STEPS_SECS[index.min(STEPS_SECS.len() - 1)];
    Duration::from_secs(base).mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// Decides what follows an attempt.
///
/// `failed` counts failed attempts including this one; `retry_after` is the service's own
/// `Retry-After` (honoured when longer than the schedule). The last retry is moved to the
/// `max_age` boundary rather than skipped, so every event gets a try at its deadline.
pub(crate) fn verdict(
    outcome: Outcome,
    failed: u32,
    retry_after: Option<Duration>,
    received_ms: i64,
    now_ms: i64,
    max_age: Duration,
    jitter: f64,
) -> Verdict {
    let retryable = match outcome {
        Outcome::Status(s) if (200..300).contains(&s) => return Verdict::Delivered,
        Outcome::Status(408 | 429) | Outcome::NetworkError => true,
        Outcome::Status(s) => s >= 500,
    };
    if !retryable {
        return Verdict::Dead(DeadReason::Refused);
    }
    let deadline = received_ms.saturating_add(millis(max_age));
    if now_ms >= deadline {
        return Verdict::Dead(DeadReason::TooOld);
    }
    let delay = retry_delay(failed, jitter).max(retry_after.unwrap_or_default());
    Verdict::RetryAt(now_ms.saturating_add(millis(delay)).min(deadline))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    #[test]
    fn the_schedule_without_jitter_is_the_documented_one() {
        // jitter 0.5 is the midpoint: exactly the base delay.
        let got: Vec<u64> = (1..=9).map(|n| retry_delay(n, 0.5).as_secs()).collect();
        assert_eq!(got, [5, 30, 120, 600, 1800, 3600, 3600, 3600, 3600]);
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(4));
        assert_eq!(retry_delay(1, 1.0), Duration::from_secs(6));
        assert_eq!(retry_delay(6, 0.0), Duration::from_secs(2880));
        assert_eq!(retry_delay(6, 1.0), Duration::from_secs(4320));
        // Out-of-range jitter cannot escape the band.
        assert_eq!(retry_delay(2, 7.0), Duration::from_secs(36));
        assert_eq!(retry_delay(0, 0.5), Duration::from_secs(5));
    }

    #[test]
    fn statuses_are_classified_as_the_readme_says() {
        let v = |o| verdict(o, 1, None, 0, 1_000, Duration::from_secs(72 * 3600), 0.5);
        assert_eq!(v(Outcome::Status(200)), Verdict::Delivered);
        assert_eq!(v(Outcome::Status(204)), Verdict::Delivered);
        for retried in [408, 429, 500, 502, 503, 504] {
            assert_eq!(v(Outcome::Status(retried)), Verdict::RetryAt(6_000), "{retried}");
        }
        assert_eq!(v(Outcome::NetworkError), Verdict::RetryAt(6_000));
        for dead in [400, 401, 403, 404, 410, 422] {
            assert_eq!(
                v(Outcome::Status(dead)),
                Verdict::Dead(DeadReason::Refused),
                "{dead}"
            );
        }
        // A redirect is not followed and not a success: the service must fix its URL.
        assert_eq!(v(Outcome::Status(301)), Verdict::Dead(DeadReason::Refused));
    }

    #[test]
    fn a_longer_retry_after_wins_and_a_shorter_one_does_not() {
        let max_age = Duration::from_secs(72 * 3600);
        let long = verdict(
            Outcome::Status(429),
            1,
            Some(Duration::from_secs(90)),
            0,
            0,
            max_age,
            0.5,
        );
        assert_eq!(long, Verdict::RetryAt(90_000));
        let short = verdict(
            Outcome::Status(429),
            1,
            Some(Duration::from_secs(1)),
            0,
            0,
            max_age,
            0.5,
        );
        assert_eq!(short, Verdict::RetryAt(5_000));
    }

    #[test]
    fn max_age_moves_the_last_try_to_the_deadline_then_kills() {
        let max_age = Duration::from_secs(72 * 3600);
        let received = 1_000;
        let deadline = received + 72 * HOUR_MS;
        // An hourly retry that would land past the deadline lands on it.
        let near = verdict(
            Outcome::Status(503),
            20,
            None,
            received,
            deadline - 60_000,
            max_age,
            0.5,
        );
        assert_eq!(near, Verdict::RetryAt(deadline));
        // At the deadline: dead.
        let at = verdict(Outcome::Status(503), 21, None, received, deadline, max_age, 0.5);
        assert_eq!(at, Verdict::Dead(DeadReason::TooOld));
        // A success at the deadline still counts.
        let ok = verdict(
            Outcome::Status(200),
            21,
            None,
            received,
            deadline + 5,
            max_age,
            0.5,
        );
        assert_eq!(ok, Verdict::Delivered);
    }
}
