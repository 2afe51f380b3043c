//! One QUIC connection with one long-lived stream: requests are multiplexed by id.
//!
//! A caller encodes its frame straight into the connection's output buffer and parks in
//! a slot of the pending table (both behind one short std mutex); a writer task hands
//! everything buffered to the stream as one chunk; a reader task decodes a read's
//! responses, fills their slots under one lock and wakes their callers. A request
//! therefore costs no allocation of its own (no frame buffer, channel message or
//! oneshot) and no timer: deadlines live in the slots and one sweeper task per
//! connection expires them (within [`tick`] of the deadline).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_proto::{RequestId, RequestRef, decode_response, encode_request};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

use crate::error::{Error, Outcome};

/// Encoded bytes waiting for the writer beyond which new requests wait (back-pressure
/// when the node or the network falls behind).
const OUT_LIMIT: usize = 4 << 20;
/// Initial size of the output buffer and the read buffer's growth step.
const CHUNK: usize = 64 << 10;

/// How a request ended, as its waiter sees it.
#[derive(Debug)]
pub(crate) enum Done {
    /// The node's answer.
    Response(ringcache_proto::Response),
    /// The connection failed (or the response could not be decoded); why.
    Lost(String),
    /// No answer by the deadline.
    TimedOut,
}

/// A live connection; cheap to share.
#[derive(Debug)]
pub(crate) struct Connection {
    shared: Arc<Shared>,
    max_frame: u32,
    quic: quinn::Connection,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// Mirrors `state.closed.is_some()` for the lock-free check on the request path.
    closed: AtomicBool,
    /// Wakes the writer when the output buffer stops being empty (or on close).
    wake_writer: Notify,
    /// Wakes requests waiting for room in the output buffer.
    room: Notify,
    /// A coarse clock for deadlines: milliseconds since `started` as of the sweeper's
    /// last tick (the request path reads it instead of the system clock).
    clock_ms: AtomicU64,
    started: Instant,
    /// How long a request may wait, plus one tick for the coarse clock's lag, in ms.
    wait_ms: u64,
}

#[derive(Debug)]
struct State {
    /// Encoded frames not yet handed to the stream.
    out: BytesMut,
    pending: Slots,
    /// Why the connection can no longer carry requests.
    closed: Option<String>,
}

/// One waiting request.
#[derive(Debug)]
struct Slot {
    id: u64,
    /// In [`Shared::clock_ms`] units.
    deadline_ms: u64,
    waker: Option<Waker>,
    done: Option<Done>,
}

/// The pending requests: a slab indexed by the low 32 bits of the request id (the high
/// bits count allocations, so a late answer for a reused slot is recognized).
#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    issued: u64,
}

impl Slots {
    fn insert(&mut self, deadline_ms: u64) -> u64 {
        self.issued += 1;
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(None);
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 requests in flight")
            }
        };
        let id = (self.issued << 32) | u64::from(index);
        self.slots[index as usize] = Some(Slot {
            id,
            deadline_ms,
            waker: None,
            done: None,
        });
        id
    }

    fn get_mut(&mut self, id: u64) -> Option<&mut Slot> {
        // Truncation intended: the low 32 bits are the index.
        #[allow(clippy::cast_possible_truncation)]
        let index = id as u32 as usize;
        self.slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|s| s.id == id)
    }

    fn remove(&mut self, id: u64) {
        if self.get_mut(id).is_some() {
            #[allow(clippy::cast_possible_truncation)]
            let index = id as u32;
            self.slots[index as usize] = None;
            self.free.push(index);
        }
    }

    /// Completes `id` (unless it is gone or already complete); returns its waker.
    fn complete(&mut self, id: u64, done: Done) -> Option<Waker> {
        let slot = self.get_mut(id)?;
        if slot.done.is_some() {
            return None;
        }
        slot.done = Some(done);
        slot.waker.take()
    }

    fn waiting(&mut self) -> impl Iterator<Item = &mut Slot> {
        self.slots.iter_mut().flatten().filter(|s| s.done.is_none())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent between statements that
        // cannot panic, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the connection failed and fails every waiting request with `reason`.
    fn fail_all(&self, reason: &str) {
        let wakers: Vec<Waker> = {
            let mut st = self.lock();
            if st.closed.is_none() {
                st.closed = Some(reason.to_owned());
            }
            self.closed.store(true, Ordering::Release);
            st.pending
                .waiting()
                .filter_map(|s| {
                    s.done = Some(Done::Lost(reason.to_owned()));
                    s.waker.take()
                })
                .collect()
        };
        for w in wakers {
            w.wake();
        }
        self.wake_writer.notify_one();
        self.room.notify_waiters();
    }
}

