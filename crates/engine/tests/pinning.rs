//! Pinned entries: never evicted, still expire, and refuse inserts they leave no room
//! for.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, size, small_engine, val};
use ringcache_engine::{
    Capacity, ENTRY_OVERHEAD, Engine, InsertError, InsertOptions, InsertOutcome, MockClock, Policy,
    RemovalCause,
};

fn pinned() -> InsertOptions {
    InsertOptions::new().pinned(true)
}

/// The documented bound with pinned entries aside: unpinned charge fits in what the
/// pinned charge leaves of the bound.
fn assert_within_bound(engine: &Engine) {
    let s = engine.stats();
    assert!(
        s.used - s.pinned_used <= s.capacity.saturating_sub(s.pinned_used),
        "unpinned charge {} exceeds the room pinned entries leave ({} - {})",
        s.used - s.pinned_used,
        s.capacity,
        s.pinned_used
    );
}

#[test]
fn pinned_entries_survive_any_insert_pressure() {
    for policy in Policy::ALL {
        let (engine, rec, _) = small_engine(policy, 8);
        engine.insert(b"p0", val("p0"), &pinned()).expect("room");
        engine.insert(b"p1", val("p1"), &pinned()).expect("room");
        engine
            .insert(b"p2", val("p2"), &InsertOptions::new())
            .expect("room");
        assert!(engine.pin(b"p2"));
        engine
            .insert(b"p3", val("p3"), &InsertOptions::new())
            .expect("room");
        assert!(engine.pin(b"p3"));
        assert!(!engine.pin(b"absent"));
        for i in 0..2000 {
            let k = format!("k{}", i % 300);
            let outcome = engine.insert(k.as_bytes(), val(&k), &InsertOptions::new());
            assert!(
                outcome.is_ok(),
                "{policy}: four of eight slots are free: {outcome:?}"
            );
            // Reads give frequency-based policies a reason to prefer other entries.
            let _ = engine.get(format!("k{}", i % 7).as_bytes());
        }
        for p in ["p0", "p1", "p2", "p3"] {
            let view = engine
                .peek(p.as_bytes())
                .unwrap_or_else(|| panic!("{policy}: {p} evicted"));
            assert!(view.pinned, "{policy}: {p}");
            assert_eq!(view.value, val(p));
        }
        assert!(
            rec.take().iter().all(|r| !r.key.starts_with(b"p")),
            "{policy}"
        );
        let s = engine.stats();
        assert_eq!(
            (s.pinned_entries, s.pinned_used, s.entries),
            (4, 4, 8),
            "{policy}: {s:?}"
        );
        engine.check_invariants();
    }
}

#[test]
fn everything_pinned_refuses_an_insert_and_changes_nothing() {
    for policy in Policy::ALL {
        let (engine, rec, _) = small_engine(policy, 4);
        for k in ["a", "b", "c", "d"] {
            engine
                .insert(k.as_bytes(), val(k), &pinned())
                .expect("room");
        }
        let before = engine.stats();
        let err = engine.insert(b"e", val("e"), &InsertOptions::new());
        assert_eq!(
            err,
            Err(InsertError::NoRoom {
                charge: 1,
                pinned: 4,
                limit: 4
            }),
            "{policy}"
        );
        let err = engine.insert(b"e", val("e"), &pinned());
        assert!(
            matches!(err, Err(InsertError::NoRoom { .. })),
            "{policy}: {err:?}"
        );
        let after = engine.stats();
        assert_eq!(after.no_room, before.no_room + 2, "{policy}");
        assert_eq!(
            after,
            ringcache_engine::Stats {
                no_room: after.no_room,
                ..before
            },
            "{policy}"
        );
        assert!(rec.take().is_empty(), "{policy}: nothing was removed");
        for k in ["a", "b", "c", "d"] {
            assert_eq!(
                engine.peek(k.as_bytes()).map(|v| v.value),
                Some(val(k)),
                "{policy}"
            );
        }
        assert!(!engine.contains(b"e"), "{policy}");

        // Overwriting a pinned key needs no extra room (the old value leaves).
        let outcome = engine.insert(b"a", val("a2"), &pinned());
        assert_eq!(
            outcome,
            Ok(InsertOutcome::Replaced {
                previous_version: 0
            }),
            "{policy}"
        );
        assert_eq!(engine.get(b"a"), Some(val("a2")));
        engine.check_invariants();
    }
}

