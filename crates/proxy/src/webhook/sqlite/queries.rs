//! The statements behind each store operation, as plain functions of a connection.
//!
//! Writes run on the writer thread inside a batch transaction (see `writer.rs`); reads run on the
//! reader thread. Statements are cached per connection, so each is compiled once.

use rusqlite::{params, Connection, Row};

use super::{Counts, Event, EventSummary, Inserted, NewEvent, State};

/// Expired dedupe rows removed per purge transaction, so a purge never holds the writer long.
pub const PURGE_BATCH: u16 = 500;

/// The longest `last_error` kept, in characters: a reason, never a body.
const MAX_ERROR_CHARS: usize = 200;

/// Stores `e` unless its id is already held: the claim on the id and the event row are written in
/// the same transaction, and the primary key makes the claim atomic, so of any number of
/// concurrent copies exactly one is stored.
pub fn insert(conn: &Connection, e: &NewEvent) -> rusqlite::Result<Inserted> {
    // An expired claim that the purge has not reached yet no longer counts.
    conn.prepare_cached("DELETE FROM dedupe WHERE webhook = ?1 AND event_id = ?2 AND expires_ms <= ?3")?
        .execute(params![e.webhook, e.event_id, e.received_ms])?;
    let claimed = conn
        .prepare_cached("INSERT OR IGNORE INTO dedupe (webhook, event_id, expires_ms) VALUES (?1, ?2, ?3)")?
        .execute(params![e.webhook, e.event_id, e.dedupe_until_ms])?;
    if claimed == 0 {
        return Ok(Inserted::Duplicate);
    }
    conn.prepare_cached(
        "INSERT INTO events (webhook, event_id, content_type, body, received_ms, next_attempt_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
    )?
    .execute(params![
        e.webhook,
        e.event_id,
        e.content_type,
        &e.body[..],
        e.received_ms
    ])?;
    Ok(Inserted::Stored {
        seq: conn.last_insert_rowid(),
    })
}

/// A delivered event leaves the queue; its dedupe row stays until it expires.
pub fn delivered(conn: &Connection, seq: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM events WHERE seq = ?1")?
        .execute(params![seq])?;
    Ok(())
}

/// Records a failed attempt of a pending event and when to try again.
pub fn retry_later(
    conn: &Connection,
    seq: i64,
    next_attempt_ms: i64,
    status: Option<u16>,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE events SET attempts = attempts + 1, next_attempt_ms = ?2, last_status = ?3,
                last_error = ?4
         WHERE seq = ?1 AND state = 'pending'",
    )?
    .execute(params![seq, next_attempt_ms, status, error])?;
    Ok(())
}

/// Records the final failed attempt of an event and moves it to the dead letters.
pub fn dead(conn: &Connection, seq: i64, status: Option<u16>, error: Option<&str>) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE events SET state = 'dead', attempts = attempts + 1, last_status = ?2,
                last_error = ?3
         WHERE seq = ?1 AND state = 'pending'",
    )?
    .execute(params![seq, status, error])?;
    Ok(())
}

/// Replays the dead letter(s) of `webhook` with this event id: back in the queue, due at
/// `now_ms`, as if never tried and received at `now_ms` (so its `max_age` starts over: a dead
/// letter older than `max_age` would otherwise die again at its first failure). (An id can have two rows when a dead letter outlived its dedupe.)
pub fn replay_one(conn: &Connection, webhook: &str, event_id: &str, now_ms: i64) -> rusqlite::Result<bool> {
    let moved = conn
        .prepare_cached(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_ms = ?3,
                    received_ms = ?3, last_status = NULL, last_error = NULL
             WHERE webhook = ?1 AND state = 'dead' AND event_id = ?2",
        )?
        .execute(params![webhook, event_id, now_ms])?;
    Ok(moved > 0)
}

/// Replays the dead letters of `webhook` received at or after `since_ms`, as [`replay_one`] does.
pub fn replay_dead_since(
    conn: &Connection,
    webhook: &str,
    since_ms: i64,
    now_ms: i64,
) -> rusqlite::Result<u64> {
    let moved = conn
        .prepare_cached(
            "UPDATE events SET state = 'pending', attempts = 0, next_attempt_ms = ?3,
                    received_ms = ?3, last_status = NULL, last_error = NULL
             WHERE webhook = ?1 AND state = 'dead' AND received_ms >= ?2",
        )?
        .execute(params![webhook, since_ms, now_ms])?;
    Ok(u64::try_from(moved).unwrap_or(u64::MAX))
}

