//! Ringcache's control plane: the Raft-replicated cluster map (work in progress).

mod codec;
mod error;
mod state;
mod store;
mod types;

pub use error::{ClusterError, CodecError, StoreError};
pub use state::{
    ClusterState, Command, CommandResult, MAX_ADDR_LEN, MAX_NAMESPACE_CONFIG_LEN, MAX_NAMESPACES,
    MAX_REPLICATION, MemberInfo, MemberState, Rejection,
};
pub use store::{DB_FILE, LogStore, SnapshotBuilder, StateMachineStore, open_storage};
pub use types::{PeerNode, TypeConfig};
