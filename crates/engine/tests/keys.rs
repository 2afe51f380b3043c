//! Keys of every length round-trip: empty, short (stored inline in the entry) and long
//! (stored on the heap), through reads, the removal listener, `for_each` and `retain`.

mod common;

use bytes::Bytes;
use common::Recorder;
use ringcache_engine::{Capacity, Engine, InsertOptions, Policy, RemovalCause};

/// Lengths around the engine's inline-key limit (22 bytes) and well past it.
const LENGTHS: [usize; 9] = [0, 1, 2, 21, 22, 23, 24, 64, 1000];

/// A key of `len` bytes whose content depends on `len` and `salt`.
fn key(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

#[test]
fn keys_of_every_length_round_trip() {
    for policy in Policy::ALL {
        let rec = Recorder::new();
        let engine = rec
            .install(
                Engine::builder(Capacity::Bytes(1 << 20))
                    .policy(policy)
                    .shards(2),
            )
            .build();
        for &len in &LENGTHS {
            let k = key(len, 1);
            let v = Bytes::from(format!("v{len}"));
            engine
                .insert(&k, v.clone(), &InsertOptions::new())
                .expect("room");
            assert_eq!(engine.get(&k), Some(v), "{policy}: key of {len} bytes");
            // Same length, other content: a different key.
            assert!(
                len == 0 || !engine.contains(&key(len, 2)),
                "{policy}: {len}"
            );
        }
        let mut seen: Vec<(Vec<u8>, Bytes)> = Vec::new();
        engine.for_each(|k, v| seen.push((k.to_vec(), v.value.clone())));
        seen.sort();
        let mut want: Vec<(Vec<u8>, Bytes)> = LENGTHS
            .iter()
            .map(|&len| (key(len, 1), Bytes::from(format!("v{len}"))))
            .collect();
        want.sort();
        assert_eq!(seen, want, "{policy}: for_each sees every key intact");

        // Removals hand back the exact key, whatever its representation.
        for &len in &LENGTHS[..4] {
            assert!(engine.remove(&key(len, 1)).is_some());
        }
        let dropped = engine.retain(|k, _| k.len() > 22);
        assert_eq!(dropped, 1, "{policy}: retain drops the 22-byte key");
        let mut removed: Vec<Vec<u8>> = rec.take().into_iter().map(|r| r.key.to_vec()).collect();
        removed.sort();
        let mut want: Vec<Vec<u8>> = LENGTHS
            .iter()
            .filter(|&&len| len <= 22)
            .map(|&len| key(len, 1))
            .collect();
        want.sort();
        assert_eq!(removed, want, "{policy}");
        for &len in &LENGTHS[5..] {
            assert!(engine.contains(&key(len, 1)), "{policy}: {len}");
        }
        engine.check_invariants();
    }
}

#[test]
fn evicted_and_replaced_long_keys_are_reported_intact() {
    let rec = Recorder::new();
    let engine = rec
        .install(
            Engine::builder(Capacity::Entries(2))
                .policy(Policy::Fifo)
                .shards(1),
        )
        .build();
    let long = key(300, 7);
    let short = key(5, 7);
    engine
        .insert(&long, Bytes::from_static(b"1"), &InsertOptions::new())
        .expect("room");
    engine
        .insert(&long, Bytes::from_static(b"2"), &InsertOptions::new())
        .expect("room");
    engine
        .insert(&short, Bytes::from_static(b"3"), &InsertOptions::new())
        .expect("room");
    engine
        .insert(b"third", Bytes::from_static(b"4"), &InsertOptions::new())
        .expect("room");
    let removed: Vec<(Vec<u8>, RemovalCause)> = rec
        .take()
        .into_iter()
        .map(|r| (r.key.to_vec(), r.cause))
        .collect();
    assert_eq!(
        removed,
        vec![
            (long.clone(), RemovalCause::Replaced),
            (long, RemovalCause::Size)
        ]
    );
}
