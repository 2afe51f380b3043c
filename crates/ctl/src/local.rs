//! `ringctl local up|down`: one `ringcached` on 127.0.0.1 for development.
//!
//! Everything lives in one directory (default [`DEFAULT_DIR`]):
//!
//! ```text
//! <dir>/certs/              CA, node-1 and client-admin certificates (reused if present)
//! <dir>/node-1.toml         the node's configuration (rewritten on every start)
//! <dir>/node-1/             the node's data_dir: listen.addr, ringcached.log, pid
//! <dir>/client.toml         what `ringctl -c` and `ClientConfig::from_file` read
//! ```
//!
//! The node runs in its own process group, so a Ctrl-C in the terminal reaches only
//! ringctl, which forwards it as SIGTERM (a graceful stop); a second Ctrl-C kills.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringcache_client::{Client, ClientConfig};
use ringcache_proto::NodeId;
use serde::Serialize;
use tokio::process::Child;

use crate::Status;
use crate::certs::ensure_bundle;
use crate::cli::{LocalDownArgs, LocalUpArgs};
use crate::connect::{DEFAULT_CLIENT_CONFIG, display_path};
use crate::output::{print_json, print_line};
use crate::process::{RINGCACHED, alive, find_ringcached, is_node_process, signal};

/// Where `local up` keeps its state unless `--dir` says otherwise.
pub(crate) const DEFAULT_DIR: &str = ".ringcache/local";

/// The only node of a local cluster, for now.
const NODE: NodeId = NodeId(1);
/// The client certificate `local up` issues and `client.toml` uses.
const CLIENT_NAME: &str = "admin";
/// Between two readiness or exit checks.
const POLL: Duration = Duration::from_millis(50);
/// How long a node that failed to become ready gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// The files of one local cluster directory.
#[derive(Debug)]
struct Layout {
    dir: PathBuf,
    certs: PathBuf,
    node_config: PathBuf,
    data_dir: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    listen_addr: PathBuf,
    client_config: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        let data_dir = dir.join(NODE.to_string());
        Self {
            dir: dir.to_owned(),
            certs: dir.join("certs"),
            node_config: dir.join(format!("{NODE}.toml")),
            pid_file: data_dir.join("pid"),
            log: data_dir.join("ringcached.log"),
            listen_addr: data_dir.join("listen.addr"),
            client_config: dir.join("client.toml"),
            data_dir,
        }
    }
}

/// `node-1.toml`, in the node's schema (crates/node/src/config.rs).
#[derive(Serialize)]
struct NodeFile {
    node_id: u64,
    listen: String,
    data_dir: String,
    tls: NodeTls,
    namespaces: std::collections::BTreeMap<String, NodeNamespace>,
}

#[derive(Serialize)]
struct NodeTls {
    ca: String,
    cert: String,
    key: String,
    cluster_domain: String,
}

#[derive(Serialize)]
struct NodeNamespace {
    memory: u64,
}

/// `client.toml`, in [`ClientConfig`]'s schema; paths relative to the file.
#[derive(Serialize)]
struct ClientFile {
    endpoints: Vec<String>,
    ca_cert: String,
    client_cert: String,
    client_key: String,
    cluster_domain: String,
}

#[derive(Serialize)]
struct UpReport {
    dir: PathBuf,
    node: u64,
    endpoint: String,
    pid: u32,
    client_config: PathBuf,
    log: PathBuf,
    detached: bool,
    certs_created: Vec<PathBuf>,
}

