//! One client's share of one upstream: `[clients.NAME.limits.UPSTREAM]`.
//!
//! Built from the same pieces and rules as the upstream's `Admission` (`limit.rs`), minus the
//! partner pause (a pause is the partner's, and the upstream's own admission applies it):
//! - `max_concurrency`: a FIFO semaphore held for the whole request, taken before the
//!   upstream's slot (so a client over its share waits without holding one of the partner's);
//!   beyond it a request waits up to `max_wait` (the rate limit's, else `request_timeout`), then
//!   gets `503 overloaded`, as the upstream's `max_concurrency` answers.
//! - `rate_limit`: GCRA on governor with the same quota shape (`quota.rs`), checked on every
//!   attempt before the upstream's limit; `reject` answers 429 at once, `queue` waits in arrival
//!   order and refuses up front a wait that would exceed `max_wait`.
//! - With `[shared]`, the rate limit is the fleet's: a [`SharedCell`] under
//!   `<prefix>client-rate:<client>:{<upstream>:<env>}` that the upstream's admission judges in its
//!   own script call, before the upstream's cell (one round trip for both; a refused client
//!   spends nothing of the partner's budget). When the share is spent the pipeline lets go of
//!   the upstream's slot and waits here for the client's cell alone
//!   ([`CallerLimit::wait_for_fleet`]), through the one wait loop (`limit/wait.rs`) in the
//!   client's line, by the same rules as every other limit; having taken it, the attempt asks
//!   the upstream alone, as without `[shared]` (so, as there, an upstream refusing it then
//!   leaves that cell spent). While Redis is unavailable each replica keeps
//!   `1/replicas` of the client's budget, as for the upstream's.
//!
//! A request a client limit holds is counted `scope="client"` under the client's name.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tollgate_metrics::{ClientLimited, ClientMetrics};

use crate::config::clients::ClientLimits;
use crate::config::{LimitMode, OnLimit};
use crate::error::GatewayError;
use crate::limit::wait::{self, wait, wait_after, First, Refused, Taken};
use crate::limit::{ClientShare, Fleet, Local, Rate, RateLimitStatus};
use crate::shared::{SharedCell, SharedLimiter, SharedState};

/// A client's limits on one upstream.
#[derive(Debug)]
pub(crate) struct CallerLimit {
    slots: Option<Arc<Semaphore>>,
    max_concurrency: u32,
    rate: Option<Rate>,
    /// `[shared]` with a rate limit: the fleet's cell.
    fleet: Option<FleetShare>,
    /// How long a request may wait for a slot or a cell.
    max_wait: Duration,
    /// Requests in line for a cell right now.
    queued: AtomicUsize,
    metrics: ClientMetrics,
    /// What it was built from, for a reload to tell whether it still serves.
    limits: ClientLimits,
    request_timeout: Duration,
}

/// A client's share of the fleet's budget for one upstream: one cell in Redis, asked two ways.
#[derive(Debug)]
struct FleetShare {
    /// Judged with the upstream's cell, in the upstream's script call.
    cell: SharedCell,
    /// The same cell asked alone, by a request that waits for it.
    alone: SharedLimiter,
    /// This replica's part of it while Redis is unavailable.
    degraded: Rate,
}

/// A concurrency slot of the client's share, released on drop; `None` inside when the client
/// has no `max_concurrency` there.
#[derive(Debug)]
pub(crate) struct CallerSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

/// What `/status` shows of a client's limit on one upstream.
#[derive(Debug, Serialize)]
pub(crate) struct CallerLimitStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    rate_limit: Option<RateLimitStatus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    in_flight: Option<u32>,
    queued: usize,
}

impl CallerLimit {
    /// `names` = (client, upstream, environment), for the shared key. `replacing`: a reload
    /// changed this share, so its rate starts drained (no fresh burst).
    pub(crate) fn new(
        limits: &ClientLimits,
        request_timeout: Duration,
        names: (&str, &str, &str),
        metrics: ClientMetrics,
        shared: Option<&Arc<SharedState>>,
        replacing: bool,
    ) -> Self {
        let (client, upstream, env) = names;
        let rate = |limit| {
            if replacing {
                Rate::drained(limit)
            } else {
                Rate::new(limit)
            }
        };
        let fleet = match (shared, limits.rate_limit) {
            (Some(state), Some(limit)) => {
                let key = state.key(&format!("client-rate:{client}"), upstream, env);
                Some(FleetShare {
                    cell: SharedCell::new(key.clone(), Some(&limit)),
                    // No pause key: only the client's cell is judged, and never in batches.
                    alone: SharedLimiter::new(state.clone(), key, None, Some(&limit)),
                    degraded: rate(state.share_of(&limit)),
                })
            }
            _ => None,
        };
        let max_concurrency = limits.max_concurrency.map_or(0, |n| n.get());
        Self {
            slots: limits
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            max_concurrency,
            max_wait: limits.rate_limit.map_or(request_timeout, |r| r.max_wait),
            rate: limits.rate_limit.map(rate),
            fleet,
            limits: *limits,
            request_timeout,
            queued: AtomicUsize::new(0),
            metrics,
        }
    }

