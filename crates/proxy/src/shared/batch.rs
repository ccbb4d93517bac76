//! A replica's batches of the fleet's cells: under load, an upstream's shared limit is asked for
//! several cells in one script call, and this replica hands them out itself, so most requests
//! pass the fleet's limit without a Redis round trip. (Not the token `lease` of `token.rs`, which
//! says which replica fetches a token.)
//!
//! The fleet's bound stays "`requests` per `per`, burst inside": a batched cell is spent in Redis
//! when it is granted, but used up to [`Batches::validity`] later, so it could land in a later
//! window than Redis counted it in. Every cell of a batching limit is therefore judged with a burst
//! tolerance smaller by that validity (`SharedLimiter::new`): a delayed cell lands where the
//! smaller burst left room for it. The price is `rate × validity` cells of the burst, so the
//! validity is at most a tenth of the burst tolerance, and only fast limits with a burst of 11 or
//! more take batches ([`Batches::for_limit`]): at 2,000/s with a burst of 100, 10 cells.
//!
//! The validity is 10 ms where the burst allows: a batch is usable from the moment it was asked
//! for, and under load its answer reaches the request only after the runtime has served its
//! other connections (at 256 connections on one core, milliseconds). With 2 ms, most batches
//! arrived nearly spent at 256 connections (BENCHMARKS.md).
//!
//! How many cells a refill asks for follows this replica's own arrival rate: what it took since
//! the last refill, scaled to half a validity, so a quiet replica does not take the fleet's cells
//! only to let them expire; the script never grants more than conform at once. A refill starts
//! when a quarter of the last ask is left or the oldest batch has less than half its validity
//! left, so under a steady load one batch is used while the next is asked for, and little expires
//! unused. One refill is in flight at a time: a request that finds no cell meanwhile waits for
//! that refill's answer (no later than a call of its own would come back, and no round trip);
//! every request that wanted a cell counts towards the next refill's size, so a crowd one batch
//! left out is served by the next, and only a request left out by three asks for its own cell.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// The longest a batched cell may wait for its request.
const VALIDITY: Duration = Duration::from_millis(10);
/// The most of its burst tolerance a limit gives up to batches: a tenth.
const TOLERANCE_SHARE: u32 = 10;
/// Limits slower than this never take batches: one round trip per request is cheap at their rate.
const MAX_INTERVAL: Duration = Duration::from_millis(1);
/// The most cells one refill asks for.
const MAX_WANT: u32 = 512;

/// Cells this replica holds for an upstream's shared limit, by the batch they came in.
#[derive(Debug)]
pub(crate) struct Batches {
    validity: Duration,
    held: Mutex<Held>,
    /// A refill is in flight.
    refilling: AtomicBool,
    /// Told when a refill ends, granted or not.
    ended: Notify,
}

#[derive(Debug)]
struct Held {
    /// Cells left per refill and when they stop being usable, oldest first.
    batches: VecDeque<(u32, Instant)>,
    /// Requests that wanted a cell since the last refill started, and when it did: the local
    /// arrival rate.
    taken: u32,
    since: Instant,
    /// What the last refill asked for.
    want: u32,
}

impl Batches {
    /// Batches for a limit with this emission interval and burst tolerance; `None` for a limit
    /// too slow to need them, or whose tenth of the tolerance is less than one interval.
    pub(crate) fn for_limit(interval: Duration, tolerance: Duration) -> Option<Self> {
        let validity = VALIDITY.min(tolerance / TOLERANCE_SHARE);
        if interval.is_zero() || interval > MAX_INTERVAL || validity < interval {
            return None;
        }
        Some(Self {
            validity,
            held: Mutex::new(Held {
                batches: VecDeque::new(),
                taken: 0,
                since: Instant::now(),
                want: 2,
            }),
            refilling: AtomicBool::new(false),
            ended: Notify::new(),
        })
    }

    /// How long a batched cell stays usable: the burst tolerance every cell gives up.
    pub(crate) fn validity(&self) -> Duration {
        self.validity
    }

    /// One cell, if this replica holds one still usable at `now`.
    pub(crate) fn take(&self, now: Instant) -> bool {
        let mut held = self.lock();
        held.drop_expired(now);
        held.take_one()
    }

