//! Keeping callers inside a partner's limits: per (upstream, environment) admission.
//!
//! Three gates, all per upstream:
//! - **Concurrency** (`max_concurrency`): a fair (FIFO) semaphore held for the whole caller request;
//!   beyond it requests wait up to `max_wait`, then get `503 overloaded`.
//! - **Rate** (`rate_limit`, GCRA on governor): every attempt that reaches the partner passes it —
//!   first tries, retries and 401 replays. `reject` answers 429 at once; `queue` waits in arrival
//!   order, and a request whose estimated wait exceeds `max_wait` is rejected at once instead of
//!   waiting only to fail.
//! - **Pause**: a partner 429/503 with `Retry-After` (or `RateLimit-Remaining: 0` with a reset) stops
//!   the upstream for everyone until then, capped at `max_pause`. Lock-free to read.
//!
//! With `[shared]` the rate limit, the pause and the adaptive pace are the fleet's, kept in Redis
//! (`shared::gcra`): one script call checks them all for an attempt admitted at once. While Redis is unavailable each replica falls back to a
//! local limiter holding `1/replicas` of the budget. Without `[shared]` none of that code runs: the
//! local path pays one `Option` check.
//!
//! # Layout
//! - `mod.rs`: [`Admission`], which composes the gates for one upstream.
//! - `wait.rs`: the one wait loop every limit uses (upstream, client share, token limit), with
//!   its rules for the estimate, `Retry-After` and the deadline.
//! - `cells.rs`: where cells come from: local GCRA, the fleet's in Redis, the pause alone.
//! - `rate.rs`: a local GCRA limit and its line. `pause.rs`: the partner's pause.
//! - `pace.rs`: adaptive spacing from a partner's announced budget.
//! - `status.rs`: the `/status` view. The quota's shape is `quota.rs` (a bottom module).

mod cells;
mod pace;
mod pause;
mod rate;
mod status;
pub(crate) mod wait;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tollgate_metrics::{Limited, UpstreamMetrics};

pub(crate) use self::cells::{Fleet, Local};
use self::pace::{Pace, Reserved};
use self::pause::{Partner, Pause};
pub(crate) use self::rate::Rate;
pub use self::status::{LimitStatus, RateLimitStatus};
use self::wait::{wait, First, Refused, Rule};
use crate::config::{LimitMode, OnLimit, Upstream};
use crate::error::GatewayError;
use crate::shared::{SharedCell, SharedLimiter, SharedState};

/// Admission for one upstream.
#[derive(Debug)]
pub struct Admission {
    /// Shared with the admission a reload replaced, when the limit did not change: the GCRA
    /// state carries over, so a reload hands out no fresh burst.
    rate: Option<Arc<Rate>>,
    slots: Arc<Semaphore>,
    max_concurrency: u32,
    /// How long a request may wait for a slot or a cell.
    max_wait: Duration,
    max_pause: Duration,
    /// A partner's pause is the partner's, whatever the config: it outlives reloads.
    pause: Arc<Pause>,
    /// Requests in line for a cell right now: a request finding others here queues behind them.
    queued: AtomicUsize,
    /// Requests waiting for a concurrency slot right now. Kept apart from `queued`: they are not
    /// ahead of anyone in the rate limit's line, and counting them there made a request that got a
    /// slot expect their cells too and refuse itself with 429.
    waiting_for_slot: AtomicUsize,
    metrics: UpstreamMetrics,
    /// `[shared]` only: the fleet's limit and pause in Redis.
    shared: Option<SharedAdmission>,
    /// `rate_limit.adaptive` (an enforced limit only): the pace the partner's announced budget
    /// allows (`pace.rs`).
    pace: Option<Pace>,
}

#[derive(Debug)]
struct SharedAdmission {
    limiter: Arc<SharedLimiter>,
    /// This replica's share of the rate limit, used while Redis is unavailable.
    degraded: Option<Arc<Rate>>,
    /// `[shared] replicas`: the fleet's requests in flight are guessed from this replica's.
    replicas: u32,
}

