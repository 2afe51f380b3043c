//! The Ringcache side: N [`Client`]s (one QUIC connection each, all over one local UDP
//! socket), D request loops per client. As on the Redis side, one task per connection
//! drives its D loops; each loop has one request in flight at a time, made through the
//! real client library (`Client::get` / `Client::set` futures, so the library's whole
//! request path is part of what is measured).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use futures::task::AtomicWaker;
use ringcache_client::{Client, ClientConfig, Endpoint, SetOptions};
use tokio::task::JoinSet;

use super::recorder::{Recorder, Recorders, Shared, Window, run_connections};
use super::workload::{OpKind, Picker, Workload, next_batch, write_key};
use super::{Fill, FillProgress};

/// How long closing the connections may take.
const CLOSE_LIMIT: Duration = Duration::from_secs(2);
/// Fill requests in flight per client.
const FILL_TASKS_PER_CLIENT: usize = 2;

/// Connects `n` clients at once, all over one local UDP socket (one endpoint, as a
/// process holding several connections would use; each client still has its own QUIC
/// connection).
pub(crate) async fn connect(config: &ClientConfig, n: u32) -> anyhow::Result<Vec<Client>> {
    let endpoint = Endpoint::bind().context("opening the UDP socket")?;
    let mut set = JoinSet::new();
    for i in 0..n {
        let (config, endpoint) = (config.clone(), endpoint.clone());
        set.spawn(async move { (i, Client::connect_on(config, &endpoint).await) });
    }
    let mut clients = Vec::with_capacity(n as usize);
    while let Some(joined) = set.join_next().await {
        let (i, res) = joined.context("connect task failed")?;
        let client =
            res.with_context(|| format!("connecting to Ringcache ({} of {n} connections)", i + 1))?;
        clients.push(client);
    }
    Ok(clients)
}

/// Fails early, with the node's own message, if `ns` does not exist.
pub(crate) async fn check_namespace(client: &Client, ns: &str) -> anyhow::Result<()> {
    client
        .stats(Some(ns))
        .await
        .map(drop)
        .with_context(|| format!("checking namespace {ns:?} on Ringcache"))
}

/// Writes every key once with `set_many` batches of `batch` keys.
pub(crate) async fn fill(
    clients: &[Client],
    ns: &str,
    workload: &Workload,
    batch: u64,
    progress: &FillProgress,
) -> Fill {
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let shared = Arc::new(Shared::default());
    let ns: Arc<str> = ns.into();
    let mut set = JoinSet::new();
    for client in clients {
        for _ in 0..FILL_TASKS_PER_CLIENT {
            let (client, next, shared, ns) = (
                client.clone(),
                Arc::clone(&next),
                Arc::clone(&shared),
                Arc::clone(&ns),
            );
            let (keyspace, value, done) = (
                workload.keyspace,
                workload.value.clone(),
                Arc::clone(&progress.done),
            );
            set.spawn(async move {
                let mut key = Vec::new();
                while let Some(range) = next_batch(&next, batch, keyspace) {
                    let (first, last) = (range.start, range.end);
                    let items = (first..last)
                        .map(|n| {
                            write_key(n, &mut key);
                            (Bytes::copy_from_slice(&key), value.clone(), None)
                        })
                        .collect();
                    match client.set_many(&ns, items).await {
                        Ok(results) => {
                            let failed: Vec<_> =
                                results.iter().filter_map(|r| r.as_ref().err()).collect();
                            if let Some(e) = failed.first() {
                                shared.error(failed.len() as u64, || format!("set_many item: {e}"));
                            }
                        }
                        Err(e) => shared.error(last - first, || format!("set_many: {e}")),
                    }
                    done.fetch_add(last - first, Ordering::Relaxed);
                }
            });
        }
    }
    while set.join_next().await.is_some() {}
    Fill {
        system: super::System::Ringcache,
        keys: workload.keyspace,
        elapsed: started.elapsed(),
        errors: shared.errors(),
        first_error: shared.first_error(),
    }
}

/// Runs the closed loops until `window.end`; returns every connection's measurements
/// merged.
pub(crate) async fn load(
    clients: &[Client],
    ns: &str,
    workload: &Arc<Workload>,
    depth: u32,
    seed: u64,
    window: Window,
    shared: &Arc<Shared>,
) -> Recorder {
    let ns: Arc<str> = ns.into();
    run_connections(
        clients,
        workload,
        depth,
        seed,
        &window,
        shared,
        |client, pickers, recorders| {
            connection_loop(
                client.clone(),
                Arc::clone(&ns),
                pickers,
                workload.value.clone(),
                window,
                Arc::clone(shared),
                recorders,
            )
        },
    )
    .await
}

/// `key:<n>` without an allocation: at most 4 + 20 digits.
#[derive(Debug, Clone, Copy)]
struct Key {
    len: usize,
    bytes: [u8; 24],
}

