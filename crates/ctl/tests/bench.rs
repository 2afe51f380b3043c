//! Black-box: `ringctl bench` against a real node that `ringctl local up --detach`
//! started (`cargo build --workspace` builds ringcached next to ringctl). Every command
//! is bounded. The Redis side is covered by unit tests (against a fake RESP server), so
//! no redis-server is needed here.

mod common;
use common::*;

#[test]
fn bench_against_a_local_node_reports_throughput_and_latency() {
    require_ringcached();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    let _guard = NodeGuard::new(&cwd.join("local"));
    run(
        cwd,
        &[
            "local", "up", "--detach", "--dir", "local", "--memory", "16MiB",
        ],
    )
    .ok();
    let c = ["-c", "local/client.toml"];
    let bench = |args: &[&str]| run(cwd, &[&c[..], &["bench"], args].concat());

    // The brief's smoke run, after a fill so every GET is a hit.
    let out = bench(&[
        "--json",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--connections",
        "2",
        "--keyspace",
        "100",
        "--fill",
    ])
    .ok();
    let report = out.json();
    assert_eq!(report["workload"]["op"], "get", "{report}");
    assert_eq!(report["workload"]["connections"], 2);
    assert_eq!(report["fill"][0]["system"], "ringcache");
    assert_eq!(report["fill"][0]["keys"], 100);
    assert_eq!(report["fill"][0]["errors"], 0);
    let systems = report["systems"].as_array().expect("systems");
    assert_eq!(systems.len(), 1, "no --redis, one system: {report}");
    let rc = &systems[0];
    assert_eq!(rc["system"], "ringcache");
    assert!(rc["ops_per_s"].as_f64().is_some_and(|r| r > 0.0), "{rc}");
    assert!(rc["ops"].as_u64().is_some_and(|n| n > 0), "{rc}");
    assert_eq!(rc["errors"], 0, "{rc}");
    assert_eq!(rc["hit_ratio"], 1.0, "every key was filled: {rc}");
    let l = &rc["latency_us"];
    let p = |q: &str| l[q].as_u64().unwrap_or_else(|| panic!("{q} in {l}"));
    assert!(
        p("p50") >= 1 && p("p50") <= p("p99") && p("p99") <= p("max"),
        "{l}"
    );
    assert!(report["ratio_to_redis"].is_null());

    // Mixed, Zipf, pipelined: the table, with a row per operation.
    let out = bench(&[
        "--duration",
        "500ms",
        "--warmup",
        "0s",
        "--connections",
        "2",
        "--depth",
        "4",
        "--keyspace",
        "100",
        "--op",
        "mixed",
        "--get-ratio",
        "0.5",
        "--dist",
        "zipf",
    ])
    .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("mixed (50% GET), Zipf(0.99)"),
        "{out:#?}"
    );
    let header = lines
        .iter()
        .position(|l| l.starts_with("SYSTEM"))
        .expect("a table");
    assert!(lines[header].contains("OPS/S") && lines[header].contains("P99"));
    for (i, op) in ["all", "get", "set"].iter().enumerate() {
        let row: Vec<&str> = lines[header + 1 + i].split_whitespace().collect();
        assert_eq!(&row[..4], ["ringcache", *op, "2", "4"], "{out:#?}");
    }

    // The lean driver (raw frames, no client library): the same loops, every GET of a
    // filled key a hit, every SET stored, no request unanswered or mismatched.
    let out = bench(&[
        "--json",
        "--driver",
        "lean",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--connections",
        "3",
        "--depth",
        "8",
        "--keyspace",
        "100",
        "--op",
        "mixed",
        "--get-ratio",
        "0.5",
    ])
    .ok();
    let report = out.json();
    assert_eq!(report["workload"]["driver"], "lean", "{report}");
    let rc = &report["systems"][0];
    assert_eq!(rc["errors"], 0, "{rc}");
    assert_eq!(rc["hit_ratio"], 1.0, "the keys were filled above: {rc}");
    let by_op = rc["by_op"].as_array().expect("by_op");
    for op in ["get", "set"] {
        let row = by_op.iter().find(|r| r["op"] == op).expect("a row per op");
        assert!(row["ops"].as_u64().is_some_and(|n| n > 0), "{row}");
    }

    // A namespace the node does not have: one line, before any load.
    let out = bench(&["--ns", "nope", "--duration", "1s"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ringctl: ") && last.contains("unknown namespace"),
        "{out:#?}"
    );

    run(cwd, &["local", "down", "--dir", "local"]).ok();
}
