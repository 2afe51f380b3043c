//! Time, as the engine sees it.
//!
//! The engine never reads a system clock directly: every deadline is computed from a
//! [`Clock`] the owner supplies. Timestamps are monotonic nanoseconds from an arbitrary
//! origin, so a wall-clock jump (NTP step, `faketime`, a VM resume) can neither expire
//! entries early nor keep them alive late.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A point in monotonic time: nanoseconds since the clock's origin.
///
/// Only differences between timestamps from the same clock mean anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The timestamp `d` after this one, saturating at the far future.
    #[must_use]
    pub fn saturating_add(self, d: Duration) -> Self {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Self(self.0.saturating_add(nanos))
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    #[must_use]
    pub fn saturating_duration_since(self, earlier: Self) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A source of monotonic time.
///
/// An implementation MUST be monotonic (never return a smaller timestamp than an earlier
/// call on any thread) and cheap: the engine calls it on inserts with a TTL, on reads of
/// entries that carry a deadline, and when reclaiming expired entries, never on the
/// plain read and write path of entries without expiry.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The real clock: `std::time::Instant` (CLOCK_MONOTONIC on Linux) since creation.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    /// A clock whose origin is now.
    #[must_use]
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let nanos = self.origin.elapsed().as_nanos();
        Timestamp(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told to: for tests and simulations.
///
/// Clones share the same time.
#[derive(Debug, Clone, Default)]
pub struct MockClock {
    nanos: Arc<AtomicU64>,
}

impl MockClock {
    /// A mock clock at timestamp zero.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::SeqCst);
    }

    /// Sets the time; it must not go backwards (that would break the [`Clock`] contract).
    ///
    /// # Panics
    /// If `t` is earlier than the current mock time.
    pub fn set(&self, t: Timestamp) {
        let prev = self.nanos.swap(t.0, Ordering::SeqCst);
        assert!(
            prev <= t.0,
            "MockClock moved backwards from {prev} to {}",
            t.0
        );
    }
}

impl Clock for MockClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.nanos.load(Ordering::SeqCst))
    }
}
