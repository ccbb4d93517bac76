//! The embedded webhook store: dedupe, delivery queue and dead letters in one SQLite file,
//! `webhooks.db` under `data_dir` (used when `[shared]` is absent).
//!
//! An event is committed (WAL, `synchronous = FULL`) before [`Store::insert`] returns, so a 2xx
//! sent after it survives a crash. Concurrent arrivals share one commit (group commit, see
//! `writer.rs`). The id claim and the event row are written in one transaction under a primary
//! key, so of concurrent copies of an event exactly one is stored. A delivered event's row is
//! deleted but its id is kept until `dedupe_until_ms`. Callers pass the time in (`now_ms`, unix
//! milliseconds): the store reads no clock, so tests control time.
//!
//! # Layout
//! - `schema.rs`: the documented SQL schema, its version, opening and pragmas.
//! - `writer.rs`: the writer thread and its group commit.
//! - `reader.rs`: the reader thread (a read-only connection; why it is separate is there).
//! - `queries.rs`: the statements behind each operation.
//! - `error.rs`: [`StoreError`]. The events, states and counts are `store/types.rs`, shared with
//!   the Redis store.
//!
//! No error, `Debug` or log line of this module carries an event body.

mod error;
mod queries;
mod reader;
mod schema;
mod writer;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rusqlite::Connection;
use tokio::sync::oneshot;

pub use super::store::types::{Counts, Event, EventSummary, Inserted, NewEvent, State};
pub use error::StoreError;

/// The store's file name inside `data_dir`.
pub const FILE_NAME: &str = "webhooks.db";

/// The handle to the store; cheap to clone, shared by ingest, delivery and admin.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    path: Arc<Path>,
    writes: writer::Jobs,
    reads: reader::Reads,
    /// Transactions the writer committed: a group commit shows as fewer commits than writes.
    commits: Arc<AtomicU64>,
}

