//! openraft's network traits over the peer links.
//!
//! Error mapping, so openraft backs off where it should:
//! - no connection, refused identity, connection lost, or the peer's Raft stopped:
//!   `Unreachable` (openraft waits [`RaftNetwork::backoff`] before the next attempt);
//! - no answer within openraft's per-RPC time-to-live: `Timeout`;
//! - an `AppendEntries` too large for one frame: `PayloadTooLarge` with half the entries
//!   as the hint (openraft retries with fewer);
//! - anything else (undecodable answer, unexpected answer): `NetworkError`.

use std::time::Duration;

use openraft::error::{
    Fatal, InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError,
    ReplicationClosed, StreamingError, Timeout, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{OptionalSend, RPCTypes};

use super::client::{CallError, PeerPool};
use super::wire::{PeerError, PeerErrorCode, PeerRequest, PeerResponse};
use crate::types::{PeerNode, RaftNodeId, Snapshot, TypeConfig, Vote};

/// Makes a [`PeerClient`] per target; all share the node's [`PeerPool`].
pub(crate) struct Network {
    pub(crate) pool: PeerPool,
    pub(crate) self_id: RaftNodeId,
    /// How long openraft waits after an `Unreachable` before retrying a peer.
    pub(crate) backoff: Duration,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &PeerNode) -> PeerClient {
        PeerClient {
            pool: self.pool.clone(),
            self_id: self.self_id,
            target,
            addr: node.addr.clone(),
            backoff: self.backoff,
        }
    }
}

/// Raft RPCs to one peer.
pub(crate) struct PeerClient {
    pool: PeerPool,
    self_id: RaftNodeId,
    target: RaftNodeId,
    addr: String,
    backoff: Duration,
}

/// How a failed call is reported to openraft (before the RPC-specific wrapping).
enum Failure {
    Unreachable(Unreachable),
    Timeout(Duration),
    Network(NetworkError),
}

fn other(message: String) -> std::io::Error {
    std::io::Error::other(message)
}

impl PeerClient {
    async fn call(&self, req: PeerRequest, ttl: Duration) -> Result<PeerResponse, CallError> {
        self.pool.call(self.target, &self.addr, req, ttl).await
    }

    fn failure(&self, e: CallError) -> Failure {
        match e {
            CallError::NotSent(_) | CallError::Refused(_) | CallError::Lost(_) => {
                Failure::Unreachable(Unreachable::new(&e))
            }
            CallError::Timeout(after) => Failure::Timeout(after),
            CallError::TooLarge { .. } | CallError::Protocol(_) => {
                Failure::Network(NetworkError::new(&e))
            }
        }
    }

    fn remote_failure(&self, e: &PeerError) -> Failure {
        let err = other(format!(
            "{} answered {:?}: {}",
            ringcache_proto::NodeId(self.target),
            e.code,
            e.message
        ));
        match e.code {
            PeerErrorCode::Stopped | PeerErrorCode::Storage | PeerErrorCode::Refused => {
                Failure::Unreachable(Unreachable::new(&err))
            }
            _ => Failure::Network(NetworkError::new(&err)),
        }
    }

    fn unexpected(&self, resp: &PeerResponse) -> Failure {
        Failure::Network(NetworkError::new(&other(format!(
            "unexpected answer from {}: {resp:?}",
            ringcache_proto::NodeId(self.target)
        ))))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        f: Failure,
        action: RPCTypes,
    ) -> RPCError<RaftNodeId, PeerNode, E> {
        match f {
            Failure::Unreachable(u) => RPCError::Unreachable(u),
            Failure::Network(n) => RPCError::Network(n),
            Failure::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.self_id,
                target: self.target,
                timeout,
            }),
        }
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        AppendEntriesResponse<RaftNodeId>,
        RPCError<RaftNodeId, PeerNode, RaftError<RaftNodeId>>,
    > {
        let entries = rpc.entries.len() as u64;
        let action = RPCTypes::AppendEntries;
        match self
            .call(PeerRequest::AppendEntries(rpc), option.hard_ttl())
            .await
        {
            Ok(PeerResponse::AppendEntries(r)) => Ok(r),
            Ok(PeerResponse::Error(e)) => Err(self.rpc_error(self.remote_failure(&e), action)),
            Ok(resp) => Err(self.rpc_error(self.unexpected(&resp), action)),
            Err(CallError::TooLarge { .. }) if entries > 1 => Err(RPCError::PayloadTooLarge(
                PayloadTooLarge::new_entries_hint(entries / 2),
            )),
            Err(e) => Err(self.rpc_error(self.failure(e), action)),
        }
    }

    /// Never called: openraft 0.9 sends snapshots through [`Self::full_snapshot`], which
    /// this network implements whole. Answers a network error rather than panicking.
    async fn install_snapshot(
        &mut self,
        _rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<RaftNodeId>,
        RPCError<RaftNodeId, PeerNode, RaftError<RaftNodeId, InstallSnapshotError>>,
    > {
        Err(RPCError::Network(NetworkError::new(&other(
            "chunked snapshots are not supported: snapshots are sent whole".into(),
        ))))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RPCError<RaftNodeId, PeerNode, RaftError<RaftNodeId>>>
    {
        let action = RPCTypes::Vote;
        match self.call(PeerRequest::Vote(rpc), option.hard_ttl()).await {
            Ok(PeerResponse::Vote(r)) => Ok(r),
            Ok(PeerResponse::Error(e)) => Err(self.rpc_error(self.remote_failure(&e), action)),
            Ok(resp) => Err(self.rpc_error(self.unexpected(&resp), action)),
            Err(e) => Err(self.rpc_error(self.failure(e), action)),
        }
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: Snapshot,
        cancel: impl std::future::Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<RaftNodeId>, StreamingError<TypeConfig, Fatal<RaftNodeId>>> {
        let req = PeerRequest::FullSnapshot {
            vote,
            meta: snapshot.meta,
            data: snapshot.snapshot.into_inner(),
        };
        let res = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            res = self.call(req, option.hard_ttl()) => res,
        };
        let failure = match res {
            Ok(PeerResponse::Snapshot(r)) => return Ok(r),
            Ok(PeerResponse::Error(e)) => self.remote_failure(&e),
            Ok(resp) => self.unexpected(&resp),
            Err(e @ CallError::TooLarge { .. }) => {
                tracing::error!(peer = self.target, error = %e, "the cluster map is too large to send as a snapshot");
                self.failure(e)
            }
            Err(e) => self.failure(e),
        };
        Err(match failure {
            Failure::Unreachable(u) => StreamingError::Unreachable(u),
            Failure::Network(n) => StreamingError::Network(n),
            Failure::Timeout(timeout) => StreamingError::Timeout(Timeout {
                action: RPCTypes::InstallSnapshot,
                id: self.self_id,
                target: self.target,
                timeout,
            }),
        })
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(self.backoff))
    }
}