/// How often the sweeper looks for requests past their deadline: a twentieth of the
/// request timeout, between 1 ms and 100 ms.
fn tick(request_timeout: Duration) -> Duration {
    (request_timeout / 20).clamp(Duration::from_millis(1), Duration::from_millis(100))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Connection {
    /// Opens the request stream on an established QUIC connection and starts the tasks.
    pub(crate) async fn start(
        quic: quinn::Connection,
        max_frame: u32,
        request_timeout: Duration,
    ) -> Result<Self, Error> {
        let (send, recv) = quic.open_bi().await.map_err(|e| Error::Connect {
            endpoints: vec![quic.remote_address().to_string()],
            reason: format!("cannot open the request stream: {e}"),
        })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                out: BytesMut::with_capacity(CHUNK),
                pending: Slots::default(),
                closed: None,
            }),
            closed: AtomicBool::new(false),
            wake_writer: Notify::new(),
            room: Notify::new(),
            clock_ms: AtomicU64::new(0),
            started: Instant::now(),
            wait_ms: millis(request_timeout.saturating_add(tick(request_timeout))),
        });
        tokio::spawn(write_task(send, Arc::clone(&shared)));
        tokio::spawn(read_task(recv, max_frame, Arc::clone(&shared)));
        tokio::spawn(sweep_task(Arc::clone(&shared), tick(request_timeout)));
        Ok(Self {
            shared,
            max_frame,
            quic,
        })
    }

    /// Whether the connection can no longer carry requests.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Queues a request for the writer; the returned future yields how it ended (within
    /// the request timeout, or a timeout at most two sweeper ticks after it).
    pub(crate) async fn send(&self, req: RequestRef<'_>) -> Result<Waiting, Error> {
        loop {
            if let Some(w) = self.try_send(req)? {
                return Ok(w);
            }
            // The output buffer is full: wait for the writer to take it. Registered
            // before the second look, so a writer emptying it in between is not missed.
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            if let Some(w) = self.try_send(req)? {
                return Ok(w);
            }
            room.await;
        }
    }

    /// Encodes `req` into the output buffer unless it is full (`None`).
    fn try_send(&self, req: RequestRef<'_>) -> Result<Option<Waiting>, Error> {
        let deadline_ms = self
            .shared
            .clock_ms
            .load(Ordering::Relaxed)
            .saturating_add(self.shared.wait_ms);
        let mut st = self.shared.lock();
        if st.closed.is_some() {
            return Err(Error::ConnectionLost {
                reason: "connection closed before sending".into(),
                outcome: Outcome::NotApplied,
            });
        }
        if st.out.len() >= OUT_LIMIT {
            return Ok(None);
        }
        let was_empty = st.out.is_empty();
        let id = st.pending.insert(deadline_ms);
        if let Err(e) = encode_request(RequestId(id), req, self.max_frame, &mut st.out) {
            st.pending.remove(id);
            return Err(Error::Invalid(ringcache_proto::WireError::new(
                ringcache_proto::ErrorCode::FrameTooLarge,
                e.to_string(),
            )));
        }
        drop(st);
        if was_empty {
            self.shared.wake_writer.notify_one();
        }
        Ok(Some(Waiting {
            shared: Arc::clone(&self.shared),
            id: Some(id),
        }))
    }

    /// Closes the connection.
    pub(crate) fn close(&self) {
        self.shared.fail_all("client closed");
        self.quic.close(0u32.into(), b"client closed");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // The last handle is gone (no request can be waiting: each holds one): finish
        // the stream so the node ends its side and the tasks exit.
        let mut st = self.shared.lock();
        if st.closed.is_none() {
            st.closed = Some("client dropped".into());
        }
        drop(st);
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake_writer.notify_one();
    }
}

/// A request's answer, as a future. Dropping it forgets the request (a late answer is
/// dropped).
#[derive(Debug)]
pub(crate) struct Waiting {
    shared: Arc<Shared>,
    /// `None` once it has yielded.
    id: Option<u64>,
}

impl Future for Waiting {
    type Output = Done;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Done> {
        let Some(id) = self.id else {
            return Poll::Ready(Done::Lost("polled after completion".into()));
        };
        let mut st = self.shared.lock();
        let Some(slot) = st.pending.get_mut(id) else {
            drop(st);
            self.id = None;
            return Poll::Ready(Done::Lost("request forgotten".into()));
        };
        if let Some(done) = slot.done.take() {
            st.pending.remove(id);
            drop(st);
            self.id = None;
            return Poll::Ready(done);
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            w => *w = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.shared.lock().pending.remove(id);
        }
    }
}

