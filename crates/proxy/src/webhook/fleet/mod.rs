//! The fleet's webhook store on Redis (`[shared]`): one dedupe, one durable queue and one set of
//! dead letters for every replica, so a partner's retry landing on another replica is still a
//! duplicate and a replica that dies strands nothing.
//!
//! Keys, per webhook, all in one hash slot (`{NAME}`), under `key_prefix`:
//! - `webhook:{NAME}:seen:<event id>`: the dedupe claim, expiring after `dedupe_for`;
//! - `webhook:{NAME}:events`: the stream of undelivered events, consumer group `tollgate`;
//! - `webhook:{NAME}:state`: retry state of entries that failed (attempts, next try, last error);
//! - `webhook:{NAME}:dead`: the dead-letter stream.
//!
//! Every script and pipeline here touches one webhook's keys only, so in a Redis Cluster each
//! call runs on the one node that holds that webhook's slot. (The names are those of the single
//! Redis store before clusters, which already tagged them: queued events survive an upgrade.)
//!
//! Accepting is one script call (`accept.lua`: `SET NX PX` + `XADD`), so there is neither a
//! check-then-queue race nor a window between "stored" and "queued". With
//! `webhook_durability = "aof"` the answer also waits for `WAITAOF 1 0` (Redis 7.2+), sent to
//! the node that holds the webhook's stream.
//!
//! Delivery: every replica is a consumer of each webhook's group. A replica reads new entries
//! (`XREADGROUP`), keeps the ones it holds in its pending list until the service answered 2xx
//! (`done.lua`: `XACK` + `XDEL`), and claims what another replica left pending longer than the
//! visibility timeout (`XAUTOCLAIM`; twice `delivery_timeout`, so a slow delivery is not taken
//! over while it runs); `head.lua` does that look in one round trip and recreates the group if
//! Redis lost it. Before each send it checks the entry is still its own and resets its idle
//! time (`take.lua`). Within a replica, the delivery order rules are those of the SQLite store;
//! across replicas, entries are spread over consumers, so only each replica's share is ordered.
//!
//! Bodies are sealed with `shared.encryption_key` (AES-256-GCM, AAD = stream key and event id)
//! when it is set; without it they are stored in clear and `tollgate check` says so.
//! Every call goes through `SharedState::call`: while Redis is down or slow, nothing is
//! acknowledged (the ingest answers 503) and delivery waits.

mod server;

pub use server::{server_facts, ServerFacts};

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, Script};
use tollgate_metrics::RedisOp;

use super::store::error::StoreError;
use super::store::types::{Counts, Event, EventSummary, Inserted, NewEvent, State};
use crate::shared::SharedState;

static HEAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("head.lua")));
static ACCEPT: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("accept.lua")));
static DONE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("done.lua")));
static TAKE: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("take.lua")));
static DEAD: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("dead.lua")));
static REPLAY: LazyLock<Script> = LazyLock::new(|| Script::new(include_str!("replay.lua")));

/// The consumer group every replica joins, per webhook stream.
const GROUP: &str = "tollgate";

/// Abandoned entries are looked for at most this often.
const CLAIM_EVERY_MS: i64 = 1_000;

/// A listing or a replay reads at most this many dead letters.
const SCAN_LIMIT: usize = 100_000;

/// How long `WAITAOF` may wait for the AOF fsync before the event counts as not stored.
const WAITAOF_TIMEOUT_MS: u64 = 1_000;

/// When the 2xx leaves, for `[shared] webhook_durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Durability {
    /// After the accept script ran: as durable as the Redis server's own persistence settings.
    Write,
    /// After `WAITAOF 1 0`: the event is fsynced to the AOF of the server (Redis 7.2+).
    Aof,
}

/// The Redis webhook store of one replica.
pub(crate) struct FleetStore {
    shared: Arc<SharedState>,
    /// This replica's consumer name: unique per process.
    consumer: String,
    durability: Durability,
    /// Per webhook: twice its delivery_timeout.
    visibility: HashMap<String, Duration>,
    /// Per webhook: when abandoned entries were last claimed (unix ms).
    last_claim: HashMap<String, AtomicI64>,
}

impl std::fmt::Debug for FleetStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetStore")
            .field("consumer", &self.consumer)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

