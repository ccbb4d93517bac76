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
//!   the upstream's slot and waits here ([`CallerLimit::wait_for_fleet`]: `reject` answers 429 at
//!   once, `queue` waits within `max_wait`), then asks again. While Redis is unavailable each
//!   replica keeps `1/replicas` of the client's budget, as for the upstream's.
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
use crate::limit::wait::{wait, Refused};
use crate::limit::{ClientShare, Local, Rate, RateLimitStatus};
use crate::shared::{SharedCell, SharedState};

/// A client's limits on one upstream.
#[derive(Debug)]
pub(crate) struct CallerLimit {
    slots: Option<Arc<Semaphore>>,
    max_concurrency: u32,
    rate: Option<Rate>,
    /// `[shared]` with a rate limit: the fleet's cell and this replica's share of it.
    fleet: Option<(SharedCell, Rate)>,
    /// How long a request may wait for a slot or a cell.
    max_wait: Duration,
    /// Requests in line for a cell right now.
    queued: AtomicUsize,
    metrics: ClientMetrics,
    /// What it was built from, for a reload to tell whether it still serves.
    limits: ClientLimits,
    request_timeout: Duration,
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
            (Some(state), Some(limit)) => Some((
                SharedCell::new(
                    state.key(&format!("client-rate:{client}"), upstream, env),
                    Some(&limit),
                ),
                rate(state.share_of(&limit)),
            )),
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
        self.fleet
            .as_ref()
            .map(|(cell, degraded)| ClientShare { cell, degraded })
    }

    /// The fleet's share (or this replica's part of it, Redis being down) is spent for `wait`:
    /// refuses (`reject`, or past `max_wait` counted from `since`, the first refusal), or waits
    /// it out. `first`: the first refusal of this request, counted as queued once.
    pub(crate) async fn wait_for_fleet(
        &self,
        wait: Duration,
        since: Instant,
        first: bool,
        deadline: Instant,
    ) -> Result<Duration, GatewayError> {
        let Some(rate) = &self.rate else {
            return Err(self.reject(wait));
        };
        let until = deadline.min(since + rate.config.max_wait);
        if rate.config.on_limit == OnLimit::Reject || Instant::now() + wait > until {
            return Err(self.reject(wait));
        }
        if first {
            self.metrics.limited(ClientLimited::Queued);
        }
        tokio::time::sleep(wait).await;
        Ok(wait)
    }

    /// `rate` is the configured limit, or this replica's share while Redis is unavailable: the
    /// one wait loop (`limit/wait.rs`), with no pause of its own.
    async fn admit_local(&self, rate: &Rate, deadline: Instant) -> Result<Duration, GatewayError> {
        let cells = Local { rate, pause: None };
        let queued = |_| self.metrics.limited(ClientLimited::Queued);
        wait(&cells, rate.rule(&self.queued), deadline, queued)
            .await
            .map_err(|refused| match refused {
                Refused::Limit { retry_after } | Refused::Client { retry_after } => self.reject(retry_after),
                // A local limit always answers.
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
        let l = CallerLimit::new(
            &limits,
            Duration::from_secs(30),
            ("billing", "osigu", "sandbox"),
            handles,
            None,
            false,
        );
        (l, metrics)
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
}
