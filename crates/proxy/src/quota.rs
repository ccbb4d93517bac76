//! The shape of a rate limit as GCRA sees it: one quota, used by the local limiters (governor),
//! the fleet's script in Redis (`shared/gcra.rs`) and the token limit alike, so all three admit
//! the same requests. A bottom module: it imports only the config type.
//!
//! `rate_limit = { requests, per, burst }` means: at most `requests` in any `per`-long window, up
//! to `burst` of them back to back. Plain GCRA with rate `requests/per` would let `burst +
//! requests` through in one window and trip a partner that counts per window, so cells are
//! emitted every `per / (requests - burst)` instead (every `per` when `burst == requests`).

use std::num::NonZeroU32;
use std::time::Duration;

use governor::Quota;

use crate::config::RateLimit;

/// The GCRA quota for a limit (see the module doc for why the period is not `per / requests`).
pub(crate) fn quota(limit: &RateLimit) -> Quota {
    let requests = limit.requests.get();
    let burst = limit.burst.get().min(requests);
    let spaced = (requests - burst).max(1);
    let period = (limit.per / spaced).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LimitMode, OnLimit};

    fn limit(requests: u32, per: Duration, burst: u32) -> RateLimit {
        RateLimit {
            requests: NonZeroU32::new(requests).unwrap(),
            per,
            burst: NonZeroU32::new(burst).unwrap(),
            on_limit: OnLimit::Queue,
            max_wait: Duration::from_secs(1),
            mode: LimitMode::Enforce,
            adaptive: true,
        }
    }

    #[test]
    fn no_window_ever_holds_more_than_requests() {
        let q = quota(&limit(50, Duration::from_secs(60), 5));
        assert_eq!(q.burst_size().get(), 5);
        // 5 back to back, then 45 more spaced over the minute: 50 in any minute.
        assert_eq!(q.replenish_interval(), Duration::from_secs(60) / 45);
        let q = quota(&limit(10, Duration::from_secs(1), 1));
        assert_eq!(q.replenish_interval(), Duration::from_secs(1) / 9);
        let q = quota(&limit(3, Duration::from_secs(1), 3));
        assert_eq!(q.replenish_interval(), Duration::from_secs(1));
    }
}
