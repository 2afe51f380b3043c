//! The accepting side: [`serve_peer`].

use std::io::Cursor;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ringcache_proto::{EncodeError, NodeId, RequestId, decode, encode};
use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc, watch};

use super::wire::{
    CLOSE_PROTOCOL, CLOSE_REFUSED, CLOSE_SHUTDOWN, HELLO_ID, MAX_FRAME, PeerError, PeerErrorCode,
    PeerRequest, PeerResponse,
};
use crate::cluster::{Cluster, Done, LocalError, Op};
use crate::types::{RaftNodeId, Snapshot};

/// How long a dialing peer has to open its stream and say hello.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests of one connection handled at the same time; the connection's reader waits
/// for a slot beyond that (back-pressure through QUIC flow control).
pub const MAX_IN_FLIGHT_PER_PEER: usize = 64;

/// Serves a peer connection until it closes or the cluster shuts down. Call it (in a task
/// of its own) for every accepted connection whose ALPN is
/// [`ringcache_tls::ALPN_PEER`]; it checks the ALPN again and refuses anything else.
///
/// The peer's first frame must be `Hello { node_id }`; the connection is closed unless
/// the certificate the peer presented in the TLS handshake is node `node_id`'s
/// ([`ringcache_tls::verify_peer_node`]): a node cannot speak as another node, nor a
/// client certificate as a node. Then every request on the stream is answered, many at
/// a time (at most [`MAX_IN_FLIGHT_PER_PEER`]). Raft messages must carry the verified
/// peer's own vote. Failures are logged here; nothing is returned.
pub async fn serve_peer(conn: quinn::Connection, cluster: Cluster) {
    let remote = conn.remote_address();
    match serve(&conn, &cluster).await {
        Ok(peer) => tracing::debug!(%remote, %peer, "peer connection closed"),
        Err(reason) => tracing::warn!(%remote, %reason, "peer connection refused or failed"),
    }
}

/// Closes `conn` with `code` and a reason (truncated to fit a close frame).
fn close(conn: &quinn::Connection, code: u32, reason: &str) {
    let bytes = reason.as_bytes();
    conn.close(code.into(), &bytes[..bytes.len().min(512)]);
}

async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn serve(conn: &quinn::Connection, cluster: &Cluster) -> Result<NodeId, String> {
    let inner = cluster.inner();
    let mut shutdown = inner.shutdown_rx();
    if *shutdown.borrow() {
        close(conn, CLOSE_SHUTDOWN, "shutting down");
        return Err("the cluster is shut down".into());
    }
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() != Some(ringcache_tls::ALPN_PEER) {
        close(conn, CLOSE_PROTOCOL, "not the peer protocol");
        return Err(format!("ALPN {alpn:?} is not the peer protocol"));
    }

    let hello = async {
        let (send, mut recv) = conn
            .accept_bi()
            .await
            .map_err(|e| format!("no stream: {e}"))?;
        let mut buf = BytesMut::with_capacity(4096);
        loop {
            match decode::<PeerRequest>(&mut buf, MAX_FRAME) {
                Ok(Some((HELLO_ID, PeerRequest::Hello { node_id }))) => {
                    return Ok((send, recv, buf, node_id));
                }
                Ok(Some((id, req))) => {
                    return Err(format!("expected a hello, got {req:?} as {id}"));
                }
                Ok(None) => {}
                Err(e) => return Err(format!("bad hello frame: {e}")),
            }
            match recv.read_buf(&mut buf).await {
                Ok(0) => return Err("stream finished before the hello".to_owned()),
                Ok(_) => {}
                Err(e) => return Err(format!("no hello: {e}")),
            }
        }
    };
    let (mut send, recv, buf, claimed) = tokio::select! {
        res = tokio::time::timeout(HELLO_TIMEOUT, hello) => match res {
            Ok(Ok(hello)) => hello,
            Ok(Err(reason)) => {
                close(conn, CLOSE_PROTOCOL, &reason);
                return Err(reason);
            }
            Err(_) => {
                close(conn, CLOSE_PROTOCOL, "no hello in time");
                return Err(format!("no hello within {HELLO_TIMEOUT:?}"));
            }
        },
        () = stop_requested(&mut shutdown) => {
            close(conn, CLOSE_SHUTDOWN, "shutting down");
            return Err("shut down during the hello".into());
        }
    };
    let peer = NodeId(claimed);
    if let Err(e) = ringcache_tls::verify_peer_node(conn, peer, inner.domain()) {
        let reason = format!("claimed to be {peer}: {e}");
        close(conn, CLOSE_REFUSED, &reason);
        return Err(reason);
    }
    let mut out = BytesMut::new();
    encode(HELLO_ID, &PeerResponse::Hello, MAX_FRAME, &mut out)
        .map_err(|e| format!("cannot encode the hello answer: {e}"))?;
    send.write_all(&out)
        .await
        .map_err(|e| format!("cannot answer the hello: {e}"))?;
    tracing::debug!(%peer, remote = %conn.remote_address(), "peer connected");

    let (out_tx, out_rx) = mpsc::channel::<BytesMut>(MAX_IN_FLIGHT_PER_PEER);
    let writer = tokio::spawn(write_task(send, out_rx));
    let mut res = read_loop(cluster, claimed, recv, buf, out_tx, &mut shutdown).await;
    if res.is_err()
        && matches!(
            conn.close_reason(),
            Some(quinn::ConnectionError::ApplicationClosed(_))
        )
    {
        res = Ok(End::PeerClosed);
    }
    match &res {
        Ok(End::ShutDown) => close(conn, CLOSE_SHUTDOWN, "shutting down"),
        Ok(End::PeerClosed) => {}
        Err(reason) => close(conn, CLOSE_PROTOCOL, reason),
    }
    writer.abort();
    res.map(|_| peer)
}

