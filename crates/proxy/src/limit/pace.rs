//! Adaptive spacing (`rate_limit.adaptive`, on by default): slowing down to the pace a partner's
//! announced budget allows, before it has to answer 429.
//!
//! When an answer says `remaining = r` until `reset = t` (any dialect `rate_headers.rs` reads),
//! the requests already sent and not yet answered will spend part of `r`, so the allowance is
//! `r` minus those; the next requests are spread evenly so that at most the allowance go out
//! before the reset: one every `t / allowance`, reserved in arrival order (a virtual schedule, so
//! concurrent requests do not bunch up). Answers may arrive out of order: within one window (a
//! reset within a second of the one in force) the smallest allowance wins. An allowance of zero
//! holds requests until the reset. After the reset, when the partner announced its `limit`, the
//! next window (as long as the longest reset it announced) paces that limit until an answer says
//! more; without one, the configured limit alone applies again until the next answer.
//!
//! This only ever slows requests down: the configured GCRA limit is still taken after the pace.
//! With `[shared]` the pace is the fleet's: every replica's answers are learnt into one pace in
//! Redis beside the shared cell (`shared/pace.lua`, the same rules on Redis's clock) and the
//! admission script judges it with the cell; this replica's `Pace` then only shows in `/status`
//! and the gauge what its own answers said.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// Two resets closer than this belong to the same window.
const SAME_WINDOW: Duration = Duration::from_secs(1);

/// The pace in force, if any.
#[derive(Debug, Default)]
pub(crate) struct Pace {
    /// Whether a window is in force: a request without one takes no lock.
    active: AtomicBool,
    state: Mutex<Option<Window>>,
}

/// What [`Pace::reserve`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reserved {
    /// No pace in force.
    Free,
    /// The pace in force ended with its reset (the cap is gone from now on).
    Ended,
    /// Send after this long (zero: at once).
    After(Duration),
    /// The next send time is this long away, more than the request may wait: nothing was
    /// reserved.
    Refused(Duration),
}

#[derive(Debug, Clone, Copy)]
struct Window {
    /// The partner's reset.
    until: Instant,
    /// What may still go out before `until`, as last learnt.
    allowance: u64,
    /// Between two sends.
    spacing: Duration,
    /// The next free send time.
    next: Instant,
    /// The partner's announced requests per window, if it said.
    limit: Option<u64>,
    /// The window's length, as far as known: the longest reset announced in it.
    len: Duration,
}

/// What `/status` shows of a pace in force.
#[derive(Debug, Serialize)]
pub struct PaceStatus {
    pub cap_per_second: f64,
    pub expires_in_seconds: f64,
}

impl Pace {
    /// Learns from one answer: `remaining` requests until `reset` from `now`, while `in_flight`
    /// others are still unanswered. Returns the cap in force (requests per second).
    pub(crate) fn learn(&self, now: Instant, remaining: u64, reset: Duration, in_flight: u64) -> f64 {
        let allowance = remaining.saturating_sub(in_flight);
        let until = now + reset;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let same = state.filter(|w| w.until > now && w.until.max(until) - w.until.min(until) < SAME_WINDOW);
        let allowance = same.map_or(allowance, |w| allowance.min(w.allowance));
        let left = until.saturating_duration_since(now);
        let spacing = match allowance {
            // Nothing left: hold everything until the reset.
            0 => left,
            n => left / u32::try_from(n).unwrap_or(u32::MAX),
        };
        let next = state.map_or(now, |w| w.next.max(now));
        // A tighter pace starts from now; a looser one never moves a reserved time earlier than
        // the spacing it was reserved with allows.
        *state = Some(Window {
            until,
            allowance,
            spacing,
            next: if allowance == 0 { until } else { next },
            limit: same.and_then(|w| w.limit),
            len: same.map_or(reset, |w| w.len.max(reset)),
        });
        self.active.store(true, Ordering::Release);
        cap(allowance, left)
    }

    /// The partner also announced its `limit` per window (learnt with the answer just learnt).
    pub(crate) fn learn_limit(&self, limit: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(w) = state.as_mut() {
            w.limit = Some(limit);
        }
    }

    /// Whether a window may be in force (a cheap look, without the lock or the clock).
    pub(crate) fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Whether the window in force has ended by `now` (it is then cleared): with `[shared]`,
    /// where the fleet's pace is judged in Redis, this is how this replica's gauge learns it.
    pub(crate) fn ended(&self, now: Instant) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            Some(w) if now >= w.until => {
                *state = None;
                self.active.store(false, Ordering::Release);
                true
            }
            _ => false,
        }
    }

    /// Reserves a send time for one request at most `within` from `now` (the allowance goes
    /// down by one). A later one is refused under the same lock without being reserved: a
    /// request the limit refuses must not push the pace back for the ones after it.
    pub(crate) fn reserve(&self, now: Instant, within: Duration) -> Reserved {
        if !self.active.load(Ordering::Acquire) {
            return Reserved::Free;
        }
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let Some(w) = state.as_mut() else {
            return Reserved::Free;
        };
        if now >= w.until {
            match (w.limit, w.len.is_zero()) {
                (Some(limit), false) if limit > 0 => w.roll(now, limit),
                _ => {
                    *state = None;
                    self.active.store(false, Ordering::Release);
                    return Reserved::Ended;
                }
            }
        }
        // Never past the reset: the window, and its pace, end there.
        let at = w.next.max(now).min(w.until);
        if at - now > within {
            return Reserved::Refused(at - now);
        }
        w.next = at + w.spacing;
        w.allowance = w.allowance.saturating_sub(1);
        Reserved::After(at - now)
    }

    pub(crate) fn status(&self, now: Instant) -> Option<PaceStatus> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let w = state.as_ref().filter(|w| w.until > now)?;
        let left = w.until - now;
        Some(PaceStatus {
            cap_per_second: cap(w.allowance, left),
            expires_in_seconds: left.as_secs_f64(),
        })
    }
}

