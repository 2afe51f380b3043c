//! [`Cluster`]: a running Raft node of the control plane.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{ServerState, SnapshotPolicy};
use ringcache_placement::MAX_PARTITIONS;
use ringcache_proto::NodeId;
use ringcache_tls::IssuedCert;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::error::ClusterError;
use crate::lease::Lease;
use crate::net::client::{CallError, PeerPool};
use crate::net::raft::Network;
use crate::net::wire::{PeerError, PeerErrorCode, PeerRequest, PeerResponse};
use crate::state::{ClusterState, Command, CommandResult, MAX_REPLICATION};
use crate::store::open_storage;
use crate::types::{PeerNode, Raft, RaftNodeId};

/// Raft timing and the waits around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftTiming {
    /// How often the leader sends heartbeats (and the time-to-live of each
    /// `AppendEntries`). Default 250 ms.
    pub heartbeat_interval: Duration,
    /// Shortest election timeout: a follower that hears no leader for a random time in
    /// `[min, max)` starts an election. Default 1 s (a busy 2-core machine drops UDP
    /// packets; shorter timeouts cause needless elections). Must exceed the heartbeat.
    pub election_timeout_min: Duration,
    /// Longest election timeout. Default 2 s.
    pub election_timeout_max: Duration,
    /// Longest wait for a QUIC connection to a peer, hello included. Default 2 s.
    pub connect_timeout: Duration,
    /// Longest wait for an operation of this API (a forwarded proposal, a membership
    /// change, waiting for a leader) and for a snapshot transfer. Default 10 s.
    pub request_timeout: Duration,
}

impl Default for RaftTiming {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_millis(250),
            election_timeout_min: Duration::from_secs(1),
            election_timeout_max: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Default for [`ClusterConfig::snapshot_every`].
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 5000;
/// Default for [`ClusterConfig::logs_kept_after_snapshot`].
pub const DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT: u64 = 1000;

/// How to start a [`Cluster`] node.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's id; its certificate must be node `node_id`'s.
    pub node_id: NodeId,
    /// The address peers dial to reach this node (`host:port` of `endpoint`'s socket as
    /// seen from the peers). Stored in the Raft membership when this node bootstraps or
    /// is added.
    pub addr: String,
    /// Where the Raft storage lives (`raft.redb` inside); created if missing.
    pub data_dir: PathBuf,
    /// The cluster's DNS domain: peers are dialed as `node-<id>.<domain>` and their
    /// certificates checked against it.
    pub cluster_domain: String,
    /// The node's QUIC endpoint, used to dial peers (the node accepts on it too, and
    /// hands peer connections to [`crate::serve_peer`]).
    pub endpoint: quinn::Endpoint,
    /// The client configuration for dialing peers: the cluster CA, this node's
    /// certificate, ALPN [`ringcache_tls::ALPN_PEER`] ([`peer_client_config`] makes it).
    pub client_config: quinn::ClientConfig,
    /// Raft timing.
    pub timing: RaftTiming,
    /// Take a snapshot after this many log entries since the last one. Default
    /// [`DEFAULT_SNAPSHOT_EVERY`].
    pub snapshot_every: u64,
    /// Log entries kept before a snapshot's last entry when purging (a follower that lags
    /// less than this catches up from the log instead of a snapshot). Default
    /// [`DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT`].
    pub logs_kept_after_snapshot: u64,
}

