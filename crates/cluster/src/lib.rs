//! Ringcache's control plane: the cluster map (members, namespaces, the partition
//! table), replicated with Raft (openraft 0.9, storage v2) between nodes over QUIC with
//! mutual TLS, and stored in redb.
//!
//! This crate is the foundation, not the policy: it commits and replicates
//! [`Command`]s and tells the node what the map is ([`Cluster::state`]). It does not
//! decide membership, detect failures, compute placements, move partitions or route
//! requests: the node does, and proposes the results here. openraft stays inside this
//! crate: nothing in the public API is an openraft type except [`TypeConfig`] and the
//! storage types that implement its traits (for openraft's conformance suite).
//!
//! # Layout
//! - `state`: [`ClusterState`], [`Command`], [`CommandResult`], [`Rejection`]: the state
//!   machine as a pure, deterministic function (no clock, no randomness, ordered maps).
//! - `types`: [`TypeConfig`] (openraft's type declaration) and [`PeerNode`].
//! - `store`: [`open_storage`], [`LogStore`], [`StateMachineStore`]: openraft's
//!   `RaftLogStorage` and `RaftStateMachine` on one redb file.
//! - `codec`: bincode for stored records, the only module that knows bincode.
//! - `net`: the peer protocol: `wire` (messages), `client` (one link per peer), `raft`
//!   (openraft's `RaftNetworkFactory`/`RaftNetwork`), `server` ([`serve_peer`]).
//! - `cluster`: [`Cluster`], [`ClusterConfig`], [`RaftTiming`], [`ClusterMetrics`].
//! - `error`: [`ClusterError`], [`StoreError`].
//!
//! # Storage
//! `<data dir>/raft.redb`, one file, three tables (`logs` by index; `meta`: format
//! version, vote, committed, last purged; `state_machine`: last applied, last membership
//! and the map, and the current snapshot). Why redb: it is embedded, pure Rust, already
//! one of the workspace's dependencies, gives ACID transactions over several tables in one
//! file (a purge and its purge point, a snapshot install and the state it sets, commit
//! together), and its default durability fsyncs before `commit` returns, which is what
//! Raft needs of the log and the vote. Applying entries commits without fsync (openraft
//! re-applies committed entries after a crash). The Raft state is small (the map, a log
//! trimmed by snapshots), so a B-tree file is plenty; a log-structured engine would buy
//! nothing here. The layout is versioned (`meta/format`); a file of another version is
//! refused at open. Details in `store`.
//!
//! # Wire format
//! Peers use the QUIC endpoint the node already has, ALPN [`ringcache_tls::ALPN_PEER`].
//! A node dials peer N with the server name `node-N.<domain>`
//! ([`ringcache_tls::node_server_name`]), so the handshake fails unless the far end holds
//! node N's certificate. Each link is one connection with one long-lived bidirectional
//! stream carrying `ringcache_proto` frames (`len u32 | version u16 | request id u64 |
//! bincode body`, at most 16 MiB); many requests are in flight at once, matched by
//! request id; every request ready to go leaves in one write. Messages:
//!
//! | request | answer |
//! | --- | --- |
//! | `Hello { node_id }` (first, id 0) | `Hello`, or the connection is closed |
//! | `AppendEntries`, `Vote` | openraft's responses |
//! | `FullSnapshot { vote, meta, data }` | `SnapshotResponse` |
//! | `Forward(Command)` | `Command(CommandResult)` (leader only) |
//! | `AddLearner`, `ChangeMembership`, `Join { addr }` | `Membership` (leader only) |
//!
//! Errors are a closed code (`Refused`, `Stopped`, `NotLeader` with the leader's id and
//! address, `Membership`, `Malformed`, `Storage`, `Timeout`) and a message. A snapshot
//! travels whole in one frame: the encoded map must stay under 16 MiB (a
//! 65,536-partition table with three replicas is about 1 MiB). A link that fails is
//! re-dialed when the next request comes; requests queued while it could not connect
//! fail at once so openraft backs off. Every RPC has a deadline (openraft's per-RPC TTL;
//! [`RaftTiming`] for the rest).
//!
//! # Security check
//! Mutual TLS proves "signed by the cluster CA", which every node and client is. So the
//! accepting side checks the `Hello`'s claimed id against the certificate the peer
//! presented ([`ringcache_tls::verify_peer_node`]) and closes the connection on a
//! mismatch (node 3's certificate claiming node 4, or a client certificate). After the
//! hello, Raft messages must carry a vote for the verified peer itself, so a node cannot
//! replicate or campaign in another node's name. `Join` adds the verified id, not a
//! claimed one. Any verified node may forward commands and membership changes: every
//! member is trusted with the map.
//!
//! # Not done
//! - Node integration: joining by seeds, failure detection, recomputing placement,
//!   partition moves and routing (the node's job; [`Cluster::join`] and the commands are
//!   the hooks).
//! - Chunked or streamed snapshots (not needed at this size), removing learners,
//!   leadership transfer, linearizable reads (the watch is the local applied state).
//! - An in-memory transport for fault-injection tests: the tests here use real QUIC on
//!   loopback.
//!
//! # Example
//! ```no_run
//! use ringcache_cluster::{Cluster, ClusterConfig, Command, peer_client_config, serve_peer};
//! use ringcache_proto::NodeId;
//!
//! # async fn run(endpoint: quinn::Endpoint, ca_pem: &str, me: &ringcache_tls::IssuedCert)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let config = ClusterConfig::new(
//!     NodeId(1), "10.0.0.1:7100", "/var/lib/ringcache/raft", "ringcache.local",
//!     endpoint.clone(), peer_client_config(ca_pem, me)?,
//! );
//! let cluster = Cluster::start(config).await?;
//! // The node's accept loop hands peer connections (ALPN ringcache-peer/1) over:
//! let c = cluster.clone();
//! tokio::spawn(async move {
//!     while let Some(incoming) = endpoint.accept().await {
//!         let c = c.clone();
//!         tokio::spawn(async move {
//!             if let Ok(conn) = incoming.await {
//!                 serve_peer(conn, c).await;
//!             }
//!         });
//!     }
//! });
//! cluster.initialize(1024, 2).await?; // once, on the first node of a new cluster
//! cluster.add_learner(NodeId(2), "10.0.0.2:7100").await?;
//! cluster.change_membership([NodeId(1), NodeId(2)].into()).await?;
//! cluster
//!     .propose(Command::PutNamespace { name: "users".into(), config: "ttl = \"5m\"".into() })
//!     .await?;
//! let mut map = cluster.state();
//! map.wait_for(|s| s.namespaces.contains_key("users")).await?;
//! cluster.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod cluster;
mod codec;
mod error;
mod lease;
mod net;
mod state;
mod store;
mod types;

pub use cluster::{
    Cluster, ClusterConfig, ClusterMetrics, DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT,
    DEFAULT_SNAPSHOT_EVERY, RaftTiming, Role, peer_client_config,
};
pub use error::{ClusterError, CodecError, StoreError};
pub use net::{HELLO_TIMEOUT, MAX_IN_FLIGHT_PER_PEER, serve_peer};
pub use state::{
    ClusterState, Command, CommandResult, MAX_ADDR_LEN, MAX_NAMESPACE_CONFIG_LEN, MAX_NAMESPACES,
    MAX_REPLICATION, MemberInfo, MemberState, Rejection,
};
pub use store::{DB_FILE, LogStore, SnapshotBuilder, StateMachineStore, open_storage};
pub use types::{PeerNode, TypeConfig};
