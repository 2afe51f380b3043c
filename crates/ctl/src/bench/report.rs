//! What `bench` prints: a table for people, one JSON object for programs.

use hdrhistogram::Histogram;
use serde::Serialize;

use super::progress::{micros, rate, secs, thousands};
use super::recorder::Recorder;
use super::workload::OpKind;
use super::{Fill, Plan, Run, System};
use crate::output::Table;

/// The whole report (`--json`).
#[derive(Debug, Serialize)]
pub(crate) struct Report {
    workload: WorkloadJson,
    /// One entry per system filled (`--fill`).
    fill: Vec<FillJson>,
    /// One entry per system measured, Ringcache first.
    systems: Vec<SystemJson>,
    /// Ringcache ops/s divided by Redis ops/s (with `--redis`).
    ratio_to_redis: Option<f64>,
}

#[derive(Debug, Serialize)]
struct WorkloadJson {
    op: &'static str,
    get_ratio: f64,
    dist: &'static str,
    zipf_alpha: Option<f64>,
    keyspace: u64,
    value_size: usize,
    connections: u32,
    depth: u32,
    duration_s: f64,
    warmup_s: f64,
    ns: String,
    threads: usize,
    seed: u64,
    /// How the Ringcache side was driven: `client` or `lean`.
    driver: &'static str,
}

#[derive(Debug, Serialize)]
struct FillJson {
    system: &'static str,
    keys: u64,
    seconds: f64,
    keys_per_s: f64,
    errors: u64,
    first_error: Option<String>,
}

#[derive(Debug, Serialize)]
struct SystemJson {
    system: &'static str,
    /// Requests sent after the warm-up and answered before the end.
    ops: u64,
    ops_per_s: f64,
    latency_us: Latency,
    /// GETs that found a value, of the measured GETs (`null` without GETs).
    hit_ratio: Option<f64>,
    /// Failed requests, warm-up included.
    errors: u64,
    first_error: Option<String>,
    ratio_to_redis: Option<f64>,
    /// Per operation (one entry unless `--op mixed`).
    by_op: Vec<OpJson>,
}

#[derive(Debug, Serialize)]
struct OpJson {
    op: &'static str,
    ops: u64,
    ops_per_s: f64,
    latency_us: Latency,
    ratio_to_redis: Option<f64>,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Serialize)]
struct Latency {
    p50: u64,
    p90: u64,
    p99: u64,
    p999: u64,
    max: u64,
    mean: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        let q = |q: f64| h.value_at_quantile(q);
        Self {
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p999: q(0.999),
            max: h.max(),
            mean: h.mean(),
        }
    }
}

fn per_s(ops: u64, run: &Run) -> f64 {
    // Display and ratios only.
    #[allow(clippy::cast_precision_loss)]
    let ops = ops as f64;
    ops / run.measured.as_secs_f64()
}

fn ratio(ours: f64, theirs: Option<f64>) -> Option<f64> {
    theirs.filter(|t| *t > 0.0).map(|t| ours / t)
}

/// The operations a run measured.
fn ops_in(rec: &Recorder) -> Vec<OpKind> {
    OpKind::ALL
        .into_iter()
        .filter(|op| !rec.histogram(*op).is_empty())
        .collect()
}

impl Report {
    pub(crate) fn new(plan: &Plan, fills: &[Fill], runs: &[Run]) -> Self {
        let redis = runs.iter().find(|r| r.system == System::Redis);
        let redis_total = redis.map(|r| per_s(r.rec.combined().len(), r));
        let redis_op = |op: OpKind| redis.map(|r| per_s(r.rec.histogram(op).len(), r));
        let systems: Vec<SystemJson> = runs
            .iter()
            .map(|run| {
                let all = run.rec.combined();
                let total = per_s(all.len(), run);
                let compare = run.system != System::Redis;
                let by_op = ops_in(&run.rec)
                    .into_iter()
                    .map(|op| {
                        let h = run.rec.histogram(op);
                        let ops_per_s = per_s(h.len(), run);
                        OpJson {
                            op: op.name(),
                            ops: h.len(),
                            ops_per_s,
                            latency_us: Latency::of(h),
                            ratio_to_redis: compare
                                .then(|| ratio(ops_per_s, redis_op(op)))
                                .flatten(),
                        }
                    })
                    .collect();
                let reads = run.rec.hits + run.rec.misses;
                SystemJson {
                    system: run.system.name(),
                    ops: all.len(),
                    ops_per_s: total,
                    latency_us: Latency::of(&all),
                    // Display only: the rounding of huge counts does not matter.
                    #[allow(clippy::cast_precision_loss)]
                    hit_ratio: (reads > 0).then(|| run.rec.hits as f64 / reads as f64),
                    errors: run.errors,
                    first_error: run.first_error.clone(),
                    ratio_to_redis: compare.then(|| ratio(total, redis_total)).flatten(),
                    by_op,
                }
            })
            .collect();
        let ratio_to_redis = systems
            .iter()
            .find(|s| s.system == System::Ringcache.name())
            .and_then(|s| s.ratio_to_redis);
        Self {
            workload: WorkloadJson {
                op: plan.op_name(),
                get_ratio: plan.workload.get_ratio,
                dist: plan.dist_name(),
                zipf_alpha: plan.zipf_alpha,
                keyspace: plan.workload.keyspace,
                value_size: plan.workload.value.len(),
                connections: plan.connections,
                depth: plan.depth,
                duration_s: plan.duration.as_secs_f64(),
                warmup_s: plan.warmup.as_secs_f64(),
                ns: plan.ns.clone(),
                threads: plan.threads,
                seed: plan.seed,
                driver: plan.driver_name(),
            },
            fill: fills
                .iter()
                .map(|f| FillJson {
                    system: f.system.name(),
                    keys: f.keys,
                    seconds: f.elapsed.as_secs_f64(),
                    keys_per_s: f.keys_per_s(),
                    errors: f.errors,
                    first_error: f.first_error.clone(),
                })
                .collect(),
            systems,
            ratio_to_redis,
        }
    }

