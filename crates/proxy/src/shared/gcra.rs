//! The shared rate limit, pause and adaptive pace: one Lua script call (`gcra.lua`) per
//! admission; `pace.lua` learns a partner's announced budget for the whole fleet.
//!
//! The script is sent once and then invoked by its SHA (`EVALSHA`; the `redis` crate reloads it
//! if a restarted Redis forgot it). Checking the pause is folded into the same call, so an attempt
//! costs one round trip. The limit has the same shape as the local one (`quota.rs`): `burst`
//! back to back, then one per emission interval.
//!
//! A client's share of an upstream (`[clients.NAME.limits.UPSTREAM]`) is a [`SharedCell`] passed
//! to the upstream's check: both cells are judged and spent in the same call, so a limited client
//! costs no extra round trip.
//!
//! The script never reserves: a refused request is told how long to wait, waits locally, then asks
//! again. That keeps Redis free of queue state a dead replica could leave behind.
//!
//! A fast upstream limit takes cells in batches: one call takes several that this replica hands
//! out itself for a moment (`batch.rs`), so under load most admissions cost no round trip.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::Script;
use tollgate_metrics::RedisOp;

use super::batch::Batches;
use super::SharedState;
use crate::config::RateLimit;

/// Refills a request waits for before it asks for one cell of its own.
const REFILL_TURNS: usize = 3;

static ADMIT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("gcra.lua")));
static PAUSE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("pause.lua")));
static PACE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("pace.lua")));

/// What the script answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admitted,
    /// Ask again after `wait`; `paused` when a partner's pause (not the rate) said so.
    Wait {
        wait: Duration,
        paused: bool,
    },
    /// The client's share (the [`SharedCell`] passed along) is spent: nothing was taken from
    /// the upstream's budget.
    Client {
        wait: Duration,
    },
    /// The partner's announced pace (adaptive spacing) holds the request for `wait`.
    Paced {
        wait: Duration,
    },
}

/// One GCRA state in Redis: its key and its shape (`quota.rs`).
#[derive(Debug)]
pub struct SharedCell {
    key: String,
    interval_us: u64,
    tolerance_us: u64,
}

impl SharedCell {
    /// `limit: None`: no rate limit (every check admits).
    pub fn new(key: String, limit: Option<&RateLimit>) -> Self {
        let (interval_us, tolerance_us) = limit.map_or((0, 0), |l| {
            let q = crate::quota::quota(l);
            let interval = u64::try_from(q.replenish_interval().as_micros())
                .unwrap_or(u64::MAX)
                .max(1);
            (interval, interval * u64::from(q.burst_size().get() - 1))
        });
        Self {
            key,
            interval_us,
            tolerance_us,
        }
    }

    /// The emission interval (zero without a rate limit).
    pub fn interval(&self) -> Duration {
        Duration::from_micros(self.interval_us)
    }
}

/// One limiter state in Redis: an upstream's rate limit (with its pause), or its token limit.
#[derive(Debug)]
pub struct SharedLimiter {
    state: Arc<SharedState>,
    cell: SharedCell,
    pause_key: Option<String>,
    /// With a pause key only: the partner's announced pace, the fleet's (`pace.lua`).
    pace_key: Option<String>,
    /// An upstream's fast limit only: cells taken in batches (`batch.rs`).
    batches: Option<Batches>,
}

impl SharedLimiter {
    /// `limit: None` checks only the pause. `pause_key: None` (token calls) checks only the rate.
    pub fn new(
        state: Arc<SharedState>,
        key: String,
        pause_key: Option<String>,
        limit: Option<&RateLimit>,
    ) -> Self {
        let mut cell = SharedCell::new(key, limit);
        let batches = pause_key.as_ref().and_then(|_| {
            let tolerance = Duration::from_micros(cell.tolerance_us);
            Batches::for_limit(cell.interval(), tolerance)
        });
        if let Some(batches) = &batches {
            // Every cell gives up the time a batched one may wait: the fleet's bound holds.
            let validity = u64::try_from(batches.validity().as_micros()).unwrap_or(u64::MAX);
            cell.tolerance_us = cell.tolerance_us.saturating_sub(validity);
        }
        Self {
            state,
            cell,
            pause_key,
            pace_key: None,
            batches,
        }
    }

    /// Paces the upstream, fleet-wide, by what the partner announces (`rate_limit.adaptive`):
    /// the pace is kept at `key`, beside the cell, and judged in the same script call.
    pub fn paced(mut self, key: String) -> Self {
        if self.pause_key.is_some() {
            self.pace_key = Some(key);
        }
        self
    }

