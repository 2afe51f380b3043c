//! A harness for clusters of real `ringcached` processes: certificates, configs, start,
//! kill, restart, status polling, and a routing client.
//!
//! Nodes listen on 127.0.0.1 with ports the harness allocates, or, for fault tests in a
//! private network namespace ([`crate::netns`]), each on its own address `127.0.0.<10+id>`
//! so packet filters can tell them apart.
#![allow(dead_code)] // each test binary uses part of it

pub(crate) mod netns;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::{Client, ClientConfig, SetOptions};
use ringcache_proto::{ClusterStatus, NodeId, Op, Response};
use ringcache_tls::{CertAuthority, write_bundle};
use tokio::process::{Child, Command};

pub(crate) const PARTITIONS: u32 = 64;

pub(crate) struct Node {
    pub(crate) addr: String,
    pub(crate) child: Option<Child>,
}

/// A cluster's processes and files; every process is killed on drop.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: CertAuthority,
    pub(crate) nodes: BTreeMap<u64, Node>,
    pub(crate) opts: Options,
}

/// How a cluster's nodes are addressed and timed.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Each node on `127.0.0.<10+id>:7700` (inside a private network namespace) instead
    /// of 127.0.0.1 and a free port.
    pub(crate) per_node_ip: bool,
    /// `cluster.down_after`.
    pub(crate) down_after: &'static str,
    /// `cluster.max_voters`.
    pub(crate) max_voters: u32,
    /// Nodes whose wall clock is off by an offset (libfaketime), e.g. `(2, "-1h")`.
    pub(crate) faketime: Vec<(u64, &'static str)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            per_node_ip: false,
            down_after: "3s",
            faketime: Vec::new(),
            max_voters: 5,
        }
    }
}

/// Where Debian's `faketime` package puts the multithreaded libfaketime, if installed.
pub(crate) fn libfaketime() -> Option<std::path::PathBuf> {
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
}

/// Node `id`'s address when every node has its own.
pub(crate) fn node_ip(id: u64) -> String {
    format!("127.0.0.{}", 10 + id)
}

pub(crate) fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

impl Cluster {
    pub(crate) async fn start(n: u64) -> Self {
        Self::start_with(n, Options::default()).await
    }

    pub(crate) async fn start_with(n: u64, opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = CertAuthority::generate("ringcache.local").expect("ca");
        let client = ca.issue_client("test").expect("client cert");
        write_bundle(dir.path().join("certs"), &ca, &[], &[("test", &client)]).expect("bundle");
        let mut c = Self {
            dir,
            ca,
            nodes: BTreeMap::new(),
            opts,
        };
        for id in 1..=n {
            c.add(id).await;
        }
        c
    }

    /// Writes node `id`'s certificate and config (node 1 bootstraps, the others seed
    /// from every node started before) and starts it.
    pub(crate) async fn add(&mut self, id: u64) {
        let ip = if self.opts.per_node_ip {
            node_ip(id)
        } else {
            "127.0.0.1".to_owned()
        };
        let cert = self
            .ca
            .issue_node(NodeId(id), std::slice::from_ref(&ip))
            .expect("node cert");
        ringcache_tls::CertDir::new(self.dir.path().join("certs"))
            .write_node(NodeId(id), &cert)
            .expect("node cert files");
        let addr = if self.opts.per_node_ip {
            format!("{ip}:7700")
        } else {
            format!("{ip}:{}", free_port())
        };
        let down_after = self.opts.down_after;
        let max_voters = self.opts.max_voters;
        let seeds: Vec<String> = self
            .nodes
            .values()
            .map(|n| format!("{:?}", n.addr))
            .collect();
        let cluster = if id == 1 {
            "bootstrap = true".to_owned()
        } else {
            format!("seeds = [{}]", seeds.join(", "))
        };
        let config = format!(
            r#"
node_id = {id}
listen = "{addr}"
data_dir = "node-{id}"
partitions = {PARTITIONS}

[tls]
ca = "certs/ca.pem"
cert = "certs/node-{id}.pem"
key = "certs/node-{id}.key"

[namespaces.default]
memory = "16MiB"

[cluster]
advertise = "{addr}"
{cluster}
replication = 2
down_after = "{down_after}"
max_voters = {max_voters}
heartbeat = "200ms"
election_timeout = "1s"
"#
        );
        std::fs::write(self.dir.path().join(format!("node-{id}.toml")), config).expect("config");
        self.nodes.insert(id, Node { addr, child: None });
        self.spawn(id);
    }

