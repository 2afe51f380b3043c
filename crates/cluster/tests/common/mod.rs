//! Test harness: nodes on real QUIC endpoints on loopback (port 0), certificates from a
//! throwaway CA written to and loaded from a temporary directory.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use ringcache_cluster::{
    Cluster, ClusterConfig, ClusterMetrics, ClusterState, RaftTiming, Role, peer_client_config,
    serve_peer,
};
use ringcache_proto::NodeId;
use ringcache_tls::{ALPN_PEER, CertAuthority, CertDir, ClientAuth, IssuedCert};
use tempfile::TempDir;
use tokio::sync::watch;

pub const DOMAIN: &str = "cluster.test";

/// Every wait in these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(15);

/// Timing for tests: elections within 1-2 s (see TESTING.md: a busy 2-core machine
/// drops UDP packets, shorter timeouts cause needless elections).
/// Logs to the test output when `RUST_LOG` is set (`RUST_LOG=ringcache_cluster=debug`).
pub fn init_tracing() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn timing() -> RaftTiming {
    RaftTiming {
        heartbeat_interval: Duration::from_millis(200),
        election_timeout_min: Duration::from_millis(1000),
        election_timeout_max: Duration::from_millis(2000),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
    }
}

/// A CA and the certificates it issued, on disk.
pub struct Pki {
    pub dir: TempDir,
    pub certs: CertDir,
    pub ca_pem: String,
}

impl Pki {
    pub fn new() -> Result<Self> {
        init_tracing();
        let dir = TempDir::new()?;
        let certs = CertDir::new(dir.path().join("certs"));
        let ca = CertAuthority::generate(DOMAIN)?;
        certs.write_ca(&ca)?;
        for id in 1..=5 {
            let cert = ca.issue_node(NodeId(id), &["127.0.0.1".to_string()])?;
            certs.write_node(NodeId(id), &cert)?;
        }
        certs.write_client("app", &ca.issue_client("app")?)?;
        let ca_pem = certs.load_ca_cert()?;
        Ok(Self { dir, certs, ca_pem })
    }

    pub fn node(&self, id: u64) -> Result<IssuedCert> {
        Ok(self.certs.load_node(NodeId(id))?)
    }

    pub fn client(&self) -> Result<IssuedCert> {
        Ok(self.certs.load_client("app")?)
    }

    pub fn data_dir(&self, id: u64) -> PathBuf {
        self.dir.path().join(format!("data-{id}"))
    }
}

/// One running node: its endpoint, the accept loop feeding `serve_peer`, its cluster.
pub struct Node {
    pub id: u64,
    pub addr: SocketAddr,
    pub endpoint: quinn::Endpoint,
    pub cluster: Cluster,
    accept: tokio::task::JoinHandle<()>,
}

/// What a node is started with.
pub struct NodeSpec<'a> {
    pub pki: &'a Pki,
    pub id: u64,
    /// The certificate the node presents (its own unless a test says otherwise).
    pub identity: IssuedCert,
    /// Where to bind: `127.0.0.1:0`, or a stopped node's address to restart it.
    pub bind: SocketAddr,
    pub snapshot_every: Option<u64>,
}

impl<'a> NodeSpec<'a> {
    pub fn new(pki: &'a Pki, id: u64) -> Result<Self> {
        Ok(Self {
            pki,
            id,
            identity: pki.node(id)?,
            bind: "127.0.0.1:0".parse()?,
            snapshot_every: None,
        })
    }
}

/// Binds a UDP endpoint, retrying briefly while a just-closed socket lets go of the port.
async fn bind(server: quinn::ServerConfig, addr: SocketAddr) -> Result<quinn::Endpoint> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        match quinn::Endpoint::server(server.clone(), addr) {
            Ok(e) => return Ok(e),
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("bind {addr}: {e}, retrying");
            }
            Err(e) => return Err(e).context(format!("bind {addr}")),
        }
    }
}

