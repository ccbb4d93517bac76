//! [`TokenSource`]: where an upstream's tokens come from — the token calls (OAuth2 client
//! credentials; JWT refresh, falling back to a login) behind `token_rate_limit`.
//!
//! The token limit waits through the same loop as every other limit (`limit/wait.rs`), with the
//! same rules, and with a deadline: a token call waits for its cell at most the limit's
//! `max_wait` (by default the upstream's `request_timeout`); past it the call is refused with the
//! time of the next cell, and the cache answers callers at once until then. With `[shared]` the
//! cells are the fleet's, and this replica's share of them while Redis is unavailable.

use std::sync::atomic::AtomicUsize;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;
use tollgate_metrics::{Limited, UpstreamMetrics};

use super::fetch::{self, FetchError, Fetched};
use super::now_unix;
use crate::config::{JwtLogin, OAuth2, RateLimit};
use crate::forward::UpstreamClient;
use crate::limit::wait::{wait, Refused};
use crate::limit::{Fleet, Local, Rate};
use crate::secret::Secret;
use crate::shared::SharedLimiter;

/// The token endpoint's kind and its settings.
#[derive(Debug)]
pub(super) enum Kind {
    OAuth2(OAuth2),
    Jwt(JwtLogin),
    /// Unit tests: an endpoint answering from a script, on tokio's clock.
    #[cfg(test)]
    Fake(std::sync::Arc<Fake>),
}

/// Unit tests of the cache: a token endpoint that answers `delay` after each call (on tokio's
/// clock, which the tests pause): the scripted answers first, then tokens valid for `lifetime`.
#[cfg(test)]
#[derive(Debug)]
pub(super) struct Fake {
    pub delay: Duration,
    pub lifetime: Duration,
    /// Answers to give before the tokens: a lifetime, or a failure.
    pub script: Mutex<std::collections::VecDeque<Result<Duration, FetchError>>>,
    pub calls: AtomicUsize,
}

#[cfg(test)]
impl Fake {
    /// The token calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(std::sync::atomic::Ordering::Acquire)
    }

    async fn call(&self) -> Result<Fetched, FetchError> {
        let n = self.calls.fetch_add(1, std::sync::atomic::Ordering::AcqRel) + 1;
        tokio::time::sleep(self.delay).await;
        let scripted = self.script.lock().unwrap().pop_front();
        let lifetime = scripted.unwrap_or(Ok(self.lifetime))?;
        Ok(Fetched {
            access: Secret::new(format!("token-{n}")),
            expires_unix: Some(now_unix() + lifetime.as_secs_f64()),
            refresh: None,
        })
    }
}

/// One upstream's token calls and their limit.
#[derive(Debug)]
pub(super) struct TokenSource {
    upstream: String,
    kind: Kind,
    client: UpstreamClient,
    /// Bound on one token call.
    call_timeout: Duration,
    /// JWT login: the refresh token and its own expiry (unix seconds), if any.
    refresh: Mutex<Option<(Secret, Option<f64>)>>,
    limit: Option<TokenLimit>,
    metrics: UpstreamMetrics,
}

/// `token_rate_limit`: this replica's cells (its share, with `[shared]`), and the fleet's.
#[derive(Debug)]
struct TokenLimit {
    rate: Rate,
    fleet: Option<SharedLimiter>,
    /// Token calls in line for a cell.
    waiting: AtomicUsize,
    /// When the next token call may go, while one waits for its cell.
    next_call_at: Mutex<Option<Instant>>,
}

impl TokenSource {
    /// `limit`: this replica's token limit (its share with `[shared]`); `fleet`: the fleet's.
    pub(super) fn new(
        upstream: &str,
        kind: Kind,
        client: UpstreamClient,
        call_timeout: Duration,
        limit: Option<RateLimit>,
        fleet: Option<SharedLimiter>,
        metrics: UpstreamMetrics,
    ) -> Self {
        Self {
            upstream: upstream.to_owned(),
            kind,
            client,
            call_timeout,
            refresh: Mutex::new(None),
            limit: limit.map(|l| TokenLimit::new(l, fleet)),
            metrics,
        }
    }

    /// One new token from the partner: one token call (two for a JWT refresh that falls back to
    /// a login), each through the token limit.
    pub(super) async fn call(&self) -> Result<Fetched, FetchError> {
        let fetched = match &self.kind {
            Kind::OAuth2(cfg) => {
                self.pass_limit().await?;
                fetch::oauth2(&self.client, cfg, self.call_timeout).await
            }
            Kind::Jwt(cfg) => self.jwt(cfg).await,
            #[cfg(test)]
            Kind::Fake(fake) => {
                self.pass_limit().await?;
                fake.call().await
            }
        }?;
        if let Some(refresh) = &fetched.refresh {
            *self.refresh.lock().unwrap_or_else(|p| p.into_inner()) = Some(refresh.clone());
        }
        Ok(fetched)
    }

