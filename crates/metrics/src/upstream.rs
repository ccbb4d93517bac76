//! Per-(upstream, environment) metric handles, resolved once so recording is a few atomic adds.

use std::time::Duration;

use prometheus::{Gauge, Histogram, IntCounter, IntGauge};

use crate::{ClientMetrics, Metrics};

use crate::labels::{ErrorKind, STATUS_CLASSES};
use crate::traffic::TrafficMetrics;

/// Why a token call failed: the `reason` label of `tollgate_token_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenFailure {
    Http4xx,
    Http5xx,
    Network,
    InvalidResponse,
    RateLimited,
}

impl TokenFailure {
    const ALL: [TokenFailure; 5] = [
        TokenFailure::Http4xx,
        TokenFailure::Http5xx,
        TokenFailure::Network,
        TokenFailure::InvalidResponse,
        TokenFailure::RateLimited,
    ];

    pub fn label(self) -> &'static str {
        match self {
            TokenFailure::Http4xx => "http_4xx",
            TokenFailure::Http5xx => "http_5xx",
            TokenFailure::Network => "network",
            TokenFailure::InvalidResponse => "invalid_response",
            TokenFailure::RateLimited => "rate_limited",
        }
    }
}

/// What a limit did to a request: the `scope` and `action` labels of `tollgate_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limited {
    UpstreamQueued,
    UpstreamRejected,
    TokenQueued,
    TokenRejected,
    /// Waited for a `max_concurrency` slot.
    ConcurrencyQueued,
    /// No `max_concurrency` slot freed within `max_wait`: 503 `overloaded`.
    ConcurrencyRejected,
    /// Spaced out by the partner's announced budget (adaptive spacing).
    UpstreamPaced,
    /// `mode = "shadow"`: the rate limit would have queued the request; it went through.
    UpstreamShadowQueued,
    /// `mode = "shadow"`: the rate limit would have refused the request; it went through.
    UpstreamShadowRejected,
}

impl Limited {
    const ALL: [Limited; 9] = [
        Limited::UpstreamQueued,
        Limited::UpstreamRejected,
        Limited::TokenQueued,
        Limited::TokenRejected,
        Limited::ConcurrencyQueued,
        Limited::ConcurrencyRejected,
        Limited::UpstreamPaced,
        Limited::UpstreamShadowQueued,
        Limited::UpstreamShadowRejected,
    ];

    fn labels(self) -> [&'static str; 2] {
        match self {
            Limited::UpstreamQueued => ["upstream", "queued"],
            Limited::UpstreamRejected => ["upstream", "rejected"],
            Limited::TokenQueued => ["token", "queued"],
            Limited::TokenRejected => ["token", "rejected"],
            Limited::ConcurrencyQueued => ["concurrency", "queued"],
            Limited::ConcurrencyRejected => ["concurrency", "rejected"],
            Limited::UpstreamPaced => ["upstream", "paced"],
            Limited::UpstreamShadowQueued => ["upstream", "shadow_queued"],
            Limited::UpstreamShadowRejected => ["upstream", "shadow_rejected"],
        }
    }
}

/// Why a retry happened (or was denied): the `reason` label of `tollgate_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryReason {
    Connect,
    Status502,
    Status503,
    Status504,
    Status429,
    /// A retry the budget refused; the last response went to the caller.
    BudgetExhausted,
}

impl RetryReason {
    const ALL: [RetryReason; 6] = [
        RetryReason::Connect,
        RetryReason::Status502,
        RetryReason::Status503,
        RetryReason::Status504,
        RetryReason::Status429,
        RetryReason::BudgetExhausted,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RetryReason::Connect => "connect",
            RetryReason::Status502 => "status_502",
            RetryReason::Status503 => "status_503",
            RetryReason::Status504 => "status_504",
            RetryReason::Status429 => "status_429",
            RetryReason::BudgetExhausted => "budget_exhausted",
        }
    }
}

/// Why a link was not rewritten: the `reason` label of `tollgate_link_rewrite_skipped_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewriteSkip {
    Encoding,
    InvalidJson,
    StringTooLong,
    BadHost,
}

