//! Which entry each policy evicts, and the cause every kind of removal reports.
//!
//! Exact orders use one shard (the bound is split across shards, and each shard runs
//! its own policy) and entry-count capacity, so every entry is charged 1.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{Recorder, size, small_engine, val};
use ringcache_engine::{Capacity, Engine, InsertOptions, InsertOutcome, Policy, RemovalCause};

fn put(engine: &Engine, key: &str) -> InsertOutcome {
    engine
        .insert(key.as_bytes(), val(key), &InsertOptions::new())
        .expect("an unconditional, unpinned insert of a small entry succeeds")
}

fn present(engine: &Engine, keys: &[&str]) -> Vec<String> {
    keys.iter()
        .filter(|k| engine.contains(k.as_bytes()))
        .map(|k| (*k).to_owned())
        .collect()
}

#[test]
fn lru_evicts_least_recently_used_and_reads_reorder() {
    let (engine, rec, _) = small_engine(Policy::Lru, 3);
    for k in ["a", "b", "c"] {
        put(&engine, k);
    }
    assert!(
        rec.take().is_empty(),
        "nothing is evicted while within the bound"
    );

    // Reading `a` makes `b` the least recently used.
    assert!(engine.get(b"a").is_some());
    put(&engine, "d");
    assert_eq!(rec.take_keys(), vec![size("b")]);

    // Recency now (oldest first): c, a, d. Reading c leaves a as the oldest.
    assert!(engine.get(b"c").is_some());
    put(&engine, "e");
    assert_eq!(rec.take_keys(), vec![size("a")]);

    // An overwrite counts as a use too: d, c, e -> overwrite d -> c is oldest.
    put(&engine, "d");
    assert_eq!(
        rec.take_keys(),
        vec![("d".to_owned(), RemovalCause::Replaced)]
    );
    put(&engine, "f");
    assert_eq!(rec.take_keys(), vec![size("c")]);
    assert_eq!(
        present(&engine, &["a", "b", "c", "d", "e", "f"]),
        ["d", "e", "f"]
    );
    engine.check_invariants();
}

#[test]
fn lru_peek_and_contains_do_not_reorder() {
    let (engine, rec, _) = small_engine(Policy::Lru, 2);
    put(&engine, "a");
    put(&engine, "b");
    assert!(engine.peek(b"a").is_some());
    assert!(engine.contains(b"a"));
    put(&engine, "c");
    assert_eq!(rec.take_keys(), vec![size("a")]);
}

#[test]
fn fifo_evicts_oldest_inserted_and_reads_do_not_reorder() {
    let (engine, rec, _) = small_engine(Policy::Fifo, 3);
    for k in ["a", "b", "c"] {
        put(&engine, k);
    }
    for _ in 0..5 {
        assert!(engine.get(b"a").is_some());
    }
    put(&engine, "d");
    assert_eq!(rec.take_keys(), vec![size("a")]);

    assert!(engine.get(b"b").is_some());
    put(&engine, "e");
    assert_eq!(rec.take_keys(), vec![size("b")]);

    // An overwrite keeps the entry's place: c is still the oldest insertion.
    put(&engine, "c");
    assert_eq!(
        rec.take_keys(),
        vec![("c".to_owned(), RemovalCause::Replaced)]
    );
    put(&engine, "f");
    assert_eq!(rec.take_keys(), vec![size("c")]);
    put(&engine, "g");
    assert_eq!(rec.take_keys(), vec![size("d")]);
    assert_eq!(
        present(&engine, &["a", "b", "c", "d", "e", "f", "g"]),
        ["e", "f", "g"]
    );
    engine.check_invariants();
}

#[test]
fn lfu_evicts_least_frequently_used() {
    // Few accesses in all (fewer than the 16 between agings), so no halving happens.
    let (engine, rec, _) = small_engine(Policy::Lfu, 3);
    for k in ["a", "b", "c"] {
        put(&engine, k);
    }
    for _ in 0..3 {
        assert!(engine.get(b"a").is_some());
    }
    assert!(engine.get(b"c").is_some());
    // Frequencies: a 4, b 1, c 2. A new entry starts at 1 and ties with b; b is older.
    put(&engine, "d");
    assert_eq!(rec.take_keys(), vec![size("b")]);
    // Now d (1) is the least frequent.
    put(&engine, "e");
    assert_eq!(rec.take_keys(), vec![size("d")]);
    assert!(engine.get(b"e").is_some());
    assert!(engine.get(b"e").is_some());
    // a 4, c 2, e 3: the newcomer f is the least frequent and is the victim itself.
    let outcome = put(&engine, "f");
    assert_eq!(outcome, InsertOutcome::Rejected);
    assert_eq!(rec.take_keys(), vec![size("f")]);
    assert_eq!(
        present(&engine, &["a", "b", "c", "d", "e", "f"]),
        ["a", "c", "e"]
    );
    engine.check_invariants();
}

