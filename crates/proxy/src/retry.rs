//! When to retry: a pure policy, kept apart from the loop in `pipeline` that retries.
//!
//! A retry is safe only when the request can be sent again unchanged (its body was kept) and either
//! nothing reached the partner (a connect error) or the method is idempotent (GET HEAD PUT DELETE
//! OPTIONS) or the caller sent an `Idempotency-Key`. Then 502, 503, 504 are retried, and a 429 whose
//! `Retry-After` fits in the time left. The wait is full-jitter exponential, or the partner's
//! `Retry-After` when longer; a retry that cannot happen before the deadline is not made.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use http::{HeaderMap, Method};
use tollgate_metrics::RetryReason;

use crate::config::Retry;

/// What one attempt came to, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The partner answered.
    Status {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No connection: no byte of the request reached the partner.
    ConnectFailed,
    /// The connection failed after the request may have been (partly) sent.
    Failed,
}

/// The request's properties that matter to retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// GET HEAD PUT DELETE OPTIONS, or any method with `Idempotency-Key`.
    pub idempotent: bool,
    /// The body was kept and can be sent again.
    pub replayable: bool,
}

impl Request {
    pub fn new(method: &Method, headers: &HeaderMap, replayable: bool) -> Self {
        let idempotent = matches!(
            *method,
            Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS
        ) || headers.contains_key("idempotency-key");
        Self {
            idempotent,
            replayable,
        }
    }
}

/// Whether to try again, and why.
pub fn should_retry(
    req: Request,
    outcome: Outcome,
    attempt: u32,
    policy: &Retry,
    time_left: impl FnOnce() -> Duration,
) -> Option<RetryReason> {
    if attempt >= policy.attempts.get() || !req.replayable {
        return None;
    }
    let reason = match outcome {
        Outcome::ConnectFailed => return Some(RetryReason::Connect),
        Outcome::Failed => return None,
        Outcome::Status { status: 502, .. } => RetryReason::Status502,
        Outcome::Status { status: 503, .. } => RetryReason::Status503,
        Outcome::Status { status: 504, .. } => RetryReason::Status504,
        Outcome::Status {
            status: 429,
            retry_after: Some(wait),
        } if wait < time_left() => RetryReason::Status429,
        Outcome::Status { .. } => return None,
    };
    req.idempotent.then_some(reason)
}

/// The wait before retry number `attempt` (the first retry is attempt 1): full jitter over
/// `backoff * 2^(attempt-1)` capped at `max_backoff`, or the partner's `Retry-After` when longer.
pub fn backoff(policy: &Retry, attempt: u32, retry_after: Option<Duration>, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let ceiling = policy.backoff.saturating_mul(1u32 << exp).min(policy.max_backoff);
    let wait = ceiling.mul_f64(jitter.clamp(0.0, 1.0));
    retry_after.map_or(wait, |ra| ra.max(wait))
}

/// The retry budget of one upstream: over a sliding 10 s window, retries may add at most 20% to
/// the first tries, with a floor of 3 per second, so an outage never becomes a retry storm.
///
/// Exact under concurrency (one short lock per first try and per retry): the check and the
/// withdrawal happen together, so no race can overdraw it.
#[derive(Debug)]
pub struct Budget {
    window: Mutex<Window>,
}

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_secs(1);
const RETRY_RATIO: f64 = 0.2;
const FLOOR_PER_SECOND: f64 = 3.0;

#[derive(Debug)]
struct Window {
    /// `(first tries, retries)` per one-second bucket; `current` is being filled.
    buckets: [(u64, u64); BUCKETS],
    current: usize,
    current_start: Instant,
}

impl Budget {
    pub fn new(now: Instant) -> Self {
        Self {
            window: Mutex::new(Window {
                buckets: [(0, 0); BUCKETS],
                current: 0,
                current_start: now,
            }),
        }
    }

    /// Counts a first try.
    pub fn deposit(&self, now: Instant) {
        let mut w = self.window.lock().expect("budget lock");
        w.roll(now);
        let i = w.current;
        w.buckets[i].0 += 1;
    }

    /// Takes one retry from the budget, if it has room.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut w = self.window.lock().expect("budget lock");
        w.roll(now);
        let (firsts, retries) = w.buckets.iter().fold((0, 0), |(f, r), b| (f + b.0, r + b.1));
        let allowed =
            RETRY_RATIO * firsts as f64 + FLOOR_PER_SECOND * (BUCKETS as f64 * BUCKET.as_secs_f64());
        if (retries + 1) as f64 > allowed {
            return false;
        }
        let i = w.current;
        w.buckets[i].1 += 1;
        true
    }
}

