//! The reader thread: a read-only connection for the delivery queue, listings and counts.
//!
//! Reads have their own connection and thread rather than riding the writer's: under WAL a reader
//! sees the last committed state without waiting for the writer's fsync, so a delivery worker
//! polling for due events or an operator listing ten thousand dead letters never sits behind a
//! group commit, and never delays one. Reads still see every answered write, because the writer
//! answers only after its commit.

use std::thread;

use rusqlite::Connection;
use tokio::sync::mpsc;

/// Reads that may wait for the reader thread.
const QUEUE: usize = 1024;

/// One read: runs against the connection and sends its own answer.
pub type Read = Box<dyn FnOnce(&Connection) + Send>;

/// The sending half callers use.
pub type Reads = mpsc::Sender<Read>;

/// Starts the reader thread; it ends when every [`Reads`] sender is dropped.
pub fn spawn(conn: Connection) -> std::io::Result<Reads> {
    let (reads, mut receiver) = mpsc::channel::<Read>(QUEUE);
    thread::Builder::new()
        .name("webhook-store-reader".into())
        .spawn(move || {
            while let Some(read) = receiver.blocking_recv() {
                read(&conn);
            }
        })?;
    Ok(reads)
}
