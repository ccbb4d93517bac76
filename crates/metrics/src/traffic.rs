//! What flows through an upstream besides requests: body bytes each way, time spent queued by
//! the limits, and the connections to the partner (open, idle, connect results).
//!
//! - `tollgate_request_bytes_total` / `tollgate_response_bytes_total`: body bytes read from callers
//!   and sent back to them (headers not included), counted when the answer ends.
//! - `tollgate_queue_duration_seconds`: per request, the time held by the limits (concurrency slot,
//!   rate-limit cells, the client's share), zero when admitted at once.
//! - `tollgate_upstream_connections{state}`: connections to the partner open now, and of those the
//!   ones idle in the pool; `tollgate_upstream_connects_total{result}`: connection attempts, `ok` or
//!   the failure kind (connect, timeout, tls, protocol).

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::labels::ErrorKind;

/// Queueing is zero for most requests and bounded by `max_wait` for the rest.
const QUEUE_BUCKETS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// The families, registered once.
#[derive(Debug, Clone)]
pub(crate) struct TrafficFamilies {
    request_bytes: IntCounterVec,
    response_bytes: IntCounterVec,
    queue: HistogramVec,
    connections: IntGaugeVec,
    connects: IntCounterVec,
}

impl TrafficFamilies {
    pub(crate) fn register(registry: &Registry) -> Self {
        let ue = &["upstream", "environment"];
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("registered once");
            c
        };
        let request_bytes = counter(
            "tollgate_request_bytes_total",
            "Request body bytes read from callers (headers not included).",
            ue,
        );
        let response_bytes = counter(
            "tollgate_response_bytes_total",
            "Response body bytes sent to callers (headers not included), counted when an answer ends.",
            ue,
        );
        let queue = HistogramVec::new(
            HistogramOpts::new(
                "tollgate_queue_duration_seconds",
                "Per request, time held by the limits (concurrency slot, rate-limit cells, the client's share).",
            )
            .buckets(QUEUE_BUCKETS.to_vec()),
            ue,
        )
        .expect("valid metric");
        registry
            .register(Box::new(queue.clone()))
            .expect("registered once");
        let connections = IntGaugeVec::new(
            Opts::new(
                "tollgate_upstream_connections",
                "Connections to the partner by state: open (all), idle (of those, waiting in the pool).",
            ),
            &["upstream", "environment", "state"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(connections.clone()))
            .expect("registered once");
        let connects = counter(
            "tollgate_upstream_connects_total",
            "Connection attempts to the partner by result: ok, or connect, timeout, tls, protocol.",
            &["upstream", "environment", "result"],
        );
        Self {
            request_bytes,
            response_bytes,
            queue,
            connections,
            connects,
        }
    }
}

/// One upstream's traffic handles.
#[derive(Debug, Clone)]
pub struct TrafficMetrics {
    request_bytes: IntCounter,
    response_bytes: IntCounter,
    queue: Histogram,
    pool: PoolMetrics,
}

/// The connection handles, handed to the upstream's client.
#[derive(Debug, Clone)]
pub struct PoolMetrics {
    open: IntGauge,
    idle: IntGauge,
    ok: IntCounter,
    failed: [IntCounter; 4],
}

impl TrafficMetrics {
    pub(crate) fn resolve(f: &TrafficFamilies, upstream: &str, env: &str) -> Self {
        Self {
            request_bytes: f.request_bytes.with_label_values(&[upstream, env]),
            response_bytes: f.response_bytes.with_label_values(&[upstream, env]),
            queue: f.queue.with_label_values(&[upstream, env]),
            pool: PoolMetrics {
                open: f.connections.with_label_values(&[upstream, env, "open"]),
                idle: f.connections.with_label_values(&[upstream, env, "idle"]),
                ok: f.connects.with_label_values(&[upstream, env, "ok"]),
                failed: ErrorKind::ALL.map(|k| f.connects.with_label_values(&[upstream, env, k.label()])),
            },
        }
    }

    /// One answer ended: `read` body bytes came from the caller, `sent` went back.
    pub fn bytes(&self, read: u64, sent: u64) {
        self.request_bytes.inc_by(read);
        self.response_bytes.inc_by(sent);
    }

    /// One request was held this long by the limits.
    pub fn queued(&self, seconds: f64) {
        self.queue.observe(seconds);
    }

    pub fn pool(&self) -> PoolMetrics {
        self.pool.clone()
    }
}

impl PoolMetrics {
    /// A connection opened; counted open until [`PoolMetrics::closed`].
    pub fn connected(&self) {
        self.ok.inc();
        self.open.inc();
    }

    pub fn closed(&self) {
        self.open.dec();
    }

    pub fn connect_failed(&self, kind: ErrorKind) {
        self.failed[kind as usize].inc();
    }

    /// Connections joined (`+`) or left (`-`) the pool's idle set.
    pub fn idle(&self, delta: i64) {
        self.idle.add(delta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_queueing_and_connections_per_upstream() {
        let metrics = crate::Metrics::new("t");
        let up = metrics.upstream("osigu", "sandbox");
        let t = up.traffic();
        t.bytes(10, 250);
        t.queued(0.0);
        let pool = t.pool();
        pool.connected();
        pool.connected();
        pool.closed();
        pool.idle(1);
        pool.connect_failed(ErrorKind::Tls);
        let text = metrics.render();
        for want in [
            r#"tollgate_request_bytes_total{environment="sandbox",upstream="osigu"} 10"#,
            r#"tollgate_response_bytes_total{environment="sandbox",upstream="osigu"} 250"#,
            r#"tollgate_queue_duration_seconds_count{environment="sandbox",upstream="osigu"} 1"#,
            r#"tollgate_upstream_connections{environment="sandbox",state="open",upstream="osigu"} 1"#,
            r#"tollgate_upstream_connections{environment="sandbox",state="idle",upstream="osigu"} 1"#,
            r#"tollgate_upstream_connects_total{environment="sandbox",result="ok",upstream="osigu"} 2"#,
            r#"tollgate_upstream_connects_total{environment="sandbox",result="tls",upstream="osigu"} 1"#,
        ] {
            assert!(text.contains(want), "{want}\n{text}");
        }
    }
}
