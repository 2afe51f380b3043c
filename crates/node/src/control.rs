//! The control plane of a cluster member: Raft membership (through
//! `ringcache-cluster`), the partition table, failure detection and partition moves.
//!
//! # Forming and growing
//! - `cluster.bootstrap = true` (or `ringctl cluster init`) on a node with no cluster
//!   state initializes a one-member Raft group and records the node as a member.
//! - A node with `cluster.seeds` asks a seed who it is (`ClusterStatus` over the client
//!   protocol, with this node's certificate), joins the Raft group as a learner through
//!   it (the request reaches the leader), then records itself as a member.
//! - A restarted node has its Raft state in `<data_dir>/raft` and rejoins by itself.
//!
//! # The leader's loop (every `heartbeat × 2`)
//! 1. **Liveness**: pings every member over the client protocol. A member that answers
//!    becomes `active` (from `joining` or `down`); one silent for `down_after` becomes
//!    `down`. Learners that are active are promoted to voters while voters are fewer
//!    than `max_voters` (one membership change at a time: openraft serializes them, so
//!    none can be left in a joint configuration).
//! 2. **Placement**: the target table is the current one rebalanced over the active
//!    members (`PartitionTable::rebalance`: consistent hashing with bounded loads,
//!    moving as little as possible). Partitions whose owner is gone (down, removed) or
//!    whose only change is in backups adopt the target at once in one committed step;
//!    partitions whose owner is alive move in chunks of `move_concurrency`:
//!    - fence the partition at its owner (it stops serving it; requests already running
//!      finish first),
//!    - copy every entry (value, version, remaining TTL) and every queued write-behind
//!      write of every namespace to the new owner, page by page,
//!    - commit the next table, in which the new owner owns it.
//!
//!    The old owner lifts its fence when it applies that table (from then on it answers
//!    `not_owner`) and drops its copy; a mover that crashes leaves fences that expire on
//!    their own, and the next leader starts the move again from the committed table.
//! 3. **Leaving**: a `draining` member is left out of placement, so its partitions move
//!    away with their data; once no table names it, it is removed from the member list
//!    and from the Raft voters. `ringctl cluster remove` marks a dead member `removed`:
//!    its partitions are placed elsewhere without data (there is no replication yet).
//!
//! Only the leader computes placement; every node and client reads the committed table.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use ringcache_client::{Client, ClientConfig};
use ringcache_cluster::{
    Cluster, ClusterConfig, ClusterError, ClusterMetrics, ClusterState, Command, CommandResult,
    MemberState, RaftTiming, Role, peer_client_config,
};
use ringcache_placement::PartitionTable;
use ringcache_proto::{
    ClusterStatus, DumpCursor, Epoch, ErrorCode, MemberStatus, MoveStatus, NodeId, Op, PartitionId,
    Response, WireError,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{ClusterSection, NamespaceConfig, TlsConfig};
use crate::keyspace::Keyspace;
use crate::routing::{Routing, View};

/// Entries per page of a partition copy.
const COPY_PAGE: u32 = 2000;
/// Longest a fence holds without the table that ends it.
const FENCE_FOR: Duration = Duration::from_secs(30);

fn wire(e: &ClusterError) -> WireError {
    let code = match e {
        ClusterError::NotLeader { .. }
        | ClusterError::NoLeader { .. }
        | ClusterError::Unreachable { .. } => ErrorCode::Unavailable,
        ClusterError::OutcomeUnknown { .. } | ClusterError::Timeout { .. } => ErrorCode::Timeout,
        ClusterError::AlreadyInitialized => ErrorCode::AlreadyExists,
        _ => ErrorCode::Internal,
    };
    WireError::new(code, format!("cluster: {e}"))
}

fn rejected(r: &CommandResult) -> Result<(), WireError> {
    match r {
        CommandResult::Applied => Ok(()),
        CommandResult::Rejected(why) => Err(WireError::new(
            ErrorCode::Unsupported,
            format!("cluster refused: {why}"),
        )),
    }
}

fn state_name(s: MemberState) -> &'static str {
    match s {
        MemberState::Joining => "joining",
        MemberState::Active => "active",
        MemberState::Draining => "draining",
        MemberState::Down => "down",
        MemberState::Removed => "removed",
    }
}