/// How a served connection ended normally.
enum End {
    /// This node is shutting down.
    ShutDown,
    /// The peer closed its link.
    PeerClosed,
}

/// Reads requests and spawns a handler for each until the stream ends (`Err`) or the
/// cluster shuts down (`Ok`).
async fn read_loop(
    cluster: &Cluster,
    peer: RaftNodeId,
    mut recv: quinn::RecvStream,
    mut buf: BytesMut,
    out: mpsc::Sender<BytesMut>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<End, String> {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_PEER));
    loop {
        loop {
            match decode::<PeerRequest>(&mut buf, MAX_FRAME) {
                Ok(Some((id, req))) => {
                    let slot = slots
                        .clone()
                        .acquire_owned()
                        .await
                        .map_err(|_| "semaphore closed".to_owned())?;
                    let cluster = cluster.clone();
                    let out = out.clone();
                    tokio::spawn(async move {
                        let resp = handle(&cluster, peer, req).await;
                        let _ = out.send(encode_response(id, &resp)).await;
                        drop(slot);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(id) = e.request_id() {
                        let resp = PeerResponse::Error(PeerError::new(
                            PeerErrorCode::Malformed,
                            e.to_string(),
                        ));
                        let _ = out.send(encode_response(id, &resp)).await;
                    }
                    if e.is_fatal() {
                        return Err(format!("framing error: {e}"));
                    }
                }
            }
        }
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        tokio::select! {
            read = recv.read_buf(&mut buf) => match read {
                Ok(0) => return Ok(End::PeerClosed),
                Ok(_) => {}
                Err(e) => return Err(format!("read failed: {e}")),
            },
            () = stop_requested(shutdown) => return Ok(End::ShutDown),
        }
    }
}

fn encode_response(id: RequestId, resp: &PeerResponse) -> BytesMut {
    let mut out = BytesMut::new();
    match encode(id, resp, MAX_FRAME, &mut out) {
        Ok(()) => {}
        Err(e) => {
            let message = match e {
                EncodeError::TooLarge { len, max } => {
                    format!("answer of {len} bytes exceeds the frame limit of {max}")
                }
                e => e.to_string(),
            };
            tracing::error!(%message, "cannot encode a peer answer");
            let err = PeerResponse::Error(PeerError::new(PeerErrorCode::Malformed, message));
            if let Err(e) = encode(id, &err, MAX_FRAME, &mut out) {
                tracing::error!(error = %e, "cannot encode an error answer");
            }
        }
    }
    out
}

async fn write_task(mut send: quinn::SendStream, mut rx: mpsc::Receiver<BytesMut>) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        if let Err(e) = send.write_all(&batch).await {
            tracing::debug!(error = %e, "peer answer not written");
            return;
        }
        batch.clear();
    }
}

