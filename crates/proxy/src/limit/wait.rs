//! The one wait loop: ask for a cell, sleep, ask again. Every limit waits through [`wait`]: an
//! upstream's rate limit (this replica's or the fleet's in Redis), a client's share, the token
//! limit. What differs between them is only where a cell comes from ([`Cells`], `cells.rs`) and
//! what a refusal is called (their callers map [`Refused`]).
//!
//! The rules, the same for every limit:
//! - **Refuse** (`on_limit = "reject"`, or no rate limit, where only a partner's pause can hold a
//!   request and there is no line to wait in): one question; a wait is refused at once.
//! - **Queue**: requests take their turn in arrival order. Before waiting, a request estimates its
//!   wait: the time to the next cell (what the source answered, when the line was empty; when
//!   it joins others without asking, what is left of a partner's pause known here plus one
//!   interval, the most the head of a line waits for its cell) plus one interval per request
//!   ahead. An estimate past `max_wait` or the deadline is refused at once, instead of waiting
//!   only to fail. In line, a wait that would end past them is refused, and so is a turn that
//!   does not come in time.
//! - **`Retry-After`**, for every refusal, is the wait estimated when refusing: the source's
//!   answer when refusing at once; the estimate above when refused up front; the source's answer
//!   at the head of the line; and for a turn that did not come in time, the estimate of a
//!   request joining the line now (the refused one would join it again at its end, behind
//!   everyone in it).
//! - A partner's pause about to end ([`PAUSE_GRACE`]) is waited out in either mode: the replica
//!   that saw the partner's answer writes the pause a moment after taking it, so its own retry can
//!   meet the last milliseconds of it.
//! - A source that cannot answer (Redis unavailable) ends the wait with [`Refused::Unavailable`]
//!   and the time spent, for the caller to fall back to its local share.
//!
//! A request that finds nobody in line and a cell free costs one question and no clock read.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

/// A pause with at most this left is waited out rather than refused.
pub(crate) const PAUSE_GRACE: Duration = Duration::from_millis(50);

/// Where cells come from: a local GCRA limiter, the fleet's in Redis, or only a partner's pause.
pub(crate) trait Cells {
    /// Time between cells once the burst is spent (zero without a rate limit).
    fn interval(&self) -> Duration;

    /// Takes one cell, or says how long until the next.
    fn take(&self) -> impl Future<Output = Taken> + Send;

    /// [`take`](Self::take) for a source that answers without I/O (a local limiter, a pause);
    /// `None` from one that must be awaited (the fleet's).
    fn take_now(&self) -> Option<Taken> {
        None
    }

    /// What is left of a partner's pause known here, if any: a request that joins a line
    /// without asking counts it in its estimate.
    fn paused_for(&self) -> Option<Duration> {
        None
    }
}

/// What a request learnt before waiting ([`first`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum First {
    /// It took a cell: admitted, nothing waited.
    Admitted,
    /// It asked, and this is the answer.
    Asked(Taken),
    /// Others are in line: it joins them without asking.
    Joined,
    /// The source must be awaited ([`Cells::take_now`] said `None`).
    Ask,
}

/// A source's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Taken {
    /// A cell was taken: send now.
    Now,
    /// No cell for `wait`; `paused` when a partner's pause (not the rate) says so.
    Wait { wait: Duration, paused: bool },
    /// A client's share judged with the cell is spent; nothing was taken.
    Client { wait: Duration },
    /// The source cannot answer (Redis unavailable).
    Unavailable,
}

/// How a limit treats a request it cannot admit at once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule<'a> {
    /// Answer at once.
    Refuse,
    /// Wait in `line`, at most `max_wait`.
    Queue { max_wait: Duration, line: Line<'a> },
}

/// A limit's line: how many wait in it now, and their turns in arrival order (tokio's mutex is
/// fair).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Line<'a> {
    pub waiting: &'a AtomicUsize,
    pub turn: &'a tokio::sync::Mutex<()>,
}

/// Why [`wait`] admitted nobody.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The limit (or a pause) refuses; try again after `retry_after`.
    Limit { retry_after: Duration },
    /// A client's share judged with the cell is spent ([`Taken::Client`]).
    Client { retry_after: Duration },
    /// The source became unavailable after `waited`.
    Unavailable { waited: Duration },
}

/// Takes the count back when a waiter leaves its line, however it leaves.
pub(crate) struct InLine<'a>(pub(crate) &'a AtomicUsize);

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Admits one request through `cells` by `rule`, within `deadline`; the time spent waiting.
/// `queued` is called once, with the estimated wait, if the request joins the line (the caller
/// counts it).
pub(crate) async fn wait<C: Cells>(
    cells: &C,
    rule: Rule<'_>,
    deadline: Instant,
    queued: impl FnOnce(Duration),
) -> Result<Duration, Refused> {
    match first(cells, rule) {
        First::Admitted => Ok(Duration::ZERO),
        first => wait_after(cells, rule, deadline, first, queued).await,
    }
}

