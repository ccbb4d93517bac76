//! The on-disk layout of `webhooks.db` and the opening of its two connections.
//!
//! The schema is plain SQL text with a comment per column so the README can quote it and an operator
//! can read the same thing back with `sqlite3 webhooks.db .schema`. Its version lives in
//! `PRAGMA user_version`: a file written by a newer Tollgate is refused rather than guessed at.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::StoreError;

/// The schema version this code writes and understands (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for a lock held by another connection (an operator's `sqlite3`
/// session, a WAL recovery) before failing with "database is locked".
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The tables and indexes, created when missing. Times are unix milliseconds.
pub const SCHEMA: &str = "
-- One row per accepted event that is still to be delivered ('pending') or was given up on ('dead').
-- A delivered event's row is deleted; its id stays in `dedupe` until it expires.
CREATE TABLE IF NOT EXISTS events (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT, -- arrival order; never reused, even after a delete
    webhook         TEXT    NOT NULL,                  -- the [webhooks.NAME] it arrived on
    event_id        TEXT    NOT NULL,                  -- the partner's event id
    content_type    TEXT,                              -- Content-Type as received; NULL when absent
    body            BLOB    NOT NULL,                  -- the raw body, byte for byte as verified
    received_ms     INTEGER NOT NULL,                  -- when Tollgate accepted it
    state           TEXT    NOT NULL DEFAULT 'pending' -- 'pending': to deliver; 'dead': kept for replay
                    CHECK (state IN ('pending', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,        -- delivery attempts so far; a replay resets it
    next_attempt_ms INTEGER NOT NULL,                  -- not delivered before this time
    last_status     INTEGER,                           -- last attempt's HTTP status; NULL: none, or no answer
    last_error      TEXT                               -- short reason of the last failure, never a body
);
-- The delivery queue and the listings: one webhook's events of one state in arrival order.
CREATE INDEX IF NOT EXISTS events_queue ON events (webhook, state, seq);
-- The earliest next attempt of a webhook, without walking its queue.
CREATE INDEX IF NOT EXISTS events_due ON events (webhook, state, next_attempt_ms);
-- Replay of one event by its id.
CREATE INDEX IF NOT EXISTS events_id ON events (webhook, event_id);

-- One row per event id seen within `dedupe_for`; it outlives delivery.
CREATE TABLE IF NOT EXISTS dedupe (
    webhook    TEXT    NOT NULL, -- the [webhooks.NAME] it arrived on
    event_id   TEXT    NOT NULL, -- the partner's event id
    expires_ms INTEGER NOT NULL, -- from this time the id is new again, and the row may be purged
    PRIMARY KEY (webhook, event_id)
) WITHOUT ROWID;
-- The purge of expired ids.
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe (expires_ms);
";

/// Opens (creating when missing) the read-write connection the writer thread will own: WAL,
/// `synchronous = FULL` (a commit is on disk before it returns), schema created or checked.
pub fn open_writer(path: &Path) -> Result<Connection, StoreError> {
    let flags =
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let mut conn = Connection::open_with_flags(path, flags).map_err(open_error(path, "open"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(open_error(path, "set busy_timeout"))?;
    // Before anything is changed (journal mode included): a newer file is left as it is.
    refuse_newer(&conn, path)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(open_error(path, "set journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NotWal {
            path: Arc::from(path),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open_error(path, "set synchronous"))?;
    migrate(&mut conn, path)?;
    Ok(conn)
}

/// Opens the read-only connection for listings and the delivery queue. Opened after
/// [`open_writer`], so the file, the WAL and the tables exist.
pub fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(open_error(path, "open read-only"))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(open_error(path, "set busy_timeout"))?;
    Ok(conn)
}

/// Creates the tables of [`SCHEMA_VERSION`] in one transaction, or refuses a newer file.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_error(path, "begin schema transaction"))?;
    let found = refuse_newer(&tx, path)?;
    tx.execute_batch(SCHEMA)
        .map_err(open_error(path, "create tables"))?;
    if found < SCHEMA_VERSION {
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(open_error(path, "write user_version"))?;
    }
    tx.commit().map_err(open_error(path, "commit schema"))
}

/// The file's schema version, or the error when it is newer than [`SCHEMA_VERSION`].
fn refuse_newer(conn: &Connection, path: &Path) -> Result<i64, StoreError> {
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(open_error(path, "read user_version"))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            path: Arc::from(path),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(found)
}

/// The error of one step of opening, naming the file.
fn open_error<'p>(path: &'p Path, step: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError + 'p {
    move |source| StoreError::Open {
        path: Arc::from(path),
        step,
        source,
    }
}
