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
//! With `[shared]` the rate limit and the pause are the fleet's, kept in Redis (`shared::gcra`): one
//! script call per attempt checks both. While Redis is unavailable each replica falls back to a
//! local limiter holding `1/replicas` of the budget. Without `[shared]` none of that code runs: the
//! local path pays one `Option` check.
//!
//! `rate_limit = { requests, per, burst }` means: at most `requests` in any `per`-long window, up to
//! `burst` of them back to back. Plain GCRA with rate `requests/per` would let `burst + requests`
//! through in one window and trip a partner that counts per window, so cells are emitted every
//! `per / (requests - burst)` instead (every `per` when `burst == requests`).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::Quota;
use http::HeaderMap;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tollgate_metrics::{Limited, UpstreamMetrics};

use crate::config::{LimitMode, OnLimit, RateLimit, Upstream};
use crate::error::GatewayError;
use crate::pace::{Pace, Reserved};
use crate::shared::{SharedCell, SharedLimiter, SharedState, Verdict};

/// `[shared]`: a pause with at most this left is waited out rather than answered with 429.
const PAUSE_GRACE: Duration = Duration::from_millis(50);

/// The GCRA quota for a limit (see the module doc for why the period is not `per / requests`).
pub fn quota(limit: &RateLimit) -> Quota {
    let requests = limit.requests.get();
    let burst = limit.burst.get().min(requests);
    let spaced = (requests - burst).max(1);
    let period = (limit.per / spaced).max(Duration::from_nanos(1));
    Quota::with_period(period)
        .expect("a non-zero period")
        .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN))
}

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
}

/// With `[shared]`, a client's share of an upstream as the upstream's admission takes it: its
/// cell in the fleet's script, and this replica's part of it while Redis is unavailable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientShare<'a> {
    pub cell: &'a SharedCell,
    pub degraded: &'a Rate,
}

/// A local GCRA limit and its arrival-order line; also the per-caller limits' (`callers/limit.rs`).
#[derive(Debug)]
pub(crate) struct Rate {
    pub(crate) gcra: crate::clock::Gcra,
    pub(crate) config: RateLimit,
    /// Time between cells once the burst is spent.
    pub(crate) interval: Duration,
    /// Queue mode: waiters take turns in arrival order (tokio's mutex is fair).
    pub(crate) line: tokio::sync::Mutex<()>,
}

/// "Do not send before": a deadline in ms since `base`, 0 for none.
#[derive(Debug)]
struct Pause {
    base: Instant,
    until_ms: AtomicU64,
    reason: Mutex<&'static str>,
}

impl Pause {
    fn remaining(&self, now: Instant) -> Duration {
        match self.until_ms.load(Ordering::Acquire) {
            0 => Duration::ZERO,
            ms => (self.base + Duration::from_millis(ms)).saturating_duration_since(now),
        }
    }
}

/// A slot counted in `max_concurrency`, released on drop.
#[derive(Debug)]
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

/// What `/status` shows of an upstream's limits.
#[derive(Debug, Serialize)]
pub struct LimitStatus {
    pub rate_limit: Option<RateLimitStatus>,
    pub max_concurrency: u32,
    pub in_flight: u32,
    pub queued: usize,
    pub paused_for_seconds: Option<f64>,
    pub pause_reason: Option<&'static str>,
    /// The pace a partner's announced budget imposes now (adaptive spacing), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<crate::pace::PaceStatus>,
}