#[test]
fn no_room_in_byte_mode_is_pinned_charge_plus_entry_charge_over_the_limit() {
    let limit = 10 * (ENTRY_OVERHEAD + 100);
    let engine = Engine::builder(Capacity::Bytes(limit))
        .policy(Policy::Lru)
        .shards(1)
        .build();
    let value = bytes::Bytes::from(vec![7u8; 99]);
    let charge = 1 + 99 + ENTRY_OVERHEAD;
    for i in 0..9u8 {
        engine.insert(&[i], value.clone(), &pinned()).expect("room");
    }
    // One more of the same charge fits exactly (pinned 9 × charge + charge = limit).
    engine
        .insert(b"x", value.clone(), &InsertOptions::new())
        .expect("fits exactly");
    // One byte more does not.
    let err = engine.insert(
        b"y",
        bytes::Bytes::from(vec![7u8; 100]),
        &InsertOptions::new(),
    );
    assert_eq!(
        err,
        Err(InsertError::NoRoom {
            charge: charge + 1,
            pinned: 9 * charge,
            limit
        })
    );
    assert!(engine.contains(b"x"), "a refused insert evicts nothing");
    assert_eq!(engine.stats().no_room, 1);
}

#[test]
fn unpin_makes_an_entry_evictable_again() {
    for policy in Policy::ALL {
        let (engine, rec, _) = small_engine(policy, 4);
        for k in ["a", "b", "c", "d"] {
            engine
                .insert(k.as_bytes(), val(k), &pinned())
                .expect("room");
        }
        assert!(engine.unpin(b"b"));
        assert!(engine.unpin(b"b"), "unpinning an unpinned entry is a no-op");
        assert!(!engine.unpin(b"absent"));
        assert!(!engine.peek(b"b").expect("b is live").pinned);
        assert_eq!(engine.stats().pinned_entries, 3);
        let outcome = engine.insert(b"e", val("e"), &InsertOptions::new());
        assert!(outcome.is_ok(), "{policy}: {outcome:?}");
        // Either b or the newcomer goes (an admission policy may reject e): never a
        // pinned entry.
        let removed = rec.take_keys();
        assert_eq!(removed.len(), 1, "{policy}: {removed:?}");
        assert!(
            removed == vec![size("b")] || removed == vec![size("e")],
            "{policy}: {removed:?}"
        );
        for k in ["a", "c", "d"] {
            assert!(
                engine.contains(k.as_bytes()),
                "{policy}: pinned {k} evicted"
            );
        }
        engine.check_invariants();
    }
}

#[test]
fn overwrite_decides_pinning() {
    let (engine, rec, _) = small_engine(Policy::Lru, 2);
    engine.insert(b"a", val("a"), &pinned()).expect("room");
    engine
        .insert(b"a", val("a2"), &InsertOptions::new())
        .expect("room");
    assert!(
        !engine.peek(b"a").expect("live").pinned,
        "an unpinned overwrite unpins"
    );
    engine
        .insert(b"b", val("b"), &InsertOptions::new())
        .expect("room");
    engine
        .insert(b"c", val("c"), &InsertOptions::new())
        .expect("room");
    let removed = rec.take_keys();
    assert_eq!(removed.last(), Some(&size("a")), "{removed:?}");
    engine.insert(b"b", val("b2"), &pinned()).expect("room");
    assert!(
        engine.peek(b"b").expect("live").pinned,
        "a pinned overwrite pins"
    );
    assert_eq!(engine.stats().pinned_entries, 1);
    engine.check_invariants();
}