/// The first step of [`wait`], without a future: the request path's local limiter answers most
/// requests here (nobody in line, a free cell) and never builds the waiting state.
pub(crate) fn first<C: Cells>(cells: &C, rule: Rule<'_>) -> First {
    // A request may ask out of turn only when nobody is in line: it must not take the cell the
    // head of the line is waiting for.
    if let Rule::Queue { line, .. } = rule {
        if line.waiting.load(Ordering::Acquire) > 0 {
            return First::Joined;
        }
    }
    match cells.take_now() {
        Some(Taken::Now) => First::Admitted,
        Some(answer) => First::Asked(answer),
        None => First::Ask,
    }
}

/// The rest of [`wait`] after its [`first`] step.
pub(crate) async fn wait_after<C: Cells>(
    cells: &C,
    rule: Rule<'_>,
    deadline: Instant,
    first: First,
    queued: impl FnOnce(Duration),
) -> Result<Duration, Refused> {
    let asked = match first {
        First::Admitted => return Ok(Duration::ZERO),
        First::Asked(answer) => Some(answer),
        First::Joined => None,
        First::Ask => match cells.take().await {
            Taken::Now => return Ok(Duration::ZERO),
            answer => Some(answer),
        },
    };
    // Boxed: only a request that waits carries the waiting state in its future.
    Box::pin(wait_for_turn(cells, rule, deadline, asked, queued)).await
}

async fn wait_for_turn<C: Cells>(
    cells: &C,
    rule: Rule<'_>,
    deadline: Instant,
    mut asked: Option<Taken>,
    queued: impl FnOnce(Duration),
) -> Result<Duration, Refused> {
    let start = Instant::now();
    // What the source said, if it was asked: the wait to its next cell.
    let first = loop {
        match asked {
            None => break None,
            Some(Taken::Now) => return Ok(start.elapsed()),
            Some(Taken::Client { wait }) => return Err(Refused::Client { retry_after: wait }),
            Some(Taken::Unavailable) => {
                return Err(Refused::Unavailable {
                    waited: start.elapsed(),
                })
            }
            Some(Taken::Wait { wait, paused: true })
                if wait <= PAUSE_GRACE && Instant::now() + wait < deadline =>
            {
                tokio::time::sleep(wait).await;
                asked = Some(cells.take().await);
            }
            Some(Taken::Wait { wait, .. }) => break Some(wait),
        }
    };
    let Rule::Queue { max_wait, line } = rule else {
        return Err(Refused::Limit {
            retry_after: first.unwrap_or_else(|| cells.interval()),
        });
    };
    let until = deadline.min(start + max_wait);
    let interval = cells.interval();
    let ahead = line.waiting.fetch_add(1, Ordering::AcqRel);
    let _in_line = InLine(line.waiting);
    let estimate = match first {
        Some(next_cell) => next_cell.saturating_add(per_request(interval, ahead)),
        None => joining(cells, ahead),
    };
    if start + estimate > until {
        return Err(Refused::Limit {
            retry_after: estimate,
        });
    }
    queued(estimate);
    let Ok(_turn) = tokio::time::timeout_at(until, line.turn.lock()).await else {
        // Everyone else still in line (this request is counted too) would be ahead of it again.
        let others = line.waiting.load(Ordering::Acquire).saturating_sub(1);
        return Err(Refused::Limit {
            retry_after: joining(cells, others),
        });
    };
    // The source's first answer still holds for the head of the line; a request that waited for
    // its turn asks again at once.
    let mut next = start + first.unwrap_or(Duration::ZERO);
    loop {
        let now = Instant::now();
        if next > until {
            return Err(Refused::Limit {
                retry_after: next - now,
            });
        }
        if next > now {
            tokio::time::sleep_until(next).await;
        }
        match cells.take().await {
            Taken::Now => return Ok(start.elapsed()),
            Taken::Wait { wait, .. } => next = Instant::now() + wait,
            Taken::Client { wait } => return Err(Refused::Client { retry_after: wait }),
            Taken::Unavailable => {
                return Err(Refused::Unavailable {
                    waited: start.elapsed(),
                })
            }
        }
    }
}

/// The estimate of a request that joins a line with `ahead` others in it, without asking: the
/// most the head of the line waits for its cell (what is left of a pause known here, plus one
/// interval), then one interval per request ahead.
fn joining<C: Cells>(cells: &C, ahead: usize) -> Duration {
    let interval = cells.interval();
    let head = cells.paused_for().unwrap_or(Duration::ZERO) + interval;
    head.saturating_add(per_request(interval, ahead))
}