impl Node {
    pub async fn start(spec: NodeSpec<'_>) -> Result<Node> {
        let own = spec
            .pki
            .node(spec.id)
            .unwrap_or_else(|_| spec.identity.clone());
        let tls = ringcache_tls::server_config(
            &spec.pki.ca_pem,
            &own,
            ClientAuth::Required,
            &[ALPN_PEER],
        )?;
        let server = ringcache_tls::quinn_server_config(tls)?;
        let endpoint = bind(server, spec.bind).await?;
        let addr = endpoint.local_addr()?;
        let mut config = ClusterConfig::new(
            NodeId(spec.id),
            addr.to_string(),
            spec.pki.data_dir(spec.id),
            DOMAIN,
            endpoint.clone(),
            peer_client_config(&spec.pki.ca_pem, &spec.identity)?,
        );
        config.timing = timing();
        if let Some(n) = spec.snapshot_every {
            config.snapshot_every = n;
            config.logs_kept_after_snapshot = 0;
        }
        let cluster = Cluster::start(config).await?;
        let accept = tokio::spawn(accept_loop(endpoint.clone(), cluster.clone()));
        Ok(Node {
            id: spec.id,
            addr,
            endpoint,
            cluster,
            accept,
        })
    }

    /// Stops the node like a process exit: Raft, storage, then the endpoint and socket.
    pub async fn stop(self) -> Result<SocketAddr> {
        self.cluster.shutdown().await?;
        self.accept.abort();
        self.endpoint.close(0u32.into(), b"stopped");
        tokio::time::timeout(WAIT, self.endpoint.wait_idle())
            .await
            .context("endpoint did not go idle")?;
        Ok(self.addr)
    }

    pub fn metrics(&self) -> ClusterMetrics {
        self.cluster.metrics().borrow().clone()
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, cluster: Cluster) {
    while let Some(incoming) = endpoint.accept().await {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            if let Ok(conn) = incoming.await {
                serve_peer(conn, cluster).await;
            }
        });
    }
}

/// Waits until `pred` holds for the watched value, or fails naming `what`.
pub async fn wait_for<T>(
    rx: &mut watch::Receiver<T>,
    what: &str,
    mut pred: impl FnMut(&T) -> bool,
) -> Result<T>
where
    T: Clone + std::fmt::Debug,
{
    let res = match tokio::time::timeout(WAIT, rx.wait_for(|v| pred(v))).await {
        Ok(Ok(v)) => Ok(v.clone()),
        Ok(Err(_)) => Err("the watch closed"),
        Err(_) => Err("timed out"),
    };
    match res {
        Ok(v) => Ok(v),
        Err(why) => bail!("{what}: {why} after {WAIT:?} (last: {:?})", *rx.borrow()),
    }
}

/// Waits until `node` sees a leader other than `not`, and returns it.
pub async fn wait_leader(node: &Node, not: Option<NodeId>) -> Result<NodeId> {
    let m = wait_for(&mut node.cluster.metrics(), "a leader", |m| {
        m.leader.is_some() && m.leader != not && m.role != Role::Candidate
    })
    .await?;
    m.leader.context("leader present")
}

/// Waits until `node`'s cluster map satisfies `pred`.
pub async fn wait_state(
    node: &Node,
    what: &str,
    pred: impl FnMut(&ClusterState) -> bool,
) -> Result<ClusterState> {
    wait_for(
        &mut node.cluster.state(),
        &format!("{what} on node {}", node.id),
        pred,
    )
    .await
}

/// Starts nodes 1..=n, bootstraps node 1 and makes all of them voters.
pub async fn form_cluster(pki: &Pki, n: u64, snapshot_every: Option<u64>) -> Result<Vec<Node>> {
    let mut nodes = Vec::new();
    for id in 1..=n {
        let mut spec = NodeSpec::new(pki, id)?;
        spec.snapshot_every = snapshot_every;
        nodes.push(Node::start(spec).await?);
    }
    let first = &nodes[0].cluster;
    let res = first.initialize(64, 2).await?;
    assert!(res.is_applied(), "{res:?}");
    for node in &nodes[1..] {
        first
            .add_learner(NodeId(node.id), node.addr.to_string())
            .await?;
    }
    let voters = (1..=n).map(NodeId).collect();
    first.change_membership(voters).await?;
    for node in &nodes {
        wait_for(&mut node.cluster.metrics(), "all voters", |m| {
            m.voters.len() == n as usize && m.learners.is_empty() && m.leader.is_some()
        })
        .await?;
    }
    Ok(nodes)
}