#[test]
fn pinned_entries_still_expire() {
    for policy in Policy::ALL {
        let (engine, rec, clock) = small_engine(policy, 4);
        let ttl = pinned().ttl(Duration::from_secs(5));
        engine.insert(b"t", val("t"), &ttl).expect("room");
        engine
            .insert(b"i", val("i"), &pinned().tti(Duration::from_secs(5)))
            .expect("room");
        engine
            .insert(b"u", val("u"), &InsertOptions::new())
            .expect("room");
        assert!(engine.pin(b"u"));
        assert!(engine.touch(b"u", Some(Duration::from_secs(5))));
        clock.advance(Duration::from_secs(4));
        assert!(
            engine.get(b"i").is_some(),
            "{policy}: read refreshes a pinned idle entry"
        );
        clock.advance(Duration::from_secs(1));
        assert!(
            engine.get(b"t").is_none(),
            "{policy}: pinned TTL entry expired"
        );
        assert!(
            engine.get(b"u").is_none(),
            "{policy}: pinned after touch, expired"
        );
        assert!(
            engine.get(b"i").is_some(),
            "{policy}: idle entry was read at 4 s"
        );
        clock.advance(Duration::from_secs(5));
        assert!(
            engine.get(b"i").is_none(),
            "{policy}: pinned idle entry expired"
        );
        let mut removed = rec.take_keys();
        removed.sort_by(|x, y| x.0.cmp(&y.0));
        let expired = |k: &str| (k.to_owned(), RemovalCause::Expired);
        assert_eq!(
            removed,
            vec![expired("i"), expired("t"), expired("u")],
            "{policy}"
        );
        let s = engine.stats();
        assert_eq!(
            (s.pinned_entries, s.pinned_used, s.entries),
            (0, 0, 0),
            "{policy}"
        );
        engine.check_invariants();
    }
}

#[test]
fn pinned_expired_entries_are_reclaimed_without_reads() {
    let (engine, rec, clock) = small_engine(Policy::Adaptive, 8);
    for k in ["a", "b"] {
        engine
            .insert(k.as_bytes(), val(k), &pinned().ttl(Duration::from_secs(1)))
            .expect("room");
    }
    clock.advance(Duration::from_secs(1));
    assert_eq!(engine.reclaim_expired(10), 2);
    assert_eq!(rec.take().len(), 2);
    assert_eq!(engine.stats().pinned_used, 0);
}

#[test]
fn an_expired_pinned_entry_does_not_block_an_insert() {
    // Regression: an insert reclaims only a few expired entries up front; the room check
    // used to count expired pinned entries further down the expiry heap and fail with
    // NoRoom. An expired entry is gone as far as callers can tell.
    let (engine, rec, clock) = small_engine(Policy::Lru, 10);
    let soon = InsertOptions::new().ttl(Duration::from_secs(1));
    for k in ["a", "b", "c", "d"] {
        engine.insert(k.as_bytes(), val(k), &soon).expect("room");
    }
    let big = pinned().ttl(Duration::from_secs(2)).charge(6);
    engine.insert(b"p", val("p"), &big).expect("room");
    clock.advance(Duration::from_secs(3));
    assert!(!engine.contains(b"p"), "p is expired");
    let outcome = engine.insert(b"k", val("k"), &InsertOptions::new().charge(5));
    assert_eq!(
        outcome,
        Ok(InsertOutcome::Inserted),
        "everything else is expired: 5 of 10 is free"
    );
    assert!(engine.contains(b"k"));
    assert!(rec.take().iter().all(|r| r.cause == RemovalCause::Expired));
    engine.check_invariants();
}

#[test]
fn shrinking_below_the_pinned_charge_then_unpinning_restores_the_bound() {
    for policy in Policy::ALL {
        let (engine, rec, _) = small_engine(policy, 6);
        for k in ["a", "b", "c", "d"] {
            engine
                .insert(k.as_bytes(), val(k), &pinned())
                .expect("room");
        }
        for k in ["x", "y"] {
            engine
                .insert(k.as_bytes(), val(k), &InsertOptions::new())
                .expect("room");
        }
        engine.set_capacity(2);
        // The unpinned entries go; the pinned ones stay, over the bound.
        let mut removed = rec.take_keys();
        removed.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(removed, vec![size("x"), size("y")], "{policy}");
        let s = engine.stats();
        assert_eq!((s.used, s.pinned_used, s.capacity), (4, 4, 2), "{policy}");
        engine.check_invariants();
        let err = engine.insert(b"e", val("e"), &InsertOptions::new());
        assert!(
            matches!(
                err,
                Err(InsertError::NoRoom {
                    pinned: 4,
                    limit: 2,
                    ..
                })
            ),
            "{policy}: {err:?}"
        );

        // Regression: unpinning used to leave the entry over the bound (no eviction), so
        // `check_invariants` failed.
        assert!(engine.unpin(b"a"));
        assert_within_bound(&engine);
        assert!(engine.unpin(b"b"));
        assert_within_bound(&engine);
        engine.check_invariants();
        assert!(
            engine.contains(b"c") && engine.contains(b"d"),
            "{policy}: pinned entries stay"
        );
    }
}