#[test]
fn lfu_ties_go_to_the_least_recently_used() {
    // Unpinning hands an entry back as if newly inserted (frequency 1, most recent).
    // That gives entries of equal frequency a recency order unlike their insertion order.
    let (engine, rec, _) = small_engine(Policy::Lfu, 3);
    for k in ["a", "b", "c"] {
        put(&engine, k);
    }
    assert!(engine.pin(b"a"));
    assert!(engine.unpin(b"a"));
    // Frequency 1, least recent first: b, c, a.
    put(&engine, "d");
    assert_eq!(rec.take_keys(), vec![size("b")]);
    put(&engine, "e");
    assert_eq!(rec.take_keys(), vec![size("c")]);
    put(&engine, "f");
    assert_eq!(rec.take_keys(), vec![size("a")]);
    engine.check_invariants();
}

#[test]
fn lfu_ages_out_a_key_that_was_hot_long_ago() {
    // Frequencies are capped at 31 and halved every max(16, entries) accesses; without
    // aging `old` (read 40 times) would outrank everything forever.
    let (engine, rec, _) = small_engine(Policy::Lfu, 4);
    put(&engine, "old");
    for _ in 0..40 {
        assert!(engine.get(b"old").is_some());
    }
    for k in ["x", "y", "z"] {
        put(&engine, k);
    }
    // A long stretch of accesses that never touches `old`.
    for _ in 0..200 {
        for k in ["x", "y", "z"] {
            assert!(engine.get(k.as_bytes()).is_some());
        }
    }
    assert!(rec.take().is_empty());
    put(&engine, "new");
    assert_eq!(
        rec.take_keys(),
        vec![size("old")],
        "the key hot long ago goes first"
    );
    assert_eq!(
        present(&engine, &["old", "x", "y", "z", "new"]),
        ["x", "y", "z", "new"]
    );

    // Control: with few recent accesses, the old key's frequency still protects it and
    // the newcomer (frequency 1) loses instead.
    // (13 accesses in all: no aging.)
    let (engine, rec, _) = small_engine(Policy::Lfu, 4);
    put(&engine, "old");
    for _ in 0..5 {
        assert!(engine.get(b"old").is_some());
    }
    for k in ["x", "y", "z"] {
        put(&engine, k);
        assert!(engine.get(k.as_bytes()).is_some());
    }
    assert_eq!(put(&engine, "new"), InsertOutcome::Rejected);
    assert_eq!(rec.take_keys(), vec![size("new")]);
}

/// Inserts keys `k0..k{n}` round-robin over a keyspace one larger than the bound and
/// returns every removal as (key, cause).
fn random_run(pin: &[&str]) -> Vec<(String, RemovalCause)> {
    let (engine, rec, _) = small_engine(Policy::Random, 8);
    for k in pin {
        engine
            .insert(k.as_bytes(), val(k), &InsertOptions::new().pinned(true))
            .expect("pinned insert fits");
    }
    for i in 0..600u32 {
        // A multiplicative walk over 0..12 visits keys in a scrambled order.
        let k = format!("k{}", (i * 7) % 12);
        let _ = engine
            .insert(k.as_bytes(), val(&k), &InsertOptions::new())
            .expect("pinned entries leave room");
        engine.check_invariants();
        for p in pin {
            assert!(engine.contains(p.as_bytes()), "pinned {p} was evicted");
        }
    }
    rec.take_keys()
}

