//! `[shared]`: replicas share rate limits, pauses and tokens through one Redis: a server
//! (`redis_url`) or a Redis Cluster (`redis_cluster`).
//!
//! # Layout
//! - `mod.rs`: [`SharedState`]: the connection, key names, the one wrapper every Redis call goes
//!   through (`call`: `op_timeout`, error counting, degrading), reconnecting, and the pub/sub
//!   listener that announces new tokens.
//! - `conn.rs`: [`RedisConn`], the one connection type every call receives, a server's or a
//!   cluster's.
//! - `health.rs`: Redis in use or degraded, the last error, the `/status` view.
//! - `gcra.rs` (+ `gcra.lua`, `pause.lua`, `pace.lua`): the shared GCRA limit with the pause and
//!   the fleet's adaptive pace folded in.
//! - `batch.rs`: a fast limit's cells taken several per script call and handed out by this
//!   replica, within a validity the limit's burst tolerance pays for.
//! - `token.rs` (+ `compare_delete.lua`): one token fetch per (upstream, environment) for the fleet.
//! - `crypto.rs`: AES-256-GCM for tokens at rest in Redis.
//!
//! Keys (all under `key_prefix`, each hash-tagged by its upstream U and environment E):
//! `rate:{U:E}`, `token-rate:{U:E}` and `client-rate:C:{U:E}` (GCRA state), `pause:{U:E}`,
//! `pace:{U:E}` (a partner's announced budget: a hash), `token:{U:E}` (encrypted token),
//! `lease:{U:E}` (who fetches); the webhook store's are `webhook:{NAME}:...`
//! (`webhook/fleet/`); channel `tokens` (announcements). A Redis Cluster hashes only the tag, so
//! everything one script call touches (an upstream's cell, pause, pace and a client's share) is
//! in one slot, while different upstreams spread over the nodes. `SharedState::tagged` is the
//! one place a key name is built.
//! Redis never holds a credential in clear: only limiter times, pause flags, a random lease owner
//! and sealed tokens.
//!
//! Degraded mode: any failed or slow call marks Redis down; from then on nothing on the request
//! path waits for Redis: each replica uses local limiters at `1/replicas` of every budget and
//! its own tokens, while `run_reconnect` tries a fresh connection on the token backoff schedule.

mod batch;
mod conn;
mod crypto;
mod gcra;
mod health;
pub(crate) mod token;

use std::collections::HashMap;
use std::future::Future;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use tokio::sync::Notify;
use tollgate_metrics::{RedisOp, SharedMetrics};

pub use conn::RedisConn;
pub use gcra::{SharedCell, SharedLimiter, Verdict};
pub use health::SharedStatus;
pub use token::SharedToken;

use crate::build_error::BuildError;
use crate::config::{RateLimit, RedisNode, RedisTarget, Shared};
pub(crate) use crypto::Cipher;
use health::Health;

/// Opening a connection may take longer than one call (TCP + TLS + HELLO), but not much.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A cluster connects twice over: to a seed node, which names every node and its slots, then to
/// each of those nodes.
const CLUSTER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Shared mode must last this long after a reconnect before the backoff starts from the beginning.
const STABLE: Duration = Duration::from_secs(30);

/// Why a fresh connection to Redis was not put in use. Not a [`BuildError`]: it happens while
/// serving (at start and in the reconnect loop), and the replica serves degraded meanwhile; the
/// text is what `/status` shows as `redis_last_error` after `connect: `.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Opening the connection, or its `PING`, failed.
    #[error("{0}")]
    Redis(redis::RedisError),
    /// No connection within `CONNECT_TIMEOUT` (`CLUSTER_CONNECT_TIMEOUT` for a cluster).
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(Duration),
    /// The connection opened, but its `PING` took longer than `op_timeout`.
    #[error("PING slower than shared.op_timeout")]
    PingTimeout,
}

/// How this replica reaches Redis.
enum Target {
    /// `redis_url`.
    Single(redis::Client),
    /// `redis_cluster`; the client holds the seed nodes. Boxed: it is several times a
    /// `redis::Client`'s size, and read only to connect.
    Cluster(Box<ClusterClient>),
}

/// The fleet's shared state, one per gateway.
pub struct SharedState {
    target: Target,
    /// Where the pub/sub listener subscribes, tried in order: the one server, or each seed node
    /// of a cluster (a cluster delivers a `PUBLISH` on any node to subscribers on every node).
    pubsub: Vec<redis::Client>,
    /// `None` until the first connection answered.
    conn: ArcSwapOption<RedisConn>,
    redis_display: String,
    prefix: String,
    op_timeout: Duration,
    replicas: NonZeroU32,
    /// Present only with `encryption_key`: without it tokens stay per replica.
    cipher: Option<Cipher>,
    health: Health,
    /// Waiters for a token announcement, by token key.
    announced: Mutex<HashMap<String, Arc<Notify>>>,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("redis", &self.redis_display)
            .finish_non_exhaustive()
    }
}

