//! The clocks, in one place.
//!
//! Token expiries, Redis TTLs and webhook times are unix times that cross process boundaries
//! (JWT `exp`, rows in the webhook store), so they come from the system clock; everything that
//! only measures a wait uses tokio's clock instead, which tests can pause: the pauses, the token
//! expiries on the request path, and in unit tests (through [`TokioClock`]) governor's GCRA
//! limiters, so that `tokio::time::pause()` drives every limiter there too.
//!
//! Outside unit tests the limiters run on quanta's clock (governor's default), not tokio's: one
//! clock everywhere would be simpler, but reading tokio's clock in a limiter made an admission
//! cost 129 ns against quanta's 67 ns in the request-path bench, and issue 19 asked that the
//! limiter not get slower. Outside tests both are the same monotonic real time, so only a test
//! can tell them apart, and tests get tokio's. `clippy.toml` disallows governor's clocks
//! everywhere else, so this file is the only one that picks a limiter's clock.

use std::time::{Duration, SystemTime};

use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{NotUntil, Quota, RateLimiter};

/// governor's clock on tokio's: an instant is the time since the clock was made. The limiters run
/// on it in unit tests, so `tokio::time::pause()` drives them; see [`LimiterClock`].
#[cfg(test)]
#[derive(Debug, Clone)]
pub(crate) struct TokioClock {
    origin: tokio::time::Instant,
}

#[cfg(test)]
impl Default for TokioClock {
    fn default() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }
}

#[cfg(test)]
impl Clock for TokioClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.origin.elapsed()
    }
}

/// The limiters' clock. Under test, tokio's ([`TokioClock`]), so paused-clock tests drive them.
/// Otherwise quanta's TSC clock, governor's default: reading tokio's clock costs more than the
/// rest of an admission (the request-path bench measured 129 ns against 67 ns per admission),
/// and outside tests both clocks are the same monotonic real time.
#[cfg(test)]
pub(crate) type LimiterClock = TokioClock;
// The one place governor's clock is named (see the module doc for why quanta's, and `clippy.toml`).
#[cfg(not(test))]
#[allow(clippy::disallowed_types)]
pub(crate) type LimiterClock = governor::clock::QuantaClock;

/// A direct (unkeyed) GCRA limiter on [`LimiterClock`].
pub(crate) type Gcra =
    RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<<LimiterClock as Clock>::Instant>>;

/// A limiter for `quota`.
pub(crate) fn gcra(quota: Quota) -> Gcra {
    RateLimiter::direct_with_clock(quota, LimiterClock::default())
}

/// How long from now until `limiter` admits what it just refused.
pub(crate) fn wait_of(limiter: &Gcra, refused: &NotUntil<<LimiterClock as Clock>::Instant>) -> Duration {
    refused.wait_time_from(limiter.clock().now())
}

/// The system clock: the one place it is read (`clippy.toml` disallows it elsewhere).
#[allow(clippy::disallowed_methods)]
pub(crate) fn system_now() -> SystemTime {
    SystemTime::now()
}

/// Seconds since the epoch, with a fraction.
pub(crate) fn now_unix() -> f64 {
    system_now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Milliseconds since the epoch: the webhook store's unit.
pub(crate) fn now_unix_ms() -> i64 {
    system_now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
