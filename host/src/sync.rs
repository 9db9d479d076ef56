//! Locking that outlives a panic.
//!
//! A thread that panics while it holds a [`Mutex`] poisons it, and every
//! later `lock()` returns an error. The host's mutexes guard maps, queues
//! and counters that each holder leaves whole between its statements, and
//! a panic in one request must not take every later message down with it:
//! so the host takes a poisoned mutex as it is. [`lock`] is the one way the
//! host locks a mutex.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Lock `mutex`, whether or not a thread panicked holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