#[test]
fn switching_policy_keeps_pinned_and_unpinned_entries() {
    let rec = Recorder::new();
    let clock = MockClock::new();
    let engine = rec
        .install(
            Engine::builder(Capacity::Entries(16))
                .shards(1)
                .policy(Policy::Adaptive)
                .clock(Arc::new(clock.clone())),
        )
        .build();
    for i in 0..4 {
        engine
            .insert(format!("p{i}").as_bytes(), val("p"), &pinned())
            .expect("room");
    }
    for i in 0..8 {
        engine
            .insert(format!("u{i}").as_bytes(), val("u"), &InsertOptions::new())
            .expect("room");
    }
    for policy in Policy::ALL.into_iter().chain(Policy::ALL.into_iter().rev()) {
        engine.set_policy(policy);
        assert_eq!(engine.policy(), policy);
        assert!(
            rec.take().is_empty(),
            "switching to {policy} removed entries"
        );
        for i in 0..4 {
            let view = engine
                .peek(format!("p{i}").as_bytes())
                .expect("pinned entry kept");
            assert!(view.pinned, "{policy}: p{i} stays pinned");
        }
        for i in 0..8 {
            let view = engine
                .peek(format!("u{i}").as_bytes())
                .expect("unpinned entry kept");
            assert!(!view.pinned, "{policy}: u{i} stays unpinned");
        }
        engine.check_invariants();
    }
    // Under the last policy, pressure evicts only unpinned entries.
    for i in 0..100 {
        engine
            .insert(format!("n{i}").as_bytes(), val("n"), &InsertOptions::new())
            .expect("room");
    }
    for i in 0..4 {
        assert!(engine.contains(format!("p{i}").as_bytes()));
    }
    assert!(
        rec.take()
            .iter()
            .all(|r| r.cause == RemovalCause::Size && !r.key.starts_with(b"p"))
    );
    // Unpinning after a switch hands the entry to the new policy.
    assert!(engine.unpin(b"p0"));
    for i in 0..100 {
        engine
            .insert(format!("m{i}").as_bytes(), val("m"), &InsertOptions::new())
            .expect("room");
    }
    assert!(
        !engine.contains(b"p0"),
        "an unpinned entry is evictable under the new policy"
    );
    engine.check_invariants();
}

#[test]
fn pinning_overwrite_with_a_different_size_keeps_policy_accounting() {
    // Regression: overwriting an unpinned entry with a pinned one of another size used
    // to store the new charge before the policy unlinked the entry, so list-based
    // policies subtracted the wrong charge and their segment weights drifted (an
    // underflow panic in debug builds).
    let mut broken = Vec::new();
    for policy in Policy::ALL {
        let run = std::panic::catch_unwind(|| {
            let engine = Engine::builder(Capacity::Bytes(64 * (ENTRY_OVERHEAD + 100)))
                .policy(policy)
                .shards(1)
                .build();
            engine
                .insert(b"a", bytes::Bytes::from(vec![1; 1]), &InsertOptions::new())
                .expect("room");
            engine
                .insert(b"b", bytes::Bytes::from(vec![1; 1]), &InsertOptions::new())
                .expect("room");
            engine
                .insert(b"a", bytes::Bytes::from(vec![2; 100]), &pinned())
                .expect("room");
            let view = engine.peek(b"a").expect("a is held");
            assert!(view.pinned && view.value.len() == 100);
            engine
                .insert(b"b", bytes::Bytes::from(vec![2; 50]), &InsertOptions::new())
                .expect("room");
            for i in 0..500u32 {
                let _ = engine.insert(
                    &i.to_be_bytes(),
                    bytes::Bytes::from(vec![3; 90]),
                    &InsertOptions::new(),
                );
            }
            assert!(engine.contains(b"a"));
            engine.check_invariants();
        });
        if run.is_err() {
            broken.push(policy);
        }
    }
    assert!(
        broken.is_empty(),
        "a pinning overwrite with a new size broke: {broken:?}"
    );
}
