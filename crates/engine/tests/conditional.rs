//! Conditional writes and removes (`Condition::IfAbsent`, `Condition::IfVersion`), and
//! policy switches on a live engine.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, size, small_engine, val};
use ringcache_engine::{
    Capacity, Condition, Engine, InsertError, InsertOptions, InsertOutcome, MockClock, Policy,
    RemovalCause,
};

fn with(condition: Condition, version: u64) -> InsertOptions {
    InsertOptions::new().condition(condition).version(version)
}

#[test]
fn if_absent_inserts_only_when_no_live_entry_has_the_key() {
    let (engine, rec, clock) = small_engine(Policy::Lru, 8);
    let outcome = engine.insert(
        b"k",
        val("1"),
        &with(Condition::IfAbsent, 1).ttl(Duration::from_secs(5)),
    );
    assert_eq!(outcome, Ok(InsertOutcome::Inserted));
    let before = engine.stats();
    let err = engine.insert(b"k", val("2"), &with(Condition::IfAbsent, 2));
    assert_eq!(err, Err(InsertError::ConditionFailed { current: Some(1) }));
    assert_eq!(
        engine.stats(),
        before,
        "a failed condition changes no counter"
    );
    assert!(rec.take().is_empty());
    let view = engine.peek(b"k").expect("held");
    assert_eq!(
        (view.value, view.version, view.expires_in),
        (val("1"), 1, Some(Duration::from_secs(5)))
    );

    // An expired entry is absent.
    clock.advance(Duration::from_secs(5));
    let outcome = engine.insert(b"k", val("3"), &with(Condition::IfAbsent, 3));
    assert_eq!(outcome, Ok(InsertOutcome::Inserted));
    assert_eq!(
        rec.take_keys(),
        vec![("k".to_owned(), RemovalCause::Expired)]
    );
    assert_eq!(engine.get(b"k"), Some(val("3")));
}

#[test]
fn if_version_is_a_compare_and_set() {
    let (engine, rec, _) = small_engine(Policy::Lfu, 8);
    let err = engine.insert(b"k", val("0"), &with(Condition::IfVersion(0), 1));
    assert_eq!(
        err,
        Err(InsertError::ConditionFailed { current: None }),
        "no entry, no match"
    );
    assert!(!engine.contains(b"k"));

    engine
        .insert(b"k", val("1"), &with(Condition::Always, 1).flags(0xAB))
        .expect("room");
    let outcome = engine.insert(
        b"k",
        val("2"),
        &with(Condition::IfVersion(1), 2).flags(0xCD),
    );
    assert_eq!(
        outcome,
        Ok(InsertOutcome::Replaced {
            previous_version: 1
        })
    );
    let view = engine.peek(b"k").expect("held");
    assert_eq!((view.value, view.version, view.flags), (val("2"), 2, 0xCD));
    let replaced = rec.take();
    assert_eq!(replaced.len(), 1);
    assert_eq!(
        (replaced[0].cause, replaced[0].version, &replaced[0].value),
        (RemovalCause::Replaced, 1, &val("1"))
    );

    // A stale version fails and reports the current one; nothing changes.
    let before = engine.stats();
    let err = engine.insert(
        b"k",
        val("3"),
        &with(Condition::IfVersion(1), 3).pinned(true),
    );
    assert_eq!(err, Err(InsertError::ConditionFailed { current: Some(2) }));
    let view = engine.peek(b"k").expect("held");
    assert_eq!(
        (view.value, view.version, view.flags, view.pinned),
        (val("2"), 2, 0xCD, false)
    );
    assert_eq!(engine.stats(), before);
    assert!(rec.take().is_empty());
}

#[test]
fn failed_condition_does_not_count_as_a_use() {
    let (engine, rec, _) = small_engine(Policy::Lru, 2);
    engine
        .insert(b"a", val("a"), &with(Condition::Always, 1))
        .expect("room");
    engine
        .insert(b"b", val("b"), &with(Condition::Always, 1))
        .expect("room");
    // `a` is least recently used; failed writes to it must not refresh it.
    for cond in [Condition::IfAbsent, Condition::IfVersion(9)] {
        assert!(matches!(
            engine.insert(b"a", val("x"), &with(cond, 2)),
            Err(InsertError::ConditionFailed { current: Some(1) })
        ));
    }
    engine
        .insert(b"c", val("c"), &InsertOptions::new())
        .expect("room");
    assert_eq!(rec.take_keys(), vec![size("a")]);
}

