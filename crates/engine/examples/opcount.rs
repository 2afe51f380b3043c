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
use ringcache_engine::{Capacity, Engine, Policy};

#[path = "../benches/workload/mod.rs"]
mod workload;

use workload::{ALPHA, BenchCache, CAPACITY, Fused, KEYSPACE, VALUE, Zipf, sequence};

#[inline(always)]
fn replay<C: BenchCache + ?Sized>(cache: &C, seq: &[[u8; 8]], value: &Bytes) -> u64 {
    seq.iter()
        .map(|k| u64::from(cache.get_or_insert(k, value)))
        .sum()
}

/// The measured part; callgrind's `--toggle-collect='*measure*'` counts only this.
#[inline(never)]
fn measure(cache: &dyn BenchCache, seq: &[[u8; 8]], value: &Bytes) -> u64 {
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
    let seq = sequence(&Zipf::new(KEYSPACE, ALPHA), warm + measured, 0x5EED_0001);
    let (warm_seq, measured_seq) = seq.split_at(warm);
    let value = Bytes::from_static(&VALUE);
    let engine = |p: Policy| {
        Engine::builder(Capacity::Entries(CAPACITY))
            .policy(p)
            .build()
    };
    let cache: Box<dyn BenchCache> = match which {
        "adaptive-fused" => Box::new(Fused(engine(Policy::default()))),
        "quick_cache" => Box::new(quick_cache::sync::Cache::<Box<[u8]>, Bytes>::new(
            CAPACITY as usize,
        )),
        "moka" => Box::new(moka::sync::Cache::<Box<[u8]>, Bytes>::new(CAPACITY)),
        name => match name.parse::<Policy>() {
            Ok(p) => Box::new(engine(p)),
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
