//! Every metric Tollgate exports, on a registry of its own (not the process-global default).
//!
//! # Layout
//! - `lib.rs`: [`Metrics`], the registry and metric families, and rendering for `/metrics`.
//! - `upstream.rs`: [`UpstreamMetrics`], the per-(upstream, environment) handles the request path uses.
//! - `client.rs`: [`ClientMetrics`], the per-(upstream, environment, client) handles of a gateway
//!   with `[clients]` (the `client` label; see [`Metrics::with_client_label`]).
//! - `shared.rs`: [`SharedMetrics`], Redis in use or degraded, and Redis errors (`[shared]` only).
//! - `webhook.rs`: [`WebhookMetrics`], inbound deliveries, acknowledgement time, delivery to the
//!   internal service and the backlog, per configured webhook.
//! - `connections.rs`: [`ConnectionMetrics`], connections refused before a request could be
//!   served, connections open per listener, and failed accepts.
//! - `traffic.rs`: [`TrafficMetrics`] and [`PoolMetrics`], body bytes, queueing and the
//!   connections to partners; `reload.rs`: [`ReloadMetrics`], config reloads.
//! - `labels.rs`: label values several families share ([`ErrorKind`], the status classes, the
//!   anonymous client), a leaf the families' files import instead of importing each other.
//!
//! # Counting rules
//! - `tollgate_requests_total`: every caller request exactly once, by the status class the caller
//!   got, gateway-made errors included. Requests that match no route count under `upstream="none"`.
//! - `tollgate_upstream_responses_total`: every partner response, each attempt of a retry included.
//! - `tollgate_upstream_errors_total{kind}`: each attempt that got no response. A request the
//!   caller broke (a malformed or stalled body) is the caller's: it counts here never, and in
//!   `tollgate_requests_total` as the 4xx the caller got.
//! - `tollgate_rejected_connections_total{reason}`: each connection closed before a request on it
//!   could be served (over `max_connections`, no head within `header_read_timeout`, a head the
//!   parser refused, `Content-Length` with `Transfer-Encoding`). A refused head on the data listener
//!   also counts once in `tollgate_requests_total` under `upstream="none"`.
//!
//! - `client` (only once [`Metrics::with_client_label`] ran, i.e. with `[clients]`): on
//!   `tollgate_requests_total`, the configured client that sent the request, or `anonymous` (no
//!   key, an unknown key, `caller_auth = "off"`, or a request no route matched); on
//!   `tollgate_rate_limited_total`, the client whose own limit held the request (`scope="client"`)
//!   and empty for the upstream and token scopes, which every caller shares (Prometheus drops an
//!   empty label, so those series read as before).
//!
//! Label values come from a closed set (configured upstream and client names, environments, status
//! classes, fixed kinds): no path, id, host, key or caller-supplied value ever becomes a label. The
//! request path only touches children resolved once at start-up, so it hashes no labels and
//! allocates nothing.

mod client;
mod connections;
mod labels;
mod reload;
mod shared;
mod traffic;
mod upstream;
mod webhook;

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

pub use client::{ClientLimited, ClientMetrics, ANONYMOUS as ANONYMOUS_CLIENT};
pub use connections::{ConnectionMetrics, Listener, OpenGuard, Rejected};
pub use labels::ErrorKind;
pub use reload::ReloadMetrics;
pub use shared::{RedisOp, SharedMetrics};
pub use traffic::{PoolMetrics, TrafficMetrics};
pub use upstream::{InflightGuard, Limited, RetryReason, RewriteSkip, TokenFailure, UpstreamMetrics};
pub use webhook::{Delivered, Received, WebhookMetrics};

/// Buckets for partner APIs: 5 ms to 30 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Tollgate's own overhead is sub-millisecond when healthy.
const OVERHEAD_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1,
];

/// Acknowledging a webhook is one fsync'd commit: 100 us to 10 s.
const ACK_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 10.0,
];

