//! Other processes: finding `ringcached`, asking whether a pid is alive and is ours,
//! and signalling it. Signals go through the `kill` command, so this crate needs no
//! `unsafe` and no libc binding.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// The node binary's file name.
pub(crate) const RINGCACHED: &str = "ringcached";

/// `ringcached` next to the running executable, else on `PATH`.
pub(crate) fn find_ringcached() -> anyhow::Result<PathBuf> {
    let name = format!("{RINGCACHED}{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(&name)));
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(&name));
    beside
        .into_iter()
        .chain(on_path)
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "cannot find {RINGCACHED} next to ringctl or on PATH; build it with \
                 `cargo build --release` (or pass --ringcached FILE)"
            )
        })
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

/// Whether `pid` is a running process. A zombie (exited, not yet reaped by its parent)
/// counts as gone: a detached node's parent is whatever adopted it, which may never
/// reap it.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the first field after the parenthesised command name (which may
        // itself contain parentheses, hence the last `)`).
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| !matches!(state, "Z" | "X" | "x")),
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        // No procfs (macOS, BSD): ask `kill -0`.
        Err(_) => Command::new("kill")
            .args(["-0", &pid.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
    }
}

/// Whether `pid` runs `ringcached` with `config` as an argument: `Some(false)` means a
/// stale pid file whose pid now belongs to someone else; `None` that this system cannot
/// tell (no procfs).
pub(crate) fn is_node_process(pid: u32, config: &Path) -> Option<bool> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = cmdline
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned());
    let program = args.next()?;
    let is_ringcached = Path::new(&program)
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with(RINGCACHED));
    let config = config.to_string_lossy();
    Some(is_ringcached && args.any(|a| a == config))
}

/// Sends `signal` (`TERM`, `KILL`) to `pid`.
pub(crate) fn signal(pid: u32, signal: &str) -> anyhow::Result<()> {
    let out = Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running `kill`")?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        bail!("kill -{signal} {pid} failed: {}", one_line(why.trim()));
    }
    Ok(())
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
