//! The replicated cluster map and the commands that change it.
//!
//! [`ClusterState::apply`] is the whole state machine: a pure function of the state and
//! the command (no clock, no randomness, no I/O, ordered maps only), so every replica that
//! applies the same log reaches the same state. A command that would break an invariant
//! is not applied and answers [`CommandResult::Rejected`]; nothing here panics on input.

use std::collections::BTreeMap;

use ringcache_placement::{MAX_MEMBERS, MAX_PARTITIONS, PartitionTable};
use ringcache_proto::{Epoch, NodeId, valid_namespace};
use serde::{Deserialize, Serialize};

/// Longest member address accepted (bytes).
pub const MAX_ADDR_LEN: usize = 256;
/// Largest namespace configuration accepted (bytes of TOML text).
pub const MAX_NAMESPACE_CONFIG_LEN: usize = 64 << 10;
/// Most namespaces the cluster map holds.
pub const MAX_NAMESPACES: usize = 4096;
/// Largest replication factor accepted by [`Command::Init`].
pub const MAX_REPLICATION: u32 = 16;

/// A member's lifecycle state. The control plane records it; what each state means for
/// placement and routing is the node's business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum MemberState {
    /// Registered, not yet serving (catching up, waiting for partitions).
    Joining,
    /// Serving its partitions.
    Active,
    /// Handing its partitions away before leaving.
    Draining,
    /// Believed failed.
    Down,
    /// Gone for good (kept as a tombstone until [`Command::RemoveMember`]).
    Removed,
}

/// One member of the cluster map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// Its QUIC address, `host:port`.
    pub addr: String,
    /// Its lifecycle state.
    pub state: MemberState,
    /// Its placement weight (virtual nodes), at least 1.
    pub weight: u32,
}

/// The cluster map every node holds a replica of.
///
/// It holds no cache data: members, namespace configurations and the partition table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Members by id.
    pub members: BTreeMap<NodeId, MemberInfo>,
    /// Namespace name -> its configuration as TOML text. Opaque here: the node parses
    /// and validates it before proposing.
    pub namespaces: BTreeMap<String, String>,
    /// The current partition table (its epoch is [`ClusterState::epoch`]), `None` until
    /// the first [`Command::SetTable`].
    pub table: Option<PartitionTable>,
    /// Partitions, fixed by [`Command::Init`]; 0 before it.
    pub partitions: u32,
    /// Replication factor set by [`Command::Init`]; 0 before it.
    pub replication: u32,
}

/// A change to the cluster map: the data of a Raft log entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Sets the partition count and replication factor, once. Repeating it with the same
    /// values is accepted (a retried bootstrap); other values are rejected.
    Init {
        /// Partitions (`1..=MAX_PARTITIONS`), fixed for the cluster's life.
        partitions: u32,
        /// Replicas per partition (`1..=MAX_REPLICATION`).
        replication: u32,
    },
    /// Adds a member as [`MemberState::Joining`], or updates an existing member's address
    /// and weight (keeping its state; a [`MemberState::Removed`] member comes back as
    /// `Joining`).
    UpsertMember {
        /// The member.
        id: NodeId,
        /// Its address (at most [`MAX_ADDR_LEN`] bytes, not empty).
        addr: String,
        /// Its weight (at least 1).
        weight: u32,
    },
    /// Moves a member to another state. Leaving [`MemberState::Removed`] takes an
    /// [`Command::UpsertMember`].
    SetMemberState {
        /// The member.
        id: NodeId,
        /// The new state.
        state: MemberState,
    },
    /// Deletes a member's record. Refused while the current table places partitions on it.
    RemoveMember {
        /// The member.
        id: NodeId,
    },
    /// Creates or replaces a namespace's configuration.
    PutNamespace {
        /// A valid namespace name ([`ringcache_proto::valid_namespace`]).
        name: String,
        /// TOML text (at most [`MAX_NAMESPACE_CONFIG_LEN`] bytes).
        config: String,
    },
    /// Deletes a namespace.
    DeleteNamespace {
        /// The namespace.
        name: String,
    },
    /// Installs a new partition table. Refused unless its epoch is greater than the
    /// current one, its partition count is the cluster's, and every node it names is a
    /// member that is not removed.
    SetTable {
        /// The new table.
        table: PartitionTable,
    },
}

