//! The shared-state metrics (`[shared]`, Redis): whether Redis is in use, and its errors by operation.
//!
//! The families are registered with the others, but their children are resolved only by
//! [`crate::Metrics::shared`], which a gateway calls when `[shared]` is configured: a local gateway
//! exports no `tollgate_shared_state_up`, so the degraded alert cannot fire for it.

use prometheus::{IntCounter, IntGauge};

use crate::Metrics;

/// What Tollgate was doing when Redis failed or was too slow: the `op` label of
/// `tollgate_redis_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisOp {
    /// Opening a connection (start-up and reconnects).
    Connect,
    /// The GCRA + pause script that admits a request or a token call.
    Admit,
    /// Recording a partner's pause, or its announced pace, for every replica.
    Pause,
    /// Reading the shared token.
    TokenRead,
    /// Taking or releasing the lease that elects the replica fetching a token.
    TokenLease,
    /// Storing a new token (and announcing it).
    TokenWrite,
    /// Removing a token a partner refused (401).
    TokenInvalidate,
    /// The pub/sub connection that announces new tokens.
    Subscribe,
    /// Accepting a webhook event (dedupe + append to its stream), and `WAITAOF`.
    WebhookAccept,
    /// The webhook delivery queue: reading, claiming, acknowledging, retry state.
    WebhookQueue,
    /// Webhook listings, replays and backlog counts.
    WebhookAdmin,
}

impl RedisOp {
    const ALL: [RedisOp; 11] = [
        RedisOp::Connect,
        RedisOp::Admit,
        RedisOp::Pause,
        RedisOp::TokenRead,
        RedisOp::TokenLease,
        RedisOp::TokenWrite,
        RedisOp::TokenInvalidate,
        RedisOp::Subscribe,
        RedisOp::WebhookAccept,
        RedisOp::WebhookQueue,
        RedisOp::WebhookAdmin,
    ];

    pub fn label(self) -> &'static str {
        match self {
            RedisOp::Connect => "connect",
            RedisOp::Admit => "admit",
            RedisOp::Pause => "pause",
            RedisOp::TokenRead => "token_read",
            RedisOp::TokenLease => "token_lease",
            RedisOp::TokenWrite => "token_write",
            RedisOp::TokenInvalidate => "token_invalidate",
            RedisOp::Subscribe => "subscribe",
            RedisOp::WebhookAccept => "webhook_accept",
            RedisOp::WebhookQueue => "webhook_queue",
            RedisOp::WebhookAdmin => "webhook_admin",
        }
    }
}

/// Handles for the shared-state metrics, resolved once.
#[derive(Debug, Clone)]
pub struct SharedMetrics {
    up: IntGauge,
    errors: [IntCounter; RedisOp::ALL.len()],
}

impl SharedMetrics {
    pub(crate) fn resolve(m: &Metrics) -> Self {
        Self {
            up: m.shared_up.with_label_values::<&str>(&[]),
            errors: RedisOp::ALL.map(|op| m.redis_errors.with_label_values(&[op.label()])),
        }
    }

    /// 1 while Redis is in use, 0 while degraded.
    pub fn set_up(&self, up: bool) {
        self.up.set(i64::from(up));
    }

    pub fn redis_error(&self, op: RedisOp) {
        self.errors[op as usize].inc();
    }
}
