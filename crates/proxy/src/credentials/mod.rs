//! Upstream credentials: one token per (upstream, environment), fetched once however many callers
//! wait, refreshed in the background before it expires, and never injected at or past its expiry.
//!
//! # Layout
//! - `cache.rs`: [`TokenCache`]: the lock-free read path, single flight, background refresh, backoff,
//!   401 invalidation and the `/status` view.
//! - `source.rs`: the token calls behind `token_rate_limit` (the one wait loop, with a deadline).
//! - `fleet.rs`: `[shared]` with a key: the fleet's token (adopt, lease and fetch, or wait).
//! - `fetch.rs`: the token calls on the wire (OAuth2 client credentials, JWT login and refresh).
//! - `response.rs`: distrust of what token endpoints answer.
//!
//! The retry schedule after token failures is `crate::backoff`, beside it rather than in it,
//! since `shared/` reconnects to Redis on the same schedule.

mod cache;
mod fetch;
mod fleet;
mod response;
mod source;

use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;

pub use cache::{TokenCache, TokenStatus};

/// A cached token, ready to inject.
#[derive(Debug)]
pub struct Token {
    /// `<inject_prefix><token>`, marked sensitive.
    pub header: HeaderValue,
    /// Hard cutoff: at or past this instant the token is treated as missing.
    pub expires_at: Instant,
    /// When the background refresher fetches the next one.
    refresh_at: Instant,
    /// Tells apart tokens, so a 401 invalidates only the token that failed.
    id: u64,
    /// `[shared]` with a key: the sealed blob this token was stored (or read) as in Redis, so a 401
    /// deletes the shared token only if it is still this one.
    origin: Option<std::sync::Arc<[u8]>>,
}

/// Why a caller got no token. The request path answers it as `GatewayError::TokenUnavailable`,
/// which carries it whole: `message` in the caller's text, `retry_after` as `Retry-After`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no token for this upstream: {message}")]
pub struct TokenError {
    /// When a call to the token endpoint may next be tried.
    pub retry_after: Option<Duration>,
    /// What went wrong last (never a secret).
    pub message: String,
}

pub(crate) use crate::clock::now_unix;
