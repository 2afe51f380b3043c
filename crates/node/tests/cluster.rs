//! Multi-node clusters of real `ringcached` processes on 127.0.0.1 (ports allocated by
//! the harness): forming from seeds, leader failover, restart and rejoin, a join that
//! takes partitions with their data, and a drain under write load that loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::{Client, ClientConfig, Error as ClientError, SetOptions};
use ringcache_placement::partition_for;
use ringcache_proto::{ClusterStatus, ErrorCode, NodeId, Op, Response};
use ringcache_tls::{CertAuthority, write_bundle};
use tokio::process::{Child, Command};

const PARTITIONS: u32 = 64;

struct Node {
    addr: String,
    child: Option<Child>,
}

/// A cluster's processes and files; every process is killed on drop.
struct Cluster {
    dir: tempfile::TempDir,
    ca: CertAuthority,
    nodes: BTreeMap<u64, Node>,
}

fn free_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

impl Cluster {
    async fn start(n: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = CertAuthority::generate("ringcache.local").expect("ca");
        let client = ca.issue_client("test").expect("client cert");
        write_bundle(dir.path().join("certs"), &ca, &[], &[("test", &client)]).expect("bundle");
        let mut c = Self {
            dir,
            ca,
            nodes: BTreeMap::new(),
        };
        for id in 1..=n {
            c.add(id).await;
        }
        c
    }

