//! Move planning: what data has to travel to go from one table to the next.

use ringcache_proto::{NodeId, PartitionId};
use serde::{Deserialize, Serialize};

use crate::error::PlacementError;
use crate::table::PartitionTable;

/// A replica's role in a partition's replica set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    /// Serves reads and writes; first in the replica set.
    Primary,
    /// Holds a copy; takes over if the primary fails.
    Backup,
}

/// One node taking on one partition in a new role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Move {
    /// The partition.
    pub partition: PartitionId,
    /// Where to copy it from: the old primary if the new table still names it, else the
    /// first old backup the new table names (which may be `to` itself: a backup promoted
    /// in place), `None` when no old replica remains (the partition starts empty).
    pub from: Option<NodeId>,
    /// The node taking it on.
    pub to: NodeId,
    /// Its role there.
    pub role: Role,
}

/// The moves from `old` to `new`, sorted by partition, then role (primary first), then
/// target node.
///
/// For each partition:
/// - if the primary changed: one [`Role::Primary`] move to the new primary (even if it
///   already held a backup copy: its cutover to primary still has to be coordinated);
/// - for each new backup that held no replica of the partition in `old`: one
///   [`Role::Backup`] move.
///
/// A node that keeps a copy in another role (an old primary becoming a backup) or loses
/// its copy is not a move: it already has the data, or drops it after the cutover.
/// `from` is the old primary if it is still named in `new` (a node `new` does not name
/// has left), else the first old backup `new` names, else `None` (no copy survives).
/// The caller MUST treat `from == Some(to)` as "already has the data".
///
/// # Errors
/// [`PlacementError::PartitionCountMismatch`] if the tables have different partition
/// counts (keys would map to different partitions, which no move describes).
pub fn plan_moves(old: &PartitionTable, new: &PartitionTable) -> Result<Vec<Move>, PlacementError> {
    if old.partitions() != new.partitions() {
        return Err(PlacementError::PartitionCountMismatch {
            old: old.partitions(),
            new: new.partitions(),
        });
    }
    let alive = new.nodes();
    let mut moves = Vec::new();
    for ((partition, before), (_, after)) in old.iter().zip(new.iter()) {
        if before == after {
            continue;
        }
        let from = before.iter().copied().find(|n| alive.contains(n));
        if before.first() != after.first()
            && let Some(&to) = after.first()
        {
            moves.push(Move {
                partition,
                from,
                to,
                role: Role::Primary,
            });
        }
        for &to in after.iter().skip(1) {
            if !before.contains(&to) {
                moves.push(Move {
                    partition,
                    from,
                    to,
                    role: Role::Backup,
                });
            }
        }
    }
    moves.sort_unstable_by_key(|m| (m.partition, m.role, m.to));
    Ok(moves)
}
