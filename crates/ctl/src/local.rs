//! `ringctl local up|add|stop|kill|start|down`: `ringcached` nodes on 127.0.0.1 for
//! development, one cluster per directory.
//!
//! Everything lives in one directory (default [`DEFAULT_DIR`]):
//!
//! ```text
//! <dir>/certs/              CA (kept, so `local add` can issue more), node-<id> and
//!                           client-admin certificates (reused if present)
//! <dir>/node-<id>.toml      each node's configuration (rewritten by `local up`)
//! <dir>/node-<id>/          its data_dir: listen.addr, ringcached.log, pid
//! <dir>/client.toml         every node's endpoint, for `ringctl -c` and
//!                           `ClientConfig::from_file`
//! ```
//!
//! Every node config has a `[cluster]` section: node-1 bootstraps the cluster, the
//! others (and nodes `local add` makes) join through the nodes already there. Each node
//! listens on its own port, chosen before it starts, because its address is also what
//! it advertises to the others; a later `local up` on the directory reuses the ports,
//! since the cluster remembers members by address.
//!
//! Nodes run in their own process groups, so a Ctrl-C in the terminal reaches only
//! ringctl, which forwards it as SIGTERM (a graceful stop); a second Ctrl-C kills.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringcache_client::{Client, ClientConfig, ErrorCode};
use ringcache_proto::{ClusterStatus, Epoch, NodeId, Op, Response};
use serde::Serialize;
use tokio::process::Child;

use crate::Status;
use crate::certs::ensure_bundle;
use crate::cli::{LocalAddArgs, LocalDownArgs, LocalNodeArgs, LocalStartArgs, LocalUpArgs};
use crate::cluster::Progress;
use crate::connect::{DEFAULT_CLIENT_CONFIG, display_path};
use crate::output::{print_json, print_line};
use crate::process::{RINGCACHED, alive, find_ringcached, is_node_process, signal};

/// Where `local up` keeps its state unless `--dir` says otherwise.
pub(crate) const DEFAULT_DIR: &str = ".ringcache/local";

/// The node that bootstraps the cluster.
const FIRST: NodeId = NodeId(1);
/// The client certificate `local up` issues and `client.toml` uses.
const CLIENT_NAME: &str = "admin";
/// Between two readiness or exit checks.
const POLL: Duration = Duration::from_millis(50);
/// Between two `cluster status` polls while waiting for members.
const MEMBER_POLL: Duration = Duration::from_millis(200);
/// How long a node that failed to become ready gets to stop before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// Log lines quoted when a node does not become a member.
const TAIL_LINES: usize = 3;

/// The files of one local cluster directory.
#[derive(Debug)]
struct Layout {
    dir: PathBuf,
    certs: PathBuf,
    client_config: PathBuf,
}

/// The files of one node.
#[derive(Debug, Clone)]
struct NodePaths {
    id: NodeId,
    config: PathBuf,
    data_dir: PathBuf,
    pid_file: PathBuf,
    log: PathBuf,
    listen_addr: PathBuf,
}