    /// Writes node `id`'s certificate and config (node 1 bootstraps, the others seed
    /// from every node started before) and starts it.
    async fn add(&mut self, id: u64) {
        let cert = self
            .ca
            .issue_node(NodeId(id), &["127.0.0.1".to_owned()])
            .expect("node cert");
        ringcache_tls::CertDir::new(self.dir.path().join("certs"))
            .write_node(NodeId(id), &cert)
            .expect("node cert files");
        let addr = format!("127.0.0.1:{}", free_port());
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
down_after = "3s"
heartbeat = "200ms"
election_timeout = "1s"
"#
        );
        std::fs::write(self.dir.path().join(format!("node-{id}.toml")), config).expect("config");
        self.nodes.insert(id, Node { addr, child: None });
        self.spawn(id);
    }

    fn spawn(&mut self, id: u64) {
        let path = self.dir.path().join(format!("node-{id}.toml"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("node-{id}.log")))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ringcached"))
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

    async fn kill(&mut self, id: u64) {
        if let Some(mut child) = self.nodes.get_mut(&id).and_then(|n| n.child.take()) {
            child.kill().await.expect("kill");
        }
    }

    fn log(&self, id: u64) -> String {
        let text = std::fs::read_to_string(self.dir.path().join(format!("node-{id}.log")))
            .unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn config(&self, endpoints: Vec<String>) -> ClientConfig {
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

    async fn client_of(&self, id: u64) -> Option<Client> {
        Client::connect(self.config(vec![self.nodes[&id].addr.clone()]))
            .await
            .ok()
    }

    async fn status(&self, id: u64) -> Option<ClusterStatus> {
        let c = self.client_of(id).await?;
        match c.request(Op::ClusterStatus).await {
            Ok(Response::ClusterStatus(s)) => Some(s),
            _ => None,
        }
    }

    /// Waits until `id` reports every node of `expect` active, a leader, no moves, and
    /// every active node owning partitions.
    async fn settled(&self, id: u64, expect: &[u64]) -> ClusterStatus {
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
                        .all(|m| m.role == "leader" || m.role == "voter")
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

async fn wait<F, Fut>(_what: &str, timeout: Duration, mut f: F) -> bool
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
struct Router {
    client: Client,
}

impl Router {
    async fn new(c: &Cluster) -> Arc<Self> {
        let endpoints = c.nodes.values().map(|n| n.addr.clone()).collect();
        let mut cfg = c.config(endpoints);
        cfg.request_timeout = Duration::from_secs(30);
        Arc::new(Self {
            client: Client::connect(cfg).await.expect("connect"),
        })
    }

    async fn set(&self, key: &str, value: &str) -> Result<u64, String> {
        self.client
            .set("default", key, value.to_owned(), SetOptions::default())
            .await
            .map_err(|e| format!("set {key}: {e}"))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, String> {
        self.client
            .get("default", key)
            .await
            .map(|v| v.map(|e| e.value))
            .map_err(|e| format!("get {key}: {e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_from_seeds_and_serve_every_partition() {
    let c = Cluster::start(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    assert_eq!(s.partitions, PARTITIONS);
    assert_eq!(s.replication, 2);
    let voters = s
        .members
        .iter()
        .filter(|m| m.role == "voter" || m.role == "leader")
        .count();
    assert_eq!(voters, 3, "{s:#?}");
    let total: u32 = s.members.iter().map(|m| m.primaries).sum();
    assert_eq!(total, PARTITIONS);
    // Every node agrees on the table.
    for id in [2, 3] {
        let other = c.settled(id, &[1, 2, 3]).await;
        assert_eq!(other.epoch, s.epoch);
    }
    let r = Router::new(&c).await;
    for i in 0..200 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    for i in 0..200 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from(format!("v{i}")))
        );
    }
    // A node that does not own a key says who does.
    let info = c
        .client_of(1)
        .await
        .expect("client")
        .cluster_info()
        .await
        .expect("info");
    let key = (0..).map(|i| format!("probe{i}")).find(|k| {
        info.owners[partition_for("default", k.as_bytes(), PARTITIONS).0 as usize] != NodeId(1)
    });
    let key = key.expect("some key is elsewhere");
    let owner = info.owners[partition_for("default", key.as_bytes(), PARTITIONS).0 as usize];
    let c1 = c.client_of(1).await.expect("client");
    match c1
        .request_here(Op::Get {
            ns: "default".into(),
            key: Bytes::from(key),
        })
        .await
    {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::NotOwner);
            assert_eq!(e.hints.owner, Some(owner));
            assert_eq!(e.hints.epoch, Some(info.epoch));
        }
        other => panic!("expected not_owner, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_partitions_with_their_data() {
    let mut c = Cluster::start(2).await;
    c.settled(1, &[1, 2]).await;
    let r = Router::new(&c).await;
    for i in 0..500 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    c.add(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    let on3 = s
        .members
        .iter()
        .find(|m| m.id == NodeId(3))
        .expect("node 3")
        .primaries;
    assert!(on3 > 0);
    let r = Router::new(&c).await;
    for i in 0..500 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from(format!("v{i}"))),
            "k{i} lost in the move"
        );
    }
    // Node 3 really serves data now: its engine holds entries.
    let c3 = c.client_of(3).await.expect("client");
    let stats = c3.stats(Some("default")).await.expect("stats");
    assert!(stats[0].entries > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_write_load_loses_no_acknowledged_write() {
    let c = Cluster::start(3).await;
    c.settled(1, &[1, 2, 3]).await;
    let r = Router::new(&c).await;
    let acked: Arc<tokio::sync::Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (r, acked, stop) = (Arc::clone(&r), Arc::clone(&acked), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (k, v) = (format!("w{w}-{}", i % 100), format!("{i}"));
                    // One writer per key: the last acknowledged value is well defined.
                    r.set(&k, &v).await.expect("writes keep being acknowledged");
                    acked.lock().await.insert(k, v);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c1 = c.client_of(1).await.expect("client");
    match c1.request(Op::ClusterDrain { node: NodeId(3) }).await {
        Ok(Response::ClusterStatus(_)) => {}
        other => panic!("drain: {other:?}"),
    }
    let gone = wait("node 3 to leave", Duration::from_secs(60), || async {
        c.status(1)
            .await
            .is_some_and(|s| s.members.iter().all(|m| m.id != NodeId(3)) && s.moves.is_empty())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    assert!(
        gone,
        "node 3 did not leave: {:#?}\n{}",
        c.status(1).await,
        c.log(1)
    );
    let s = c.status(1).await.expect("status");
    assert_eq!(s.members.len(), 2);
    let r = Router::new(&c).await;
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 100, "the load ran: {}", acked.len());
    for (k, v) in &acked {
        assert_eq!(
            r.get(k).await.expect("get"),
            Some(Bytes::from(v.clone())),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_a_restarted_node_rejoins() {
    let mut c = Cluster::start(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    let leader = s.leader.expect("leader").0;
    let survivor = [1, 2, 3]
        .into_iter()
        .find(|n| *n != leader)
        .expect("survivor");
    let killed_at = Instant::now();
    c.kill(leader).await;
    // Within 10 s: a new leader, the dead node marked down, and a committed table that
    // gives none of its partitions to it.
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let replaced = wait(
        "a new leader and table",
        Duration::from_secs(10),
        || async {
            c.status(survivor).await.is_some_and(|s| {
                s.leader.is_some_and(|l| l.0 != leader)
                    && s.members
                        .iter()
                        .any(|m| m.id.0 == leader && m.state == "down" && m.primaries == 0)
            })
        },
    )
    .await;
    assert!(
        replaced,
        "no new leader and table 10 s after the kill of {leader}: {:#?}\n{}",
        c.status(survivor).await,
        [1, 2, 3]
            .map(|n| format!("--- node {n}\n{}", c.log(n)))
            .join("\n")
    );
    eprintln!("re-placed {:?} after the kill", killed_at.elapsed());
    c.settled(survivor, &rest).await;
    let r = Router::new(&c).await;
    for i in 0..100 {
        r.set(&format!("after{i}"), "x")
            .await
            .expect("clients keep working");
    }
    // The killed node restarts with its data directory and rejoins.
    c.spawn(leader);
    c.settled(survivor, &[1, 2, 3]).await;
    let s = c.settled(leader, &[1, 2, 3]).await;
    assert!(s.leader.is_some());
    for i in 0..100 {
        assert_eq!(
            r.get(&format!("after{i}")).await.expect("get"),
            Some(Bytes::from("x"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_with_five_voters_and_balanced_partitions() {
    let c = Cluster::start(5).await;
    let s = c.settled(1, &[1, 2, 3, 4, 5]).await;
    let voters = s
        .members
        .iter()
        .filter(|m| m.role == "voter" || m.role == "leader")
        .count();
    assert_eq!(voters, 5, "{s:#?}");
    let most = s.members.iter().map(|m| m.primaries).max().unwrap_or(0);
    let mean = f64::from(PARTITIONS) / 5.0;
    assert!(
        f64::from(most) <= (mean * 1.15).ceil(),
        "busiest node owns {most} of {PARTITIONS}: {s:#?}"
    );
    let r = Router::new(&c).await;
    for i in 0..100 {
        r.set(&format!("k{i}"), "v").await.expect("set");
    }
    for i in 0..100 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from("v"))
        );
    }
}

/// A drain completes while another member is down (placement must converge instead of
/// re-committing backup changes forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_completes_while_another_member_is_down() {
    let mut c = Cluster::start(4).await;
    c.settled(1, &[1, 2, 3, 4]).await;
    let r = Router::new(&c).await;
    for i in 0..200 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    c.kill(2).await;
    c.settled(1, &[1, 3, 4]).await;
    let c1 = c.client_of(1).await.expect("client");
    match c1.request(Op::ClusterDrain { node: NodeId(4) }).await {
        Ok(Response::ClusterStatus(_)) => {}
        other => panic!("drain: {other:?}"),
    }
    c.settled(1, &[1, 3]).await;
    let left = wait("node 4 to leave", Duration::from_secs(30), || async {
        c.status(1)
            .await
            .is_some_and(|s| s.members.iter().all(|m| m.id != NodeId(4)))
    })
    .await;
    assert!(left, "{:#?}\n{}", c.status(1).await, c.log(1));
    // Keys that lived on node 2 died with it (no replication yet); every other one moved.
    let info = c1.cluster_info().await.expect("info");
    assert!(
        info.owners
            .iter()
            .all(|o| *o == NodeId(1) || *o == NodeId(3))
    );
    let mut found = 0;
    for i in 0..200 {
        let got = r.get(&format!("k{i}")).await;
        if got.expect("get").is_some() {
            found += 1;
        }
    }
    assert!(found >= 100, "only {found} of 200 keys survived the drain");
}

/// `ns create` and `ns alter` sent to any member apply on every member (through Raft).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_apply_cluster_wide() {
    let c = Cluster::start(3).await;
    c.settled(1, &[1, 2, 3]).await;
    let c1 = c.client_of(1).await.expect("client");
    match c1
        .request(Op::NsCreate {
            ns: "sessions".into(),
            config: "memory = \"4MiB\"\ndefault_ttl = \"10m\"\n".into(),
        })
        .await
    {
        Ok(Response::Namespaces(v)) => assert_eq!(v[0].ns, "sessions"),
        other => panic!("create: {other:?}"),
    }
    let c2 = c.client_of(2).await.expect("client");
    match c2
        .request(Op::NsAlter {
            ns: "sessions".into(),
            config: "policy = \"lru\"".into(),
        })
        .await
    {
        Ok(Response::Namespaces(v)) => assert!(v[0].config.contains("lru"), "{}", v[0].config),
        other => panic!("alter: {other:?}"),
    }
    for id in [1, 2, 3] {
        let applied = wait(
            "the namespace everywhere",
            Duration::from_secs(20),
            || async {
                let Some(client) = c.client_of(id).await else {
                    return false;
                };
                match client
                    .request(Op::NsShow {
                        ns: "sessions".into(),
                    })
                    .await
                {
                    Ok(Response::Namespaces(v)) => v[0].config.contains("lru"),
                    _ => false,
                }
            },
        )
        .await;
        assert!(
            applied,
            "node {id} lacks the altered namespace:\n{}",
            c.log(id)
        );
    }
    let e = c1
        .request(Op::NsCreate {
            ns: "sessions".into(),
            config: String::new(),
        })
        .await
        .expect_err("exists");
    assert!(
        matches!(e, ClientError::Server(ref w) if w.code == ErrorCode::AlreadyExists),
        "{e}"
    );
    let r = Router::new(&c).await;
    for i in 0..50 {
        r.client
            .set("sessions", format!("s{i}"), "x", SetOptions::default())
            .await
            .expect("set in the new namespace on its owner");
    }
}