fn fatal(e: &openraft::error::Fatal<RaftNodeId>) -> PeerError {
    let code = match e {
        openraft::error::Fatal::StorageError(_) => PeerErrorCode::Storage,
        _ => PeerErrorCode::Stopped,
    };
    PeerError::new(code, e.to_string())
}

fn raft_error(e: &openraft::error::RaftError<RaftNodeId>) -> PeerError {
    match e {
        openraft::error::RaftError::Fatal(f) => fatal(f),
        openraft::error::RaftError::APIError(e) => match *e {},
    }
}

/// Refuses Raft messages whose vote names another node than the verified peer.
fn check_vote(peer: RaftNodeId, vote: &crate::types::Vote) -> Result<(), PeerResponse> {
    match vote.leader_id().voted_for() {
        Some(id) if id == peer => Ok(()),
        other => Err(PeerResponse::Error(PeerError::new(
            PeerErrorCode::Refused,
            format!("{} sent a vote for {other:?}", NodeId(peer)),
        ))),
    }
}

async fn handle(cluster: &Cluster, peer: RaftNodeId, req: PeerRequest) -> PeerResponse {
    let inner = cluster.inner();
    let raft = inner.raft();
    let op = match req {
        PeerRequest::Hello { .. } => {
            return PeerResponse::Error(PeerError::new(
                PeerErrorCode::Malformed,
                "hello sent twice",
            ));
        }
        PeerRequest::AppendEntries(rpc) => {
            if let Err(refused) = check_vote(peer, &rpc.vote) {
                return refused;
            }
            return match raft.append_entries(rpc).await {
                Ok(r) => PeerResponse::AppendEntries(r),
                Err(e) => PeerResponse::Error(raft_error(&e)),
            };
        }
        PeerRequest::Vote(rpc) => {
            if let Err(refused) = check_vote(peer, &rpc.vote) {
                return refused;
            }
            return match raft.vote(rpc).await {
                Ok(r) => PeerResponse::Vote(r),
                Err(e) => PeerResponse::Error(raft_error(&e)),
            };
        }
        PeerRequest::FullSnapshot { vote, meta, data } => {
            if let Err(refused) = check_vote(peer, &vote) {
                return refused;
            }
            let snapshot = Snapshot {
                meta,
                snapshot: Box::new(Cursor::new(data)),
            };
            return match raft.install_full_snapshot(vote, snapshot).await {
                Ok(r) => PeerResponse::Snapshot(r),
                Err(e) => PeerResponse::Error(fatal(&e)),
            };
        }
        PeerRequest::Lease => return inner.lease_answer(),
        PeerRequest::Forward(cmd) => Op::Write(cmd),
        PeerRequest::AddLearner { node_id, addr } => Op::AddLearner { id: node_id, addr },
        PeerRequest::ChangeMembership { voters } => Op::ChangeMembership { voters },
        PeerRequest::Join { addr } => Op::AddLearner { id: peer, addr },
    };
    match inner.run_local(&op).await {
        Ok(Done::Command(r)) => PeerResponse::Command(r),
        Ok(Done::Membership) => PeerResponse::Membership,
        Err(LocalError::NotLeader(leader)) => PeerResponse::Error(PeerError {
            code: PeerErrorCode::NotLeader,
            message: format!("{} is not the leader", NodeId(inner.id())),
            leader: leader.map(|(id, node)| (id, node.addr)),
        }),
        Err(LocalError::Membership(reason)) => {
            PeerResponse::Error(PeerError::new(PeerErrorCode::Membership, reason))
        }
        Err(LocalError::Fatal(reason)) => {
            PeerResponse::Error(PeerError::new(PeerErrorCode::Stopped, reason))
        }
        Err(LocalError::Timeout(after)) => PeerResponse::Error(PeerError::new(
            PeerErrorCode::Timeout,
            format!("not committed within {after:?}"),
        )),
    }
}
