//! Black-box: `ringctl local up --nodes N`, `local add|kill`, `cluster ...` and
//! `locate` against real `ringcached` nodes forming a cluster (`cargo build
//! --workspace` builds both). Every command and wait is bounded.
//!
//! Ignored until the node's cluster support (Raft membership, tables, moves) is
//! merged: until then a node answers the cluster operations `unsupported` and
//! `local up --nodes 3` says so.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

mod common;
use common::*;

/// Forming a cluster: three nodes start, two join through the first, a table is
/// committed.
const FORM_LIMIT: Duration = Duration::from_secs(90);
/// Moves after a join or a drain, and a down verdict (default `down_after` 5s).
const CHANGE_LIMIT: Duration = Duration::from_secs(60);

/// A detached local cluster of `n` nodes in `<tmp>/local`.
fn up(cwd: &Path, n: u32) -> ClusterGuard {
    require_ringcached();
    let guard = ClusterGuard {
        dir: cwd.join("local"),
    };
    let nodes = n.to_string();
    let out = run_within(
        cwd,
        &[
            "--json", "local", "up", "--nodes", &nodes, "--detach", "--dir", "local", "--memory",
            "16MiB", "--wait", "80s",
        ],
        FORM_LIMIT,
    )
    .ok();
    let report = out.json();
    assert_eq!(
        report["nodes"].as_array().map(Vec::len),
        Some(n as usize),
        "{report}"
    );
    assert!(report["cluster"]["epoch"].as_u64() > Some(0), "{report}");
    guard
}

fn ctl(cwd: &Path, args: &[&str]) -> Output {
    run(cwd, &[&["-c", "local/client.toml"][..], args].concat())
}

/// `cluster status --json`, or why not.
fn status(cwd: &Path) -> Result<Value, String> {
    let out = ctl(cwd, &["--json", "cluster", "status"]);
    if out.code != Some(0) {
        return Err(out.stderr);
    }
    Ok(out.json())
}

fn member(st: &Value, id: u64) -> Option<&Value> {
    st["members"].as_array()?.iter().find(|m| m["id"] == id)
}

fn active_ids(st: &Value) -> BTreeSet<u64> {
    st["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["state"] == "active")
        .filter_map(|m| m["id"].as_u64())
        .collect()
}

#[test]
fn a_local_cluster_forms_serves_grows_and_notices_a_dead_node() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    let _guard = up(cwd, 3);

    // Every node wrote a [cluster] section: node-1 bootstraps, the others join it.
    let one = std::fs::read_to_string(cwd.join("local/node-1.toml")).expect("node-1.toml");
    assert!(one.contains("bootstrap = true"), "{one}");
    let two = std::fs::read_to_string(cwd.join("local/node-2.toml")).expect("node-2.toml");
    assert!(two.contains("seeds = [\"127.0.0.1:"), "{two}");
    let client = ringcache_client::ClientConfig::from_file(&cwd.join("local/client.toml"))
        .expect("client.toml");
    assert_eq!(client.endpoints.len(), 3, "{client:?}");

    let st = status(cwd).expect("cluster status");
    assert_eq!(active_ids(&st), BTreeSet::from([1, 2, 3]), "{st}");
    assert!(st["leader"].as_u64().is_some(), "{st}");
    assert!(st["epoch"].as_u64() > Some(0), "{st}");
    assert!(
        st["members"]
            .as_array()
            .expect("members")
            .iter()
            .all(|m| m["health"] == "ok"),
        "{st}"
    );
    let human = ctl(cwd, &["cluster", "status"]).ok().stdout;
    assert!(human.starts_with("leader node-"), "{human}");

    // Data goes through the client config like on one node.
    ctl(cwd, &["set", "greeting", "hello"]).ok();
    assert_eq!(ctl(cwd, &["get", "greeting"]).ok().stdout, "hello\n");

    // Replication 2 (the default): two distinct nodes hold the key's partition.
    let loc = ctl(cwd, &["--json", "locate", "greeting"]).ok().json();
    let replicas: BTreeSet<u64> = loc["replicas"]
        .as_array()
        .expect("replicas")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    assert_eq!(replicas.len(), 2, "{loc}");
    assert_eq!(loc["replicas"][0]["role"], "primary", "{loc}");
    assert!(
        loc["partition"].as_u64() < loc["partitions"].as_u64(),
        "{loc}"
    );

    // A fourth node joins and gets partitions once the moves are done.
    let added = run_within(
        cwd,
        &[
            "--json", "local", "add", "--dir", "local", "--memory", "16MiB", "--wait", "80s",
        ],
        FORM_LIMIT,
    )
    .ok()
    .json();
    assert_eq!(added["node"], 4, "{added}");
    let st = status(cwd).expect("cluster status");
    assert_eq!(active_ids(&st), BTreeSet::from([1, 2, 3, 4]), "{st}");
    let client = ringcache_client::ClientConfig::from_file(&cwd.join("local/client.toml"))
        .expect("client.toml");
    assert_eq!(client.endpoints.len(), 4, "{client:?}");
    wait_for("partitions on node 4", CHANGE_LIMIT, || {
        let ring = ctl(cwd, &["--json", "cluster", "ring"]);
        if ring.code != Some(0) {
            return Err(ring.stderr);
        }
        let ring = ring.json();
        let four = ring["nodes"]
            .as_array()
            .and_then(|n| n.iter().find(|n| n["id"] == 4))
            .cloned();
        match four {
            Some(n) if n["primaries"].as_u64() > Some(0) => Ok(()),
            _ => Err(ring.to_string()),
        }
    });
    // The data written before is still there.
    assert_eq!(ctl(cwd, &["get", "greeting"]).ok().stdout, "hello\n");

    // A crash: the leader marks node 2 down.
    let killed = run(cwd, &["--json", "local", "kill", "2", "--dir", "local"])
        .ok()
        .json();
    assert_eq!(killed["signal"], "KILL", "{killed}");
    wait_for("node 2 to be marked down", CHANGE_LIMIT, || {
        let st = status(cwd)?;
        match member(&st, 2) {
            Some(m) if m["state"] == "down" => Ok(()),
            _ => Err(st.to_string()),
        }
    });
    let st = status(cwd).expect("status");
    assert_eq!(
        member(&st, 2).expect("node 2")["health"],
        "unreachable",
        "{st}"
    );

    run(cwd, &["local", "down", "--dir", "local"]).ok();
}

