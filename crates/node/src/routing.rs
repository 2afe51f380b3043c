//! Who serves which partition, as this node sees it: the committed partition table,
//! the members' addresses, and the partitions fenced for a move.
//!
//! Every data request checks its partition here before touching the engine:
//! - not the owner at the current epoch: `not_owner` with the owner and the epoch;
//! - a request routed with a newer table than this node's (it is catching up):
//!   `unavailable`, retry shortly;
//! - a request routed with an older table (its epoch is set and below ours):
//!   `stale_epoch`, so the client refreshes before it acts on old routing;
//! - fenced (its data is being copied to its next owner): `unavailable` with a short
//!   retry hint; the client retries and finds the new owner once the table commits;
//! - no table yet (a cluster still forming): `unavailable`;
//! - no recent contact with the cluster (the lease, below): `unavailable`.
//!
//! # The contact lease
//! A member serves only until `lease_until`, which the control plane pushes forward
//! each time the member proves contact with a leader in contact with a quorum, with its
//! table caught up (`ringcache_cluster::Cluster::contact` plus `cluster.fence_after`). A
//! member cut off from the cluster, or paused and resumed, finds its lease run out at
//! its next request, before any task has had a chance to run: the check reads the clock
//! itself rather than a flag some task would have to clear.
//!
//! A request counts itself in its partition's in-flight counter from the check until it
//! is answered. A fence first marks the partition, then waits for that counter to drain,
//! so once a fence returns no request can still change the partition: the copy that
//! follows sees every acknowledged write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::RwLock;
use ringcache_placement::PartitionTable;
use ringcache_proto::{
    ClusterInfo, Epoch, ErrorCode, Hints, Member, NodeId, PartitionId, WireError,
};

/// The view a standalone node or a cluster member serves with.
#[derive(Debug, Clone)]
pub struct View {
    /// The committed table (`None`: none yet).
    pub table: Option<Arc<PartitionTable>>,
    /// Every member's client address.
    pub addrs: BTreeMap<NodeId, String>,
}

#[derive(Debug)]
struct Fence {
    fenced: AtomicBool,
    until: parking_lot::Mutex<Option<Instant>>,
    inflight: AtomicU64,
}

/// Ownership, fences and in-flight counts.
#[derive(Debug)]
pub struct Routing {
    me: NodeId,
    partitions: u32,
    /// `false`: standalone, this node owns everything.
    clustered: bool,
    view: RwLock<View>,
    fences: Box<[Fence]>,
    /// The clock `lease_until` counts from.
    base: Instant,
    /// Nanoseconds after `base` until which this member may serve (clustered only).
    lease_until: AtomicU64,
    /// Bumped by every [`Routing::set_view`], so a [`TableMemo`] knows when to re-read.
    generation: AtomicU64,
}

/// One request stream's copy of the table it routes with, re-read only when the view
/// changes: a request then checks its partition without taking the view's lock, whose
/// counter every request on every thread would otherwise write.
#[derive(Debug, Default)]
pub struct TableMemo {
    /// The [`Routing`] generation `table` was read at (`None`: never read).
    generation: Option<u64>,
    table: Option<Arc<PartitionTable>>,
    /// Per partition, whether `table` makes this node its owner: one byte to read per
    /// request instead of the table's replica list (an allocation of its own).
    mine: Vec<bool>,
}

/// Counts a request in its partition until dropped.
#[derive(Debug)]
pub struct InFlight {
    routing: Arc<Routing>,
    p: usize,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.routing.leave(self.p);
    }
}

/// As [`InFlight`], borrowing the routing: for a request answered before its caller
/// returns, without a reference count on the routing shared by every request.
#[derive(Debug)]
pub struct Scoped<'a> {
    routing: &'a Routing,
    p: usize,
}

impl Drop for Scoped<'_> {
    fn drop(&mut self) {
        self.routing.leave(self.p);
    }
}

impl Routing {
    /// A standalone node's routing: it owns every partition at epoch 1.
    #[must_use]
    pub fn standalone(me: NodeId, addr: String, partitions: u32) -> Self {
        let table = PartitionTable::compute(&[(me, 1)], partitions, 1, 1.0, Epoch(1)).ok();
        Self::new(
            me,
            partitions,
            false,
            View {
                table: table.map(Arc::new),
                addrs: BTreeMap::from([(me, addr)]),
            },
        )
    }

