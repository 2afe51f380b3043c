//! The bound holds after every call: random inserts of random sizes on engines with
//! several shard counts and every policy, in byte and entry-count mode, and while the
//! bound shrinks and grows.

mod common;

use bytes::Bytes;
use common::Recorder;
use proptest::prelude::*;
use ringcache_engine::{
    Capacity, ENTRY_OVERHEAD, Engine, InsertError, InsertOptions, InsertOutcome, Policy,
    RemovalCause,
};

#[derive(Debug, Clone)]
enum Op {
    Insert {
        key: u8,
        len: usize,
    },
    Get(u8),
    Remove(u8),
    /// A new bound as a share of the original, in percent.
    SetCapacity(u64),
}

fn policy() -> impl Strategy<Value = Policy> {
    proptest::sample::select(Policy::ALL.to_vec())
}

fn shards() -> impl Strategy<Value = usize> {
    proptest::sample::select(vec![1usize, 2, 4, 8])
}

/// Inserts weighted heavier than the rest; value lengths up to `max_len`.
fn op(max_len: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 0..=max_len).prop_map(|(key, len)| Op::Insert { key: key % 48, len }),
        2 => any::<u8>().prop_map(|k| Op::Get(k % 48)),
        1 => any::<u8>().prop_map(|k| Op::Remove(k % 48)),
        1 => (10u64..=150).prop_map(Op::SetCapacity),
    ]
}

fn key(k: u8) -> [u8; 3] {
    [b'k', b'0' + k / 10, b'0' + k % 10]
}

/// Checks that hold after every call in either mode.
fn assert_bound(engine: &Engine, limit: u64, shards: u64) {
    let s = engine.stats();
    assert_eq!(s.capacity, limit, "stats report the current bound");
    assert!(s.used <= limit, "over the bound: used {} > {limit}", s.used);
    let mut charged = 0;
    let mut entries = 0;
    engine.for_each(|_, v| {
        charged += v.charge;
        entries += 1;
    });
    assert_eq!(
        (charged, entries),
        (s.used, s.entries),
        "stats agree with the entries held"
    );
    assert_eq!(engine.len() as u64, s.entries);
    assert_eq!(
        engine.max_entry_charge(),
        limit / shards,
        "the smallest shard's share"
    );
    engine.check_invariants();
}

/// Drives one engine through `ops`, checking the bound and every insert's result.
fn run(capacity: Capacity, shards: usize, policy: Policy, ops: &[Op]) -> Result<(), TestCaseError> {
    let rec = Recorder::new();
    let engine = rec
        .install(Engine::builder(capacity).policy(policy).shards(shards))
        .build();
    let n = engine.shard_count() as u64;
    prop_assert_eq!(n, shards as u64);
    let entries_mode = matches!(capacity, Capacity::Entries(_));
    let mut limit = capacity.limit();
    for op in ops {
        match *op {
            Op::Insert { key: k, len } => {
                let key = key(k);
                let value = Bytes::from(vec![k; len]);
                let charge = if entries_mode {
                    1
                } else {
                    (key.len() + len) as u64 + ENTRY_OVERHEAD
                };
                let min_share = limit / n;
                let max_share = min_share + u64::from(!limit.is_multiple_of(n));
                let before = engine.peek(&key);
                let stats_before = engine.stats();
                let result = engine.insert(&key, value.clone(), &InsertOptions::new());
                match result {
                    Ok(outcome) => {
                        prop_assert!(
                            charge <= max_share,
                            "stored {charge} > every shard's {max_share}"
                        );
                        let now = engine.peek(&key);
                        if outcome == InsertOutcome::Rejected {
                            prop_assert!(now.is_none(), "a rejected entry is not held");
                        } else {
                            let now = now.expect("an inserted, not rejected entry is held");
                            prop_assert_eq!(&now.value, &value);
                            prop_assert_eq!(
                                now.charge,
                                charge,
                                "charge = key + value + ENTRY_OVERHEAD"
                            );
                        }
                        // (An overwrite may be rejected too: then the old value is gone as well.)
                        if outcome != InsertOutcome::Rejected {
                            let replaced = matches!(outcome, InsertOutcome::Replaced { .. });
                            prop_assert_eq!(
                                replaced,
                                before.is_some(),
                                "{:?} with previous {:?}",
                                outcome,
                                before
                            );
                        }
                    }
                    Err(InsertError::TooLarge {
                        charge: c,
                        limit: l,
                    }) => {
                        prop_assert_eq!(c, charge);
                        prop_assert!(l < c && (min_share..=max_share).contains(&l), "limit {l}");
                        prop_assert!(charge > engine.max_entry_charge());
                        prop_assert_eq!(
                            engine.stats(),
                            stats_before,
                            "a refused insert changes nothing"
                        );
                        prop_assert_eq!(engine.peek(&key), before);
                    }
                    Err(e) => prop_assert!(false, "unexpected {e:?}: no pins, no conditions"),
                }
                for r in rec.take() {
                    prop_assert!(
                        matches!(r.cause, RemovalCause::Size | RemovalCause::Replaced),
                        "{:?}",
                        r.cause
                    );
                }
            }
            Op::Get(k) => {
                let _ = engine.get(&key(k));
            }
            Op::Remove(k) => {
                let key = key(k);
                let before = engine.peek(&key);
                let removed = engine.remove(&key);
                prop_assert_eq!(removed, before);
                prop_assert!(!engine.contains(&key));
                let _ = rec.take();
            }
            Op::SetCapacity(percent) => {
                limit = capacity.limit() * percent / 100;
                engine.set_capacity(limit);
                for r in rec.take() {
                    prop_assert_eq!(r.cause, RemovalCause::Size);
                }
            }
        }
        assert_bound(&engine, limit, n);
    }
    Ok(())
}