impl Key {
    fn new(n: u64, scratch: &mut Vec<u8>) -> Self {
        write_key(n, scratch);
        let mut bytes = [0; 24];
        bytes[..scratch.len()].copy_from_slice(scratch);
        Self {
            len: scratch.len(),
            bytes,
        }
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// A finished request: which loop sent it, what it was, when it was sent, what came
/// back (a GET's hit or miss), when.
type Finished = (
    usize,
    OpKind,
    Instant,
    Result<Option<bool>, ringcache_client::Error>,
    Instant,
);

/// One client's D closed loops, driven by one task as on the Redis side: each loop
/// has one request in flight (a future of the client library's, polled here rather
/// than in a task of its own, when its own waker fires); when it finishes, its latency
/// is recorded and the loop's next request starts, until `window.end`.
async fn connection_loop(
    client: Client,
    ns: Arc<str>,
    mut pickers: Vec<Picker>,
    value: Bytes,
    window: Window,
    shared: Arc<Shared>,
    recorders: Arc<Recorders>,
) {
    let mut scratch = Vec::with_capacity(24);
    let (client, ns, value) = (&client, &*ns, &value);
    let start = |lp: usize, pickers: &mut [Picker], scratch: &mut Vec<u8>| {
        let (op, n) = pickers[lp].next();
        let key = Key::new(n, scratch);
        let sent = Instant::now();
        async move {
            let outcome = match op {
                OpKind::Get => client.get(ns, key).await.map(|e| Some(e.is_some())),
                OpKind::Set => client
                    .set(ns, key, value.clone(), SetOptions::default())
                    .await
                    .map(|_| None),
            };
            let finished: Finished = (lp, op, sent, outcome, Instant::now());
            finished
        }
    };
    // Records a finished request; returns its loop, whether the loop goes on, and
    // whether the request failed.
    let finish = |(lp, op, sent, outcome, done): Finished| {
        let failed = match outcome {
            Ok(hit) => {
                recorders
                    .here()
                    .record(op, sent, done, hit, &window, &shared);
                false
            }
            Err(e) => {
                shared.error(1, || format!("{}: {e}", op.name()));
                true
            }
        };
        (lp, done < window.end, failed)
    };
    if Instant::now() >= window.end {
        return;
    }
    if pickers.len() == 1 {
        // One loop: await its request directly (a set of one future only costs).
        loop {
            let (_, more, failed) = finish(start(0, &mut pickers, &mut scratch).await);
            if !more {
                return;
            }
            if failed {
                // Some errors come back without a wait (a local check): let other
                // tasks run rather than spin on this worker.
                tokio::task::yield_now().await;
            }
        }
    }
    // Each loop's request future lives in one allocation made here; its next request is
    // written over the finished one. (A `FuturesUnordered` allocates a task per pushed
    // future and moves the future, most of a kilobyte, into it: about 1,500
    // instructions per request in the load generator, which shares the CPUs with the
    // system it measures.)
    let n = pickers.len();
    let mut slots: Vec<_> = (0..n)
        .map(|lp| Some(Box::pin(start(lp, &mut pickers, &mut scratch))))
        .collect();
    let ready = Arc::new(ReadyList::default());
    let slot_wakers: Vec<Arc<SlotWaker>> = (0..n)
        .map(|index| {
            Arc::new(SlotWaker {
                index,
                queued: AtomicBool::new(false),
                ready: Arc::clone(&ready),
            })
        })
        .collect();
    let wakers: Vec<Waker> = slot_wakers
        .iter()
        .map(|w| Waker::from(Arc::clone(w)))
        .collect();
    for w in &wakers {
        w.wake_by_ref();
    }
    let mut live = n;
    let mut batch = Vec::with_capacity(n);
    std::future::poll_fn(|cx| {
        ready.task.register(cx.waker());
        // Rounds before giving the worker back to the runtime (requests that fail at
        // once must not keep this task spinning).
        for _ in 0..ROUNDS_PER_POLL {
            std::mem::swap(&mut batch, &mut *ready.lock());
            if batch.is_empty() {
                return if live == 0 {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                };
            }
            for i in batch.drain(..) {
                // Cleared before the poll: a wake during it queues the loop again.
                slot_wakers[i].queued.store(false, Ordering::Release);
                let waker = &wakers[i];
                while let Some(fut) = slots[i].as_mut() {
                    let Poll::Ready(finished) = fut
                        .as_mut()
                        .poll(&mut std::task::Context::from_waker(waker))
                    else {
                        break;
                    };
                    let (lp, more, failed) = finish(finished);
                    if !more {
                        slots[i] = None;
                        live -= 1;
                        break;
                    }
                    fut.set(start(lp, &mut pickers, &mut scratch));
                    if failed {
                        // Some errors come back without a wait (a local check): poll
                        // this loop again after the others.
                        waker.wake_by_ref();
                        break;
                    }
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// Rounds of [`connection_loop`]'s poll before it yields to the runtime.
const ROUNDS_PER_POLL: usize = 64;

/// The loops whose request was woken, and the connection task to wake for them.
#[derive(Default)]
struct ReadyList {
    queue: std::sync::Mutex<Vec<usize>>,
    task: AtomicWaker,
}

impl ReadyList {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<usize>> {
        // Only pushes and swaps happen under the lock; a poisoned list is still whole.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// One loop's waker: queues the loop (once until it is polled) and wakes the task.
struct SlotWaker {
    index: usize,
    queued: AtomicBool,
    ready: Arc<ReadyList>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.ready.lock().push(self.index);
            self.ready.task.wake();
        }
    }
}

/// Closes every connection (bounded: the run is over either way).
pub(crate) async fn close(clients: Vec<Client>) {
    let mut set = JoinSet::new();
    for c in clients {
        set.spawn(async move { c.close().await });
    }
    let _ = tokio::time::timeout(CLOSE_LIMIT, async {
        while set.join_next().await.is_some() {}
    })
    .await;
}