impl Layout {
    fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
            certs: dir.join("certs"),
            client_config: dir.join("client.toml"),
        }
    }

    fn node(&self, id: NodeId) -> NodePaths {
        let data_dir = self.dir.join(id.to_string());
        NodePaths {
            id,
            config: self.dir.join(format!("{id}.toml")),
            pid_file: data_dir.join("pid"),
            log: data_dir.join("ringcached.log"),
            listen_addr: data_dir.join("listen.addr"),
            data_dir,
        }
    }

    /// The nodes with a config in the directory, ascending.
    fn node_ids(&self) -> anyhow::Result<Vec<NodeId>> {
        let entries =
            fs::read_dir(&self.dir).with_context(|| format!("reading {}", self.dir.display()))?;
        let mut ids: Vec<NodeId> = entries
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let n = name.strip_prefix("node-")?.strip_suffix(".toml")?;
                n.parse().ok().filter(|n| *n >= 1).map(NodeId)
            })
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// `node-<id>.toml`, in the node's schema (crates/node/src/config.rs).
#[derive(Serialize)]
struct NodeFile {
    node_id: u64,
    listen: String,
    data_dir: String,
    tls: NodeTls,
    namespaces: std::collections::BTreeMap<String, NodeNamespace>,
    cluster: ClusterFile,
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

/// The node config's `[cluster]` section; other settings keep their defaults.
#[derive(Serialize)]
struct ClusterFile {
    advertise: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    bootstrap: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    seeds: Vec<String>,
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

/// One started node, as reported.
#[derive(Debug, Serialize)]
struct NodeReport {
    node: NodeId,
    endpoint: String,
    pid: u32,
    log: PathBuf,
}

/// The cluster the nodes formed.
#[derive(Debug, Serialize)]
struct ClusterSummary {
    leader: Option<NodeId>,
    term: u64,
    epoch: Epoch,
    members: usize,
}

impl ClusterSummary {
    fn of(st: &ClusterStatus) -> Self {
        Self {
            leader: st.leader,
            term: st.term,
            epoch: st.epoch,
            members: st.members.len(),
        }
    }
}

#[derive(Serialize)]
struct UpReport {
    dir: PathBuf,
    /// node-1's endpoint, pid and log (as before there were several nodes).
    node: u64,
    endpoint: String,
    pid: u32,
    log: PathBuf,
    nodes: Vec<NodeReport>,
    /// `null` when the nodes run standalone (a ringcached without cluster support).
    cluster: Option<ClusterSummary>,
    client_config: PathBuf,
    detached: bool,
    certs_created: Vec<PathBuf>,
}

/// A node process this ringctl started.
struct Running {
    paths: NodePaths,
    child: Child,
    pid: u32,
    /// Where this run's part of the log starts.
    log_start: u64,
}

/// What the wait for members found.
enum Formed {
    Cluster(ClusterStatus),
    /// The node answers the cluster operations `unsupported`.
    Standalone,
}

/// The ringcached to run.
fn binary(given: Option<&PathBuf>) -> anyhow::Result<PathBuf> {
    match given {
        Some(p) if p.is_file() => Ok(p.clone()),
        Some(p) => bail!("--ringcached {}: no such file", p.display()),
        None => find_ringcached(),
    }
}

/// `dir`, absolute, so a node's command line names its config unambiguously (that is
/// how `local down` recognises it) and printed commands work from anywhere.
fn existing_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    match fs::canonicalize(dir) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "no local cluster in {}: start one with `ringctl local up --dir {}`",
            dir.display(),
            dir.display()
        ),
        Err(e) => Err(e).with_context(|| format!("resolving {}", dir.display())),
    }
}

/// `ringctl local up`.
pub(crate) async fn up(args: &LocalUpArgs, json: bool) -> anyhow::Result<Status> {
    if args.nodes == 0 {
        bail!("--nodes must be at least 1");
    }
    let binary = binary(args.ringcached.as_ref())?;
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = existing_dir(&args.dir)?;
    let layout = Layout::new(&dir);
    let ids: Vec<NodeId> = (1..=args.nodes).map(NodeId).collect();
    for id in &ids {
        refuse_if_running(&layout, &layout.node(*id))?;
    }

    let bundle = ensure_bundle(&layout.certs, &ids, CLIENT_NAME)?;
    let ports = choose_ports(&layout, &ids, args.port)?;
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    for (i, id) in ids.iter().enumerate() {
        let cluster = ClusterFile {
            advertise: addrs[i].clone(),
            // node-1 starts the cluster (once: a data dir with cluster state ignores
            // it), the others join through it.
            bootstrap: *id == FIRST,
            seeds: if *id == FIRST {
                Vec::new()
            } else {
                vec![addrs[0].clone()]
            },
        };
        write_node_config(&layout.node(*id), args.memory, &bundle.domain, cluster)?;
    }
    write_client_config(&layout, &addrs, &bundle.domain)?;

    let mut signals = Signals::new()?;
    let mut nodes = Vec::new();
    for id in &ids {
        match start_node(&binary, &layout, &layout.node(*id)) {
            Ok(n) => nodes.push(n),
            Err(e) => {
                stop_all(&mut nodes).await;
                return Err(e);
            }
        }
    }
    let ready = tokio::select! {
        r = wait_up(&mut nodes, &layout, args.wait) => r,
        () = signals.recv() => Err(anyhow::anyhow!("interrupted while waiting for the nodes to start")),
    };
    let (endpoints, formed) = match ready {
        Ok(r) => r,
        Err(e) => {
            stop_all(&mut nodes).await;
            return Err(e);
        }
    };

    let reports: Vec<NodeReport> = nodes
        .iter()
        .zip(&endpoints)
        .map(|(n, e)| NodeReport {
            node: n.paths.id,
            endpoint: e.clone(),
            pid: n.pid,
            log: n.paths.log.clone(),
        })
        .collect();
    let first = &reports[0];
    let report = UpReport {
        dir: dir.clone(),
        node: first.node.0,
        endpoint: first.endpoint.clone(),
        pid: first.pid,
        log: first.log.clone(),
        cluster: match &formed {
            Formed::Cluster(st) => Some(ClusterSummary::of(st)),
            Formed::Standalone => None,
        },
        nodes: reports,
        client_config: layout.client_config.clone(),
        detached: args.detach,
        certs_created: bundle.created,
    };
    if json {
        print_json(&report)?;
    } else {
        print_line(&up_message(&report, &args.dir))?;
    }
    if args.detach {
        // Dropping the handles neither kills nor waits: the nodes outlive ringctl.
        return Ok(Status::Success);
    }
    supervise(nodes, &mut signals, json).await
}