/// `ringctl local up`.
pub(crate) async fn up(args: &LocalUpArgs, json: bool) -> anyhow::Result<Status> {
    match args.nodes {
        0 => bail!("--nodes must be at least 1"),
        1 => {}
        _ => bail!("multi-node local clusters arrive with the cluster work; use --nodes 1"),
    }
    let binary = match &args.ringcached {
        Some(p) if p.is_file() => p.clone(),
        Some(p) => bail!("--ringcached {}: no such file", p.display()),
        None => find_ringcached()?,
    };
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    // Absolute, so the node's command line names its config unambiguously (that is how
    // `local down` recognises it) and printed commands work from anywhere.
    let dir =
        fs::canonicalize(&args.dir).with_context(|| format!("resolving {}", args.dir.display()))?;
    let layout = Layout::new(&dir);
    refuse_if_running(&layout)?;

    let bundle = ensure_bundle(&layout.certs, &[NODE], CLIENT_NAME)?;
    write_node_config(&layout, args, &bundle.domain)?;
    fs::create_dir_all(&layout.data_dir)
        .with_context(|| format!("creating {}", layout.data_dir.display()))?;
    // A leftover address from an earlier run would look like readiness.
    remove_if_exists(&layout.listen_addr)?;

    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&layout.log)
        .with_context(|| format!("opening {}", layout.log.display()))?;
    let log_start = log
        .metadata()
        .map(|m| m.len())
        .with_context(|| format!("reading {}", layout.log.display()))?;
    let mut child = spawn_node(&binary, &layout, log)?;
    let pid = child
        .id()
        .context("ringcached exited before its pid could be read")?;
    fs::write(&layout.pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", layout.pid_file.display()))?;

    let mut signals = Signals::new()?;
    let ready = tokio::select! {
        r = wait_ready(&mut child, &layout, &bundle.domain, args.wait, log_start) => r,
        () = signals.recv() => Err(anyhow::anyhow!("interrupted while waiting for {RINGCACHED} to start")),
    };
    let endpoint = match ready {
        Ok(endpoint) => endpoint,
        Err(e) => {
            stop_child(&mut child).await;
            remove_if_exists(&layout.pid_file).ok();
            return Err(e);
        }
    };

    let report = UpReport {
        dir: dir.clone(),
        node: NODE.0,
        endpoint: endpoint.clone(),
        pid,
        client_config: layout.client_config.clone(),
        log: layout.log.clone(),
        detached: args.detach,
        certs_created: bundle.created,
    };
    if json {
        print_json(&report)?;
    } else {
        print_line(&up_message(&report, &args.dir))?;
    }
    if args.detach {
        // Dropping the handle neither kills nor waits: the node outlives ringctl.
        return Ok(Status::Success);
    }
    supervise(child, &layout, &mut signals, json, log_start).await
}

fn up_message(r: &UpReport, given_dir: &Path) -> String {
    let client = display_path(&r.client_config);
    let default_dir = given_dir == Path::new(DEFAULT_DIR);
    let mut s = format!(
        "{NODE} is up at {} (pid {}, log {})\n\nconnect:  ringctl -c {client} ping",
        r.endpoint,
        r.pid,
        display_path(&r.log),
    );
    if default_dir {
        s.push_str(&format!(
            "\n          (or just `ringctl ping` from this directory: it reads {DEFAULT_CLIENT_CONFIG})"
        ));
    }
    s.push_str(&format!(
        "\napps:     ClientConfig::from_file(\"{client}\")  or  export RINGCACHE_CONFIG={client}"
    ));
    let down = if default_dir {
        "ringctl local down".to_owned()
    } else {
        format!("ringctl local down --dir {}", display_path(&r.dir))
    };
    if r.detached {
        s.push_str(&format!("\nstop:     {down}"));
    } else {
        s.push_str(&format!(
            "\nstop:     Ctrl-C here, or {down} from another terminal"
        ));
    }
    s
}

fn refuse_if_running(layout: &Layout) -> anyhow::Result<()> {
    let Some(pid) = read_pid(&layout.pid_file)? else {
        return Ok(());
    };
    if alive(pid) && is_node_process(pid, &layout.node_config) != Some(false) {
        bail!(
            "a local node is already running in {} (pid {pid}); stop it with `ringctl local down --dir {}`",
            display_path(&layout.dir),
            display_path(&layout.dir)
        );
    }
    // Left by a node that died without `local down`.
    remove_if_exists(&layout.pid_file)
}

