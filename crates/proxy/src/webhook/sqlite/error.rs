//! The store's one error type: it names the file and the operation, never a body.

use std::path::Path;
use std::sync::Arc;

/// Why the store could not do something. Names the file and the operation, never a body.
/// (The path is an `Arc` so an error stays small and cheap to make.)
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// `data_dir` could not be created.
    #[error("webhook store {}: cannot create the directory: {source}", .path.display())]
    CreateDir { path: Arc<Path>, source: std::io::Error },
    /// A step of opening the file failed (open, pragma, schema).
    #[error("webhook store {}: {step} failed: {source}", .path.display())]
    Open {
        path: Arc<Path>,
        step: &'static str,
        source: rusqlite::Error,
    },
    /// SQLite would not switch the file to WAL (e.g. on a file system without shared memory).
    #[error("webhook store {}: journal_mode is {mode:?}, not WAL", .path.display())]
    NotWal { path: Arc<Path>, mode: String },
    /// The file was written by a newer Tollgate; it is not touched.
    #[error(
        "webhook store {}: schema version {found} was written by a newer Tollgate (this one knows \
         up to {supported}); run that version or move the file away",
        .path.display()
    )]
    NewerSchema {
        path: Arc<Path>,
        found: i64,
        supported: i64,
    },
    /// The writer or reader thread could not be started.
    #[error("webhook store {}: cannot start its thread: {source}", .path.display())]
    Spawn { path: Arc<Path>, source: std::io::Error },
    /// The operation's own statements failed; nothing of it was stored.
    #[error("webhook store {}: {op} failed: {source}", .path.display())]
    Sqlite {
        path: Arc<Path>,
        op: &'static str,
        source: rusqlite::Error,
    },
    /// The group commit the operation was part of failed; nothing of that batch was stored.
    #[error("webhook store {}: {op} not committed: {source}", .path.display())]
    Commit {
        path: Arc<Path>,
        op: &'static str,
        source: Arc<rusqlite::Error>,
    },
    /// The store's threads are gone (shutting down, or a thread died).
    #[error("webhook store {}: {op} not done: the store's thread has stopped", .path.display())]
    Closed { path: Arc<Path>, op: &'static str },
}