/// The registry and every metric family.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    upstream_responses: IntCounterVec,
    upstream_errors: IntCounterVec,
    request_duration: HistogramVec,
    upstream_duration: HistogramVec,
    overhead: HistogramVec,
    inflight: IntGaugeVec,
    token_requests: IntCounterVec,
    token_failures: IntCounterVec,
    token_expiry: GaugeVec,
    rate_limited: IntCounterVec,
    retries: IntCounterVec,
    pause_until: GaugeVec,
    adaptive_cap: GaugeVec,
    links_rewritten: IntCounterVec,
    links_skipped: IntCounterVec,
    shared_up: IntGaugeVec,
    redis_errors: IntCounterVec,
    webhook_received: IntCounterVec,
    webhook_ack: HistogramVec,
    webhook_deliveries: IntCounterVec,
    webhook_pending: IntGaugeVec,
    webhook_dead: IntGaugeVec,
    webhook_oldest_age: GaugeVec,
    connections: ConnectionMetrics,
    reloads: ReloadMetrics,
    traffic: traffic::TrafficFamilies,
    /// `tollgate_requests_total` and `tollgate_rate_limited_total` carry a `client` label.
    client_label: bool,
    /// For `tollgate_build_info`, kept so [`Metrics::with_client_label`] can rebuild.
    version: String,
}

/// `tollgate_requests_total`: name, help and labels without `client`.
const REQUESTS: (&str, &str, &[&str]) = (
    "tollgate_requests_total",
    "Caller requests by the status class the caller got, gateway errors included.",
    &["upstream", "environment", "status_class"],
);

/// `tollgate_rate_limited_total`: name, help and labels without `client`.
const RATE_LIMITED: (&str, &str, &[&str]) = (
    "tollgate_rate_limited_total",
    "Requests held back by a limit, by scope (upstream, client, token) and action (queued, rejected; shadow_queued, shadow_rejected for a limit in shadow mode, which held nothing).",
    &["upstream", "environment", "scope", "action"],
);

/// A counter family with `labels`, plus `client` when `client` is true.
fn family((name, help, labels): (&str, &str, &[&str]), client: bool) -> IntCounterVec {
    let mut all = labels.to_vec();
    if client {
        all.push("client");
    }
    IntCounterVec::new(Opts::new(name, help), &all).expect("valid metric")
}

impl Metrics {
    /// Creates the registry with every family registered and `tollgate_build_info{version}` set.
    pub fn new(version: &str) -> Self {
        Self::build(version, false)
    }