fn write_node_config(layout: &Layout, args: &LocalUpArgs, domain: &str) -> anyhow::Result<()> {
    let certs = |f: &str| format!("certs/{f}");
    let node = NodeFile {
        node_id: NODE.0,
        listen: format!("127.0.0.1:{}", args.port),
        data_dir: NODE.to_string(),
        tls: NodeTls {
            ca: certs("ca.pem"),
            cert: certs(&format!("{NODE}.pem")),
            key: certs(&format!("{NODE}.key")),
            cluster_domain: domain.to_owned(),
        },
        namespaces: [(
            crate::data::DEFAULT_NAMESPACE.to_owned(),
            NodeNamespace {
                memory: args.memory,
            },
        )]
        .into(),
    };
    let text = toml::to_string(&node).context("encoding the node config")?;
    let text = format!(
        "# Written by `ringctl local up`, rewritten on every start. Paths are relative\n\
         # to this file. Schema: crates/node/src/config.rs.\n{text}"
    );
    fs::write(&layout.node_config, text)
        .with_context(|| format!("writing {}", layout.node_config.display()))
}

fn write_client_config(layout: &Layout, endpoint: &str, domain: &str) -> anyhow::Result<()> {
    let client = ClientFile {
        endpoints: vec![endpoint.to_owned()],
        ca_cert: "certs/ca.pem".to_owned(),
        client_cert: format!("certs/client-{CLIENT_NAME}.pem"),
        client_key: format!("certs/client-{CLIENT_NAME}.key"),
        cluster_domain: domain.to_owned(),
    };
    let text = toml::to_string(&client).context("encoding the client config")?;
    let text = format!(
        "# Written by `ringctl local up`. Paths are relative to this file; durations\n\
         # (connect_timeout, request_timeout) are milliseconds.\n{text}"
    );
    fs::write(&layout.client_config, text)
        .with_context(|| format!("writing {}", layout.client_config.display()))
}

fn spawn_node(binary: &Path, layout: &Layout, log: File) -> anyhow::Result<Child> {
    let stderr = log
        .try_clone()
        .with_context(|| format!("opening {}", layout.log.display()))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--config")
        .arg(&layout.node_config)
        .current_dir(&layout.dir)
        // Every stream goes to the log: a detached node must not hold ringctl's
        // stdout open (a caller reading it to the end would wait for the node).
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .env("NO_COLOR", "1")
        .kill_on_drop(false);
    if std::env::var_os("RUST_LOG").is_none() {
        cmd.env("RUST_LOG", "info");
    }
    #[cfg(unix)]
    cmd.process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {}", binary.display()))
}