    /// Whether these are still its limits (a reload then keeps it, state and all).
    pub(crate) fn serves(&self, limits: &ClientLimits, request_timeout: Duration) -> bool {
        self.limits == *limits && self.request_timeout == request_timeout
    }

    /// A slot of the client's `max_concurrency` for the whole request, waiting up to `max_wait`.
    pub(crate) async fn enter(&self, deadline: Instant) -> Result<CallerSlot, GatewayError> {
        let Some(slots) = &self.slots else {
            return Ok(CallerSlot(None));
        };
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            return Ok(CallerSlot(Some(permit)));
        }
        // Boxed: only a request that waits carries the waiting state.
        Box::pin(async {
            self.metrics.limited(ClientLimited::Queued);
            let until = deadline.min(Instant::now() + self.max_wait);
            match tokio::time::timeout_at(until, slots.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Ok(CallerSlot(Some(permit))),
                _ => {
                    self.metrics.limited(ClientLimited::Rejected);
                    Err(GatewayError::CallerOverloaded)
                }
            }
        })
        .await
    }

    /// Admits one attempt through the client's rate limit on this replica; returns the time
    /// spent waiting. With `[shared]` this admits at once: the fleet's share is judged with the
    /// upstream's cell ([`Self::fleet`]).
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<Duration, GatewayError> {
        let Some(rate) = &self.rate else {
            return Ok(Duration::ZERO);
        };
        if rate.config.mode == LimitMode::Shadow {
            // Judged on this replica even with `[shared]` (see `fleet`): it only counts.
            if let Err(wait) = rate.check() {
                let refused = rate.config.on_limit == OnLimit::Reject || wait > rate.config.max_wait;
                self.metrics.limited(if refused {
                    ClientLimited::ShadowRejected
                } else {
                    ClientLimited::ShadowQueued
                });
            }
            return Ok(Duration::ZERO);
        }
        if self.fleet.is_some() {
            return Ok(Duration::ZERO);
        }
        self.admit_local(rate, deadline).await
    }

    /// With `[shared]` and a rate limit: the share the upstream's admission judges in its own
    /// script call.
    /// A shadow share is not: the script would hold a request it refuses, which a shadow
    /// limit must never do, so a shadow share is counted per replica (`admit`).
    pub(crate) fn fleet(&self) -> Option<ClientShare<'_>> {
        if self
            .rate
            .as_ref()
            .is_some_and(|r| r.config.mode == LimitMode::Shadow)
        {
            return None;
        }
        self.fleet.as_ref().map(|f| ClientShare {
            cell: &f.cell,
            degraded: &f.degraded,
        })
    }

    /// The upstream's admission found the fleet's share (or this replica's part of it, Redis
    /// being down) spent for `spent_for`: waits for the client's cell alone and takes it,
    /// through the one wait loop in the client's line, by the rules every limit follows
    /// (`limit/wait.rs`: the estimate, `Retry-After`, `max_wait` and the deadline). The attempt
    /// then asks the upstream without the share. Redis unavailable: this replica's part instead.
    pub(crate) async fn wait_for_fleet(
        &self,
        spent_for: Duration,
        deadline: Instant,
    ) -> Result<Duration, GatewayError> {
        let (Some(rate), Some(fleet)) = (&self.rate, &self.fleet) else {
            return Err(self.reject(spent_for));
        };
        // `max_wait` is counted once, from here, whichever source the cell comes from.
        let deadline = deadline.min(Instant::now() + rate.config.max_wait);
        let cells = Fleet {
            limiter: &fleet.alone,
            client: None,
            partner: None,
            batched: false,
        };
        let rule = rate.rule(&self.queued);
        // The admission's refusal is the fleet's answer for this very cell: a request that finds
        // nobody in line takes it as its first question's and saves a round trip.
        let first = match wait::first(&cells, rule) {
            First::Ask => First::Asked(Taken::Wait {
                wait: spent_for,
                paused: false,
            }),
            first => first,
        };
        let queued = |_| self.metrics.limited(ClientLimited::Queued);
        match wait_after(&cells, rule, deadline, first, queued).await {
            Err(Refused::Unavailable { waited }) => {
                // Counted as queued already: the fleet is asked only by a request in line.
                let cells = Local {
                    rate: &fleet.degraded,
                    pause: None,
                };
                let rule = fleet.degraded.rule(&self.queued);
                let local = wait(&cells, rule, deadline, |_| {}).await;
                self.settle(local, &fleet.degraded).map(|w| w + waited)
            }
            waited => self.settle(waited, rate),
        }
    }

    /// `rate` is the configured limit, or this replica's share while Redis is unavailable: the
    /// one wait loop (`limit/wait.rs`), with no pause of its own.
    async fn admit_local(&self, rate: &Rate, deadline: Instant) -> Result<Duration, GatewayError> {
        let cells = Local { rate, pause: None };
        let queued = |_| self.metrics.limited(ClientLimited::Queued);
        let waited = wait(&cells, rate.rule(&self.queued), deadline, queued).await;
        self.settle(waited, rate)
    }

    /// A wait's outcome as the request path answers it.
    fn settle(&self, waited: Result<Duration, Refused>, rate: &Rate) -> Result<Duration, GatewayError> {
        waited.map_err(|refused| match refused {
            Refused::Limit { retry_after } | Refused::Client { retry_after } => self.reject(retry_after),
            // Only the fleet's source is ever unavailable, and `wait_for_fleet` falls back first.
            Refused::Unavailable { .. } => self.reject(rate.interval),
        })
    }

    fn reject(&self, retry_after: Duration) -> GatewayError {
        self.metrics.limited(ClientLimited::Rejected);
        GatewayError::CallerRateLimited { retry_after }
    }

    pub(crate) fn status(&self) -> CallerLimitStatus {
        CallerLimitStatus {
            rate_limit: self.rate.as_ref().map(|r| RateLimitStatus::of(&r.config)),
            max_concurrency: self.slots.as_ref().map(|_| self.max_concurrency),
            in_flight: self.slots.as_ref().map(|s| {
                self.max_concurrency
                    .saturating_sub(u32::try_from(s.available_permits()).unwrap_or(u32::MAX))
            }),
            queued: self.queued.load(Ordering::Acquire),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;

    use tollgate_metrics::Metrics;

    use super::*;
    use crate::config::RateLimit;

    fn limit(
        requests: u32,
        on_limit: OnLimit,
        max_wait: Duration,
        concurrency: Option<u32>,
    ) -> (CallerLimit, Metrics) {
        let metrics = Metrics::new("t").with_client_label();
        let l = limit_on(&metrics, None, requests, on_limit, max_wait, concurrency);
        (l, metrics)
    }

    /// `requests` a minute, all as a burst, on `shared` if any.
    fn limit_on(
        metrics: &Metrics,
        shared: Option<&Arc<SharedState>>,
        requests: u32,
        on_limit: OnLimit,
        max_wait: Duration,
        concurrency: Option<u32>,
    ) -> CallerLimit {
        let handles = metrics.client("osigu", "sandbox", "billing").unwrap();
        let limits = ClientLimits {
            rate_limit: Some(RateLimit {
                requests: NonZeroU32::new(requests).unwrap(),
                per: Duration::from_secs(60),
                burst: NonZeroU32::new(requests).unwrap(),
                on_limit,
                max_wait,
                mode: crate::config::LimitMode::Enforce,
                adaptive: true,
            }),
            max_concurrency: concurrency.and_then(NonZeroU32::new),
        };
        CallerLimit::new(
            &limits,
            Duration::from_secs(30),
            ("billing", "osigu", "sandbox"),
            handles,
            shared,
            false,
        )
    }

    /// A `[shared]` state for `replicas` that never connected: every Redis call is unavailable.
    fn unconnected(metrics: &Metrics, replicas: u32) -> Arc<SharedState> {
        let toml = format!(
            "[upstreams.osigu.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n\
             [shared]\nredis_url = \"redis://127.0.0.1:9\"\nreplicas = {replicas}\n"
        );
        let config = crate::Config::parse(&toml, &|_| None).unwrap();
        SharedState::new(config.shared.as_ref().unwrap(), metrics.shared()).unwrap()
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn reject_mode_admits_the_burst_then_refuses_with_a_wait() {
        let (l, metrics) = limit(3, OnLimit::Reject, Duration::ZERO, None);
        for _ in 0..3 {
            assert_eq!(l.admit(far()).await.unwrap(), Duration::ZERO);
        }
        match l.admit(far()).await {
            Err(GatewayError::CallerRateLimited { retry_after }) => {
                // 3 per minute, all as a burst: the next cell is a minute after the first.
                assert!(
                    retry_after > Duration::from_secs(55) && retry_after <= Duration::from_secs(60),
                    "{retry_after:?}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(metrics.render().contains(
            r#"tollgate_rate_limited_total{action="rejected",client="billing",environment="sandbox",scope="client",upstream="osigu"} 1"#
        ));
    }

    #[tokio::test]
    async fn queue_mode_refuses_up_front_a_wait_beyond_max_wait() {
        let (l, _) = limit(2, OnLimit::Queue, Duration::from_secs(5), None);
        l.admit(far()).await.unwrap();
        l.admit(far()).await.unwrap();
        let started = Instant::now();
        // Burst spent: the next cell is a whole interval (60 s) away, far past max_wait.
        assert!(matches!(
            l.admit(far()).await,
            Err(GatewayError::CallerRateLimited { .. })
        ));
        assert!(started.elapsed() < Duration::from_secs(1), "refused at once");
    }

    #[tokio::test]
    async fn concurrency_beyond_the_share_is_overloaded_after_max_wait() {
        let (l, metrics) = limit(100, OnLimit::Reject, Duration::from_millis(50), Some(1));
        let held = l.enter(far()).await.unwrap();
        assert_eq!(l.status().in_flight, Some(1));
        assert!(matches!(
            l.enter(far()).await,
            Err(GatewayError::CallerOverloaded)
        ));
        drop(held);
        assert!(l.enter(far()).await.is_ok());
        let text = metrics.render();
        assert!(text.contains(
            r#"tollgate_rate_limited_total{action="queued",client="billing",environment="sandbox",scope="client",upstream="osigu"} 1"#
        ), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_fleet_share_is_waited_for_by_the_one_loops_rules_and_locally_while_redis_is_down() {
        // 2 a minute for the fleet (of one replica), as a burst; then a cell a minute.
        let metrics = Metrics::new("t").with_client_label();
        let state = unconnected(&metrics, 1);
        let max_wait = Duration::from_secs(80);
        let l = limit_on(&metrics, Some(&state), 2, OnLimit::Queue, max_wait, None);
        let l = Arc::new(l);
        let degraded = l.fleet().unwrap().degraded;
        assert!(degraded.check().is_ok() && degraded.check().is_ok());
        let start = Instant::now();
        let deadline = start + Duration::from_secs(300);
        // Told the share is spent for a minute, the first waits in line for it, finds Redis
        // unavailable and takes this replica's cell.
        let first = l.wait_for_fleet(Duration::from_secs(60), deadline).await;
        assert_eq!(first.unwrap(), Duration::from_secs(60));
        assert_eq!(start.elapsed(), Duration::from_secs(60));
        // The next waits a minute more, in line; one arriving behind it would wait two (one to
        // the cell the head waits for, one for its own), past max_wait: refused at once, with
        // that estimate.
        let head = tokio::spawn({
            let l = l.clone();
            async move { l.wait_for_fleet(Duration::from_secs(60), deadline).await }
        });
        tokio::task::yield_now().await;
        let refused_at = Instant::now();
        match l.wait_for_fleet(Duration::from_secs(60), deadline).await {
            Err(GatewayError::CallerRateLimited { retry_after }) => {
                assert_eq!(retry_after, Duration::from_secs(120));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(refused_at.elapsed(), Duration::ZERO, "refused up front");
        assert_eq!(head.await.unwrap().unwrap(), Duration::from_secs(60));
        let text = metrics.render();
        let count = |action: &str| {
            format!(
                r#"tollgate_rate_limited_total{{action="{action}",client="billing",environment="sandbox",scope="client",upstream="osigu"}}"#
            )
        };
        assert!(text.contains(&format!("{} 2\n", count("queued"))), "{text}");
        assert!(text.contains(&format!("{} 1\n", count("rejected"))), "{text}");
    }
}
