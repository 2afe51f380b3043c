//! Replaying a trace through one cache.

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_engine::{
    Capacity, Engine, InsertError, InsertOptions, InsertOutcome, MockClock, Policy,
};

use crate::args::Mode;
use crate::trace::Trace;

/// What happened to an object inserted after a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// It is cached (until evicted).
    Stored,
    /// The cache's admission policy turned it away.
    Rejected,
    /// It is larger than the cache (or, sharded, than a shard): not cached.
    TooLarge,
}

/// A cache the simulator can drive.
///
/// The replay loop calls `get` for every request and `admit` after every miss, on one
/// thread. An implementation MUST NOT count anything itself that the loop also counts.
pub(crate) trait SimCache {
    /// Looks the key up (an access); true on a hit.
    fn get(&self, key: &[u8]) -> bool;

    /// Inserts the key after a miss. `size` is the object's size, `charge` what it
    /// weighs against the capacity (1 in objects mode, `size` in bytes mode).
    fn admit(&self, key: &[u8], size: u32, charge: u64) -> Result<Admission, InsertError>;

    /// Checks the cache's own view after a replay; returns problems worth a warning.
    fn verify(&self, counts: &Counts) -> Vec<String> {
        let _ = counts;
        Vec::new()
    }
}

/// The counts of one replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Requests replayed.
    pub(crate) requests: u64,
    /// Gets that hit.
    pub(crate) hits: u64,
    /// Gets that missed.
    pub(crate) misses: u64,
    /// Sum of the sizes of all requests.
    pub(crate) bytes_requested: u64,
    /// Sum of the sizes of missed requests.
    pub(crate) bytes_missed: u64,
    /// Misses the cache refused to store because the object is larger than it.
    pub(crate) too_large: u64,
    /// Misses the cache's admission policy refused to store.
    pub(crate) rejected: u64,
}

impl Counts {
    /// Misses over requests (0 for no requests).
    pub(crate) fn miss_ratio(&self) -> f64 {
        ratio(self.misses, self.requests)
    }

    /// Missed bytes over requested bytes (0 when no bytes were requested).
    pub(crate) fn byte_miss_ratio(&self) -> f64 {
        ratio(self.bytes_missed, self.bytes_requested)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// An insert that failed for a reason other than size.
#[derive(Debug, thiserror::Error)]
#[error("{policy}: insert at request {index} failed")]
pub(crate) struct ReplayError {
    /// The cache.
    pub(crate) policy: &'static str,
    /// 0-based request index.
    pub(crate) index: usize,
    /// What the cache said.
    pub(crate) source: InsertError,
}

/// Replays the whole trace once: a get per request, an insert per miss. Returns the
/// counts and the time the loop took.
pub(crate) fn replay<C: SimCache>(
    cache: &C,
    policy: &'static str,
    trace: &Trace,
    mode: Mode,
) -> Result<(Counts, Duration), ReplayError> {
    let mut c = Counts::default();
    let bytes_mode = mode == Mode::Bytes;
    let start = Instant::now();
    trace.try_for_each(|index, key, size| {
        c.requests += 1;
        c.bytes_requested += u64::from(size);
        if cache.get(key) {
            c.hits += 1;
            return Ok(());
        }
        c.misses += 1;
        c.bytes_missed += u64::from(size);
        let charge = if bytes_mode { u64::from(size) } else { 1 };
        match cache.admit(key, size, charge) {
            Ok(Admission::Stored) => {}
            Ok(Admission::Rejected) => c.rejected += 1,
            Ok(Admission::TooLarge) => c.too_large += 1,
            Err(source) => {
                return Err(ReplayError {
                    policy,
                    index,
                    source,
                });
            }
        }
        Ok(())
    })?;
    Ok((c, start.elapsed()))
}

/// Ringcache's engine under the simulator.
#[derive(Debug)]
pub(crate) struct EngineSim {
    engine: Engine,
    check_invariants: bool,
}

impl EngineSim {
    /// An engine with `policy` bounded by `capacity` entries (objects mode) or bytes.
    ///
    /// It runs on a frozen [`MockClock`]: nothing in a replay has a TTL, and a result
    /// must not depend on wall time.
    pub(crate) fn new(
        policy: Policy,
        mode: Mode,
        capacity: u64,
        shards: usize,
        check_invariants: bool,
    ) -> Self {
        let capacity = match mode {
            Mode::Objects => Capacity::Entries(capacity),
            Mode::Bytes => Capacity::Bytes(capacity),
        };
        let engine = Engine::builder(capacity)
            .policy(policy)
            .shards(shards)
            .clock(std::sync::Arc::new(MockClock::new()))
            .build();
        Self {
            engine,
            check_invariants,
        }
    }
}

impl SimCache for EngineSim {
    #[inline]
    fn get(&self, key: &[u8]) -> bool {
        self.engine.get(key).is_some()
    }

    #[inline]
    fn admit(&self, key: &[u8], _size: u32, charge: u64) -> Result<Admission, InsertError> {
        match self
            .engine
            .insert(key, Bytes::new(), &InsertOptions::new().charge(charge))
        {
            Ok(InsertOutcome::Inserted | InsertOutcome::Replaced { .. }) => Ok(Admission::Stored),
            Ok(InsertOutcome::Rejected) => Ok(Admission::Rejected),
            Err(InsertError::TooLarge { .. }) => Ok(Admission::TooLarge),
            Err(e) => Err(e),
        }
    }

    fn verify(&self, counts: &Counts) -> Vec<String> {
        let mut problems = Vec::new();
        let s = self.engine.stats();
        if (s.hits, s.misses) != (counts.hits, counts.misses) {
            problems.push(format!(
                "engine counted {} hits / {} misses, the simulator {} / {}",
                s.hits, s.misses, counts.hits, counts.misses
            ));
        }
        if s.used > s.capacity {
            problems.push(format!(
                "engine holds {} of a bound of {}",
                s.used, s.capacity
            ));
        }
        if self.check_invariants {
            // Panics with a reason if the engine's internal state is inconsistent.
            self.engine.check_invariants();
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::Format;

    fn csv_trace(tag: &str, text: &str) -> Trace {
        let dir = std::env::temp_dir().join(format!("ringcache-sim-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t.csv");
        std::fs::write(&path, text).unwrap();
        let t = Trace::load(&path, Format::Csv, None).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        t
    }

    #[test]
    fn lru_counts() {
        // LRU of 2: a b a c b a -> miss miss hit miss(evicts b) miss(evicts a) miss.
        let t = csv_trace("lru", "a,10\nb,20\na,10\nc,30\nb,20\na,10\n");
        let cache = EngineSim::new(Policy::Lru, Mode::Objects, 2, 1, true);
        let (c, _) = replay(&cache, "lru", &t, Mode::Objects).unwrap();
        assert_eq!((c.requests, c.hits, c.misses), (6, 1, 5));
        assert_eq!((c.bytes_requested, c.bytes_missed), (100, 90));
        assert!(cache.verify(&c).is_empty());
    }

    #[test]
    fn too_large_objects_are_misses() {
        let t = csv_trace("big", "big,500\nbig,500\nsmall,5\nsmall,5\n");
        let cache = EngineSim::new(Policy::Lru, Mode::Bytes, 100, 1, true);
        let (c, _) = replay(&cache, "lru", &t, Mode::Bytes).unwrap();
        assert_eq!((c.hits, c.misses, c.too_large), (1, 3, 2));
        assert!((c.byte_miss_ratio() - 1005.0 / 1010.0).abs() < 1e-12);
    }
}
