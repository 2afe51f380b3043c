//! Shared harness of the ringctl black-box tests: run `ringctl` with a bounded time,
//! poll for conditions, and make sure no node outlives a failed test.
#![allow(dead_code)] // each test binary uses a subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub(crate) const RINGCTL: &str = env!("CARGO_BIN_EXE_ringctl");
/// The longest any one command may take.
pub(crate) const COMMAND_LIMIT: Duration = Duration::from_secs(20);
pub(crate) const POLL: Duration = Duration::from_millis(20);

/// What a finished command left.
#[derive(Debug)]
pub(crate) struct Output {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Output {
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "command failed: {self:#?}");
        self
    }

    /// Asserts a failure reported the CLI way: exit `code`, one `ringctl:` line.
    #[track_caller]
    pub(crate) fn failed(self, code: i32) -> String {
        assert_eq!(self.code, Some(code), "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("ringctl: "), "{self:#?}");
        lines[0].to_owned()
    }

    #[track_caller]
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }
}

/// `ringctl` with a clean environment, run in `cwd` (so no `./.ringcache/local` of the
/// developer's is picked up).
pub(crate) fn ringctl(cwd: &Path) -> Command {
    let mut cmd = Command::new(RINGCTL);
    cmd.current_dir(cwd)
        .env_remove("RINGCACHE_CONFIG")
        .env_remove("RINGCACHE_NS")
        .env_remove("RINGCACHED_BIN")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    cmd
}

/// Runs `ringctl args` in `cwd` to completion, within [`COMMAND_LIMIT`].
#[track_caller]
pub(crate) fn run(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = ringctl(cwd);
    cmd.args(args);
    finish(cmd)
}

/// Runs a prepared command to completion, within [`COMMAND_LIMIT`].
#[track_caller]
pub(crate) fn finish(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringctl");
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status = wait_exit(&mut child, COMMAND_LIMIT)
        .unwrap_or_else(|| panic!("{cmd:?} took over {COMMAND_LIMIT:?}"));
    Output {
        code: status.code(),
        stdout: stdout.recv_timeout(COMMAND_LIMIT).unwrap_or_default(),
        stderr: stderr.recv_timeout(COMMAND_LIMIT).unwrap_or_default(),
    }
}

pub(crate) fn drain(mut r: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut s = String::new();
        r.read_to_string(&mut s).ok();
        tx.send(s).ok();
    });
    rx
}

/// The child's exit status, or `None` (after killing it) if it outlives `limit`.
pub(crate) fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            child.kill().ok();
            child.wait().ok();
            return None;
        }
        std::thread::sleep(POLL);
    }
}

/// Polls `f` until it holds, failing after `limit` with `what`.
#[track_caller]
pub(crate) fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(POLL);
    }
}

/// Whether `pid` is running (a zombie has exited: a detached node's adopter may never
/// reap it).
pub(crate) fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X")
    })
}

/// `local up` needs the node binary next to ringctl; say how to get it rather than
/// skipping.
pub(crate) fn require_ringcached() {
    let node =
        Path::new(RINGCTL).with_file_name(format!("ringcached{}", std::env::consts::EXE_SUFFIX));
    assert!(
        node.is_file(),
        "{} is missing: build the whole workspace first (`cargo build --workspace`) so \
         ringctl finds ringcached next to it",
        node.display()
    );
}

/// Kills whatever node a `local up` in `dir` left running, even when a test fails.
pub(crate) struct NodeGuard {
    pub(crate) pid_file: PathBuf,
}

impl NodeGuard {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            pid_file: dir.join("node-1/pid"),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        std::fs::read_to_string(&self.pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }
}

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            && running(pid)
        {
            Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .ok();
        }
    }
}

/// Runs `ringctl args` in `cwd` to completion, within `limit` (for commands that wait
/// for a cluster to form).
#[track_caller]
pub(crate) fn run_within(cwd: &Path, args: &[&str], limit: Duration) -> Output {
    let mut cmd = ringctl(cwd);
    cmd.args(args);
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringctl");
    let stdout = drain(child.stdout.take().expect("piped"));
    let stderr = drain(child.stderr.take().expect("piped"));
    let status =
        wait_exit(&mut child, limit).unwrap_or_else(|| panic!("{cmd:?} took over {limit:?}"));
    Output {
        code: status.code(),
        stdout: stdout.recv_timeout(limit).unwrap_or_default(),
        stderr: stderr.recv_timeout(limit).unwrap_or_default(),
    }
}

/// Polls `f` until it returns `Ok`, failing after `limit` with `what` and the last
/// reason `f` gave.
#[track_caller]
pub(crate) fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f() {
            Ok(v) => return v,
            Err(why) => assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting for {what}: {why}"
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Kills every node a `local up`/`local add` in `dir` left running, even when a test
/// fails.
pub(crate) struct ClusterGuard {
    pub(crate) dir: PathBuf,
}

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            if let Some(pid) = std::fs::read_to_string(e.path().join("pid"))
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                && running(pid)
            {
                Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status()
                    .ok();
            }
        }
    }
}