/// What a node needs to start its control plane.
#[derive(Debug)]
pub struct ControlConfig {
    /// This node.
    pub me: NodeId,
    /// Its client address as others reach it.
    pub advertise: String,
    /// The `[cluster]` settings.
    pub section: ClusterSection,
    /// Partitions.
    pub partitions: u32,
    /// The node's data directory (Raft state goes to `raft/` under it).
    pub data_dir: PathBuf,
    /// TLS files (the node certificate also serves as the client certificate to peers).
    pub tls: TlsConfig,
    /// The node's QUIC endpoint (Raft connections dial from it).
    pub endpoint: quinn::Endpoint,
}

/// What the prober knows of one member.
#[derive(Debug, Clone, Copy)]
struct Probe {
    /// When the last round that reached it started (or when it was first probed).
    seen: Instant,
    /// It answered in the last round.
    answered: bool,
    /// It had applied the table current when that round started.
    caught_up: bool,
}

/// A member's control plane.
#[derive(Debug)]
pub struct Control {
    me: NodeId,
    advertise: String,
    section: ClusterSection,
    partitions: u32,
    tls: TlsConfig,
    cluster: Cluster,
    routing: Arc<Routing>,
    keyspace: Arc<Keyspace>,
    peers: Mutex<HashMap<String, Client>>,
    /// The node's own QUIC endpoint, which the peer clients dial from.
    endpoint: ringcache_client::Endpoint,
    moves: Mutex<Vec<MoveStatus>>,
    /// What this node's prober last learned of each member (every member probes every
    /// other, so a new leader starts with what it saw as a follower).
    probes: Mutex<HashMap<NodeId, Probe>>,
    /// Namespace settings (TOML) last applied from the cluster state, by name.
    applied: Mutex<HashMap<String, String>>,
    stop: watch::Sender<bool>,
}

impl Control {
    /// Starts Raft and the background tasks (table watcher, joining, the leader loop).
    ///
    /// # Errors
    /// Raft storage or TLS material that cannot be used.
    pub async fn start(
        config: ControlConfig,
        routing: Arc<Routing>,
        keyspace: Arc<Keyspace>,
    ) -> Result<Arc<Self>, ClusterError> {
        let ca = ringcache_tls::load_cert_pem(&config.tls.ca)?;
        let identity = ringcache_tls::load_identity(&config.tls.cert, &config.tls.key)?;
        let mut cc = ClusterConfig::new(
            config.me,
            config.advertise.clone(),
            config.data_dir.join("raft"),
            config.tls.cluster_domain.clone(),
            config.endpoint.clone(),
            peer_client_config(&ca, &identity)?,
        );
        let s = &config.section;
        cc.timing = RaftTiming {
            heartbeat_interval: s.heartbeat,
            election_timeout_min: s.election_timeout,
            election_timeout_max: s.election_timeout * 2,
            ..RaftTiming::default()
        };
        let cluster = Cluster::start(cc).await?;
        let me = Arc::new(Self {
            me: config.me,
            advertise: config.advertise,
            section: config.section,
            partitions: config.partitions,
            tls: config.tls,
            cluster,
            routing,
            keyspace,
            peers: Mutex::default(),
            endpoint: ringcache_client::Endpoint::from_quinn(config.endpoint),
            moves: Mutex::default(),
            probes: Mutex::default(),
            applied: Mutex::default(),
            stop: watch::Sender::new(false),
        });
        tokio::spawn(Arc::clone(&me).watch_state());
        tokio::spawn(Arc::clone(&me).lead());
        tokio::spawn(Arc::clone(&me).probe());
        tokio::spawn(Arc::clone(&me).keep_lease());
        tokio::spawn(Arc::clone(&me).join_at_start());
        Ok(me)
    }

