//! The cell sources [`wait`](super::wait::wait) asks: a local GCRA limit ([`Local`]), the fleet's
//! in Redis ([`Fleet`]), and a partner's pause alone for an upstream without a rate limit
//! ([`Pause`]). An upstream's sources look at its pause first; a client's share and the token
//! limit have no pause of their own.

use std::time::Duration;

use super::pause::{Partner, Pause};
use super::rate::Rate;
use super::wait::{Cells, Taken};
use crate::shared::{SharedCell, SharedLimiter, Verdict};

/// A partner's pause, when one is in force, as a source's answer.
fn paused(pause: &Pause) -> Option<Taken> {
    pause.left().map(|wait| Taken::Wait { wait, paused: true })
}

/// Only the pause: an upstream without a rate limit.
impl Cells for Pause {
    fn interval(&self) -> Duration {
        Duration::ZERO
    }

    async fn take(&self) -> Taken {
        paused(self).unwrap_or(Taken::Now)
    }

    fn take_now(&self) -> Option<Taken> {
        Some(paused(self).unwrap_or(Taken::Now))
    }

    fn paused_for(&self) -> Option<Duration> {
        self.left()
    }
}

/// This replica's GCRA limit, behind an upstream's pause if any.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Local<'a> {
    pub rate: &'a Rate,
    pub pause: Option<&'a Pause>,
}

impl Cells for Local<'_> {
    fn interval(&self) -> Duration {
        self.rate.interval
    }

    async fn take(&self) -> Taken {
        self.answer()
    }

    fn take_now(&self) -> Option<Taken> {
        Some(self.answer())
    }

    fn paused_for(&self) -> Option<Duration> {
        self.pause.and_then(Pause::left)
    }
}

impl Local<'_> {
    fn answer(&self) -> Taken {
        if let Some(paused) = self.pause.and_then(paused) {
            return paused;
        }
        match self.rate.check() {
            Ok(()) => Taken::Now,
            Err(wait) => Taken::Wait { wait, paused: false },
        }
    }
}

/// The fleet's limit in Redis: one script call per question, with a client's share judged in
/// the same call; a fast limit hands out cells it took in a batch without a call. An upstream's pause known here is answered without asking; a pause learnt from
/// Redis is kept here, so this replica stops asking until it ends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fleet<'a> {
    pub limiter: &'a SharedLimiter,
    pub client: Option<&'a SharedCell>,
    pub partner: Option<Partner<'a>>,
    /// Cells from this replica's batches may answer (`shared/batch.rs`): not while a partner's
    /// pace is in force, which the script judges for every request.
    pub batched: bool,
}

impl Cells for Fleet<'_> {
    fn interval(&self) -> Duration {
        self.limiter.interval()
    }

    fn paused_for(&self) -> Option<Duration> {
        self.partner.and_then(|p| p.pause.left())
    }

    /// A pause known here, or a cell from this replica's batch (`shared/batch.rs`), answers at
    /// once; anything else asks Redis.
    fn take_now(&self) -> Option<Taken> {
        if let Some(paused) = self.partner.and_then(|p| paused(p.pause)) {
            return Some(paused);
        }
        self.limiter
            .take_batched(self.client, self.batched)
            .then_some(Taken::Now)
    }

    async fn take(&self) -> Taken {
        if let Some(paused) = self.partner.and_then(|p| paused(p.pause)) {
            return paused;
        }
        match self.limiter.check_with(self.client, self.batched).await {
            None => Taken::Unavailable,
            Some(Verdict::Admitted) => Taken::Now,
            Some(Verdict::Client { wait }) => Taken::Client { wait },
            // Counted per answer that held a request (a request may be held more than once).
            Some(Verdict::Paced { wait }) => {
                if let Some(partner) = self.partner {
                    partner.metrics.limited(tollgate_metrics::Limited::UpstreamPaced);
                }
                Taken::Wait { wait, paused: false }
            }
            Some(Verdict::Wait { wait, paused }) => {
                if let (true, Some(partner)) = (paused, self.partner) {
                    partner.hold(wait, "shared pause");
                }
                Taken::Wait { wait, paused }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicUsize;

    use tokio::time::Instant;

    use super::*;
    use crate::config::{LimitMode, OnLimit, RateLimit};
    use crate::limit::wait::{wait, Refused};

    fn rate(requests: u32, per_secs: u64, burst: u32) -> Rate {
        Rate::new(RateLimit {
            requests: NonZeroU32::new(requests).unwrap(),
            per: Duration::from_secs(per_secs),
            burst: NonZeroU32::new(burst).unwrap(),
            on_limit: OnLimit::Queue,
            max_wait: Duration::from_secs(30),
            mode: LimitMode::Enforce,
            adaptive: false,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn the_local_source_gives_the_burst_then_one_cell_per_interval() {
        // 3 per 3 s with a burst of 1: a cell every 1.5 s (see quota.rs).
        let rate = rate(3, 3, 1);
        let local = Local {
            rate: &rate,
            pause: None,
        };
        assert_eq!(local.interval(), Duration::from_millis(1500));
        assert_eq!(local.take().await, Taken::Now);
        assert_eq!(
            local.take().await,
            Taken::Wait {
                wait: Duration::from_millis(1500),
                paused: false
            }
        );
        tokio::time::advance(Duration::from_millis(1500)).await;
        assert_eq!(local.take().await, Taken::Now);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_pause_comes_before_the_cell_and_spends_none() {
        let rate = rate(10, 1, 10);
        let pause = Pause::default();
        let metrics = tollgate_metrics::Metrics::new("t").upstream("p", "sandbox");
        Partner {
            pause: &pause,
            max_pause: Duration::from_secs(60),
            metrics: &metrics,
        }
        .hold(Duration::from_secs(2), "partner 429");
        let local = Local {
            rate: &rate,
            pause: Some(&pause),
        };
        assert_eq!(
            local.take().await,
            Taken::Wait {
                wait: Duration::from_secs(2),
                paused: true
            }
        );
        assert_eq!(
            pause.take().await,
            Taken::Wait {
                wait: Duration::from_secs(2),
                paused: true
            }
        );
        // Queued behind the pause, the request goes when it ends, with the whole burst left.
        let waiting = AtomicUsize::new(0);
        let got = wait(
            &local,
            rate.rule(&waiting),
            Instant::now() + Duration::from_secs(60),
            |_| {},
        )
        .await;
        assert_eq!(got, Ok(Duration::from_secs(2)));
        for _ in 0..9 {
            assert_eq!(local.take().await, Taken::Now);
        }
        // Refusing (no rate limit), a pause is answered at once with what is left of it.
        Partner {
            pause: &pause,
            max_pause: Duration::from_secs(60),
            metrics: &metrics,
        }
        .hold(Duration::from_secs(4), "partner Retry-After");
        let got = wait(
            &pause,
            crate::limit::wait::Rule::Refuse,
            Instant::now() + Duration::from_secs(60),
            |_| {},
        )
        .await;
        assert_eq!(
            got,
            Err(Refused::Limit {
                retry_after: Duration::from_secs(4)
            })
        );
    }
}