fn config() -> ProptestConfig {
    // PROPTEST_CASES raises the count for a longer hunt.
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn byte_bound_holds_after_every_call(
        shards in shards(),
        policy in policy(),
        per_shard in 2u64..=12,
        ops in proptest::collection::vec(op(12 * 160), 1..150),
    ) {
        // Each shard holds a few entries of typical size; the largest values exceed a
        // shard's share, so TooLarge comes up too.
        let capacity = Capacity::Bytes(shards as u64 * per_shard * (ENTRY_OVERHEAD + 64));
        run(capacity, shards, policy, &ops)?;
    }

    #[test]
    fn entry_bound_holds_after_every_call(
        shards in shards(),
        policy in policy(),
        entries in 1u64..40,
        ops in proptest::collection::vec(op(16), 1..150),
    ) {
        run(Capacity::Entries(entries), shards, policy, &ops)?;
    }
}

#[test]
fn set_capacity_shrinks_to_the_new_bound_and_grows_back() {
    for policy in Policy::ALL {
        for shards in [1, 4] {
            let rec = Recorder::new();
            let limit = 64 * (ENTRY_OVERHEAD + 32);
            let engine = rec
                .install(
                    Engine::builder(Capacity::Bytes(limit))
                        .policy(policy)
                        .shards(shards),
                )
                .build();
            for i in 0..1000u32 {
                let k = i.to_be_bytes();
                let _ = engine
                    .insert(&k, Bytes::from(vec![0; 28]), &InsertOptions::new())
                    .expect("fits");
            }
            let full = engine.stats();
            assert!(full.used > limit / 2, "{policy}/{shards}: filled: {full:?}");
            let _ = rec.take();

            engine.set_capacity(limit / 4);
            let s = engine.stats();
            assert!(s.used <= limit / 4, "{policy}/{shards}: {s:?}");
            assert_eq!(s.capacity, limit / 4);
            let removed = rec.take();
            assert!(!removed.is_empty());
            assert!(removed.iter().all(|r| r.cause == RemovalCause::Size));
            assert_eq!(s.evicted - full.evicted, removed.len() as u64);
            assert_eq!(s.entries, full.entries - removed.len() as u64);
            assert_eq!(
                engine.capacity(),
                Capacity::Bytes(limit),
                "capacity() is the bound as built"
            );
            engine.check_invariants();

            // Shrinking to zero empties the engine; nothing fits until it grows again.
            engine.set_capacity(0);
            assert_eq!(engine.len(), 0, "{policy}/{shards}");
            let err = engine.insert(b"k", Bytes::from_static(b"v"), &InsertOptions::new());
            assert!(
                matches!(err, Err(InsertError::TooLarge { limit: 0, .. })),
                "{err:?}"
            );

            engine.set_capacity(limit);
            for i in 0..1000u32 {
                let k = i.to_be_bytes();
                let _ = engine
                    .insert(&k, Bytes::from(vec![0; 28]), &InsertOptions::new())
                    .expect("fits");
            }
            assert!(
                engine.stats().used > limit / 2,
                "{policy}/{shards}: the bound grew back"
            );
            engine.check_invariants();
        }
    }
}

#[test]
fn entry_charge_is_key_plus_value_plus_overhead() {
    let engine = Engine::builder(Capacity::Bytes(1 << 20)).shards(1).build();
    engine
        .insert(b"abc", Bytes::from(vec![1; 1000]), &InsertOptions::new())
        .expect("fits");
    assert_eq!(
        engine.peek(b"abc").map(|v| v.charge),
        Some(1003 + ENTRY_OVERHEAD)
    );
    engine
        .insert(b"x", Bytes::new(), &InsertOptions::new().charge(7))
        .expect("fits");
    assert_eq!(
        engine.peek(b"x").map(|v| v.charge),
        Some(7),
        "an explicit charge wins"
    );
    assert_eq!(engine.stats().used, 1003 + ENTRY_OVERHEAD + 7);
    // Overwrites recharge.
    engine
        .insert(b"abc", Bytes::from(vec![1; 10]), &InsertOptions::new())
        .expect("fits");
    assert_eq!(engine.stats().used, 13 + ENTRY_OVERHEAD + 7);

    let entries = Engine::builder(Capacity::Entries(10)).shards(1).build();
    entries
        .insert(b"abc", Bytes::from(vec![1; 1000]), &InsertOptions::new())
        .expect("fits");
    assert_eq!(
        entries.peek(b"abc").map(|v| v.charge),
        Some(1),
        "entry mode charges 1"
    );
}

#[test]
fn largest_entry_is_the_smallest_shards_share() {
    let limit = 4 * (ENTRY_OVERHEAD + 100) + 3;
    let engine = Engine::builder(Capacity::Bytes(limit)).shards(4).build();
    let max = engine.max_entry_charge();
    assert_eq!(max, limit / 4);
    // A value sized so the entry's charge is exactly the largest allowed fits anywhere.
    for k in 0u8..32 {
        let len = usize::try_from(max - 1 - ENTRY_OVERHEAD).expect("small");
        let r = engine.insert(&[k], Bytes::from(vec![0; len]), &InsertOptions::new());
        assert!(r.is_ok(), "key {k}: {r:?}");
        let r = engine.insert(&[k], Bytes::from(vec![0; len + 2]), &InsertOptions::new());
        assert!(
            matches!(r, Err(InsertError::TooLarge { .. })),
            "key {k}: {r:?}"
        );
        assert!(
            engine.contains(&[k]),
            "a refused overwrite keeps the old value"
        );
    }
    engine.check_invariants();
}