/// Deletes up to [`PURGE_BATCH`] dedupe rows expired at `now_ms`.
pub fn purge_batch(conn: &Connection, now_ms: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "DELETE FROM dedupe WHERE (webhook, event_id) IN
           (SELECT webhook, event_id FROM dedupe WHERE expires_ms <= ?1 LIMIT ?2)",
    )?
    .execute(params![now_ms, i64::from(PURGE_BATCH)])
}

/// Pending events of `webhook` due at `now_ms`, oldest arrival first.
pub fn due(conn: &Connection, webhook: &str, now_ms: i64, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, webhook, event_id, content_type, body, received_ms, attempts,
                next_attempt_ms, last_status, last_error
         FROM events
         WHERE webhook = ?1 AND state = 'pending' AND next_attempt_ms <= ?2
         ORDER BY seq LIMIT ?3",
    )?;
    let mut events = Vec::new();
    for event in statement.query_map(params![webhook, now_ms, sql_limit(limit)], event_row)? {
        events.push(event?);
    }
    Ok(events)
}

/// The `limit` oldest pending events of `webhook`, due or not. Its own statement (not `due` with
/// an endless `now`) so it walks the `events_queue` index and stops after `limit` rows, even with
/// a large backlog.
pub fn head(conn: &Connection, webhook: &str, limit: usize) -> rusqlite::Result<Vec<Event>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, webhook, event_id, content_type, body, received_ms, attempts,
                next_attempt_ms, last_status, last_error
         FROM events
         WHERE webhook = ?1 AND state = 'pending'
         ORDER BY seq LIMIT ?2",
    )?;
    let mut events = Vec::new();
    for event in statement.query_map(params![webhook, sql_limit(limit)], event_row)? {
        events.push(event?);
    }
    Ok(events)
}

/// The earliest next attempt among the pending events of `webhook`.
pub fn next_due_ms(conn: &Connection, webhook: &str) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(next_attempt_ms) FROM events WHERE webhook = ?1 AND state = 'pending'")?
        .query_row(params![webhook], |row| row.get(0))
}

/// Events of `webhook` in `state`, oldest arrival first, without bodies.
pub fn list(
    conn: &Connection,
    webhook: &str,
    state: State,
    limit: usize,
) -> rusqlite::Result<Vec<EventSummary>> {
    let mut statement = conn.prepare_cached(
        "SELECT seq, event_id, received_ms, attempts, next_attempt_ms, last_status, last_error,
                state
         FROM events WHERE webhook = ?1 AND state = ?2
         ORDER BY seq LIMIT ?3",
    )?;
    let mut events = Vec::new();
    let rows = statement.query_map(params![webhook, state.as_str(), sql_limit(limit)], summary_row)?;
    for event in rows {
        events.push(event?);
    }
    Ok(events)
}

/// How many events of `webhook` are pending and dead, and when the first-arrived pending one
/// arrived (by `seq`, so one index step however long the queue).
pub fn counts(conn: &Connection, webhook: &str) -> rusqlite::Result<Counts> {
    conn.prepare_cached(
        "SELECT (SELECT COUNT(*) FROM events WHERE webhook = ?1 AND state = 'pending'),
                (SELECT COUNT(*) FROM events WHERE webhook = ?1 AND state = 'dead'),
                (SELECT received_ms FROM events WHERE webhook = ?1 AND state = 'pending'
                 ORDER BY seq LIMIT 1)",
    )?
    .query_row(params![webhook], |row| {
        Ok(Counts {
            pending: count(row.get(0)?),
            dead: count(row.get(1)?),
            oldest_pending_ms: row.get(2)?,
        })
    })
}

fn event_row(row: &Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event {
        seq: row.get(0)?,
        entry: None,
        webhook: row.get(1)?,
        event_id: row.get(2)?,
        content_type: row.get(3)?,
        body: bytes::Bytes::from(row.get::<_, Vec<u8>>(4)?),
        received_ms: row.get(5)?,
        attempts: row.get(6)?,
        next_attempt_ms: row.get(7)?,
        last_status: row.get(8)?,
        last_error: row.get(9)?,
    })
}

fn summary_row(row: &Row<'_>) -> rusqlite::Result<EventSummary> {
    Ok(EventSummary {
        seq: row.get(0)?,
        entry: None,
        event_id: row.get(1)?,
        received_ms: row.get(2)?,
        attempts: row.get(3)?,
        next_attempt_ms: row.get(4)?,
        last_status: row.get(5)?,
        last_error: row.get(6)?,
        state: row.get(7)?,
    })
}

/// SQLite's `LIMIT` takes an `i64`; a larger `usize` means "no limit" anyway.
fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// `error` cut to [`MAX_ERROR_CHARS`] characters, for `last_error`.
pub fn short(error: &str) -> String {
    error.chars().take(MAX_ERROR_CHARS).collect()
}