#[test]
fn drain_moves_every_partition_off_a_node_then_removes_it() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    let _guard = up(cwd, 3);
    for i in 0..50 {
        ctl(cwd, &["set", &format!("k{i}"), &format!("v{i}")]).ok();
    }

    // Remove needs --yes.
    let line = ctl(cwd, &["cluster", "remove", "3"]).failed(1);
    assert!(line.contains("--yes"), "{line}");

    let out = run_within(
        cwd,
        &[
            "-c",
            "local/client.toml",
            "--json",
            "cluster",
            "drain",
            "3",
            "--wait",
            "50s",
        ],
        CHANGE_LIMIT,
    )
    .ok()
    .json();
    assert_eq!(out["done"], true, "{out}");
    let st = status(cwd).expect("status");
    match member(&st, 3) {
        None => {}
        Some(m) => {
            assert_eq!(m["state"], "removed", "{st}");
            assert_eq!(m["primaries"], 0, "{st}");
        }
    }
    let ring = ctl(cwd, &["--json", "cluster", "ring"]).ok().json();
    assert!(
        ring["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .all(|n| n["id"] != 3 || n["primaries"] == 0),
        "{ring}"
    );
    // Nothing was lost on the way.
    for i in 0..50 {
        assert_eq!(
            ctl(cwd, &["get", &format!("k{i}")]).ok().stdout,
            format!("v{i}\n")
        );
    }
    run(cwd, &["local", "down", "--dir", "local"]).ok();
}

#[test]
fn multi_node_up_without_cluster_support_fails_cleanly_or_forms() {
    // Runs now and after the merge: either the cluster forms, or ringctl says in one
    // line that this ringcached has no cluster support, and leaves nothing running.
    require_ringcached();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    let guard = ClusterGuard {
        dir: cwd.join("local"),
    };
    let out = run_within(
        cwd,
        &[
            "--json", "local", "up", "--nodes", "2", "--detach", "--dir", "local", "--memory",
            "16MiB", "--wait", "80s",
        ],
        FORM_LIMIT,
    );
    if out.code == Some(0) {
        let st = status(cwd).expect("status");
        assert_eq!(active_ids(&st), BTreeSet::from([1, 2]), "{st}");
    } else {
        let line = out.failed(1);
        assert!(line.contains("no cluster support"), "{line}");
        for n in ["node-1", "node-2"] {
            assert!(
                !cwd.join("local").join(n).join("pid").exists(),
                "{n} left a pid file"
            );
        }
    }
    run(cwd, &["local", "down", "--dir", "local"]).ok();
    drop(guard);
}