/// The keys of one webhook.
struct Keys {
    stream: String,
    dead: String,
    state: String,
}

/// Retry state of one entry, kept in the state hash as JSON.
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Retry {
    #[serde(rename = "a")]
    attempts: u32,
    #[serde(rename = "n")]
    next_attempt_ms: i64,
    #[serde(rename = "s")]
    last_status: Option<u16>,
    #[serde(rename = "e")]
    last_error: Option<String>,
}

fn unavailable() -> StoreError {
    StoreError::Fleet("Redis is unavailable or slower than shared.op_timeout".to_owned())
}

impl FleetStore {
    /// `webhooks`: (name, delivery_timeout) of each configured webhook.
    pub(crate) fn new(
        shared: Arc<SharedState>,
        durability: Durability,
        webhooks: &[(String, Duration)],
    ) -> Self {
        Self {
            shared,
            consumer: format!("tollgate-{}", uuid::Uuid::new_v4().simple()),
            durability,
            visibility: webhooks.iter().map(|(n, t)| (n.clone(), *t * 2)).collect(),
            last_claim: webhooks
                .iter()
                .map(|(n, _)| (n.clone(), AtomicI64::new(0)))
                .collect(),
        }
    }

    fn keys(&self, webhook: &str) -> Keys {
        let base = self.shared.tagged("webhook", webhook);
        Keys {
            stream: format!("{base}:events"),
            dead: format!("{base}:dead"),
            state: format!("{base}:state"),
        }
    }

    fn seen_key(&self, webhook: &str, event_id: &str) -> String {
        format!("{}:seen:{event_id}", self.shared.tagged("webhook", webhook))
    }

    /// The associated data of a sealed body: a body copied under another stream or event id
    /// does not open.
    fn aad(stream: &str, event_id: &str) -> Vec<u8> {
        format!("{stream}\n{event_id}").into_bytes()
    }

    /// Creates each webhook's stream and consumer group when missing (start-up, and after Redis
    /// lost its data). `XGROUP CREATE ... 0 MKSTREAM`: entries written before the group existed
    /// are delivered too.
    pub(crate) async fn ensure_groups(&self) -> Result<(), StoreError> {
        for webhook in self.visibility.keys() {
            let stream = self.keys(webhook).stream;
            let created = self
                .shared
                .call(RedisOp::WebhookQueue, |mut c| async move {
                    let r: redis::RedisResult<()> = c.xgroup_create_mkstream(&stream, GROUP, "0").await;
                    match r {
                        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                        other => other,
                    }
                })
                .await;
            created.ok_or_else(unavailable)?;
        }
        Ok(())
    }

