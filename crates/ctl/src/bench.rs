//! `ringctl bench`: a closed-loop load generator for Ringcache and, with `--redis`,
//! Redis with the identical workload in the same run.
//!
//! N connections each carry D request loops. A loop sends one request, waits for the
//! answer, records its latency and sends the next, so N x D requests are outstanding
//! at any time and throughput is what the server (and the client) can turn around.
//! The systems run one after the other (Ringcache, then Redis), each with its own
//! warm-up; every loop stops sending at the end of the measured time and abandons what
//! is unanswered shortly after. Errors are counted, never fatal; the first is shown. A
//! system that answered nothing at all fails the command (after the report).
//!
//! # Layout
//! - `workload`: operations, keys (`key:<n>`, uniform or Zipf), the value, the RNG.
//! - `recorder`: the time line of a run, shared counters, per-loop HdrHistograms.
//! - `ringcache`: N `Client`s, fill with `set_many`, the request loops.
//! - `lean`: `--driver lean`, the request loops on raw frames, no client library.
//! - `redis`: N TCP connections, fill with MSET, pipelined loops.
//! - `resp`: the RESP2 encoder and decoder.
//! - `progress`: the progress line on stderr; number formatting.
//! - `report`: the table and the JSON.

mod lean;
mod progress;
mod recorder;
mod redis;
mod report;
mod resp;
mod ringcache;
mod workload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use self::progress::{Ticker, bar, micros, rate, secs, thousands};
use self::recorder::{Recorder, Shared, Window};
use self::report::Report;
use self::workload::Workload;
use crate::Status;
use crate::cli::{BenchArgs, BenchDriver, BenchOp, GlobalArgs, KeyDist};
use crate::connect::client_config;
use crate::data::DEFAULT_NAMESPACE;
use crate::output::{print_json, print_line};

/// `--get-ratio` when `--op mixed` names none.
const DEFAULT_GET_RATIO: f64 = 0.9;
/// `--zipf-alpha` when `--dist zipf` names none.
const DEFAULT_ZIPF_ALPHA: f64 = 0.99;
/// Keys per fill batch (`set_many` request, MSET command), unless the frame limit
/// needs fewer.
const FILL_BATCH: u64 = 1000;
/// Per-key bytes of a `set_many` item beyond key and value (length prefixes, TTL).
const ITEM_OVERHEAD: u64 = 32;

/// A system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum System {
    Ringcache,
    Redis,
}

impl System {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Ringcache => "ringcache",
            Self::Redis => "redis",
        }
    }
}

/// How a fill went.
#[derive(Debug)]
pub(crate) struct Fill {
    pub(crate) system: System,
    pub(crate) keys: u64,
    pub(crate) elapsed: Duration,
    /// Keys not stored.
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Fill {
    pub(crate) fn keys_per_s(&self) -> f64 {
        // Display only.
        #[allow(clippy::cast_precision_loss)]
        let keys = self.keys as f64;
        keys / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Keys written so far by a fill (the progress bar reads it).
#[derive(Debug, Default)]
pub(crate) struct FillProgress {
    pub(crate) done: Arc<AtomicU64>,
}

/// One system's measured run.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) system: System,
    pub(crate) rec: Recorder,
    pub(crate) measured: Duration,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

/// The checked command line.
#[derive(Debug)]
pub(crate) struct Plan {
    pub(crate) workload: Arc<Workload>,
    pub(crate) connections: u32,
    pub(crate) depth: u32,
    pub(crate) duration: Duration,
    pub(crate) warmup: Duration,
    pub(crate) fill: bool,
    pub(crate) redis: Option<String>,
    pub(crate) redis_only: bool,
    pub(crate) threads: usize,
    pub(crate) seed: u64,
    pub(crate) ns: String,
    pub(crate) zipf_alpha: Option<f64>,
    pub(crate) driver: BenchDriver,
    dist: KeyDist,
}

impl Plan {
    fn new(g: &GlobalArgs, a: &BenchArgs) -> anyhow::Result<Self> {
        if a.get_ratio.is_some() && a.op != BenchOp::Mixed {
            bail!("--get-ratio applies only to --op mixed");
        }
        if a.zipf_alpha.is_some() && a.dist != KeyDist::Zipf {
            bail!("--zipf-alpha applies only to --dist zipf");
        }
        if a.duration.is_zero() {
            bail!("--duration must be more than 0");
        }
        let value_size = usize::try_from(a.value_size)
            .ok()
            .filter(|v| *v <= 64 << 20)
            .context("--value-size is too large (at most 64MiB)")?;
        let threads = match a.threads {
            Some(n) => n as usize,
            None => std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        };
        let zipf_alpha =
            (a.dist == KeyDist::Zipf).then(|| a.zipf_alpha.unwrap_or(DEFAULT_ZIPF_ALPHA));
        let workload = Workload::new(
            a.keyspace,
            value_size,
            a.op,
            a.get_ratio.unwrap_or(DEFAULT_GET_RATIO),
            a.dist,
            zipf_alpha.unwrap_or(DEFAULT_ZIPF_ALPHA),
        );
        Ok(Self {
            workload: Arc::new(workload),
            connections: a.connections,
            depth: a.depth,
            duration: a.duration,
            warmup: a.warmup,
            fill: a.fill,
            redis: a.redis.clone(),
            redis_only: a.redis_only,
            threads,
            seed: a.seed,
            ns: g.ns.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            zipf_alpha,
            driver: a.driver,
            dist: a.dist,
        })
    }

    pub(crate) fn op_name(&self) -> &'static str {
        match self.workload.op {
            BenchOp::Get => "get",
            BenchOp::Set => "set",
            BenchOp::Mixed => "mixed",
        }
    }

    pub(crate) fn driver_name(&self) -> &'static str {
        match self.driver {
            BenchDriver::Client => "client",
            BenchDriver::Lean => "lean",
        }
    }

    pub(crate) fn dist_name(&self) -> &'static str {
        match self.dist {
            KeyDist::Uniform => "uniform",
            KeyDist::Zipf => "zipf",
        }
    }

