//! Helpers shared by the engine's integration tests.
//!
//! Each test file is its own crate and uses a subset of these, hence the `dead_code`
//! allowance.
#![allow(dead_code)]

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ringcache_engine::{Capacity, Engine, EngineBuilder, MockClock, Policy, Removal, RemovalCause};

/// Every removal the engine reported, in order.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    events: Arc<Mutex<Vec<Removal>>>,
}

impl Recorder {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// A builder with this recorder installed as the removal listener.
    pub(crate) fn install(&self, builder: EngineBuilder) -> EngineBuilder {
        let events = Arc::clone(&self.events);
        builder.removal_listener(move |r: &Removal| events.lock().push(r.clone()))
    }

    /// Takes every removal recorded so far.
    pub(crate) fn take(&self) -> Vec<Removal> {
        std::mem::take(&mut *self.events.lock())
    }

    /// Takes every removal recorded so far as (key, cause).
    pub(crate) fn take_keys(&self) -> Vec<(String, RemovalCause)> {
        self.take()
            .into_iter()
            .map(|r| (String::from_utf8_lossy(&r.key).into_owned(), r.cause))
            .collect()
    }
}

/// A single-shard engine bounded to `n` entries, with a recorder and a mock clock.
pub(crate) fn small_engine(policy: Policy, n: u64) -> (Engine, Recorder, MockClock) {
    let rec = Recorder::new();
    let clock = MockClock::new();
    let engine = rec
        .install(
            Engine::builder(Capacity::Entries(n))
                .policy(policy)
                .shards(1)
                .clock(Arc::new(clock.clone())),
        )
        .build();
    (engine, rec, clock)
}

/// A value whose content names it, so a removal can be matched to the insert.
pub(crate) fn val(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// `(key, Size)`: shorthand for an expected eviction.
pub(crate) fn size(key: &str) -> (String, RemovalCause) {
    (key.to_owned(), RemovalCause::Size)
}
