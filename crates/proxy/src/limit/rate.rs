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