impl SharedState {
    /// Builds the client (no connection yet: `connect` runs when the gateway starts serving).
    pub fn new(cfg: &Shared, metrics: SharedMetrics) -> Result<Arc<Self>, BuildError> {
        let (target, pubsub) = match &cfg.redis {
            RedisTarget::Single(node) => {
                let client = single_client("shared.redis_url", node.url.expose())?;
                (Target::Single(client.clone()), vec![client])
            }
            RedisTarget::Cluster(seeds) => {
                let pubsub = seeds
                    .iter()
                    .map(|s| single_client("shared.redis_cluster", s.url.expose()))
                    .collect::<Result<Vec<_>, _>>()?;
                let client = cluster_client(seeds, cfg.op_timeout)?;
                (Target::Cluster(Box::new(client)), pubsub)
            }
        };
        Ok(Arc::new(Self {
            target,
            pubsub,
            conn: ArcSwapOption::empty(),
            redis_display: cfg.redis_display.clone(),
            prefix: cfg.key_prefix.clone(),
            op_timeout: cfg.op_timeout,
            replicas: cfg.replicas,
            cipher: cfg.encryption_key.as_ref().map(Cipher::new),
            health: Health::new(metrics),
            announced: Mutex::new(HashMap::new()),
        }))
    }

    /// The cipher for values at rest, when `encryption_key` is set.
    pub(crate) fn cipher(&self) -> Option<&Cipher> {
        self.cipher.as_ref()
    }

    /// `<prefix><kind>:{<tag>}`: every key name Tollgate writes is built here. It starts with the
    /// configured prefix, and its hash tag names what one script or pipeline touches together
    /// (an upstream and environment, or a webhook), so a Redis Cluster keeps those keys in one
    /// slot; a caller may append to the name, never put a brace in front of the tag.
    pub(crate) fn tagged(&self, kind: &str, tag: impl std::fmt::Display) -> String {
        format!("{}{kind}:{{{tag}}}", self.prefix)
    }

    /// `<prefix><kind>:{<upstream>:<environment>}`.
    pub fn key(&self, kind: &str, upstream: &str, environment: &str) -> String {
        self.tagged(kind, format_args!("{upstream}:{environment}"))
    }

    fn channel(&self) -> String {
        format!("{}tokens", self.prefix)
    }

    pub fn status(&self) -> SharedStatus {
        self.health.status(&self.redis_display)
    }

    /// How many replicas share the budgets (`[shared] replicas`).
    pub fn replicas(&self) -> u32 {
        self.replicas.get()
    }

    /// This replica's share of `limit` while degraded: `1/replicas` of the requests and of the
    /// burst, rounded down but at least one, so the fleet together never exceeds the budget
    /// (unless it has more replicas than the budget has requests).
    pub fn share_of(&self, limit: &RateLimit) -> RateLimit {
        let n = self.replicas.get();
        let requests = NonZeroU32::new(limit.requests.get() / n).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new((limit.burst.get() / n).min(requests.get())).unwrap_or(NonZeroU32::MIN);
        RateLimit {
            requests,
            burst,
            ..*limit
        }
    }

