//! Whether Redis is in use or the replica is degraded to local limits, and why.
//!
//! One flag read with a single atomic load on every shared decision. The first failure (an error or
//! a call slower than `op_timeout`) flips it to degraded and wakes the reconnect loop; only that
//! loop flips it back, after a fresh connection answered. Each flip is logged once and shows in
//! `tollgate_shared_state_up` and `/status`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::Notify;
use tollgate_metrics::{RedisOp, SharedMetrics};

#[derive(Debug)]
pub struct Health {
    up: AtomicBool,
    last_error: Mutex<Option<String>>,
    metrics: SharedMetrics,
    /// Wakes the reconnect loop when Redis goes away.
    pub(super) went_down: Notify,
}

/// What `/status` shows of the shared state.
#[derive(Debug, Serialize)]
pub struct SharedStatus {
    /// `redis` or `degraded`.
    pub shared_state: &'static str,
    /// The server (`redis://host:port/db`), or `cluster ` and the seed nodes, never a password.
    pub redis: String,
    pub redis_last_error: Option<String>,
}

impl Health {
    /// Starts degraded: nothing is shared until a connection has answered.
    pub fn new(metrics: SharedMetrics) -> Self {
        metrics.set_up(false);
        Self {
            up: AtomicBool::new(false),
            last_error: Mutex::new(None),
            metrics,
            went_down: Notify::new(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// A Redis call failed or was too slow: count it, and degrade if not already.
    pub fn failed(&self, op: RedisOp, error: &str) {
        self.metrics.redis_error(op);
        *self.last_error.lock().expect("error lock") = Some(format!("{}: {error}", op.label()));
        if self.up.swap(false, Ordering::AcqRel) {
            self.metrics.set_up(false);
            tracing::warn!(
                op = op.label(),
                error,
                "Redis unavailable: degraded to local limits at 1/replicas"
            );
            self.went_down.notify_one();
        }
    }

    /// A failure that does not degrade (the pub/sub listener: polling covers for it).
    pub fn counted(&self, op: RedisOp) {
        self.metrics.redis_error(op);
    }

    /// A fresh connection answered: shared mode again.
    pub fn recovered(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.metrics.set_up(true);
            tracing::info!("Redis reachable: limits, pauses and tokens are shared again");
        }
    }

    pub fn status(&self, redis: &str) -> SharedStatus {
        SharedStatus {
            shared_state: if self.is_up() { "redis" } else { "degraded" },
            redis: redis.to_owned(),
            redis_last_error: self.last_error.lock().expect("error lock").clone(),
        }
    }
}