/// One interval for each of `ahead` requests.
fn per_request(interval: Duration, ahead: usize) -> Duration {
    interval.saturating_mul(u32::try_from(ahead).unwrap_or(u32::MAX))
}

#[cfg(test)]
mod tests {
    //! The loop against a scripted source on the paused clock: exact admission times.

    use std::sync::{Arc, Mutex};

    use super::*;

    /// GCRA by hand (a burst of `burst`, then one cell every `interval`), or a scripted answer.
    struct Scripted {
        interval: Duration,
        start: Instant,
        /// The theoretical arrival time, as an offset from `start`.
        tat: Mutex<Duration>,
        /// How far ahead of the schedule a cell may be taken: `interval * (burst - 1)`.
        tolerance: Duration,
        /// Answers given instead of the schedule, first to last.
        script: Mutex<Vec<Taken>>,
        asked: Mutex<u32>,
    }

    impl Scripted {
        fn new(interval: Duration, burst: u32) -> Self {
            Self {
                interval,
                start: Instant::now(),
                tat: Mutex::new(Duration::ZERO),
                tolerance: interval * (burst - 1),
                script: Mutex::new(Vec::new()),
                asked: Mutex::new(0),
            }
        }
    }

    impl Cells for Scripted {
        fn interval(&self) -> Duration {
            self.interval
        }

        async fn take(&self) -> Taken {
            *self.asked.lock().unwrap() += 1;
            if let Some(answer) = self.script.lock().unwrap().pop() {
                return answer;
            }
            let now = Instant::now() - self.start;
            let mut tat = self.tat.lock().unwrap();
            let allowed_at = tat.saturating_sub(self.tolerance);
            if now >= allowed_at {
                *tat = now.max(*tat) + self.interval;
                Taken::Now
            } else {
                Taken::Wait {
                    wait: allowed_at - now,
                    paused: false,
                }
            }
        }
    }

    struct Limit {
        cells: Scripted,
        waiting: AtomicUsize,
        turn: tokio::sync::Mutex<()>,
        queued: Mutex<u32>,
    }

    impl Limit {
        fn new(interval_secs: u64, burst: u32) -> Arc<Self> {
            Arc::new(Self {
                cells: Scripted::new(Duration::from_secs(interval_secs), burst),
                waiting: AtomicUsize::new(0),
                turn: tokio::sync::Mutex::new(()),
                queued: Mutex::new(0),
            })
        }

        fn queue(&self, max_wait_secs: u64) -> Rule<'_> {
            Rule::Queue {
                max_wait: Duration::from_secs(max_wait_secs),
                line: Line {
                    waiting: &self.waiting,
                    turn: &self.turn,
                },
            }
        }

