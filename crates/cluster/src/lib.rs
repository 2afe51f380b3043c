//! Ringcache's control plane: the Raft-replicated cluster map (work in progress).

mod cluster;
mod codec;
mod error;
mod net;
mod state;
mod store;
mod types;

pub use cluster::{
    Cluster, ClusterConfig, ClusterMetrics, DEFAULT_LOGS_KEPT_AFTER_SNAPSHOT,
    DEFAULT_SNAPSHOT_EVERY, RaftTiming, Role, peer_client_config,
};
pub use error::{ClusterError, CodecError, StoreError};
pub use net::{HELLO_TIMEOUT, MAX_IN_FLIGHT_PER_PEER, serve_peer};
pub use state::{
    ClusterState, Command, CommandResult, MAX_ADDR_LEN, MAX_NAMESPACE_CONFIG_LEN, MAX_NAMESPACES,
    MAX_REPLICATION, MemberInfo, MemberState, Rejection,
};
pub use store::{DB_FILE, LogStore, SnapshotBuilder, StateMachineStore, open_storage};
pub use types::{PeerNode, TypeConfig};