impl RewriteSkip {
    const ALL: [RewriteSkip; 4] = [
        RewriteSkip::Encoding,
        RewriteSkip::InvalidJson,
        RewriteSkip::StringTooLong,
        RewriteSkip::BadHost,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RewriteSkip::Encoding => "encoding",
            RewriteSkip::InvalidJson => "invalid_json",
            RewriteSkip::StringTooLong => "string_too_long",
            RewriteSkip::BadHost => "bad_host",
        }
    }
}

/// Handles for one (upstream, environment); cheap to clone.
#[derive(Debug, Clone)]
pub struct UpstreamMetrics {
    requests: [IntCounter; 5],
    upstream_responses: [IntCounter; 5],
    upstream_errors: [IntCounter; 4],
    request_duration: Histogram,
    upstream_duration: Histogram,
    overhead: Histogram,
    inflight: IntGauge,
    token_ok: IntCounter,
    token_error: IntCounter,
    token_failures: [IntCounter; 5],
    token_expiry: Gauge,
    limited: [IntCounter; Limited::ALL.len()],
    retries: [IntCounter; 6],
    pause_until: Gauge,
    adaptive_cap: Gauge,
    links_rewritten: IntCounter,
    links_skipped: [IntCounter; 4],
    traffic: TrafficMetrics,
}

fn class_index(status: u16) -> usize {
    (usize::from(status / 100)).clamp(1, 5) - 1
}

impl UpstreamMetrics {
    pub(crate) fn resolve(m: &Metrics, upstream: &str, env: &str) -> Self {
        let by_class = |vec: &prometheus::IntCounterVec| {
            STATUS_CLASSES.map(|class| vec.with_label_values(&[upstream, env, class]))
        };
        // With `[clients]` these handles are the anonymous caller's: the request path uses a
        // client's own handles (`ClientMetrics`) for a known client. Upstream and token limits
        // are shared by every caller, so their series name no client.
        let anonymous = m.client_label.then_some(crate::labels::ANONYMOUS);
        let shared_scope = m.client_label.then_some("");
        Self {
            requests: STATUS_CLASSES.map(|class| {
                let mut values = vec![upstream, env, class];
                values.extend(anonymous);
                m.requests.with_label_values(&values)
            }),
            upstream_responses: by_class(&m.upstream_responses),
            upstream_errors: ErrorKind::ALL
                .map(|k| m.upstream_errors.with_label_values(&[upstream, env, k.label()])),
            request_duration: m.request_duration.with_label_values(&[upstream, env]),
            upstream_duration: m.upstream_duration.with_label_values(&[upstream, env]),
            overhead: m.overhead.with_label_values(&[upstream, env]),
            inflight: m.inflight.with_label_values(&[upstream, env]),
            token_ok: m.token_requests.with_label_values(&[upstream, env, "ok"]),
            token_error: m.token_requests.with_label_values(&[upstream, env, "error"]),
            token_failures: TokenFailure::ALL
                .map(|r| m.token_failures.with_label_values(&[upstream, env, r.label()])),
            token_expiry: m.token_expiry.with_label_values(&[upstream, env]),
            limited: Limited::ALL.map(|l| {
                let [scope, action] = l.labels();
                let mut values = vec![upstream, env, scope, action];
                values.extend(shared_scope);
                m.rate_limited.with_label_values(&values)
            }),
            retries: RetryReason::ALL.map(|r| m.retries.with_label_values(&[upstream, env, r.label()])),
            pause_until: m.pause_until.with_label_values(&[upstream, env]),
            adaptive_cap: m.adaptive_cap.with_label_values(&[upstream, env]),
            links_rewritten: m.links_rewritten.with_label_values(&[upstream, env]),
            links_skipped: RewriteSkip::ALL
                .map(|r| m.links_skipped.with_label_values(&[upstream, env, r.label()])),
            traffic: TrafficMetrics::resolve(&m.traffic, upstream, env),
        }
    }

    /// Bytes, queueing and the connections to the partner.
    pub fn traffic(&self) -> &TrafficMetrics {
        &self.traffic
    }

    /// A caller request finished with `status` after `total`, of which `waited` was partner time
    /// and deliberate waits (queueing, backoff).
    pub fn request_done(&self, status: u16, total: Duration, waited: Duration) {
        self.request_done_by(None, status, total, waited);
    }