        async fn admit(&self, max_wait_secs: Option<u64>) -> Result<Duration, Refused> {
            let rule = max_wait_secs.map_or(Rule::Refuse, |s| self.queue(s));
            let deadline = Instant::now() + Duration::from_secs(60);
            wait(&self.cells, rule, deadline, |_| *self.queued.lock().unwrap() += 1).await
        }
    }

    /// `n` requests arriving at once, in order; when each was admitted (seconds) or its refusal.
    async fn burst(limit: &Arc<Limit>, n: usize, max_wait: Option<u64>) -> Vec<Result<u64, Refused>> {
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let limit = limit.clone();
            tasks.push(tokio::spawn(async move {
                limit
                    .admit(max_wait)
                    .await
                    .map(|_| (Instant::now() - start).as_secs())
            }));
            // Arrival order is spawn order.
            tokio::task::yield_now().await;
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    fn refused(secs: u64) -> Result<u64, Refused> {
        Err(Refused::Limit {
            retry_after: Duration::from_secs(secs),
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_burst_goes_at_once_then_one_per_interval_in_arrival_order() {
        let limit = Limit::new(2, 2);
        let got = burst(&limit, 5, Some(30)).await;
        assert_eq!(got, [Ok(0), Ok(0), Ok(2), Ok(4), Ok(6)]);
        assert_eq!(
            *limit.queued.lock().unwrap(),
            3,
            "each queued request counted once"
        );
        assert_eq!(
            limit.waiting.load(Ordering::Acquire),
            0,
            "the line is empty again"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_past_max_wait_is_refused_up_front_with_the_estimate() {
        // One cell every 2 s after one at once; waits of up to 5 s. The second is told 2 s
        // (asked: the line was empty); the third joins behind it (one interval to the cell the
        // head waits for, one more for its own: 4 s); the fourth would wait 6 s and is refused at
        // once with that estimate, before anyone was admitted after the first.
        let limit = Limit::new(2, 1);
        let got = burst(&limit, 4, Some(5)).await;
        assert_eq!(got, [Ok(0), Ok(2), Ok(4), refused(6)]);
        assert_eq!(
            *limit.queued.lock().unwrap(),
            2,
            "the refused one was never queued"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn refuse_answers_at_once_with_the_time_to_the_next_cell() {
        let limit = Limit::new(10, 1);
        let got = burst(&limit, 2, None).await;
        assert_eq!(got, [Ok(0), refused(10)]);
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(limit.admit(None).await, Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_about_to_end_is_waited_out_even_when_refusing() {
        let limit = Limit::new(10, 1);
        limit.cells.script.lock().unwrap().push(Taken::Wait {
            wait: Duration::from_millis(40),
            paused: true,
        });
        assert_eq!(limit.admit(None).await, Ok(Duration::from_millis(40)));
        // A longer pause is refused with what is left of it.
        limit.cells.script.lock().unwrap().push(Taken::Wait {
            wait: Duration::from_secs(3),
            paused: true,
        });
        assert_eq!(
            limit.admit(None).await,
            Err(Refused::Limit {
                retry_after: Duration::from_secs(3)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_source_ends_the_wait_with_the_time_spent() {
        let limit = Limit::new(2, 1);
        assert_eq!(limit.admit(Some(10)).await, Ok(Duration::ZERO));
        // In line for the next cell (2 s), the source then stops answering.
        limit.cells.script.lock().unwrap().push(Taken::Unavailable);
        limit.cells.script.lock().unwrap().push(Taken::Wait {
            wait: Duration::from_secs(2),
            paused: false,
        });
        assert_eq!(
            limit.admit(Some(10)).await,
            Err(Refused::Unavailable {
                waited: Duration::from_secs(2)
            })
        );
        assert_eq!(limit.waiting.load(Ordering::Acquire), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_spent_client_share_ends_the_wait_and_takes_nothing() {
        let limit = Limit::new(2, 1);
        limit.cells.script.lock().unwrap().push(Taken::Client {
            wait: Duration::from_secs(7),
        });
        assert_eq!(
            limit.admit(Some(10)).await,
            Err(Refused::Client {
                retry_after: Duration::from_secs(7)
            })
        );
        // The burst cell is still there.
        assert_eq!(limit.admit(Some(10)).await, Ok(Duration::ZERO));
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_bounds_the_wait_like_max_wait() {
        let limit = Limit::new(5, 1);
        assert_eq!(limit.admit(Some(30)).await, Ok(Duration::ZERO));
        let deadline = Instant::now() + Duration::from_secs(3);
        let got = wait(&limit.cells, limit.queue(30), deadline, |_| {}).await;
        assert_eq!(
            got,
            Err(Refused::Limit {
                retry_after: Duration::from_secs(5)
            })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_that_does_not_come_in_time_is_refused_with_the_estimate_of_joining_now() {
        // One cell every 2 s after one at once; waits of up to 5 s.
        let limit = Limit::new(2, 1);
        assert_eq!(limit.admit(Some(5)).await, Ok(Duration::ZERO));
        // The head of the line is told 2 s, then (a slower source than it said) 2.8 s more:
        // it holds its turn until 4.8 s.
        let head = tokio::spawn({
            let limit = limit.clone();
            async move { limit.admit(Some(5)).await }
        });
        tokio::task::yield_now().await;
        limit.cells.script.lock().unwrap().push(Taken::Wait {
            wait: Duration::from_millis(2800),
            paused: false,
        });
        // Behind it, a request with 4.5 s to its deadline estimates 4 s and waits; its turn has
        // not come at 4.5 s. Were it to come back, it would join behind the head: one interval
        // to the head's cell, one for its own.
        let deadline = Instant::now() + Duration::from_millis(4500);
        let got = wait(&limit.cells, limit.queue(5), deadline, |_| {}).await;
        assert_eq!(
            got,
            Err(Refused::Limit {
                retry_after: Duration::from_secs(4)
            })
        );
        assert_eq!(head.await.unwrap(), Ok(Duration::from_millis(4800)));
    }

    #[tokio::test(start_paused = true)]
    async fn nobody_in_line_and_a_free_cell_costs_one_question() {
        let limit = Limit::new(1, 3);
        for _ in 0..3 {
            assert_eq!(limit.admit(Some(1)).await, Ok(Duration::ZERO));
        }
        assert_eq!(*limit.cells.asked.lock().unwrap(), 3);
        assert_eq!(*limit.queued.lock().unwrap(), 0);
    }
}
