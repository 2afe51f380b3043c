//! The speed bench's workload without criterion, for instruction counts under
//! `valgrind --tool=callgrind` (deterministic, unlike wall time on a shared machine).
//!
//! Run with:
//! ```sh
//! cargo build --release -p ringcache-engine --example opcount
//! valgrind --tool=callgrind --toggle-collect='*measure*' \
//!     $CARGO_TARGET_DIR/release/examples/opcount adaptive-fused 2000000 1000000
//! ```
//! (or `scripts/engine-bench/callgrind.sh`, which runs every cache and prints
//! instructions per operation).
//!
//! Arguments: the cache (`adaptive-fused`, `adaptive`, any engine policy name,
//! `quick_cache`, `moka`), warm-up requests, measured requests. The workload is the
//! criterion bench's: Zipf(1.0) over 1,000,000 8-byte keys, capacity 10,000 entries,
//! default sharding, get-or-insert with a static 16-byte value. Only `measure` runs
//! while callgrind collects, so set-up and warm-up are not counted.

use std::hint::black_box;

use bytes::Bytes;
use ringcache_engine::{Capacity, Engine, InsertOptions, Policy};

const KEYSPACE: usize = 1_000_000;
const CAPACITY: u64 = KEYSPACE as u64 / 100;
static VALUE: [u8; 16] = [0xA5; 16];

/// SplitMix64, as in the criterion bench.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The bench's request sequence: Zipf(1.0) ranks, scrambled by an odd multiplier.
fn sequence(n: usize, seed: u64) -> Vec<[u8; 8]> {
    let mut cdf = Vec::with_capacity(KEYSPACE);
    let mut sum = 0.0;
    for k in 1..=KEYSPACE {
        sum += (k as f64).powf(-1.0);
        cdf.push(sum);
    }
    for c in &mut cdf {
        *c /= sum;
    }
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            let u = rng.next_f64();
            let rank = cdf.partition_point(|&c| c <= u).min(KEYSPACE - 1);
            (rank as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_le_bytes()
        })
        .collect()
}

trait Cache {
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool;
}

struct Split(Engine);
struct Fused(Engine);

impl Cache for Split {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.0.get(key).is_some() {
            return true;
        }
        let _ = self.0.insert(key, value.clone(), &InsertOptions::new());
        false
    }
}

impl Cache for Fused {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        matches!(
            self.0
                .get_or_insert_with(key, &InsertOptions::new(), || value.clone()),
            Ok((_, true))
        )
    }
}

impl Cache for quick_cache::sync::Cache<Box<[u8]>, Bytes> {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        self.insert(key.into(), value.clone());
        false
    }
}

impl Cache for moka::sync::Cache<Box<[u8]>, Bytes> {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        self.insert(key.into(), value.clone());
        false
    }
}

#[inline(always)]
fn replay<C: Cache + ?Sized>(cache: &C, seq: &[[u8; 8]], value: &Bytes) -> u64 {
    seq.iter()
        .map(|k| u64::from(cache.get_or_insert(k, value)))
        .sum()
}

/// The measured part; callgrind's `--toggle-collect='*measure*'` counts only this.
#[inline(never)]
fn measure(cache: &dyn Cache, seq: &[[u8; 8]], value: &Bytes) -> u64 {
    replay(cache, seq, value)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("adaptive-fused", String::as_str);
    let warm: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let measured: usize = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let seq = sequence(warm + measured, 0x5EED_0001);
    let (warm_seq, measured_seq) = seq.split_at(warm);
    let value = Bytes::from_static(&VALUE);
    let engine = |p: Policy| {
        Engine::builder(Capacity::Entries(CAPACITY))
            .policy(p)
            .build()
    };
    let cache: Box<dyn Cache> = match which {
        "adaptive-fused" => Box::new(Fused(engine(Policy::default()))),
        "quick_cache" => Box::new(quick_cache::sync::Cache::<Box<[u8]>, Bytes>::new(
            CAPACITY as usize,
        )),
        "moka" => Box::new(moka::sync::Cache::<Box<[u8]>, Bytes>::new(CAPACITY)),
        name => match name.parse::<Policy>() {
            Ok(p) => Box::new(Split(engine(p))),
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        },
    };
    replay(&*cache, warm_seq, &value);
    let hits = black_box(measure(&*cache, measured_seq, &value));
    println!(
        "{which}: {hits} hits of {} ({:.4} hit ratio)",
        measured_seq.len(),
        hits as f64 / measured_seq.len() as f64
    );
}
