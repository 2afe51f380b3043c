//! Ringcache's control plane: the Raft-replicated cluster map (work in progress).

mod state;
mod types;

pub use state::{
    ClusterState, Command, CommandResult, MAX_ADDR_LEN, MAX_NAMESPACE_CONFIG_LEN, MAX_NAMESPACES,
    MAX_REPLICATION, MemberInfo, MemberState, Rejection,
};
pub use types::{PeerNode, TypeConfig};