/// With `[shared]`, a client's share of an upstream as the upstream's admission takes it: its
/// cell in the fleet's script, and this replica's part of it while Redis is unavailable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientShare<'a> {
    pub cell: &'a SharedCell,
    pub degraded: &'a Rate,
}

/// A slot counted in `max_concurrency`, released on drop.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

impl Admission {
    /// `previous`: the admission of the same upstream that a reload replaces; its rate state
    /// (when the limit is the same) and its pause carry over.
    pub fn new(
        cfg: &Upstream,
        metrics: UpstreamMetrics,
        shared: Option<&Arc<SharedState>>,
        previous: Option<&Admission>,
    ) -> Self {
        let limit = cfg.target.rate_limit;
        let rate = Rate::succeeding(previous.map(|p| p.rate.as_ref()), limit);
        let env = cfg.environment.as_str();
        let adaptive = limit.filter(|l| l.adaptive && l.mode == LimitMode::Enforce);
        let shared = shared.map(|state| SharedAdmission {
            limiter: Arc::new({
                let limiter = SharedLimiter::new(
                    state.clone(),
                    state.key("rate", &cfg.name, env),
                    Some(state.key("pause", &cfg.name, env)),
                    limit.as_ref(),
                );
                match adaptive {
                    // The fleet's pace, beside its cell, judged in the same script call.
                    Some(_) => limiter.paced(state.key("pace", &cfg.name, env)),
                    None => limiter,
                }
            }),
            degraded: Rate::succeeding(
                previous.map(|p| p.shared.as_ref().and_then(|s| s.degraded.as_ref())),
                limit.map(|l| state.share_of(&l)),
            ),
            replicas: state.replicas(),
        });
        Self {
            shared,
            pace: adaptive.map(|_| Pace::default()),
            max_wait: limit.map_or(cfg.request_timeout, |r| r.max_wait),
            rate,
            slots: Arc::new(Semaphore::new(cfg.max_concurrency.get() as usize)),
            max_concurrency: cfg.max_concurrency.get(),
            max_pause: cfg.max_pause,
            pause: previous.map_or_else(Arc::default, |p| p.pause.clone()),
            queued: AtomicUsize::new(0),
            waiting_for_slot: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Whether `cfg` asks for exactly these limits: then a reload keeps this admission whole
    /// (slots in use, the line, the rate state).
    pub(crate) fn serves(&self, cfg: &Upstream) -> bool {
        self.rate.as_ref().map(|r| r.config) == cfg.target.rate_limit
            && self.max_concurrency == cfg.max_concurrency.get()
            && self.max_pause == cfg.max_pause
            && self.max_wait == cfg.target.rate_limit.map_or(cfg.request_timeout, |r| r.max_wait)
    }

    /// A concurrency slot for a whole caller request, waiting up to `max_wait` (and the deadline).
    pub async fn enter(&self, deadline: Instant) -> Result<Slot, GatewayError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(Slot(permit));
        }
        // Boxed: every request's future would otherwise carry the waiting state (see `admit`).
        Box::pin(self.wait_for_slot(deadline)).await
    }

    async fn wait_for_slot(&self, deadline: Instant) -> Result<Slot, GatewayError> {
        self.waiting_for_slot.fetch_add(1, Ordering::AcqRel);
        let _in_line = wait::InLine(&self.waiting_for_slot);
        self.metrics.limited(Limited::ConcurrencyQueued);
        let until = deadline.min(Instant::now() + self.max_wait);
        match tokio::time::timeout_at(until, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(Slot(permit)),
            _ => {
                self.metrics.limited(Limited::ConcurrencyRejected);
                Err(GatewayError::Overloaded)
            }
        }
    }

