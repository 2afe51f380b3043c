//! Time to live and time to idle, driven by a [`MockClock`]: when entries stop being
//! readable, what refreshes them, and how expired entries are reclaimed without being
//! read.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Recorder, small_engine, val};
use ringcache_engine::{Capacity, Engine, InsertOptions, MockClock, Policy, RemovalCause};

const NS: Duration = Duration::from_nanos(1);

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn ttl_entry_is_returned_before_its_deadline_and_never_at_or_after() {
    for policy in Policy::ALL {
        let (engine, rec, clock) = small_engine(policy, 16);
        engine
            .insert(b"k", val("v"), &InsertOptions::new().ttl(secs(10)))
            .expect("room");
        clock.advance(secs(10) - NS);
        assert_eq!(
            engine.get(b"k"),
            Some(val("v")),
            "{policy}: 1ns before the deadline"
        );
        let view = engine.peek(b"k").expect("still live");
        assert_eq!(view.expires_in, Some(NS), "{policy}");
        clock.advance(NS);
        assert!(
            engine.peek(b"k").is_none(),
            "{policy}: peek at the deadline"
        );
        assert!(!engine.contains(b"k"), "{policy}: contains at the deadline");
        assert!(engine.get(b"k").is_none(), "{policy}: get at the deadline");
        assert!(
            engine.get_entry(b"k").is_none(),
            "{policy}: get_entry after the deadline"
        );
        clock.advance(secs(3600));
        assert!(
            engine.get(b"k").is_none(),
            "{policy}: long after the deadline"
        );
        let removed = rec.take_keys();
        assert_eq!(
            removed,
            vec![("k".to_owned(), RemovalCause::Expired)],
            "{policy}"
        );
        assert_eq!(engine.len(), 0, "{policy}");
        engine.check_invariants();
    }
}

#[test]
fn expired_entry_counts_as_a_miss() {
    let (engine, _, clock) = small_engine(Policy::Lru, 16);
    engine
        .insert(b"k", val("v"), &InsertOptions::new().ttl(secs(1)))
        .expect("room");
    assert!(engine.get(b"k").is_some());
    clock.advance(secs(1));
    assert!(engine.get(b"k").is_none());
    let s = engine.stats();
    assert_eq!((s.hits, s.misses, s.expired), (1, 1, 1), "{s:?}");
}

#[test]
fn tti_is_extended_by_every_read_and_expires_after_idle() {
    for policy in Policy::ALL {
        let (engine, _, clock) = small_engine(policy, 16);
        engine
            .insert(b"k", val("v"), &InsertOptions::new().tti(secs(10)))
            .expect("room");
        // Read every 9 s for a minute: each read restarts the idle clock.
        for _ in 0..7 {
            clock.advance(secs(9));
            assert!(
                engine.get(b"k").is_some(),
                "{policy}: read within the idle time"
            );
        }
        clock.advance(secs(10) - NS);
        assert!(
            engine.get_entry(b"k").is_some(),
            "{policy}: 1ns before idling out"
        );
        clock.advance(secs(10));
        assert!(
            engine.get(b"k").is_none(),
            "{policy}: idle for the full period"
        );
        assert_eq!(engine.stats().expired, 1, "{policy}");
    }
}

#[test]
fn ttl_caps_tti_even_when_read() {
    let (engine, _, clock) = small_engine(Policy::Adaptive, 16);
    let opts = InsertOptions::new().ttl(secs(20)).tti(secs(10));
    engine.insert(b"k", val("v"), &opts).expect("room");
    for _ in 0..3 {
        clock.advance(secs(6));
        assert!(engine.get(b"k").is_some());
    }
    clock.advance(secs(2)); // t = 20: the TTL ends although the entry was read at 18
    assert!(engine.get(b"k").is_none());
}

#[test]
fn peek_does_not_extend_idle_time() {
    let (engine, _, clock) = small_engine(Policy::Lru, 16);
    engine
        .insert(b"k", val("v"), &InsertOptions::new().tti(secs(10)))
        .expect("room");
    clock.advance(secs(9));
    assert!(engine.peek(b"k").is_some());
    assert!(engine.contains(b"k"));
    clock.advance(secs(1));
    assert!(
        engine.get(b"k").is_none(),
        "peek and contains are not accesses"
    );
    let s = engine.stats();
    assert_eq!(
        (s.hits, s.misses),
        (0, 1),
        "peek and contains are not counted"
    );
}

