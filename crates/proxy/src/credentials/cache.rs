//! [`TokenCache`]: one token per (upstream, environment) — the cached value, its single flight,
//! the background refresh and the backoff. Where tokens come from is `source.rs` (the token calls
//! behind `token_rate_limit`) and, with `[shared]`, `fleet.rs` (the fleet's lease and adoption).
//!
//! Reading is an `ArcSwap` load: no lock on the request path. A missing token starts one *flight*
//! (a shared future driven by its own task) that every waiting caller joins; the flight's result,
//! success or failure, reaches all of them at once. A background task refreshes the token at
//! `expires_at - refresh_before` (with jitter) while the current one keeps serving. After a failure
//! the endpoint is left alone until the backoff passes, and callers that need a token meanwhile get
//! an error at once instead of queueing. All token calls pass `token_rate_limit`.
//!
//! With `[shared]`, `token_rate_limit` is the fleet's (in Redis), and with an `encryption_key` the
//! token is too: a fetch first looks in Redis, and only the replica holding the lease calls the
//! partner (`fleet.rs`). The token is still cached here until its expiry, so the request path
//! never asks Redis for it. While Redis is unavailable each replica fetches its own, at its share
//! of the token limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::future::{BoxFuture, FutureExt, Shared};

use http::HeaderValue;
use serde::Serialize;
use tokio::sync::Notify;
use tokio::time::Instant;
use tollgate_metrics::UpstreamMetrics;

use super::fetch::{FetchError, Fetched};
use super::fleet::{FleetToken, FromFleet};
use super::source::{Kind, TokenSource};
use super::{now_unix, Token, TokenError};
use crate::backoff;
use crate::config::Auth;
use crate::forward::UpstreamClient;
use crate::jitter::Jitter;
use crate::shared::{SharedLimiter, SharedState, SharedToken};

type Flight = Shared<BoxFuture<'static, Result<Arc<Token>, String>>>;

#[derive(Default)]
struct State {
    /// Consecutive failed fetches.
    failures: u32,
    /// No token call before this.
    backoff_until: Option<Instant>,
    last_error: Option<String>,
}

/// One upstream's token: cached, refreshed, single-flight.
pub struct TokenCache {
    upstream: String,
    /// The token calls and their limit.
    source: TokenSource,
    refresh_before: Duration,
    inject_prefix: String,
    current: ArcSwapOption<Token>,
    flight: Mutex<Option<Flight>>,
    state: Mutex<State>,
    /// `[shared]` with `encryption_key`: the fleet's token.
    fleet: Option<FleetToken>,
    metrics: UpstreamMetrics,
    next_id: AtomicU64,
    /// Wakes the refresher when the schedule changed (new token, failure).
    changed: Notify,
    /// Spreads refresh times and backoffs.
    jitter: Jitter,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

/// What `/status` shows of a token: never the token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenStatus {
    /// `valid`, `refreshing`, `failing` or `missing`.
    pub state: &'static str,
    pub expires_in_seconds: Option<f64>,
    pub last_error: Option<String>,
}

impl TokenCache {
    /// A cache for `auth`, or `None` when the upstream has no token.
    pub fn new(
        (upstream, environment): (&str, &str),
        auth: &Auth,
        client: UpstreamClient,
        call_timeout: Duration,
        metrics: UpstreamMetrics,
        shared: Option<&Arc<SharedState>>,
        jitter: Jitter,
    ) -> Option<Arc<Self>> {
        // What the cache itself needs is the same for every token type; only the calls differ.
        let common = auth.token_common()?;
        let kind = match auth {
            Auth::None => return None,
            Auth::OAuth2(c) => Kind::OAuth2(c.clone()),
            Auth::JwtLogin(c) => Kind::Jwt(c.clone()),
        };
        let limit = common.token_rate_limit;
        let fleet_limit = shared.zip(limit).map(|(s, l)| {
            SharedLimiter::new(
                s.clone(),
                s.key("token-rate", upstream, environment),
                None,
                Some(&l),
            )
        });
        // With `[shared]`, this replica's own limit is its share, used while Redis is unavailable.
        let limit = limit.map(|l| shared.map_or(l, |s| s.share_of(&l)));
        Some(Arc::new(Self {
            upstream: upstream.to_owned(),
            source: TokenSource::new(
                upstream,
                kind,
                client,
                call_timeout,
                limit,
                fleet_limit,
                metrics.clone(),
            ),
            refresh_before: common.refresh_before,
            inject_prefix: common.inject.prefix.clone(),
            current: ArcSwapOption::empty(),
            flight: Mutex::new(None),
            state: Mutex::new(State::default()),
            // The leaseholder's fetch may wait for the token limit's cell (up to its `max_wait`)
            // before each call: the lease, and the others' wait for its token, allow for that.
            fleet: {
                let fetch_time = call_timeout + limit.map_or(Duration::ZERO, |l| l.max_wait);
                shared
                    .and_then(|s| SharedToken::new(s, upstream, environment, fetch_time))
                    .map(|t| FleetToken::new(t, fetch_time))
            },
            metrics,
            next_id: AtomicU64::new(1),
            changed: Notify::new(),
            jitter,
        }))
    }

