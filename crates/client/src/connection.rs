//! One QUIC connection with one long-lived stream: requests are multiplexed by id, a
//! writer task coalesces every queued frame into one write, a reader task routes each
//! response to its waiter.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use ringcache_proto::{Request, RequestId, Response, decode, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Outcome};

/// Frames waiting for the writer; beyond this, senders wait (back-pressure).
const QUEUE: usize = 4096;

type Waiter = oneshot::Sender<Result<Response, String>>;

/// A live connection; cheap to share.
#[derive(Debug)]
pub(crate) struct Connection {
    queue: mpsc::Sender<Bytes>,
    pending: Arc<parking::Pending>,
    closed: Arc<AtomicBool>,
    next_id: AtomicU64,
    max_frame: u32,
    quic: quinn::Connection,
}

mod parking {
    //! The waiters, behind a std mutex held only for map operations.
    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct Pending(std::sync::Mutex<HashMap<u64, Waiter>>);

    impl Pending {
        pub(crate) fn insert(&self, id: u64, w: Waiter) {
            self.lock().insert(id, w);
        }
        pub(crate) fn take(&self, id: u64) -> Option<Waiter> {
            self.lock().remove(&id)
        }
        /// Fails every waiter (the connection is gone).
        pub(crate) fn fail_all(&self, reason: &str) {
            let all: Vec<Waiter> = self.lock().drain().map(|(_, w)| w).collect();
            for w in all {
                let _ = w.send(Err(reason.to_owned()));
            }
        }
        fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Waiter>> {
            // A panic while holding this lock cannot leave the map inconsistent (single
            // insert/remove calls), so a poisoned lock is still usable.
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

impl Connection {
    /// Opens the request stream on an established QUIC connection and starts the tasks.
    pub(crate) async fn start(quic: quinn::Connection, max_frame: u32) -> Result<Self, Error> {
        let (send, recv) = quic.open_bi().await.map_err(|e| Error::Connect {
            endpoints: vec![quic.remote_address().to_string()],
            reason: format!("cannot open the request stream: {e}"),
        })?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let pending = Arc::new(parking::Pending::default());
        let closed = Arc::new(AtomicBool::new(false));
        tokio::spawn(write_task(
            send,
            rx,
            Arc::clone(&closed),
            Arc::clone(&pending),
        ));
        tokio::spawn(read_task(
            recv,
            max_frame,
            Arc::clone(&closed),
            Arc::clone(&pending),
        ));
        Ok(Self {
            queue,
            pending,
            closed,
            next_id: AtomicU64::new(1),
            max_frame,
            quic,
        })
    }

    /// Whether the connection can no longer carry requests.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.quic.close_reason().is_some()
    }

    /// Sends a request; returns its id and a receiver that yields its response or why
    /// the connection failed.
    pub(crate) async fn send(
        &self,
        req: &Request,
    ) -> Result<(u64, oneshot::Receiver<Result<Response, String>>), Error> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = BytesMut::new();
        encode(RequestId(id), req, self.max_frame, &mut frame).map_err(|e| {
            Error::Invalid(ringcache_proto::WireError::new(
                ringcache_proto::ErrorCode::FrameTooLarge,
                e.to_string(),
            ))
        })?;
        let (tx, rx) = oneshot::channel();
        self.pending.insert(id, tx);
        if self.is_closed() || self.queue.send(frame.freeze()).await.is_err() {
            self.pending.take(id);
            return Err(Error::ConnectionLost {
                reason: "connection closed before sending".into(),
                outcome: Outcome::NotApplied,
            });
        }
        Ok((id, rx))
    }

    /// Forgets a request whose caller gave up waiting (a late response is dropped).
    pub(crate) fn forget(&self, id: u64) {
        self.pending.take(id);
    }

    /// Closes the connection.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.quic.close(0u32.into(), b"client closed");
    }
}

async fn write_task(
    mut send: quinn::SendStream,
    mut rx: mpsc::Receiver<Bytes>,
    closed: Arc<AtomicBool>,
    pending: Arc<parking::Pending>,
) {
    let mut batch = BytesMut::new();
    while let Some(first) = rx.recv().await {
        batch.extend_from_slice(&first);
        // Everything already queued goes out in the same write.
        while let Ok(more) = rx.try_recv() {
            batch.extend_from_slice(&more);
        }
        if let Err(e) = send.write_all(&batch).await {
            closed.store(true, Ordering::Release);
            pending.fail_all(&format!("write failed: {e}"));
            return;
        }
        batch.clear();
    }
    let _ = send.shutdown().await;
}

async fn read_task(
    mut recv: quinn::RecvStream,
    max_frame: u32,
    closed: Arc<AtomicBool>,
    pending: Arc<parking::Pending>,
) {
    let mut buf = BytesMut::with_capacity(64 << 10);
    let reason = loop {
        loop {
            match decode::<Response>(&mut buf, max_frame) {
                Ok(Some((id, resp))) => {
                    if let Some(w) = pending.take(id.0) {
                        let _ = w.send(Ok(resp));
                    }
                }
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    closed.store(true, Ordering::Release);
                    pending.fail_all(&format!("bad frame from node: {e}"));
                    return;
                }
                Err(e) => {
                    if let Some(w) = e.request_id().and_then(|id| pending.take(id.0)) {
                        let _ = w.send(Err(format!("bad response frame: {e}")));
                    }
                }
            }
        }
        match recv.read_buf(&mut buf).await {
            Ok(0) => break "node closed the stream".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
    };
    closed.store(true, Ordering::Release);
    pending.fail_all(&reason);
}