    /// The Raft handle (for the peer protocol).
    #[must_use]
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Stops the loops and Raft.
    pub async fn shutdown(&self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.cluster.shutdown().await {
            warn!(error = %e, "raft shutdown");
        }
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow()
    }

    /// Applies every committed state to the routing and drops partitions this node no
    /// longer owns.
    async fn watch_state(self: Arc<Self>) {
        let mut rx = self.cluster.state();
        let mut stop = self.stop.subscribe();
        loop {
            let state = rx.borrow_and_update().clone();
            self.install(&state);
            self.apply_namespaces(&state).await;
            tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    fn install(&self, state: &ClusterState) {
        let addrs = state
            .members
            .iter()
            .filter(|(_, m)| m.state != MemberState::Removed)
            .map(|(id, m)| (*id, m.addr.clone()))
            .collect();
        let table = state.table.clone().map(Arc::new);
        let current = self.routing.view().table;
        if table.as_ref().map(|t| t.epoch()) == current.as_ref().map(|t| t.epoch()) {
            self.routing.set_view(View { table, addrs });
            return;
        }
        // Partitions this node hands over are dropped before the new view is installed:
        // the epoch it reports (and that the leader waits for before moving partitions
        // here) then means "done with every older table", so a partition loaded into it
        // afterwards can no longer be dropped by an older step. Nothing is served from
        // them meanwhile: a partition that moves away is fenced until released below,
        // and a node replaying old tables is past its contact lease.
        let handed: Vec<u32> = match (&table, &current) {
            (Some(new), Some(old)) => old
                .iter()
                .filter(|(p, set)| set.first() == Some(&self.me) && new.owner(*p) != Some(self.me))
                .map(|(p, _)| p.0)
                .collect(),
            _ => Vec::new(),
        };
        let dropped: Vec<(u32, usize)> = handed
            .into_iter()
            .map(|p| (p, self.keyspace.drop_partition(p)))
            .collect();
        let epoch = table.as_ref().map_or(0, |t| t.epoch().0);
        self.routing.set_view(View { table, addrs });
        for (p, entries) in dropped {
            self.routing.release(p);
            info!(partition = p, entries, epoch, "partition handed over");
        }
    }

    /// Creates or changes the namespaces whose committed settings this node has not
    /// applied yet.
    async fn apply_namespaces(&self, state: &ClusterState) {
        for (name, text) in &state.namespaces {
            if self.applied.lock().get(name) == Some(text) {
                continue;
            }
            let result = match NamespaceConfig::from_toml(text) {
                Ok(config) => self.keyspace.put(name, config).await.map(|_| ()),
                Err(e) => Err(WireError::new(ErrorCode::InvalidConfig, e)),
            };
            match result {
                Ok(()) => {
                    self.applied.lock().insert(name.clone(), text.clone());
                }
                Err(e) => {
                    warn!(ns = %name, error = %e, "cannot apply the cluster's namespace settings")
                }
            }
        }
    }

    /// Commits a namespace's complete settings cluster-wide and waits until this node
    /// applied them.
    ///
    /// # Errors
    /// The cluster refused, or the settings were not applied here within 30 s.
    pub async fn put_namespace(
        &self,
        name: &str,
        config: &NamespaceConfig,
    ) -> Result<(), WireError> {
        let text = config.to_toml(false);
        let r = self
            .cluster
            .propose(Command::PutNamespace {
                name: name.to_owned(),
                config: text.clone(),
            })
            .await
            .map_err(|e| wire(&e))?;
        rejected(&r)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.applied.lock().get(name) != Some(&text) {
            if Instant::now() > deadline {
                return Err(WireError::new(
                    ErrorCode::Timeout,
                    format!(
                        "namespace {name}: committed, but not applied on this node within 30 s (see its log)"
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    async fn join_at_start(self: Arc<Self>) {
        if self.cluster.state().borrow().is_initialized() {
            return; // a member already: Raft rejoins by itself
        }
        let result = if self.section.bootstrap {
            self.init().await.map(|_| ())
        } else if !self.section.seeds.is_empty() {
            let seeds = self.section.seeds.clone();
            // Seeds may still be starting: keep trying.
            loop {
                match self.join(&seeds).await {
                    Ok(_) => break Ok(()),
                    Err(e) if !self.stopped() => {
                        info!(error = %e, "joining through the seeds; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => break Err(e),
                }
            }
        } else {
            info!("not in a cluster yet: waiting for `ringctl cluster init` or `cluster join`");
            Ok(())
        };
        if let Err(e) = result {
            warn!(error = %e, "could not form or join the cluster");
        }
    }

    /// Starts a new cluster with this node as its only member.
    ///
    /// # Errors
    /// `already_exists` when this node is in a cluster.
    pub async fn init(&self) -> Result<ClusterStatus, WireError> {
        let replication = self.section.replication;
        match self.cluster.initialize(self.partitions, replication).await {
            Ok(r) => rejected(&r)?,
            Err(ClusterError::AlreadyInitialized) => {}
            Err(e) => return Err(wire(&e)),
        }
        self.register().await?;
        info!(
            partitions = self.partitions,
            replication, "cluster initialized"
        );
        Ok(self.status())
    }

    async fn register(&self) -> Result<(), WireError> {
        let r = self
            .cluster
            .propose(Command::UpsertMember {
                id: self.me,
                addr: self.advertise.clone(),
                weight: self.section.weight,
            })
            .await
            .map_err(|e| wire(&e))?;
        rejected(&r)
    }

    /// Joins the cluster one of `seeds` belongs to.
    ///
    /// # Errors
    /// No seed answered, or the join was refused.
    pub async fn join(&self, seeds: &[String]) -> Result<ClusterStatus, WireError> {
        let mut last = None;
        for seed in seeds {
            let who = match self.peer(seed).await {
                Ok(c) => c.request(Op::ClusterStatus).await,
                Err(e) => Err(e),
            };
            match who {
                Ok(Response::ClusterStatus(s)) => {
                    if s.node == self.me {
                        continue;
                    }
                    self.cluster
                        .join(s.node, seed)
                        .await
                        .map_err(|e| wire(&e))?;
                    self.register().await?;
                    info!(via = %seed, "joined the cluster");
                    return Ok(self.status());
                }
                Ok(other) => last = Some(format!("{seed}: unexpected answer {other:?}")),
                Err(e) => last = Some(format!("{seed}: {e}")),
            }
        }
        Err(WireError::new(
            ErrorCode::Unavailable,
            format!(
                "no seed let this node join: {}",
                last.unwrap_or_else(|| "no seeds".into())
            ),
        ))
    }

    /// Marks `node` draining: its partitions move away, then it is removed.
    ///
    /// # Errors
    /// Unknown node, or the cluster refused.
    pub async fn drain(&self, node: NodeId) -> Result<ClusterStatus, WireError> {
        self.set_state(node, MemberState::Draining).await
    }

    /// Marks `node` removed at once (a dead node).
    ///
    /// # Errors
    /// Unknown node, or the cluster refused.
    pub async fn remove(&self, node: NodeId) -> Result<ClusterStatus, WireError> {
        self.set_state(node, MemberState::Removed).await
    }

    async fn set_state(
        &self,
        node: NodeId,
        state: MemberState,
    ) -> Result<ClusterStatus, WireError> {
        let r = self
            .cluster
            .propose(Command::SetMemberState { id: node, state })
            .await
            .map_err(|e| wire(&e))?;
        rejected(&r)?;
        Ok(self.status())
    }

    /// The cluster as this node sees it.
    #[must_use]
    pub fn status(&self) -> ClusterStatus {
        let state = self.cluster.state().borrow().clone();
        let metrics = self.cluster.metrics().borrow().clone();
        let loads = state
            .table
            .as_ref()
            .map(PartitionTable::loads)
            .unwrap_or_default();
        ClusterStatus {
            node: self.me,
            leader: metrics.leader,
            term: metrics.term,
            // The table this node serves with (installed, older ones done with), which
            // can trail the state machine's by a moment.
            epoch: self.routing.epoch(),
            partitions: state.partitions,
            replication: state.replication,
            members: state
                .members
                .iter()
                .map(|(id, m)| MemberStatus {
                    id: *id,
                    addr: m.addr.clone(),
                    state: state_name(m.state).to_owned(),
                    role: if metrics.leader == Some(*id) {
                        "leader"
                    } else if metrics.voters.contains(id) {
                        "voter"
                    } else if metrics.learners.contains(id) {
                        "learner"
                    } else {
                        "none"
                    }
                    .to_owned(),
                    primaries: loads.get(id).map_or(0, |l| l.primaries),
                    backups: loads.get(id).map_or(0, |l| l.backups),
                })
                .collect(),
            moves: self.moves.lock().clone(),
            membership_changing: metrics.joint,
        }
    }

    /// A client connection to a member (this node's certificate as client identity).
    async fn peer(&self, addr: &str) -> Result<Client, ringcache_client::Error> {
        if let Some(c) = self.peers.lock().get(addr) {
            return Ok(c.clone());
        }
        let mut cfg = ClientConfig::new(
            vec![addr.to_owned()],
            self.tls.ca.clone(),
            self.tls.cert.clone(),
            self.tls.key.clone(),
        );
        cfg.cluster_domain.clone_from(&self.tls.cluster_domain);
        cfg.connect_timeout = Duration::from_secs(2);
        cfg.request_timeout = Duration::from_secs(10);
        let c = Client::connect_on(cfg, &self.endpoint).await?;
        self.peers.lock().insert(addr.to_owned(), c.clone());
        Ok(c)
    }

    async fn call(&self, addr: &str, op: Op) -> Result<Response, String> {
        let c = self.peer(addr).await.map_err(|e| e.to_string())?;
        match c.request(op).await {
            Ok(Response::Error(e)) => Err(e.to_string()),
            Ok(r) => Ok(r),
            Err(e) => {
                self.peers.lock().remove(addr);
                Err(e.to_string())
            }
        }
    }

    async fn lead(self: Arc<Self>) {
        let tick = self.tick();
        let mut metrics = self.cluster.metrics();
        let mut busy = false;
        while !self.stopped() {
            // While partitions are moving, chunks follow each other without a pause
            // (`move_concurrency` bounds the copies at once); otherwise once a tick.
            if busy {
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(tick).await;
            }
            let m = metrics.borrow_and_update().clone();
            // A leader acts only while it holds a quorum: one cut off (or paused) past
            // its contact lease may already have been replaced, and must not fence,
            // copy or mark anything on stale knowledge until it hears the news.
            let leased = self
                .cluster
                .contact()
                .is_some_and(|t| t.elapsed() < self.section.fence_after());
            if m.role != Role::Leader || !leased {
                busy = false;
                continue;
            }
            busy = match self.leader_tick(&m).await {
                Ok(more) => more,
                Err(e) => {
                    info!(error = %e, "leader loop");
                    false
                }
            };
        }
    }

    /// The leader loop's and the prober's period.
    fn tick(&self) -> Duration {
        (self.section.heartbeat * 2).max(Duration::from_millis(100))
    }

    /// Probes every other member each tick (on every member, so that a new leader
    /// already knows who went silent before it was elected, and need not wait a whole
    /// `down_after` from its election to act on a dead predecessor).
    async fn probe(self: Arc<Self>) {
        let tick = self.tick();
        let this = &*self;
        while !this.stopped() {
            let round = Instant::now();
            let state = this.cluster.state().borrow().clone();
            let epoch = state.epoch();
            let pings = state
                .members
                .iter()
                .filter(|(id, info)| **id != this.me && info.state != MemberState::Removed)
                .map(|(id, info)| async move {
                    // A member answers with its view; it counts as caught up once it has
                    // applied the current table (a restarted node replays older tables
                    // first, and must not be given partitions before it is past them).
                    let answer = tokio::time::timeout(
                        Duration::from_secs(1),
                        this.call(&info.addr, Op::ClusterStatus),
                    )
                    .await;
                    let (answered, caught_up) = match answer {
                        Ok(Ok(Response::ClusterStatus(s))) => (true, s.epoch >= epoch),
                        Ok(Ok(_)) => (true, false),
                        _ => (false, false),
                    };
                    (*id, answered, caught_up)
                });
            let results = futures::future::join_all(pings).await;
            {
                let mut probes = this.probes.lock();
                probes.retain(|id, _| state.members.contains_key(id));
                for (id, answered, caught_up) in results {
                    let p = probes.entry(id).or_insert(Probe {
                        seen: round,
                        answered,
                        caught_up,
                    });
                    if answered {
                        p.seen = round;
                    }
                    p.answered = answered;
                    p.caught_up = caught_up;
                }
            }
            tokio::time::sleep(tick.saturating_sub(round.elapsed())).await;
        }
    }

    /// Pushes the routing's serving lease forward while this node is in contact with
    /// the cluster (see `routing`'s module docs), and logs when it is fenced or back.
    async fn keep_lease(self: Arc<Self>) {
        let every = (self.section.heartbeat / 2).max(Duration::from_millis(10));
        let fence_after = self.section.fence_after();
        let mut serving = false;
        while !self.stopped() {
            tokio::time::sleep(every).await;
            // The table the contact was proved with must be the one routing serves.
            let installed = self.cluster.state().borrow().epoch() == self.routing.epoch();
            if installed && let Some(at) = self.cluster.contact() {
                self.routing.extend_lease(at + fence_after);
            }
            let now_serving = !self.routing.lease_expired();
            if now_serving != serving && self.routing.epoch().0 > 0 {
                if now_serving {
                    info!("in contact with the cluster: serving partitions");
                } else {
                    warn!(
                        fence_after = ?fence_after,
                        "no contact with the cluster leader: fenced, not serving partitions"
                    );
                }
            }
            serving = now_serving;
        }
    }

    async fn propose(&self, cmd: Command) -> Result<(), String> {
        match self.cluster.propose(cmd).await {
            Ok(CommandResult::Applied) => Ok(()),
            Ok(CommandResult::Rejected(r)) => Err(format!("refused: {r}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One round of the leader's duties; returns whether partitions remain to move.
    async fn leader_tick(&self, m: &ClusterMetrics) -> Result<bool, String> {
        let state = self.cluster.state().borrow().clone();
        if !state.is_initialized() {
            return Ok(false);
        }
        self.liveness(&state, m).await?;
        let state = self.cluster.state().borrow().clone();
        let more = self.place(&state).await?;
        self.retire(&state, m).await?;
        Ok(more)
    }

    async fn liveness(&self, state: &ClusterState, m: &ClusterMetrics) -> Result<(), String> {
        let now = Instant::now();
        let raft_members: BTreeSet<NodeId> = m.voters.union(&m.learners).copied().collect();
        if let Some(info) = state.members.get(&self.me)
            && matches!(info.state, MemberState::Joining | MemberState::Down)
        {
            self.propose(Command::SetMemberState {
                id: self.me,
                state: MemberState::Active,
            })
            .await?;
        }
        let probes = self.probes.lock().clone();
        for (id, info) in &state.members {
            // A member the prober has not tried yet counts as seen now.
            let Some(p) = probes.get(id) else { continue };
            match info.state {
                MemberState::Joining | MemberState::Down
                    if p.answered && p.caught_up && raft_members.contains(id) =>
                {
                    info!(node = %id, "member is up");
                    self.propose(Command::SetMemberState {
                        id: *id,
                        state: MemberState::Active,
                    })
                    .await?;
                }
                MemberState::Active
                    if !p.answered && now.duration_since(p.seen) >= self.section.down_after =>
                {
                    warn!(node = %id, "member unreachable: marking it down");
                    self.propose(Command::SetMemberState {
                        id: *id,
                        state: MemberState::Down,
                    })
                    .await?;
                }
                _ => {}
            }
        }
        // Promote every active learner at once while voters are few: one change from
        // one voter to three, rather than through a two-voter group that any single
        // failure would stall.
        if m.joint {
            return Ok(());
        }
        let mut next = m.voters.clone();
        for id in &m.learners {
            if (next.len() as u32) < self.section.max_voters
                && state
                    .members
                    .get(id)
                    .is_some_and(|i| i.state == MemberState::Active)
            {
                next.insert(*id);
            }
        }
        if next != m.voters {
            info!(voters = ?next, "promoting learners to voters");
            self.cluster
                .change_membership(next)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// Moves the table one step toward the placement over the active members.
    /// Returns whether copies remain after this step (and this step made progress).
    async fn place(&self, state: &ClusterState) -> Result<bool, String> {
        let members: Vec<(NodeId, u32)> = state
            .members
            .iter()
            .filter(|(_, i)| i.state == MemberState::Active)
            .map(|(id, i)| (*id, i.weight))
            .collect();
        if members.is_empty() {
            return Ok(false);
        }
        let lf = self.section.load_factor;
        let Some(current) = &state.table else {
            let table = PartitionTable::compute(
                &members,
                state.partitions,
                state.replication,
                lf,
                Epoch(1),
            )
            .map_err(|e| e.to_string())?;
            info!(members = members.len(), "first partition table");
            return self
                .propose(Command::SetTable { table })
                .await
                .map(|()| false);
        };
        let next_epoch = Epoch(current.epoch().0 + 1);
        let target = current
            .rebalance(&members, state.replication, lf, next_epoch)
            .map_err(|e| e.to_string())?;
        if target.same_placement(current) {
            self.moves.lock().clear();
            return Ok(false);
        }
        let alive = |n: NodeId| {
            state
                .members
                .get(&n)
                .is_some_and(|i| matches!(i.state, MemberState::Active | MemberState::Draining))
        };
        let active = |n: &NodeId| {
            state
                .members
                .get(n)
                .is_some_and(|i| i.state == MemberState::Active)
        };
        let mut copy = Vec::new();
        let mut at_once = BTreeSet::new();
        let mut reshuffle = BTreeSet::new();
        for (p, set) in current.iter() {
            let (from, to) = (set.first().copied(), target.owner(p));
            if target.replicas(p) == set {
                continue;
            }
            match (from, to) {
                (Some(f), Some(t)) if f != t && alive(f) => copy.push((p, f, t)),
                // Only backups change, and every current one is healthy: a reshuffle
                // that can wait until the data moves are done.
                (Some(f), Some(t)) if f == t && set.iter().all(active) => {
                    reshuffle.insert(p);
                }
                _ => {
                    at_once.insert(p);
                }
            }
        }
        if copy.is_empty() {
            at_once.extend(reshuffle);
        }
        *self.moves.lock() = copy
            .iter()
            .map(|(p, f, t)| MoveStatus {
                partition: p.0,
                from: Some(*f),
                to: *t,
                state: "queued".into(),
                entries: 0,
            })
            .collect();
        // One chunk of data moves, then one committed step with them and every change
        // that needs no data (a dead owner's partitions, backups on gone nodes).
        let more = copy.len() > self.section.move_concurrency as usize;
        let chunk: Vec<_> = copy
            .into_iter()
            .take(self.section.move_concurrency as usize)
            .collect();
        let results = futures::future::join_all(
            chunk
                .iter()
                .map(|&(p, from, to)| self.copy_partition(state, p, from, to)),
        )
        .await;
        let mut adopt = at_once;
        let mut moved = Vec::new();
        for ((p, from, _), r) in chunk.iter().zip(results) {
            match r {
                Ok(()) => {
                    adopt.insert(*p);
                    moved.push(p.0);
                }
                Err(e) => {
                    warn!(partition = p.0, error = %e, "partition copy failed; will retry");
                    if let Some(addr) = state.members.get(from).map(|i| i.addr.clone()) {
                        let _ = self
                            .call(&addr, Op::PartitionRelease { partition: p.0 })
                            .await;
                    }
                }
            }
        }
        if adopt.is_empty() {
            return Ok(false);
        }
        let step = current
            .advance(&target, &adopt, next_epoch)
            .map_err(|e| e.to_string())?;
        if let Err(e) = self.propose(Command::SetTable { table: step }).await {
            // Not committed (this node may have lost its leadership): lift the fences
            // of the copied partitions at once rather than leave them to expire.
            for (p, from, _) in &chunk {
                if let Some(addr) = state.members.get(from).map(|i| i.addr.clone()) {
                    let _ = self
                        .call(&addr, Op::PartitionRelease { partition: p.0 })
                        .await;
                }
            }
            return Err(e);
        }
        info!(
            epoch = next_epoch.0,
            changed = adopt.len(),
            moved = ?moved,
            "table step"
        );
        Ok(more && !moved.is_empty())
    }

    fn set_move(&self, p: PartitionId, state: &str, entries: u64) {
        if let Some(m) = self.moves.lock().iter_mut().find(|m| m.partition == p.0) {
            state.clone_into(&mut m.state);
            m.entries = entries;
        }
    }

    /// Fences `p` at `from` and copies its entries to `to`.
    async fn copy_partition(
        &self,
        state: &ClusterState,
        p: PartitionId,
        from: NodeId,
        to: NodeId,
    ) -> Result<(), String> {
        let addr = |n: NodeId| {
            state
                .members
                .get(&n)
                .map(|i| i.addr.clone())
                .ok_or(format!("node {n} has no address"))
        };
        let (src, dst) = (addr(from)?, addr(to)?);
        self.set_move(p, "fencing", 0);
        let for_ms = u64::try_from(FENCE_FOR.as_millis()).unwrap_or(u64::MAX);
        self.call(
            &src,
            Op::PartitionFence {
                partition: p.0,
                for_ms,
            },
        )
        .await?;
        self.set_move(p, "copying", 0);
        let mut after: Option<DumpCursor> = None;
        let mut copied = 0u64;
        loop {
            let page = self
                .call(
                    &src,
                    Op::PartitionDump {
                        partition: p.0,
                        after: after.clone(),
                        limit: COPY_PAGE,
                    },
                )
                .await?;
            let Response::PartitionChunk { entries, next } = page else {
                return Err(format!("unexpected dump answer {page:?}"));
            };
            let first = after.is_none();
            copied += entries.len() as u64;
            if first || !entries.is_empty() {
                self.call(
                    &dst,
                    Op::PartitionLoad {
                        partition: p.0,
                        first,
                        entries,
                    },
                )
                .await?;
            }
            self.set_move(p, "copying", copied);
            match next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
        }
        self.set_move(p, "committing", copied);
        Ok(())
    }

    /// Removes draining and removed members no table names any more.
    async fn retire(&self, state: &ClusterState, m: &ClusterMetrics) -> Result<(), String> {
        let named: BTreeSet<NodeId> = state
            .table
            .as_ref()
            .map(PartitionTable::nodes)
            .unwrap_or_default();
        for (id, info) in &state.members {
            if !matches!(info.state, MemberState::Draining | MemberState::Removed)
                || named.contains(id)
            {
                continue;
            }
            // A voter leaves the Raft group first. That includes this node, the leader,
            // when it drains itself: once the change commits without it, it steps down,
            // the others elect a leader among themselves, and that one removes it from
            // the member list (so leadership is handed over, not lost with the node).
            if m.voters.contains(id) && m.voters.len() == 1 {
                // The last voter stays until a learner is promoted beside it.
                continue;
            }
            if m.voters.contains(id) {
                let mut voters = m.voters.clone();
                voters.remove(id);
                if *id == self.me {
                    info!("leaving the voters: leadership passes to the others");
                } else {
                    info!(node = %id, "removing from the voters");
                }
                self.cluster
                    .change_membership(voters)
                    .await
                    .map_err(|e| e.to_string())?;
                return Ok(());
            }
            info!(node = %id, "member left the cluster");
            return self.propose(Command::RemoveMember { id: *id }).await;
        }
        Ok(())
    }

    /// The members' addresses by id (for tools).
    #[must_use]
    pub fn addresses(&self) -> BTreeMap<NodeId, String> {
        self.routing.view().addrs
    }
}