    /// A valid token, and how long getting it took: nothing (and no clock read) when one is held,
    /// else the wait (until `deadline`) for a fetch.
    pub async fn get(self: &Arc<Self>, deadline: Instant) -> Result<(Arc<Token>, Duration), TokenError> {
        if let Some(token) = self.valid() {
            return Ok((token, Duration::ZERO));
        }
        let asked = Instant::now();
        // Boxed: the single flight's state would otherwise grow every request's future.
        let fetched = Box::pin(self.wait_for_flight(deadline)).await;
        fetched.map(|token| (token, asked.elapsed()))
    }

    async fn wait_for_flight(self: &Arc<Self>, deadline: Instant) -> Result<Arc<Token>, TokenError> {
        let flight = self.join_flight(false)?;
        match tokio::time::timeout_at(deadline, flight).await {
            Ok(Ok(token)) => Ok(token),
            Ok(Err(message)) => Err(TokenError::call_failed(message, self.backoff_left())),
            Err(_) => Err(TokenError::no_answer()),
        }
    }

    /// The held token if it has not expired (the hard cutoff).
    fn valid(&self) -> Option<Arc<Token>> {
        let token = self.current.load_full()?;
        (Instant::now() < token.expires_at).then_some(token)
    }

    /// A partner refused `token` (401): drop it unless a newer one already replaced it, so 200
    /// simultaneous 401s cause one fetch, not 200.
    pub fn invalidate(&self, token: &Token) {
        let held = self.current.load();
        if held.as_ref().is_some_and(|t| t.id == token.id) {
            let prev = self.current.compare_and_swap(&held, None);
            if prev.as_ref().is_some_and(|t| t.id == token.id) {
                // Only a token adopted from the fleet has an origin blob to refuse.
                if let (Some(fleet), Some(origin)) = (&self.fleet, &token.origin) {
                    fleet.refuse(origin.clone());
                }
                self.metrics.token_cleared();
                tracing::info!(upstream = %self.upstream, "partner refused the token (401); fetching a new one");
            }
        }
    }

    /// Joins the fetch in flight or starts one. `force` fetches even while a valid token is held
    /// (the early refresh). Refused at once while backing off.
    fn join_flight(self: &Arc<Self>, force: bool) -> Result<Flight, TokenError> {
        let mut slot = self.flight.lock().expect("flight lock");
        if !force {
            // While the token endpoint is failing, a caller is answered at once (502 with the
            // time of the next permitted call) instead of waiting for a retry that may itself wait
            // for the token limit's next cell: only a caller arriving when no failure is known
            // waits for the call, within its own request_timeout.
            if let Some(refused) = self.refuse_while_failing() {
                return Err(refused);
            }
        }
        if let Some(flight) = slot.as_ref() {
            return Ok(flight.clone());
        }
        if !force {
            if let Some(token) = self.valid() {
                return Ok(futures_util::future::ready(Ok(token)).boxed().shared());
            }
        }
        if let Some(wait) = self.backoff_left() {
            let state = self.state.lock().expect("state lock");
            return Err(TokenError::backing_off(wait, state.last_error.clone()));
        }
        let me = self.clone();
        let flight = async move {
            let result = me.fetch_once().await;
            *me.flight.lock().expect("flight lock") = None;
            me.changed.notify_one();
            result
        }
        .boxed()
        .shared();
        *slot = Some(flight.clone());
        // Driven by its own task so it completes (and is cached) even if every caller gives up.
        tokio::spawn(flight.clone());
        Ok(flight)
    }

