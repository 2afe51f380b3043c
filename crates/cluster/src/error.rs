//! The crate's errors.

use std::path::PathBuf;
use std::time::Duration;

use ringcache_proto::NodeId;

pub use crate::codec::CodecError;

/// Why the Raft storage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb failed (I/O, corruption, a second process holding the file).
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A stored record could not be encoded or decoded.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The database was written by a build with another storage layout.
    #[error("storage format {found} is not this build's format {expected}")]
    Format {
        /// The version found in the file.
        found: u32,
        /// The storage format version of this build.
        expected: u32,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory: {0}")]
    Io(#[from] std::io::Error),
    /// The blocking task running a write transaction failed.
    #[error("storage task failed: {reason}")]
    Task {
        /// Why.
        reason: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Redb(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// What a [`Cluster`](crate::Cluster) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The Raft storage could not be opened.
    #[error("raft storage at {path}: {source}")]
    Storage {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: StoreError,
    },
    /// The configuration is invalid.
    #[error("invalid cluster config: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// This node cannot do it and no leader is known to forward to.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of, if any.
        leader: Option<NodeId>,
    },
    /// No leader was elected in time.
    #[error("no leader known after {waited:?}")]
    NoLeader {
        /// How long it waited.
        waited: Duration,
    },
    /// A peer could not be reached; the request was not delivered.
    #[error("{node} is unreachable: {reason}")]
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The request was sent but its answer was lost: it may or may not have been applied.
    #[error("outcome unknown, {node} did not answer: {reason}")]
    OutcomeUnknown {
        /// The peer.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// A peer refused this node (identity check, protocol) or answered with an error.
    #[error("{node} refused the request: {reason}")]
    Refused {
        /// The peer.
        node: NodeId,
        /// Its reason.
        reason: String,
    },
    /// [`Cluster::initialize`](crate::Cluster::initialize) on a node that already has a
    /// Raft membership (bootstrapped before, or joined).
    #[error("this node is already initialized")]
    AlreadyInitialized,
    /// A membership change was refused (one in progress, unknown learner, empty set).
    #[error("membership change refused: {reason}")]
    Membership {
        /// openraft's reason.
        reason: String,
    },
    /// An operation did not finish in time.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What it waited for.
        what: &'static str,
        /// How long.
        after: Duration,
    },
    /// Raft stopped on a fatal error (storage failure); the node must be restarted.
    #[error("raft stopped: {reason}")]
    Fatal {
        /// Why.
        reason: String,
    },
    /// The cluster handle was shut down.
    #[error("the cluster handle is shut down")]
    Shutdown,
    /// TLS configuration failed.
    #[error(transparent)]
    Tls(#[from] ringcache_tls::TlsError),
}
