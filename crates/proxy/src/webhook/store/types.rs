//! The values the store takes and gives: events, their state, the backlog counts.
//!
//! Bodies may hold personal data: the types that carry one print its length only in `Debug`.

use std::fmt;

use bytes::Bytes;
use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ValueRef};
use serde::Serialize;

/// An event that passed verification, to be stored.
#[derive(Clone)]
pub struct NewEvent {
    /// The `[webhooks.NAME]` it arrived on.
    pub webhook: String,
    /// The partner's event id: the dedupe key within the webhook.
    pub event_id: String,
    /// The `Content-Type` it arrived with, sent again on delivery.
    pub content_type: Option<String>,
    /// The raw body, exactly as verified.
    pub body: Bytes,
    /// When it was accepted, unix ms; also when its first delivery is due.
    pub received_ms: i64,
    /// Until when (exclusive, unix ms) the same id is a duplicate.
    pub dedupe_until_ms: i64,
}

/// What [`Store::insert`](super::Store::insert) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Committed to disk, queued for delivery under this sequence number.
    Stored {
        #[allow(dead_code, reason = "ingest answers without it; tests and logs may read it")]
        seq: i64,
    },
    /// The id was already held within its dedupe window; nothing was stored.
    Duplicate,
}

/// A pending event, with its body, for delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct Event {
    /// Arrival order; in SQLite the handle for delivered, retry_later and dead. In Redis the
    /// millisecond part of the stream entry id.
    pub seq: i64,
    /// The Redis stream entry id (the handle there); `None` in SQLite.
    pub entry: Option<String>,
    pub webhook: String,
    pub event_id: String,
    pub content_type: Option<String>,
    pub body: Bytes,
    pub received_ms: i64,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not to be sent before this time (unix ms).
    pub next_attempt_ms: i64,
    /// HTTP status of the last attempt; `None` before the first or after a network error.
    pub last_status: Option<u16>,
    /// Short reason of the last failure.
    pub last_error: Option<String>,
}

/// An event as listed to an operator: no body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventSummary {
    pub seq: i64,
    /// The Redis stream entry id; absent with SQLite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<String>,
    pub event_id: String,
    pub received_ms: i64,
    pub attempts: u32,
    pub next_attempt_ms: i64,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub state: State,
}

/// Where an event stands. Delivered events are not stored, so they have no state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Waiting for its next delivery attempt.
    Pending,
    /// Given up on; kept until replayed.
    Dead,
}

/// The backlog of one webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub pending: u64,
    pub dead: u64,
    /// Arrival time (unix ms) of the first-arrived (lowest `seq`) pending event.
    pub oldest_pending_ms: Option<i64>,
}

impl State {
    /// The word stored in the `state` column and used by the admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Dead => "dead",
        }
    }
}

impl FromSql for State {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        match value.as_str()? {
            "pending" => Ok(State::Pending),
            "dead" => Ok(State::Dead),
            _ => Err(FromSqlError::InvalidType),
        }
    }
}

/// Bodies may hold personal data: `Debug` shows their length only.
impl fmt::Debug for NewEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEvent")
            .field("webhook", &self.webhook)
            .field("event_id", &self.event_id)
            .field("content_type", &self.content_type)
            .field("body", &BodyLen(self.body.len()))
            .field("received_ms", &self.received_ms)
            .field("dedupe_until_ms", &self.dedupe_until_ms)
            .finish()
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("seq", &self.seq)
            .field("webhook", &self.webhook)
            .field("event_id", &self.event_id)
            .field("content_type", &self.content_type)
            .field("body", &BodyLen(self.body.len()))
            .field("received_ms", &self.received_ms)
            .field("attempts", &self.attempts)
            .field("next_attempt_ms", &self.next_attempt_ms)
            .field("last_status", &self.last_status)
            .field("last_error", &self.last_error)
            .finish()
    }
}

/// Prints `<N bytes>` in place of a body.
struct BodyLen(usize);

impl fmt::Debug for BodyLen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0)
    }
}