#[test]
fn remove_if_version_is_a_compare_and_delete() {
    let (engine, rec, _) = small_engine(Policy::Adaptive, 8);
    assert_eq!(
        engine.remove_if(b"k", Condition::IfVersion(1)),
        Err(InsertError::ConditionFailed { current: None })
    );
    assert_eq!(engine.remove_if(b"k", Condition::Always), Ok(None));

    engine
        .insert(b"k", val("v"), &with(Condition::Always, 7))
        .expect("room");
    assert_eq!(
        engine.remove_if(b"k", Condition::IfVersion(6)),
        Err(InsertError::ConditionFailed { current: Some(7) })
    );
    assert!(
        engine.contains(b"k"),
        "a failed compare-and-delete keeps the entry"
    );
    assert_eq!(engine.stats().explicit, 0);
    assert!(rec.take().is_empty());

    let removed = engine
        .remove_if(b"k", Condition::IfVersion(7))
        .expect("versions match")
        .expect("held");
    assert_eq!((removed.value, removed.version), (val("v"), 7));
    assert!(!engine.contains(b"k"));
    assert_eq!(
        rec.take_keys(),
        vec![("k".to_owned(), RemovalCause::Explicit)]
    );

    // IfAbsent means Always for a remove.
    engine
        .insert(b"k", val("v"), &with(Condition::Always, 8))
        .expect("room");
    let removed = engine
        .remove_if(b"k", Condition::IfAbsent)
        .expect("treated as Always");
    assert_eq!(removed.map(|v| v.version), Some(8));
    assert_eq!(engine.stats().explicit, 2);
}

#[test]
fn remove_if_on_an_expired_entry_sees_no_entry() {
    let (engine, rec, clock) = small_engine(Policy::Lru, 8);
    engine
        .insert(
            b"k",
            val("v"),
            &with(Condition::Always, 3).ttl(Duration::from_secs(1)),
        )
        .expect("room");
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        engine.remove_if(b"k", Condition::IfVersion(3)),
        Err(InsertError::ConditionFailed { current: None })
    );
    assert_eq!(
        rec.take_keys(),
        vec![("k".to_owned(), RemovalCause::Expired)]
    );
    assert_eq!(engine.stats().explicit, 0);
}

/// An engine holding 24 entries (4 pinned, 6 with a TTL, some read) under `from`.
fn populated(from: Policy, shards: usize) -> (Engine, Recorder, MockClock) {
    let rec = Recorder::new();
    let clock = MockClock::new();
    let engine = rec
        .install(
            Engine::builder(Capacity::Entries(64 * shards as u64))
                .policy(from)
                .shards(shards)
                .clock(Arc::new(clock.clone())),
        )
        .build();
    for i in 0..24u32 {
        let mut opts = InsertOptions::new().version(u64::from(i));
        if i % 6 == 0 {
            opts = opts.pinned(true);
        }
        if i % 4 == 1 {
            opts = opts.ttl(Duration::from_secs(60));
        }
        engine
            .insert(format!("k{i}").as_bytes(), val(&format!("v{i}")), &opts)
            .expect("room");
        if i % 3 == 0 {
            assert!(engine.get(format!("k{}", i / 2).as_bytes()).is_some());
        }
    }
    (engine, rec, clock)
}

#[test]
fn set_policy_loses_no_entry_for_any_pair_of_policies() {
    for shards in [1, 4] {
        for from in Policy::ALL {
            for to in Policy::ALL {
                let ctx = format!("{from} -> {to}, {shards} shards");
                let (engine, rec, clock) = populated(from, shards);
                let before = engine.stats();
                engine.set_policy(to);
                assert_eq!(engine.policy(), to, "{ctx}");
                assert!(rec.take().is_empty(), "{ctx}: the switch removed entries");
                assert_eq!(engine.len(), 24, "{ctx}");
                assert_eq!(
                    engine.stats(),
                    before,
                    "{ctx}: the switch changes no counter"
                );
                engine.check_invariants();
                for i in 0..24u32 {
                    let view = engine
                        .get_entry(format!("k{i}").as_bytes())
                        .unwrap_or_else(|| panic!("{ctx}: k{i} lost"));
                    assert_eq!(
                        (view.value, view.version),
                        (val(&format!("v{i}")), u64::from(i)),
                        "{ctx}"
                    );
                    assert_eq!(view.pinned, i % 6 == 0, "{ctx}: k{i} pinning");
                    assert_eq!(view.expires_in.is_some(), i % 4 == 1, "{ctx}: k{i} TTL");
                }

                // The new policy runs the engine: within the bound, pinned entries kept,
                // expiry still works.
                for i in 0..300u32 {
                    let k = format!("n{i}");
                    let _ = engine
                        .insert(k.as_bytes(), val(&k), &InsertOptions::new())
                        .expect("room");
                }
                let s = engine.stats();
                assert!(s.used <= s.capacity, "{ctx}: {s:?}");
                for i in (0..24u32).step_by(6) {
                    assert!(
                        engine.contains(format!("k{i}").as_bytes()),
                        "{ctx}: pinned k{i} evicted"
                    );
                }
                clock.advance(Duration::from_secs(60));
                let _ = engine.reclaim_expired(usize::MAX);
                for i in (1..24u32).step_by(4) {
                    assert!(
                        !engine.contains(format!("k{i}").as_bytes()),
                        "{ctx}: k{i} outlived its TTL"
                    );
                }
                let pinned: Vec<String> = (0..24u32).step_by(6).map(|i| format!("k{i}")).collect();
                let removed = rec.take_keys();
                assert!(
                    removed.iter().all(|(k, _)| !pinned.contains(k)),
                    "{ctx}: pinned entry removed: {removed:?}"
                );
                engine.check_invariants();
            }
        }
    }
}

