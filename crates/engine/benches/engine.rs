//! Throughput of get-or-insert on a Zipf(1.0) workload: every engine policy on one
//! thread, the default policy on two threads sharing one engine, and quick_cache and
//! moka on one and two threads as references.
//!
//! Run with: `cargo bench -p ringcache-engine --bench engine` (or
//! `scripts/bench-engine.sh` for a Melem/s summary).
//!
//! Workload: 1,000,000 keys (8 bytes each), Zipf(1.0) ranks drawn by a seeded sampler,
//! two precomputed sequences of 2,000,000 requests (one per thread). The cache holds 1%
//! of the keyspace (10,000 entries, entry-count mode). One operation is a `get`, and on a
//! miss an `insert` of a 16-byte static value, so the value costs neither an allocation
//! nor a reference count; the key is still copied into the cache. The engine runs with
//! its default sharding (printed at start), quick_cache with its default shards, moka
//! with its defaults (evictions applied by its own inline housekeeping).
//!
//! Each iteration replays the next 100,000 requests of a thread's sequence (wrapping),
//! so the cache stays warm from criterion's warm-up on and is measured in steady state.

use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkGroup, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
    measurement::WallTime,
};
use ringcache_engine::{Capacity, Engine, Policy};

mod workload;

use workload::{ALPHA, BenchCache, CAPACITY, Fused, KEYSPACE, REQUESTS, VALUE, Zipf, sequence};

/// Requests per thread per iteration.
const BATCH: usize = 100_000;

/// Replays the next `BATCH` requests of `seq` from `*cursor`; returns the hits.
#[inline]
fn run_batch<C: BenchCache + ?Sized>(
    cache: &C,
    seq: &[[u8; 8]],
    cursor: &mut usize,
    value: &Bytes,
) -> u64 {
    let mut hits = 0;
    for _ in 0..BATCH {
        hits += u64::from(cache.get_or_insert(&seq[*cursor], value));
        *cursor += 1;
        if *cursor == seq.len() {
            *cursor = 0;
        }
    }
    hits
}

/// One thread replaying `seqs[0]`.
fn one_thread<C: BenchCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    cache: &C,
    seqs: &[Vec<[u8; 8]>; 2],
) {
    let value = Bytes::from_static(&VALUE);
    let mut cursor = 0;
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                black_box(run_batch(cache, &seqs[0], &mut cursor, &value));
            }
            start.elapsed()
        });
    });
}

/// Two threads sharing `cache`, each replaying its own sequence; timed from a common
/// start until both are done.
fn two_threads<C: BenchCache>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    id: &str,
    cache: &C,
    seqs: &[Vec<[u8; 8]>; 2],
) {
    let value = Bytes::from_static(&VALUE);
    let mut cursors = [0usize; 2];
    group.throughput(Throughput::Elements(2 * BATCH as u64));
    group.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let barrier = Barrier::new(3);
            std::thread::scope(|s| {
                let workers: Vec<_> = cursors
                    .iter_mut()
                    .zip(seqs)
                    .map(|(cursor, seq)| {
                        let (barrier, value) = (&barrier, &value);
                        s.spawn(move || {
                            // A copy on this thread's stack: the two cursors share a
                            // cache line, and writing them in place would add a line
                            // moving between the cores that no cache call causes.
                            let mut local = *cursor;
                            barrier.wait();
                            for _ in 0..iters {
                                black_box(run_batch(cache, seq, &mut local, value));
                            }
                            *cursor = local;
                        })
                    })
                    .collect();
                barrier.wait();
                let start = Instant::now();
                for w in workers {
                    w.join().expect("a benchmark thread panicked");
                }
                start.elapsed()
            })
        });
    });
}

fn engine(policy: Policy) -> Engine {
    // Default sharding on purpose: this is the configuration a node runs.
    Engine::builder(Capacity::Entries(CAPACITY))
        .policy(policy)
        .build()
}

fn quick_cache() -> quick_cache::sync::Cache<Box<[u8]>, Bytes> {
    quick_cache::sync::Cache::new(CAPACITY as usize)
}

fn moka() -> moka::sync::Cache<Box<[u8]>, Bytes> {
    moka::sync::Cache::new(CAPACITY)
}

fn get_or_insert(c: &mut Criterion) {
    let start = Instant::now();
    let zipf = Zipf::new(KEYSPACE, ALPHA);
    let seqs = [
        sequence(&zipf, REQUESTS, 0x5EED_0001),
        sequence(&zipf, REQUESTS, 0x5EED_0002),
    ];
    let probe = engine(Policy::default());
    eprintln!(
        "workload: Zipf({ALPHA:.1}) over {KEYSPACE} keys, 2 x {REQUESTS} requests, {BATCH} per thread per \
         iteration (generated in {:.1}s); capacity {CAPACITY} entries; ringcache: default sharding = {} \
         shards; quick_cache: default = {} shards; moka: defaults",
        start.elapsed().as_secs_f64(),
        probe.shard_count(),
        quick_cache().num_shards(),
    );
    drop(probe);

    let mut group = c.benchmark_group("get_or_insert_zipf1.0");
    // Every sample the same number of iterations: an iteration takes 5-200 ms, too long
    // for criterion's linear ramp (1 + 2 + ... + 10 iterations) to fit in a few seconds.
    group.sampling_mode(SamplingMode::Flat);
    for policy in Policy::ALL {
        let cache = engine(policy);
        one_thread(&mut group, &format!("ringcache-{policy}/1t"), &cache, &seqs);
    }
    let shared = Arc::new(engine(Policy::default()));
    two_threads(
        &mut group,
        &format!("ringcache-{}/2t", Policy::default()),
        &*shared,
        &seqs,
    );
    let fused = Fused(engine(Policy::default()));
    one_thread(&mut group, "ringcache-adaptive-fused/1t", &fused, &seqs);
    let fused = Arc::new(Fused(engine(Policy::default())));
    two_threads(&mut group, "ringcache-adaptive-fused/2t", &*fused, &seqs);

    one_thread(&mut group, "quick_cache/1t", &quick_cache(), &seqs);
    two_threads(&mut group, "quick_cache/2t", &quick_cache(), &seqs);
    one_thread(&mut group, "moka/1t", &moka(), &seqs);
    two_threads(&mut group, "moka/2t", &moka(), &seqs);
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = get_or_insert
}
criterion_main!(benches);