/// Each node answering, then (with a cluster) every node an active member; returns
/// the endpoints.
async fn wait_up(
    nodes: &mut [Running],
    layout: &Layout,
    limit: Duration,
) -> anyhow::Result<(Vec<String>, Formed)> {
    let deadline = Instant::now() + limit;
    // Through the file just written: it is proven to load and to work.
    let cfg = ClientConfig::from_file(&layout.client_config)?;
    let mut progress = Progress::stderr();
    let mut endpoints = Vec::new();
    for n in nodes.iter_mut() {
        progress.show(&format!("waiting for {} to answer", n.paths.id));
        endpoints.push(wait_serving(n, &cfg, deadline, limit).await?);
    }
    let want: Vec<NodeId> = nodes.iter().map(|n| n.paths.id).collect();
    let mut status_cfg = cfg;
    status_cfg.endpoints = vec![endpoints[0].clone()];
    let formed = wait_members(
        &status_cfg,
        &want,
        nodes,
        deadline,
        limit,
        &mut progress,
        want.len() == 1,
    )
    .await?;
    progress.clear();
    Ok((endpoints, formed))
}

fn up_message(r: &UpReport, given_dir: &Path) -> String {
    let client = display_path(&r.client_config);
    let default_dir = given_dir == Path::new(DEFAULT_DIR);
    let mut s = r
        .nodes
        .iter()
        .map(|n| {
            format!(
                "{} is up at {} (pid {}, log {})",
                n.node,
                n.endpoint,
                n.pid,
                display_path(&n.log)
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if let Some(c) = &r.cluster {
        let leader = c
            .leader
            .map_or_else(|| "none yet".to_owned(), |l| l.to_string());
        s.push_str(&format!(
            "\ncluster:  {} active members, leader {leader}, epoch {}",
            c.members, c.epoch.0
        ));
    }
    s.push_str(&format!("\n\nconnect:  ringctl -c {client} ping"));
    if default_dir {
        s.push_str(&format!(
            "\n          (or just `ringctl ping` from this directory: it reads {DEFAULT_CLIENT_CONFIG})"
        ));
    }
    if r.cluster.is_some() {
        let dir_flag = if default_dir {
            String::new()
        } else {
            format!(" --dir {}", display_path(&r.dir))
        };
        s.push_str(&format!(
            "\ncluster:  ringctl -c {client} cluster status;  grow it: ringctl local add{dir_flag}"
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

fn refuse_if_running(layout: &Layout, node: &NodePaths) -> anyhow::Result<()> {
    let Some(pid) = read_pid(&node.pid_file)? else {
        return Ok(());
    };
    if alive(pid) && is_node_process(pid, &node.config) != Some(false) {
        bail!(
            "{} of the local cluster in {} is already running (pid {pid}); stop it with \
             `ringctl local down --dir {}`",
            node.id,
            display_path(&layout.dir),
            display_path(&layout.dir)
        );
    }
    // Left by a node that died without `local down`.
    remove_if_exists(&node.pid_file)
}

/// The port of each of `ids`: `base + id - 1` with a base, else the port of the
/// node's existing config (the cluster knows members by address), else a free one.
fn choose_ports(layout: &Layout, ids: &[NodeId], base: u16) -> anyhow::Result<Vec<u16>> {
    if base != 0 {
        return ids
            .iter()
            .map(|id| {
                u16::try_from(u64::from(base) + id.0 - 1)
                    .ok()
                    .with_context(|| format!("--port {base} leaves no port for {id}"))
            })
            .collect();
    }
    let known: Vec<Option<u16>> = ids
        .iter()
        .map(|id| configured_addr(&layout.node(*id)).map(|a| a.port()))
        .collect();
    let taken: BTreeSet<u16> = known.iter().flatten().copied().collect();
    let mut fresh = free_ports(known.iter().filter(|k| k.is_none()).count(), &taken)?.into_iter();
    Ok(known
        .into_iter()
        .map(|k| {
            k.or_else(|| fresh.next())
                .expect("one free port per node without one")
        })
        .collect())
}

/// `n` UDP ports on 127.0.0.1 that are free now and not in `avoid`. (Another process
/// may take one before the node binds it; the node's log then says so.)
fn free_ports(n: usize, avoid: &BTreeSet<u16>) -> anyhow::Result<Vec<u16>> {
    let mut held = Vec::new();
    let mut ports = Vec::new();
    while ports.len() < n {
        let s = UdpSocket::bind(("127.0.0.1", 0)).context("finding a free UDP port")?;
        let port = s.local_addr().context("finding a free UDP port")?.port();
        // Held until all are chosen, so the same port is not handed out twice.
        held.push(s);
        if !avoid.contains(&port) && !ports.contains(&port) {
            ports.push(port);
        }
        if held.len() > n + 64 {
            bail!("cannot find {n} free UDP ports on 127.0.0.1");
        }
    }
    Ok(ports)
}

/// The address a node's config advertises (its listen address), if it has one with
/// a port.
fn configured_addr(node: &NodePaths) -> Option<SocketAddr> {
    let text = fs::read_to_string(&node.config).ok()?;
    let table: toml::Table = toml::from_str(&text).ok()?;
    let listen = table
        .get("cluster")
        .and_then(|c| c.get("advertise"))
        .or_else(|| table.get("listen"))?
        .as_str()?;
    listen.parse::<SocketAddr>().ok().filter(|a| a.port() != 0)
}

fn write_node_config(
    node: &NodePaths,
    memory: u64,
    domain: &str,
    cluster: ClusterFile,
) -> anyhow::Result<()> {
    let certs = |f: &str| format!("certs/{f}");
    let id = node.id;
    let file = NodeFile {
        node_id: id.0,
        listen: cluster.advertise.clone(),
        data_dir: id.to_string(),
        tls: NodeTls {
            ca: certs("ca.pem"),
            cert: certs(&format!("{id}.pem")),
            key: certs(&format!("{id}.key")),
            cluster_domain: domain.to_owned(),
        },
        namespaces: [(
            crate::data::DEFAULT_NAMESPACE.to_owned(),
            NodeNamespace { memory },
        )]
        .into(),
        cluster,
    };
    let text = toml::to_string(&file).context("encoding the node config")?;
    let text = format!(
        "# Written by `ringctl local`, rewritten by `local up`. Paths are relative to\n\
         # this file. Schema: crates/node/src/config.rs.\n{text}"
    );
    fs::write(&node.config, text).with_context(|| format!("writing {}", node.config.display()))
}

fn write_client_config(layout: &Layout, endpoints: &[String], domain: &str) -> anyhow::Result<()> {
    let client = ClientFile {
        endpoints: endpoints.to_vec(),
        ca_cert: "certs/ca.pem".to_owned(),
        client_cert: format!("certs/client-{CLIENT_NAME}.pem"),
        client_key: format!("certs/client-{CLIENT_NAME}.key"),
        cluster_domain: domain.to_owned(),
    };
    let text = toml::to_string(&client).context("encoding the client config")?;
    let text = format!(
        "# Written by `ringctl local`. Paths are relative to this file; durations\n\
         # (connect_timeout, request_timeout) are milliseconds.\n{text}"
    );
    fs::write(&layout.client_config, text)
        .with_context(|| format!("writing {}", layout.client_config.display()))
}

/// Creates the node's data dir, starts it and writes its pid file.
fn start_node(binary: &Path, layout: &Layout, node: &NodePaths) -> anyhow::Result<Running> {
    fs::create_dir_all(&node.data_dir)
        .with_context(|| format!("creating {}", node.data_dir.display()))?;
    // A leftover address from an earlier run would look like readiness.
    remove_if_exists(&node.listen_addr)?;
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&node.log)
        .with_context(|| format!("opening {}", node.log.display()))?;
    let log_start = log
        .metadata()
        .map(|m| m.len())
        .with_context(|| format!("reading {}", node.log.display()))?;
    let child = spawn_node(binary, layout, node, log)?;
    let pid = child
        .id()
        .context("ringcached exited before its pid could be read")?;
    fs::write(&node.pid_file, format!("{pid}\n"))
        .with_context(|| format!("writing {}", node.pid_file.display()))?;
    Ok(Running {
        paths: node.clone(),
        child,
        pid,
        log_start,
    })
}

fn spawn_node(
    binary: &Path,
    layout: &Layout,
    node: &NodePaths,
    log: File,
) -> anyhow::Result<Child> {
    let stderr = log
        .try_clone()
        .with_context(|| format!("opening {}", node.log.display()))?;
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("--config")
        .arg(&node.config)
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

fn exited(node: &Running, status: ExitStatus) -> anyhow::Error {
    anyhow::anyhow!(
        "{RINGCACHED} {} exited ({status}) before it was ready: {} (log: {})",
        node.paths.id,
        log_excerpt(&node.paths.log, node.log_start),
        display_path(&node.paths.log)
    )
}

/// Fails if one of `nodes` has exited.
fn check_alive(nodes: &mut [Running]) -> anyhow::Result<()> {
    for n in nodes.iter_mut() {
        if let Some(status) = n.child.try_wait().context("checking on ringcached")? {
            return Err(exited(n, status));
        }
    }
    Ok(())
}

/// Waits for the node to write its address and answer a ping (with `cfg`'s
/// certificates); returns the address.
async fn wait_serving(
    node: &mut Running,
    cfg: &ClientConfig,
    deadline: Instant,
    limit: Duration,
) -> anyhow::Result<String> {
    let id = node.paths.id;
    let endpoint = loop {
        check_alive(std::slice::from_mut(node))?;
        if let Ok(text) = fs::read_to_string(&node.paths.listen_addr)
            && text.ends_with('\n')
        {
            break text.trim().to_owned();
        }
        if Instant::now() >= deadline {
            bail!(
                "{RINGCACHED} {id} did not start listening within {limit:?} (log: {})",
                display_path(&node.paths.log)
            );
        }
        tokio::time::sleep(POLL).await;
    };
    let mut cfg = cfg.clone();
    cfg.endpoints = vec![endpoint.clone()];
    let mut last_error;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        cfg.connect_timeout = left.clamp(Duration::from_millis(100), Duration::from_secs(2));
        cfg.request_timeout = cfg.connect_timeout;
        match ping(cfg.clone()).await {
            Ok(()) => return Ok(endpoint),
            Err(e) => last_error = e,
        }
        check_alive(std::slice::from_mut(node))?;
        if Instant::now() >= deadline {
            bail!(
                "{RINGCACHED} {id} listens on {endpoint} but did not answer a ping within \
                 {limit:?}: {last_error} (log: {})",
                display_path(&node.paths.log)
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

/// Whether the table is settled over the active members: no moves, no membership
/// change under way, every active member owning partitions, and every partition with
/// its full replica set.
fn placed(st: &ringcache_proto::ClusterStatus) -> bool {
    let active: Vec<_> = st.members.iter().filter(|m| m.state == "active").collect();
    let n = u32::try_from(active.len()).unwrap_or(u32::MAX);
    let primaries: u64 = active.iter().map(|m| u64::from(m.primaries)).sum();
    let backups: u64 = active.iter().map(|m| u64::from(m.backups)).sum();
    let want_backups =
        u64::from(st.partitions) * u64::from(st.replication.min(n).saturating_sub(1));
    st.moves.is_empty()
        && !st.membership_changing
        && primaries == u64::from(st.partitions)
        && backups == want_backups
        && (n > st.partitions || active.iter().all(|m| m.primaries > 0))
}

/// Polls `cluster status` through `cfg` until the table exists (epoch > 0), every
/// node of `want` is an active member and the table is settled over them ([`placed`]). `nodes` are the processes started for it (an
/// exit fails the wait; their logs explain a timeout). A node without cluster support
/// is fine when `standalone_ok`.
async fn wait_members(
    cfg: &ClientConfig,
    want: &[NodeId],
    nodes: &mut [Running],
    deadline: Instant,
    limit: Duration,
    progress: &mut Progress,
    standalone_ok: bool,
) -> anyhow::Result<Formed> {
    let mut cfg = cfg.clone();
    cfg.connect_timeout = cfg.connect_timeout.min(Duration::from_secs(2));
    cfg.request_timeout = cfg.request_timeout.min(Duration::from_secs(2));
    let mut client: Option<Client> = None;
    let mut why = "no answer to `cluster status` yet".to_owned();
    let mut missing = want.first().copied();
    let result = loop {
        if client.is_none() {
            match Client::connect(cfg.clone()).await {
                Ok(c) => client = Some(c),
                Err(e) => why = format!("cannot reach {}: {e}", cfg.endpoints.join(", ")),
            }
        }
        if let Some(c) = &client {
            match c.request(Op::ClusterStatus).await {
                Ok(Response::ClusterStatus(st)) => {
                    let lagging = want.iter().copied().find(|id| {
                        !st.members
                            .iter()
                            .any(|m| m.id == *id && m.state == "active")
                    });
                    if st.epoch.0 > 0 && lagging.is_none() && placed(&st) {
                        break Ok(Formed::Cluster(st));
                    }
                    let active = st.members.iter().filter(|m| m.state == "active").count();
                    progress.show(&format!(
                        "cluster: {active} of {} members active, epoch {}",
                        st.members.len().max(want.len()),
                        st.epoch.0
                    ));
                    missing = lagging.or(missing);
                    why = match lagging.and_then(|id| st.members.iter().find(|m| m.id == id)) {
                        Some(m) => format!("{} is {}", m.id, m.state),
                        None if st.epoch.0 == 0 => "the cluster has no partition table yet".into(),
                        None if lagging.is_none() => format!(
                            "partitions are still being placed ({} moves queued)",
                            st.moves.len()
                        ),
                        None => format!(
                            "{} is not a member",
                            lagging.map_or_else(|| "a node".to_owned(), |id| id.to_string())
                        ),
                    };
                    if lagging.is_none() {
                        missing = None;
                    }
                }
                Ok(other) => why = format!("unexpected answer: {}", crate::data::brief(&other)),
                Err(e) if e.code() == Some(ErrorCode::Unsupported) => {
                    if standalone_ok {
                        break Ok(Formed::Standalone);
                    }
                    break Err(anyhow::anyhow!(
                        "{RINGCACHED} answers the cluster operations `unsupported`: this build \
                         has no cluster support, so only `local up --nodes 1` works with it"
                    ));
                }
                Err(e) => why = e.to_string(),
            }
        }
        if let Err(e) = check_alive(nodes) {
            break Err(e);
        }
        if Instant::now() >= deadline {
            let tail = missing
                .and_then(|id| nodes.iter().find(|n| n.paths.id == id))
                .map(|n| {
                    format!(
                        "; the end of {}'s log: {} (log: {})",
                        n.paths.id,
                        log_tail(&n.paths.log, n.log_start, TAIL_LINES),
                        display_path(&n.paths.log)
                    )
                })
                .unwrap_or_default();
            break Err(anyhow::anyhow!(
                "the cluster did not form within {limit:?}: {why}{tail}"
            ));
        }
        tokio::time::sleep(MEMBER_POLL).await;
    };
    if let Some(c) = client {
        c.close().await;
    }
    result
}

/// Foreground: forwards Ctrl-C/SIGTERM to every node as a graceful stop (a second one
/// kills) and returns when all have exited. A node that exits on its own is reported
/// and the others keep running.
async fn supervise(
    mut live: Vec<Running>,
    signals: &mut Signals,
    json: bool,
) -> anyhow::Result<Status> {
    let mut stopping = false;
    let mut failed: Option<anyhow::Error> = None;
    loop {
        let mut i = 0;
        while i < live.len() {
            let Some(status) = live[i].child.try_wait().context("waiting for ringcached")? else {
                i += 1;
                continue;
            };
            let n = live.remove(i);
            remove_pid_if(&n.paths.pid_file, n.pid);
            if status.success() || stopping {
                if !json {
                    print_line(&format!("{} stopped", n.paths.id))?;
                }
            } else {
                let e = anyhow::anyhow!(
                    "{RINGCACHED} {} exited ({status}): {} (log: {})",
                    n.paths.id,
                    log_excerpt(&n.paths.log, n.log_start),
                    display_path(&n.paths.log)
                );
                if !json && !live.is_empty() {
                    print_line(&crate::error_line(&e))?;
                }
                failed = Some(e);
            }
        }
        if live.is_empty() {
            break;
        }
        let names = live
            .iter()
            .map(|n| n.paths.id.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        tokio::select! {
            () = signals.recv() => {
                if stopping {
                    if !json {
                        print_line(&format!("killing {names}"))?;
                    }
                    for n in &mut live {
                        n.child.start_kill().ok();
                    }
                } else {
                    stopping = true;
                    if !json {
                        let it = if live.len() == 1 { "it" } else { "them" };
                        print_line(&format!("stopping {names} (Ctrl-C again to kill {it})"))?;
                    }
                    for n in &live {
                        signal(n.pid, "TERM")?;
                    }
                }
            }
            () = tokio::time::sleep(MEMBER_POLL) => {}
        }
    }
    match failed {
        Some(e) if !stopping => Err(e),
        _ => Ok(Status::Success),
    }
}

/// Removes a pid file if it still names `pid` (a `local start` may have replaced it).
fn remove_pid_if(pid_file: &Path, pid: u32) {
    if let Ok(Some(p)) = read_pid(pid_file)
        && p == pid
    {
        remove_if_exists(pid_file).ok();
    }
}

/// Stops nodes that never became ready and removes their pid files.
async fn stop_all(nodes: &mut [Running]) {
    // All at once, so their grace periods overlap.
    for n in nodes.iter_mut() {
        if let Ok(None) = n.child.try_wait() {
            signal(n.pid, "TERM").ok();
        }
    }
    for n in nodes.iter_mut() {
        stop_child(&mut n.child).await;
        remove_pid_if(&n.paths.pid_file, n.pid);
    }
}

#[derive(Serialize)]
struct AddReport {
    #[serde(flatten)]
    node: NodeReport,
    seeds: Vec<String>,
    cluster: ClusterSummary,
    client_config: PathBuf,
    certs_created: Vec<PathBuf>,
}

/// `ringctl local add`.
pub(crate) async fn add(args: &LocalAddArgs, json: bool) -> anyhow::Result<Status> {
    let binary = binary(args.ringcached.as_ref())?;
    let dir = existing_dir(&args.dir)?;
    let layout = Layout::new(&dir);
    let ids = layout.node_ids()?;
    let Some(last) = ids.last().copied() else {
        bail!(
            "no local cluster in {}: start one with `ringctl local up --dir {}`",
            display_path(&dir),
            display_path(&dir)
        );
    };
    let seeds: Vec<String> = ids
        .iter()
        .map(|id| layout.node(*id))
        .filter(|n| {
            read_pid(&n.pid_file)
                .ok()
                .flatten()
                .is_some_and(|pid| alive(pid) && is_node_process(pid, &n.config) != Some(false))
        })
        .filter_map(|n| configured_addr(&n))
        .map(|a| a.to_string())
        .collect();
    if seeds.is_empty() {
        bail!(
            "no node of the local cluster in {} is running; start it first (`ringctl local up \
             --nodes {} --dir {}`)",
            display_path(&dir),
            ids.len(),
            display_path(&dir)
        );
    }
    let id = NodeId(last.0 + 1);
    let node = layout.node(id);
    let mut all = ids.clone();
    all.push(id);
    let bundle = ensure_bundle(&layout.certs, &all, CLIENT_NAME)?;
    let port = if args.port == 0 {
        let taken: BTreeSet<u16> = ids
            .iter()
            .filter_map(|i| configured_addr(&layout.node(*i)).map(|a| a.port()))
            .collect();
        free_ports(1, &taken)?[0]
    } else {
        args.port
    };
    let addr = format!("127.0.0.1:{port}");
    let cluster = ClusterFile {
        advertise: addr.clone(),
        bootstrap: false,
        seeds: seeds.clone(),
    };
    write_node_config(&node, args.memory, &bundle.domain, cluster)?;

    let cfg = ClientConfig::from_file(&layout.client_config)?;
    let mut signals = Signals::new()?;
    let mut running = start_node(&binary, &layout, &node)?;
    let joined = tokio::select! {
        r = wait_added(&mut running, &cfg, &seeds, args.wait) => r,
        () = signals.recv() => Err(anyhow::anyhow!("interrupted while waiting for {id} to join")),
    };
    let (endpoint, st) = match joined {
        Ok(r) => r,
        Err(e) => {
            stop_all(std::slice::from_mut(&mut running)).await;
            return Err(e.context(format!(
                "{id} did not join (stopped; its config and data stay in {}: retry with \
                 `ringctl local start {}`)",
                display_path(&dir),
                id.0
            )));
        }
    };
    let endpoints: Vec<String> = all
        .iter()
        .filter_map(|i| configured_addr(&layout.node(*i)).map(|a| a.to_string()))
        .collect();
    write_client_config(&layout, &endpoints, &bundle.domain)?;
    let report = AddReport {
        node: NodeReport {
            node: id,
            endpoint,
            pid: running.pid,
            log: node.log.clone(),
        },
        seeds,
        cluster: ClusterSummary::of(&st),
        client_config: layout.client_config.clone(),
        certs_created: bundle.created,
    };
    if json {
        print_json(&report)?;
    } else {
        print_line(&format!(
            "{id} is up at {} (pid {}, log {}) and an active member; the cluster has {} \
             members at epoch {}\n{} lists it now",
            report.node.endpoint,
            report.node.pid,
            display_path(&report.node.log),
            report.cluster.members,
            report.cluster.epoch.0,
            display_path(&layout.client_config),
        ))?;
    }
    Ok(Status::Success)
}

async fn wait_added(
    node: &mut Running,
    cfg: &ClientConfig,
    seeds: &[String],
    limit: Duration,
) -> anyhow::Result<(String, ClusterStatus)> {
    let deadline = Instant::now() + limit;
    let mut progress = Progress::stderr();
    progress.show(&format!("waiting for {} to answer", node.paths.id));
    let endpoint = wait_serving(node, cfg, deadline, limit).await?;
    let mut status_cfg = cfg.clone();
    status_cfg.endpoints = seeds.to_vec();
    let want = [node.paths.id];
    match wait_members(
        &status_cfg,
        &want,
        std::slice::from_mut(node),
        deadline,
        limit,
        &mut progress,
        false,
    )
    .await?
    {
        Formed::Cluster(st) => Ok((endpoint, st)),
        Formed::Standalone => unreachable!("wait_members refuses standalone when told to"),
    }
}

#[derive(Serialize)]
struct StopReport {
    node: NodeId,
    pid: u32,
    signal: &'static str,
}

/// `ringctl local stop` (`sig` TERM) and `ringctl local kill` (KILL).
pub(crate) fn stop(args: &LocalNodeArgs, sig: &'static str, json: bool) -> anyhow::Result<Status> {
    let dir = existing_dir(&args.dir)?;
    let layout = Layout::new(&dir);
    let node = layout.node(args.node);
    let id = args.node;
    if !node.config.is_file() {
        bail!("there is no {id} in {}", display_path(&dir));
    }
    let pid = match read_pid(&node.pid_file)? {
        Some(pid) if alive(pid) && is_node_process(pid, &node.config) != Some(false) => pid,
        _ => {
            remove_if_exists(&node.pid_file)?;
            bail!("{id} is not running");
        }
    };
    signal(pid, sig).with_context(|| format!("signalling {id}"))?;
    let deadline = Instant::now() + args.wait;
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(POLL);
    }
    if alive(pid) {
        bail!(
            "{id} (pid {pid}) is still running {:?} after SIG{sig}; `ringctl local kill {}` \
             ends it",
            args.wait,
            id.0
        );
    }
    remove_pid_if(&node.pid_file, pid);
    if json {
        print_json(&StopReport {
            node: id,
            pid,
            signal: sig,
        })?;
    } else {
        let done = if sig == "KILL" { "killed" } else { "stopped" };
        print_line(&format!(
            "{done} {id} (pid {pid}); `ringctl local start {}` starts it again",
            id.0
        ))?;
    }
    Ok(Status::Success)
}

/// `ringctl local start`.
pub(crate) async fn start(args: &LocalStartArgs, json: bool) -> anyhow::Result<Status> {
    let binary = binary(args.ringcached.as_ref())?;
    let dir = existing_dir(&args.dir)?;
    let layout = Layout::new(&dir);
    let id = args.node;
    let node = layout.node(id);
    if !node.config.is_file() {
        bail!(
            "there is no {id} in {} (`ringctl local add` makes a new node)",
            display_path(&dir)
        );
    }
    refuse_if_running(&layout, &node)?;
    let cfg = ClientConfig::from_file(&layout.client_config)?;
    let mut signals = Signals::new()?;
    let mut running = start_node(&binary, &layout, &node)?;
    let ready = tokio::select! {
        r = wait_started(&mut running, &cfg, args.wait) => r,
        () = signals.recv() => Err(anyhow::anyhow!("interrupted while waiting for {id} to start")),
    };
    let (endpoint, formed) = match ready {
        Ok(r) => r,
        Err(e) => {
            stop_all(std::slice::from_mut(&mut running)).await;
            return Err(e);
        }
    };
    let report = NodeReport {
        node: id,
        endpoint,
        pid: running.pid,
        log: node.log.clone(),
    };
    if json {
        print_json(&report)?;
    } else {
        let member = match formed {
            Formed::Cluster(st) => format!(
                ", an active member at epoch {} ({} members)",
                st.epoch.0,
                st.members.len()
            ),
            Formed::Standalone => String::new(),
        };
        print_line(&format!(
            "{id} is up at {} (pid {}, log {}){member}",
            report.endpoint,
            report.pid,
            display_path(&report.log)
        ))?;
    }
    Ok(Status::Success)
}

async fn wait_started(
    node: &mut Running,
    cfg: &ClientConfig,
    limit: Duration,
) -> anyhow::Result<(String, Formed)> {
    let deadline = Instant::now() + limit;
    let mut progress = Progress::stderr();
    progress.show(&format!("waiting for {} to answer", node.paths.id));
    let endpoint = wait_serving(node, cfg, deadline, limit).await?;
    let mut status_cfg = cfg.clone();
    status_cfg.endpoints = vec![endpoint.clone()];
    let want = [node.paths.id];
    let formed = wait_members(
        &status_cfg,
        &want,
        std::slice::from_mut(node),
        deadline,
        limit,
        &mut progress,
        true,
    )
    .await?;
    Ok((endpoint, formed))
}

/// The last `n` lines of the log written since `from`, on one line.
fn log_tail(log: &Path, from: u64, n: usize) -> String {
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
    if lines.is_empty() {
        return "nothing logged".to_owned();
    }
    lines[lines.len().saturating_sub(n)..].join(" | ")
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
