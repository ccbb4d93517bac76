//! One token fetch per (upstream, environment) for the whole fleet: the Redis side.
//!
//! - The token lives at `token:{U:E}`, sealed by `crypto` (the key is never in Redis), expiring
//!   with the token itself.
//! - A replica that needs a token and finds none takes the lease `lease:{U:E}` (`SET NX PX`, a
//!   random owner id); only the leaseholder calls the partner. It stores the token, announces it
//!   on the `tokens` channel and releases the lease by compare-and-delete, so a lease that expired
//!   and was taken by another replica is never released by the first.
//! - The others wait for the announcement, reading again every `POLL` in case they missed it.
//! - A 401 deletes the shared token only if it still holds the exact blob that failed: a newer
//!   token another replica already stored survives.
//!
//! The orchestration (read → lease → fetch or wait) is in `credentials/fleet.rs` (the partner
//! calls are `credentials/source.rs`); every method here returns `None` when Redis is unavailable,
//! which sends the caller down the local path.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::{AsyncCommands, Script};
use tokio::sync::Notify;
use tokio::time::Instant;
use tollgate_metrics::RedisOp;

use super::SharedState;
use crate::secret::Secret;

static COMPARE_DELETE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("compare_delete.lua")));

/// How often a waiting replica reads the token again when no announcement came.
const POLL: Duration = Duration::from_millis(100);

/// The shared token of one (upstream, environment).
#[derive(Debug)]
pub struct SharedToken {
    state: Arc<SharedState>,
    key: String,
    lease_key: String,
    /// This replica's lease value: random, so only the owner can release.
    owner: String,
    lease_ttl: Duration,
    announced: Arc<Notify>,
}

/// A token read from Redis and opened.
#[derive(Debug)]
pub struct Stored {
    /// The sealed bytes as stored: what a 401 compares before deleting.
    pub blob: Arc<[u8]>,
    pub access: Secret,
    pub expires_unix: f64,
}

impl SharedToken {
    /// `None` without `encryption_key`: tokens then stay per replica. `call_timeout` bounds the
    /// partner calls of one fetch; the lease outlives two of them (a JWT refresh that falls back).
    pub fn new(
        state: &Arc<SharedState>,
        upstream: &str,
        environment: &str,
        call_timeout: Duration,
    ) -> Option<Self> {
        state.cipher.as_ref()?;
        let key = state.key("token", upstream, environment);
        Some(Self {
            announced: state.announcement(&key),
            lease_key: state.key("lease", upstream, environment),
            key,
            owner: format!("{:032x}", rand::random::<u128>()),
            lease_ttl: call_timeout * 2 + Duration::from_secs(1),
            state: state.clone(),
        })
    }

    fn cipher(&self) -> &super::Cipher {
        self.state.cipher.as_ref().expect("checked in new")
    }

    /// The stored token, if any (a blob that does not open counts as none).
    pub async fn read(&self) -> Option<Option<Stored>> {
        let blob: Option<Vec<u8>> = self
            .state
            .call(RedisOp::TokenRead, |mut c| async move { c.get(&self.key).await })
            .await?;
        Some(blob.and_then(|blob| {
            let (exp_ms, access) = self.cipher().open(&self.key, &blob)?;
            Some(Stored {
                blob: blob.into(),
                access,
                expires_unix: exp_ms as f64 / 1000.0,
            })
        }))
    }

    /// Tries to become the replica that fetches.
    pub async fn try_lease(&self) -> Option<bool> {
        let ms = u64::try_from(self.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let set: Option<String> = self
            .state
            .call(RedisOp::TokenLease, |mut c| async move {
                redis::cmd("SET")
                    .arg(&self.lease_key)
                    .arg(&self.owner)
                    .arg("NX")
                    .arg("PX")
                    .arg(ms)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Some(set.is_some())
    }

    /// Gives the lease back if this replica still holds it.
    pub async fn release(&self) {
        let _: Option<i64> = self
            .state
            .call(RedisOp::TokenLease, |mut c| async move {
                COMPARE_DELETE
                    .key(&self.lease_key)
                    .arg(&self.owner)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
    }

    /// Seals and stores a fresh token until its expiry, then announces it. Returns the blob.
    pub async fn store(&self, access: &Secret, expires_unix: f64) -> Option<Arc<[u8]>> {
        let ttl_ms = ((expires_unix - crate::clock::now_unix()) * 1000.0).floor();
        if ttl_ms < 1.0 {
            return None;
        }
        let blob: Arc<[u8]> = self
            .cipher()
            .seal(&self.key, (expires_unix * 1000.0) as u64, access)
            .into();
        let channel = self.state.channel();
        let expiry = redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms as u64));
        let _: i64 = self
            .state
            .call(RedisOp::TokenWrite, |mut c| {
                let blob = blob.clone();
                async move {
                    // Two commands, not one pipeline: a cluster client routes `PUBLISH` by its
                    // channel as if it were a key, and refuses a pipeline whose commands land
                    // in two slots. A token is stored once per lifetime: the round trip is cheap.
                    redis::cmd("SET")
                        .arg(&self.key)
                        .arg(&*blob)
                        .arg(expiry)
                        .exec_async(&mut c)
                        .await?;
                    redis::cmd("PUBLISH")
                        .arg(&channel)
                        .arg(&self.key)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Some(blob)
    }

    /// Deletes the shared token if it is still `blob` (the one a partner refused).
    pub async fn invalidate(&self, blob: &[u8]) -> Option<()> {
        let _: i64 = self
            .state
            .call(RedisOp::TokenInvalidate, |mut c| async move {
                COMPARE_DELETE.key(&self.key).arg(blob).invoke_async(&mut c).await
            })
            .await?;
        Some(())
    }

    /// Waits for an announcement of this token, at most `POLL` and never past `until`.
    pub async fn wait(&self, until: Instant) {
        let at = until.min(Instant::now() + POLL);
        tokio::select! {
            () = self.announced.notified() => {}
            () = tokio::time::sleep_until(at) => {}
        }
    }
}