/// Waits for the node to write its address and answer a ping through `client.toml`;
/// returns the address.
async fn wait_ready(
    child: &mut Child,
    layout: &Layout,
    domain: &str,
    limit: Duration,
    log_start: u64,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + limit;
    let exited = |status: ExitStatus| {
        anyhow::anyhow!(
            "{RINGCACHED} exited ({status}) before it was ready: {} (log: {})",
            log_excerpt(&layout.log, log_start),
            display_path(&layout.log)
        )
    };
    let endpoint = loop {
        if let Some(status) = child.try_wait().context("checking on ringcached")? {
            return Err(exited(status));
        }
        if let Ok(text) = fs::read_to_string(&layout.listen_addr)
            && text.ends_with('\n')
        {
            break text.trim().to_owned();
        }
        if Instant::now() >= deadline {
            bail!(
                "{RINGCACHED} did not start listening within {limit:?} (log: {})",
                display_path(&layout.log)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    write_client_config(layout, &endpoint, domain)?;
    // Through the file just written: it is proven to load and to work.
    let mut cfg = ClientConfig::from_file(&layout.client_config)?;
    let mut last_error;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        cfg.connect_timeout = left.clamp(Duration::from_millis(100), Duration::from_secs(2));
        cfg.request_timeout = cfg.connect_timeout;
        match ping(cfg.clone()).await {
            Ok(()) => return Ok(endpoint),
            Err(e) => last_error = e,
        }
        if let Some(status) = child.try_wait().context("checking on ringcached")? {
            return Err(exited(status));
        }
        if Instant::now() >= deadline {
            bail!(
                "{RINGCACHED} listens on {endpoint} but did not answer a ping within {limit:?}: \
                 {last_error} (log: {})",
                display_path(&layout.log)
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn ping(cfg: ClientConfig) -> Result<(), ringcache_client::Error> {
    let client = Client::connect(cfg).await?;
    let res = client.ping().await.map(drop);
    client.close().await;
    res
}

/// Foreground: forwards Ctrl-C/SIGTERM as a graceful stop (a second one kills) and
/// returns when the node exits.
async fn supervise(
    mut child: Child,
    layout: &Layout,
    signals: &mut Signals,
    json: bool,
    log_start: u64,
) -> anyhow::Result<Status> {
    let pid = child.id();
    let mut stopping = false;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.context("waiting for ringcached")?,
            () = signals.recv() => {
                if stopping {
                    if !json {
                        print_line(&format!("killing {NODE}"))?;
                    }
                    child.start_kill().ok();
                } else {
                    stopping = true;
                    if !json {
                        print_line(&format!("stopping {NODE} (Ctrl-C again to kill it)"))?;
                    }
                    if let Some(pid) = pid {
                        signal(pid, "TERM")?;
                    }
                }
            }
        }
    };
    remove_if_exists(&layout.pid_file).ok();
    if status.success() || stopping {
        if !json {
            print_line(&format!("{NODE} stopped"))?;
        }
        return Ok(Status::Success);
    }
    bail!(
        "{RINGCACHED} exited ({status}): {} (log: {})",
        log_excerpt(&layout.log, log_start),
        display_path(&layout.log)
    )
}

/// Stops a node that never became ready: SIGTERM, then SIGKILL after [`STOP_GRACE`].
async fn stop_child(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    if let Some(pid) = child.id() {
        signal(pid, "TERM").ok();
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        child.kill().await.ok();
    }
}

/// SIGINT, SIGTERM and SIGHUP as one stream of "stop" requests.
struct Signals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen = |kind| signal(kind).context("listening for signals");
        Ok(Self {
            int: listen(SignalKind::interrupt())?,
            term: listen(SignalKind::terminate())?,
            hup: listen(SignalKind::hangup())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> anyhow::Result<Self> {
        Ok(Self {})
    }

    #[cfg(unix)]
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
            _ = self.hup.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) {
        tokio::signal::ctrl_c().await.ok();
    }
}

/// The node's own explanation from the log written since `from`: its `Error:` report
/// (anyhow's, possibly several lines) on one line, else the last line.
fn log_excerpt(log: &Path, from: u64) -> String {
    let mut text = String::new();
    let read = File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.read_to_string(&mut text)
    });
    if read.is_err() {
        return "no log".to_owned();
    }
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if let Some(i) = lines.iter().position(|l| l.starts_with("Error: ")) {
        let mut parts: Vec<&str> = Vec::new();
        for l in lines[i..]
            .iter()
            // With RUST_BACKTRACE set, anyhow appends a backtrace: not for one line.
            .take_while(|l| !l.starts_with("Stack backtrace:"))
            .filter(|l| **l != "Caused by:")
        {
            // anyhow numbers its causes: "0: cannot bind".
            let l = l.trim_start_matches("Error: ");
            let l = match l.split_once(": ") {
                Some((n, rest)) if n.chars().all(|c| c.is_ascii_digit()) => rest,
                _ => l,
            };
            // A message that embeds its source repeats it as the next cause.
            if !parts.last().is_some_and(|p| p.ends_with(l)) {
                parts.push(l);
            }
        }
        return parts.join(": ");
    }
    lines
        .last()
        .map_or_else(|| "nothing logged".to_owned(), |l| (*l).to_owned())
}

fn read_pid(path: &Path) -> anyhow::Result<Option<u32>> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn remove_if_exists(path: &Path) -> anyhow::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("removing {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[derive(Serialize)]
struct Stopped {
    node: String,
    pid: u32,
}

#[derive(Serialize)]
struct DownReport {
    dir: PathBuf,
    stopped: Vec<Stopped>,
    /// Pid files left by nodes that were no longer running (removed).
    stale: Vec<Stopped>,
    killed: Vec<Stopped>,
}

/// `ringctl local down`.
pub(crate) fn down(args: &LocalDownArgs, json: bool) -> anyhow::Result<Status> {
    let mut report = DownReport {
        dir: args.dir.clone(),
        stopped: Vec::new(),
        stale: Vec::new(),
        killed: Vec::new(),
    };
    let dir = match fs::canonicalize(&args.dir) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return finish_down(&report, json, &args.dir);
        }
        Err(e) => return Err(e).with_context(|| format!("resolving {}", args.dir.display())),
    };
    report.dir.clone_from(&dir);

    // Every node-* directory with a pid file (one today; the layout allows more).
    let mut running = Vec::new();
    let entries = fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
    let mut nodes: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().join("pid").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("node-"))
        .collect();
    nodes.sort();
    for node in nodes {
        let pid_file = dir.join(&node).join("pid");
        let config = dir.join(format!("{node}.toml"));
        let Some(pid) = read_pid(&pid_file)? else {
            remove_if_exists(&pid_file)?;
            continue;
        };
        if !alive(pid) || is_node_process(pid, &config) == Some(false) {
            remove_if_exists(&pid_file)?;
            report.stale.push(Stopped { node, pid });
            continue;
        }
        signal(pid, "TERM").with_context(|| format!("stopping {node}"))?;
        running.push((Stopped { node, pid }, pid_file));
    }

    let deadline = Instant::now() + args.wait;
    while running.iter().any(|(s, _)| alive(s.pid)) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    let mut left = Vec::new();
    for (s, pid_file) in running {
        if !alive(s.pid) {
            remove_if_exists(&pid_file)?;
            report.stopped.push(s);
        } else if args.force {
            signal(s.pid, "KILL").with_context(|| format!("killing {}", s.node))?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while alive(s.pid) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            if alive(s.pid) {
                left.push(s);
            } else {
                remove_if_exists(&pid_file)?;
                report.killed.push(s);
            }
        } else {
            left.push(s);
        }
    }
    if let Some(s) = left.first() {
        bail!(
            "{} (pid {}) is still running {:?} after SIGTERM; wait and retry, or use `ringctl local down --force`",
            s.node,
            s.pid,
            args.wait
        );
    }
    finish_down(&report, json, &args.dir)
}