    /// The emission interval (zero without a rate limit).
    pub fn interval(&self) -> Duration {
        self.cell.interval()
    }

    /// A cell from this replica's batches, without a question or a future; `false` when there is
    /// none, or a refill is due (the request then asks, with [`check_with`](Self::check_with)).
    /// A request with a client's share (judged in Redis for every request), or with `batched:
    /// false` (a partner's pace in force), never takes one.
    pub fn take_batched(&self, client: Option<&SharedCell>, batched: bool) -> bool {
        self.batches_for(client, batched)
            .is_some_and(|batches| batches.take_fresh(tokio::time::Instant::now(), true))
    }

    /// This limit's batches, when a request may use them (see [`take_batched`](Self::take_batched)).
    fn batches_for(&self, client: Option<&SharedCell>, batched: bool) -> Option<&Batches> {
        self.batches.as_ref().filter(|_| batched && client.is_none())
    }

    /// Asks Redis, with a client's share of this limit judged first in the same call (only an
    /// upstream limiter, one with a pause key, takes a client's share); `None` when Redis is
    /// unavailable (the caller degrades to its local limiter). With `batched` (see
    /// [`take_batched`](Self::take_batched)), a batching limit hands out a cell it holds while no
    /// refill is due, asks for a batch when one is, and otherwise waits for the refill in flight
    /// and takes a cell of it; only a request the batch left out asks for one cell of its own.
    pub async fn check_with(&self, client: Option<&SharedCell>, batched: bool) -> Option<Verdict> {
        let refill = match self.batches_for(client, batched) {
            Some(batches) => {
                batches.count();
                let mut refill = None;
                let mut now = tokio::time::Instant::now();
                // A few refills at most: each is sized by the requests that wanted a cell, so
                // a crowd left out by one is in the next.
                for _ in 0..REFILL_TURNS {
                    if batches.take_fresh(now, false) {
                        return Some(Verdict::Admitted);
                    }
                    refill = batches.start_refill(now);
                    if refill.is_some() {
                        break;
                    }
                    batches.refill_ended().await;
                    now = tokio::time::Instant::now();
                    if batches.take(now) {
                        return Some(Verdict::Admitted);
                    }
                }
                refill
            }
            None => None,
        };
        let want = refill.as_ref().map_or(1, |r| r.want);
        let (verdict, granted) = self.ask(client, want).await?;
        if let (Verdict::Admitted, Some(refill)) = (verdict, refill) {
            refill.granted(granted);
        }
        // A refill that got nothing ends when its guard drops.
        Some(verdict)
    }

    /// One script call for `want` cells (more than one: a batch): the verdict, and how
    /// many cells were granted when admitted.
    async fn ask(&self, client: Option<&SharedCell>, want: u32) -> Option<(Verdict, u32)> {
        let (admitted, n, why): (i64, i64, i64) = self
            .state
            .call(RedisOp::Admit, |mut c| async move {
                let mut call = ADMIT.key(&self.cell.key);
                call.arg(self.cell.interval_us).arg(self.cell.tolerance_us);
                if let Some(p) = &self.pause_key {
                    call.key(p);
                    call.arg(u8::from(self.pace_key.is_some())).arg(want);
                    if let Some(pace) = &self.pace_key {
                        call.key(pace);
                    }
                    if let Some(client) = client {
                        call.key(&client.key)
                            .arg(client.interval_us)
                            .arg(client.tolerance_us);
                    }
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        if admitted == 1 {
            return Some((Verdict::Admitted, u32::try_from(n).unwrap_or(1).max(1)));
        }
        let wait = Duration::from_micros(u64::try_from(n).unwrap_or(0).max(1));
        let verdict = match why {
            2 => Verdict::Client { wait },
            3 => Verdict::Paced { wait },
            why => Verdict::Wait {
                wait,
                paused: why == 1,
            },
        };
        Some((verdict, 0))
    }

    /// Tells every replica what the partner announced: `allowance` more requests until `reset`
    /// from now, of `limit` per window if it said (`pace.lua`). Nothing without a pace key;
    /// Redis unavailable degrades as any call does.
    pub async fn learn_pace(&self, allowance: u64, reset: Duration, limit: Option<u64>) {
        let Some(key) = &self.pace_key else { return };
        let reset_us = u64::try_from(reset.as_micros()).unwrap_or(u64::MAX);
        let _: Option<i64> = self
            .state
            .call(RedisOp::Pause, |mut c| async move {
                PACE.key(key)
                    .arg(allowance)
                    .arg(reset_us)
                    .arg(limit.unwrap_or(0))
                    .invoke_async(&mut c)
                    .await
            })
            .await;
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
