//! The partition table: every partition's replica set at one epoch.

use std::collections::{BTreeMap, BTreeSet};

use ringcache_proto::{Epoch, NodeId, PartitionId};
use serde::{Deserialize, Serialize};

use crate::assign::place;
use crate::bounds::load_ppm;
use crate::error::PlacementError;
use crate::key::partition_for;
use crate::{MAX_LOAD_FACTOR, MAX_MEMBERS, MAX_PARTITIONS, MAX_VIRTUAL_NODES};

/// Every partition's replica set (primary first) at one epoch.
///
/// Built by [`PartitionTable::compute`] (a fresh placement) or
/// [`PartitionTable::rebalance`] (the next table after a membership change, moving as
/// little as possible). Deserializing checks the invariants: one non-empty replica set
/// of distinct nodes per partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TableRepr")]
pub struct PartitionTable {
    epoch: Epoch,
    partitions: u32,
    replicas: Vec<Vec<NodeId>>,
}

/// How many partitions a node holds in a table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLoad {
    /// Partitions it is the primary of.
    pub primaries: u32,
    /// Partitions it is a backup of.
    pub backups: u32,
}

impl PartitionTable {
    /// Places `partitions` partitions on `members` from scratch (the cluster's first
    /// table, or a reset).
    ///
    /// `members` are `(id, weight)` pairs in any order; the weight is the number of
    /// virtual nodes ([`DEFAULT_WEIGHT`](crate::DEFAULT_WEIGHT) = 128 is the norm) and
    /// scales the member's share. Each replica set holds `min(replication, members)`
    /// distinct nodes. No member owns more than `ceil(load_factor * its fair share)`
    /// primaries. The result depends only on the set of members and the parameters.
    ///
    /// For a change of membership use [`PartitionTable::rebalance`] on the current
    /// table: `compute` on the new member set does not minimize moves (see the crate
    /// docs for why no history-free placement can).
    ///
    /// # Errors
    /// No members, too many members, a zero weight, a duplicate member, too many virtual
    /// nodes in total,
    /// partitions outside `1..=MAX_PARTITIONS`, replication 0, or a load factor outside
    /// `1.0..=MAX_LOAD_FACTOR`.
    pub fn compute(
        members: &[(NodeId, u32)],
        partitions: u32,
        replication: u32,
        load_factor: f64,
        epoch: Epoch,
    ) -> Result<Self, PlacementError> {
        let members = check_members(members)?;
        check_partitions(partitions)?;
        let ppm = check_params(replication, load_factor)?;
        Ok(Self {
            epoch,
            partitions,
            replicas: place(&members, None, partitions, replication, ppm),
        })
    }

    /// The table that follows this one when the members (or their weights, the
    /// replication or the load factor) change, at `epoch`. The partition count stays.
    ///
    /// Moves as little as possible: a primary on a remaining member stays unless its
    /// member is over its new cap or a new member pulls it; a new member only takes
    /// partitions (so a join moves primaries only to the joining members, about their
    /// fair share); a leaving member's partitions are the only ones that move.
    /// Unchanged inputs give the same replica sets.
    ///
    /// # Errors
    /// As [`PartitionTable::compute`], and [`PlacementError::EpochNotAfter`] if `epoch`
    /// is not after this table's.
    pub fn rebalance(
        &self,
        members: &[(NodeId, u32)],
        replication: u32,
        load_factor: f64,
        epoch: Epoch,
    ) -> Result<Self, PlacementError> {
        if epoch <= self.epoch {
            return Err(PlacementError::EpochNotAfter {
                previous: self.epoch,
                epoch,
            });
        }
        let members = check_members(members)?;
        let ppm = check_params(replication, load_factor)?;
        Ok(Self {
            epoch,
            partitions: self.partitions,
            replicas: place(
                &members,
                Some(&self.replicas),
                self.partitions,
                replication,
                ppm,
            ),
        })
    }

    /// A step from this table toward `target` at `epoch`: the partitions in `adopt`
    /// take their replica sets from `target`, every other keeps its own. Moving
    /// partitions a few at a time (each step committed once their data moved) goes
    /// through such steps; the last step is `target` itself (with its epoch replaced).
    ///
    /// # Errors
    /// [`PlacementError::EpochNotAfter`] if `epoch` is not after this table's;
    /// [`PlacementError::InvalidTable`] if the partition counts differ.
    pub fn advance(
        &self,
        target: &PartitionTable,
        adopt: &BTreeSet<PartitionId>,
        epoch: Epoch,
    ) -> Result<Self, PlacementError> {
        if epoch <= self.epoch {
            return Err(PlacementError::EpochNotAfter {
                previous: self.epoch,
                epoch,
            });
        }
        if target.partitions != self.partitions {
            return Err(PlacementError::InvalidTable {
                reason: format!(
                    "target has {} partitions, this table {}",
                    target.partitions, self.partitions
                ),
            });
        }
        let replicas = self
            .replicas
            .iter()
            .zip(&target.replicas)
            .enumerate()
            .map(|(p, (mine, theirs))| {
                if adopt.contains(&PartitionId(p as u32)) {
                    theirs.clone()
                } else {
                    mine.clone()
                }
            })
            .collect();
        Ok(Self {
            epoch,
            partitions: self.partitions,
            replicas,
        })
    }

    /// Whether both tables place every partition on the same replica set (epochs aside).
    #[must_use]
    pub fn same_placement(&self, other: &PartitionTable) -> bool {
        self.replicas == other.replicas
    }

    /// The table's epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The number of partitions (fixed at cluster creation).
    #[must_use]
    pub fn partitions(&self) -> u32 {
        self.partitions
    }

