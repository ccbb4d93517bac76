//! How every `Mutex` in the crate is locked.
//!
//! A module of its own, at the bottom of the crate, because everything locks: `state` and the
//! parts it is built from (`limits`, `record`, `tokens`, `webhooks`) as much as the partner
//! modules. While the helper lived in `state`, each of those parts imported the module that
//! imports them.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks, ignoring poisoning: a panicking handler must not take the whole emulator down with it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
