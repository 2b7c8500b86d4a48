//! Wall-clock time as the engine reads it, behind a trait so that retry,
//! circuit-breaker and rate-limit behaviour can be tested by moving time
//! forward instead of sleeping.

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};

/// A source of the current time in Unix milliseconds (UTC).
///
/// Everything the engine stores or compares (message and attempt times, when
/// a retry is due, secret grace periods) is read from one `Clock`.
/// Cross-node lease expiry is not: leases compare times written by other
/// processes, so they always use the system clock.
pub trait Clock: Debug + Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        crate::timefmt::now_ms()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ms`.
    pub fn new(start_ms: u64) -> Self {
        Self {
            now_ms: AtomicU64::new(start_ms),
        }
    }

    /// A clock reading the system time now, then standing still.
    pub fn starting_now() -> Self {
        Self::new(crate::timefmt::now_ms())
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.now_ms.fetch_add(ms, Ordering::SeqCst);
    }

    /// Sets the clock to `at_ms`.
    pub fn set(&self, at_ms: u64) {
        self.now_ms.store(at_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        assert_eq!(clock.now_ms(), 1_000);
        clock.advance(Duration::from_secs(5));
        assert_eq!(clock.now_ms(), 6_000);
        clock.set(42);
        assert_eq!(clock.now_ms(), 42);
    }

    #[test]
    fn system_clock_is_unix_milliseconds() {
        // 2020-01-01 in Unix ms: any real clock reads later than this.
        assert!(SystemClock.now_ms() > 1_577_836_800_000);
    }
}
