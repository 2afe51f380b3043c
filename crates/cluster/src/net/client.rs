//! The dialing side: one link per peer, each a long-lived QUIC connection with one
//! bidirectional stream, many requests in flight matched by request id, reconnecting on
//! demand after a failure.
//!
//! A link is a task that owns its connection. Callers hand it a request and a oneshot
//! for the answer; the task (re)connects when a request arrives and no connection is up,
//! writes every queued request in one write, and a reader task completes the oneshots
//! by request id. A failed connect fails every queued request at once (the caller gets
//! "not sent" and openraft backs off); a connection lost with requests in flight fails
//! those as "lost" (outcome unknown). Requests whose caller stopped waiting are skipped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::BytesMut;
use ringcache_proto::{EncodeError, NodeId, RequestId, decode, encode};
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, oneshot};

use super::wire::{CLOSE_DONE, CLOSE_REFUSED, HELLO_ID, MAX_FRAME, PeerRequest, PeerResponse};
use crate::types::RaftNodeId;

/// Requests queued per link before callers get "busy".
const LINK_QUEUE: usize = 1024;

/// Why a call got no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub(crate) enum CallError {
    /// The request was not sent (no connection could be made, or the link is busy).
    #[error("not sent: {0}")]
    NotSent(String),
    /// The peer refused this node's identity (not sent).
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The request was sent but the connection failed before the answer came.
    #[error("connection lost: {0}")]
    Lost(String),
    /// No answer in time (the request may or may not have been sent).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The request does not fit in a frame.
    #[error("request of {len} bytes exceeds the frame limit of {max} bytes")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// [`MAX_FRAME`].
        max: u32,
    },
    /// The peer's answer was not valid.
    #[error("protocol error: {0}")]
    Protocol(String),
}

impl CallError {
    /// Whether the request certainly did not reach the peer (so retrying elsewhere
    /// cannot apply it twice).
    pub(crate) fn not_sent(&self) -> bool {
        matches!(
            self,
            CallError::NotSent(_) | CallError::Refused(_) | CallError::TooLarge { .. }
        )
    }
}

type Reply = oneshot::Sender<Result<PeerResponse, CallError>>;

struct Outgoing {
    req: PeerRequest,
    reply: Reply,
}

/// What every link needs to dial.
struct Dialer {
    self_id: RaftNodeId,
    domain: String,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    connect_timeout: Duration,
}

struct Link {
    addr: String,
    tx: mpsc::Sender<Outgoing>,
    task: tokio::task::JoinHandle<()>,
}

/// Links to every peer this node talks to, by node id. Cheap to clone.
#[derive(Clone)]
pub(crate) struct PeerPool {
    dialer: Arc<Dialer>,
    links: Arc<Mutex<HashMap<RaftNodeId, Link>>>,
}

impl PeerPool {
    pub(crate) fn new(
        self_id: RaftNodeId,
        domain: String,
        endpoint: quinn::Endpoint,
        client_config: quinn::ClientConfig,
        connect_timeout: Duration,
    ) -> Self {
        Self {
            dialer: Arc::new(Dialer {
                self_id,
                domain,
                endpoint,
                client_config,
                connect_timeout,
            }),
            links: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Sends `req` to node `target` at `addr` and waits at most `timeout` for the answer.
    pub(crate) async fn call(
        &self,
        target: RaftNodeId,
        addr: &str,
        req: PeerRequest,
        timeout: Duration,
    ) -> Result<PeerResponse, CallError> {
        let (reply, rx) = oneshot::channel();
        let tx = self.link(target, addr);
        match tx.try_send(Outgoing { req, reply }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                return Err(CallError::NotSent(format!(
                    "{LINK_QUEUE} requests already queued"
                )));
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                return Err(CallError::NotSent("the link is closed".into()));
            }
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(res)) => res,
            Ok(Err(_)) => Err(CallError::Lost("the link task ended".into())),
            Err(_) => Err(CallError::Timeout(timeout)),
        }
    }