    /// Every Redis call goes through here: skipped while degraded, bounded by `op_timeout`, and a
    /// failure degrades. `None` means "decide locally".
    pub async fn call<T, Fut>(&self, op: RedisOp, f: impl FnOnce(RedisConn) -> Fut) -> Option<T>
    where
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        self.call_with_timeout(op, self.op_timeout, f).await
    }

    /// [`SharedState::call`] with a longer bound, for a call that waits on purpose (`WAITAOF`).
    pub async fn call_with_timeout<T, Fut>(
        &self,
        op: RedisOp,
        timeout: Duration,
        f: impl FnOnce(RedisConn) -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        if !self.health.is_up() {
            return None;
        }
        // One clone of the connection, not an `Arc` clone first: this runs for every admission.
        let conn = RedisConn::clone(self.conn.load().as_deref()?);
        match tokio::time::timeout(timeout, f(conn)).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.health.failed(op, &e.to_string());
                None
            }
            Err(_) => {
                self.health.failed(op, "slower than shared.op_timeout");
                None
            }
        }
    }

    /// Opens a fresh connection and checks it answers; on success Redis is in use again.
    pub async fn connect(&self) -> Result<(), ConnectError> {
        let mut conn = self.open_connection().await?;
        // A cluster sends `PING` to every primary and answers only if each did.
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        // Judged like every other call: a Redis that answers, but slower than `op_timeout`, would
        // only be degraded again by the next call.
        match tokio::time::timeout(self.op_timeout, ping).await {
            Ok(Ok(_)) => {
                self.conn.store(Some(Arc::new(conn)));
                self.health.recovered();
                Ok(())
            }
            Ok(Err(e)) => Err(ConnectError::Redis(e)),
            Err(_) => Err(ConnectError::PingTimeout),
        }
    }

    /// A new connection: a `ConnectionManager` that does not retry by itself (the reconnect loop
    /// does, on its own schedule), or a cluster connection to every node the seeds name.
    async fn open_connection(&self) -> Result<RedisConn, ConnectError> {
        match &self.target {
            Target::Single(client) => {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(CONNECT_TIMEOUT)
                    .set_number_of_retries(0);
                let open = ConnectionManager::new_with_config(client.clone(), config);
                match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
                    Ok(Ok(c)) => Ok(RedisConn::Single(c)),
                    Ok(Err(e)) => Err(ConnectError::Redis(e)),
                    Err(_) => Err(ConnectError::ConnectTimeout(CONNECT_TIMEOUT)),
                }
            }
            Target::Cluster(client) => {
                let open = client.get_async_connection();
                match tokio::time::timeout(CLUSTER_CONNECT_TIMEOUT, open).await {
                    Ok(Ok(c)) => Ok(RedisConn::Cluster(c)),
                    Ok(Err(e)) => Err(ConnectError::Redis(e)),
                    Err(_) => Err(ConnectError::ConnectTimeout(CLUSTER_CONNECT_TIMEOUT)),
                }
            }
        }
    }

    /// The first connection failed: counted and shown; the replica serves degraded meanwhile.
    pub fn failed_to_connect(&self, error: &ConnectError) {
        self.health.failed(RedisOp::Connect, &error.to_string());
        tracing::warn!(redis = %self.redis_display, error = %error, "cannot reach Redis: starting degraded");
    }

    /// While degraded, tries a fresh connection on the token backoff schedule (2 s, 4 s, ... 60 s);
    /// sleeps while Redis is in use. Runs until aborted.
    pub async fn run_reconnect(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            if self.health.is_up() {
                let up_since = tokio::time::Instant::now();
                self.health.went_down.notified().await;
                if up_since.elapsed() < STABLE {
                    // Down again right after coming back: a flapping Redis is backed off like an
                    // unreachable one instead of being reconnected at once, over and over.
                    failures += 1;
                    tokio::time::sleep(retry_delay(failures)).await;
                } else {
                    failures = 0;
                }
                continue;
            }
            if let Err(e) = self.connect().await {
                self.health.failed(RedisOp::Connect, &e.to_string());
                failures += 1;
                tokio::select! {
                    () = tokio::time::sleep(retry_delay(failures)) => {}
                    // Not woken by `went_down` while already down: that permit is consumed here.
                    () = self.health.went_down.notified() => {}
                }
            }
        }
    }

    /// Listens for token announcements and wakes the replica's waiters. Polling covers the gaps
    /// (this connection down, a message between a waiter's read and its wait). Runs until aborted.
    pub async fn run_subscriber(self: Arc<Self>) {
        let mut failures = 0;
        loop {
            if let Some(mut pubsub) = self.subscribe().await {
                failures = 0;
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    if let Ok(key) = msg.get_payload::<String>() {
                        self.announcement(&key).notify_waiters();
                    }
                }
            }
            self.health.counted(RedisOp::Subscribe);
            failures += 1;
            tokio::time::sleep(retry_delay(failures)).await;
        }
    }

    /// A plain pub/sub connection subscribed to the announcements, on the first of `pubsub` that
    /// lets it subscribe; `None` when none did.
    async fn subscribe(&self) -> Option<redis::aio::PubSub> {
        for client in &self.pubsub {
            let open = tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub());
            let Ok(Ok(mut pubsub)) = open.await else {
                continue;
            };
            if pubsub.subscribe(self.channel()).await.is_ok() {
                return Some(pubsub);
            }
        }
        None
    }

    /// The notifier for announcements of the token at `key`.
    fn announcement(&self, key: &str) -> Arc<Notify> {
        self.announced
            .lock()
            .expect("announcement lock")
            .entry(key.to_owned())
            .or_default()
            .clone()
    }
}

/// A client for one server; `key` names the config key its URL came from. Validation read the
/// URL with the same parser, so this is not expected to fail.
fn single_client(key: &'static str, url: &str) -> Result<redis::Client, BuildError> {
    redis::Client::open(url).map_err(|error| BuildError::RedisUrl { key, error })
}

/// The cluster client. It gets no response timeout of its own: every call is bounded by
/// `SharedState::call`'s (`op_timeout`, or longer for a call that waits on purpose), which a
/// client-wide one would cut short. A redirect (`MOVED`, `ASK`: a slot moving between nodes) is
/// followed at once and counts as a retry; waits between retries stay well inside `op_timeout`,
/// since past it the call has been given up anyway (and the replica degraded).
fn cluster_client(seeds: &[RedisNode], op_timeout: Duration) -> Result<ClusterClient, BuildError> {
    let op_ms = u64::try_from(op_timeout.as_millis()).unwrap_or(u64::MAX);
    ClusterClientBuilder::new(seeds.iter().map(|s| s.url.expose().as_str()))
        .connection_timeout(CONNECT_TIMEOUT)
        .retries(3)
        .min_retry_wait(1)
        .max_retry_wait((op_ms / 4).max(2))
        .build()
        .map_err(|error| BuildError::RedisUrl {
            key: "shared.redis_cluster",
            error,
        })
}

/// The wait before reconnecting after `failures` failures in a row: the token endpoint's schedule
/// (exponential, jittered, capped), for the same reason: never hammer what is down.
fn retry_delay(failures: u32) -> Duration {
    crate::backoff::delay(failures, None, crate::jitter::Jitter::Random.draw())
}