#[test]
fn random_is_deterministic_per_seed_and_spreads_victims() {
    let first = random_run(&["p0", "p1"]);
    let second = random_run(&["p0", "p1"]);
    assert_eq!(first, second, "same seed, same operations: same victims");

    let mut evictions: BTreeMap<String, usize> = BTreeMap::new();
    for (k, cause) in &first {
        assert!(!k.starts_with('p'), "pinned {k} was removed ({cause:?})");
        if *cause == RemovalCause::Size {
            *evictions.entry(k.clone()).or_default() += 1;
        }
    }
    // Every unpinned key is evicted sometimes, none always.
    let keys: BTreeSet<String> = (0..12).map(|i| format!("k{i}")).collect();
    let evicted: BTreeSet<String> = evictions.keys().cloned().collect();
    assert_eq!(evicted, keys, "victims: {evictions:?}");
    let total: usize = evictions.values().sum();
    let most = evictions.values().copied().max().unwrap_or(0);
    assert!(
        most * 4 < total,
        "one key takes too many evictions: {evictions:?}"
    );

    // A different seed gives a different sequence.
    let rec = Recorder::new();
    let other = rec
        .install(
            Engine::builder(Capacity::Entries(8))
                .policy(Policy::Random)
                .shards(1)
                .seed(7),
        )
        .build();
    for i in 0..600u32 {
        let k = format!("k{}", (i * 7) % 12);
        let _ = other
            .insert(k.as_bytes(), val(&k), &InsertOptions::new())
            .expect("room");
    }
    let (engine, base, _) = small_engine(Policy::Random, 8);
    for i in 0..600u32 {
        let k = format!("k{}", (i * 7) % 12);
        let _ = engine
            .insert(k.as_bytes(), val(&k), &InsertOptions::new())
            .expect("room");
    }
    assert_ne!(
        rec.take_keys(),
        base.take_keys(),
        "the seed drives the victims"
    );
}

#[test]
fn ttl_evicts_nearest_expiry_first_then_oldest_without_expiry() {
    let (engine, rec, _) = small_engine(Policy::Ttl, 4);
    let ttl = |secs| InsertOptions::new().ttl(Duration::from_secs(secs));
    let ins = |k: &str, opts: InsertOptions| {
        engine.insert(k.as_bytes(), val(k), &opts).expect("room");
    };
    ins("a30", ttl(30));
    ins("none1", InsertOptions::new());
    ins("c10", ttl(10));
    ins("d20", ttl(20));

    ins("e100", ttl(100));
    assert_eq!(rec.take_keys(), vec![size("c10")]);
    ins("none2", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("d20")]);
    ins("none3", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("a30")]);
    ins("none4", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("e100")]);
    // Only entries without expiry remain: oldest insertion first, reads do not matter.
    assert!(engine.get(b"none1").is_some());
    ins("none5", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("none1")]);

    // touch() gives none3 a deadline: it now goes before every entry without one.
    assert!(engine.touch(b"none3", Some(Duration::from_secs(1000))));
    ins("none6", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("none3")]);

    // A newcomer with a deadline is the nearest expiry among entries without one.
    ins("f50", ttl(50));
    assert_eq!(rec.take_keys(), vec![size("f50")]);
    engine.check_invariants();

    // Deadlines are absolute: an entry inserted later with a shorter TTL may still
    // expire after an older one.
    let (engine, rec, clock) = small_engine(Policy::Ttl, 3);
    let ins = |k: &str, opts: InsertOptions| {
        engine.insert(k.as_bytes(), val(k), &opts).expect("room");
    };
    ins("g40", ttl(40));
    ins("f50", ttl(50));
    ins("none", InsertOptions::new());
    clock.advance(Duration::from_secs(10));
    ins("h35", ttl(35)); // deadline 45: after g40 (40), before f50 (50)
    assert_eq!(rec.take_keys(), vec![size("g40")]);
    ins("none2", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("h35")]);
    engine.check_invariants();
}