async fn write_task(mut send: quinn::SendStream, shared: Arc<Shared>) {
    loop {
        let wake = shared.wake_writer.notified();
        tokio::pin!(wake);
        wake.as_mut().enable();
        let (batch, closed) = {
            let mut st = shared.lock();
            let batch = if st.out.is_empty() {
                None
            } else {
                // Everything buffered, without copying; encoding goes on in the rest of
                // the allocation, and a fresh one is taken only when little is left (the
                // stream holds a chunk until the node acknowledges it, so the
                // allocation cannot be reused before).
                let batch = st.out.split().freeze();
                if st.out.capacity() < CHUNK / 8 {
                    st.out.reserve(CHUNK);
                }
                Some(batch)
            };
            (batch, st.closed.is_some())
        };
        let Some(batch) = batch else {
            if closed {
                let _ = send.finish();
                return;
            }
            wake.await;
            continue;
        };
        // Requests wait for room only when the buffer was at its limit.
        if batch.len() >= OUT_LIMIT {
            shared.room.notify_waiters();
        }
        if let Err(e) = send.write_chunk(batch).await {
            shared.fail_all(&format!("write failed: {e}"));
            return;
        }
    }
}

async fn read_task(mut recv: quinn::RecvStream, max_frame: u32, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(CHUNK);
    let mut answers: Vec<(u64, Done)> = Vec::new();
    let mut wakers: Vec<Waker> = Vec::new();
    let reason = loop {
        let mut fatal = None;
        loop {
            match decode_response(&mut buf, max_frame) {
                Ok(Some((id, resp))) => answers.push((id.0, Done::Response(resp))),
                Ok(None) => break,
                Err(e) if e.is_fatal() => {
                    fatal = Some(format!("bad frame from node: {e}"));
                    break;
                }
                Err(e) => {
                    if let Some(id) = e.request_id() {
                        answers.push((id.0, Done::Lost(format!("bad response frame: {e}"))));
                    }
                }
            }
        }
        if !answers.is_empty() {
            {
                let mut st = shared.lock();
                for (id, done) in answers.drain(..) {
                    wakers.extend(st.pending.complete(id, done));
                }
            }
            for w in wakers.drain(..) {
                w.wake();
            }
        }
        if let Some(reason) = fatal {
            break reason;
        }
        if buf.capacity() - buf.len() < CHUNK / 4 {
            buf.reserve(CHUNK);
        }
        match recv.read_buf(&mut buf).await {
            Ok(0) => break "node closed the stream".to_owned(),
            Ok(_) => {}
            Err(e) => break format!("read failed: {e}"),
        }
    };
    shared.fail_all(&reason);
}

/// Expires requests past their deadline, every `tick`, until the connection closes.
async fn sweep_task(shared: Arc<Shared>, tick: Duration) {
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut wakers = Vec::new();
    loop {
        ticks.tick().await;
        let now = millis(shared.started.elapsed());
        shared.clock_ms.store(now, Ordering::Relaxed);
        {
            let mut st = shared.lock();
            if st.closed.is_some() {
                return;
            }
            for slot in st.pending.waiting() {
                if slot.deadline_ms <= now {
                    slot.done = Some(Done::TimedOut);
                    wakers.extend(slot.waker.take());
                }
            }
        }
        for w in wakers.drain(..) {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_reuse_indexes_and_ignore_answers_for_old_ids() {
        let mut slots = Slots::default();
        let a = slots.insert(5);
        let b = slots.insert(5);
        assert_ne!(a, b);
        assert!(slots.complete(a, Done::TimedOut).is_none(), "no waker yet");
        assert!(
            slots.complete(a, Done::Lost("again".into())).is_none(),
            "a completed slot keeps its first outcome"
        );
        assert!(matches!(
            slots.get_mut(a).and_then(|s| s.done.take()),
            Some(Done::TimedOut)
        ));
        slots.remove(a);
        // The index comes back under a new id; the old id no longer matches it.
        let c = slots.insert(5);
        assert_eq!(c & 0xffff_ffff, a & 0xffff_ffff);
        assert_ne!(c, a);
        assert!(slots.get_mut(a).is_none());
        assert!(slots.complete(a, Done::TimedOut).is_none());
        assert!(slots.get_mut(c).is_some_and(|s| s.done.is_none()));
        assert_eq!(slots.waiting().count(), 2, "b and c wait");
        slots.remove(b);
        slots.remove(b);
        assert_eq!(slots.free.len(), 1, "a second remove of b is a no-op");
    }

    #[test]
    fn the_sweep_tick_follows_the_request_timeout() {
        assert_eq!(tick(Duration::from_secs(5)), Duration::from_millis(100));
        assert_eq!(tick(Duration::from_millis(200)), Duration::from_millis(10));
        assert_eq!(tick(Duration::ZERO), Duration::from_millis(1));
    }
}