    /// Keys per fill batch: [`FILL_BATCH`], fewer if half a frame cannot hold them.
    fn fill_batch(&self, limits: &ringcache_proto::Limits) -> u64 {
        let item = self.workload.value.len() as u64 + 24 + ITEM_OVERHEAD;
        (u64::from(limits.max_frame) / 2 / item)
            .min(u64::from(limits.max_batch))
            .clamp(1, FILL_BATCH)
    }
}

/// `ringctl bench`.
pub(crate) fn execute(g: &GlobalArgs, a: &BenchArgs) -> anyhow::Result<Status> {
    let plan = Plan::new(g, a)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(plan.threads)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let result = rt.block_on(run(g, &plan));
    // Abandoned requests may still hold tasks: do not wait for them.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn run(g: &GlobalArgs, plan: &Plan) -> anyhow::Result<Status> {
    // Everything connects first: a wrong address or namespace fails before any fill.
    let mut batch = FILL_BATCH;
    let mut lean_conns = None;
    let clients = if plan.redis_only {
        None
    } else {
        let config = client_config(g)?;
        if plan.workload.value.len() > config.limits.max_value as usize {
            bail!(
                "--value-size {} exceeds the client's max_value of {} bytes",
                plan.workload.value.len(),
                config.limits.max_value
            );
        }
        batch = plan.fill_batch(&config.limits);
        let ticker = Ticker::start({
            let n = plan.connections;
            move |t| format!("connecting {n} Ringcache clients... {}", secs(t))
        });
        let clients = ringcache::connect(&config, plan.connections).await;
        drop(ticker);
        let clients = clients?;
        ringcache::check_namespace(&clients[0], &plan.ns).await?;
        if plan.driver == BenchDriver::Lean {
            lean_conns = Some(lean::connect(&config, plan.connections).await?);
        }
        Some(clients)
    };
    let mut redis = match &plan.redis {
        Some(addr) => Some(redis::connect(addr, plan.connections).await?),
        None => None,
    };

    let mut fills = Vec::new();
    if plan.fill {
        if let Some(clients) = &clients {
            let progress = FillProgress::default();
            let ticker = fill_ticker(System::Ringcache, plan, &progress);
            let f = ringcache::fill(clients, &plan.ns, &plan.workload, batch, &progress).await;
            ticker.finish(&fill_summary(&f));
            fills.push(f);
        }
        if let Some(conns) = redis.take() {
            let progress = FillProgress::default();
            let ticker = fill_ticker(System::Redis, plan, &progress);
            let (f, conns) = redis::fill(conns, &plan.workload, batch, &progress).await;
            ticker.finish(&fill_summary(&f));
            fills.push(f);
            redis = Some(conns);
        }
    }

    let mut runs = Vec::new();
    if let Some(clients) = clients {
        let (window, shared, ticker) = start_run(System::Ringcache, plan);
        let rec = match lean_conns {
            Some(conns) => {
                lean::load(
                    conns,
                    &plan.ns,
                    &plan.workload,
                    plan.depth,
                    plan.seed,
                    window,
                    &shared,
                )
                .await
            }
            None => {
                ringcache::load(
                    &clients,
                    &plan.ns,
                    &plan.workload,
                    plan.depth,
                    plan.seed,
                    window,
                    &shared,
                )
                .await
            }
        };
        runs.push(finish_run(System::Ringcache, rec, window, &shared, ticker));
        ringcache::close(clients).await;
    }
    if let Some(conns) = redis {
        if conns.len() < plan.connections as usize {
            bail!(
                "{} of {} Redis connections failed during the fill: {}",
                plan.connections as usize - conns.len(),
                plan.connections,
                fills
                    .iter()
                    .find(|f| f.system == System::Redis)
                    .and_then(|f| f.first_error.as_deref())
                    .unwrap_or("no error recorded")
            );
        }
        let (window, shared, ticker) = start_run(System::Redis, plan);
        let rec = redis::load(
            conns,
            &plan.workload,
            plan.depth,
            plan.seed,
            window,
            &shared,
        )
        .await;
        runs.push(finish_run(System::Redis, rec, window, &shared, ticker));
    }

    let report = Report::new(plan, &fills, &runs);
    if g.json {
        print_json(&report)?;
    } else {
        let mut text = report.render();
        if plan.redis.is_some() && !plan.redis_only {
            text.push_str(
                "\nThe systems ran one after the other, each sharing this machine's CPUs with \
                 the load generator.\n",
            );
        }
        print_line(&text)?;
    }
    if let Some((system, why)) = report.idle_systems().first() {
        bail!(
            "{system} answered no request: {}",
            why.unwrap_or("no error recorded")
        );
    }
    Ok(Status::Success)
}

