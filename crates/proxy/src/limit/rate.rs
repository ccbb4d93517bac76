//! A local GCRA limit (governor, on `clock.rs`'s limiter clock) with its arrival-order line:
//! an upstream's rate limit, this replica's share of the fleet's while Redis is unavailable, a
//! client's share (`pipeline/callers/limit.rs`) and the token limit.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use super::wait::{Line, Rule};
use crate::config::{OnLimit, RateLimit};

#[derive(Debug)]
pub(crate) struct Rate {
    pub(crate) gcra: crate::clock::Gcra,
    pub(crate) config: RateLimit,
    /// Time between cells once the burst is spent.
    pub(crate) interval: Duration,
    /// Queue mode: waiters take turns in arrival order (tokio's mutex is fair).
    pub(crate) line: tokio::sync::Mutex<()>,
}

impl Rate {
    pub(crate) fn new(config: RateLimit) -> Self {
        let q = crate::quota::quota(&config);
        Rate {
            gcra: crate::clock::gcra(q),
            interval: q.replenish_interval(),
            config,
            line: tokio::sync::Mutex::new(()),
        }
    }

    /// A limit that replaces another (a reload changed it): its burst already spent, so the
    /// change hands out no fresh burst and the first cell comes one new interval from now.
    pub(crate) fn drained(config: RateLimit) -> Self {
        let rate = Self::new(config);
        let _ = rate.gcra.check_n(crate::quota::quota(&config).burst_size());
        rate
    }

    /// The rate for `config` after a reload: `previous` itself when its limit is the same (its
    /// state carries over), else a [drained](Self::drained) one; `None` before a reload.
    pub(crate) fn succeeding(
        previous: Option<Option<&Arc<Rate>>>,
        config: Option<RateLimit>,
    ) -> Option<Arc<Rate>> {
        let config = config?;
        Some(match previous {
            None => Arc::new(Rate::new(config)),
            Some(Some(old)) if old.config == config => old.clone(),
            Some(_) => Arc::new(Rate::drained(config)),
        })
    }

    /// One cell now, or how long until the next.
    pub(crate) fn check(&self) -> Result<(), Duration> {
        self.gcra
            .check()
            .map_err(|not_until| crate::clock::wait_of(&self.gcra, &not_until))
    }

    /// How this limit waits: `reject` refuses, `queue` waits in this limit's line, counted in
    /// `waiting`, up to `max_wait`.
    pub(crate) fn rule<'a>(&'a self, waiting: &'a AtomicUsize) -> Rule<'a> {
        match self.config.on_limit {
            OnLimit::Reject => Rule::Refuse,
            OnLimit::Queue => Rule::Queue {
                max_wait: self.config.max_wait,
                line: Line {
                    waiting,
                    turn: &self.line,
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::config::LimitMode;

    fn limit(requests: u32, per_secs: u64, burst: u32, on_limit: OnLimit) -> RateLimit {
        RateLimit {
            requests: NonZeroU32::new(requests).unwrap(),
            per: Duration::from_secs(per_secs),
            burst: NonZeroU32::new(burst).unwrap(),
            on_limit,
            max_wait: Duration::from_secs(7),
            mode: LimitMode::Enforce,
            adaptive: false,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_fresh_rate_has_its_burst_and_a_drained_one_none() {
        let fresh = Rate::new(limit(4, 4, 2, OnLimit::Queue));
        assert_eq!(fresh.check(), Ok(()));
        assert_eq!(fresh.check(), Ok(()));
        assert_eq!(fresh.check(), Err(Duration::from_secs(2)));
        // A reload's replacement starts drained: the first cell one interval from now.
        let drained = Rate::drained(limit(4, 4, 2, OnLimit::Queue));
        assert_eq!(drained.check(), Err(Duration::from_secs(2)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(drained.check(), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_the_same_limits_state_and_drains_a_changed_one() {
        let config = limit(2, 10, 2, OnLimit::Queue);
        let old = Arc::new(Rate::new(config));
        assert_eq!(old.check(), Ok(()));
        // The same limit: the very same state (one cell of the burst already spent).
        let kept = Rate::succeeding(Some(Some(&old)), Some(config)).unwrap();
        assert!(Arc::ptr_eq(&old, &kept));
        // A changed limit: a new, drained state; no limit: none; before any reload: fresh.
        let changed = Rate::succeeding(Some(Some(&old)), Some(limit(3, 10, 3, OnLimit::Queue))).unwrap();
        assert!(changed.check().is_err());
        assert!(Rate::succeeding(Some(Some(&old)), None).is_none());
        let first = Rate::succeeding(None, Some(config)).unwrap();
        assert_eq!(first.check(), Ok(()));
    }

    #[test]
    fn the_rule_follows_on_limit() {
        let waiting = AtomicUsize::new(0);
        let queue = Rate::new(limit(1, 1, 1, OnLimit::Queue));
        match queue.rule(&waiting) {
            Rule::Queue { max_wait, .. } => assert_eq!(max_wait, Duration::from_secs(7)),
            Rule::Refuse => panic!("queue refuses"),
        }
        let reject = Rate::new(limit(1, 1, 1, OnLimit::Reject));
        assert!(matches!(reject.rule(&waiting), Rule::Refuse));
    }
}