    /// Admits one attempt through the pace, the pause and the rate limit. Returns the time spent
    /// waiting.
    ///
    /// `client`: with `[shared]`, a client's share of this upstream, judged in the same script
    /// call before the upstream's cell (without `[shared]` the pipeline checks a client's share
    /// itself, and passes `None`). When that share is spent the answer is at once
    /// `CallerRateLimited` with the wait, and nothing was taken: the caller waits for the
    /// client's cell alone in the client's line (`CallerLimit::wait_for_fleet`), then asks
    /// again without it.
    pub async fn admit(
        &self,
        deadline: Instant,
        client: Option<&ClientShare<'_>>,
    ) -> Result<Duration, GatewayError> {
        // The clock is read only while a pace is in force.
        if let Some(pace) = self.pace.as_ref().filter(|p| p.active()) {
            if self.shared.is_some() {
                // The fleet's pace is judged by the script (this replica's only shows in
                // `/status`, and while Redis is unavailable, `admit_degraded`).
                if pace.ended(Instant::now()) {
                    self.metrics.adaptive_cap(0.0);
                }
            } else {
                let paced = self.paced(pace, deadline).await?;
                if !paced.is_zero() {
                    return Box::pin(self.admit_after_pace(deadline, client))
                        .await
                        .map(|w| w + paced);
                }
            }
        }
        self.admit_after_pace(deadline, client).await
    }

    /// Reserves a send time on this replica's pace and waits for it; the time waited. `reject`
    /// refuses any wait, `queue` one past `max_wait` or the deadline; the pace decides that
    /// under its lock and reserves nothing for a request it refuses.
    async fn paced(&self, pace: &Pace, deadline: Instant) -> Result<Duration, GatewayError> {
        let now = Instant::now();
        let rejecting = self
            .rate
            .as_ref()
            .is_some_and(|r| r.config.on_limit == OnLimit::Reject);
        let within = if rejecting {
            Duration::ZERO
        } else {
            self.max_wait.min(deadline.saturating_duration_since(now))
        };
        match pace.reserve(now, within) {
            Reserved::Free | Reserved::After(Duration::ZERO) => Ok(Duration::ZERO),
            Reserved::Ended => {
                self.metrics.adaptive_cap(0.0);
                Ok(Duration::ZERO)
            }
            Reserved::Refused(wait) => Err(self.reject(wait)),
            // Boxed: only a paced request carries the waiting state.
            Reserved::After(wait) => Box::pin(self.pace_wait(wait)).await,
        }
    }

    /// Waits out a pace reservation.
    async fn pace_wait(&self, wait: Duration) -> Result<Duration, GatewayError> {
        self.metrics.limited(Limited::UpstreamPaced);
        tokio::time::sleep(wait).await;
        Ok(wait)
    }

    /// The pause and the rate limit, after any pace.
    async fn admit_after_pace(
        &self,
        deadline: Instant,
        client: Option<&ClientShare<'_>>,
    ) -> Result<Duration, GatewayError> {
        if let Some(shared) = &self.shared {
            // Boxed so the local path's future does not grow by the shared one: the pipeline's
            // future is moved into hyper's connection slot for every request, so size is time.
            return Box::pin(self.admit_shared(shared, deadline, client)).await;
        }
        self.admit_local(self.rate.as_deref(), deadline).await
    }

    /// The local limiter: `rate` is the configured one, or this replica's share while degraded.
    async fn admit_local(&self, rate: Option<&Rate>, deadline: Instant) -> Result<Duration, GatewayError> {
        let Some(rate) = rate else {
            // No rate limit configured: only a pause can hold a request, answered at once.
            return self.settle(wait(&*self.pause, Rule::Refuse, deadline, |_| {}).await);
        };
        if rate.config.mode == LimitMode::Shadow {
            // As without a limit: a pause (the partner's) is answered at once; the limit counts.
            if let Some(paused) = self.pause.left() {
                return Err(self.reject(paused));
            }
            if let Err(wait) = rate.check() {
                self.shadow(rate, wait);
            }
            return Ok(Duration::ZERO);
        }
        let cells = Local {
            rate,
            pause: Some(&self.pause),
        };
        let rule = rate.rule(&self.queued);
        match wait::first(&cells, rule) {
            First::Admitted => Ok(Duration::ZERO),
            first => {
                let queued = |_| self.metrics.limited(Limited::UpstreamQueued);
                // Boxed: only a request that waits carries the waiting state in its future.
                self.settle(Box::pin(wait::wait_after(&cells, rule, deadline, first, queued)).await)
            }
        }
    }

