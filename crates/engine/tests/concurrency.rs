//! Several threads hammer one engine with mixed operations; afterwards the internal
//! invariants hold and the counters agree with what the threads saw.
//!
//! Bounded work, no sleeps: time moves only through a [`MockClock`] one thread advances.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use bytes::Bytes;
use ringcache_engine::{
    Capacity, Condition, Engine, InsertError, InsertOptions, MockClock, Policy, Removal,
    RemovalCause,
};

const THREADS: usize = 4;
const OPS_PER_THREAD: usize = 50_000;
const KEYS: u64 = 2048;

/// xorshift64*: a deterministic stream per thread without a `rand` dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// What one thread saw.
#[derive(Default, Debug)]
struct Tally {
    reads: u64,
    hits: u64,
    stored: u64,
    no_room: u64,
    removed: u64,
}

/// Counts per removal cause, as the listener saw them.
#[derive(Default)]
struct Causes {
    expired: AtomicU64,
    explicit: AtomicU64,
    replaced: AtomicU64,
    size: AtomicU64,
}

fn key(n: u64) -> Vec<u8> {
    format!("key-{n}").into_bytes()
}

/// A value that names its key, so a read can tell whether it got the right entry.
fn value(k: &[u8], thread: usize, i: usize) -> Bytes {
    Bytes::from(format!("{}|t{thread}|{i}", String::from_utf8_lossy(k)))
}

fn check_value(k: &[u8], v: &Bytes) {
    let prefix = [k, b"|"].concat();
    assert!(
        v.starts_with(&prefix),
        "read {:?} for key {:?}",
        v,
        String::from_utf8_lossy(k)
    );
}

fn worker(engine: &Engine, clock: &MockClock, t: usize) -> Tally {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03));
    let mut tally = Tally::default();
    for i in 0..OPS_PER_THREAD {
        let k = key(rng.below(KEYS));
        match rng.below(100) {
            0..=34 => {
                tally.reads += 1;
                if let Some(v) = engine.get(&k) {
                    tally.hits += 1;
                    check_value(&k, &v);
                }
            }
            35..=39 => {
                tally.reads += 1;
                if let Some(v) = engine.get_entry(&k) {
                    tally.hits += 1;
                    check_value(&k, &v.value);
                }
            }
            40..=74 => {
                let mut opts = InsertOptions::new().version(i as u64);
                match rng.below(10) {
                    0 => opts = opts.ttl(Duration::from_millis(1 + rng.below(500))),
                    1 => opts = opts.tti(Duration::from_millis(1 + rng.below(500))),
                    2 => opts = opts.condition(Condition::IfAbsent),
                    3 => opts = opts.pinned(rng.below(4) == 0),
                    _ => {}
                }
                match engine.insert(&k, value(&k, t, i), &opts) {
                    Ok(_) => tally.stored += 1,
                    Err(InsertError::NoRoom { .. }) => tally.no_room += 1,
                    Err(InsertError::ConditionFailed { .. }) => {}
                    Err(e) => panic!("unexpected insert error {e:?}"),
                }
            }
            75..=84 => {
                if let Some(v) = engine.remove(&k) {
                    tally.removed += 1;
                    check_value(&k, &v.value);
                }
            }
            85..=88 => {
                let _ = engine.touch(&k, Some(Duration::from_millis(rng.below(1000))));
            }
            89..=91 => {
                let _ = engine.unpin(&k);
            }
            92 => {
                let _ = engine.pin(&k);
            }
            93..=95 => {
                if let Some(v) = engine.peek(&k) {
                    check_value(&k, &v.value);
                }
                let _ = engine.contains(&k);
            }
            96..=97 => {
                let _ = engine.reclaim_expired(4);
            }
            _ => {
                if t == 0 {
                    clock.advance(Duration::from_millis(rng.below(50)));
                }
                if t == 1 && rng.below(20) == 0 {
                    let p = Policy::ALL[usize::try_from(rng.below(7)).expect("small")];
                    engine.set_policy(p);
                }
            }
        }
    }
    tally
}

#[test]
fn mixed_operations_from_four_threads_keep_invariants_and_counters() {
    let clock = MockClock::new();
    let causes = Arc::new(Causes::default());
    let listener_causes = Arc::clone(&causes);
    let engine = Arc::new(
        Engine::builder(Capacity::Entries(512))
            .shards(4)
            .clock(Arc::new(clock.clone()))
            .removal_listener(move |r: &Removal| {
                let c = &listener_causes;
                let counter = match r.cause {
                    RemovalCause::Expired => &c.expired,
                    RemovalCause::Explicit => &c.explicit,
                    RemovalCause::Replaced => &c.replaced,
                    RemovalCause::Size => &c.size,
                    other => panic!("unknown cause {other:?}"),
                };
                counter.fetch_add(1, Ordering::Relaxed);
            })
            .build(),
    );

    let tallies: Vec<Tally> = thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let engine = Arc::clone(&engine);
                let clock = clock.clone();
                s.spawn(move || worker(&engine, &clock, t))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker thread panicked"))
            .collect()
    });

    engine.check_invariants();
    let sum = |f: fn(&Tally) -> u64| tallies.iter().map(f).sum::<u64>();
    let s = engine.stats();
    assert_eq!(
        s.hits + s.misses,
        sum(|t| t.reads),
        "every get is a hit or a miss: {s:?}"
    );
    assert_eq!(s.hits, sum(|t| t.hits), "{s:?}");
    assert_eq!(s.inserts + s.updates, sum(|t| t.stored), "{s:?}");
    assert_eq!(s.no_room, sum(|t| t.no_room), "{s:?}");
    assert_eq!(s.explicit, sum(|t| t.removed), "{s:?}");
    assert_eq!(
        s.entries,
        s.inserts - s.expired - s.explicit - s.evicted,
        "{s:?}"
    );
    assert_eq!(engine.len() as u64, s.entries);
    assert!(s.used <= s.capacity, "{s:?}");
    assert!(
        s.pinned_entries <= s.entries && s.pinned_used <= s.used,
        "{s:?}"
    );
    assert_eq!(
        [
            causes.expired.load(Ordering::Relaxed),
            causes.explicit.load(Ordering::Relaxed),
            causes.replaced.load(Ordering::Relaxed),
            causes.size.load(Ordering::Relaxed),
        ],
        [s.expired, s.explicit, s.replaced, s.evicted],
        "the listener saw every removal the counters did"
    );
    // The run was not trivial: every kind of removal happened.
    assert!(
        s.hits > 0 && s.expired > 0 && s.evicted > 0 && s.replaced > 0,
        "{s:?}"
    );

    let mut held = 0;
    engine.for_each(|k, v| {
        check_value(k, &v.value);
        held += 1;
    });
    assert!(held <= s.entries, "for_each skips only expired entries");
}