impl Store {
    /// Creates `dir` if missing (mode 0700 on Unix: bodies may hold personal data), opens or
    /// creates `dir/webhooks.db`, checks its schema and starts the writer and reader threads.
    /// Blocking file work: call it at start-up, before serving.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        create_dir(dir).map_err(|source| StoreError::CreateDir {
            path: Arc::from(dir),
            source,
        })?;
        let path: Arc<Path> = Arc::from(dir.join(FILE_NAME));
        let write_conn = schema::open_writer(&path)?;
        let read_conn = schema::open_reader(&path)?;
        let spawn_failed = |source| StoreError::Spawn {
            path: Arc::clone(&path),
            source,
        };
        let commits = Arc::new(AtomicU64::new(0));
        let writes = writer::spawn(write_conn, Arc::clone(&commits)).map_err(spawn_failed)?;
        let reads = reader::spawn(read_conn).map_err(spawn_failed)?;
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                writes,
                reads,
                commits,
            }),
        })
    }

    /// Transactions committed since open.
    pub fn commits(&self) -> u64 {
        self.inner.commits.load(Ordering::SeqCst)
    }

    /// Stores `event` durably unless its id is held: returns once the answer is on disk.
    pub async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        self.write("insert event", move |c| queries::insert(c, &event))
            .await
    }

    /// The `limit` oldest pending events of `webhook` in arrival order, due or not: the delivery
    /// worker's window (it sends the due ones before the first still waiting).
    pub async fn head(&self, webhook: &str, limit: usize) -> Result<Vec<Event>, StoreError> {
        let webhook = webhook.to_owned();
        self.read("read the queue", move |c| queries::head(c, &webhook, limit))
            .await
    }

    /// Pending events of `webhook` due at `now_ms` (`next_attempt_ms <= now_ms`), in arrival order.
    #[allow(
        dead_code,
        reason = "the delivery worker reads head(); kept for tests and other callers"
    )]
    pub async fn due(&self, webhook: &str, now_ms: i64, limit: usize) -> Result<Vec<Event>, StoreError> {
        let webhook = webhook.to_owned();
        self.read("read due events", move |c| {
            queries::due(c, &webhook, now_ms, limit)
        })
        .await
    }

    /// The earliest `next_attempt_ms` among the pending events of `webhook`; `None` when none.
    #[allow(
        dead_code,
        reason = "the delivery worker reads head(); kept for tests and other callers"
    )]
    pub async fn next_due_ms(&self, webhook: &str) -> Result<Option<i64>, StoreError> {
        let webhook = webhook.to_owned();
        self.read("read the next due time", move |c| {
            queries::next_due_ms(c, &webhook)
        })
        .await
    }

    /// The event was delivered: it leaves the queue; its id stays held until its dedupe expiry.
    pub async fn delivered(&self, seq: i64) -> Result<(), StoreError> {
        self.write("mark delivered", move |c| queries::delivered(c, seq))
            .await
    }

    /// An attempt failed and will be retried at `next_attempt_ms`: `attempts` grows by one.
    /// No effect on an event that is not pending.
    pub async fn retry_later(
        &self,
        seq: i64,
        next_attempt_ms: i64,
        status: Option<u16>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let error = error.map(queries::short);
        self.write("schedule a retry", move |c| {
            queries::retry_later(c, seq, next_attempt_ms, status, error.as_deref())
        })
        .await
    }

    /// The last attempt failed for good: `attempts` grows by one and the event becomes a dead
    /// letter. No effect on an event that is not pending.
    pub async fn dead(&self, seq: i64, status: Option<u16>, error: Option<&str>) -> Result<(), StoreError> {
        let error = error.map(queries::short);
        self.write("mark dead", move |c| {
            queries::dead(c, seq, status, error.as_deref())
        })
        .await
    }

    /// Up to `limit` events of `webhook` in `state`, oldest arrival first, without bodies.
    pub async fn list(
        &self,
        webhook: &str,
        state: State,
        limit: usize,
    ) -> Result<Vec<EventSummary>, StoreError> {
        let webhook = webhook.to_owned();
        self.read("list events", move |c| queries::list(c, &webhook, state, limit))
            .await
    }

    /// Puts the dead letter `event_id` of `webhook` back in the queue, due at `now_ms`, with
    /// `attempts` reset. `false` when there is no such dead letter (unknown, pending or delivered).
    /// It keeps its `seq`, so it goes out before events that arrived after it.
    pub async fn replay_one(&self, webhook: &str, event_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let (webhook, event_id) = (webhook.to_owned(), event_id.to_owned());
        self.write("replay an event", move |c| {
            queries::replay_one(c, &webhook, &event_id, now_ms)
        })
        .await
    }

    /// Replays, as [`Store::replay_one`] does, every dead letter of `webhook` received at or
    /// after `since_ms`; returns how many.
    pub async fn replay_dead_since(
        &self,
        webhook: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<u64, StoreError> {
        let webhook = webhook.to_owned();
        self.write("replay dead letters", move |c| {
            queries::replay_dead_since(c, &webhook, since_ms, now_ms)
        })
        .await
    }

    /// Pending and dead counts of `webhook`, and its oldest pending arrival.
    pub async fn counts(&self, webhook: &str) -> Result<Counts, StoreError> {
        let webhook = webhook.to_owned();
        self.read("count events", move |c| queries::counts(c, &webhook))
            .await
    }

    /// Forgets the ids whose dedupe window ended at `now_ms`, a few hundred per transaction so
    /// arrivals are never held up long; returns how many. Run it on a timer.
    pub async fn purge_expired(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0u64;
        loop {
            let purged = self
                .write("purge expired ids", move |c| queries::purge_batch(c, now_ms))
                .await?;
            total = total.saturating_add(u64::try_from(purged).unwrap_or(u64::MAX));
            if purged < usize::from(queries::PURGE_BATCH) {
                return Ok(total);
            }
        }
    }

    /// Runs `work` on the writer thread in the next group commit; answers after the commit.
    async fn write<T, F>(&self, op: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (job, answer) = writer::job(work);
        if self.inner.writes.send(job).await.is_err() {
            return Err(self.closed(op));
        }
        let path = || Arc::clone(&self.inner.path);
        match answer.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(writer::Failure::Statement(source))) => Err(StoreError::Sqlite {
                path: path(),
                op,
                source,
            }),
            Ok(Err(writer::Failure::Batch(source))) => Err(StoreError::Commit {
                path: path(),
                op,
                source,
            }),
            Ok(Err(writer::Failure::NotRun)) | Err(_) => Err(self.closed(op)),
        }
    }

    /// Runs `work` on the reader thread, which sees every commit answered so far.
    async fn read<T, F>(&self, op: &'static str, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let read: reader::Read = Box::new(move |conn: &Connection| {
            // The caller may have gone; nothing to undo for a read.
            let _ = reply.send(work(conn));
        });
        if self.inner.reads.send(read).await.is_err() {
            return Err(self.closed(op));
        }
        match answer.await {
            Ok(result) => result.map_err(|source| StoreError::Sqlite {
                path: Arc::clone(&self.inner.path),
                op,
                source,
            }),
            Err(_) => Err(self.closed(op)),
        }
    }

    fn closed(&self, op: &'static str) -> StoreError {
        StoreError::Closed {
            path: Arc::clone(&self.inner.path),
            op,
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("commits", &self.commits())
            .finish_non_exhaustive()
    }
}

/// `create_dir_all`, private to the owner on Unix for the directories it creates.
fn create_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
