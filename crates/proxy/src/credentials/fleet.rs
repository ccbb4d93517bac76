//! [`FleetToken`]: with `[shared]` and an `encryption_key`, one token for the whole fleet — adopt
//! the one in Redis, or take the lease and fetch it for everyone, or wait for the replica that
//! did (the Redis side is `shared/token.rs`).
//!
//! This module decides where a token comes from; installing it stays with the cache, which
//! hands in the partner call to make when this replica holds the lease.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::fetch::{FetchError, Fetched};
use super::now_unix;
use crate::shared::token::Stored;
use crate::shared::SharedToken;

/// The fleet's token of one upstream.
#[derive(Debug)]
pub(super) struct FleetToken {
    shared: SharedToken,
    /// The blob of a token a partner refused, deleted from Redis by the next fetch before it reads.
    refused: Mutex<Option<Arc<[u8]>>>,
    /// How long to wait for another replica's fetch.
    call_timeout: Duration,
}

/// Where the fleet's token came from.
#[derive(Debug)]
pub(super) enum FromFleet {
    /// Another replica stored it.
    Adopted(Stored),
    /// This replica held the lease and called the partner; `blob`: the token as stored in Redis.
    Fetched {
        fetched: Result<Fetched, FetchError>,
        blob: Option<Arc<[u8]>>,
    },
    /// Another replica holds the lease and its token did not arrive in time.
    TimedOut,
}

impl FleetToken {
    pub(super) fn new(shared: SharedToken, call_timeout: Duration) -> Self {
        Self {
            shared,
            refused: Mutex::new(None),
            call_timeout,
        }
    }

    /// A partner refused the token stored as `blob`: the next fetch deletes it from Redis first
    /// (only if it is still that one).
    pub(super) fn refuse(&self, blob: Arc<[u8]>) {
        *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(blob);
    }

    /// The fleet's token: the one in Redis unless it is `held` here (a refresh) or about to
    /// expire; else `call` it if this replica wins the lease, or wait for the replica that did.
    /// `None` as soon as Redis is unavailable (the cache then fetches its own).
    pub(super) async fn get<F, Fut>(&self, held: Option<&[u8]>, call: F) -> Option<FromFleet>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, FetchError>>,
    {
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(blob) = refused {
            if self.shared.invalidate(&blob).await.is_none() {
                // Redis is unavailable: keep the refusal so the bad token is deleted once it is back.
                self.refused
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert(blob);
                return None;
            }
        }
        let adoptable = |s: &Stored| held != Some(&*s.blob) && s.expires_unix > now_unix() + 1.0;
        let until = Instant::now() + self.call_timeout;
        loop {
            if let Some(stored) = self.shared.read().await?.filter(adoptable) {
                return Some(FromFleet::Adopted(stored));
            }
            if self.shared.try_lease().await? {
                // Another replica may have stored one between the read and the lease.
                let again = self.shared.read().await.flatten().filter(adoptable);
                let got = match again {
                    Some(stored) => FromFleet::Adopted(stored),
                    None => {
                        let fetched = call().await;
                        let blob = match &fetched {
                            Ok(Fetched {
                                access,
                                expires_unix: Some(exp),
                                ..
                            }) => self.shared.store(access, *exp).await,
                            _ => None,
                        };
                        FromFleet::Fetched { fetched, blob }
                    }
                };
                self.shared.release().await;
                return Some(got);
            }
            if Instant::now() >= until {
                return Some(FromFleet::TimedOut);
            }
            self.shared.wait(until).await;
        }
    }
}
