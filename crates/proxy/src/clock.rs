//! The clocks, in one place.
//!
//! Token expiries, Redis TTLs and webhook times are unix times that cross process boundaries
//! (JWT `exp`, rows in the webhook store), so they come from the system clock; everything that
//! only measures a wait uses tokio's clock instead, which tests can pause: the pauses, the token
//! expiries on the request path, and (through [`TokioClock`]) governor's GCRA limiters, so that
//! `tokio::time::pause()` drives every limiter too.

use std::time::{Duration, SystemTime};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

/// governor's clock on tokio's: an instant is the time since the clock was made.
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// A direct (unkeyed) GCRA limiter on [`TokioClock`].
pub(crate) type Gcra = RateLimiter<NotKeyed, InMemoryState, TokioClock, NoOpMiddleware<Duration>>;

/// A limiter for `quota`, on tokio's clock.
pub(crate) fn gcra(quota: Quota) -> Gcra {
    RateLimiter::direct_with_clock(
        quota,
        TokioClock {
            origin: tokio::time::Instant::now(),
        },
    )
}

/// How long from now until `limiter` admits what it just refused.
pub(crate) fn wait_of(limiter: &Gcra, refused: &NotUntil<Duration>) -> Duration {
    refused.wait_time_from(limiter.clock().now())
}

/// Seconds since the epoch, with a fraction.
pub(crate) fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Milliseconds since the epoch: the webhook store's unit.
pub(crate) fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