    /// When the token limit next allows a call, while a call waits for it.
    pub(super) fn next_call_at(&self) -> Option<Instant> {
        let limit = self.limit.as_ref()?;
        *limit.next_call_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Refresh with the refresh token while it is valid; log in again when there is none or the
    /// partner refuses it (400/401).
    async fn jwt(&self, cfg: &JwtLogin) -> Result<Fetched, FetchError> {
        let refresh = self.refresh.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let (Some(url), Some((token, exp))) = (&cfg.refresh_url, refresh) {
            if exp.is_none_or(|e| e > now_unix() + 1.0) {
                self.pass_limit().await?;
                match fetch::jwt_refresh(&self.client, cfg, url, &token, self.call_timeout).await {
                    Ok(f) => return Ok(f),
                    Err(e) if e.status.is_some_and(|s| s == 400 || s == 401) => {
                        if let Some(reason) = e.reason {
                            self.metrics.token_failed(reason);
                        }
                        tracing::info!(upstream = %self.upstream, "refresh token refused; logging in again");
                        *self.refresh.lock().unwrap_or_else(|p| p.into_inner()) = None;
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        self.pass_limit().await?;
        fetch::jwt_login(&self.client, cfg, self.call_timeout).await
    }

    /// Waits for `token_rate_limit`, if any.
    async fn pass_limit(&self) -> Result<(), FetchError> {
        match &self.limit {
            Some(limit) => limit.pass(&self.metrics).await,
            None => Ok(()),
        }
    }
}

impl TokenLimit {
    fn new(rate: RateLimit, fleet: Option<SharedLimiter>) -> Self {
        Self {
            rate: Rate::new(rate),
            fleet,
            waiting: AtomicUsize::new(0),
            next_call_at: Mutex::new(None),
        }
    }

    /// Waits for a cell (the fleet's, else this replica's share), at most the limit's
    /// `max_wait`; waiting here is the limit doing its job, counted as queued.
    async fn pass(&self, metrics: &UpstreamMetrics) -> Result<(), FetchError> {
        let deadline = Instant::now() + self.rate.config.max_wait;
        let rule = self.rate.rule(&self.waiting);
        let queued = |estimate: Duration| {
            metrics.limited(Limited::TokenQueued);
            *self.next_call_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now() + estimate);
        };
        let local = Local {
            rate: &self.rate,
            pause: None,
        };
        let waited = match &self.fleet {
            Some(limiter) => {
                // The token limit has no pause key, so it never takes batches either way.
                let fleet = Fleet {
                    limiter,
                    client: None,
                    partner: None,
                    batched: false,
                };
                match wait(&fleet, rule, deadline, queued).await {
                    // Redis unavailable: this replica's share, within what is left of the deadline.
                    Err(Refused::Unavailable { .. }) => wait(&local, rule, deadline, queued).await,
                    other => other,
                }
            }
            None => wait(&local, rule, deadline, queued).await,
        };
        match waited {
            Ok(_) => {
                // This call took the cell it announced (a call admitted at once finds nobody in
                // line, so nobody else's announcement is cleared).
                *self.next_call_at.lock().unwrap_or_else(|p| p.into_inner()) = None;
                Ok(())
            }
            Err(
                Refused::Limit { retry_after }
                | Refused::Client { retry_after }
                | Refused::Unavailable { waited: retry_after },
            ) => {
                metrics.limited(Limited::TokenRejected);
                Err(FetchError::limited(retry_after))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::sync::Arc;

    use super::*;
    use crate::config::{LimitMode, OnLimit};

    fn token_limit(requests: u32, per_secs: u64, max_wait_secs: u64) -> Arc<TokenLimit> {
        Arc::new(TokenLimit::new(
            RateLimit {
                requests: NonZeroU32::new(requests).unwrap(),
                per: Duration::from_secs(per_secs),
                burst: NonZeroU32::MIN,
                on_limit: OnLimit::Queue,
                max_wait: Duration::from_secs(max_wait_secs),
                mode: LimitMode::Enforce,
                adaptive: false,
            },
            None,
        ))
    }

    #[tokio::test(start_paused = true)]
    async fn token_calls_wait_for_their_cell_within_max_wait_then_are_refused_at_once() {
        let metrics = tollgate_metrics::Metrics::new("t").upstream("p", "sandbox");
        // 3 per 30 s, burst 1: a cell every 15 s; a token call waits at most 20 s.
        let limit = token_limit(3, 30, 20);
        let start = Instant::now();
        limit.pass(&metrics).await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        // The second waits for the next cell, and says when it is while it waits.
        let waiter = tokio::spawn({
            let (limit, metrics) = (limit.clone(), metrics.clone());
            async move { limit.pass(&metrics).await }
        });
        tokio::task::yield_now().await;
        assert_eq!(
            limit.next_call_at.lock().unwrap().map(|t| t - start),
            Some(Duration::from_secs(15))
        );
        // A third, behind it, would wait 30 s: refused at once with that estimate, no call made.
        let refused = limit.pass(&metrics).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(Duration::from_secs(30)));
        assert_eq!(refused.reason, None, "not a partner failure");
        assert_eq!(start.elapsed(), Duration::ZERO);
        waiter.await.unwrap().unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(15));
        assert_eq!(*limit.next_call_at.lock().unwrap(), None);
    }
}