    /// One cell while no refill is due, under one lock (the fast path); `count`: the request
    /// also counts as one that wanted a cell, as [`count`](Self::count).
    pub(crate) fn take_fresh(&self, now: Instant, count: bool) -> bool {
        let mut held = self.lock();
        if self.due(&mut held, now) {
            return false;
        }
        let taken = held.take_one();
        if taken && count {
            held.taken += 1;
        }
        taken
    }

    /// Counts a request that wanted a cell, for the arrival rate a refill is sized by.
    pub(crate) fn count(&self) {
        self.lock().taken += 1;
    }

    /// Whether a refill is due: none in flight, and at most a quarter of the last ask left, or
    /// the oldest batch past half its validity.
    fn due(&self, held: &mut Held, now: Instant) -> bool {
        if self.refilling.load(Ordering::Relaxed) {
            return false;
        }
        held.drop_expired(now);
        let ageing = held
            .batches
            .front()
            .is_some_and(|(_, until)| until.saturating_duration_since(now) < self.validity / 2);
        ageing || held.left() <= held.want / 4
    }

    /// Starts a refill unless one is in flight: how many cells to ask for (the asker's own
    /// included) in a guard that ends the refill, when dropped unanswered too (a caller that went
    /// away must not leave the batches waiting for a refill forever).
    pub(crate) fn start_refill(&self, now: Instant) -> Option<Refill<'_>> {
        if self.refilling.swap(true, Ordering::Acquire) {
            return None;
        }
        let mut held = self.lock();
        let elapsed = now.saturating_duration_since(held.since);
        let want = if elapsed.is_zero() {
            held.want.saturating_mul(2)
        } else {
            // Arrivals per half validity (the next refill is due by then), and the asker's own.
            let per_half = f64::from(held.taken) * self.validity.as_secs_f64() / 2.0 / elapsed.as_secs_f64();
            per_half.ceil() as u32 + 1
        };
        held.want = want.clamp(2, MAX_WANT);
        held.taken = 0;
        held.since = now;
        Some(Refill {
            batches: self,
            want: held.want,
            asked_at: now,
        })
    }

    /// Waits until the refill in flight, if any, has ended.
    pub(crate) async fn refill_ended(&self) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        // Registered before the flag is read: an end between the two is not missed.
        ended.as_mut().enable();
        if self.refilling.load(Ordering::Acquire) {
            ended.await;
        }
    }

    /// A poisoned lock only means another request panicked mid-update; the counts stay sound.
    fn lock(&self) -> MutexGuard<'_, Held> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A refill in flight: [`want`](Self::want) cells asked for at `asked_at`.
#[derive(Debug)]
pub(crate) struct Refill<'a> {
    batches: &'a Batches,
    pub want: u32,
    asked_at: Instant,
}

impl Refill<'_> {
    /// Redis granted `granted` cells: the asker takes one, the batches keep the rest.
    pub(crate) fn granted(self, granted: u32) {
        let mut held = self.batches.lock();
        let extra = granted.saturating_sub(1);
        if extra > 0 {
            // Usable from the ask, not the answer: Redis spent them in between.
            held.batches
                .push_back((extra, self.asked_at + self.batches.validity));
        }
    }
}

impl Drop for Refill<'_> {
    fn drop(&mut self) {
        self.batches.refilling.store(false, Ordering::Release);
        self.batches.ended.notify_waiters();
    }
}

impl Held {
    /// One cell of the oldest batch (expired ones already dropped).
    fn take_one(&mut self) -> bool {
        let Some(front) = self.batches.front_mut() else {
            return false;
        };
        front.0 -= 1;
        if front.0 == 0 {
            self.batches.pop_front();
        }
        true
    }

    fn drop_expired(&mut self, now: Instant) {
        while self.batches.front().is_some_and(|(_, until)| *until <= now) {
            self.batches.pop_front();
        }
    }