    /// A cluster member's routing, with no table until [`Routing::set_view`].
    #[must_use]
    pub fn clustered(me: NodeId, partitions: u32) -> Self {
        Self::new(
            me,
            partitions,
            true,
            View {
                table: None,
                addrs: BTreeMap::new(),
            },
        )
    }

    fn new(me: NodeId, partitions: u32, clustered: bool, view: View) -> Self {
        Self {
            me,
            partitions,
            clustered,
            view: RwLock::new(view),
            base: Instant::now(),
            lease_until: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            fences: (0..partitions)
                .map(|_| Fence {
                    fenced: AtomicBool::new(false),
                    until: parking_lot::Mutex::new(None),
                    inflight: AtomicU64::new(0),
                })
                .collect(),
        }
    }

    /// Whether this node is part of a cluster.
    #[must_use]
    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    /// This node.
    #[must_use]
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Whether this node owns `p` in its current table.
    #[must_use]
    pub fn owns(&self, p: u32) -> bool {
        self.view
            .read()
            .table
            .as_ref()
            .and_then(|t| t.owner(PartitionId(p)))
            == Some(self.me)
    }

    /// Lets this member serve until `until` (never moves the lease back).
    pub fn extend_lease(&self, until: Instant) {
        let nanos = u64::try_from(until.saturating_duration_since(self.base).as_nanos())
            .unwrap_or(u64::MAX);
        self.lease_until.fetch_max(nanos, Ordering::SeqCst);
    }

    /// Whether the lease has run out (see the module docs).
    #[must_use]
    pub fn lease_expired(&self) -> bool {
        let now = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        now >= self.lease_until.load(Ordering::SeqCst)
    }

    /// The current view.
    #[must_use]
    pub fn view(&self) -> View {
        self.view.read().clone()
    }