    /// [`UpstreamMetrics::request_done`] for a request a configured client sent: counted under
    /// its `client` label (`None`: the anonymous caller's, as `request_done`).
    pub fn request_done_by(
        &self,
        client: Option<&ClientMetrics>,
        status: u16,
        total: Duration,
        waited: Duration,
    ) {
        let requests = client.map_or(&self.requests, |c| &c.requests);
        requests[class_index(status)].inc();
        self.request_duration.observe(total.as_secs_f64());
        self.overhead.observe(total.saturating_sub(waited).as_secs_f64());
    }

    /// One partner response to one attempt.
    pub fn upstream_response(&self, status: u16, elapsed: Duration) {
        self.upstream_responses[class_index(status)].inc();
        self.upstream_duration.observe(elapsed.as_secs_f64());
    }

    /// One attempt that got no response.
    pub fn upstream_error(&self, kind: ErrorKind) {
        self.upstream_errors[kind as usize].inc();
    }

    /// A token call succeeded; the new token expires at `expires_unix` (seconds).
    pub fn token_ok(&self, expires_unix: f64) {
        self.token_ok.inc();
        self.token_expiry.set(expires_unix);
    }

    /// A token call failed.
    pub fn token_failed(&self, reason: TokenFailure) {
        self.token_error.inc();
        self.token_failures[reason as usize].inc();
    }

    /// The held token was dropped (expired or refused by the partner).
    pub fn token_cleared(&self) {
        self.token_expiry.set(0.0);
    }

    /// A limit queued or rejected a request.
    pub fn limited(&self, what: Limited) {
        self.limited[what as usize].inc();
    }

    /// A retry was made (or denied by the budget).
    pub fn retry(&self, reason: RetryReason) {
        self.retries[reason as usize].inc();
    }

    /// A partner asked for a pause until `unix` seconds.
    pub fn paused_until(&self, unix: f64) {
        self.pause_until.set(unix);
    }

    /// The pace the partner's announced budget allows, in requests per second (0: none).
    pub fn adaptive_cap(&self, per_second: f64) {
        self.adaptive_cap.set(per_second);
    }

    /// `n` links were rewritten to point through the gateway.
    pub fn links_rewritten(&self, n: u64) {
        self.links_rewritten.inc_by(n);
    }

    /// A body or link was left unrewritten.
    pub fn link_skipped(&self, reason: RewriteSkip) {
        self.links_skipped[reason as usize].inc();
    }

    /// Counts a request in flight until the guard drops.
    pub fn inflight(&self) -> InflightGuard {
        self.inflight.inc();
        InflightGuard(self.inflight.clone())
    }
}

/// Decrements `tollgate_inflight_requests` when dropped.
#[derive(Debug)]
pub struct InflightGuard(IntGauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_into_the_right_children() {
        let m = Metrics::new("1.2.3");
        let u = m.upstream("osigu", "sandbox");
        u.request_done(204, Duration::from_millis(3), Duration::from_millis(2));
        u.request_done(503, Duration::from_millis(3), Duration::ZERO);
        u.upstream_response(404, Duration::from_millis(1));
        u.upstream_error(ErrorKind::Tls);
        let g = u.inflight();
        let text = m.render();
        drop(g);
        assert!(
            text.contains(
                r#"tollgate_requests_total{environment="sandbox",status_class="2xx",upstream="osigu"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"tollgate_requests_total{environment="sandbox",status_class="5xx",upstream="osigu"} 1"#
        ));
        assert!(text.contains(r#"tollgate_upstream_responses_total{environment="sandbox",status_class="4xx",upstream="osigu"} 1"#));
        assert!(text.contains(
            r#"tollgate_upstream_errors_total{environment="sandbox",kind="tls",upstream="osigu"} 1"#
        ));
        assert!(text.contains(r#"tollgate_inflight_requests{environment="sandbox",upstream="osigu"} 1"#));
        assert!(text.contains(r#"tollgate_build_info{version="1.2.3"} 1"#));
        assert!(m
            .render()
            .contains(r#"tollgate_inflight_requests{environment="sandbox",upstream="osigu"} 0"#));
    }

    #[test]
    fn status_classes_clamp() {
        assert_eq!(class_index(100), 0);
        assert_eq!(class_index(299), 1);
        assert_eq!(class_index(599), 4);
        assert_eq!(class_index(999), 4);
        assert_eq!(class_index(0), 0);
    }
}