    /// `Some` (the error to answer) while the last fetch failed and no valid token is held.
    fn refuse_while_failing(&self) -> Option<TokenError> {
        let state = self.state.lock().expect("state lock");
        if state.failures == 0 {
            return None;
        }
        let now = Instant::now();
        let later = |t: Option<Instant>| t.and_then(|t| t.checked_duration_since(now));
        let next_call = later(state.backoff_until)
            .max(later(self.source.next_call_at()))
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(1));
        Some(TokenError::failing(next_call, state.last_error.clone()))
    }

    fn backoff_left(&self) -> Option<Duration> {
        let until = self.state.lock().expect("state lock").backoff_until?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// A new token: the fleet's when shared, else one token call (two for a JWT refresh that
    /// falls back to a login), through the token limit.
    async fn fetch_once(self: &Arc<Self>) -> Result<Arc<Token>, String> {
        if let Some(fleet) = &self.fleet {
            let held = self.current.load_full().and_then(|t| t.origin.clone());
            match fleet.get(held.as_deref(), || self.source.call()).await {
                Some(FromFleet::Adopted(stored)) => return self.adopt(stored),
                Some(FromFleet::Fetched { fetched, blob }) => {
                    return self.settle(fetched.and_then(|f| self.install(f, blob)))
                }
                Some(FromFleet::TimedOut) => {
                    return Err(
                        "another replica is fetching the token and it did not arrive within request_timeout"
                            .to_owned(),
                    )
                }
                // Redis unavailable: this replica fetches its own token, within its share of the limit.
                None => {}
            }
        }
        let result = self.source.call().await;
        self.settle(result.and_then(|f| self.install(f, None)))
    }

    fn settle(&self, result: Result<Arc<Token>, FetchError>) -> Result<Arc<Token>, String> {
        result.map_err(|e| {
            self.fail(&e);
            e.message
        })
    }

    /// Installs a token another replica stored.
    fn adopt(&self, stored: crate::shared::token::Stored) -> Result<Arc<Token>, String> {
        let fetched = Fetched {
            access: stored.access,
            expires_unix: Some(stored.expires_unix),
            refresh: None,
        };
        let token = self.install(fetched, Some(stored.blob)).map_err(|e| e.message)?;
        tracing::debug!(upstream = %self.upstream, "token taken from the shared state");
        Ok(token)
    }

    fn install(&self, fetched: Fetched, origin: Option<Arc<[u8]>>) -> Result<Arc<Token>, FetchError> {
        let now_u = now_unix();
        let exp = fetched.expires_unix.unwrap_or(now_u);
        let lifetime = Duration::from_secs_f64((exp - now_u).max(0.0));
        if lifetime.is_zero() {
            return Err(FetchError::invalid_response(
                "invalid token response: the token is already expired",
            ));
        }
        let mut header = HeaderValue::from_str(&format!("{}{}", self.inject_prefix, fetched.access.expose()))
            .map_err(|_| {
                FetchError::invalid_response("invalid token response: the token cannot be sent in a header")
            })?;
        header.set_sensitive(true);
        let now = Instant::now();
        let expires_at = now + lifetime;
        // Refresh `refresh_before` ahead, less a little jitter so replicas spread out; never sooner
        // than half the lifetime, so a short-lived token cannot make the refresher spin.
        let jitter = self.refresh_before.mul_f64(0.1 * self.jitter.draw());
        let early = lifetime
            .saturating_sub(self.refresh_before + jitter)
            .max(lifetime / 2);
        let token = Arc::new(Token {
            header,
            expires_at,
            refresh_at: now + early,
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            origin,
        });
        self.current.store(Some(token.clone()));
        *self.state.lock().expect("state lock") = State::default();
        self.metrics.token_ok(exp);
        tracing::debug!(upstream = %self.upstream, expires_in_s = lifetime.as_secs(), "token installed");
        Ok(token)
    }

    fn fail(&self, e: &FetchError) {
        let Some(reason) = e.reason else {
            // Tollgate's own token limit refused the call: no partner failed, so no backoff
            // grows and the state is not `failing`; no call (and callers are answered at once,
            // `join_flight`) until the limit's next cell.
            let wait = e.retry_after.unwrap_or(Duration::from_secs(1));
            let mut state = self.state.lock().expect("state lock");
            state.backoff_until = Some(Instant::now() + wait);
            state.last_error = Some(e.message.clone());
            tracing::info!(upstream = %self.upstream, retry_in_s = wait.as_secs_f64(), "{}", e.message);
            return;
        };
        self.metrics.token_failed(reason);
        let mut state = self.state.lock().expect("state lock");
        state.failures += 1;
        let wait = backoff::delay(state.failures, e.retry_after, self.jitter.draw());
        state.backoff_until = Some(Instant::now() + wait);
        state.last_error = Some(e.message.clone());
        tracing::warn!(
            upstream = %self.upstream,
            reason = reason.label(),
            error = %e.message,
            failures = state.failures,
            retry_in_s = wait.as_secs_f64(),
            "token fetch failed"
        );
    }

    /// Fetches at start-up, then before each expiry, then after each backoff; runs until aborted.
    pub async fn run_refresher(self: Arc<Self>) {
        loop {
            let now = Instant::now();
            let mut at = match self.current.load().as_ref() {
                Some(t) if now < t.expires_at => t.refresh_at,
                _ => now,
            };
            if let Some(wait) = self.backoff_left() {
                at = at.max(now + wait);
            }
            if at > now {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = self.changed.notified() => continue,
                }
            }
            let flight = self.join_flight(true);
            if let Ok(flight) = flight {
                let _ = flight.await;
            }
            // A failure set a backoff and a success a new refresh time: the loop re-reads both.
        }
    }

    /// The view `/status` shows.
    pub fn status(&self) -> TokenStatus {
        let in_flight = self.flight.lock().expect("flight lock").is_some();
        let state = self.state.lock().expect("state lock");
        let valid = self.valid();
        TokenStatus {
            state: if in_flight {
                "refreshing"
            } else if state.failures > 0 {
                "failing"
            } else if valid.is_some() {
                "valid"
            } else {
                "missing"
            },
            expires_in_seconds: valid.map(|t| {
                t.expires_at
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
            }),
            last_error: state.last_error.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The cache against a scripted endpoint (`source::Fake`) on the paused clock, with the
    //! jitter fixed at 0: exact fetch counts, refresh times and backoffs.

    use std::collections::VecDeque;
    use std::num::NonZeroU32;
    use std::sync::atomic::AtomicUsize;

    use super::*;
    use crate::config::{LimitMode, OnLimit, RateLimit};
    use crate::credentials::source::Fake;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// An endpoint answering `delay` after each call with tokens that live 100 s, after the
    /// scripted failures.
    fn endpoint(delay: Duration, failures: Vec<FetchError>) -> Arc<Fake> {
        Arc::new(Fake {
            delay,
            lifetime: secs(100),
            script: Mutex::new(failures.into_iter().map(Err).collect::<VecDeque<_>>()),
            calls: AtomicUsize::new(0),
        })
    }

    /// A cache over `fake` that refreshes 30 s before expiry, behind `limit` if any.
    fn cache(fake: &Arc<Fake>, limit: Option<RateLimit>) -> Arc<TokenCache> {
        let toml = "[upstreams.p.sandbox]\nbase_url = \"http://127.0.0.1:9\"\n";
        let config = crate::Config::parse(toml, &|_| None).unwrap();
        let client = UpstreamClient::new(&config.upstreams[0].target, secs(1), None).unwrap();
        let metrics = tollgate_metrics::Metrics::new("t").upstream("p", "sandbox");
        let kind = Kind::Fake(fake.clone());
        let source = TokenSource::new("p", kind, client, secs(5), limit, None, metrics.clone());
        Arc::new(TokenCache {
            upstream: "p".to_owned(),
            source,
            refresh_before: secs(30),
            inject_prefix: "Bearer ".to_owned(),
            current: ArcSwapOption::empty(),
            flight: Mutex::new(None),
            state: Mutex::new(State::default()),
            fleet: None,
            metrics,
            next_id: AtomicU64::new(1),
            changed: Notify::new(),
            jitter: Jitter::Fixed(0.0),
        })
    }

    fn within_10s() -> Instant {
        Instant::now() + secs(10)
    }

    #[tokio::test(start_paused = true)]
    async fn callers_missing_a_token_share_one_fetch() {
        let fake = endpoint(secs(1), Vec::new());
        let cache = cache(&fake, None);
        let deadline = within_10s();
        let callers: Vec<_> = (0..20)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move { cache.get(deadline).await })
            })
            .collect();
        let mut ids = Vec::new();
        for caller in callers {
            let (token, waited) = caller.await.unwrap().unwrap();
            assert_eq!(waited, secs(1), "every caller waited for the one call");
            ids.push(token.id);
        }
        assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
        assert_eq!(fake.calls(), 1);
        // Held now: served without a call or a wait.
        let (token, waited) = cache.get(within_10s()).await.unwrap();
        assert_eq!((token.id, waited), (ids[0], Duration::ZERO));
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_token_is_served_until_its_refresh_time_then_fetched_again() {
        // Tokens live 100 s and are refreshed 30 s ahead (no jitter): at 70 s.
        let fake = endpoint(Duration::ZERO, Vec::new());
        let cache = cache(&fake, None);
        let refresher = tokio::spawn(cache.clone().run_refresher());
        tokio::time::sleep(secs(1)).await;
        assert_eq!(fake.calls(), 1, "fetched at start-up");
        let first = cache.get(within_10s()).await.unwrap().0;
        tokio::time::sleep(secs(68)).await;
        let (held, waited) = cache.get(within_10s()).await.unwrap();
        assert_eq!((held.id, waited), (first.id, Duration::ZERO));
        assert_eq!(fake.calls(), 1, "nothing fetched before the refresh time (69 s)");
        tokio::time::sleep(secs(2)).await;
        assert_eq!(fake.calls(), 2, "fetched again at the refresh time (71 s)");
        let (refreshed, waited) = cache.get(within_10s()).await.unwrap();
        assert_ne!(refreshed.id, first.id);
        assert_eq!(waited, Duration::ZERO, "the refresh kept callers from waiting");
        assert!(refreshed.expires_at > first.expires_at);
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_fetch_backs_off_and_callers_are_refused_until_the_next_call() {
        let fake = endpoint(Duration::ZERO, vec![FetchError::network("connection refused")]);
        let cache = cache(&fake, None);
        // A caller finding no token joins the fetch, which fails: backing off 2 s × 0.8 (the
        // jitter at 0) before the next call.
        let failed = cache.get(within_10s()).await.unwrap_err();
        assert_eq!(failed.retry_after, Some(Duration::from_millis(1600)));
        assert_eq!(cache.status().state, "failing");
        let refresher = tokio::spawn(cache.clone().run_refresher());
        // Meanwhile callers are answered at once with the time of the next call; none is made.
        tokio::time::sleep(Duration::from_millis(600)).await;
        let refused = cache.get(within_10s()).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(secs(1)));
        assert_eq!(fake.calls(), 1);
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert_eq!(fake.calls(), 1, "no call before the backoff ends (1.5 s)");
        // The refresher calls again when it ends.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(fake.calls(), 2, "called again at 1.6 s");
        assert!(cache.get(within_10s()).await.is_ok());
        assert_eq!(cache.status().state, "valid");
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn while_failing_the_refusal_names_the_token_limits_next_cell() {
        // One token call a minute: the failed call at 0 s spent it, so the retry after the
        // backoff waits for the cell at 60 s, and callers are told so.
        let limit = RateLimit {
            requests: NonZeroU32::MIN,
            per: secs(60),
            burst: NonZeroU32::MIN,
            on_limit: OnLimit::Queue,
            max_wait: secs(120),
            mode: LimitMode::Enforce,
            adaptive: false,
        };
        let fake = endpoint(Duration::ZERO, vec![FetchError::network("connection refused")]);
        let cache = cache(&fake, Some(limit));
        let refresher = tokio::spawn(cache.clone().run_refresher());
        tokio::time::sleep(secs(10)).await;
        assert_eq!(fake.calls(), 1);
        let refused = cache.get(within_10s()).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(secs(50)));
        tokio::time::sleep(secs(49)).await;
        assert_eq!(fake.calls(), 1, "no call before the cell (59 s)");
        tokio::time::sleep(secs(2)).await;
        assert_eq!(fake.calls(), 2, "called with the cell (61 s)");
        assert!(cache.get(within_10s()).await.is_ok());
        refresher.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_endpoints_retry_after_sets_the_next_call() {
        let busy = FetchError::answered(http::StatusCode::TOO_MANY_REQUESTS, Some(secs(30)));
        let fake = endpoint(Duration::ZERO, vec![busy]);
        let cache = cache(&fake, None);
        let failed = cache.get(within_10s()).await.unwrap_err();
        assert_eq!(failed.retry_after, Some(secs(30)), "the longer wait wins");
        tokio::time::sleep(secs(10)).await;
        let refused = cache.get(within_10s()).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(secs(20)));
        assert_eq!(fake.calls(), 1);
    }
}