/// What applying a log entry did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    /// The entry was applied (also the answer for Raft's own blank and membership
    /// entries).
    Applied,
    /// The command was valid Raft input but broke a rule of the cluster map; nothing
    /// changed.
    Rejected(Rejection),
}

impl CommandResult {
    /// Whether the command changed (or confirmed) the state.
    #[must_use]
    pub fn is_applied(&self) -> bool {
        matches!(self, CommandResult::Applied)
    }
}

/// Why a command was not applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// [`Command::Init`] again with other values.
    #[error("already initialized with {partitions} partitions and replication {replication}")]
    AlreadyInitialized {
        /// The partition count in force.
        partitions: u32,
        /// The replication factor in force.
        replication: u32,
    },
    /// The command needs [`Command::Init`] first.
    #[error("the cluster map is not initialized")]
    NotInitialized,
    /// A parameter is out of range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The parameter.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No member has this id.
    #[error("{id} is not a member")]
    UnknownMember {
        /// The id.
        id: NodeId,
    },
    /// The member is removed; only [`Command::UpsertMember`] brings it back.
    #[error("{id} is removed")]
    MemberRemoved {
        /// The id.
        id: NodeId,
    },
    /// The current table still places partitions on the member.
    #[error("{id} still holds partitions in the table at {epoch}")]
    MemberInTable {
        /// The member.
        id: NodeId,
        /// The current table's epoch.
        epoch: Epoch,
    },
    /// No namespace has this name.
    #[error("no namespace {name:?}")]
    UnknownNamespace {
        /// The name.
        name: String,
    },
    /// The table's epoch is not after the current one.
    #[error("table epoch {proposed} is not after the current epoch {current}")]
    StaleEpoch {
        /// The current epoch.
        current: Epoch,
        /// The proposed table's epoch.
        proposed: Epoch,
    },
    /// The table has another partition count than the cluster.
    #[error("table has {got} partitions, the cluster has {expected}")]
    PartitionCountMismatch {
        /// The cluster's count.
        expected: u32,
        /// The table's count.
        got: u32,
    },
}

fn invalid(what: &str, reason: impl Into<String>) -> CommandResult {
    CommandResult::Rejected(Rejection::Invalid {
        what: what.to_owned(),
        reason: reason.into(),
    })
}

fn rejected(r: Rejection) -> CommandResult {
    CommandResult::Rejected(r)
}