    pub(crate) async fn insert(&self, e: NewEvent) -> Result<Inserted, StoreError> {
        let keys = self.keys(&e.webhook);
        let seen = self.seen_key(&e.webhook, &e.event_id);
        let body = match self.shared.cipher() {
            Some(c) => c.seal_bytes(&Self::aad(&keys.stream, &e.event_id), &e.body),
            None => e.body.to_vec(),
        };
        let dedupe_ms = (e.dedupe_until_ms - e.received_ms).max(1);
        let content_type = e.content_type.clone().unwrap_or_default();
        let aof_stream = (self.durability == Durability::Aof).then(|| keys.stream.clone());
        let added: Option<Option<String>> = self
            .shared
            .call(RedisOp::WebhookAccept, |mut c| async move {
                ACCEPT
                    .key(&seen)
                    .key(&keys.stream)
                    .arg(dedupe_ms)
                    .arg(&e.event_id)
                    .arg(&content_type)
                    .arg(body)
                    .arg(e.received_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        let Some(added) = added.ok_or_else(unavailable)? else {
            return Ok(Inserted::Duplicate);
        };
        if let Some(stream) = aof_stream {
            self.wait_aof(&stream).await?;
        }
        Ok(Inserted::Stored {
            seq: entry_ms(&added),
        })
    }

    /// `WAITAOF 1 0`: the write is fsynced to the local AOF of the server we wrote to, the one
    /// that holds `stream` (in a cluster, the primary of its slot).
    async fn wait_aof(&self, stream: &str) -> Result<(), StoreError> {
        let synced: Option<Vec<i64>> = self
            .shared
            .call_with_timeout(
                RedisOp::WebhookAccept,
                Duration::from_millis(WAITAOF_TIMEOUT_MS + 500),
                |mut c| async move {
                    let mut cmd = redis::cmd("WAITAOF");
                    cmd.arg(1).arg(0).arg(WAITAOF_TIMEOUT_MS);
                    c.query_at(&cmd, stream).await
                },
            )
            .await;
        match synced {
            Some(counts) if counts.first().is_some_and(|n| *n >= 1) => Ok(()),
            Some(_) => Err(StoreError::Fleet(
                "WAITAOF: the AOF was not fsynced in time".to_owned(),
            )),
            None => Err(unavailable()),
        }
    }

    /// This replica's pending entries (oldest first), topped up with new ones from the stream,
    /// after claiming entries another replica abandoned (`head.lua`, one round trip).
    pub(crate) async fn head(&self, webhook: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        let keys = self.keys(webhook);
        let claim_idle_ms = self.claim_idle_ms(webhook);
        let consumer = self.consumer.clone();
        let stream = keys.stream.clone();
        let entries: StreamRangeReply = self
            .shared
            .call(RedisOp::WebhookQueue, |mut c| async move {
                HEAD.key(&stream)
                    .arg(GROUP)
                    .arg(&consumer)
                    .arg(limit.max(1))
                    .arg(claim_idle_ms)
                    .invoke_async(&mut c)
                    .await
            })
            .await
            .ok_or_else(unavailable)?;
        let entries = entries.ids;
        let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
        let states = self.retry_states(&keys.state, &ids).await?;
        let mut events = Vec::with_capacity(entries.len());
        for (entry, retry) in entries.into_iter().zip(states) {
            match self.event(webhook, &keys.stream, entry, retry) {
                (event, None) => events.push(event),
                (event, Some(why)) => {
                    tracing::warn!(webhook, event_id = %event.event_id, why, "webhook entry made a dead letter");
                    self.dead(&event, None, Some(why)).await?;
                }
            }
        }
        Ok(events)
    }

    /// The visibility timeout in ms when abandoned entries are due to be looked for (at most
    /// once a second per webhook), else 0.
    fn claim_idle_ms(&self, webhook: &str) -> u64 {
        let now = crate::clock::now_unix_ms();
        let Some(last) = self.last_claim.get(webhook) else {
            return 0;
        };
        if now - last.load(Ordering::Relaxed) < CLAIM_EVERY_MS {
            return 0;
        }
        last.store(now, Ordering::Relaxed);
        self.visibility.get(webhook).map_or(60_000, |d| {
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
        })
    }

    async fn retry_states(&self, state: &str, ids: &[String]) -> Result<Vec<Retry>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let (state, wanted) = (state.to_owned(), ids.to_vec());
        let raw: Vec<Option<String>> = self
            .shared
            .call(RedisOp::WebhookQueue, |mut c| async move {
                redis::cmd("HMGET")
                    .arg(&state)
                    .arg(&wanted)
                    .query_async(&mut c)
                    .await
            })
            .await
            .ok_or_else(unavailable)?;
        Ok(raw
            .into_iter()
            .map(|s| s.and_then(|s| serde_json::from_str(&s).ok()).unwrap_or_default())
            .collect())
    }

    /// An entry as an event (body opened), and why it cannot be delivered when it cannot.
    fn event(&self, webhook: &str, stream: &str, e: StreamId, retry: Retry) -> (Event, Option<&'static str>) {
        let event_id: String = e.get("id").unwrap_or_default();
        let content_type: String = e.get("ct").unwrap_or_default();
        let stored: Vec<u8> = e.get("body").unwrap_or_default();
        let received_ms: i64 = e.get("at").unwrap_or_else(|| entry_ms(&e.id));
        let mut event = Event {
            seq: entry_ms(&e.id),
            entry: Some(e.id.clone()),
            webhook: webhook.to_owned(),
            event_id,
            content_type: (!content_type.is_empty()).then_some(content_type),
            body: Bytes::new(),
            received_ms,
            attempts: retry.attempts,
            next_attempt_ms: if retry.attempts == 0 {
                received_ms
            } else {
                retry.next_attempt_ms
            },
            last_status: retry.last_status,
            last_error: retry.last_error,
        };
        match self.shared.cipher() {
            None => event.body = Bytes::from(stored),
            Some(c) => match c.open_bytes(&Self::aad(stream, &event.event_id), &stored) {
                Some(plain) => event.body = Bytes::from(plain),
                None => return (event, Some("the body does not open with shared.encryption_key")),
            },
        }
        (event, None)
    }

    /// Still ours? Then reset its idle time for the delivery about to start.
    pub(crate) async fn take(&self, event: &Event) -> bool {
        let (Some(entry), keys) = (&event.entry, self.keys(&event.webhook)) else {
            return false;
        };
        let consumer = self.consumer.clone();
        let taken: Option<i64> = self
            .shared
            .call(RedisOp::WebhookQueue, |mut c| async move {
                TAKE.key(&keys.stream)
                    .arg(GROUP)
                    .arg(&consumer)
                    .arg(entry)
                    .invoke_async(&mut c)
                    .await
            })
            .await;
        taken == Some(1)
    }

    pub(crate) async fn delivered(&self, event: &Event) -> Result<(), StoreError> {
        let (entry, keys) = (entry_of(event)?, self.keys(&event.webhook));
        self.shared
            .call(RedisOp::WebhookQueue, |mut c| async move {
                DONE.key(&keys.stream)
                    .key(&keys.state)
                    .arg(GROUP)
                    .arg(entry)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .ok_or_else(unavailable)?;
        Ok(())
    }

    pub(crate) async fn retry_later(
        &self,
        event: &Event,
        next_attempt_ms: i64,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (entry, keys) = (entry_of(event)?, self.keys(&event.webhook));
        let state = serde_json::to_string(&Retry {
            attempts: event.attempts + 1,
            next_attempt_ms,
            last_status: status,
            last_error: error.map(short),
        })
        .unwrap_or_default();
        self.shared
            .call(RedisOp::WebhookQueue, |mut c| async move {
                c.hset::<_, _, _, ()>(&keys.state, entry, state).await
            })
            .await
            .ok_or_else(unavailable)
    }

    pub(crate) async fn dead(
        &self,
        event: &Event,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let (entry, keys) = (entry_of(event)?, self.keys(&event.webhook));
        let attempts = event.attempts + 1;
        let status = status.map(|s| s.to_string()).unwrap_or_default();
        let error = error.map(short).unwrap_or_default();
        self.shared
            .call(RedisOp::WebhookQueue, |mut c| async move {
                DEAD.key(&keys.stream)
                    .key(&keys.dead)
                    .key(&keys.state)
                    .arg(GROUP)
                    .arg(entry)
                    .arg(attempts)
                    .arg(status)
                    .arg(error)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await
            .ok_or_else(unavailable)?;
        Ok(())
    }

    pub(crate) async fn list(
        &self,
        webhook: &str,
        state: State,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let keys = self.keys(webhook);
        let stream = match state {
            State::Pending => keys.stream.clone(),
            State::Dead => keys.dead.clone(),
        };
        let entries = self.range(&stream, limit, RedisOp::WebhookAdmin).await?;
        let retries = match state {
            State::Pending => {
                let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
                self.retry_states(&keys.state, &ids).await?
            }
            State::Dead => entries
                .iter()
                .map(|e| Retry {
                    attempts: e.get("attempts").unwrap_or_default(),
                    next_attempt_ms: 0,
                    last_status: e.get::<String>("status").and_then(|s| s.parse().ok()),
                    last_error: e.get::<String>("error").filter(|s| !s.is_empty()),
                })
                .collect(),
        };
        Ok(entries
            .into_iter()
            .zip(retries)
            .map(|(e, r)| {
                let received_ms: i64 = e.get("at").unwrap_or_else(|| entry_ms(&e.id));
                EventSummary {
                    seq: entry_ms(&e.id),
                    entry: Some(e.id.clone()),
                    event_id: e.get("id").unwrap_or_default(),
                    received_ms,
                    attempts: r.attempts,
                    next_attempt_ms: if r.attempts == 0 {
                        received_ms
                    } else {
                        r.next_attempt_ms
                    },
                    last_status: r.last_status,
                    last_error: r.last_error,
                    state,
                }
            })
            .collect())
    }

    /// The first `limit` entries of a stream, oldest first.
    async fn range(&self, stream: &str, limit: usize, op: RedisOp) -> Result<Vec<StreamId>, StoreError> {
        let s = stream.to_owned();
        let reply: StreamRangeReply = self
            .shared
            .call(
                op,
                |mut c| async move { c.xrange_count(&s, "-", "+", limit).await },
            )
            .await
            .ok_or_else(unavailable)?;
        Ok(reply.ids)
    }

    pub(crate) async fn replay_one(&self, webhook: &str, event_id: &str) -> Result<bool, StoreError> {
        let n = self
            .replay(webhook, |e| e.get::<String>("id").as_deref() == Some(event_id))
            .await?;
        Ok(n > 0)
    }

    pub(crate) async fn replay_dead_since(&self, webhook: &str, since_ms: i64) -> Result<u64, StoreError> {
        self.replay(webhook, |e| e.get::<i64>("at").is_some_and(|at| at >= since_ms))
            .await
    }

    /// Moves every dead letter that `pick` chooses back to the end of the queue.
    async fn replay(&self, webhook: &str, pick: impl Fn(&StreamId) -> bool) -> Result<u64, StoreError> {
        let keys = self.keys(webhook);
        let dead = self.range(&keys.dead, SCAN_LIMIT, RedisOp::WebhookAdmin).await?;
        let mut replayed = 0;
        for entry in dead.iter().filter(|e| pick(e)) {
            let (stream, dead_key, id) = (keys.stream.clone(), keys.dead.clone(), entry.id.clone());
            let moved: i64 = self
                .shared
                .call(RedisOp::WebhookAdmin, |mut c| async move {
                    REPLAY
                        .key(&stream)
                        .key(&dead_key)
                        .arg(&id)
                        .arg(crate::clock::now_unix_ms())
                        .invoke_async(&mut c)
                        .await
                })
                .await
                .ok_or_else(unavailable)?;
            replayed += u64::try_from(moved).unwrap_or(0);
        }
        Ok(replayed)
    }

    /// The fleet's backlog: `XLEN` of the queue and of the dead letters, and the oldest entry.
    pub(crate) async fn counts(&self, webhook: &str) -> Result<Counts, StoreError> {
        let keys = self.keys(webhook);
        let (pending, dead, first): (u64, u64, StreamRangeReply) = self
            .shared
            .call(RedisOp::WebhookAdmin, |mut c| async move {
                redis::pipe()
                    .xlen(&keys.stream)
                    .xlen(&keys.dead)
                    .xrange_count(&keys.stream, "-", "+", 1)
                    .query_async(&mut c)
                    .await
            })
            .await
            .ok_or_else(unavailable)?;
        Ok(Counts {
            pending,
            dead,
            oldest_pending_ms: first
                .ids
                .first()
                .map(|e| e.get("at").unwrap_or_else(|| entry_ms(&e.id))),
        })
    }
}

fn entry_of(event: &Event) -> Result<String, StoreError> {
    event
        .entry
        .clone()
        .ok_or_else(|| StoreError::Fleet("an event without a stream entry id".to_owned()))
}

/// The millisecond part of a stream entry id (`<ms>-<n>`).
fn entry_ms(id: &str) -> i64 {
    id.split('-').next().and_then(|ms| ms.parse().ok()).unwrap_or(0)
}

/// Errors are kept short: they are listed, and never need to be long to be useful.
fn short(error: &str) -> String {
    error.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_ids_give_their_milliseconds() {
        assert_eq!(entry_ms("1700000000123-7"), 1_700_000_000_123);
        assert_eq!(entry_ms("garbage"), 0);
    }

    #[test]
    fn retry_state_round_trips_and_defaults() {
        let r: Retry = serde_json::from_str(r#"{"a":2,"n":5,"s":503,"e":"down"}"#).unwrap();
        assert_eq!((r.attempts, r.next_attempt_ms, r.last_status), (2, 5, Some(503)));
        let d = Retry::default();
        assert_eq!((d.attempts, d.next_attempt_ms, d.last_status), (0, 0, None));
    }
}