    /// The current table's epoch (`0`: none).
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.view
            .read()
            .table
            .as_ref()
            .map_or(Epoch(0), |t| t.epoch())
    }

    /// Installs a newer view; returns the previous table.
    pub fn set_view(&self, view: View) -> Option<Arc<PartitionTable>> {
        let mut current = self.view.write();
        let old = current.table.clone();
        *current = view;
        // Inside the lock, so the generation never runs behind the view it stands for.
        self.generation.fetch_add(1, Ordering::SeqCst);
        old
    }

    /// Checks that this node serves `p` for a request routed at `epoch`, and counts the
    /// request in until the returned guard drops.
    ///
    /// # Errors
    /// `not_owner`, `stale_epoch` or `unavailable`, with hints.
    pub fn admit(
        self: &Arc<Self>,
        p: PartitionId,
        epoch: Epoch,
    ) -> Result<Option<InFlight>, WireError> {
        if !self.clustered {
            return Ok(None);
        }
        let scoped = self.enter(p)?;
        self.check_owner(p, epoch, self.view.read().table.as_deref())?;
        // The count moves to the owned guard; `scoped` must not take it back.
        std::mem::forget(scoped);
        Ok(Some(InFlight {
            routing: Arc::clone(self),
            p: p.0 as usize,
        }))
    }

    /// As [`Routing::admit`] for a request answered before the caller returns, checking
    /// against the stream's `memo` of the table (re-read when the view has changed).
    ///
    /// # Errors
    /// As [`Routing::admit`].
    pub fn admit_scoped(
        &self,
        p: PartitionId,
        epoch: Epoch,
        memo: &mut TableMemo,
    ) -> Result<Option<Scoped<'_>>, WireError> {
        if !self.clustered {
            return Ok(None);
        }
        let scoped = self.enter(p)?;
        // Read after the fence check in `enter` (both sequentially consistent), as
        // `admit` reads the view after it: a request that finds a move's fence lifted
        // also finds the table that move installed.
        let generation = self.generation.load(Ordering::SeqCst);
        if memo.generation != Some(generation) {
            memo.table = self.view.read().table.clone();
            memo.generation = Some(generation);
            memo.mine = memo.table.as_ref().map_or_else(Vec::new, |t| {
                (0..t.partitions())
                    .map(|q| t.owner(PartitionId(q)) == Some(self.me))
                    .collect()
            });
        }
        // The common case, decided as `check_owner` decides it; anything else (and
        // every refusal, with its hints) goes through `check_owner`.
        if let Some(table) = &memo.table
            && memo.mine.get(p.0 as usize) == Some(&true)
            && (epoch.0 == 0 || epoch == table.epoch())
        {
            return Ok(Some(scoped));
        }
        self.check_owner(p, epoch, memo.table.as_deref())?;
        Ok(Some(scoped))
    }

    fn leave(&self, p: usize) {
        self.fences[p].inflight.fetch_sub(1, Ordering::SeqCst);
    }

    /// Counts a request in `p`, then checks the lease and the partition's fence; the
    /// count is taken back if either refuses.
    fn enter(&self, p: PartitionId) -> Result<Scoped<'_>, WireError> {
        let i = p.0 as usize;
        let fence = &self.fences[i];
        fence.inflight.fetch_add(1, Ordering::SeqCst);
        let guard = Scoped {
            routing: self,
            p: i,
        };
        if self.lease_expired() {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "node {} has lost contact with the cluster; it serves again once it is \
                     back in touch with the leader",
                    self.me.0
                ),
            )
            .with_hints(Hints {
                retry_after_ms: Some(200),
                ..Hints::default()
            }));
        }
        if fence.fenced.load(Ordering::SeqCst) && !self.fence_expired(i) {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!("partition {} is moving to another node; retry shortly", p.0),
            )
            .with_hints(Hints {
                retry_after_ms: Some(20),
                ..Hints::default()
            }));
        }
        Ok(guard)
    }

    /// Whether `table` makes this node the owner of `p` for a request routed at `epoch`.
    fn check_owner(
        &self,
        p: PartitionId,
        epoch: Epoch,
        table: Option<&PartitionTable>,
    ) -> Result<(), WireError> {
        let Some(table) = table else {
            return Err(WireError::new(
                ErrorCode::Unavailable,
                "the cluster has no partition table yet",
            )
            .with_hints(Hints {
                retry_after_ms: Some(200),
                ..Hints::default()
            }));
        };
        let current = table.epoch();
        if epoch > current {
            // This node is behind the client (still catching up with the cluster): it
            // must not serve on a table the cluster has moved past.
            return Err(WireError::new(
                ErrorCode::Unavailable,
                format!(
                    "this node's table is at epoch {}, the request's at {}; it is catching up",
                    current.0, epoch.0
                ),
            )
            .with_hints(Hints {
                retry_after_ms: Some(50),
                ..Hints::default()
            }));
        }
        if epoch.0 != 0 && epoch < current {
            return Err(WireError::new(
                ErrorCode::StaleEpoch,
                format!(
                    "routed with epoch {}, the table is at {}",
                    epoch.0, current.0
                ),
            )
            .with_hints(Hints {
                epoch: Some(current),
                ..Hints::default()
            }));
        }
        match table.owner(p) {
            Some(owner) if owner == self.me => Ok(()),
            owner => Err(WireError::new(
                ErrorCode::NotOwner,
                format!(
                    "partition {} belongs to node {} at epoch {}",
                    p.0,
                    owner.map_or_else(|| "?".to_owned(), |o| o.0.to_string()),
                    current.0
                ),
            )
            .with_hints(Hints {
                owner,
                epoch: Some(current),
                ..Hints::default()
            })),
        }
    }

    fn fence_expired(&self, i: usize) -> bool {
        let mut until = self.fences[i].until.lock();
        match *until {
            Some(t) if Instant::now() >= t => {
                *until = None;
                self.fences[i].fenced.store(false, Ordering::SeqCst);
                tracing::warn!(
                    partition = i,
                    "a partition fence expired without a release; serving again"
                );
                true
            }
            _ => false,
        }
    }

    /// Fences `p` for at most `for_` and waits (at most `for_`) until every request
    /// admitted before is answered.
    ///
    /// # Errors
    /// `timeout` if requests did not drain in time (the fence is lifted again).
    pub async fn fence(&self, p: u32, for_: Duration) -> Result<(), WireError> {
        let Some(fence) = self.fences.get(p as usize) else {
            return Err(WireError::new(
                ErrorCode::Malformed,
                format!("no partition {p}"),
            ));
        };
        let deadline = Instant::now() + for_;
        *fence.until.lock() = Some(deadline);
        fence.fenced.store(true, Ordering::SeqCst);
        while fence.inflight.load(Ordering::SeqCst) > 0 {
            if Instant::now() >= deadline {
                self.release(p);
                return Err(WireError::new(
                    ErrorCode::Timeout,
                    format!("requests on partition {p} did not finish in time"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok(())
    }

    /// Lifts the fence of `p`.
    pub fn release(&self, p: u32) {
        if let Some(fence) = self.fences.get(p as usize) {
            *fence.until.lock() = None;
            fence.fenced.store(false, Ordering::SeqCst);
        }
    }

    /// The table and members as clients fetch them.
    #[must_use]
    pub fn cluster_info(&self) -> ClusterInfo {
        let view = self.view.read();
        let members = view
            .addrs
            .iter()
            .map(|(id, addr)| Member {
                id: *id,
                addr: addr.clone(),
            })
            .collect();
        match &view.table {
            Some(t) => ClusterInfo {
                epoch: t.epoch(),
                partitions: t.partitions(),
                members,
                owners: t
                    .iter()
                    .map(|(_, set)| set.first().copied().unwrap_or(NodeId(0)))
                    .collect(),
                replicas: t.iter().map(|(_, set)| set.to_vec()).collect(),
            },
            None => ClusterInfo {
                epoch: Epoch(0),
                partitions: self.partitions,
                members,
                owners: Vec::new(),
                replicas: Vec::new(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_owned_by(owner: NodeId, epoch: u64) -> View {
        let table =
            PartitionTable::compute(&[(owner, 1)], 4, 1, 1.0, Epoch(epoch)).expect("a valid table");
        View {
            table: Some(Arc::new(table)),
            addrs: BTreeMap::new(),
        }
    }

    /// A stream's memo of the table is re-read once the view changes: a partition
    /// handed to another node is refused on the next request, and fences and the
    /// in-flight count apply as through `admit`.
    #[test]
    fn a_table_memo_follows_the_view() {
        let me = NodeId(1);
        let routing = Routing::clustered(me, 4);
        routing.extend_lease(Instant::now() + Duration::from_secs(60));
        let mut memo = TableMemo::default();
        let p = PartitionId(2);
        let unavailable = routing
            .admit_scoped(p, Epoch(0), &mut memo)
            .expect_err("no table yet");
        assert_eq!(unavailable.code, ErrorCode::Unavailable);

        routing.set_view(view_owned_by(me, 1));
        {
            let guard = routing.admit_scoped(p, Epoch(1), &mut memo).expect("owner");
            assert!(guard.is_some());
            assert_eq!(routing.fences[2].inflight.load(Ordering::SeqCst), 1);
        }
        assert_eq!(routing.fences[2].inflight.load(Ordering::SeqCst), 0);

        routing.set_view(view_owned_by(NodeId(2), 2));
        let moved = routing
            .admit_scoped(p, Epoch(0), &mut memo)
            .expect_err("the partition moved");
        assert_eq!(moved.code, ErrorCode::NotOwner);
        assert_eq!(moved.hints.owner, Some(NodeId(2)));
        let stale = routing
            .admit_scoped(p, Epoch(1), &mut memo)
            .expect_err("routed with the old table");
        assert_eq!(stale.code, ErrorCode::StaleEpoch);
        let ahead = routing
            .admit_scoped(p, Epoch(3), &mut memo)
            .expect_err("routed with a table this node does not have yet");
        assert_eq!(ahead.code, ErrorCode::Unavailable);

        // Back to this node: served at the current epoch or none, refused at an old one
        // even though the partition is ours again.
        routing.set_view(view_owned_by(me, 3));
        assert!(routing.admit_scoped(p, Epoch(3), &mut memo).is_ok());
        assert!(routing.admit_scoped(p, Epoch(0), &mut memo).is_ok());
        let stale = routing
            .admit_scoped(p, Epoch(1), &mut memo)
            .expect_err("routed with an old table");
        assert_eq!(stale.code, ErrorCode::StaleEpoch);
        assert_eq!(routing.fences[2].inflight.load(Ordering::SeqCst), 0);
    }
}
