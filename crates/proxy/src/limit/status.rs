//! What `/status` shows of limits: an upstream's ([`LimitStatus`]) and any configured rate limit
//! ([`RateLimitStatus`], also a client's share).

use serde::Serialize;

use super::pace::PaceStatus;
use crate::config::{LimitMode, OnLimit, RateLimit};

/// What `/status` shows of an upstream's limits.
#[derive(Debug, Serialize)]
pub struct LimitStatus {
    pub rate_limit: Option<RateLimitStatus>,
    pub max_concurrency: u32,
    pub in_flight: u32,
    pub queued: usize,
    pub paused_for_seconds: Option<f64>,
    pub pause_reason: Option<&'static str>,
    /// The pace a partner's announced budget imposes now (adaptive spacing), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive: Option<PaceStatus>,
}

#[derive(Debug, Serialize)]
pub struct RateLimitStatus {
    pub requests: u32,
    pub per_seconds: f64,
    pub burst: u32,
    pub on_limit: &'static str,
    pub max_wait_seconds: f64,
    /// `"shadow"` when the limit only counts; absent when it is enforced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
}

impl RateLimitStatus {
    /// How `/status` shows a configured rate limit (an upstream's or a client's share).
    pub(crate) fn of(limit: &RateLimit) -> Self {
        Self {
            requests: limit.requests.get(),
            per_seconds: limit.per.as_secs_f64(),
            burst: limit.burst.get(),
            on_limit: match limit.on_limit {
                OnLimit::Queue => "queue",
                OnLimit::Reject => "reject",
            },
            max_wait_seconds: limit.max_wait.as_secs_f64(),
            mode: (limit.mode == LimitMode::Shadow).then_some("shadow"),
        }
    }
}
