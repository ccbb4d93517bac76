//! One client's share of one upstream: `[clients.NAME.limits.UPSTREAM]`.
//!
//! Built from the same pieces and rules as the upstream's `Admission` (`limit.rs`), minus the
//! partner pause (a pause is the partner's, and the upstream's own admission applies it):
//! - `max_concurrency`: a FIFO semaphore held for the whole request, taken before the
//!   upstream's slot (so a client over its share waits without holding one of the partner's);
//!   beyond it a request waits up to `max_wait` (the rate limit's, else `request_timeout`), then
//!   gets `503 overloaded`, as the upstream's `max_concurrency` answers.
//! - `rate_limit`: GCRA on governor with the same quota shape (`limit::quota`), checked on every
//!   attempt before the upstream's limit; `reject` answers 429 at once, `queue` waits in arrival
//!   order and refuses up front a wait that would exceed `max_wait`.
//! - With `[shared]`, the rate limit is the fleet's: the same GCRA script as the upstream limit
//!   (`shared::gcra`, no pause key) under `<prefix>client-rate:<client>:<upstream>:<env>`, so a
//!   limited client costs one more Redis round trip per attempt; while Redis is unavailable each
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
use crate::config::OnLimit;
use crate::error::GatewayError;
use crate::limit::{InQueue, Rate, RateLimitStatus};
use crate::shared::{SharedLimiter, SharedState, Verdict};

/// A client's limits on one upstream.
#[derive(Debug)]
pub(crate) struct CallerLimit {
    slots: Option<Arc<Semaphore>>,
    max_concurrency: u32,
    rate: Option<Rate>,
    /// `[shared]` with a rate limit: the fleet's limiter and this replica's share.
    shared: Option<Shared>,
    /// How long a request may wait for a slot or a cell.
    max_wait: Duration,
    /// Requests in line for a cell right now.
    queued: AtomicUsize,
    metrics: ClientMetrics,
}

#[derive(Debug)]
struct Shared {
    limiter: SharedLimiter,
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
    /// `names` = (client, upstream, environment), for the shared key.
    pub(crate) fn new(
        limits: &ClientLimits,
        request_timeout: Duration,
        names: (&str, &str, &str),
        metrics: ClientMetrics,
        shared: Option<&Arc<SharedState>>,
    ) -> Self {
        let (client, upstream, env) = names;
        let shared = match (shared, limits.rate_limit) {
            (Some(state), Some(limit)) => Some(Shared {
                limiter: SharedLimiter::new(
                    state.clone(),
                    state.key(&format!("client-rate:{client}"), upstream, env),
                    None,
                    Some(&limit),
                ),
                degraded: Rate::new(state.share_of(&limit)),
            }),
            _ => None,
        };
        let max_concurrency = limits.max_concurrency.map_or(0, |n| n.get());
        Self {
            slots: limits
                .max_concurrency
                .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            max_concurrency,
            max_wait: limits.rate_limit.map_or(request_timeout, |r| r.max_wait),
            rate: limits.rate_limit.map(Rate::new),
            shared,
            queued: AtomicUsize::new(0),
            metrics,
        }
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

    /// Admits one attempt through the client's rate limit; returns the time spent waiting.
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<Duration, GatewayError> {
        let Some(rate) = &self.rate else {
            return Ok(Duration::ZERO);
        };
        if let Some(shared) = &self.shared {
            return Box::pin(self.admit_shared(rate, shared, deadline)).await;
        }
        self.admit_local(rate, deadline).await
    }

    /// `rate` is the configured limit, or this replica's share while Redis is unavailable.
    async fn admit_local(&self, rate: &Rate, deadline: Instant) -> Result<Duration, GatewayError> {
        if rate.config.on_limit == OnLimit::Reject {
            return rate.check().map(|()| Duration::ZERO).map_err(|w| self.reject(w));
        }
        if self.queued.load(Ordering::Acquire) == 0 && rate.check().is_ok() {
            return Ok(Duration::ZERO);
        }
        Box::pin(self.queue_local(rate, deadline)).await
    }

    /// Waits in line for a cell, up to `max_wait` and the deadline (the rules of `limit.rs`).
    async fn queue_local(&self, rate: &Rate, deadline: Instant) -> Result<Duration, GatewayError> {
        let start = Instant::now();
        let until = deadline.min(start + rate.config.max_wait);
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let _in_queue = InQueue(&self.queued);
        // Everyone ahead takes a cell first: refuse now what could only fail after waiting.
        let estimate = rate
            .interval
            .saturating_mul(u32::try_from(ahead + 1).unwrap_or(u32::MAX));
        if start + estimate > until {
            return Err(self.reject(estimate));
        }
        self.metrics.limited(ClientLimited::Queued);
        let Ok(_turn) = tokio::time::timeout_at(until, rate.line.lock()).await else {
            return Err(self.reject(rate.interval));
        };
        loop {
            let now = Instant::now();
            match rate.check() {
                Ok(()) => return Ok(now - start),
                Err(wait) if now + wait > until => return Err(self.reject(wait)),
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// The fleet's limit in Redis; the same answers as `admit_local`, the wait named by the
    /// script. Only the head of this replica's line asks again.
    async fn admit_shared(
        &self,
        rate: &Rate,
        shared: &Shared,
        deadline: Instant,
    ) -> Result<Duration, GatewayError> {
        let start = Instant::now();
        let queueing = rate.config.on_limit == OnLimit::Queue;
        let first = if queueing && self.queued.load(Ordering::Acquire) > 0 {
            Duration::ZERO
        } else {
            match shared.limiter.check().await {
                None => return self.admit_local(&shared.degraded, deadline).await,
                Some(Verdict::Admitted) => return Ok(start.elapsed()),
                Some(Verdict::Wait { wait, .. }) => wait,
            }
        };
        if !queueing {
            return Err(self.reject(first));
        }
        let until = deadline.min(start + rate.config.max_wait);
        let interval = shared.limiter.interval();
        let ahead = self.queued.fetch_add(1, Ordering::AcqRel);
        let in_queue = InQueue(&self.queued);
        // A lower bound: other replicas compete for the same cells.
        let estimate = first + interval.saturating_mul(u32::try_from(ahead).unwrap_or(u32::MAX));
        if start + estimate > until {
            return Err(self.reject(estimate.max(interval)));
        }
        self.metrics.limited(ClientLimited::Queued);
        let Ok(turn) = tokio::time::timeout_at(until, rate.line.lock()).await else {
            return Err(self.reject(interval));
        };
        let mut wait = first;
        loop {
            if Instant::now() + wait > until {
                return Err(self.reject(wait));
            }
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            wait = match shared.limiter.check().await {
                Some(Verdict::Admitted) => return Ok(start.elapsed()),
                Some(Verdict::Wait { wait, .. }) => wait,
                None => {
                    drop((turn, in_queue));
                    let waited = start.elapsed();
                    return self
                        .admit_local(&shared.degraded, deadline)
                        .await
                        .map(|w| w + waited);
                }
            };
        }
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
            }),
            max_concurrency: concurrency.and_then(NonZeroU32::new),
        };
        let l = CallerLimit::new(
            &limits,
            Duration::from_secs(30),
            ("billing", "osigu", "sandbox"),
            handles,
            None,
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