#[test]
fn touch_replaces_the_ttl() {
    let (engine, _, clock) = small_engine(Policy::Ttl, 16);
    engine
        .insert(b"k", val("v"), &InsertOptions::new().ttl(secs(10)))
        .expect("room");
    clock.advance(secs(5));
    assert!(engine.touch(b"k", Some(secs(20)))); // deadline 25
    clock.advance(secs(10)); // 15: past the old deadline
    assert_eq!(engine.peek(b"k").and_then(|v| v.expires_in), Some(secs(10)));
    // A shorter TTL replaces a longer one too.
    assert!(engine.touch(b"k", Some(secs(1)))); // deadline 16
    clock.advance(secs(1));
    assert!(engine.get(b"k").is_none());
    assert!(
        !engine.touch(b"k", Some(secs(100))),
        "touch does not revive an expired entry"
    );

    // `None` removes the TTL.
    engine
        .insert(b"n", val("v"), &InsertOptions::new().ttl(secs(1)))
        .expect("room");
    assert!(engine.touch(b"n", None));
    clock.advance(secs(1_000_000));
    assert_eq!(engine.get_entry(b"n").map(|v| v.expires_in), Some(None));
    assert!(!engine.touch(b"missing", Some(secs(1))));
    engine.check_invariants();
}

#[test]
fn overwrite_sets_a_fresh_ttl() {
    let (engine, _, clock) = small_engine(Policy::Lru, 16);
    engine
        .insert(b"k", val("1"), &InsertOptions::new().ttl(secs(10)))
        .expect("room");
    clock.advance(secs(9));
    engine
        .insert(b"k", val("2"), &InsertOptions::new())
        .expect("room");
    clock.advance(secs(100));
    assert_eq!(engine.get(b"k"), Some(val("2")), "the overwrite had no TTL");
    engine
        .insert(b"k", val("3"), &InsertOptions::new().ttl(secs(5)))
        .expect("room");
    clock.advance(secs(5));
    assert!(engine.get(b"k").is_none());
}

/// An engine with one shard, `n` entries with TTL 1 s (keys `e0..`) and a clock already
/// 2 s later, so all of them are expired but none reclaimed yet.
fn expired_engine(n: usize) -> (Engine, Recorder, MockClock) {
    let (engine, rec, clock) = small_engine(Policy::Lru, 1000);
    for i in 0..n {
        let k = format!("e{i}");
        engine
            .insert(k.as_bytes(), val(&k), &InsertOptions::new().ttl(secs(1)))
            .expect("room");
    }
    engine
        .insert(b"keep", val("keep"), &InsertOptions::new())
        .expect("room");
    clock.advance(secs(2));
    assert_eq!(
        engine.len(),
        n + 1,
        "nothing is reclaimed while time stands still"
    );
    (engine, rec, clock)
}

#[test]
fn writes_to_other_keys_reclaim_expired_entries() {
    let (engine, rec, _) = expired_engine(20);
    engine
        .insert(b"w0", val("w"), &InsertOptions::new())
        .expect("room");
    let first = engine.stats().expired;
    assert!(first > 0, "a write reclaims some expired entries");
    assert!(
        first < 20,
        "but only a few per write (bounded work), reclaimed {first}"
    );
    assert_eq!(engine.len() as u64, 20 + 2 - first);
    for i in 1..20 {
        engine
            .insert(format!("w{i}").as_bytes(), val("w"), &InsertOptions::new())
            .expect("room");
    }
    assert_eq!(
        engine.stats().expired,
        20,
        "enough writes reclaim all of them"
    );
    assert_eq!(engine.len(), 21, "keep and w0..w19");
    let removed = rec.take();
    assert_eq!(removed.len(), 20);
    assert!(
        removed
            .iter()
            .all(|r| r.cause == RemovalCause::Expired && r.key.starts_with(b"e"))
    );
    engine.check_invariants();
}

#[test]
fn reads_of_other_keys_reclaim_expired_entries() {
    let (engine, _, _) = expired_engine(20);
    // A few per 64 reads, whether they hit or miss.
    for _ in 0..64 {
        assert!(engine.get(b"keep").is_some());
    }
    assert!(engine.stats().expired > 0);
    for _ in 0..64 * 20 {
        assert!(engine.get(b"absent").is_none());
    }
    assert_eq!(engine.stats().expired, 20);
    assert_eq!(engine.len(), 1);
}

#[test]
fn reclaim_expired_does_bounded_work_per_call() {
    let (engine, rec, _) = expired_engine(9);
    let mut calls = 0;
    let mut total = 0;
    loop {
        let n = engine.reclaim_expired(2);
        assert!(n <= 2, "budget 2 on one shard removed {n}");
        assert_eq!(engine.len(), 10 - total - n);
        total += n;
        calls += 1;
        if n == 0 {
            break;
        }
    }
    assert_eq!((total, calls), (9, 6), "2+2+2+2+1 then nothing");
    assert_eq!(engine.stats().expired, 9);
    assert_eq!(rec.take().len(), 9);
    assert!(engine.contains(b"keep"));
    assert_eq!(engine.reclaim_expired(100), 0);
}

#[test]
fn reclaim_expired_budget_is_per_shard() {
    let rec = Recorder::new();
    let clock = MockClock::new();
    let engine = rec
        .install(
            Engine::builder(Capacity::Entries(1 << 12))
                .shards(4)
                .clock(Arc::new(clock.clone())),
        )
        .build();
    assert_eq!(engine.shard_count(), 4);
    for i in 0..200 {
        let k = format!("e{i}");
        engine
            .insert(k.as_bytes(), val(&k), &InsertOptions::new().ttl(secs(1)))
            .expect("room");
    }
    clock.advance(secs(1));
    let mut left = 200;
    while left > 0 {
        let n = engine.reclaim_expired(3);
        assert!(n > 0, "expired entries are left: {left}");
        assert!(n <= 3 * 4, "budget 3 per shard on 4 shards removed {n}");
        left -= n;
        assert_eq!(engine.len(), left);
    }
    assert_eq!(engine.stats().expired, 200);
    assert!(rec.take().iter().all(|r| r.cause == RemovalCause::Expired));
    engine.check_invariants();
}