impl ClusterConfig {
    /// A configuration with default timing and snapshot policy.
    pub fn new(
        node_id: NodeId,
        addr: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        cluster_domain: impl Into<String>,
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
    ) -> Self {
        Self {
            node_id,
            addr: addr.into(),
            data_dir: data_dir.into(),
            cluster_domain: cluster_domain.into(),
            endpoint,
            client_config,
            timing: RaftTiming::default(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            logs_kept_after_snapshot: DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT,
        }
    }
}

/// The quinn client configuration a node dials its peers with: trusts only the cluster CA
/// `ca_pem`, presents `identity` (this node's certificate), offers
/// [`ringcache_tls::ALPN_PEER`].
///
/// # Errors
/// [`ClusterError::Tls`] if the PEM data is invalid.
pub fn peer_client_config(
    ca_pem: &str,
    identity: &IssuedCert,
) -> Result<quinn::ClientConfig, ClusterError> {
    let tls = ringcache_tls::client_config(ca_pem, Some(identity), &[ringcache_tls::ALPN_PEER])?;
    Ok(ringcache_tls::quinn_client_config(tls)?)
}

/// A node's Raft role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// Replicates the log, does not vote (also a node not yet part of any membership).
    Learner,
    /// A voter following a leader.
    Follower,
    /// A voter running for leader.
    Candidate,
    /// The leader.
    Leader,
    /// Shut down.
    Shutdown,
}

/// What a node knows about the Raft group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMetrics {
    /// This node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// Its current term.
    pub term: u64,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Index of its last log entry.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied to its state machine.
    pub last_applied: Option<u64>,
    /// Index of the last entry its current snapshot covers.
    pub snapshot: Option<u64>,
    /// Index of the last entry purged from its log (covered by a snapshot).
    pub purged: Option<u64>,
    /// The voters of the membership it knows (both sets during a joint change).
    pub voters: BTreeSet<NodeId>,
    /// The learners of that membership.
    pub learners: BTreeSet<NodeId>,
    /// The membership is a joint configuration (a change between voter sets is under
    /// way; both sets must agree until it completes).
    pub joint: bool,
}

impl ClusterMetrics {
    fn from_raft(m: &openraft::RaftMetrics<RaftNodeId, PeerNode>) -> Self {
        let role = match m.state {
            ServerState::Learner => Role::Learner,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Leader => Role::Leader,
            ServerState::Shutdown => Role::Shutdown,
        };
        let membership = m.membership_config.membership();
        Self {
            id: NodeId(m.id),
            role,
            term: m.current_term,
            leader: m.current_leader.map(NodeId),
            last_log_index: m.last_log_index,
            last_applied: m.last_applied.map(|l| l.index),
            snapshot: m.snapshot.map(|l| l.index),
            purged: m.purged.map(|l| l.index),
            voters: membership.voter_ids().map(NodeId).collect(),
            learners: membership.learner_ids().map(NodeId).collect(),
            joint: membership.get_joint_config().len() > 1,
        }
    }
}

/// An operation that only the leader can carry out.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Write(Command),
    AddLearner { id: RaftNodeId, addr: String },
    ChangeMembership { voters: BTreeSet<RaftNodeId> },
}

impl Op {
    fn request(&self) -> PeerRequest {
        match self {
            Op::Write(cmd) => PeerRequest::Forward(cmd.clone()),
            Op::AddLearner { id, addr } => PeerRequest::AddLearner {
                node_id: *id,
                addr: addr.clone(),
            },
            Op::ChangeMembership { voters } => PeerRequest::ChangeMembership {
                voters: voters.clone(),
            },
        }
    }
}

/// What a leader-only operation returned.
#[derive(Debug)]
pub(crate) enum Done {
    Command(CommandResult),
    Membership,
}

/// Why this node could not carry out a leader-only operation itself.
#[derive(Debug)]
pub(crate) enum LocalError {
    /// Not the leader; the leader it knows of, with its address.
    NotLeader(Option<(RaftNodeId, PeerNode)>),
    /// openraft refused the membership change.
    Membership(String),
    /// Raft has stopped.
    Fatal(String),
    /// Not committed within the request timeout (it may still commit).
    Timeout(Duration),
}

fn local_error(e: RaftError<RaftNodeId, ClientWriteError<RaftNodeId, PeerNode>>) -> LocalError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => {
            LocalError::NotLeader(f.leader_id.zip(f.leader_node))
        }
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            LocalError::Membership(c.to_string())
        }
        RaftError::Fatal(f) => LocalError::Fatal(f.to_string()),
    }
}