fn fill_ticker(system: System, plan: &Plan, progress: &FillProgress) -> Ticker {
    let total = plan.workload.keyspace;
    let done = Arc::clone(&progress.done);
    Ticker::start(move |t| {
        let n = done.load(Ordering::Relaxed);
        // Display only.
        #[allow(clippy::cast_precision_loss)]
        let pct = n as f64 * 100.0 / total as f64;
        format!(
            "fill {}: {} {pct:3.0}% {}/{} keys, {}",
            system.name(),
            bar(n, total),
            thousands(n),
            thousands(total),
            secs(t)
        )
    })
}

fn fill_summary(f: &Fill) -> String {
    let errors = if f.errors > 0 {
        format!(", {} keys not stored", thousands(f.errors))
    } else {
        String::new()
    };
    format!(
        "fill {}: {} keys in {} ({} keys/s){errors}",
        f.system.name(),
        thousands(f.keys),
        secs(f.elapsed),
        rate(f.keys_per_s())
    )
}

fn start_run(system: System, plan: &Plan) -> (Window, Arc<Shared>, Ticker) {
    let window = Window::starting_now(plan.warmup, plan.duration);
    let shared = Arc::new(Shared::default());
    let label = format!(
        "{} {} x{}x{}",
        system.name(),
        plan.op_name(),
        plan.connections,
        plan.depth
    );
    let ticker = Ticker::start({
        let shared = Arc::clone(&shared);
        let mut last = (0u64, Duration::ZERO);
        let mut at_measure: Option<u64> = None;
        let (warmup, duration) = (plan.warmup, plan.duration);
        move |t| {
            let done = shared.done();
            let dt = (t - last.1).as_secs_f64().max(1e-3);
            // Display only.
            #[allow(clippy::cast_precision_loss)]
            let now_rate = (done - last.0) as f64 / dt;
            last = (done, t);
            let errors = match shared.errors() {
                0 => String::new(),
                n => format!(", {} errors", thousands(n)),
            };
            if t < warmup {
                return format!(
                    "{label}: warm-up {}/{}, {} ops/s{errors}",
                    secs(t),
                    secs(warmup),
                    rate(now_rate)
                );
            }
            let base = *at_measure.get_or_insert(done);
            let measured = (t - warmup).min(duration);
            // Display only.
            #[allow(clippy::cast_precision_loss)]
            let avg = (done - base) as f64 / measured.as_secs_f64().max(1e-3);
            format!(
                "{label}: {}/{}, {} ops/s (average {}){errors}",
                secs(measured),
                secs(duration),
                rate(now_rate),
                rate(avg)
            )
        }
    });
    (window, shared, ticker)
}

fn finish_run(
    system: System,
    rec: Recorder,
    window: Window,
    shared: &Shared,
    ticker: Ticker,
) -> Run {
    let all = rec.combined();
    // Display only.
    #[allow(clippy::cast_precision_loss)]
    let ops_per_s = all.len() as f64 / window.measured().as_secs_f64();
    let errors = match shared.errors() {
        0 => String::new(),
        n => format!(", {} errors", thousands(n)),
    };
    ticker.finish(&format!(
        "{}: {} ops/s, p50 {}, p99 {}{errors}",
        system.name(),
        rate(ops_per_s),
        micros(all.value_at_quantile(0.5)),
        micros(all.value_at_quantile(0.99)),
    ));
    Run {
        system,
        rec,
        measured: window.measured(),
        errors: shared.errors(),
        first_error: shared.first_error(),
    }
}
