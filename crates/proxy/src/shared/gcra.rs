//! The shared rate limit and pause: one Lua script call (`gcra.lua`) per admission.
//!
//! The script is sent once and then invoked by its SHA (`EVALSHA`; the `redis` crate reloads it
//! if a restarted Redis forgot it). Checking the pause is folded into the same call, so an attempt
//! costs one round trip. The limit has the same shape as the local one (`limit::quota`): `burst`
//! back to back, then one per emission interval.
//!
//! The script never reserves: a refused request is told how long to wait, waits locally, then asks
//! again. That keeps Redis free of queue state a dead replica could leave behind.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tollgate_metrics::RedisOp;

use super::SharedState;
use crate::config::RateLimit;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));
static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("pause.lua")));

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Ask again after `wait`; `paused` when a partner's pause (not the rate) said so.
    Wait {
        wait: Duration,
        paused: bool,
    },
}

/// One limiter state in Redis: an upstream's rate limit (with its pause), or its token limit.
#[derive(Debug)]
pub struct SharedLimiter {
    state: Arc<SharedState>,
    key: String,
    pause_key: Option<String>,
    interval_us: u64,
    tolerance_us: u64,
}

impl SharedLimiter {
    /// `limit: None` checks only the pause. `pause_key: None` (token calls) checks only the rate.
    pub fn new(
        state: Arc<SharedState>,
        key: String,
        pause_key: Option<String>,
        limit: Option<&RateLimit>,
    ) -> Self {
        let (interval_us, tolerance_us) = limit.map_or((0, 0), |l| {
            let q = crate::limit::quota(l);
            let interval = u64::try_from(q.replenish_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            (interval, interval * u64::from(q.burst_size().get() - 1))
        });
        Self {
            state,
            key,
            pause_key,
            interval_us,
            tolerance_us,
        }
    }

    /// The emission interval (zero without a rate limit).
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }

    /// Asks Redis; `None` when Redis is unavailable (the caller degrades to its local limiter).
    pub async fn check(&self) -> Option<Verdict> {
        let (admitted, wait_us, paused): (i64, i64, i64) = self
            .state
            .call(RedisOp::Admit, |mut c| async move {
                let mut call = ADMIT.key(&self.key);
                if let Some(p) = &self.pause_key {
                    call.key(p);
                }
                call.arg(self.interval_us)
                    .arg(self.tolerance_us)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Some(if admitted == 1 {
            Verdict::Admitted
        } else {
            Verdict::Wait {
                wait: Duration::from_micros(u64::try_from(wait_us).unwrap_or(0).max(1)),
                paused: paused == 1,
            }
        })
    }

    /// Pauses the upstream for every replica until `until` (only ever lengthens a pause). The
    /// length is taken when the call is made, so the shared pause ends with the local one.
    pub async fn pause_until(&self, until: tokio::time::Instant) {
        let Some(key) = &self.pause_key else { return };
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX);
        if ms == 0 {
            return;
        }
        let _: Option<i64> = self
            .state
            .call(RedisOp::Pause, |mut c| async move {
                PAUSE.key(key).arg(ms).invoke_async(&mut c).await
            })
            .await;
    }
}
