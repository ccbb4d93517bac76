//! Per-(upstream, environment, client) handles, for a gateway with `[clients]`.
//!
//! Resolved once per (configured client, upstream) pair at start-up by [`crate::Metrics::client`],
//! so the `client` label only ever holds configured names (plus `anonymous`, on the upstream's own
//! handles): however many keys callers try, the series stay the same, and recording a request is
//! still one atomic add on a child resolved in advance.

use prometheus::IntCounter;

use crate::labels::STATUS_CLASSES;
use crate::Metrics;

pub use crate::labels::ANONYMOUS;

/// What a client's own limit did: `scope="client"` on `tollgate_rate_limited_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientLimited {
    Queued,
    Rejected,
    /// `mode = "shadow"`: would have waited, went through.
    ShadowQueued,
    /// `mode = "shadow"`: would have been refused, went through.
    ShadowRejected,
}

impl ClientLimited {
    const ALL: [ClientLimited; 4] = [
        ClientLimited::Queued,
        ClientLimited::Rejected,
        ClientLimited::ShadowQueued,
        ClientLimited::ShadowRejected,
    ];

    fn label(self) -> &'static str {
        match self {
            ClientLimited::Queued => "queued",
            ClientLimited::Rejected => "rejected",
            ClientLimited::ShadowQueued => "shadow_queued",
            ClientLimited::ShadowRejected => "shadow_rejected",
        }
    }
}

/// Handles for one client on one (upstream, environment); cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientMetrics {
    /// `tollgate_requests_total{client}` by status class (recorded through
    /// `UpstreamMetrics::request_done_by`, which also feeds the upstream's histograms).
    pub(crate) requests: [IntCounter; 5],
    limited: [IntCounter; 4],
}

impl ClientMetrics {
    pub(crate) fn resolve(m: &Metrics, upstream: &str, env: &str, client: &str) -> Self {
        Self {
            requests: STATUS_CLASSES
                .map(|class| m.requests.with_label_values(&[upstream, env, class, client])),
            limited: ClientLimited::ALL.map(|a| {
                m.rate_limited
                    .with_label_values(&[upstream, env, "client", a.label(), client])
            }),
        }
    }

    /// This client's own limit on this upstream queued or rejected a request.
    pub fn limited(&self, what: ClientLimited) {
        self.limited[what as usize].inc();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::Metrics;

    use super::*;

    #[test]
    fn without_clients_no_series_has_a_client_label() {
        let m = Metrics::new("t");
        assert!(m.client("osigu", "sandbox", "billing").is_none());
        let u = m.upstream("osigu", "sandbox");
        u.request_done(200, Duration::from_millis(1), Duration::ZERO);
        u.limited(crate::Limited::UpstreamRejected);
        let text = m.render();
        assert!(!text.contains("client="), "{text}");
        assert!(text.contains(
            r#"tollgate_requests_total{environment="sandbox",status_class="2xx",upstream="osigu"} 1"#
        ));
    }

    #[test]
    fn clients_count_under_their_names_and_the_rest_as_anonymous() {
        let m = Metrics::new("t").with_client_label();
        let u = m.upstream("osigu", "sandbox");
        let billing = m.client("osigu", "sandbox", "billing").unwrap();
        u.request_done_by(Some(&billing), 200, Duration::from_millis(1), Duration::ZERO);
        u.request_done_by(Some(&billing), 429, Duration::from_millis(1), Duration::ZERO);
        u.request_done(401, Duration::from_millis(1), Duration::ZERO);
        billing.limited(ClientLimited::Rejected);
        u.limited(crate::Limited::UpstreamQueued);
        let text = m.render();
        for line in [
            r#"tollgate_requests_total{client="billing",environment="sandbox",status_class="2xx",upstream="osigu"} 1"#,
            r#"tollgate_requests_total{client="billing",environment="sandbox",status_class="4xx",upstream="osigu"} 1"#,
            r#"tollgate_requests_total{client="anonymous",environment="sandbox",status_class="4xx",upstream="osigu"} 1"#,
            r#"tollgate_rate_limited_total{action="rejected",client="billing",environment="sandbox",scope="client",upstream="osigu"} 1"#,
            r#"tollgate_rate_limited_total{action="queued",client="",environment="sandbox",scope="upstream",upstream="osigu"} 1"#,
            r#"tollgate_build_info{version="t"} 1"#,
        ] {
            assert!(text.contains(line), "missing {line}:\n{text}");
        }
        // The histograms are the upstream's, whoever called.
        assert!(text.contains(
            r#"tollgate_request_duration_seconds_count{environment="sandbox",upstream="osigu"} 3"#
        ));
    }
}