impl Window {
    /// The window ended: the next one (right after it, or from now after a quiet spell) holds
    /// the announced `limit`, spread evenly, until an answer says more.
    fn roll(&mut self, now: Instant, limit: u64) {
        let next_end = self.until + self.len;
        self.until = if now < next_end { next_end } else { now + self.len };
        self.allowance = limit;
        self.spacing = (self.until - now) / u32::try_from(limit).unwrap_or(u32::MAX);
        self.next = now;
    }
}

fn cap(allowance: u64, left: Duration) -> f64 {
    if left.is_zero() {
        return 0.0;
    }
    allowance as f64 / left.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// No bound on the wait: every send time is reserved.
    const ANY: Duration = Duration::MAX;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[tokio::test(start_paused = true)]
    async fn an_announced_budget_spreads_the_next_requests_to_the_reset() {
        let pace = Pace::default();
        let t0 = Instant::now();
        assert_eq!(pace.reserve(t0, ANY), Reserved::Free, "no pace before an answer");
        // 5 left for 10 s, nothing else in flight: one every 2 s.
        let cap = pace.learn(t0, 5, s(10), 0);
        assert!((cap - 0.5).abs() < 1e-9, "{cap}");
        let waits: Vec<Reserved> = (0..5).map(|_| pace.reserve(t0, ANY)).collect();
        let after = |secs: [u64; 5]| secs.map(|n| Reserved::After(s(n)));
        assert_eq!(waits, after([0, 2, 4, 6, 8]));
        // After the reset (no limit announced) the configured limit alone applies.
        assert_eq!(pace.reserve(t0 + s(10), ANY), Reserved::Ended);
        assert_eq!(pace.reserve(t0 + s(10), ANY), Reserved::Free);
        assert!(pace.status(t0 + s(10)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_count_and_the_smallest_allowance_of_a_window_wins() {
        let pace = Pace::default();
        let t0 = Instant::now();
        // 6 left, 2 of them already on their way: 4 more in 8 s.
        pace.learn(t0, 6, s(8), 2);
        assert_eq!(pace.reserve(t0, ANY), Reserved::After(s(0)));
        assert_eq!(pace.reserve(t0, ANY), Reserved::After(s(2)));
        // A late answer from earlier in the same window says more is left: ignored.
        pace.learn(t0 + Duration::from_millis(100), 9, s(8), 0);
        let status = pace.status(t0 + Duration::from_millis(100)).unwrap();
        assert!(status.cap_per_second <= 4.0 / 7.9, "{}", status.cap_per_second);
        // A new window (a reset far from this one) starts over.
        pace.learn(t0 + s(9), 10, s(10), 0);
        assert!(pace.status(t0 + s(9)).unwrap().cap_per_second > 0.9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_time_too_far_away_is_refused_and_reserves_nothing() {
        let pace = Pace::default();
        let t0 = Instant::now();
        // 3 left for 6 s: one every 2 s.
        pace.learn(t0, 3, s(6), 0);
        assert_eq!(pace.reserve(t0, s(0)), Reserved::After(s(0)));
        // Neither refusal moves the next send time on nor spends the allowance.
        assert_eq!(pace.reserve(t0, s(0)), Reserved::Refused(s(2)));
        assert_eq!(pace.reserve(t0, s(1)), Reserved::Refused(s(2)));
        assert!((pace.status(t0).unwrap().cap_per_second - 2.0 / 6.0).abs() < 1e-9);
        assert_eq!(pace.reserve(t0, s(2)), Reserved::After(s(2)));
        assert_eq!(pace.reserve(t0, ANY), Reserved::After(s(4)));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_left_holds_requests_until_the_reset() {
        let pace = Pace::default();
        let t0 = Instant::now();
        pace.learn(t0, 1, s(5), 3);
        assert_eq!(pace.reserve(t0, ANY), Reserved::After(s(5)));
        assert_eq!(pace.reserve(t0 + s(5), ANY), Reserved::Ended);
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_reset_the_announced_limit_is_paced_until_an_answer_says_more() {
        let pace = Pace::default();
        let t0 = Instant::now();
        // 2 left of 4 per window, 4 s to the reset.
        pace.learn(t0, 2, s(4), 0);
        pace.learn_limit(4);
        assert_eq!(pace.reserve(t0, ANY), Reserved::After(s(0)));
        assert_eq!(pace.reserve(t0, ANY), Reserved::After(s(2)));
        // The next window (4 s long: the longest reset announced) holds the announced 4, one
        // per second, instead of a burst.
        let t4 = t0 + s(4);
        let waits: Vec<Reserved> = (0..4).map(|_| pace.reserve(t4, ANY)).collect();
        assert_eq!(waits, [0, 1, 2, 3].map(|n| Reserved::After(s(n))));
        // An answer in that window says more: 1 left until its end.
        pace.learn(t4 + s(1), 1, s(3), 0);
        assert!(pace.status(t4 + s(1)).unwrap().cap_per_second < 0.34);
    }
}