fn finish_down(report: &DownReport, json: bool, given: &Path) -> anyhow::Result<Status> {
    if json {
        print_json(report)?;
        return Ok(Status::Success);
    }
    if report.stopped.is_empty() && report.killed.is_empty() {
        let mut msg = format!("no local node is running in {}", given.display());
        if !report.stale.is_empty() {
            msg.push_str(" (removed stale pid files)");
        }
        return print_line(&msg).map(|()| Status::Success);
    }
    let mut lines: Vec<String> = report
        .stopped
        .iter()
        .map(|s| format!("stopped {} (pid {})", s.node, s.pid))
        .collect();
    lines.extend(
        report
            .killed
            .iter()
            .map(|s| format!("killed {} (pid {}): it did not stop in time", s.node, s.pid)),
    );
    print_line(&lines.join("\n")).map(|()| Status::Success)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_prefers_the_error_report() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log");
        fs::write(&log, "old run\n").expect("write");
        let from = fs::metadata(&log).expect("meta").len();
        let mut text = fs::read_to_string(&log).expect("read");
        text.push_str(
            "INFO starting\nError: running the node\n\nCaused by:\n    0: cannot bind 127.0.0.1:1: permission denied\n    1: permission denied\n\nStack backtrace:\n   0: main\n",
        );
        fs::write(&log, text).expect("write");
        assert_eq!(
            log_excerpt(&log, from),
            "running the node: cannot bind 127.0.0.1:1: permission denied"
        );
        fs::write(&log, "a\nlast words\n\n").expect("write");
        assert_eq!(log_excerpt(&log, 0), "last words");
    }
}
