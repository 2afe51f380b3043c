//! What can go wrong when computing or loading a partition table.

use ringcache_proto::{Epoch, NodeId};

/// An input placement refuses. Every variant names the offending value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlacementError {
    /// The member list is empty: there is nowhere to put partitions.
    #[error("no members to place partitions on")]
    NoMembers,
    /// A member has weight 0 (no virtual nodes, so it could never own anything).
    #[error("member {node} has weight 0; a member needs at least one virtual node")]
    ZeroWeight {
        /// The member.
        node: NodeId,
    },
    /// The same node id appears twice in the member list.
    #[error("member {node} is listed more than once")]
    DuplicateMember {
        /// The member.
        node: NodeId,
    },
    /// More members than [`MAX_MEMBERS`](crate::MAX_MEMBERS).
    #[error("{members} members exceed the maximum of {max}")]
    TooManyMembers {
        /// The number of members given.
        members: usize,
        /// [`MAX_MEMBERS`](crate::MAX_MEMBERS).
        max: usize,
    },
    /// The weights add up to more virtual nodes than the ring accepts.
    #[error("the members' weights add up to {total} virtual nodes, more than the maximum {max}")]
    TooManyVirtualNodes {
        /// The sum of the weights.
        total: u64,
        /// [`MAX_VIRTUAL_NODES`](crate::MAX_VIRTUAL_NODES).
        max: u64,
    },
    /// The partition count is 0 or above [`MAX_PARTITIONS`](crate::MAX_PARTITIONS).
    #[error("partition count must be between 1 and {max}, got {partitions}")]
    InvalidPartitions {
        /// The count given.
        partitions: u32,
        /// [`MAX_PARTITIONS`](crate::MAX_PARTITIONS).
        max: u32,
    },
    /// The replication factor is 0 (a partition needs at least its primary).
    #[error("replication factor must be at least 1, got {replication}")]
    InvalidReplication {
        /// The factor given.
        replication: u32,
    },
    /// The load factor is not a finite number between 1.0 and
    /// [`MAX_LOAD_FACTOR`](crate::MAX_LOAD_FACTOR).
    #[error("load factor must be a finite number between 1.0 and {max}, got {load_factor}")]
    InvalidLoadFactor {
        /// The factor given.
        load_factor: f64,
        /// [`MAX_LOAD_FACTOR`](crate::MAX_LOAD_FACTOR).
        max: f64,
    },
    /// A rebalanced table must have a later epoch than the table it replaces.
    #[error("new epoch {epoch} is not after the previous table's epoch {previous}")]
    EpochNotAfter {
        /// The previous table's epoch.
        previous: Epoch,
        /// The epoch asked for.
        epoch: Epoch,
    },
    /// Two tables with different partition counts cannot be compared: keys hash to
    /// different partitions, so no per-partition move describes the change.
    #[error("partition counts differ: {old} in the old table, {new} in the new one")]
    PartitionCountMismatch {
        /// The old table's count.
        old: u32,
        /// The new table's count.
        new: u32,
    },
    /// A deserialized table breaks an invariant (wrong number of replica sets, an empty
    /// or repeating replica set).
    #[error("invalid partition table: {reason}")]
    InvalidTable {
        /// What is wrong.
        reason: String,
    },
}