    fn build(version: &str, client_label: bool) -> Self {
        let registry = Registry::new();
        let ue = &["upstream", "environment"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), ue)
                .expect("valid metric");
            registry.register(Box::new(h.clone())).expect("registered once");
            h
        };
        let requests = family(REQUESTS, client_label);
        registry
            .register(Box::new(requests.clone()))
            .expect("registered once");
        let upstream_responses = counter(
            "tollgate_upstream_responses_total",
            "Partner responses by status class; every attempt of a retry counts.",
            &["upstream", "environment", "status_class"],
        );
        let upstream_errors = counter(
            "tollgate_upstream_errors_total",
            "Attempts that got no partner response, by kind (connect, timeout, tls, protocol).",
            &["upstream", "environment", "kind"],
        );
        let request_duration = histogram(
            "tollgate_request_duration_seconds",
            "Time from receiving a caller request to sending its response headers.",
            LATENCY_BUCKETS,
        );
        let upstream_duration = histogram(
            "tollgate_upstream_duration_seconds",
            "Time from sending a request to the partner to receiving its response headers, per attempt.",
            LATENCY_BUCKETS,
        );
        let overhead = histogram(
            "tollgate_overhead_seconds",
            "Time Tollgate itself added: total minus partner time minus deliberate waits.",
            OVERHEAD_BUCKETS,
        );
        let inflight = IntGaugeVec::new(
            Opts::new("tollgate_inflight_requests", "Caller requests being handled now."),
            ue,
        )
        .expect("valid metric");
        registry
            .register(Box::new(inflight.clone()))
            .expect("registered once");
        let token_requests = counter(
            "tollgate_token_requests_total",
            "Calls to a token, login or refresh endpoint, by result (ok, error).",
            &["upstream", "environment", "result"],
        );
        let token_failures = counter(
            "tollgate_token_failures_total",
            "Failed token calls by reason (http_4xx, http_5xx, network, invalid_response, rate_limited).",
            &["upstream", "environment", "reason"],
        );
        let token_expiry = GaugeVec::new(
            Opts::new(
                "tollgate_token_expiry_timestamp_seconds",
                "Unix time at which the current token expires; 0 while none is held.",
            ),
            ue,
        )
        .expect("valid metric");
        registry
            .register(Box::new(token_expiry.clone()))
            .expect("registered once");
        let rate_limited = family(RATE_LIMITED, client_label);
        registry
            .register(Box::new(rate_limited.clone()))
            .expect("registered once");
        let retries = counter(
            "tollgate_retries_total",
            "Retries by reason (connect, status_502/503/504/429), and retries the budget denied (budget_exhausted).",
            &["upstream", "environment", "reason"],
        );
        let pause_until = GaugeVec::new(
            Opts::new(
                "tollgate_upstream_pause_until_timestamp_seconds",
                "Unix time until which a partner asked this upstream to pause (Retry-After); 0 if never.",
            ),
            ue,
        )
        .expect("valid metric");
        registry
            .register(Box::new(pause_until.clone()))
            .expect("registered once");
        let adaptive_cap = GaugeVec::new(
            Opts::new(
                "tollgate_rate_limit_adaptive_cap",
                "Requests per second the partner's announced budget allows until its reset (adaptive spacing); 0 when none is in force.",
            ),
            ue,
        )
        .expect("valid metric");
        registry
            .register(Box::new(adaptive_cap.clone()))
            .expect("registered once");
        let links_rewritten = counter(
            "tollgate_links_rewritten_total",
            "Partner URLs rewritten to point through Tollgate (headers and JSON strings).",
            ue,
        );
        let links_skipped = counter(
            "tollgate_link_rewrite_skipped_total",
            "Bodies or links left unrewritten, by reason (encoding, invalid_json, string_too_long, bad_host).",
            &["upstream", "environment", "reason"],
        );
        // No labels: the one child appears only once `shared()` resolves it (see `shared.rs`).
        let shared_up = IntGaugeVec::new(
            Opts::new(
                "tollgate_shared_state_up",
                "1 while limits, pauses and tokens are shared through Redis; 0 while degraded to local.",
            ),
            &[],
        )
        .expect("valid metric");
        registry
            .register(Box::new(shared_up.clone()))
            .expect("registered once");
        let redis_errors = counter(
            "tollgate_redis_errors_total",
            "Redis calls that failed or took longer than shared.op_timeout, by operation.",
            &["op"],
        );
        let webhook_received = counter(
            "tollgate_webhook_received_total",
            "Inbound webhook deliveries by how they were answered (accepted, duplicate, bad_signature, stale_timestamp, too_large, bad_request, unavailable).",
            &["webhook", "result"],
        );
        let webhook_ack = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_webhook_ack_seconds",
                "Time from receiving a webhook delivery to answering it (the commit included).",
            )
            .buckets(ACK_BUCKETS.to_vec()),
            &["webhook"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(webhook_ack.clone()))
            .expect("registered once");
        let webhook_deliveries = counter(
            "tollgate_webhook_deliveries_total",
            "Delivery attempts to the internal service by result (ok, retry, dead).",
            &["webhook", "result"],
        );
        let gauge = |name: &str, help: &str| {
            let g = IntGaugeVec::new(Opts::new(name, help), &["webhook"]).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("registered once");
            g
        };
        let webhook_pending = gauge(
            "tollgate_webhook_pending",
            "Events stored and not yet delivered to the internal service.",
        );
        let webhook_dead = gauge(
            "tollgate_webhook_dead",
            "Dead letters: events that will not be delivered again unless replayed.",
        );
        let webhook_oldest_age = GaugeVec::new(
            Opts::new(
                "tollgate_webhook_oldest_pending_age_seconds",
                "Age of the oldest event not yet delivered; 0 when none is pending.",
            ),
            &["webhook"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(webhook_oldest_age.clone()))
            .expect("registered once");
        let rejected_connections = counter(
            "tollgate_rejected_connections_total",
            "Connections closed before a request on them was served, by reason (max_connections, header_timeout, bad_request, header_too_large, ambiguous_length, tls_handshake).",
            &["reason"],
        );
        let open_connections = IntGaugeVec::new(
            Opts::new(
                "tollgate_open_connections",
                "Connections open now, by listener (data, admin, webhook).",
            ),
            &["listener"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(open_connections.clone()))
            .expect("registered once");
        let accept_errors = counter(
            "tollgate_accept_errors_total",
            "Failed accepts by listener (out of file descriptors, most often); each is followed by a back-off.",
            &["listener"],
        );
        let connections =
            ConnectionMetrics::resolve(&rejected_connections, &open_connections, &accept_errors);
        let reloads = ReloadMetrics::register(&registry);
        let traffic = traffic::TrafficFamilies::register(&registry);
        let build_info = IntGaugeVec::new(
            Opts::new(
                "tollgate_build_info",
                "Always 1; the version label says which build runs.",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("registered once");
        build_info.with_label_values(&[version]).set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        Self {
            registry,
            requests,
            upstream_responses,
            upstream_errors,
            request_duration,
            upstream_duration,
            overhead,
            inflight,
            token_requests,
            token_failures,
            token_expiry,
            rate_limited,
            retries,
            pause_until,
            adaptive_cap,
            links_rewritten,
            links_skipped,
            shared_up,
            redis_errors,
            webhook_received,
            webhook_ack,
            webhook_deliveries,
            webhook_pending,
            webhook_dead,
            webhook_oldest_age,
            connections,
            reloads,
            traffic,
            client_label,
            version: version.to_owned(),
        }
    }

    /// Gives `tollgate_requests_total` and `tollgate_rate_limited_total` a `client` label (a
    /// gateway with `[clients]`). A family's label names are fixed once registered, so this
    /// builds a fresh registry: call it before resolving any handle (one resolved earlier would
    /// count into the discarded registry). Without it (no `[clients]`) both families keep
    /// exactly the labels they always had.
    pub fn with_client_label(self) -> Self {
        if self.client_label {
            return self;
        }
        Self::build(&self.version, true)
    }

    /// Resolves the children of one configured client on one (upstream, environment). Call once
    /// per pair at start-up; `None` unless [`Metrics::with_client_label`] ran.
    pub fn client(&self, upstream: &str, environment: &str, client: &str) -> Option<ClientMetrics> {
        self.client_label
            .then(|| ClientMetrics::resolve(self, upstream, environment, client))
    }

    /// The connection-level handles (resolved with the registry; this only clones them).
    pub fn connections(&self) -> ConnectionMetrics {
        self.connections.clone()
    }

    /// The config-reload handles.
    pub fn reloads(&self) -> ReloadMetrics {
        self.reloads.clone()
    }

    /// Resolves every child for one webhook. Call once per configured webhook at start-up.
    pub fn webhook(&self, webhook: &str) -> WebhookMetrics {
        WebhookMetrics::resolve(self, webhook)
    }

    /// Resolves the shared-state children. Call once, only when `[shared]` is configured.
    pub fn shared(&self) -> SharedMetrics {
        SharedMetrics::resolve(self)
    }

    /// Resolves every child for one (upstream, environment) pair. Call once per upstream at start-up.
    pub fn upstream(&self, upstream: &str, environment: &str) -> UpstreamMetrics {
        UpstreamMetrics::resolve(self, upstream, environment)
    }

    /// The text exposition format for `/metrics`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding into a Vec cannot fail");
        String::from_utf8(buf).expect("the text format is UTF-8")
    }
}
