//! Wall-clock readings, in one place.
//!
//! Token expiries, Redis TTLs and webhook times are unix times that cross process boundaries
//! (JWT `exp`, rows in the webhook store), so they come from the system clock; everything that
//! only measures a wait uses tokio's clock instead, which tests can pause.

use std::time::SystemTime;

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