    /// `mode = "shadow"`: counts what the limit would have done with a request told to wait
    /// `wait` (queued within `max_wait`, else refused); the request goes through.
    fn shadow(&self, rate: &Rate, wait: Duration) {
        let refused = rate.config.on_limit == OnLimit::Reject || wait > rate.config.max_wait;
        self.metrics.limited(if refused {
            Limited::UpstreamShadowRejected
        } else {
            Limited::UpstreamShadowQueued
        });
    }

    /// The fleet's limiter in Redis: the same rules as `admit_local` (`wait.rs`), with the cells
    /// from the script; on this replica only the head of the line asks. Falls back to this
    /// replica's share whenever Redis is unavailable.
    async fn admit_shared(
        &self,
        shared: &SharedAdmission,
        deadline: Instant,
        client: Option<&ClientShare<'_>>,
    ) -> Result<Duration, GatewayError> {
        let cells = Fleet {
            limiter: &shared.limiter,
            client: client.map(|c| c.cell),
            partner: Some(self.partner()),
            batched: !self.pace.as_ref().is_some_and(|p| p.active()),
        };
        let waited = if let Some(rate) = self
            .rate
            .as_deref()
            .filter(|r| r.config.mode == LimitMode::Shadow)
        {
            // The fleet's cell is asked for as if enforced (so the fleet's state is what the
            // limit would have made it), but only a pause or the client's share holds a request.
            match wait(&cells, Rule::Refuse, deadline, |_| {}).await {
                Err(Refused::Limit { retry_after }) if self.pause.left().is_none() => {
                    self.shadow(rate, retry_after);
                    Ok(Duration::ZERO)
                }
                other => other,
            }
        } else {
            let rule = self
                .rate
                .as_deref()
                .map_or(Rule::Refuse, |r| r.rule(&self.queued));
            wait(&cells, rule, deadline, |_| {
                self.metrics.limited(Limited::UpstreamQueued)
            })
            .await
        };
        match waited {
            Err(Refused::Unavailable { waited }) => self
                .admit_degraded(shared, deadline, client)
                .await
                .map(|w| w + waited),
            other => self.settle(other),
        }
    }

    /// Redis is unavailable: this replica's share of the client's limit, then of the upstream's.
    async fn admit_degraded(
        &self,
        shared: &SharedAdmission,
        deadline: Instant,
        client: Option<&ClientShare<'_>>,
    ) -> Result<Duration, GatewayError> {
        if let Some(client) = client {
            client
                .degraded
                .check()
                .map_err(|wait| GatewayError::CallerRateLimited { retry_after: wait })?;
        }
        // Without Redis, the pace this replica's own answers taught it.
        let paced = match self.pace.as_ref().filter(|p| p.active()) {
            Some(pace) => self.paced(pace, deadline).await?,
            None => Duration::ZERO,
        };
        self.admit_local(shared.degraded.as_deref(), deadline)
            .await
            .map(|w| w + paced)
    }

    /// A wait's outcome as the request path answers it.
    fn settle(&self, waited: Result<Duration, Refused>) -> Result<Duration, GatewayError> {
        waited.map_err(|refused| match refused {
            Refused::Limit { retry_after } => self.reject(retry_after),
            Refused::Client { retry_after } => GatewayError::CallerRateLimited { retry_after },
            // Only the fleet's source is ever unavailable, and `admit_shared` falls back first.
            Refused::Unavailable { .. } => {
                self.reject(self.rate.as_ref().map_or(Duration::from_secs(1), |r| r.interval))
            }
        })
    }

    fn reject(&self, retry_after: Duration) -> GatewayError {
        self.metrics.limited(Limited::UpstreamRejected);
        GatewayError::RateLimited { retry_after }
    }

