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
use ringcache_engine::{Capacity, Engine, InsertOptions, Policy};

/// Distinct keys.
const KEYSPACE: usize = 1_000_000;
/// Zipf exponent.
const ALPHA: f64 = 1.0;
/// Requests per precomputed sequence.
const REQUESTS: usize = 2_000_000;
/// Cache capacity in entries: 1% of the keyspace.
const CAPACITY: u64 = KEYSPACE as u64 / 100;
/// Requests per thread per iteration.
const BATCH: usize = 100_000;

/// The value every insert stores: static, so cloning it is a copy of two words.
static VALUE: [u8; 16] = [0xA5; 16];

/// SplitMix64: a small, fast, seedable generator; enough for drawing a workload.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A bounded Zipf over ranks `0..n` (rank 0 the most popular) by inverse-CDF lookup.
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A precomputed request sequence of 8-byte keys. Ranks are scrambled by an odd
/// multiplier (a bijection), so popular keys are not small consecutive integers.
fn sequence(zipf: &Zipf, seed: u64) -> Vec<[u8; 8]> {
    let mut rng = SplitMix64(seed);
    (0..REQUESTS)
        .map(|_| {
            (zipf.sample(&mut rng) as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_le_bytes()
        })
        .collect()
}

/// A cache under benchmark. `get_or_insert` MUST do one lookup and, on a miss, one
/// insert; it returns whether the lookup hit.
trait BenchCache: Sync {
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool;
}

impl BenchCache for Engine {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        // An entry-mode insert of a 16-byte value cannot be too large; any error would
        // only mean it was not stored, which the next get reports as a miss.
        let _ = self.insert(key, value.clone(), &InsertOptions::new());
        false
    }
}

/// The engine through its one-lock `get_or_insert_with` (the node's read-through path
/// uses the same call), next to the lookup-then-insert form above.
struct Fused(Engine);

impl BenchCache for Fused {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        matches!(
            self.0
                .get_or_insert_with(key, &InsertOptions::new(), || value.clone()),
            Ok((_, true))
        )
    }
}

impl BenchCache for quick_cache::sync::Cache<Box<[u8]>, Bytes> {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        self.insert(key.into(), value.clone());
        false
    }
}

impl BenchCache for moka::sync::Cache<Box<[u8]>, Bytes> {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        self.insert(key.into(), value.clone());
        false
    }
}

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
                            barrier.wait();
                            for _ in 0..iters {
                                black_box(run_batch(cache, seq, cursor, value));
                            }
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
    let seqs = [sequence(&zipf, 0x5EED_0001), sequence(&zipf, 0x5EED_0002)];
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
