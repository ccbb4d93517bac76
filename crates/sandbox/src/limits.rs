//! Per-client sliding windows (60 s unless a test scales them), the way the partners count "N
//! requests per minute".
//!
//! A window keeps the instants of the requests it admitted; a request is admitted while fewer than
//! `limit` of them are younger than 60 s. Refused requests do not count, so a client that keeps
//! retrying early is told the same `Retry-After` instead of being locked out for ever. Real
//! `Instant`s are fine here: tests shrink the limit instead of waiting a minute.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::lock::lock;

/// The width of a window by default: the partners' limits are "per minute".
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub(crate) struct SlidingWindow {
    clients: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl SlidingWindow {
    /// Admits one request of `client`, or tells how many whole seconds until a slot frees.
    /// A `limit` of 0 admits everything.
    pub(crate) fn admit(&self, client: &str, limit: u32, window: Duration, now: Instant) -> Result<(), u64> {
        if limit == 0 {
            return Ok(());
        }
        let mut clients = lock(&self.clients);
        let seen = clients.entry(client.to_owned()).or_default();
        while seen.front().is_some_and(|t| now.duration_since(*t) >= window) {
            seen.pop_front();
        }
        if seen.len() < limit as usize {
            seen.push_back(now);
            return Ok(());
        }
        // The oldest admitted request is the next to leave the window.
        let frees_at = seen[seen.len() - limit as usize] + window;
        Err(ceil_secs(frees_at.saturating_duration_since(now)).max(1))
    }
}

/// A fixed window, as partners that announce their budget usually count: `limit` requests from
/// the first one, then a fresh window. What it says is what `RateLimit-Remaining` and
/// `RateLimit-Reset` announce.
#[derive(Debug, Default)]
pub(crate) struct FixedWindow {
    /// When the current window started, and how many it admitted.
    state: Mutex<Option<(Instant, u32)>>,
}

impl FixedWindow {
    /// Admits one request: `Ok((remaining, reset))` or `Err(reset)`, the reset in whole seconds
    /// (rounded up) until the window ends.
    pub(crate) fn admit(&self, limit: u32, window: Duration, now: Instant) -> Result<(u32, u64), u64> {
        let mut state = lock(&self.state);
        let (start, count) = state.get_or_insert((now, 0));
        if now >= *start + window {
            *start = now;
            *count = 0;
        }
        let reset = ceil_secs((*start + window).saturating_duration_since(now));
        if *count < limit {
            *count += 1;
            Ok((limit - *count, reset))
        } else {
            Err(reset.max(1))
        }
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_the_limit_then_names_the_wait() {
        let w = SlidingWindow::default();
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(w.admit("a", 3, WINDOW, t0 + Duration::from_secs(i)), Ok(()));
        }
        // The first slot frees 60 s after t0; 10 s later that is 50 s away.
        assert_eq!(w.admit("a", 3, WINDOW, t0 + Duration::from_secs(10)), Err(50));
        assert_eq!(w.admit("a", 3, WINDOW, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn clients_are_counted_apart_and_zero_is_unlimited() {
        let w = SlidingWindow::default();
        let t0 = Instant::now();
        assert_eq!(w.admit("a", 1, WINDOW, t0), Ok(()));
        assert_eq!(w.admit("b", 1, WINDOW, t0), Ok(()));
        assert!(w.admit("a", 1, WINDOW, t0).is_err());
        for _ in 0..100 {
            assert_eq!(w.admit("a", 0, WINDOW, t0), Ok(()));
        }
    }

    #[test]
    fn retry_after_is_rounded_up_and_at_least_one() {
        let w = SlidingWindow::default();
        let t0 = Instant::now();
        w.admit("a", 1, WINDOW, t0).unwrap();
        assert_eq!(w.admit("a", 1, WINDOW, t0 + Duration::from_millis(500)), Err(60));
        assert_eq!(
            w.admit("a", 1, WINDOW, t0 + Duration::from_millis(59_999)),
            Err(1)
        );
    }
}