    fn left(&self) -> u32 {
        self.batches.iter().map(|(n, _)| n).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether a refill is due now.
    fn low(batches: &Batches, now: Instant) -> bool {
        batches.due(&mut batches.lock(), now)
    }

    fn batches() -> Batches {
        // 100,000/s with a burst of 10,000: a 10 µs interval, a ~100 ms tolerance.
        Batches::for_limit(Duration::from_micros(10), Duration::from_millis(100)).unwrap()
    }

    #[test]
    fn only_fast_limits_with_room_in_their_burst_take_batches() {
        assert_eq!(batches().validity(), VALIDITY);
        // 10/s: a round trip per request is nothing.
        assert!(Batches::for_limit(Duration::from_millis(100), Duration::from_secs(1)).is_none());
        // 2,000/s with a burst of 41: a tenth of its 20 ms tolerance is a validity of 2 ms.
        let small = Batches::for_limit(Duration::from_micros(500), Duration::from_millis(20)).unwrap();
        assert_eq!(small.validity(), Duration::from_millis(2));
        // With a burst of 3, a tenth of the tolerance is less than one interval.
        assert!(Batches::for_limit(Duration::from_micros(500), Duration::from_millis(1)).is_none());
        // A burst of 1 has no tolerance to give up.
        assert!(Batches::for_limit(Duration::from_micros(500), Duration::ZERO).is_none());
        assert!(Batches::for_limit(Duration::ZERO, Duration::from_secs(1)).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn granted_cells_are_handed_out_until_they_expire() {
        let batches = batches();
        let asked = Instant::now();
        assert!(!batches.take(asked), "empty at first");
        let refill = batches.start_refill(asked).unwrap();
        assert_eq!(refill.want, 4, "nothing measured yet: double the first ask");
        assert!(batches.start_refill(asked).is_none(), "one refill at a time");
        refill.granted(4);
        assert!(batches.take(Instant::now()));
        assert!(batches.take(Instant::now()));
        tokio::time::advance(VALIDITY).await;
        assert!(
            !batches.take(Instant::now()),
            "the last one expired unused with its batch"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_ask_follows_the_local_arrival_rate() {
        let batches = batches();
        drop(batches.start_refill(Instant::now()));
        // 100 requests in five validities: 10 per half validity, and the asker's own.
        for _ in 0..100 {
            batches.count();
        }
        tokio::time::advance(VALIDITY * 5).await;
        assert_eq!(batches.start_refill(Instant::now()).unwrap().want, 11);
        // Nothing taken for a second: the ask falls back to two.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(batches.start_refill(Instant::now()).unwrap().want, 2);
        // Never more than MAX_WANT, however fast.
        for _ in 0..100_000 {
            batches.count();
        }
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(batches.start_refill(Instant::now()).unwrap().want, MAX_WANT);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refill_is_due_when_a_quarter_of_the_ask_is_left() {
        let batches = batches();
        let now = Instant::now();
        assert!(low(&batches, now));
        for _ in 0..120 {
            batches.count();
        }
        tokio::time::advance(VALIDITY).await;
        let now = Instant::now();
        let refill = batches.start_refill(now).unwrap();
        let want = refill.want;
        assert_eq!(want, 61);
        assert!(!low(&batches, now), "a refill is in flight");
        refill.granted(want);
        assert!(!low(&batches, now));
        for _ in 0..(want - 1 - want / 4) {
            assert!(batches.take(now));
        }
        assert!(low(&batches, now), "{want}: a quarter left");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_without_a_cell_waits_for_the_refill_in_flight() {
        let batches = std::sync::Arc::new(batches());
        let refill = batches.start_refill(Instant::now()).unwrap();
        let waiter = tokio::spawn({
            let batches = batches.clone();
            async move {
                batches.refill_ended().await;
                batches.take(Instant::now())
            }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "it waits while the refill is in flight");
        refill.granted(3);
        assert!(waiter.await.unwrap(), "and takes a cell of the batch");
        // Nothing in flight: no wait at all.
        batches.refill_ended().await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_refill_is_due_when_the_oldest_batch_is_past_half_its_validity() {
        let batches = batches();
        let asked = Instant::now();
        batches.start_refill(asked).unwrap().granted(100);
        assert!(!low(&batches, asked), "99 cells, all fresh");
        tokio::time::advance(VALIDITY / 2 + Duration::from_micros(1)).await;
        assert!(low(&batches, Instant::now()), "past half the validity");
        assert!(
            batches.take(Instant::now()),
            "its cells are still good until it ends"
        );
    }
}