/// The shared part of a [`Cluster`].
pub(crate) struct Inner {
    id: RaftNodeId,
    addr: String,
    domain: String,
    raft: Raft,
    pool: PeerPool,
    timing: RaftTiming,
    state_rx: watch::Receiver<ClusterState>,
    metrics_rx: watch::Receiver<ClusterMetrics>,
    shutdown_tx: watch::Sender<bool>,
    shut_down: AtomicBool,
    storage_closed: watch::Receiver<()>,
    lease: std::sync::Mutex<Lease>,
}

impl Inner {
    pub(crate) fn id(&self) -> RaftNodeId {
        self.id
    }

    pub(crate) fn domain(&self) -> &str {
        &self.domain
    }

    pub(crate) fn raft(&self) -> &Raft {
        &self.raft
    }

    pub(crate) fn shutdown_rx(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    fn lease(&self) -> std::sync::MutexGuard<'_, Lease> {
        self.lease
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The leader's answer to [`PeerRequest::Lease`]: how old its quorum confirmation
    /// is, and what it has applied; another node answers `NotLeader`.
    pub(crate) fn lease_answer(&self) -> PeerResponse {
        let m = self.metrics_rx.borrow().clone();
        if m.role != Role::Leader {
            return PeerResponse::Error(PeerError {
                code: PeerErrorCode::NotLeader,
                message: format!("{} is not the leader", NodeId(self.id)),
                leader: m.leader.and_then(|l| Some((l.0, self.addr_of(l.0)?))),
            });
        }
        let age = self
            .lease()
            .confirmed()
            .map(|at| u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX));
        PeerResponse::Lease {
            quorum_age_ms: age,
            applied: m.last_applied,
        }
    }

    /// A member's address as the Raft membership records it.
    fn addr_of(&self, id: RaftNodeId) -> Option<String> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .get_node(&id)
            .map(|n| n.addr.clone())
    }

    /// One renewal round (see [`crate::lease`]); waits at most `wait`.
    async fn renew_lease(&self, wait: Duration) {
        let m = self.metrics_rx.borrow().clone();
        let at = std::time::Instant::now();
        match m.role {
            Role::Leader => {
                if let Ok(Ok(_)) = tokio::time::timeout(wait, self.raft.ensure_linearizable()).await
                {
                    self.lease().confirm(at);
                }
            }
            Role::Follower | Role::Learner => {
                let Some(leader) = m.leader.filter(|l| l.0 != self.id) else {
                    return;
                };
                let Some(addr) = self.addr_of(leader.0) else {
                    return;
                };
                let answer = self
                    .pool
                    .call(leader.0, &addr, PeerRequest::Lease, wait)
                    .await;
                if let Ok(PeerResponse::Lease {
                    quorum_age_ms: Some(age),
                    applied,
                }) = answer
                    && let Some(contact) = at.checked_sub(Duration::from_millis(age))
                {
                    let local = self.metrics_rx.borrow().last_applied;
                    self.lease().expect(contact, applied, local);
                }
            }
            Role::Candidate | Role::Shutdown => {}
        }
    }

    /// Carries out `op` on this node, which must be the leader, waiting at most
    /// [`RaftTiming::request_timeout`] (openraft itself would wait for a quorum, or a
    /// learner to catch up, indefinitely).
    pub(crate) async fn run_local(&self, op: &Op) -> Result<Done, LocalError> {
        let after = self.timing.request_timeout;
        match tokio::time::timeout(after, self.run_local_unbounded(op)).await {
            Ok(res) => res,
            Err(_) => Err(LocalError::Timeout(after)),
        }
    }

    async fn run_local_unbounded(&self, op: &Op) -> Result<Done, LocalError> {
        match op {
            Op::Write(cmd) => self
                .raft
                .client_write(cmd.clone())
                .await
                .map(|r| Done::Command(r.data))
                .map_err(local_error),
            Op::AddLearner { id, addr } => self
                .raft
                .add_learner(*id, PeerNode::new(addr.clone()), true)
                .await
                .map(|_| Done::Membership)
                .map_err(local_error),
            Op::ChangeMembership { voters } => self
                .raft
                .change_membership(voters.clone(), false)
                .await
                .map(|_| Done::Membership)
                .map_err(local_error),
        }
    }
}

