//! The webhook store the rest of the webhook code talks to: one API over two backends.
//!
//! - SQLite (`webhook/sqlite/`) on one machine: the default, a file under `data_dir`.
//! - Redis (`webhook/fleet/`) when `[shared]` is configured: one dedupe, one durable queue and
//!   one set of dead letters for every replica, so a partner's retry that lands on another
//!   replica is still a duplicate, and a replica that dies strands nothing.
//!
//! Both answer `insert` only once the event is stored as far as the backend promises (SQLite: an
//! fsynced commit; Redis: the script ran, and with `webhook_durability = "aof"` the AOF fsync),
//! and remove an event only once it was delivered.

pub(crate) mod error;
pub(crate) mod types;

use std::sync::Arc;

pub(crate) use error::StoreError;
pub(crate) use types::{Counts, Event, EventSummary, Inserted, NewEvent, State};

use super::fleet::FleetStore;
use super::sqlite;

/// The store of one gateway; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Sqlite(sqlite::Store),
    Fleet(Arc<FleetStore>),
}

impl Store {
    pub(crate) async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.insert(event).await?),
            Store::Fleet(f) => f.insert(event).await,
        }
    }

    /// The oldest undelivered events this replica should look at, due or not, in arrival order.
    pub(crate) async fn head(&self, webhook: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.head(webhook, limit).await?),
            Store::Fleet(f) => f.head(webhook, limit).await,
        }
    }

    /// Makes sure this replica still owns `event` before sending it (Redis: another replica may
    /// have claimed it); with SQLite there is only one owner.
    pub(crate) async fn take(&self, event: &Event) -> bool {
        match self {
            Store::Sqlite(_) => true,
            Store::Fleet(f) => f.take(event).await,
        }
    }

    pub(crate) async fn delivered(&self, event: &Event) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.delivered(event.seq).await?),
            Store::Fleet(f) => f.delivered(event).await,
        }
    }

    pub(crate) async fn retry_later(
        &self,
        event: &Event,
        next_attempt_ms: i64,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.retry_later(event.seq, next_attempt_ms, status, error).await?),
            Store::Fleet(f) => f.retry_later(event, next_attempt_ms, status, error).await,
        }
    }

    pub(crate) async fn dead(
        &self,
        event: &Event,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.dead(event.seq, status, error).await?),
            Store::Fleet(f) => f.dead(event, status, error).await,
        }
    }

    pub(crate) async fn list(
        &self,
        webhook: &str,
        state: State,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.list(webhook, state, limit).await?),
            Store::Fleet(f) => f.list(webhook, state, limit).await,
        }
    }

    pub(crate) async fn replay_one(
        &self,
        webhook: &str,
        event_id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.replay_one(webhook, event_id, now_ms).await?),
            Store::Fleet(f) => f.replay_one(webhook, event_id).await,
        }
    }

    pub(crate) async fn replay_dead_since(
        &self,
        webhook: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.replay_dead_since(webhook, since_ms, now_ms).await?),
            Store::Fleet(f) => f.replay_dead_since(webhook, since_ms).await,
        }
    }

    pub(crate) async fn counts(&self, webhook: &str) -> Result<Counts, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.counts(webhook).await?),
            Store::Fleet(f) => f.counts(webhook).await,
        }
    }

    /// Forgets expired dedupe ids (Redis expires them by itself).
    pub(crate) async fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => Ok(s.purge_expired(now_ms).await?),
            Store::Fleet(_) => Ok(0),
        }
    }
}