#[test]
fn ttl_policy_orders_entries_without_expiry_by_when_they_lost_it() {
    // "Entries without expiry go after every expiring one, oldest first (an entry that
    // loses its TTL counts as written at that moment)": touch(None) or an overwrite
    // without a TTL files the entry as the newest of the non-expiring ones.
    let (engine, rec, _) = small_engine(Policy::Ttl, 3);
    let ins = |k: &str, opts: InsertOptions| {
        engine.insert(k.as_bytes(), val(k), &opts).expect("room");
    };
    ins("a", InsertOptions::new());
    ins("b", InsertOptions::new().ttl(Duration::from_secs(100)));
    ins("c", InsertOptions::new());
    assert!(engine.touch(b"b", None));
    // Non-expiring order now a, c, b.
    ins("d", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("a")]);
    ins("e", InsertOptions::new());
    assert_eq!(
        rec.take_keys(),
        vec![size("c")],
        "b lost its TTL after c was written"
    );

    let (engine, rec, _) = small_engine(Policy::Ttl, 2);
    let ins = |k: &str, opts: InsertOptions| {
        engine.insert(k.as_bytes(), val(k), &opts).expect("room");
    };
    ins("x", InsertOptions::new().ttl(Duration::from_secs(100)));
    ins("y", InsertOptions::new());
    // While x expires, it goes first.
    ins("x", InsertOptions::new()); // overwrite without a TTL
    assert_eq!(
        rec.take_keys(),
        vec![("x".to_owned(), RemovalCause::Replaced)]
    );
    ins("z", InsertOptions::new());
    assert_eq!(rec.take_keys(), vec![size("y")], "x was rewritten after y");
}

#[test]
fn ttl_policy_counts_idle_deadlines() {
    let (engine, rec, clock) = small_engine(Policy::Ttl, 2);
    let o = InsertOptions::new();
    engine
        .insert(
            b"idle",
            val("idle"),
            &o.clone().tti(Duration::from_secs(10)),
        )
        .expect("room");
    engine
        .insert(b"ttl", val("ttl"), &o.clone().ttl(Duration::from_secs(15)))
        .expect("room");
    // idle's deadline is 10 (< 15): it goes first ...
    clock.advance(Duration::from_secs(8));
    // ... unless a read moves it to 18 (> 15).
    assert!(engine.get(b"idle").is_some());
    engine.insert(b"x", val("x"), &o).expect("room");
    assert_eq!(rec.take_keys(), vec![size("ttl")]);
}

/// Keys `prefix0..prefix{n}`.
fn keys(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// How many of 50 frequently read keys survive a scan of 1000 keys read once, in a
/// cache of 100.
fn hot_set_after_scan(policy: Policy) -> usize {
    let (engine, _, _) = small_engine(policy, 100);
    let hot = keys("hot", 50);
    for k in &hot {
        put(&engine, k);
    }
    for _ in 0..5 {
        for k in &hot {
            assert!(engine.get(k.as_bytes()).is_some(), "{policy}: {k} fits");
        }
    }
    for k in keys("scan", 1000) {
        if engine.get(k.as_bytes()).is_none() {
            put(&engine, &k);
        }
    }
    engine.check_invariants();
    hot.iter().filter(|k| engine.contains(k.as_bytes())).count()
}

#[test]
fn scan_resistance_s3fifo_and_adaptive_keep_the_hot_set_lru_does_not() {
    assert_eq!(
        hot_set_after_scan(Policy::Lru),
        0,
        "LRU is flushed by a scan"
    );
    for policy in [Policy::S3Fifo, Policy::Adaptive] {
        let kept = hot_set_after_scan(policy);
        assert!(
            kept >= 40,
            "{policy} kept only {kept} of 50 hot keys after a scan"
        );
    }
}

/// Hit ratio of 10 passes over a loop of 150 keys in a cache of 100 (read; insert on
/// a miss).
fn loop_hit_ratio(policy: Policy) -> f64 {
    let (engine, _, _) = small_engine(policy, 100);
    let ring = keys("loop", 150);
    for _ in 0..10 {
        for k in &ring {
            if engine.get(k.as_bytes()).is_none() {
                put(&engine, k);
            }
        }
    }
    engine.check_invariants();
    engine.stats().hit_ratio()
}

#[test]
fn loop_larger_than_cache_adaptive_hits_lru_never() {
    let lru = loop_hit_ratio(Policy::Lru);
    assert!(
        lru == 0.0,
        "LRU on a loop larger than the cache must always miss, got {lru}"
    );
    let adaptive = loop_hit_ratio(Policy::Adaptive);
    // Keeping any stable part of the loop gives hits; 0.1 is far below what keeping
    // most of the cache's worth of it gives (about 0.6) but far above chance.
    assert!(
        adaptive > 0.1,
        "adaptive should keep part of the loop, hit ratio {adaptive}"
    );
}

#[test]
fn removal_causes_replaced_explicit_expired_size() {
    let (engine, rec, clock) = small_engine(Policy::Lru, 2);
    engine
        .insert(b"k", val("old"), &InsertOptions::new().version(1))
        .expect("room");
    let outcome = engine
        .insert(b"k", val("new"), &InsertOptions::new().version(2))
        .expect("room");
    assert_eq!(
        outcome,
        InsertOutcome::Replaced {
            previous_version: 1
        }
    );
    let r = rec.take();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (&*r[0].key, &r[0].value[..], r[0].version, r[0].cause),
        (&b"k"[..], &b"old"[..], 1, RemovalCause::Replaced)
    );
    assert_eq!(engine.get(b"k"), Some(val("new")));

    let removed = engine.remove(b"k").expect("k is live");
    assert_eq!(removed.value, val("new"));
    assert_eq!(removed.version, 2);
    let r = rec.take();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (&*r[0].key, &r[0].value[..], r[0].cause),
        (&b"k"[..], &b"new"[..], RemovalCause::Explicit)
    );
    assert!(
        engine.remove(b"k").is_none(),
        "a second remove finds nothing"
    );
    assert!(rec.take().is_empty(), "and reports nothing");

    engine
        .insert(
            b"t",
            val("t"),
            &InsertOptions::new().ttl(Duration::from_secs(1)),
        )
        .expect("room");
    clock.advance(Duration::from_secs(1));
    assert!(engine.get(b"t").is_none());
    let r = rec.take();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (&*r[0].key, &r[0].value[..], r[0].cause),
        (&b"t"[..], &b"t"[..], RemovalCause::Expired)
    );

    put(&engine, "a");
    put(&engine, "b");
    put(&engine, "c");
    let r = rec.take();
    assert_eq!(r.len(), 1);
    assert_eq!(
        (&*r[0].key, &r[0].value[..], r[0].cause),
        (&b"a"[..], &b"a"[..], RemovalCause::Size)
    );

    let s = engine.stats();
    assert_eq!(
        (s.replaced, s.explicit, s.expired, s.evicted),
        (1, 1, 1, 1),
        "{s:?}"
    );
    assert_eq!(RemovalCause::Size.name(), "size");
}