impl ClusterState {
    /// The current table's epoch, `Epoch(0)` before the first table.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.table.as_ref().map_or(Epoch(0), PartitionTable::epoch)
    }

    /// Whether [`Command::Init`] has been applied.
    #[must_use]
    pub fn is_initialized(&self) -> bool {
        self.partitions != 0
    }

    /// Applies `cmd` and says what happened. Deterministic: the result and the new state
    /// depend only on `self` and `cmd`. A rejected command leaves the state unchanged.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        match cmd {
            Command::Init {
                partitions,
                replication,
            } => self.init(*partitions, *replication),
            Command::UpsertMember { id, addr, weight } => self.upsert_member(*id, addr, *weight),
            Command::SetMemberState { id, state } => match self.members.get_mut(id) {
                None => rejected(Rejection::UnknownMember { id: *id }),
                Some(m) if m.state == MemberState::Removed && *state != MemberState::Removed => {
                    rejected(Rejection::MemberRemoved { id: *id })
                }
                Some(m) => {
                    m.state = *state;
                    CommandResult::Applied
                }
            },
            Command::RemoveMember { id } => {
                if !self.members.contains_key(id) {
                    return rejected(Rejection::UnknownMember { id: *id });
                }
                if let Some(table) = &self.table
                    && table.nodes().contains(id)
                {
                    return rejected(Rejection::MemberInTable {
                        id: *id,
                        epoch: table.epoch(),
                    });
                }
                self.members.remove(id);
                CommandResult::Applied
            }
            Command::PutNamespace { name, config } => {
                if !valid_namespace(name) {
                    return invalid(
                        "namespace name",
                        "1 to 64 bytes of ASCII letters, digits, '_', '-' and '.'",
                    );
                }
                if config.len() > MAX_NAMESPACE_CONFIG_LEN {
                    return invalid(
                        "namespace config",
                        format!("{} bytes, at most {MAX_NAMESPACE_CONFIG_LEN}", config.len()),
                    );
                }
                if !self.namespaces.contains_key(name) && self.namespaces.len() >= MAX_NAMESPACES {
                    return invalid("namespace", format!("at most {MAX_NAMESPACES} namespaces"));
                }
                self.namespaces.insert(name.clone(), config.clone());
                CommandResult::Applied
            }
            Command::DeleteNamespace { name } => match self.namespaces.remove(name) {
                Some(_) => CommandResult::Applied,
                None => rejected(Rejection::UnknownNamespace { name: name.clone() }),
            },
            Command::SetTable { table } => self.set_table(table),
        }
    }

    fn init(&mut self, partitions: u32, replication: u32) -> CommandResult {
        if self.is_initialized() {
            if (self.partitions, self.replication) == (partitions, replication) {
                return CommandResult::Applied;
            }
            return rejected(Rejection::AlreadyInitialized {
                partitions: self.partitions,
                replication: self.replication,
            });
        }
        if partitions == 0 || partitions > MAX_PARTITIONS {
            return invalid(
                "partitions",
                format!("{partitions}, expected 1 to {MAX_PARTITIONS}"),
            );
        }
        if replication == 0 || replication > MAX_REPLICATION {
            return invalid(
                "replication",
                format!("{replication}, expected 1 to {MAX_REPLICATION}"),
            );
        }
        self.partitions = partitions;
        self.replication = replication;
        CommandResult::Applied
    }

    fn upsert_member(&mut self, id: NodeId, addr: &str, weight: u32) -> CommandResult {
        if addr.is_empty() || addr.len() > MAX_ADDR_LEN {
            return invalid("address", format!("1 to {MAX_ADDR_LEN} bytes"));
        }
        if weight == 0 {
            return invalid("weight", "must be at least 1");
        }
        match self.members.get_mut(&id) {
            Some(m) => {
                m.addr = addr.to_owned();
                m.weight = weight;
                if m.state == MemberState::Removed {
                    m.state = MemberState::Joining;
                }
            }
            None => {
                if self.members.len() >= MAX_MEMBERS {
                    return invalid("member", format!("at most {MAX_MEMBERS} members"));
                }
                self.members.insert(
                    id,
                    MemberInfo {
                        addr: addr.to_owned(),
                        state: MemberState::Joining,
                        weight,
                    },
                );
            }
        }
        CommandResult::Applied
    }

    fn set_table(&mut self, table: &PartitionTable) -> CommandResult {
        if !self.is_initialized() {
            return rejected(Rejection::NotInitialized);
        }
        if table.partitions() != self.partitions {
            return rejected(Rejection::PartitionCountMismatch {
                expected: self.partitions,
                got: table.partitions(),
            });
        }
        let current = self.epoch();
        if table.epoch() <= current {
            return rejected(Rejection::StaleEpoch {
                current,
                proposed: table.epoch(),
            });
        }
        for node in table.nodes() {
            match self.members.get(&node) {
                None => return rejected(Rejection::UnknownMember { id: node }),
                Some(m) if m.state == MemberState::Removed => {
                    return rejected(Rejection::MemberRemoved { id: node });
                }
                Some(_) => {}
            }
        }
        self.table = Some(table.clone());
        CommandResult::Applied
    }
}

