//! The webhook ingress metrics: what partners delivered, how fast it was acknowledged, and how
//! delivery to the internal service goes.
//!
//! Children are resolved once per configured webhook by [`crate::Metrics::webhook`], so the
//! `webhook` label only ever holds configured names and the ingress path hashes no labels.

use prometheus::{Histogram, IntCounter, IntGauge};

use crate::Metrics;

/// How an inbound delivery was answered: the `result` label of `tollgate_webhook_received_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Verified, new, committed to the store: 202.
    Accepted,
    /// Verified, already seen within `dedupe_for`: 200, nothing stored.
    Duplicate,
    /// Missing or wrong signature: 401.
    BadSignature,
    /// Correctly signed but outside `tolerance`: 401.
    StaleTimestamp,
    /// Over `max_body`: 413.
    TooLarge,
    /// Wrong method, no event id, unreadable body: 4xx.
    BadRequest,
    /// The store could not commit it: 503, the partner retries.
    Unavailable,
}

impl Received {
    const ALL: [Received; 7] = [
        Received::Accepted,
        Received::Duplicate,
        Received::BadSignature,
        Received::StaleTimestamp,
        Received::TooLarge,
        Received::BadRequest,
        Received::Unavailable,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Received::Accepted => "accepted",
            Received::Duplicate => "duplicate",
            Received::BadSignature => "bad_signature",
            Received::StaleTimestamp => "stale_timestamp",
            Received::TooLarge => "too_large",
            Received::BadRequest => "bad_request",
            Received::Unavailable => "unavailable",
        }
    }
}

/// What one delivery attempt to the internal service came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// 2xx: done.
    Ok,
    /// Network error, 408, 429 or 5xx: tried again later.
    Retry,
    /// Any other 4xx, or past `max_age`: a dead letter.
    Dead,
}

impl Delivered {
    const ALL: [Delivered; 3] = [Delivered::Ok, Delivered::Retry, Delivered::Dead];

    pub fn label(self) -> &'static str {
        match self {
            Delivered::Ok => "ok",
            Delivered::Retry => "retry",
            Delivered::Dead => "dead",
        }
    }
}

/// Handles for one webhook, resolved once at start-up.
#[derive(Debug, Clone)]
pub struct WebhookMetrics {
    received: [IntCounter; Received::ALL.len()],
    ack: Histogram,
    deliveries: [IntCounter; Delivered::ALL.len()],
    pending: IntGauge,
    dead: IntGauge,
    oldest_pending_age: prometheus::Gauge,
}

impl WebhookMetrics {
    pub(crate) fn resolve(m: &Metrics, webhook: &str) -> Self {
        Self {
            received: Received::ALL.map(|r| m.webhook_received.with_label_values(&[webhook, r.label()])),
            ack: m.webhook_ack.with_label_values(&[webhook]),
            deliveries: Delivered::ALL.map(|d| m.webhook_deliveries.with_label_values(&[webhook, d.label()])),
            pending: m.webhook_pending.with_label_values(&[webhook]),
            dead: m.webhook_dead.with_label_values(&[webhook]),
            oldest_pending_age: m.webhook_oldest_age.with_label_values(&[webhook]),
        }
    }

    /// One inbound delivery answered, and how long it took to answer it.
    pub fn received(&self, result: Received, seconds: f64) {
        self.received[result as usize].inc();
        self.ack.observe(seconds);
    }

    pub fn delivery(&self, result: Delivered) {
        self.deliveries[result as usize].inc();
    }

    /// The store's view, refreshed by the delivery worker.
    pub fn backlog(&self, pending: u64, dead: u64, oldest_pending_age_seconds: f64) {
        self.pending.set(i64::try_from(pending).unwrap_or(i64::MAX));
        self.dead.set(i64::try_from(dead).unwrap_or(i64::MAX));
        self.oldest_pending_age.set(oldest_pending_age_seconds);
    }
}