    /// Systems that answered no request at all.
    pub(crate) fn idle_systems(&self) -> Vec<(&'static str, Option<&str>)> {
        self.systems
            .iter()
            .filter(|s| s.ops == 0)
            .map(|s| (s.system, s.first_error.as_deref()))
            .collect()
    }

    /// The human form: a line describing the workload, the table, notes.
    pub(crate) fn render(&self) -> String {
        let w = &self.workload;
        let mix = match w.op {
            "mixed" => format!("mixed ({:.0}% GET)", w.get_ratio * 100.0),
            op => op.to_uppercase(),
        };
        let dist = match w.zipf_alpha {
            Some(a) if w.dist == "zipf" => format!("Zipf({a})"),
            _ => "uniform".to_owned(),
        };
        let mut out = format!(
            "{mix}, {dist} over {} keys, {}-byte values, namespace {:?}, {} connections x depth {}, \
             {} measured after {} warm-up, {} load threads{}\n\n",
            thousands(w.keyspace),
            w.value_size,
            w.ns,
            w.connections,
            w.depth,
            secs(std::time::Duration::from_secs_f64(w.duration_s)),
            secs(std::time::Duration::from_secs_f64(w.warmup_s)),
            w.threads,
            if w.driver == "lean" {
                ", Ringcache driven on raw frames (--driver lean)"
            } else {
                ""
            },
        );
        let mut t = Table::new(&[
            "system",
            "op",
            ">conns",
            ">depth",
            ">ops/s",
            ">p50",
            ">p90",
            ">p99",
            ">p99.9",
            ">max",
            ">hits",
            ">errors",
            ">vs redis",
        ]);
        let cell_ratio = |r: Option<f64>| r.map_or_else(String::new, |r| format!("{r:.2}x"));
        for s in &self.systems {
            let mut row =
                |op: &str, ops_per_s: f64, l: &Latency, hits: String, errors: String, r| {
                    t.row(vec![
                        s.system.to_owned(),
                        op.to_owned(),
                        w.connections.to_string(),
                        w.depth.to_string(),
                        rate(ops_per_s),
                        micros(l.p50),
                        micros(l.p90),
                        micros(l.p99),
                        micros(l.p999),
                        micros(l.max),
                        hits,
                        errors,
                        cell_ratio(r),
                    ]);
                };
            let hits = s
                .hit_ratio
                .map_or_else(|| "-".to_owned(), |h| format!("{:.1}%", h * 100.0));
            if s.by_op.len() == 1 {
                let o = &s.by_op[0];
                row(
                    o.op,
                    o.ops_per_s,
                    &o.latency_us,
                    hits,
                    thousands(s.errors),
                    s.ratio_to_redis,
                );
            } else {
                // Mixed, or nothing measured: the total first, then each operation.
                row(
                    "all",
                    s.ops_per_s,
                    &s.latency_us,
                    hits,
                    thousands(s.errors),
                    s.ratio_to_redis,
                );
                for o in &s.by_op {
                    row(
                        o.op,
                        o.ops_per_s,
                        &o.latency_us,
                        String::new(),
                        String::new(),
                        o.ratio_to_redis,
                    );
                }
            }
        }
        out.push_str(&t.render());
        let mut notes = Vec::new();
        for f in &self.fill {
            notes.push(format!(
                "fill {}: {} keys in {:.1}s ({} keys/s){}",
                f.system,
                thousands(f.keys),
                f.seconds,
                rate(f.keys_per_s),
                if f.errors > 0 {
                    format!(", {} errors", thousands(f.errors))
                } else {
                    String::new()
                }
            ));
        }
        for s in &self.systems {
            if let Some(e) = &s.first_error {
                notes.push(format!("first {} error: {e}", s.system));
            }
        }
        for f in &self.fill {
            if let Some(e) = &f.first_error {
                notes.push(format!("first {} fill error: {e}", f.system));
            }
        }
        if !notes.is_empty() {
            out.push('\n');
            out.push_str(&notes.join("\n"));
            out.push('\n');
        }
        out
    }
}