#[derive(Debug, Serialize)]
pub struct RateLimitStatus {
    pub requests: u32,
    pub per_seconds: f64,
    pub burst: u32,
    pub on_limit: &'static str,
    pub max_wait_seconds: f64,
    /// `"shadow"` when the limit only counts; absent when it is enforced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

impl RateLimitStatus {
    /// How `/status` shows a configured rate limit (an upstream's or a client's share).
    pub(crate) fn of(limit: &RateLimit) -> Self {
        Self {
            requests: limit.requests.get(),
            per_seconds: limit.per.as_secs_f64(),
            burst: limit.burst.get(),
            on_limit: match limit.on_limit {
                OnLimit::Queue => "queue",
                OnLimit::Reject => "reject",
            },
            max_wait_seconds: limit.max_wait.as_secs_f64(),
            mode: (limit.mode == LimitMode::Shadow).then_some("shadow"),
        }
    }
}

/// Decrements the queue length when a waiter leaves, however it leaves.
pub(crate) struct InQueue<'a>(pub(crate) &'a AtomicUsize);

impl Drop for InQueue<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Rate {
    pub(crate) fn new(config: RateLimit) -> Self {
        let q = quota(&config);
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
        let _ = rate.gcra.check_n(quota(&config).burst_size());
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
}

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
        let shared = shared.map(|state| SharedAdmission {
            limiter: Arc::new(SharedLimiter::new(
                state.clone(),
                state.key("rate", &cfg.name, env),
                Some(state.key("pause", &cfg.name, env)),
                limit.as_ref(),
            )),
            degraded: Rate::succeeding(
                previous.map(|p| p.shared.as_ref().and_then(|s| s.degraded.as_ref())),
                limit.map(|l| state.share_of(&l)),
            ),
        });
        Self {
            shared,
            pace: limit
                .filter(|l| l.adaptive && l.mode == LimitMode::Enforce)
                .map(|_| Pace::default()),
            max_wait: limit.map_or(cfg.request_timeout, |r| r.max_wait),
            rate,
            slots: Arc::new(Semaphore::new(cfg.max_concurrency.get() as usize)),
            max_concurrency: cfg.max_concurrency.get(),
            max_pause: cfg.max_pause,
            pause: previous.map_or_else(
                || {
                    Arc::new(Pause {
                        base: Instant::now(),
                        until_ms: AtomicU64::new(0),
                        reason: Mutex::new(""),
                    })
                },
                |p| p.pause.clone(),
            ),
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
        let _in_queue = InQueue(&self.waiting_for_slot);
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

    /// Admits one attempt through the pause and the rate limit. Returns the time spent waiting.
    ///
    /// `client`: with `[shared]`, a client's share of this upstream, judged in the same script
    /// call before the upstream's cell (without `[shared]` the pipeline checks a client's share
    /// itself, and passes `None`). When that share is spent the answer is at once
    /// `CallerRateLimited` with the wait, and nothing was taken: the caller waits for its share
    /// by its own rules (`CallerLimit::wait_for_fleet`), then asks again.
    pub async fn admit(
        &self,
        deadline: Instant,
        client: Option<&ClientShare<'_>>,
    ) -> Result<Duration, GatewayError> {
        // The clock is read only while a pace is in force.
        if let Some(pace) = self.pace.as_ref().filter(|p| p.active()) {
            match pace.reserve(Instant::now()) {
                Reserved::Free | Reserved::After(Duration::ZERO) => {}
                Reserved::Ended => self.metrics.adaptive_cap(0.0),
                Reserved::After(wait) => {
                    // Boxed: only a paced request carries the waiting state.
                    let paced = Box::pin(self.pace_wait(wait, deadline)).await?;
                    return Box::pin(self.admit_after_pace(deadline, client))
                        .await
                        .map(|w| w + paced);
                }
            }
        }
        self.admit_after_pace(deadline, client).await
    }

    /// Waits out a pace reservation, within `max_wait` and the deadline; `reject` refuses at once.
    async fn pace_wait(&self, wait: Duration, deadline: Instant) -> Result<Duration, GatewayError> {
        let now = Instant::now();
        let max_wait = self.rate.as_ref().map_or(self.max_wait, |r| r.config.max_wait);
        let rejecting = self
            .rate
            .as_ref()
            .is_some_and(|r| r.config.on_limit == OnLimit::Reject);
        if rejecting || now + wait > deadline.min(now + max_wait) {
            return Err(self.reject(wait));
        }
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
        let start = Instant::now();
        let paused = self.pause.remaining(start);
        let Some(rate) = rate else {
            // No rate limit configured: nothing to queue in, so a pause is answered at once.
            return if paused.is_zero() {
                Ok(Duration::ZERO)
            } else {
                Err(self.reject(paused))
            };
        };
        if rate.config.mode == LimitMode::Shadow {
            // As without a limit: a pause (the partner's) is answered at once; the limit counts.
            if !paused.is_zero() {
                return Err(self.reject(paused));
            }
            if let Err(not_until) = rate.gcra.check() {
                self.shadow(rate, crate::clock::wait_of(&rate.gcra, &not_until));
            }
            return Ok(Duration::ZERO);
        }
        if rate.config.on_limit == OnLimit::Reject {
            if !paused.is_zero() {
                return Err(self.reject(paused));
            }
            return match rate.gcra.check() {
                Ok(()) => Ok(Duration::ZERO),
                Err(not_until) => Err(self.reject(crate::clock::wait_of(&rate.gcra, &not_until))),
            };
        }
        if paused.is_zero() && self.queued.load(Ordering::Acquire) == 0 && rate.gcra.check().is_ok() {
            return Ok(Duration::ZERO);
        }
        // Boxed: only a queued request pays for the waiting state in its future.
        Box::pin(self.queue_for_cell(rate, deadline, start, paused)).await
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

    /// Waits in line for a cell (and out any pause), up to `max_wait` and the deadline.
    async fn queue_for_cell(
        &self,
        rate: &Rate,
        deadline: Instant,
        start: Instant,
        paused: Duration,
    ) -> Result<Duration, GatewayError> {
        let until = deadline.min(start + rate.config.max_wait);
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let _in_queue = InQueue(&self.queued);
        // Everyone ahead takes a cell first, and the next cell may be a whole interval away:
        // refuse now what could only fail after waiting.
        let estimate = paused
            + rate
                .interval
                .saturating_mul(u32::try_from(ahead + 1).unwrap_or(u32::MAX));
        if start + estimate > until {
            return Err(self.reject(estimate.max(rate.interval)));
        }
        self.metrics.limited(Limited::UpstreamQueued);
        let _turn = match tokio::time::timeout_at(until, rate.line.lock()).await {
            Ok(turn) => turn,
            Err(_) => return Err(self.reject(rate.interval)),
        };
        loop {
            let now = Instant::now();
            let wait = match self.pause.remaining(now) {
                p if !p.is_zero() => p,
                _ => match rate.gcra.check() {
                    Ok(()) => return Ok(now - start),
                    Err(not_until) => crate::clock::wait_of(&rate.gcra, &not_until),
                },
            };
            if now + wait > until {
                return Err(self.reject(wait));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// The fleet's limiter in Redis: same answers as `admit_local` (reject, or queue up to
    /// `max_wait` with an up-front estimate), but the wait comes from the script. A queued request
    /// sleeps for what the script said, then asks again; on this replica only the head of the
    /// line asks. Falls back to this replica's share whenever Redis is unavailable.
    async fn admit_shared(
        &self,
        shared: &SharedAdmission,
        deadline: Instant,
        client: Option<&ClientShare<'_>>,
    ) -> Result<Duration, GatewayError> {
        let start = Instant::now();
        if let Some(rate) = self
            .rate
            .as_deref()
            .filter(|r| r.config.mode == LimitMode::Shadow)
        {
            // The fleet's cell is asked for as if enforced (so the fleet's state is what the
            // limit would have made it), but only a pause or the client's share holds a request.
            return match self.ask(shared, client).await {
                None => self.admit_degraded(shared, deadline, client).await,
                Some(Verdict::Admitted) => Ok(start.elapsed()),
                Some(Verdict::Client { wait }) => Err(GatewayError::CallerRateLimited { retry_after: wait }),
                Some(Verdict::Wait { wait, paused: true }) => Err(self.reject(wait)),
                Some(Verdict::Wait { wait, paused: false }) => {
                    self.shadow(rate, wait);
                    Ok(start.elapsed())
                }
            };
        }
        let queueing = self
            .rate
            .as_ref()
            .is_some_and(|r| r.config.on_limit == OnLimit::Queue);
        let wait = if queueing && self.queued.load(Ordering::Acquire) > 0 {
            // Others on this replica are already in line: join it rather than take the next cell
            // before them (the local limiter keeps the same order).
            Duration::ZERO
        } else {
            loop {
                match self.ask(shared, client).await {
                    None => return self.admit_degraded(shared, deadline, client).await,
                    Some(Verdict::Admitted) => return Ok(start.elapsed()),
                    Some(Verdict::Client { wait }) => {
                        return Err(GatewayError::CallerRateLimited { retry_after: wait })
                    }
                    // A pause about to end is waited out, not refused: the replica that saw the
                    // partner's answer writes the pause a moment after taking it, so its own retry
                    // can meet the last milliseconds of it in Redis.
                    Some(Verdict::Wait { wait, paused: true })
                        if wait <= PAUSE_GRACE && Instant::now() + wait < deadline =>
                    {
                        tokio::time::sleep(wait).await;
                    }
                    Some(Verdict::Wait { wait, .. }) => break wait,
                }
            }
        };
        let Some(rate) = &self.rate else {
            // No rate limit: only a pause can refuse, and there is nothing to queue in.
            return Err(self.reject(wait));
        };
        if rate.config.on_limit == OnLimit::Reject {
            return Err(self.reject(wait));
        }
        let until = deadline.min(start + rate.config.max_wait);
        let interval = shared.limiter.interval();
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let in_queue = InQueue(&self.queued);
        // A lower bound: other replicas compete for the same cells.
        let estimate = wait + interval.saturating_mul(u32::try_from(ahead).unwrap_or(u32::MAX));
        if start + estimate > until {
            return Err(self.reject(estimate));
        }
        self.metrics.limited(Limited::UpstreamQueued);
        let turn = match tokio::time::timeout_at(until, rate.line.lock()).await {
            Ok(turn) => turn,
            Err(_) => return Err(self.reject(interval)),
        };
        let mut wait = wait;
        loop {
            if Instant::now() + wait > until {
                return Err(self.reject(wait));
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            wait = match self.ask(shared, client).await {
                Some(Verdict::Admitted) => return Ok(start.elapsed()),
                Some(Verdict::Wait { wait, .. }) => wait,
                // The client's share ran out while this request waited for the upstream's: it
                // leaves the line to wait for its own.
                Some(Verdict::Client { wait }) => {
                    return Err(GatewayError::CallerRateLimited { retry_after: wait })
                }
                None => {
                    drop((turn, in_queue));
                    let waited = start.elapsed();
                    return self
                        .admit_degraded(shared, deadline, client)
                        .await
                        .map(|w| w + waited);
                }
            };
        }
    }

    /// One question to Redis, unless this replica already knows of a pause. A pause learnt from
    /// Redis is kept locally, so this replica stops asking until it ends.
    async fn ask(&self, shared: &SharedAdmission, client: Option<&ClientShare<'_>>) -> Option<Verdict> {
        let paused = self.pause.remaining(Instant::now());
        if !paused.is_zero() {
            return Some(Verdict::Wait {
                wait: paused,
                paused: true,
            });
        }
        let verdict = shared.limiter.check_with(client.map(|c| c.cell)).await?;
        if let Verdict::Wait { wait, paused: true } = verdict {
            self.pause_for(wait, "shared pause");
        }
        Some(verdict)
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
        self.admit_local(shared.degraded.as_deref(), deadline).await
    }

    fn reject(&self, retry_after: Duration) -> GatewayError {
        self.metrics.limited(Limited::UpstreamRejected);
        GatewayError::RateLimited { retry_after }
    }

    /// Learns from a partner response: 429/503 with `Retry-After`, a 429 without one (one cell),
    /// or `RateLimit-Remaining: 0` / `X-RateLimit-Remaining: 0` with a reset, pause the upstream.
    pub fn observe(&self, status: u16, headers: &HeaderMap) {
        let retry_after = crate::retry_after::parse(headers, crate::clock::system_now);
        let announced = crate::rate_headers::read(headers, crate::clock::now_unix);
        if let (Some(pace), Some(a)) = (&self.pace, announced) {
            if let (Some(remaining), Some(reset)) = (a.remaining, a.reset) {
                // The answering request still holds its slot: the others are the ones in flight.
                let busy = self.max_concurrency as usize - self.slots.available_permits();
                let others = busy.saturating_sub(1) as u64;
                let cap = pace.learn(Instant::now(), remaining, reset.min(self.max_pause), others);
                self.metrics.adaptive_cap(cap);
            }
        }
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
            self.pause_for(wait, reason);
            if let Some(shared) = &self.shared {
                // Every replica stops too; the response need not wait for that. The pause ends
                // when this replica's does, however late the write lands.
                let (limiter, until) = (shared.limiter.clone(), Instant::now() + wait.min(self.max_pause));
                tokio::spawn(async move { limiter.pause_until(until).await });
            }
        }
    }

    fn pause_for(&self, wait: Duration, reason: &'static str) {
        let wait = wait.min(self.max_pause);
        if wait.is_zero() {
            return;
        }
        let until = (Instant::now() + wait).saturating_duration_since(self.pause.base);
        let until_ms = u64::try_from(until.as_millis()).unwrap_or(u64::MAX).max(1);
        let before = self.pause.until_ms.fetch_max(until_ms, Ordering::AcqRel);
        if until_ms > before {
            *self.pause.reason.lock().expect("reason lock") = reason;
            self.metrics
                .paused_until(crate::clock::now_unix() + wait.as_secs_f64());
            tracing::info!(
                pause_ms = wait.as_millis() as u64,
                reason,
                "upstream paused by the partner"
            );
        }
    }

    /// The view `/status` shows.
    pub fn status(&self) -> LimitStatus {
        let paused = self.pause.remaining(Instant::now());
        LimitStatus {
            rate_limit: self.rate.as_ref().map(|r| RateLimitStatus::of(&r.config)),
            max_concurrency: self.max_concurrency,
            in_flight: self.max_concurrency - u32::try_from(self.slots.available_permits()).unwrap_or(0),
            queued: self.queued.load(Ordering::Acquire) + self.waiting_for_slot.load(Ordering::Acquire),
            paused_for_seconds: (!paused.is_zero()).then_some(paused.as_secs_f64()),
            pause_reason: (!paused.is_zero()).then(|| *self.pause.reason.lock().expect("reason lock")),
            adaptive: self.pace.as_ref().and_then(|p| p.status(Instant::now())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(requests: u32, per: Duration, burst: u32) -> RateLimit {
        RateLimit {
            requests: NonZeroU32::new(requests).unwrap(),
            per,
            burst: NonZeroU32::new(burst).unwrap(),
            on_limit: OnLimit::Queue,
            max_wait: Duration::from_secs(1),
            mode: crate::config::LimitMode::Enforce,
            adaptive: true,
        }
    }

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

    #[test]
    fn no_window_ever_holds_more_than_requests() {
        let q = quota(&limit(50, Duration::from_secs(60), 5));
        assert_eq!(q.burst_size().get(), 5);
        // 5 back to back, then 45 more spaced over the minute: 50 in any minute.
        assert_eq!(q.replenish_interval(), Duration::from_secs(60) / 45);
        let q = quota(&limit(10, Duration::from_secs(1), 1));
        assert_eq!(q.replenish_interval(), Duration::from_secs(1) / 9);
        let q = quota(&limit(3, Duration::from_secs(1), 3));
        assert_eq!(q.replenish_interval(), Duration::from_secs(1));
    }
}
