//! The peer protocol's messages.
//!
//! Frames are `ringcache_proto`'s (`len u32 | version u16 | request id u64 | bincode
//! body`), bodies are [`PeerRequest`] from the dialing side and [`PeerResponse`] from the
//! accepting side, matched by request id. Request id 0 is the [`PeerRequest::Hello`].
//! Errors cross as a closed [`PeerErrorCode`] with a message, never as serialized Rust
//! errors.

use std::collections::BTreeSet;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use ringcache_proto::{DEFAULT_MAX_FRAME, RequestId};
use serde::{Deserialize, Serialize};

use crate::state::{Command, CommandResult};
use crate::types::{RaftNodeId, SnapshotMeta, TypeConfig, Vote};

/// Largest frame either side sends or accepts: 16 MiB. A snapshot travels whole in one
/// frame, so the encoded cluster map must fit (a 65,536-partition table with three
/// replicas is about 1 MiB).
pub(crate) const MAX_FRAME: u32 = DEFAULT_MAX_FRAME;

/// The request id of the hello exchange.
pub(crate) const HELLO_ID: RequestId = RequestId(0);

/// QUIC application close code: the peer's identity check failed.
pub(crate) const CLOSE_REFUSED: u32 = 0x52_01;
/// QUIC application close code: this node is shutting down.
pub(crate) const CLOSE_SHUTDOWN: u32 = 0x52_02;
/// QUIC application close code: the peer broke the protocol.
pub(crate) const CLOSE_PROTOCOL: u32 = 0x52_03;
/// QUIC application close code: the dialing side is done with the link.
pub(crate) const CLOSE_DONE: u32 = 0x52_00;

/// What a dialing peer asks.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerRequest {
    /// First frame: "I am node `node_id`", checked against the TLS certificate.
    Hello {
        /// The claimed id.
        node_id: RaftNodeId,
    },
    /// Raft log replication and heartbeats.
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// Raft election.
    Vote(VoteRequest<RaftNodeId>),
    /// A whole snapshot in one message.
    FullSnapshot {
        /// The leader's vote.
        vote: Vote,
        /// What the snapshot covers.
        meta: SnapshotMeta,
        /// The encoded cluster map.
        data: Vec<u8>,
    },
    /// Propose a command (the receiver must be the leader).
    Forward(Command),
    /// Add a learner (the receiver must be the leader).
    AddLearner {
        /// Its id.
        node_id: RaftNodeId,
        /// Its address.
        addr: String,
    },
    /// Replace the voter set (the receiver must be the leader).
    ChangeMembership {
        /// The new voters.
        voters: BTreeSet<RaftNodeId>,
    },
    /// Add the sender itself (its verified id) as a learner at `addr`.
    Join {
        /// The sender's address.
        addr: String,
    },
    /// "Are you the leader, in contact with a quorum?" (a member renewing its lease).
    Lease,
}

/// What the accepting peer answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum PeerResponse {
    /// The hello was accepted.
    Hello,
    /// Answer to [`PeerRequest::AppendEntries`].
    AppendEntries(AppendEntriesResponse<RaftNodeId>),
    /// Answer to [`PeerRequest::Vote`].
    Vote(VoteResponse<RaftNodeId>),
    /// Answer to [`PeerRequest::FullSnapshot`].
    Snapshot(SnapshotResponse<RaftNodeId>),
    /// Answer to [`PeerRequest::Forward`]: the command was committed and applied.
    Command(CommandResult),
    /// Answer to membership requests: committed.
    Membership,
    /// Answer to [`PeerRequest::Lease`] from the leader.
    Lease {
        /// How long ago (ms) the leader last confirmed a quorum (`None`: never yet).
        quorum_age_ms: Option<u64>,
        /// The index of the last entry the leader has applied.
        applied: Option<u64>,
    },
    /// The request failed.
    Error(PeerError),
}

/// A failed request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PeerError {
    /// What kind of failure.
    pub(crate) code: PeerErrorCode,
    /// For people.
    pub(crate) message: String,
    /// With [`PeerErrorCode::NotLeader`]: the leader the peer knows of, and its address.
    pub(crate) leader: Option<(RaftNodeId, String)>,
}

impl PeerError {
    pub(crate) fn new(code: PeerErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            leader: None,
        }
    }
}

/// The closed set of peer errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum PeerErrorCode {
    /// The peer's identity check failed.
    Refused,
    /// The peer's Raft has stopped (shutting down, or a fatal storage error).
    Stopped,
    /// The request needs the leader and the receiver is not it.
    NotLeader,
    /// openraft refused a membership change.
    Membership,
    /// The request could not be decoded or was not expected.
    Malformed,
    /// The receiver's storage failed.
    Storage,
    /// The leader did not commit in time (the request may still commit).
    Timeout,
}
