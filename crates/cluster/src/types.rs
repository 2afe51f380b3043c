//! The openraft type configuration: what the log carries and who the peers are.

use std::fmt;
use std::io::Cursor;

use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};

/// A Raft peer as the membership records it: where to dial it.
///
/// The node id is the key it is stored under; the address is what this node's QUIC
/// endpoint dials (`host:port`, resolved at every connect), with the server name
/// `node-<id>.<cluster domain>` ([`ringcache_tls::node_server_name`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerNode {
    /// The peer's QUIC address, `host:port`.
    pub addr: String,
}

impl PeerNode {
    /// A peer reachable at `addr`.
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

impl fmt::Display for PeerNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

openraft::declare_raft_types!(
    /// Ringcache's openraft types: `u64` node ids (the value of
    /// [`ringcache_proto::NodeId`]), [`PeerNode`] addresses, [`Command`] entries answered
    /// with [`CommandResult`], snapshots as bytes in memory (the state is small).
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = u64,
        Node = PeerNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);
/// openraft's node id type in this crate.
pub(crate) type RaftNodeId = u64;
/// A log id.
pub(crate) type LogId = openraft::LogId<RaftNodeId>;
/// A vote.
pub(crate) type Vote = openraft::Vote<RaftNodeId>;
/// A log entry.
pub(crate) type Entry = openraft::Entry<TypeConfig>;
/// The membership with the log id that set it.
pub(crate) type StoredMembership = openraft::StoredMembership<RaftNodeId, PeerNode>;
/// What a snapshot describes.
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<RaftNodeId, PeerNode>;
/// A snapshot with its data.
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
/// openraft's storage error.
pub(crate) type StorageError = openraft::StorageError<RaftNodeId>;
/// The Raft instance.
pub(crate) type Raft = openraft::Raft<TypeConfig>;