impl Window {
    /// Moves `current` to the bucket of `now`, emptying the buckets that fell out of the window.
    fn roll(&mut self, now: Instant) {
        let mut steps = 0;
        while now.saturating_duration_since(self.current_start) >= BUCKET && steps < BUCKETS {
            self.current = (self.current + 1) % BUCKETS;
            self.buckets[self.current] = (0, 0);
            self.current_start += BUCKET;
            steps += 1;
        }
        if now.saturating_duration_since(self.current_start) >= BUCKET {
            // Idle for longer than the window: everything has expired.
            self.current_start = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use super::*;

    #[test]
    fn budget_allows_the_floor_then_twenty_percent() {
        let t0 = Instant::now();
        let b = Budget::new(t0);
        // No traffic yet: the floor alone, 3/s over 10 s.
        let floor = (0..100).filter(|_| b.withdraw(t0)).count();
        assert_eq!(floor, 30);
        for _ in 0..100 {
            b.deposit(t0);
        }
        assert_eq!(
            (0..100).filter(|_| b.withdraw(t0)).count(),
            20,
            "20% of 100 first tries"
        );
    }

    #[test]
    fn budget_slides_over_ten_seconds() {
        let t0 = Instant::now();
        let b = Budget::new(t0);
        assert_eq!((0..100).filter(|_| b.withdraw(t0)).count(), 30);
        assert!(
            !b.withdraw(t0 + Duration::from_secs(9)),
            "still inside the window"
        );
        assert!(
            b.withdraw(t0 + Duration::from_secs(10)),
            "the first second's retries expired"
        );
        assert_eq!(
            (0..100)
                .filter(|_| b.withdraw(t0 + Duration::from_secs(60)))
                .count(),
            30,
            "idle resets"
        );
    }

    fn policy() -> Retry {
        Retry {
            attempts: NonZeroU32::new(3).unwrap(),
            backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(10),
        }
    }

    fn status(status: u16) -> Outcome {
        Outcome::Status {
            status,
            retry_after: None,
        }
    }

    const LONG: Duration = Duration::from_secs(30);

    #[test]
    fn decision_table() {
        let get = Request {
            idempotent: true,
            replayable: true,
        };
        let post = Request {
            idempotent: false,
            replayable: true,
        };
        let streamed_get = Request {
            idempotent: true,
            replayable: false,
        };
        let ra = |s: u64| Outcome::Status {
            status: 429,
            retry_after: Some(Duration::from_secs(s)),
        };
        let cases = [
            (get, status(502), Some(RetryReason::Status502)),
            (get, status(503), Some(RetryReason::Status503)),
            (get, status(504), Some(RetryReason::Status504)),
            (get, status(500), None),
            (get, status(404), None),
            (get, status(200), None),
            (get, status(429), None),
            (get, ra(2), Some(RetryReason::Status429)),
            (get, ra(60), None),
            (get, Outcome::ConnectFailed, Some(RetryReason::Connect)),
            (get, Outcome::Failed, None),
            (post, status(503), None),
            (post, ra(2), None),
            (post, Outcome::ConnectFailed, Some(RetryReason::Connect)),
            (streamed_get, status(503), None),
            (streamed_get, Outcome::ConnectFailed, None),
        ];
        for (req, outcome, want) in cases {
            assert_eq!(
                should_retry(req, outcome, 1, &policy(), || LONG),
                want,
                "{req:?} {outcome:?}"
            );
        }
    }

    #[test]
    fn attempts_count_the_first_try() {
        let get = Request {
            idempotent: true,
            replayable: true,
        };
        assert!(should_retry(get, status(503), 2, &policy(), || LONG).is_some());
        assert!(should_retry(get, status(503), 3, &policy(), || LONG).is_none());
    }

    #[test]
    fn idempotency_key_makes_any_method_retryable() {
        let mut h = HeaderMap::new();
        assert!(!Request::new(&Method::POST, &h, true).idempotent);
        h.insert("idempotency-key", "k-1".parse().unwrap());
        assert!(Request::new(&Method::POST, &h, true).idempotent);
        assert!(Request::new(&Method::PUT, &HeaderMap::new(), true).idempotent);
        assert!(!Request::new(&Method::PATCH, &HeaderMap::new(), true).idempotent);
    }

    #[test]
    fn backoff_is_full_jitter_exponential_and_honours_retry_after() {
        let p = policy();
        assert_eq!(backoff(&p, 1, None, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(&p, 3, None, 1.0), Duration::from_millis(800));
        assert_eq!(backoff(&p, 3, None, 0.5), Duration::from_millis(400));
        assert_eq!(backoff(&p, 30, None, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&p, 1, None, 0.0), Duration::ZERO);
        assert_eq!(
            backoff(&p, 1, Some(Duration::from_secs(2)), 1.0),
            Duration::from_secs(2)
        );
    }
}
