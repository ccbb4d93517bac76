//! Which worker runs this code. `--workers N` serves the data listener from N single-threaded
//! runtimes (see `server/workers.rs`); each knows its index, so state kept per worker (the
//! upstream pool's idle connections) stays with the runtime that drives its sockets, and a
//! request never wakes another thread to use a connection.

use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// 0 on the main runtime (and on any runtime an embedder runs): one worker.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as worker `index`.
pub(crate) fn set_index(index: usize) {
    INDEX.with(|i| i.set(index));
}

/// The current thread's worker index.
pub(crate) fn index() -> usize {
    INDEX.with(Cell::get)
}

/// How many per-worker slots to keep: one per core, the default worker count. More workers than
/// that share slots (correct, only no longer free of cross-thread wake-ups).
pub(crate) fn slots() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The slot of the current worker among `len`.
pub(crate) fn slot(len: usize) -> usize {
    index() % len.max(1)
}