    /// The primary of `p`, `None` if `p` is out of range.
    #[must_use]
    pub fn owner(&self, p: PartitionId) -> Option<NodeId> {
        self.replicas(p).first().copied()
    }

    /// The replica set of `p`, primary first; empty if `p` is out of range.
    #[must_use]
    pub fn replicas(&self, p: PartitionId) -> &[NodeId] {
        self.replicas.get(p.0 as usize).map_or(&[], Vec::as_slice)
    }

    /// The backups of `p` (its replica set without the primary).
    #[must_use]
    pub fn backups(&self, p: PartitionId) -> &[NodeId] {
        self.replicas(p).get(1..).unwrap_or_default()
    }

    /// Every partition with its replica set, in partition order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (PartitionId, &[NodeId])> + '_ {
        self.replicas
            .iter()
            .enumerate()
            .map(|(p, set)| (PartitionId(p as u32), set.as_slice()))
    }

    /// The partitions `node` is the primary of, in order.
    #[must_use]
    pub fn partitions_of(&self, node: NodeId) -> Vec<PartitionId> {
        self.iter()
            .filter(|(_, set)| set.first() == Some(&node))
            .map(|(p, _)| p)
            .collect()
    }

    /// The partitions `node` is a backup of, in order.
    #[must_use]
    pub fn backups_of(&self, node: NodeId) -> Vec<PartitionId> {
        self.iter()
            .filter(|(_, set)| set.get(1..).is_some_and(|b| b.contains(&node)))
            .map(|(p, _)| p)
            .collect()
    }

    /// Primary and backup counts of every node the table names.
    #[must_use]
    pub fn loads(&self) -> BTreeMap<NodeId, NodeLoad> {
        let mut loads: BTreeMap<NodeId, NodeLoad> = BTreeMap::new();
        for (_, set) in self.iter() {
            for (k, node) in set.iter().enumerate() {
                let l = loads.entry(*node).or_default();
                if k == 0 {
                    l.primaries += 1;
                } else {
                    l.backups += 1;
                }
            }
        }
        loads
    }

    /// Every node the table names.
    #[must_use]
    pub fn nodes(&self) -> BTreeSet<NodeId> {
        self.replicas.iter().flatten().copied().collect()
    }

    /// The partition of `key` in `namespace` ([`partition_for`] with this table's count).
    #[must_use]
    pub fn partition_for(&self, namespace: &str, key: &[u8]) -> PartitionId {
        partition_for(namespace, key, self.partitions)
    }

    /// Where a request for `key` in `namespace` goes: its partition and primary.
    #[must_use]
    pub fn route(&self, namespace: &str, key: &[u8]) -> (PartitionId, NodeId) {
        let p = self.partition_for(namespace, key);
        let owner = self
            .owner(p)
            .expect("partition_for is below the count, and every partition has a primary");
        (p, owner)
    }
}

/// Sorted by id, checked.
fn check_members(members: &[(NodeId, u32)]) -> Result<Vec<(NodeId, u32)>, PlacementError> {
    if members.is_empty() {
        return Err(PlacementError::NoMembers);
    }
    if members.len() > MAX_MEMBERS {
        return Err(PlacementError::TooManyMembers {
            members: members.len(),
            max: MAX_MEMBERS,
        });
    }
    let mut sorted = members.to_vec();
    sorted.sort_unstable();
    let mut total = 0u64;
    for (k, &(node, weight)) in sorted.iter().enumerate() {
        if weight == 0 {
            return Err(PlacementError::ZeroWeight { node });
        }
        if k > 0 && sorted[k - 1].0 == node {
            return Err(PlacementError::DuplicateMember { node });
        }
        total += u64::from(weight);
    }
    if total > MAX_VIRTUAL_NODES {
        return Err(PlacementError::TooManyVirtualNodes {
            total,
            max: MAX_VIRTUAL_NODES,
        });
    }
    Ok(sorted)
}

fn check_partitions(partitions: u32) -> Result<(), PlacementError> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(PlacementError::InvalidPartitions {
            partitions,
            max: MAX_PARTITIONS,
        });
    }
    Ok(())
}

/// Returns the load factor in parts per million.
fn check_params(replication: u32, load_factor: f64) -> Result<u64, PlacementError> {
    if replication == 0 {
        return Err(PlacementError::InvalidReplication { replication });
    }
    if !(1.0..=MAX_LOAD_FACTOR).contains(&load_factor) {
        return Err(PlacementError::InvalidLoadFactor {
            load_factor,
            max: MAX_LOAD_FACTOR,
        });
    }
    Ok(load_ppm(load_factor))
}

/// The serialized form, checked on the way in.
#[derive(Deserialize)]
struct TableRepr {
    epoch: Epoch,
    partitions: u32,
    replicas: Vec<Vec<NodeId>>,
}

impl TryFrom<TableRepr> for PartitionTable {
    type Error = PlacementError;

    fn try_from(t: TableRepr) -> Result<Self, PlacementError> {
        check_partitions(t.partitions)?;
        if t.replicas.len() != t.partitions as usize {
            return Err(PlacementError::InvalidTable {
                reason: format!(
                    "{} replica sets for {} partitions",
                    t.replicas.len(),
                    t.partitions
                ),
            });
        }
        for (p, set) in t.replicas.iter().enumerate() {
            if set.is_empty() {
                return Err(PlacementError::InvalidTable {
                    reason: format!("partition {p} has no replicas"),
                });
            }
            if set.iter().enumerate().any(|(k, n)| set[..k].contains(n)) {
                return Err(PlacementError::InvalidTable {
                    reason: format!("partition {p} names a node twice"),
                });
            }
        }
        Ok(Self {
            epoch: t.epoch,
            partitions: t.partitions,
            replicas: t.replicas,
        })
    }
}
