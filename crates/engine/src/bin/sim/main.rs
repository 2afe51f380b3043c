//! `ringcache-sim`: replays a cache trace through the eviction engine and reports miss
//! ratios, so policies can be compared with each other, with libCacheSim
//! (`scripts/engine-bench/run_libcachesim.py` writes the same JSON rows) and, built with
//! `--features compare`, with quick_cache and moka.
//!
//! Run with:
//! ```text
//! cargo run --release -p ringcache-engine --bin ringcache-sim -- \
//!     --trace scripts/engine-bench/traces/zipf1.0.oracleGeneral \
//!     --policy adaptive,lru,s3fifo --mode objects --capacity 0.001,0.01,0.1
//! ```
//!
//! Layout: `args` (command line), `trace` (loading oracleGeneral and csv traces),
//! `replay` (the replay loop and the engine adapter), `compare` (quick_cache and moka
//! adapters), `report` (table and JSON rows).

mod args;
#[cfg(feature = "compare")]
mod compare;
mod replay;
mod report;
mod trace;

use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use args::{Args, Command, Mode, SimPolicy};
use replay::{Counts, EngineSim, ReplayError, SimCache};
use report::Row;
use trace::{Trace, TraceError};

/// Why a run failed after the command line was accepted.
#[derive(Debug, thiserror::Error)]
enum SimError {
    #[error(transparent)]
    Trace(#[from] TraceError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[cfg(feature = "compare")]
    #[error("setting up {policy}: {reason}")]
    Setup {
        policy: &'static str,
        reason: String,
    },
    #[error("writing the results")]
    Output(#[from] io::Error),
}

fn main() -> ExitCode {
    let args = match args::parse(std::env::args_os().skip(1)) {
        Ok(Command::Help) => {
            print!("{}", args::HELP);
            return ExitCode::SUCCESS;
        }
        Ok(Command::Run(args)) => args,
        Err(e) => {
            eprintln!("ringcache-sim: error: {e} (see --help)");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        // `| head` closing the pipe is not a failure.
        Err(SimError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringcache-sim: error: {}", chain(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// Loads the trace, replays it per policy x capacity, prints the rows.
fn run(args: &Args) -> Result<(), SimError> {
    let started = Instant::now();
    let trace = Trace::load(&args.trace, args.format, args.limit_requests)?;
    if trace.trailing_bytes > 0 {
        eprintln!(
            "ringcache-sim: warning: {}: trailing {} bytes ignored (not a whole 24-byte record)",
            trace.name, trace.trailing_bytes
        );
    }
    eprintln!(
        "ringcache-sim: {}: {} requests, {} objects, {} bytes footprint (loaded in {:.2}s)",
        trace.name,
        trace.len(),
        trace.distinct_objects,
        trace.distinct_bytes,
        started.elapsed().as_secs_f64()
    );

    let total = args.policies.len() * args.capacities.len();
    let mut rows = Vec::with_capacity(total);
    for &policy in &args.policies {
        for &spec in &args.capacities {
            let (capacity, fraction) = spec.resolve(trace.footprint(args.mode));
            let (counts, elapsed) = replay_one(args, &trace, policy, capacity)?;
            let row = row(
                &trace, policy, args.mode, capacity, fraction, &counts, elapsed,
            );
            eprintln!(
                "ringcache-sim: [{}/{total}] {} {} capacity {}: miss ratio {:.4} in {:.2}s{}",
                rows.len() + 1,
                row.policy,
                row.mode,
                capacity,
                row.miss_ratio,
                elapsed.as_secs_f64(),
                if counts.too_large > 0 {
                    format!(" ({} requests larger than the cache)", counts.too_large)
                } else {
                    String::new()
                }
            );
            rows.push(row);
        }
    }

    let mut out = io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &rows).map_err(io::Error::from)?;
        writeln!(out)?;
    } else {
        writeln!(out, "trace {}", trace.name)?;
        out.write_all(report::table(&rows).as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Builds the cache for one combination and replays the trace through it.
fn replay_one(
    args: &Args,
    trace: &Trace,
    policy: SimPolicy,
    capacity: u64,
) -> Result<(Counts, Duration), SimError> {
    let name = policy.name();
    match policy {
        SimPolicy::Engine(p) => {
            let cache = EngineSim::new(p, args.mode, capacity, args.shards, args.check);
            finish(&cache, name, trace, args.mode)
        }
        #[cfg(feature = "compare")]
        SimPolicy::QuickCache => {
            let mean_size = trace.distinct_bytes as f64 / trace.distinct_objects.max(1) as f64;
            let cache = compare::QuickCacheSim::new(args.mode, capacity, args.shards, mean_size)
                .map_err(|reason| SimError::Setup {
                    policy: name,
                    reason,
                })?;
            finish(&cache, name, trace, args.mode)
        }
        #[cfg(feature = "compare")]
        SimPolicy::Moka => {
            let cache = compare::MokaSim::new(args.mode, capacity);
            finish(&cache, name, trace, args.mode)
        }
    }
}

/// Replays, then warns about anything the cache's own view contradicts.
fn finish<C: SimCache>(
    cache: &C,
    name: &'static str,
    trace: &Trace,
    mode: Mode,
) -> Result<(Counts, Duration), SimError> {
    let (counts, elapsed) = replay::replay(cache, name, trace, mode)?;
    for problem in cache.verify(&counts) {
        eprintln!("ringcache-sim: warning: {name}: {problem}");
    }
    Ok((counts, elapsed))
}

/// The output row of one replay.
fn row(
    trace: &Trace,
    policy: SimPolicy,
    mode: Mode,
    capacity: u64,
    fraction: Option<f64>,
    c: &Counts,
    elapsed: Duration,
) -> Row {
    // A replay shorter than the clock's resolution still gets a finite rate (JSON has no
    // infinity).
    let secs = elapsed.as_secs_f64().max(1e-9);
    Row {
        trace: trace.name.clone(),
        policy: policy.name(),
        mode: mode.name(),
        capacity,
        capacity_fraction: fraction,
        requests: c.requests,
        hits: c.hits,
        misses: c.misses,
        miss_ratio: c.miss_ratio(),
        byte_miss_ratio: c.byte_miss_ratio(),
        requests_per_sec: c.requests as f64 / secs,
    }
}
