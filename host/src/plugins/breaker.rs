//! A circuit breaker per plugin: a plugin whose calls keep failing (traps,
//! deadlines, memory refusals) is paused, with a pause that doubles each
//! time it trips again, so a broken plugin stops costing a fresh instance
//! per message. While paused, calls fail at once; the router treats that
//! like any failure and the message goes on past the plugin.

use crate::sync::lock;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Failures in a row that pause a plugin.
pub const TRIP_AFTER: u32 = 5;
/// The first pause; each further trip doubles it, up to [`MAX_PAUSE`].
pub const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause.
pub const MAX_PAUSE: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
struct State {
    failures_in_a_row: u32,
    trips: u32,
    paused_until: Option<Instant>,
}

/// Every failure so far, kept across successes.
#[derive(Debug, Default)]
struct Count {
    failures: u64,
    last_failure: Option<String>,
}

/// One plugin's breaker.
#[derive(Debug, Default)]
pub(super) struct Breaker {
    state: Mutex<State>,
    /// Whether `state` is anything but the default (set and cleared under
    /// its lock), so that a healthy plugin's calls, which only ask
    /// "paused?" and report "succeeded", take no lock.
    troubled: AtomicBool,
    count: Mutex<Count>,
}

/// What a breaker reports for the plugin list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Health {
    /// Calls that failed since the last one that succeeded.
    pub failures_in_a_row: u32,
    /// Until when the plugin is paused (ms since the epoch), if it is.
    pub paused_until: Option<u64>,
    /// Calls that failed since this version was loaded (traps, deadlines,
    /// fuel, memory, pauses).
    pub failures: u64,
    /// Why the last of them failed.
    pub last_failure: Option<String>,
}

impl Breaker {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// `Err` with the reason while the plugin is paused.
    pub fn check(&self) -> Result<(), String> {
        if !self.troubled.load(Ordering::Acquire) {
            return Ok(());
        }
        let state = self.state();
        match state.paused_until {
            Some(until) if until > Instant::now() => Err(format!(
                "paused after failing {TRIP_AFTER} calls in a row; resumes in {} ms",
                (until - Instant::now()).as_millis()
            )),
            _ => Ok(()),
        }
    }

    /// A call succeeded: the plugin is healthy again.
    pub fn succeeded(&self) {
        if !self.troubled.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        *state = State::default();
        self.troubled.store(false, Ordering::Release);
    }

    /// A call failed because of `why`; count it, and pause the plugin if
    /// that makes [`TRIP_AFTER`] in a row (or one failure right after a
    /// pause).
    pub fn failed(&self, plugin: &str, why: &str) {
        self.counted(why);
        let mut state = self.state();
        self.troubled.store(true, Ordering::Release);
        state.failures_in_a_row += 1;
        let after_pause = state.trips > 0 && state.paused_until.is_some_and(|until| until <= Instant::now());
        if state.failures_in_a_row >= TRIP_AFTER || after_pause {
            let pause = FIRST_PAUSE.saturating_mul(1 << state.trips.min(16)).min(MAX_PAUSE);
            state.trips += 1;
            state.paused_until = Some(Instant::now() + pause);
            tracing::warn!(
                plugin,
                failures_in_a_row = state.failures_in_a_row,
                pause_ms = pause.as_millis() as u64,
                "plugin keeps failing; paused"
            );
        }
    }

    /// Count a failed call without holding it against the plugin's health.
    pub fn counted(&self, why: &str) {
        let mut count = lock(&self.count);
        count.failures += 1;
        count.last_failure = Some(why.to_owned());
    }

    /// The breaker's state, for people.
    pub fn health(&self) -> Health {
        let state = self.state();
        let paused_until = state.paused_until.filter(|until| *until > Instant::now()).map(|until| {
            let wall = SystemTime::now() + (until - Instant::now());
            wall.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
        });
        let count = lock(&self.count);
        Health {
            failures_in_a_row: state.failures_in_a_row,
            paused_until,
            failures: count.failures,
            last_failure: count.last_failure.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trips_after_failures_in_a_row_and_resets_on_success() {
        let breaker = Breaker::default();
        for _ in 0..TRIP_AFTER - 1 {
            breaker.failed("p", "trap");
            assert!(breaker.check().is_ok());
        }
        breaker.succeeded();
        for _ in 0..TRIP_AFTER - 1 {
            breaker.failed("p", "trap");
        }
        assert!(breaker.check().is_ok(), "a success in between resets the count");
        breaker.failed("p", "trap");
        let paused = breaker.check().expect_err("paused");
        assert!(paused.contains("paused after failing 5 calls in a row"), "{paused}");
        assert!(breaker.health().paused_until.is_some());
        let health = breaker.health();
        assert_eq!((health.failures, health.last_failure.as_deref()), (9, Some("trap")), "counted across the success");
    }
}
