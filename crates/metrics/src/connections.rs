//! Connection-level metrics: connections refused before any request could be routed, connections
//! open per listener, and failed accepts.
//!
//! These live apart from the per-upstream handles because nothing here knows an upstream: a
//! connection is refused (over `max_connections`, silent past `header_read_timeout`, unparsable)
//! before a request exists. Every child is resolved when the registry is made, so the series are
//! there (at 0) from the first scrape; [`crate::Metrics::connections`] hands out the handles.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

/// Why a connection was closed before a request on it could be served: the `reason` label of
/// `tollgate_rejected_connections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// Accepted while `max_connections` were open, and closed at once.
    MaxConnections,
    /// No complete request head within `header_read_timeout` of the accept (or of the first byte
    /// of a later request).
    HeaderTimeout,
    /// The HTTP parser refused the request head (hyper answered 400 itself).
    BadRequest,
    /// The request head was over the header limit (hyper answered 431 or 414 itself).
    HeaderTooLarge,
    /// `Content-Length` and `Transfer-Encoding` together: answered 400 and closed.
    AmbiguousLength,
    /// `server.tls`: the handshake failed (a client certificate from another CA, plain HTTP on
    /// a TLS port, no common protocol) or did not finish within `header_read_timeout`.
    TlsHandshake,
}

impl Rejected {
    pub const ALL: [Rejected; 6] = [
        Rejected::MaxConnections,
        Rejected::HeaderTimeout,
        Rejected::BadRequest,
        Rejected::HeaderTooLarge,
        Rejected::AmbiguousLength,
        Rejected::TlsHandshake,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Rejected::MaxConnections => "max_connections",
            Rejected::HeaderTimeout => "header_timeout",
            Rejected::BadRequest => "bad_request",
            Rejected::HeaderTooLarge => "header_too_large",
            Rejected::AmbiguousLength => "ambiguous_length",
            Rejected::TlsHandshake => "tls_handshake",
        }
    }
}

/// Which listener a connection came in on: the `listener` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `server.listen`: callers.
    Data,
    /// `server.admin_listen`.
    Admin,
    /// `server.webhook_listen`: partners' webhook deliveries.
    Webhook,
}

impl Listener {
    pub const ALL: [Listener; 3] = [Listener::Data, Listener::Admin, Listener::Webhook];

    pub fn label(self) -> &'static str {
        match self {
            Listener::Data => "data",
            Listener::Admin => "admin",
            Listener::Webhook => "webhook",
        }
    }
}

/// Handles for the connection metrics, resolved once; cheap to clone.
#[derive(Debug, Clone)]
pub struct ConnectionMetrics {
    rejected: [IntCounter; Rejected::ALL.len()],
    open: [IntGauge; Listener::ALL.len()],
    accept_errors: [IntCounter; Listener::ALL.len()],
}

impl ConnectionMetrics {
    pub(crate) fn resolve(
        rejected: &IntCounterVec,
        open: &IntGaugeVec,
        accept_errors: &IntCounterVec,
    ) -> Self {
        Self {
            rejected: Rejected::ALL.map(|r| rejected.with_label_values(&[r.label()])),
            open: Listener::ALL.map(|l| open.with_label_values(&[l.label()])),
            accept_errors: Listener::ALL.map(|l| accept_errors.with_label_values(&[l.label()])),
        }
    }

    /// A connection was closed before a request on it could be served.
    pub fn rejected(&self, why: Rejected) {
        self.rejected[why as usize].inc();
    }

    /// Counts a connection as open on `listener` until the guard drops.
    pub fn opened(&self, listener: Listener) -> OpenGuard {
        let gauge = self.open[listener as usize].clone();
        gauge.inc();
        OpenGuard(gauge)
    }

    /// `accept` failed on `listener` (out of file descriptors, most often).
    pub fn accept_failed(&self, listener: Listener) {
        self.accept_errors[listener as usize].inc();
    }
}

/// Decrements `tollgate_open_connections` when dropped.
#[derive(Debug)]
pub struct OpenGuard(IntGauge);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metrics;

    #[test]
    fn every_child_exists_from_the_start_and_counts_apart() {
        let m = Metrics::new("t");
        let text = m.render();
        for r in Rejected::ALL {
            let line = format!(
                "tollgate_rejected_connections_total{{reason=\"{}\"}} 0",
                r.label()
            );
            assert!(text.contains(&line), "{line} missing:\n{text}");
        }
        let c = m.connections();
        c.rejected(Rejected::HeaderTimeout);
        c.rejected(Rejected::HeaderTimeout);
        c.rejected(Rejected::AmbiguousLength);
        c.accept_failed(Listener::Admin);
        let open = c.opened(Listener::Webhook);
        let text = m.render();
        assert!(text.contains(r#"tollgate_rejected_connections_total{reason="header_timeout"} 2"#));
        assert!(text.contains(r#"tollgate_rejected_connections_total{reason="ambiguous_length"} 1"#));
        assert!(text.contains(r#"tollgate_rejected_connections_total{reason="max_connections"} 0"#));
        assert!(text.contains(r#"tollgate_accept_errors_total{listener="admin"} 1"#));
        assert!(text.contains(r#"tollgate_open_connections{listener="webhook"} 1"#));
        assert!(text.contains(r#"tollgate_open_connections{listener="data"} 0"#));
        drop(open);
        assert!(m
            .render()
            .contains(r#"tollgate_open_connections{listener="webhook"} 0"#));
    }
}