    pub(crate) fn spawn(&mut self, id: u64) {
        let path = self.dir.path().join(format!("node-{id}.toml"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log");
        let bin = env!("CARGO_BIN_EXE_ringcached");
        let mut cmd = Command::new(bin);
        if let Some((_, offset)) = self.opts.faketime.iter().find(|(n, _)| *n == id) {
            // libfaketime preloaded into the node itself (the `faketime` wrapper would
            // fork, and killing it would leave the node running). Only the wall clock is
            // off, as on a host whose time is wrong; the monotonic clock runs as ever.
            cmd.env("LD_PRELOAD", libfaketime().expect("libfaketime"))
                .env("FAKETIME", offset)
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        let child = cmd
            .arg("--config")
            .arg(&path)
            .env("RUST_LOG", "info")
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ringcached");
        self.nodes.get_mut(&id).expect("node").child = Some(child);
    }

    pub(crate) async fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            child.kill().await.expect("kill");
        }
    }

    pub(crate) fn log(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    pub(crate) fn config(&self, endpoints: Vec<String>) -> ClientConfig {
        let certs = self.dir.path().join("certs");
        let mut cfg = ClientConfig::new(
            endpoints,
            certs.join("ca.pem"),
            certs.join("client-test.pem"),
            certs.join("client-test.key"),
        );
        cfg.connect_timeout = Duration::from_secs(5);
        cfg.request_timeout = Duration::from_secs(5);
        cfg
    }

    pub(crate) async fn client_of(&self, id: u64) -> Option<Client> {
        Client::connect(self.config(vec![self.nodes[&id].addr.clone()]))
            .await
            .ok()
    }

    pub(crate) async fn status(&self, id: u64) -> Option<ClusterStatus> {
        let c = self.client_of(id).await?;
        match c.request(Op::ClusterStatus).await {
            Ok(Response::ClusterStatus(s)) => Some(s),
            _ => None,
        }
    }

    /// Waits until `id` reports every node of `expect` active, a leader, no moves, and
    /// every active node owning partitions.
    pub(crate) async fn settled(&self, id: u64, expect: &[u64]) -> ClusterStatus {
        let mut last = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut ok = false;
        while Instant::now() < deadline {
            if let Some(s) = self.status(id).await {
                let active: Vec<u64> = s
                    .members
                    .iter()
                    .filter(|m| m.state == "active")
                    .map(|m| m.id.0)
                    .collect();
                ok = s.leader.is_some()
                    && !s.membership_changing
                    && s.epoch.0 > 0
                    && s.moves.is_empty()
                    && active == expect
                    && s.members
                        .iter()
                        .filter(|m| m.state == "active")
                        .all(|m| m.primaries > 0)
                    && s.members
                        .iter()
                        .filter(|m| m.state == "active")
                        .filter(|m| m.role == "leader" || m.role == "voter")
                        .count()
                        == active.len().min(self.opts.max_voters as usize)
                    && s.members
                        .iter()
                        .filter(|m| m.state == "active")
                        .all(|m| ["leader", "voter", "learner"].contains(&m.role.as_str()))
                    && s.members
                        .iter()
                        .filter(|m| m.state != "active")
                        .all(|m| m.primaries == 0);
                last = Some(s);
                if ok {
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if !ok {
            let logs: Vec<String> = self
                .nodes
                .keys()
                .map(|n| format!("--- node {n}\n{}", self.log(*n)))
                .collect();
            panic!(
                "cluster did not settle; last status {last:#?}\n{}",
                logs.join("\n")
            );
        }
        last.expect("status")
    }
}

pub(crate) async fn wait<F, Fut>(_what: &str, timeout: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The client crate's routing client over every node of the cluster.
pub(crate) struct Router {
    pub(crate) client: Client,
}

impl Router {
    pub(crate) async fn new(c: &Cluster) -> Arc<Self> {
        let endpoints = c.nodes.values().map(|n| n.addr.clone()).collect();
        let mut cfg = c.config(endpoints);
        cfg.request_timeout = Duration::from_secs(30);
        Arc::new(Self {
            client: Client::connect(cfg).await.expect("connect"),
        })
    }

    pub(crate) async fn set(&self, key: &str, value: &str) -> Result<u64, String> {
        self.client
            .set("default", key, value.to_owned(), SetOptions::default())
            .await
            .map_err(|e| format!("set {key}: {e}"))
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        self.client
            .get("default", key)
            .await
            .map(|v| v.map(|e| e.value))
            .map_err(|e| format!("get {key}: {e}"))
    }
}