#[test]
fn reclaim_respects_a_moved_idle_deadline() {
    let (engine, rec, clock) = small_engine(Policy::Lru, 16);
    engine
        .insert(b"idle", val("v"), &InsertOptions::new().tti(secs(10)))
        .expect("room");
    clock.advance(secs(9));
    assert!(engine.get(b"idle").is_some()); // idle deadline 19 now
    clock.advance(secs(3)); // 12: past the first idle deadline, not the second
    assert_eq!(engine.reclaim_expired(10), 0);
    engine
        .insert(b"w", val("w"), &InsertOptions::new())
        .expect("room");
    assert!(
        engine.peek(b"idle").is_some(),
        "a read entry is not reclaimed early"
    );
    assert!(rec.take().is_empty());
    clock.advance(secs(7)); // 19
    assert_eq!(engine.reclaim_expired(10), 1);
    assert_eq!(
        rec.take_keys(),
        vec![("idle".to_owned(), RemovalCause::Expired)]
    );
    engine.check_invariants();
}

#[test]
fn expired_entries_go_before_live_ones_are_evicted() {
    for policy in Policy::ALL {
        let (engine, rec, clock) = small_engine(policy, 4);
        engine
            .insert(b"t", val("t"), &InsertOptions::new().ttl(secs(1)))
            .expect("room");
        for k in ["a", "b", "c"] {
            engine
                .insert(k.as_bytes(), val(k), &InsertOptions::new())
                .expect("room");
        }
        clock.advance(secs(1));
        engine
            .insert(b"d", val("d"), &InsertOptions::new())
            .expect("room");
        assert_eq!(
            rec.take_keys(),
            vec![("t".to_owned(), RemovalCause::Expired)],
            "{policy}"
        );
        for k in ["a", "b", "c", "d"] {
            assert!(engine.contains(k.as_bytes()), "{policy}: {k} was evicted");
        }
    }
}

const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[test]
fn huge_ttl_saturates_to_no_expiry() {
    let (engine, _, clock) = small_engine(Policy::Ttl, 16);
    engine
        .insert(b"k", val("v"), &InsertOptions::new().ttl(Duration::MAX))
        .expect("room");
    engine.check_invariants();
    clock.advance(CENTURY);
    assert!(engine.get(b"k").is_some());
    engine.check_invariants();
}

#[test]
fn huge_tti_saturates_to_no_expiry() {
    // An idle time that saturates the deadline arithmetic means "never idles out".
    let (engine, _, clock) = small_engine(Policy::Lru, 16);
    engine
        .insert(b"k", val("v"), &InsertOptions::new().tti(Duration::MAX))
        .expect("room");
    clock.advance(CENTURY);
    assert!(engine.get(b"k").is_some());
    // Regression: such an entry has an idle time but a saturated deadline of `NEVER`,
    // so it is never filed in the expiry heap; `check_invariants` used to count it as
    // expiring and panic ("expiry heap misses entries") on this legal state.
    engine.check_invariants();
}

#[test]
fn get_entry_with_lends_what_get_entry_copies_and_counts_the_same() {
    for policy in Policy::ALL {
        let (engine, rec, clock) = small_engine(policy, 16);
        engine
            .insert(b"k", val("value"), &InsertOptions::new().ttl(secs(10)))
            .expect("room");
        clock.advance(secs(4));
        let copied = engine.get_entry(b"k").expect("live");
        let lent = engine
            .get_entry_with(b"k", |e| {
                (e.value.to_vec(), e.version, e.flags, e.expires_in)
            })
            .expect("live");
        assert_eq!(
            lent,
            (
                copied.value.to_vec(),
                copied.version,
                copied.flags,
                copied.expires_in
            ),
            "{policy}"
        );
        assert_eq!(lent.3, Some(secs(6)), "{policy}");
        assert_eq!(engine.stats().hits, 2, "{policy}: both reads count");
        assert!(
            engine.get_entry_with(b"missing", |_| ()).is_none(),
            "{policy}"
        );
        assert_eq!(engine.stats().misses, 1, "{policy}");
        clock.advance(secs(6));
        let mut called = false;
        assert!(
            engine.get_entry_with(b"k", |_| called = true).is_none(),
            "{policy}: at the deadline"
        );
        assert!(!called, "{policy}: not called for an expired entry");
        assert_eq!(
            rec.take_keys(),
            vec![("k".to_owned(), RemovalCause::Expired)],
            "{policy}: the expired entry is reclaimed and reported"
        );
        engine.check_invariants();
    }
}