#[test]
fn get_or_insert_with_reads_or_stores_in_one_step() {
    let (engine, rec, clock) = small_engine(Policy::Lru, 2);
    let mut calls = 0;
    let opts = InsertOptions::new().version(1).ttl(Duration::from_secs(10));
    let got = engine.get_or_insert_with(b"k", &opts, || {
        calls += 1;
        val("made")
    });
    assert_eq!(
        (got, calls),
        (Ok((val("made"), false)), 1),
        "a miss makes and stores"
    );
    let view = engine.peek(b"k").expect("stored");
    assert_eq!(
        (view.version, view.expires_in),
        (1, Some(Duration::from_secs(10)))
    );

    let got = engine.get_or_insert_with(b"k", &opts, || {
        calls += 1;
        val("again")
    });
    assert_eq!(
        (got, calls),
        (Ok((val("made"), true)), 1),
        "a hit does not call make"
    );
    let s = engine.stats();
    assert_eq!(
        (s.hits, s.misses, s.inserts, s.updates),
        (1, 1, 1, 0),
        "{s:?}"
    );

    // The hit counts as a use: `k` is now more recent than `a`.
    engine
        .insert(b"a", val("a"), &InsertOptions::new())
        .expect("room");
    let _ = engine.get_or_insert_with(b"k", &opts, || val("unused"));
    engine
        .insert(b"b", val("b"), &InsertOptions::new())
        .expect("room");
    assert_eq!(rec.take_keys(), vec![size("a")]);

    // An expired entry is a miss.
    clock.advance(Duration::from_secs(10));
    let got = engine.get_or_insert_with(b"k", &InsertOptions::new(), || val("fresh"));
    assert_eq!(got, Ok((val("fresh"), false)));
    // The expired value goes first, so the fresh one fits beside b.
    assert_eq!(
        rec.take_keys(),
        vec![("k".to_owned(), RemovalCause::Expired)]
    );
    assert_eq!(engine.get(b"k"), Some(val("fresh")));
    assert!(engine.contains(b"b"));
    engine.check_invariants();
}

#[test]
fn get_or_insert_with_errors_store_nothing() {
    let (engine, rec, _) = small_engine(Policy::Lru, 2);
    for k in ["p", "q"] {
        engine
            .insert(k.as_bytes(), val(k), &InsertOptions::new().pinned(true))
            .expect("room");
    }
    let got = engine.get_or_insert_with(b"k", &InsertOptions::new(), || val("v"));
    assert!(matches!(got, Err(InsertError::NoRoom { .. })), "{got:?}");
    assert!(!engine.contains(b"k"));
    assert_eq!(engine.stats().no_room, 1);

    // A hit on a pinned entry needs no room.
    let got = engine.get_or_insert_with(b"p", &InsertOptions::new(), || val("v"));
    assert_eq!(got, Ok((val("p"), true)));

    let big = Engine::builder(Capacity::Bytes(1000)).shards(1).build();
    let got = big.get_or_insert_with(b"k", &InsertOptions::new(), || {
        bytes::Bytes::from(vec![0; 2000])
    });
    assert!(
        matches!(got, Err(InsertError::TooLarge { limit: 1000, .. })),
        "{got:?}"
    );
    assert!(big.is_empty());

    // A condition applies to the store: IfVersion on a miss cannot hold.
    let got = engine.get_or_insert_with(
        b"p2",
        &InsertOptions::new().condition(Condition::IfVersion(3)),
        || val("v"),
    );
    assert_eq!(got, Err(InsertError::ConditionFailed { current: None }));
    assert!(rec.take().is_empty());
    engine.check_invariants();
}

#[test]
fn get_or_insert_with_returns_the_value_even_when_the_policy_rejects_it() {
    let (engine, rec, _) = small_engine(Policy::Lfu, 2);
    for k in ["a", "b"] {
        engine
            .insert(k.as_bytes(), val(k), &InsertOptions::new())
            .expect("room");
        assert!(engine.get(k.as_bytes()).is_some());
    }
    // LFU: the newcomer (frequency 1) is the least frequent, so it is the victim.
    let got = engine.get_or_insert_with(b"c", &InsertOptions::new(), || val("c"));
    assert_eq!(got, Ok((val("c"), false)));
    assert!(!engine.contains(b"c"));
    assert_eq!(rec.take_keys(), vec![size("c")]);
}