    /// The upstream's pause as this admission sets it.
    fn partner(&self) -> Partner<'_> {
        Partner {
            pause: &self.pause,
            max_pause: self.max_pause,
            metrics: &self.metrics,
        }
    }

    /// Learns from a partner response: 429/503 with `Retry-After`, a 429 without one (one cell),
    /// or `RateLimit-Remaining: 0` / `X-RateLimit-Remaining: 0` with a reset, pause the upstream;
    /// an announced budget sets the pace. Returns the answer's `Retry-After` (read once here, for
    /// the retry policy too).
    ///
    /// With `[shared]` the fleet learns the pace before this returns: the answering request still
    /// holds its slot, so this replica sends nothing the fleet's pace has not seen.
    pub async fn observe(&self, status: u16, headers: &HeaderMap) -> Option<Duration> {
        let retry_after = crate::retry_after::parse(headers, crate::clock::system_now);
        let announced = crate::rate_headers::read(headers, crate::clock::now_unix);
        // The pause first: it must not wait for Redis to learn the pace.
        let pause = match (status, retry_after) {
            (429 | 503, Some(wait)) => Some((wait, "partner Retry-After")),
            (429, None) => Some((
                self.rate.as_ref().map_or(Duration::from_secs(1), |r| r.interval),
                "partner 429",
            )),
            _ => announced
                .and_then(|a| a.exhausted_for())
                .map(|wait| (wait, "partner rate-limit headers")),
        };
        if let Some((wait, reason)) = pause {
            self.partner().hold(wait, reason);
            if let Some(shared) = &self.shared {
                // Every replica stops too; the response need not wait for that. The pause ends
                // when this replica's does, however late the write lands.
                let (limiter, until) = (shared.limiter.clone(), Instant::now() + wait.min(self.max_pause));
                tokio::spawn(async move { limiter.pause_until(until).await });
            }
        }
        if let (Some(pace), Some(a)) = (&self.pace, announced) {
            if let (Some(remaining), Some(reset)) = (a.remaining, a.reset) {
                // The answering request still holds its slot: the others are the ones in flight.
                // With `[shared]` the other replicas' are not known here: each is taken to have
                // as many in flight as this one (an even spread), which errs on the slow side.
                let busy = (self.max_concurrency as usize - self.slots.available_permits()) as u64;
                let fleet = self.shared.as_ref().map_or(1, |s| u64::from(s.replicas));
                let others = (busy * fleet).saturating_sub(1);
                let reset = reset.min(self.max_pause);
                // More than one request per microsecond means no pace at all; bounding it keeps a
                // hostile `remaining` (saturated to u64::MAX) an exact integer in Redis.
                let per_us = u64::try_from(reset.as_micros()).unwrap_or(u64::MAX);
                let remaining = remaining.min(per_us);
                let cap = pace.learn(Instant::now(), remaining, reset, others);
                let limit = a.limit.map(|l| l.min(per_us));
                if let Some(limit) = limit {
                    pace.learn_limit(limit);
                }
                self.metrics.adaptive_cap(cap);
                if let Some(shared) = &self.shared {
                    let allowance = remaining.saturating_sub(others);
                    // Boxed: only an answer that announces a budget, with `[shared]`, waits here.
                    Box::pin(shared.limiter.learn_pace(allowance, reset, limit)).await;
                }
            }
        }
        retry_after
    }

    /// The view `/status` shows.
    pub fn status(&self) -> LimitStatus {
        let paused = self.pause.left();
        LimitStatus {
            rate_limit: self.rate.as_ref().map(|r| RateLimitStatus::of(&r.config)),
            max_concurrency: self.max_concurrency,
            in_flight: self.max_concurrency - u32::try_from(self.slots.available_permits()).unwrap_or(0),
            queued: self.queued.load(Ordering::Acquire) + self.waiting_for_slot.load(Ordering::Acquire),
            paused_for_seconds: paused.map(|p| p.as_secs_f64()),
            pause_reason: paused.map(|_| self.pause.reason()),
            adaptive: self.pace.as_ref().and_then(|p| p.status(Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upstream's admission with `rate_limit` (TOML inline table), on no `[shared]`.
    fn admission(rate_limit: &str) -> Arc<Admission> {
        let config = crate::Config::parse(
            &format!("[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:9\"\nrate_limit = {rate_limit}\n"),
            &|_| None,
        )
        .unwrap();
        let up = &config.upstreams[0];
        let metrics = tollgate_metrics::Metrics::new("t").upstream("p", "sandbox");
        Arc::new(Admission::new(up, metrics, None, None))
    }

    /// Admits `n` requests that all arrive at once, in order; when each was admitted (or refused),
    /// in seconds after the start, on the paused clock.
    async fn burst(a: &Arc<Admission>, n: usize) -> Vec<Result<f64, GatewayError>> {
        let start = Instant::now();
        let deadline = start + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for _ in 0..n {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                a.admit(deadline, None)
                    .await
                    .map(|_| (Instant::now() - start).as_secs_f64())
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

    #[tokio::test(start_paused = true)]
    async fn the_burst_goes_at_once_then_one_cell_per_interval_in_arrival_order() {
        // 4 per 4 s with a burst of 2: the other 2 are spaced 2 s apart.
        let a = admission(r#"{ requests = 4, per = "4s", burst = 2, on_limit = "queue", max_wait = "10s" }"#);
        let times: Vec<f64> = burst(&a, 4).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(times, [0.0, 0.0, 2.0, 4.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_beyond_max_wait_is_refused_up_front() {
        // One per 2 s, waits of up to 3 s: the second waits 2 s, the third (4 s) is refused at
        // once, with the wait it would have had as its Retry-After.
        let a = admission(r#"{ requests = 1, per = "2s", on_limit = "queue", max_wait = "3s" }"#);
        let got = burst(&a, 3).await;
        assert_eq!(got[0].as_ref().ok(), Some(&0.0));
        assert_eq!(got[1].as_ref().ok(), Some(&2.0));
        match &got[2] {
            Err(GatewayError::RateLimited { retry_after }) => {
                assert_eq!(*retry_after, Duration::from_secs(4));
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn reject_mode_refuses_with_the_time_to_the_next_cell() {
        let a = admission(r#"{ requests = 2, per = "10s", burst = 2, on_limit = "reject" }"#);
        let got = burst(&a, 3).await;
        assert!(got[0].is_ok() && got[1].is_ok());
        match &got[2] {
            Err(GatewayError::RateLimited { retry_after }) => {
                assert_eq!(*retry_after, Duration::from_secs(10));
            }
            other => panic!("{other:?}"),
        }
        // Ten seconds later, on the same paused clock, the next cell is there.
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(a
            .admit(Instant::now() + Duration::from_secs(1), None)
            .await
            .is_ok());
    }

    fn rejected(got: Result<Duration, GatewayError>) -> Duration {
        match got {
            Err(GatewayError::RateLimited { retry_after }) => retry_after,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_the_pace_refuses_in_reject_mode_takes_no_send_time() {
        // A generous limit: only the pace holds anyone.
        let a = admission(r#"{ requests = 100, per = "1s", burst = 100, on_limit = "reject" }"#);
        let deadline = Instant::now() + Duration::from_secs(60);
        // 2 left for 10 s: one send every 5 s.
        let pace = a.pace.as_ref().unwrap();
        pace.learn(Instant::now(), 2, Duration::from_secs(10), 0);
        assert_eq!(a.admit(deadline, None).await.unwrap(), Duration::ZERO);
        // Refused, again and again, each with the same 5 s: a refusal moved nothing on.
        for _ in 0..3 {
            assert_eq!(rejected(a.admit(deadline, None).await), Duration::from_secs(5));
        }
        // So the next send time is still the one 5 s after the first.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(a.admit(deadline, None).await.unwrap(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_the_pace_refuses_past_max_wait_takes_no_send_time() {
        let a = admission(r#"{ requests = 9, per = "1s", burst = 9, on_limit = "queue", max_wait = "3s" }"#);
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(60);
        // One send every 5 s: the second would wait 5 s, past max_wait.
        let pace = a.pace.as_ref().unwrap();
        pace.learn(t0, 2, Duration::from_secs(10), 0);
        assert_eq!(a.admit(deadline, None).await.unwrap(), Duration::ZERO);
        assert_eq!(rejected(a.admit(deadline, None).await), Duration::from_secs(5));
        // 2 s later the send time 5 s after the first is 3 s away, within max_wait: the refused
        // request did not push it to 10 s.
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(a.admit(deadline, None).await.unwrap(), Duration::from_secs(3));
        assert_eq!(Instant::now() - t0, Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn hostile_rate_limit_headers_never_pause_past_max_pause_nor_panic() {
        let max_pause = Duration::from_secs(5);
        let fresh = || {
            let toml = "[upstreams.p]\nmax_pause = \"5s\"\n[upstreams.p.sandbox]\n\
                        base_url = \"http://127.0.0.1:9\"\nrate_limit = { requests = 10, per = \"1s\" }\n";
            let config = crate::Config::parse(toml, &|_| None).unwrap();
            let metrics = tollgate_metrics::Metrics::new("t").upstream("p", "sandbox");
            Admission::new(&config.upstreams[0], metrics, None, None)
        };
        let observed = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for &(name, text) in pairs {
                headers.insert(name, http::HeaderValue::from_str(text).unwrap());
            }
            headers
        };
        let huge = "99999999999999999999999";
        let values = [
            "-5",
            "abc",
            "NaN",
            "inf",
            "1e400",
            "-1e300",
            "",
            "1e300",
            huge,
            // Unix seconds and milliseconds in the past, and an HTTP date in the past.
            "1690000000",
            "1690000000000",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        ];
        for value in values {
            let draft7 = format!("limit=10, remaining=0, reset={value}");
            let draft8 = format!("\"p\";r=0;t={value}");
            // Every dialect that pauses or paces, `value` where the wait (or the budget) goes.
            let cases: [&[(&str, &str)]; 7] = [
                &[("retry-after", value)],
                &[("retry-after-ms", value)],
                &[("ratelimit", draft7.as_str())],
                &[("ratelimit", draft8.as_str())],
                &[("ratelimit-remaining", "0"), ("ratelimit-reset", value)],
                &[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", value)],
                &[("x-ratelimit-remaining", value), ("x-ratelimit-reset", huge)],
            ];
            for pairs in cases {
                for status in [200, 429, 503] {
                    let a = fresh();
                    a.observe(status, &observed(pairs)).await;
                    let paused = a.pause.left();
                    let paced = a.status().adaptive.map(|p| p.expires_in_seconds);
                    let case = format!("{status} {pairs:?}: paused {paused:?}, paced {paced:?}");
                    assert!(paused.is_none_or(|p| p <= max_pause), "{case}");
                    assert!(paced.is_none_or(|s| s <= 5.0), "{case}");
                }
            }
        }
        // The cap is what holds them: the largest waits pause for max_pause exactly.
        let largest: [(u16, &[(&str, &str)]); 3] = [
            (429, &[("retry-after-ms", "1e300")]),
            (200, &[("ratelimit", "limit=10, remaining=0, reset=1e300")]),
            (200, &[("ratelimit-remaining", "0"), ("ratelimit-reset", huge)]),
        ];
        for (status, pairs) in largest {
            let a = fresh();
            a.observe(status, &observed(pairs)).await;
            assert_eq!(a.pause.left(), Some(max_pause), "{pairs:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn osigus_50_per_sliding_minute_holds_over_simulated_minutes() {
        // Osigu's real limit, queued: 120 requests at once, then one every 2.25 s for three
        // minutes. Every request is admitted, no 60 s window ever holds more than 50, and the
        // first minute holds exactly 50 (the limit is used, not just obeyed).
        let a =
            admission(r#"{ requests = 50, per = "1m", burst = 5, on_limit = "queue", max_wait = "10m" }"#);
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..200 {
            if i >= 120 {
                tokio::time::sleep(Duration::from_millis(2250)).await;
            }
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                a.admit(Instant::now() + Duration::from_secs(900), None)
                    .await
                    .map(|_| Instant::now() - start)
            }));
            tokio::task::yield_now().await;
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap().unwrap());
        }
        times.sort_unstable();
        let minute = Duration::from_secs(60);
        let most = (0..times.len())
            .map(|i| times[i..].iter().take_while(|t| **t - times[i] < minute).count())
            .max()
            .unwrap();
        assert!(most <= 50, "{most} in the busiest minute");
        // The 50th cell falls on the minute's last instant (45 spaced cells of 60/45 s).
        assert_eq!(times.iter().filter(|t| **t <= minute).count(), 50);
        // 5 at once, then one every 60/45 s: the 200th at 195 * 4/3 s = 260 s.
        let last = times.last().unwrap().as_secs_f64();
        assert!((259.9..260.1).contains(&last), "{last}");
    }
}
