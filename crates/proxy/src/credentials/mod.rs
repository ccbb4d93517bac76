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
/// which carries it whole: its cause in the caller's text (`error.rs` writes it there, once),
/// `retry_after` as `Retry-After`. Built only by the constructors below, one per way a caller
/// goes without.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no token for this upstream")]
pub struct TokenError {
    /// When a call to the token endpoint may next be tried.
    pub retry_after: Option<Duration>,
    #[source]
    cause: TokenCause,
}

/// What went wrong, in words that never hold a secret. A token call's own failure arrives as
/// its words: the single flight hands every waiter the same clonable text, and `/status` shows
/// the last one as `last_error`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenCause {
    /// The fetch this caller waited for failed: a token call, or the wait for the token another
    /// replica was fetching.
    #[error("{0}")]
    CallFailed(String),
    /// The caller's `request_timeout` ran out while the token call was still going.
    #[error("the token endpoint did not answer within request_timeout")]
    NoAnswer,
    /// The last token call failed, so the caller is answered at once: that call's error, when
    /// still known.
    #[error("{}", .0.as_deref().unwrap_or("the token endpoint is failing"))]
    Failing(Option<String>),
    /// No token call may go yet (Tollgate's own token limit refused the last one): what the last
    /// call said, when still known.
    #[error("{}", .0.as_deref().unwrap_or("backing off"))]
    BackingOff(Option<String>),
}

impl TokenError {
    /// The fetch this caller waited for failed with `message`.
    fn call_failed(message: String, retry_after: Option<Duration>) -> Self {
        Self {
            retry_after,
            cause: TokenCause::CallFailed(message),
        }
    }

    /// The caller's deadline passed before the token call ended.
    fn no_answer() -> Self {
        Self {
            retry_after: None,
            cause: TokenCause::NoAnswer,
        }
    }

    /// The token endpoint is failing: answered at once, the next call permitted in `next_call`.
    fn failing(next_call: Duration, last_error: Option<String>) -> Self {
        Self {
            retry_after: Some(next_call),
            cause: TokenCause::Failing(last_error),
        }
    }

    /// No token call before `wait` has passed.
    fn backing_off(wait: Duration, last_error: Option<String>) -> Self {
        Self {
            retry_after: Some(wait),
            cause: TokenCause::BackingOff(last_error),
        }
    }

    /// What went wrong; the caller's message ends with its words.
    pub(crate) fn cause(&self) -> &TokenCause {
        &self.cause
    }
}

pub(crate) use crate::clock::now_unix;