#[test]
fn retain_and_clear_report_explicit_removals() {
    let (engine, rec, _) = small_engine(Policy::Adaptive, 8);
    for k in ["a1", "b1", "a2", "b2"] {
        put(&engine, k);
    }
    assert_eq!(engine.retain(|k, _| k.starts_with(b"a")), 2);
    let mut removed = rec.take_keys();
    removed.sort_by(|x, y| x.0.cmp(&y.0));
    let explicit = |k: &str| (k.to_owned(), RemovalCause::Explicit);
    assert_eq!(removed, vec![explicit("b1"), explicit("b2")]);
    engine.clear();
    let mut removed = rec.take_keys();
    removed.sort_by(|x, y| x.0.cmp(&y.0));
    assert_eq!(removed, vec![explicit("a1"), explicit("a2")]);
    assert!(engine.is_empty());
    assert_eq!(engine.stats().explicit, 4);
    engine.check_invariants();
}

/// Prefetching is a hint, not an access: it neither counts a hit or miss nor moves an
/// entry in the policy's order, for present and absent keys alike.
#[test]
fn prefetching_is_not_an_access() {
    let (engine, rec, _) = small_engine(Policy::Lru, 3);
    for k in ["a", "b", "c"] {
        put(&engine, k);
    }
    let before = engine.stats();
    // Were these reads, `a` would no longer be the least recently used.
    for k in ["a", "a", "nope", "b"] {
        let h = engine.prefetch_table(k.as_bytes());
        engine.prefetch_entry(h);
        engine.prefetch_value(k.as_bytes(), h);
    }
    let after = engine.stats();
    assert_eq!(
        (after.hits, after.misses),
        (before.hits, before.misses),
        "no access counted"
    );
    put(&engine, "d");
    assert_eq!(rec.take_keys(), vec![size("a")], "the order is unchanged");
    // A value of several cache lines, and an empty one.
    engine
        .insert(b"big", vec![7u8; 1000].into(), &InsertOptions::new())
        .expect("fits");
    engine
        .insert(b"empty", bytes::Bytes::new(), &InsertOptions::new())
        .expect("fits");
    for k in [&b"big"[..], b"empty"] {
        let h = engine.prefetch_table(k);
        engine.prefetch_entry(h);
        engine.prefetch_value(k, h);
        assert!(engine.contains(k));
    }
    engine.check_invariants();
}
