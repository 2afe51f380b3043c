//! Fault tests in a private network namespace, with nftables rules for cuts.
//!
//! A test calls [`isolated`] with its own name. In the test process that nextest
//! started, that re-runs the same test binary, for that one test, under
//! `unshare --net` (a new network namespace with only a loopback interface), and checks
//! it passed; in that child, it brings `lo` up and runs the test body. Every node listens
//! on its own loopback address (`127.0.0.<10+id>`), the test's clients on 127.0.0.1, so
//! rules on source and destination addresses cut nodes from each other while the test
//! still reaches every node. Nothing leaks: the namespace, its rules and its traffic
//! vanish with the child process, even if it is killed.
//!
//! Needs root, `unshare` (util-linux) and `nft` (nftables); `.ci/run` installs them.
//! Without them the test fails under CI (`CI` set) and is skipped with a message
//! elsewhere.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "RINGCACHE_TEST_NETNS";
/// Longest a fault test may run.
const LIMIT: Duration = Duration::from_secs(300);

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `body` in a private network namespace (see the module docs).
pub(crate) fn isolated<F, Fut>(name: &str, body: F)
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if std::env::var_os(CHILD).is_some() {
        run("ip", &["link", "set", "lo", "up"]);
        run("nft", &["add", "table", "inet", "faults"]);
        for (chain, hook) in [("input", "input"), ("output", "output")] {
            run(
                "nft",
                &[
                    "add",
                    "chain",
                    "inet",
                    "faults",
                    chain,
                    &format!("{{ type filter hook {hook} priority 0; }}"),
                ],
            );
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(body());
        return;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    if !(root && have("unshare") && have("nft")) {
        let why = "fault tests need root, unshare and nft (apt-get install util-linux nftables)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new("unshare")
        .arg("--net")
        .arg(&exe)
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .spawn()
        .expect("unshare");
    let deadline = Instant::now() + LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("{name} ran over {LIMIT:?} in its namespace");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{name} failed in its namespace: {status}");
}

/// The nftables rule matching packets from `from` to `to`.
fn rule(from: &str, to: &str) -> String {
    format!("ip saddr {from} ip daddr {to} drop")
}

/// Drops every packet from address `from` to address `to` (one direction).
pub(crate) fn cut_one_way(from: &str, to: &str) {
    let r = rule(from, to);
    let args: Vec<&str> = ["add", "rule", "inet", "faults", "output"]
        .into_iter()
        .chain(r.split(' '))
        .collect();
    run("nft", &args);
}

/// Drops packets between `a` and each of `others`, both ways.
pub(crate) fn cut_off(a: &str, others: &[String]) {
    for o in others {
        cut_one_way(a, o);
        cut_one_way(o, a);
    }
}

/// Removes every cut.
pub(crate) fn heal() {
    run("nft", &["flush", "chain", "inet", "faults", "output"]);
    run("nft", &["flush", "chain", "inet", "faults", "input"]);
}