#[cfg(test)]
mod tests {
    use ringcache_placement::{DEFAULT_LOAD_FACTOR, DEFAULT_WEIGHT};

    use super::*;

    fn table(members: &[u64], partitions: u32, epoch: u64) -> PartitionTable {
        let m: Vec<_> = members
            .iter()
            .map(|&n| (NodeId(n), DEFAULT_WEIGHT))
            .collect();
        PartitionTable::compute(&m, partitions, 2, DEFAULT_LOAD_FACTOR, Epoch(epoch))
            .expect("valid table input")
    }

    fn upsert(id: u64) -> Command {
        Command::UpsertMember {
            id: NodeId(id),
            addr: format!("127.0.0.1:{}", 7000 + id),
            weight: DEFAULT_WEIGHT,
        }
    }

    fn init() -> Command {
        Command::Init {
            partitions: 64,
            replication: 2,
        }
    }

    #[test]
    fn init_once_and_idempotent() {
        let mut s = ClusterState::default();
        assert!(!s.is_initialized());
        assert_eq!(s.apply(&init()), CommandResult::Applied);
        assert_eq!(s.apply(&init()), CommandResult::Applied);
        let other = Command::Init {
            partitions: 128,
            replication: 2,
        };
        assert!(matches!(
            s.apply(&other),
            CommandResult::Rejected(Rejection::AlreadyInitialized { partitions: 64, .. })
        ));
        assert_eq!((s.partitions, s.replication), (64, 2));
        let mut fresh = ClusterState::default();
        for (p, r) in [
            (0, 2),
            (MAX_PARTITIONS + 1, 2),
            (8, 0),
            (8, MAX_REPLICATION + 1),
        ] {
            let res = fresh.apply(&Command::Init {
                partitions: p,
                replication: r,
            });
            assert!(matches!(
                res,
                CommandResult::Rejected(Rejection::Invalid { .. })
            ));
        }
        assert_eq!(fresh, ClusterState::default());
    }

    #[test]
    fn members_lifecycle() {
        let mut s = ClusterState::default();
        assert!(s.apply(&upsert(1)).is_applied());
        assert_eq!(s.members[&NodeId(1)].state, MemberState::Joining);
        let set = |id, state| Command::SetMemberState {
            id: NodeId(id),
            state,
        };
        assert!(s.apply(&set(1, MemberState::Active)).is_applied());
        // Upsert keeps the state, changes address and weight.
        let moved = Command::UpsertMember {
            id: NodeId(1),
            addr: "10.0.0.1:1".into(),
            weight: 7,
        };
        assert!(s.apply(&moved).is_applied());
        assert_eq!(
            s.members[&NodeId(1)],
            MemberInfo {
                addr: "10.0.0.1:1".into(),
                state: MemberState::Active,
                weight: 7
            }
        );
        assert_eq!(
            s.apply(&set(9, MemberState::Down)),
            CommandResult::Rejected(Rejection::UnknownMember { id: NodeId(9) })
        );
        assert!(s.apply(&set(1, MemberState::Removed)).is_applied());
        assert_eq!(
            s.apply(&set(1, MemberState::Active)),
            CommandResult::Rejected(Rejection::MemberRemoved { id: NodeId(1) })
        );
        assert!(s.apply(&upsert(1)).is_applied());
        assert_eq!(s.members[&NodeId(1)].state, MemberState::Joining);
        assert!(
            s.apply(&Command::RemoveMember { id: NodeId(1) })
                .is_applied()
        );
        assert!(s.members.is_empty());
        for bad in [
            Command::UpsertMember {
                id: NodeId(2),
                addr: String::new(),
                weight: 1,
            },
            Command::UpsertMember {
                id: NodeId(2),
                addr: "x".repeat(MAX_ADDR_LEN + 1),
                weight: 1,
            },
            Command::UpsertMember {
                id: NodeId(2),
                addr: "a:1".into(),
                weight: 0,
            },
        ] {
            assert!(!s.apply(&bad).is_applied(), "{bad:?} accepted");
        }
        assert!(s.members.is_empty());
    }

