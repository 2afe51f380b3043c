//! How get-or-insert throughput changes when two threads share one cache, against two
//! threads with a cache each: the evidence for what limits the two-thread speed target
//! (see `docs/benchmarks/engine.md`, "Two threads").
//!
//! Run with:
//! ```sh
//! cargo run --release -p ringcache-engine --example scaling [REQUESTS_PER_THREAD]
//! ```
//!
//! The workload is the criterion bench's (Zipf(1.0) over 1,000,000 8-byte keys, a
//! static 16-byte value); each configuration replays a warm-up pass, then the timed
//! one. Printed per cache and capacity: one thread, two threads sharing one instance,
//! and two threads with an instance each (the same total work with nothing shared).
//! Wall-clock numbers: run it on a quiet machine and compare rows of one run. The
//! engine rows are its default sharding (64 shards at 10,000 entries), the default
//! before 2026-12-07 (16) and 256.

use std::time::Instant;

use bytes::Bytes;
use ringcache_engine::{Capacity, Engine};

#[path = "../benches/workload/mod.rs"]
mod workload;

use workload::{ALPHA, BenchCache, Fused, KEYSPACE, VALUE, Zipf, sequence};

/// Replays `seqs[t]` on thread `t` against `caches[t % caches.len()]`, after a warm-up
/// pass; returns requests per second (millions) and the hit ratio of the timed pass.
fn run(caches: &[&dyn BenchCache], seqs: &[Vec<[u8; 8]>], value: &Bytes) -> (f64, f64) {
    let replay = |cache: &dyn BenchCache, seq: &[[u8; 8]]| {
        seq.iter()
            .map(|k| u64::from(cache.get_or_insert(k, value)))
            .sum::<u64>()
    };
    for (t, seq) in seqs.iter().enumerate() {
        replay(caches[t % caches.len()], seq);
    }
    let start = Instant::now();
    let hits: u64 = std::thread::scope(|s| {
        let workers: Vec<_> = seqs
            .iter()
            .enumerate()
            .map(|(t, seq)| {
                let cache = caches[t % caches.len()];
                s.spawn(move || replay(cache, seq))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a worker panicked"))
            .sum()
    });
    let requests: usize = seqs.iter().map(Vec::len).sum();
    (
        requests as f64 / start.elapsed().as_secs_f64() / 1e6,
        hits as f64 / requests as f64,
    )
}

fn main() {
    let per_thread: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_000_000);
    let zipf = Zipf::new(KEYSPACE, ALPHA);
    let one = vec![sequence(&zipf, per_thread, 1)];
    let two = vec![
        sequence(&zipf, per_thread, 1),
        sequence(&zipf, per_thread, 2),
    ];
    let value = Bytes::from_static(&VALUE);
    println!(
        "{:<34} {:>10} {:>14} {:>15} {:>6}",
        "cache (capacity, shards)", "1 thread", "2 shared", "2 private", "hits"
    );
    let row = |label: String, make: &dyn Fn() -> Box<dyn BenchCache>| {
        let (one_t, hits) = run(&[&*make()], &one, &value);
        let (shared, _) = run(&[&*make()], &two, &value);
        let (first, second) = (make(), make());
        let (private, _) = run(&[&*first, &*second], &two, &value);
        println!("{label:<34} {one_t:>8.2} M {shared:>12.2} M {private:>13.2} M {hits:>6.3}");
    };
    for capacity in [KEYSPACE as u64 / 100, KEYSPACE as u64] {
        for shards in [None, Some(16), Some(256)] {
            let label = format!(
                "ringcache fused ({capacity}, {})",
                shards.map_or("default".to_owned(), |s| s.to_string())
            );
            row(label, &|| {
                let b = Engine::builder(Capacity::Entries(capacity));
                let b = match shards {
                    Some(s) => b.shards(s),
                    None => b,
                };
                Box::new(Fused(b.build()))
            });
        }
        row(format!("quick_cache ({capacity}, default)"), &|| {
            Box::new(quick_cache::sync::Cache::<Box<[u8]>, Bytes>::new(
                capacity as usize,
            ))
        });
    }
}