/// A running control-plane node: its Raft instance, storage and peer links.
///
/// Cloning gives another handle on the same node (for the accept loop's
/// [`crate::serve_peer`] tasks, say). [`Cluster::shutdown`] stops it for every handle.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("id", &NodeId(self.inner.id))
            .field("addr", &self.inner.addr)
            .finish_non_exhaustive()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Cluster {
    /// Opens the storage in `config.data_dir` and starts the Raft node. A node with
    /// stored state resumes it (its vote, log and cluster map); a new node waits to be
    /// bootstrapped ([`Cluster::initialize`]) or added by the leader.
    ///
    /// # Errors
    /// [`ClusterError::Config`] for invalid timing or an empty address or domain,
    /// [`ClusterError::Storage`] if the storage cannot be opened, [`ClusterError::Fatal`]
    /// if Raft cannot start on it.
    pub async fn start(config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let invalid = |reason: String| ClusterError::Config { reason };
        if config.addr.is_empty() {
            return Err(invalid("the node address is empty".into()));
        }
        if config.cluster_domain.is_empty() {
            return Err(invalid("the cluster domain is empty".into()));
        }
        let t = config.timing;
        if t.connect_timeout.is_zero() || t.request_timeout.is_zero() {
            return Err(invalid("timeouts must be positive".into()));
        }
        let raft_config = openraft::Config {
            cluster_name: "ringcache".into(),
            heartbeat_interval: millis(t.heartbeat_interval),
            election_timeout_min: millis(t.election_timeout_min),
            election_timeout_max: millis(t.election_timeout_max),
            install_snapshot_timeout: millis(t.request_timeout),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot_every.max(1)),
            max_in_snapshot_log_to_keep: config.logs_kept_after_snapshot,
            ..Default::default()
        }
        .validate()
        .map_err(|e| invalid(e.to_string()))?;

        let (log, sm) = open_storage(&config.data_dir)?;
        let storage_closed = log.closed_signal();
        let state_rx = sm.subscribe();
        let id = config.node_id.0;
        let pool = PeerPool::new(
            id,
            config.cluster_domain.clone(),
            config.endpoint,
            config.client_config,
            t.connect_timeout,
        );
        let network = Network {
            pool: pool.clone(),
            self_id: id,
            backoff: t.heartbeat_interval.max(Duration::from_millis(100)),
        };
        let raft = Raft::new(id, Arc::new(raft_config), network, log, sm)
            .await
            .map_err(|e| ClusterError::Fatal {
                reason: e.to_string(),
            })?;

        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let mut raft_metrics = raft.metrics();
        let first = ClusterMetrics::from_raft(&raft_metrics.borrow_and_update());
        let (metrics_tx, metrics_rx) = watch::channel(first);
        tokio::spawn(metrics_task(raft_metrics, metrics_tx, shutdown_rx));
        tracing::info!(node = %config.node_id, addr = %config.addr, "raft node started");
        let cluster = Cluster {
            inner: Arc::new(Inner {
                id,
                addr: config.addr,
                domain: config.cluster_domain,
                raft,
                pool,
                timing: t,
                state_rx,
                metrics_rx,
                shutdown_tx,
                shut_down: AtomicBool::new(false),
                storage_closed,
                lease: std::sync::Mutex::new(Lease::default()),
            }),
        };
        tokio::spawn(lease_task(Arc::clone(&cluster.inner)));
        Ok(cluster)
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        NodeId(self.inner.id)
    }

    /// Bootstraps a new cluster with this node as its only voter, then commits
    /// [`Command::Init`] with `partitions` and `replication`. Call it on one node, once,
    /// when creating a cluster; other nodes join through [`Cluster::add_learner`] (or
    /// [`Cluster::join`]) and [`Cluster::change_membership`].
    ///
    /// # Errors
    /// [`ClusterError::Config`] for out-of-range parameters (checked before anything is
    /// written), [`ClusterError::AlreadyInitialized`] if this node already has a
    /// membership, or any error of [`Cluster::propose`].
    pub async fn initialize(
        &self,
        partitions: u32,
        replication: u32,
    ) -> Result<CommandResult, ClusterError> {
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return Err(ClusterError::Config {
                reason: format!("partitions must be 1 to {MAX_PARTITIONS}, got {partitions}"),
            });
        }
        if replication == 0 || replication > MAX_REPLICATION {
            return Err(ClusterError::Config {
                reason: format!("replication must be 1 to {MAX_REPLICATION}, got {replication}"),
            });
        }
        let members = BTreeMap::from([(self.inner.id, PeerNode::new(self.inner.addr.clone()))]);
        match self.inner.raft.initialize(members).await {
            Ok(()) => {}
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
                return Err(ClusterError::AlreadyInitialized);
            }
            Err(RaftError::APIError(InitializeError::NotInMembers(e))) => {
                return Err(ClusterError::Config {
                    reason: e.to_string(),
                });
            }
            Err(RaftError::Fatal(f)) => return Err(self.fatal(f.to_string())),
        }
        self.propose(Command::Init {
            partitions,
            replication,
        })
        .await
    }

    /// Commits `cmd` and returns what applying it did. On a node that is not the leader
    /// the command is forwarded to the leader; while no leader is known it waits (up to
    /// [`RaftTiming::request_timeout`]) for one.
    ///
    /// A command that reached the leader is never re-sent: if its answer is lost the
    /// result is [`ClusterError::OutcomeUnknown`].
    ///
    /// # Errors
    /// [`ClusterError::NoLeader`], [`ClusterError::Unreachable`] (nothing was sent),
    /// [`ClusterError::OutcomeUnknown`], [`ClusterError::Refused`],
    /// [`ClusterError::Shutdown`], [`ClusterError::Fatal`].
    pub async fn propose(&self, cmd: Command) -> Result<CommandResult, ClusterError> {
        match self.route(Op::Write(cmd)).await? {
            Done::Command(r) => Ok(r),
            Done::Membership => Err(ClusterError::Refused {
                node: self.id(),
                reason: "a membership answer to a command".into(),
            }),
        }
    }

    /// Adds node `id` at `addr` as a learner (it replicates the log, does not vote) and
    /// waits until it has caught up. Forwarded to the leader when needed. Adding a node
    /// that is already a member changes nothing.
    ///
    /// # Errors
    /// As [`Cluster::propose`], and [`ClusterError::Membership`] if openraft refuses.
    pub async fn add_learner(
        &self,
        id: NodeId,
        addr: impl Into<String>,
    ) -> Result<(), ClusterError> {
        self.route(Op::AddLearner {
            id: id.0,
            addr: addr.into(),
        })
        .await
        .map(|_| ())
    }

    /// Makes `voters` the voter set (a joint-consensus change committed through Raft).
    /// Every new voter must already be a learner; a voter left out stops being a member
    /// (learners not named stay learners). Forwarded to the leader when needed.
    ///
    /// # Errors
    /// As [`Cluster::propose`], and [`ClusterError::Membership`] if openraft refuses (a
    /// change in progress, an unknown learner, an empty set).
    pub async fn change_membership(&self, voters: BTreeSet<NodeId>) -> Result<(), ClusterError> {
        self.route(Op::ChangeMembership {
            voters: voters.into_iter().map(|n| n.0).collect(),
        })
        .await
        .map(|_| ())
    }

    /// Asks the cluster, through the member `via` at `via_addr`, to add this node as a
    /// learner at its [`ClusterConfig::addr`]. The receiving member forwards nothing: if
    /// it is not the leader it names the leader, and this node asks the leader directly.
    /// The id added is the one this node's certificate proves, not a claim.
    ///
    /// # Errors
    /// As [`Cluster::propose`].
    pub async fn join(&self, via: NodeId, via_addr: &str) -> Result<(), ClusterError> {
        let timeout = self.inner.timing.request_timeout;
        let deadline = Instant::now() + timeout;
        let (mut target, mut addr) = (via.0, via_addr.to_owned());
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(ClusterError::Timeout {
                    what: "joining the cluster",
                    after: timeout,
                });
            }
            let req = PeerRequest::Join {
                addr: self.inner.addr.clone(),
            };
            let res = self.inner.pool.call(target, &addr, req, remaining).await;
            match self.remote_outcome(target, res)? {
                Remote::Done(_) => return Ok(()),
                Remote::Redirect(Some((leader, leader_addr))) => {
                    (target, addr) = (leader, leader_addr);
                }
                Remote::Redirect(None) | Remote::Retry => {
                    self.pause(deadline).await;
                }
            }
        }
    }

    /// The cluster map, updated after every applied entry batch and installed snapshot.
    #[must_use]
    pub fn state(&self) -> watch::Receiver<ClusterState> {
        self.inner.state_rx.clone()
    }

    /// Raft metrics (role, term, leader, membership), updated as they change.
    #[must_use]
    pub fn metrics(&self) -> watch::Receiver<ClusterMetrics> {
        self.inner.metrics_rx.clone()
    }

    /// When this node last proved contact with the cluster: a quorum round as the
    /// leader, or, as another member, an answer from a leader in contact with a quorum,
    /// with this node's state machine caught up to what that leader had applied
    /// (`None`: never since it started). Renewed every heartbeat; the node stops serving
    /// partitions when it grows old (see the `lease` module).
    #[must_use]
    pub fn contact(&self) -> Option<std::time::Instant> {
        let local = self.inner.metrics_rx.borrow().last_applied;
        self.inner.lease().catch_up(local)
    }

    /// Whether [`Cluster::shutdown`] was called.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        self.inner.shut_down.load(Ordering::Acquire)
    }

    /// Stops the node: closes its peer connections (served and dialed), stops Raft, and
    /// waits until the storage file is closed, so the data directory can be opened again
    /// at once. Idempotent. The QUIC endpoint is the caller's and stays open.
    ///
    /// # Errors
    /// [`ClusterError::Timeout`] if the storage is still open after
    /// [`RaftTiming::request_timeout`].
    pub async fn shutdown(&self) -> Result<(), ClusterError> {
        if self.inner.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.inner.shutdown_tx.send_replace(true);
        if let Err(e) = self.inner.raft.shutdown().await {
            tracing::warn!(error = %e, "raft did not stop cleanly");
        }
        self.inner.pool.close();
        let mut closed = self.inner.storage_closed.clone();
        let after = self.inner.timing.request_timeout;
        // `changed` fails once the last handle on the database is dropped.
        match tokio::time::timeout(after, closed.changed()).await {
            Ok(_) => {
                tracing::info!(node = %self.id(), "raft node stopped");
                Ok(())
            }
            Err(_) => Err(ClusterError::Timeout {
                what: "the raft storage to close",
                after,
            }),
        }
    }

    fn fatal(&self, reason: String) -> ClusterError {
        if self.is_shut_down() {
            ClusterError::Shutdown
        } else {
            ClusterError::Fatal { reason }
        }
    }

    /// Waits for a metrics change (a new leader, say), at most a heartbeat or until the
    /// deadline.
    async fn pause(&self, deadline: Instant) {
        let mut m = self.inner.metrics_rx.clone();
        m.mark_unchanged();
        let wait = self.inner.timing.heartbeat_interval;
        let until = deadline.min(Instant::now() + wait);
        let _ = tokio::time::timeout_at(until, m.changed()).await;
    }

    /// Runs `op` here if this node leads, else on the leader; waits for a leader.
    async fn route(&self, op: Op) -> Result<Done, ClusterError> {
        if self.is_shut_down() {
            return Err(ClusterError::Shutdown);
        }
        let timeout = self.inner.timing.request_timeout;
        let deadline = Instant::now() + timeout;
        loop {
            let leader = match self.inner.run_local(&op).await {
                Ok(done) => return Ok(done),
                Err(LocalError::Fatal(reason)) => return Err(self.fatal(reason)),
                Err(LocalError::Membership(reason)) => {
                    return Err(ClusterError::Membership { reason });
                }
                Err(LocalError::Timeout(after)) => {
                    return Err(ClusterError::Timeout {
                        what: "the leader to commit",
                        after,
                    });
                }
                Err(LocalError::NotLeader(leader)) => leader,
            };
            if let Some((leader, node)) = leader
                && leader != self.inner.id
            {
                let remaining = deadline.saturating_duration_since(Instant::now());
                let res = self
                    .inner
                    .pool
                    .call(leader, &node.addr, op.request(), remaining)
                    .await;
                match self.remote_outcome(leader, res)? {
                    Remote::Done(done) => return Ok(done),
                    Remote::Redirect(_) | Remote::Retry => {}
                }
            }
            if Instant::now() >= deadline {
                let leader = self.inner.metrics_rx.borrow().leader;
                return Err(match leader {
                    None => ClusterError::NoLeader { waited: timeout },
                    Some(l) => ClusterError::Unreachable {
                        node: l,
                        reason: format!("no answer from the leader within {timeout:?}"),
                    },
                });
            }
            self.pause(deadline).await;
        }
    }

    /// Sorts a remote call's outcome into done, retry (nothing was applied), or an error.
    fn remote_outcome(
        &self,
        target: RaftNodeId,
        res: Result<PeerResponse, CallError>,
    ) -> Result<Remote, ClusterError> {
        let node = NodeId(target);
        match res {
            Ok(PeerResponse::Command(r)) => Ok(Remote::Done(Done::Command(r))),
            Ok(PeerResponse::Membership) => Ok(Remote::Done(Done::Membership)),
            Ok(PeerResponse::Error(e)) => match e.code {
                PeerErrorCode::NotLeader => Ok(Remote::Redirect(e.leader)),
                PeerErrorCode::Stopped => Ok(Remote::Retry),
                PeerErrorCode::Timeout => Err(ClusterError::OutcomeUnknown {
                    node,
                    reason: e.message,
                }),
                PeerErrorCode::Membership => Err(ClusterError::Membership { reason: e.message }),
                PeerErrorCode::Refused | PeerErrorCode::Malformed | PeerErrorCode::Storage => {
                    Err(ClusterError::Refused {
                        node,
                        reason: e.message,
                    })
                }
            },
            Ok(other) => Err(ClusterError::Refused {
                node,
                reason: format!("unexpected answer {other:?}"),
            }),
            Err(CallError::Refused(reason)) => Err(ClusterError::Refused { node, reason }),
            Err(e) if e.not_sent() => {
                tracing::debug!(%node, error = %e, "leader not reached, will retry");
                Ok(Remote::Retry)
            }
            Err(e) => Err(ClusterError::OutcomeUnknown {
                node,
                reason: e.to_string(),
            }),
        }
    }
}

/// A remote call's outcome.
enum Remote {
    Done(Done),
    /// The peer is not the leader; the leader it knows of.
    Redirect(Option<(RaftNodeId, String)>),
    /// Not applied; try again.
    Retry,
}

/// Renews this node's contact lease every heartbeat until shutdown.
async fn lease_task(inner: Arc<Inner>) {
    let mut shutdown = inner.shutdown_rx();
    let every = inner.timing.heartbeat_interval;
    let wait = inner.timing.election_timeout_min;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
        inner.renew_lease(wait).await;
    }
}

async fn metrics_task(
    mut raft_metrics: watch::Receiver<openraft::RaftMetrics<RaftNodeId, PeerNode>>,
    tx: watch::Sender<ClusterMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            changed = raft_metrics.changed() => {
                if changed.is_err() {
                    break;
                }
                let m = ClusterMetrics::from_raft(&raft_metrics.borrow_and_update());
                tx.send_replace(m);
            }
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    tx.send_modify(|m| {
        m.role = Role::Shutdown;
        m.leader = None;
    });
}