    #[test]
    fn namespaces() {
        let mut s = ClusterState::default();
        let put = Command::PutNamespace {
            name: "users".into(),
            config: "strategy = \"cache-aside\"\n".into(),
        };
        assert!(s.apply(&put).is_applied());
        assert_eq!(s.namespaces["users"], "strategy = \"cache-aside\"\n");
        let bad_name = Command::PutNamespace {
            name: "no spaces".into(),
            config: String::new(),
        };
        assert!(!s.apply(&bad_name).is_applied());
        let big = Command::PutNamespace {
            name: "big".into(),
            config: "x".repeat(MAX_NAMESPACE_CONFIG_LEN + 1),
        };
        assert!(!s.apply(&big).is_applied());
        let del = Command::DeleteNamespace {
            name: "users".into(),
        };
        assert!(s.apply(&del).is_applied());
        assert_eq!(
            s.apply(&del),
            CommandResult::Rejected(Rejection::UnknownNamespace {
                name: "users".into()
            })
        );
        assert!(s.namespaces.is_empty());
    }

    #[test]
    fn tables_need_newer_epochs_and_known_members() {
        let mut s = ClusterState::default();
        let t1 = table(&[1, 2], 64, 1);
        assert_eq!(
            s.apply(&Command::SetTable { table: t1.clone() }),
            CommandResult::Rejected(Rejection::NotInitialized)
        );
        s.apply(&init());
        assert_eq!(
            s.apply(&Command::SetTable { table: t1.clone() }),
            CommandResult::Rejected(Rejection::UnknownMember { id: NodeId(1) })
        );
        s.apply(&upsert(1));
        s.apply(&upsert(2));
        assert!(
            s.apply(&Command::SetTable { table: t1.clone() })
                .is_applied()
        );
        assert_eq!(s.epoch(), Epoch(1));
        // Same epoch again, or older: refused, state unchanged.
        let before = s.clone();
        assert_eq!(
            s.apply(&Command::SetTable { table: t1.clone() }),
            CommandResult::Rejected(Rejection::StaleEpoch {
                current: Epoch(1),
                proposed: Epoch(1)
            })
        );
        assert_eq!(
            s.apply(&Command::SetTable {
                table: table(&[1, 2], 32, 2)
            }),
            CommandResult::Rejected(Rejection::PartitionCountMismatch {
                expected: 64,
                got: 32
            })
        );
        assert_eq!(s, before);
        // A member the table uses cannot be deleted; once the table moves on it can.
        assert!(matches!(
            s.apply(&Command::RemoveMember { id: NodeId(2) }),
            CommandResult::Rejected(Rejection::MemberInTable { .. })
        ));
        let t2 = table(&[1], 64, 2);
        assert!(s.apply(&Command::SetTable { table: t2 }).is_applied());
        assert!(
            s.apply(&Command::RemoveMember { id: NodeId(2) })
                .is_applied()
        );
        assert_eq!(s.epoch(), Epoch(2));
    }

    #[test]
    fn apply_is_deterministic() {
        let cmds = [
            init(),
            upsert(3),
            upsert(1),
            upsert(2),
            Command::SetTable {
                table: table(&[1, 2, 3], 64, 1),
            },
            Command::PutNamespace {
                name: "b".into(),
                config: String::new(),
            },
            Command::PutNamespace {
                name: "a".into(),
                config: String::new(),
            },
            Command::SetMemberState {
                id: NodeId(2),
                state: MemberState::Draining,
            },
        ];
        let run = || {
            let mut s = ClusterState::default();
            let results: Vec<_> = cmds.iter().map(|c| s.apply(c)).collect();
            (s, results)
        };
        assert_eq!(run(), run());
    }
}
