//! A partner's pause: "do not send before", set from a 429/503 `Retry-After` or an exhausted
//! announced budget, read lock-free by every request to the upstream.
//!
//! The pause is the partner's, whatever the config: a reload hands the same one to the new
//! admission. With `[shared]` a pause learnt from Redis is kept here too, so the replica stops
//! asking Redis until it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tollgate_metrics::UpstreamMetrics;

/// "Do not send before": a deadline in ms since `base`, 0 for none.
#[derive(Debug)]
pub(crate) struct Pause {
    base: Instant,
    until_ms: AtomicU64,
    reason: Mutex<&'static str>,
}

impl Default for Pause {
    fn default() -> Self {
        Self {
            base: Instant::now(),
            until_ms: AtomicU64::new(0),
            reason: Mutex::new(""),
        }
    }
}

impl Pause {
    /// What is left of the pause, if any; without a pause set this reads no clock.
    pub(crate) fn left(&self) -> Option<Duration> {
        match self.until_ms.load(Ordering::Acquire) {
            0 => None,
            ms => Some((self.base + Duration::from_millis(ms)).saturating_duration_since(Instant::now()))
                .filter(|d| !d.is_zero()),
        }
    }

    /// Why the pause in force was set.
    pub(crate) fn reason(&self) -> &'static str {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// An upstream's pause as its admission sets it: capped at `max_pause`, logged and counted.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Partner<'a> {
    pub pause: &'a Pause,
    pub max_pause: Duration,
    pub metrics: &'a UpstreamMetrics,
}

impl Partner<'_> {
    /// Pauses for `wait` from now (at most `max_pause`); only ever lengthens a pause.
    pub(crate) fn hold(&self, wait: Duration, reason: &'static str) {
        let wait = wait.min(self.max_pause);
        if wait.is_zero() {
            return;
        }
        let until = (Instant::now() + wait).saturating_duration_since(self.pause.base);
        let until_ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX).max(1);
        let before = self.pause.until_ms.fetch_max(until_ms, Ordering::AcqRel);
        if until_ms > before {
            *self.pause.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
            self.metrics
                .paused_until(crate::clock::now_unix() + wait.as_secs_f64());
            tracing::info!(
                pause_ms = wait.as_millis() as u64,
                reason,
                "upstream paused by the partner"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_pause_only_lengthens_and_ends_on_the_paused_clock() {
        let pause = Pause::default();
        let metrics = tollgate_metrics::Metrics::new("t").upstream("p", "sandbox");
        let partner = Partner {
            pause: &pause,
            max_pause: Duration::from_secs(60),
            metrics: &metrics,
        };
        assert_eq!(pause.left(), None);
        partner.hold(Duration::from_secs(5), "partner Retry-After");
        partner.hold(Duration::from_secs(2), "partner 429");
        assert_eq!(
            pause.left(),
            Some(Duration::from_secs(5)),
            "a shorter pause changes nothing"
        );
        assert_eq!(pause.reason(), "partner Retry-After");
        // Capped at max_pause.
        partner.hold(Duration::from_secs(3600), "partner rate-limit headers");
        assert_eq!(pause.left(), Some(Duration::from_secs(60)));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(pause.left(), None);
    }
}