    /// The sender of `target`'s link, starting the link (or restarting it if the address
    /// changed).
    fn link(&self, target: RaftNodeId, addr: &str) -> mpsc::Sender<Outgoing> {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(link) = links.get(&target)
            && link.addr == addr
            && !link.tx.is_closed()
        {
            return link.tx.clone();
        }
        let (tx, rx) = mpsc::channel(LINK_QUEUE);
        let task = tokio::spawn(link_task(self.dialer.clone(), target, addr.to_owned(), rx));
        if let Some(old) = links.insert(
            target,
            Link {
                addr: addr.to_owned(),
                tx: tx.clone(),
                task,
            },
        ) {
            old.task.abort();
        }
        tx
    }

    /// Stops every link (their connections close, waiting calls fail).
    pub(crate) fn close(&self) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, link) in links.drain() {
            link.task.abort();
        }
    }
}

/// A connected session: the connection and its stream, after the hello.
struct Session {
    conn: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Bytes read after the hello answer.
    rbuf: BytesMut,
}

async fn link_task(
    dialer: Arc<Dialer>,
    target: RaftNodeId,
    addr: String,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let peer = NodeId(target);
    let mut was_up = false;
    while let Some(first) = rx.recv().await {
        if first.reply.is_closed() {
            continue;
        }
        match connect(&dialer, target, &addr).await {
            Ok(session) => {
                tracing::info!(%peer, %addr, "peer link connected");
                was_up = true;
                let reason = run_session(session, first, &mut rx).await;
                tracing::warn!(%peer, %addr, %reason, "peer link lost");
            }
            Err(e) => {
                if was_up {
                    tracing::warn!(%peer, %addr, error = %e, "cannot reconnect to peer");
                } else {
                    tracing::debug!(%peer, %addr, error = %e, "cannot connect to peer");
                }
                was_up = false;
                let _ = first.reply.send(Err(e.clone()));
                while let Ok(o) = rx.try_recv() {
                    let _ = o.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Maps a connection failure: a close with [`CLOSE_REFUSED`] is the peer refusing us.
fn connection_error(e: &quinn::ConnectionError) -> CallError {
    match e {
        quinn::ConnectionError::ApplicationClosed(close)
            if close.error_code == quinn::VarInt::from_u32(CLOSE_REFUSED) =>
        {
            CallError::Refused(String::from_utf8_lossy(&close.reason).into_owned())
        }
        e => CallError::NotSent(e.to_string()),
    }
}

async fn connect(dialer: &Dialer, target: RaftNodeId, addr: &str) -> Result<Session, CallError> {
    let attempt = async {
        let sock = tokio::net::lookup_host(addr)
            .await
            .map_err(|e| CallError::NotSent(format!("cannot resolve {addr}: {e}")))?
            .next()
            .ok_or_else(|| CallError::NotSent(format!("{addr} resolves to no address")))?;
        let name = ringcache_tls::node_server_name(NodeId(target), &dialer.domain);
        let conn = dialer
            .endpoint
            .connect_with(dialer.client_config.clone(), sock, &name)
            .map_err(|e| CallError::NotSent(e.to_string()))?
            .await
            .map_err(|e| connection_error(&e))?;
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| connection_error(&e))?;
        let mut out = BytesMut::new();
        encode(
            HELLO_ID,
            &PeerRequest::Hello {
                node_id: dialer.self_id,
            },
            MAX_FRAME,
            &mut out,
        )
        .map_err(|e| CallError::Protocol(e.to_string()))?;
        let lost = |conn: &quinn::Connection, what: String| match conn.close_reason() {
            Some(e) => connection_error(&e),
            None => CallError::NotSent(what),
        };
        if let Err(e) = send.write_all(&out).await {
            return Err(lost(&conn, format!("hello not sent: {e}")));
        }
        let mut rbuf = BytesMut::with_capacity(1024);
        loop {
            match decode::<PeerResponse>(&mut rbuf, MAX_FRAME) {
                Ok(Some((HELLO_ID, PeerResponse::Hello))) => break,
                Ok(Some((_, PeerResponse::Error(e)))) => return Err(CallError::Refused(e.message)),
                Ok(Some((id, other))) => {
                    return Err(CallError::Protocol(format!(
                        "expected the hello answer, got {other:?} for {id}"
                    )));
                }
                Ok(None) => {}
                Err(e) => return Err(CallError::Protocol(e.to_string())),
            }
            match recv.read_buf(&mut rbuf).await {
                Ok(0) => return Err(lost(&conn, "the peer closed the stream".into())),
                Ok(_) => {}
                Err(e) => return Err(lost(&conn, format!("no hello answer: {e}"))),
            }
        }
        Ok(Session {
            conn,
            send,
            recv,
            rbuf,
        })
    };
    match tokio::time::timeout(dialer.connect_timeout, attempt).await {
        Ok(res) => res,
        Err(_) => Err(CallError::NotSent(format!(
            "no connection within {:?}",
            dialer.connect_timeout
        ))),
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

type Pending = Arc<Mutex<HashMap<u64, Reply>>>;

/// Runs one connected session until it fails; returns why it ended.
async fn run_session(
    session: Session,
    first: Outgoing,
    rx: &mut mpsc::Receiver<Outgoing>,
) -> String {
    let Session {
        conn,
        mut send,
        recv,
        rbuf,
    } = session;
    let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
    let mut reader = tokio::spawn(read_task(recv, rbuf, pending.clone()));
    // The reader holds the stream (and so the connection) open: stop it with the session,
    // also when the link task itself is aborted.
    let _stop_reader = AbortOnDrop(reader.abort_handle());
    let mut next_id = HELLO_ID.0;
    let mut batch = BytesMut::new();
    let mut queued = Some(first);
    let reason = loop {
        // Everything already queued goes out in one write.
        while let Some(o) = queued.take().or_else(|| rx.try_recv().ok()) {
            if o.reply.is_closed() {
                continue;
            }
            next_id += 1;
            let id = RequestId(next_id);
            match encode(id, &o.req, MAX_FRAME, &mut batch) {
                Ok(()) => {
                    pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(id.0, o.reply);
                }
                Err(EncodeError::TooLarge { len, max }) => {
                    let _ = o.reply.send(Err(CallError::TooLarge { len, max }));
                }
                Err(e) => {
                    let _ = o.reply.send(Err(CallError::Protocol(e.to_string())));
                }
            }
        }
        if !batch.is_empty() {
            if let Err(e) = send.write_all(&batch).await {
                break format!("write failed: {e}");
            }
            batch.clear();
        }
        tokio::select! {
            res = &mut reader => {
                break res.unwrap_or_else(|e| format!("reader failed: {e}"));
            }
            next = rx.recv() => match next {
                Some(o) => queued = Some(o),
                None => {
                    conn.close(CLOSE_DONE.into(), b"link closed");
                    break "link closed".to_owned();
                }
            }
        }
    };
    conn.close(CLOSE_DONE.into(), b"link reset");
    let failed: Vec<Reply> = pending
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .drain()
        .map(|(_, r)| r)
        .collect();
    for reply in failed {
        let _ = reply.send(Err(CallError::Lost(reason.clone())));
    }
    reason
}

/// Reads answers and completes their callers until the stream fails; returns why.
async fn read_task(mut recv: quinn::RecvStream, mut buf: BytesMut, pending: Pending) -> String {
    loop {
        loop {
            match decode::<PeerResponse>(&mut buf, MAX_FRAME) {
                Ok(Some((id, resp))) => {
                    let reply = pending
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id.0);
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(resp));
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => return format!("bad frame from peer: {e}"),
                Err(e) => {
                    let reply = e.request_id().and_then(|id| {
                        pending
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&id.0)
                    });
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(CallError::Protocol(e.to_string())));
                    }
                }
            }
        }
        if buf.capacity() - buf.len() < 16 << 10 {
            buf.reserve(64 << 10);
        }
        match recv.read_buf(&mut buf).await {
            Ok(0) => return "the peer finished the stream".to_owned(),
            Ok(_) => {}
            Err(e) => return format!("read failed: {e}"),
        }
    }
}
