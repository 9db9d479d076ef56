//! Locking that outlives a panic, and receiving without falling asleep at
//! once.
//!
//! A thread that panics while it holds a [`Mutex`] poisons it, and every
//! later `lock()` returns an error. The host's mutexes guard maps, queues
//! and counters that each holder leaves whole between its statements, and
//! a panic in one request must not take every later message down with it:
//! so the host takes a poisoned mutex as it is. [`lock`] is the one way the
//! host locks a mutex.
//!
//! A thread that blocks on an empty channel sleeps in the kernel, and the
//! next sender pays a futex wake-up and a context switch to get it going
//! again: several microseconds each way on a two-core machine, about what
//! the journal's committer spends on a write. [`recv_soon`] first
//! looks for a while, yielding the processor between looks, and sleeps
//! only if nothing came.

use std::sync::mpsc::{Receiver, RecvError, TryRecvError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Lock `mutex`, whether or not a thread panicked holding it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The next value from `rx`: looked for, yielding the processor between
/// looks, for up to `patience`, then waited for asleep. An error once
/// every sender is gone and nothing is left.
pub(crate) fn recv_soon<T>(rx: &Receiver<T>, patience: Duration) -> Result<T, RecvError> {
    let until = Instant::now() + patience;
    loop {
        match rx.try_recv() {
            Ok(value) => return Ok(value),
            Err(TryRecvError::Disconnected) => return Err(RecvError),
            Err(TryRecvError::Empty) if Instant::now() < until => std::thread::yield_now(),
            Err(TryRecvError::Empty) => return rx.recv(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recv_soon_takes_what_is_sent_before_or_after_it_sleeps_and_ends_with_the_senders() {
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(1).expect("send");
        assert_eq!(recv_soon(&rx, Duration::from_millis(1)), Ok(1), "already there");
        let late = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            tx.send(2).expect("send");
        });
        assert_eq!(recv_soon(&rx, Duration::from_micros(10)), Ok(2), "sent after the looking stopped");
        late.join().expect("sender");
        assert_eq!(recv_soon(&rx, Duration::from_millis(1)), Err(RecvError), "every sender is gone");
    }
}
