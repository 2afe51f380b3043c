//! Write-behind: per-partition ordered queues of acknowledged writes, and the flusher
//! that writes them to the store in batches.
//!
//! # The contract
//! - A write is acknowledged once it is in the cache (pinned: eviction skips it) and in
//!   its partition's queue, in the same critical section, so the queue order of one
//!   partition is the order of its versions. With `wal = true` it is also in the log
//!   (and fsynced, by the configured policy) before the ack.
//! - The queue is an ordered log per partition: every write gets a sequence number
//!   (per namespace, increasing), so the cluster work can ship a partition's queue to
//!   its backups as is.
//! - The flusher takes up to `batch_size` writes at a time (after `batch_delay`, or at
//!   once when a batch is full or a flush was asked for), merges writes to one key into
//!   the newest (counted as coalesced), and writes them in one version-guarded statement.
//!   Replays can never move the database backwards.
//! - A store that is down or timing out is retried with backoff, forever, without
//!   counting attempts: nothing acknowledged is dropped because of an outage. Meanwhile
//!   the queue fills; when it is full, writes get `backpressure`.
//! - A batch refused for another reason (a constraint, a value the column cannot hold)
//!   is split: each write is tried alone, and one that keeps failing (`max_attempts`)
//!   goes to the dead-letter list (kept in memory, shown by `ringctl writebehind status`)
//!   and stops blocking the rest.
//! - Once the store holds a write and no newer write to the key is queued, the cached
//!   entry is unpinned (if it still holds that version).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use ringcache_proto::{DeadLetter, WriteBehindStatus};
use ringcache_store::{Store, StoreError, Write};
use tokio::sync::{Notify, watch};
use tracing::{debug, warn};

use crate::config::WriteBehindConfig;
use crate::keyspace::Partition;
use crate::wal::{Wal, WalRecord};

/// The most dead letters kept (older ones are dropped from the list, and counted).
const DEAD_LETTER_KEEP: usize = 10_000;

/// One queued write.
#[derive(Debug, Clone)]
pub(crate) struct Queued {
    /// Its sequence number in the namespace.
    pub(crate) seq: u64,
    /// The key.
    pub(crate) key: Bytes,
    /// The value, or `None` for a delete.
    pub(crate) value: Option<Bytes>,
    /// Its version.
    pub(crate) version: u64,
    /// When it was acknowledged.
    enqueued_at: Instant,
    /// Failed attempts that count towards `max_attempts`.
    attempts: u32,
    /// Not before this instant (backoff after a failure).
    not_before: Option<Instant>,
    /// When it last failed.
    failed_at: Option<Instant>,
}

/// The newest queued (or in-flight) write of a key: what a read-through miss must see
/// instead of the store.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// Its version.
    pub(crate) version: u64,
    /// Its value; `None`: a delete.
    pub(crate) value: Option<Bytes>,
}

#[derive(Debug, Default)]
struct PartQueue {
    queue: VecDeque<Queued>,
    latest: HashMap<Bytes, Pending>,
}

#[derive(Debug, Default)]
struct Counters {
    enqueued: AtomicU64,
    flushed: AtomicU64,
    coalesced: AtomicU64,
    retries: AtomicU64,
    store_errors: AtomicU64,
}

#[derive(Debug, Default)]
struct DeadLetters {
    list: VecDeque<DeadLetter>,
    total: u64,
}

/// A namespace's write-behind queues and flusher.
#[derive(Debug)]
pub struct WriteBehind {
    ns: String,
    config: WriteBehindConfig,
    store: Store,
    engines: Arc<[Partition]>,
    parts: Box<[Mutex<PartQueue>]>,
    /// Queued plus in-flight writes.
    depth: AtomicU64,
    next_seq: AtomicU64,
    counters: Counters,
    dead: Mutex<DeadLetters>,
    wal: Option<Wal>,
    /// Orders sequence numbers across partitions when logging.
    log_order: Mutex<()>,
    /// Sequence numbers not yet written (for releasing log segments).
    unwritten: Mutex<std::collections::BTreeSet<u64>>,
    wake: Notify,
    flush_asked: watch::Sender<u64>,
    flush_done: watch::Sender<u64>,
    stop: watch::Sender<bool>,
    rate: Mutex<VecDeque<(Instant, u64)>>,
}

/// Resolves once a queued write is in the log.
pub(crate) type LogWait = futures::future::BoxFuture<'static, Result<(), crate::wal::WalError>>;

/// Why a write could not be queued.
#[derive(Debug)]
pub(crate) enum QueueFull {
    /// Queue at capacity.
    Full {
        /// The capacity.
        capacity: u64,
    },
}

impl WriteBehind {
    /// Queues for `engines` (one per partition); starts no task (see [`Self::spawn`]).
    pub(crate) fn new(
        ns: &str,
        config: WriteBehindConfig,
        store: Store,
        engines: Arc<[Partition]>,
        wal: Option<Wal>,
        first_seq: u64,
    ) -> Self {
        let parts = engines.iter().map(|_| Mutex::default()).collect();
        Self {
            ns: ns.to_owned(),
            config,
            store,
            engines,
            parts,
            depth: AtomicU64::new(0),
            next_seq: AtomicU64::new(first_seq),
            counters: Counters::default(),
            dead: Mutex::default(),
            wal,
            log_order: Mutex::new(()),
            unwritten: Mutex::default(),
            wake: Notify::new(),
            flush_asked: watch::Sender::new(0),
            flush_done: watch::Sender::new(0),
            stop: watch::Sender::new(false),
            rate: Mutex::default(),
        }
    }

    /// The settings.
    pub(crate) fn config(&self) -> &WriteBehindConfig {
        &self.config
    }

    /// Whether writes are logged.
    pub(crate) fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    /// Starts the flusher task.
    pub(crate) fn spawn(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run().await })
    }

    /// Runs `apply` (the cache change) and queues its write, atomically with respect to
    /// other writes of the partition. `apply` returns the version to queue, or an error
    /// that leaves the queue unchanged. With the log on, the write is handed to the log
    /// in the same critical section (the log wants sequence numbers in call order), and
    /// the returned future resolves once it is logged.
    ///
    /// # Errors
    /// [`QueueFull`] before calling `apply` when the queue is at capacity; `apply`'s own
    /// error otherwise.
    pub(crate) fn submit<E>(
        &self,
        partition: usize,
        key: &Bytes,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        apply: impl FnOnce() -> Result<u64, E>,
    ) -> Result<Result<(u64, Option<LogWait>), E>, QueueFull> {
        let mut part = self.parts[partition].lock();
        if self.depth.load(Ordering::Relaxed) >= self.config.queue_capacity {
            return Err(QueueFull::Full {
                capacity: self.config.queue_capacity,
            });
        }
        let version = match apply() {
            Ok(v) => v,
            Err(e) => return Ok(Err(e)),
        };
        let (seq, logged) = match &self.wal {
            None => (self.next_seq.fetch_add(1, Ordering::Relaxed), None),
            Some(wal) => {
                let _order = self.log_order.lock();
                let seq = self.next_seq.fetch_add(1, Ordering::Relaxed);
                let wait: LogWait = Box::pin(wal.append(WalRecord {
                    seq,
                    partition: u32::try_from(partition).unwrap_or(u32::MAX),
                    key: key.clone(),
                    value: value.clone(),
                    version,
                    ttl_ms,
                }));
                (seq, Some(wait))
            }
        };
        self.push(&mut part, seq, key.clone(), value, version);
        drop(part);
        if self.depth.load(Ordering::Relaxed) >= self.config.batch_size as u64 {
            self.wake.notify_one();
        }
        Ok(Ok((version, logged)))
    }

    fn push(&self, part: &mut PartQueue, seq: u64, key: Bytes, value: Option<Bytes>, version: u64) {
        part.latest.insert(
            key.clone(),
            Pending {
                version,
                value: value.clone(),
            },
        );
        part.queue.push_back(Queued {
            seq,
            key,
            value,
            version,
            enqueued_at: Instant::now(),
            attempts: 0,
            not_before: None,
            failed_at: None,
        });
        if self.wal.is_some() {
            self.unwritten.lock().insert(seq);
        }
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.counters.enqueued.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-queues a write read back from the log at startup (its cache entry is restored
    /// by the caller).
    pub(crate) fn restore(
        &self,
        partition: usize,
        seq: u64,
        key: Bytes,
        value: Option<Bytes>,
        version: u64,
    ) {
        let mut part = self.parts[partition].lock();
        if part.latest.get(&key).is_some_and(|p| p.version > version) {
            // A newer logged write of the key was restored first; this one is older and
            // would be coalesced away anyway.
            self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.next_seq.fetch_max(seq + 1, Ordering::Relaxed);
        self.push(&mut part, seq, key, value, version);
    }

    /// The newest queued or in-flight write of `key`, if any.
    pub(crate) fn pending(&self, partition: usize, key: &[u8]) -> Option<Pending> {
        self.parts[partition].lock().latest.get(key).cloned()
    }

    /// The newest queued or in-flight write of every key of `partition`.
    pub(crate) fn pending_all(&self, partition: usize) -> Vec<(Bytes, Pending)> {
        self.parts[partition]
            .lock()
            .latest
            .iter()
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect()
    }

    /// Writes queued or in flight.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    /// Store failures seen by the flusher.
    pub(crate) fn store_errors(&self) -> u64 {
        self.counters.store_errors.load(Ordering::Relaxed)
    }

    /// The status `ringctl writebehind status` shows.
    pub fn status(&self) -> WriteBehindStatus {
        let now = Instant::now();
        let oldest = self
            .parts
            .iter()
            .filter_map(|p| p.lock().queue.iter().map(|q| q.enqueued_at).min())
            .min();
        let flushed = self.counters.flushed.load(Ordering::Relaxed);
        let flush_rate = {
            let rate = self.rate.lock();
            match rate.front() {
                Some(&(t, n)) if now > t => {
                    let secs = now.duration_since(t).as_secs_f64();
                    #[allow(
                        clippy::cast_precision_loss,
                        clippy::cast_possible_truncation,
                        clippy::cast_sign_loss
                    )]
                    let r = (flushed.saturating_sub(n) as f64 / secs).round() as u64;
                    r
                }
                _ => 0,
            }
        };
        let dead = self.dead.lock();
        WriteBehindStatus {
            ns: self.ns.clone(),
            depth: self.depth(),
            capacity: self.config.queue_capacity,
            oldest_ms: oldest
                .map(|t| u64::try_from(now.duration_since(t).as_millis()).unwrap_or(u64::MAX)),
            enqueued: self.counters.enqueued.load(Ordering::Relaxed),
            flushed,
            coalesced: self.counters.coalesced.load(Ordering::Relaxed),
            flush_rate,
            retries: self.counters.retries.load(Ordering::Relaxed),
            wal: self.wal.is_some(),
            dead_letter_count: dead.total,
            dead_letters: dead.list.iter().take(100).cloned().collect(),
        }
    }

    /// Asks for an immediate flush of everything queued (backoffs ignored, one attempt
    /// each) and waits until that pass is over.
    pub async fn flush(&self) {
        let mut target = 0;
        self.flush_asked.send_modify(|n| {
            *n += 1;
            target = *n;
        });
        self.wake.notify_one();
        let mut done = self.flush_done.subscribe();
        let _ = done.wait_for(|d| *d >= target).await;
    }

    /// Flushes until the queue is empty or `timeout` passes, then stops the flusher and
    /// closes the log. Returns the writes left unwritten.
    pub(crate) async fn drain(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        while self.depth() > 0 && Instant::now() < deadline {
            let before = self.counters.flushed.load(Ordering::Relaxed);
            if tokio::time::timeout(deadline - Instant::now(), self.flush())
                .await
                .is_err()
            {
                break;
            }
            if self.counters.flushed.load(Ordering::Relaxed) == before && self.depth() > 0 {
                // The store is refusing: wait a little before the next pass.
                tokio::time::sleep(self.config.retry_backoff.min(deadline - Instant::now())).await;
            }
        }
        let _ = self.stop.send(true);
        self.wake.notify_one();
        if let Some(wal) = &self.wal
            && let Err(e) = wal.close().await
        {
            warn!(ns = %self.ns, error = %e, "closing the write-behind log");
        }
        self.depth()
    }

    /// Stops the flusher without draining (the namespace is being replaced while empty).
    pub(crate) fn stop(&self) {
        let _ = self.stop.send(true);
        self.wake.notify_one();
    }

    async fn run(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        let mut tick = tokio::time::interval(self.config.batch_delay.max(Duration::from_millis(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                _ = tick.tick() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let asked = *self.flush_asked.borrow();
            let forced = asked > *self.flush_done.borrow();
            self.pass(forced).await;
            if forced {
                self.flush_done.send_modify(|d| *d = (*d).max(asked));
            }
            self.sample_rate();
        }
    }

    fn sample_rate(&self) {
        let now = Instant::now();
        let mut rate = self.rate.lock();
        if rate
            .back()
            .is_none_or(|&(t, _)| now.duration_since(t) >= Duration::from_secs(1))
        {
            rate.push_back((now, self.counters.flushed.load(Ordering::Relaxed)));
        }
        while rate.len() > 11 {
            rate.pop_front();
        }
    }

    /// Writes batches until nothing eligible is left. `forced`: ignore `batch_delay` and
    /// backoffs, and try every write queued now once.
    async fn pass(&self, forced: bool) {
        // Writes enqueued after this point wait for the next pass when forced, so a
        // steady stream of writes cannot keep a flush request waiting forever.
        let horizon = self.next_seq.load(Ordering::Relaxed);
        let began = Instant::now();
        let mut start = 0;
        loop {
            let now = Instant::now();
            let young = now.checked_sub(self.config.batch_delay);
            let full = self.depth() >= self.config.batch_size as u64;
            let (batch, next) =
                self.take(start, now, forced.then_some((horizon, began)), full, young);
            start = next;
            if batch.is_empty() {
                return;
            }
            self.write_batch(batch).await;
        }
    }

    /// Takes up to `batch_size` eligible writes, visiting partitions round-robin from
    /// `start`; returns them and where to start next time.
    /// `forced`: the sequence horizon and start of a forced pass, which takes every
    /// write below the horizon that has not failed during the pass.
    fn take(
        &self,
        start: usize,
        now: Instant,
        forced: Option<(u64, Instant)>,
        full: bool,
        young: Option<Instant>,
    ) -> (Vec<(usize, Queued)>, usize) {
        let n = self.parts.len();
        let mut batch = Vec::new();
        let mut visited = 0;
        let mut i = start;
        while visited < n && batch.len() < self.config.batch_size {
            let mut part = self.parts[i].lock();
            while let Some(front) = part.queue.front() {
                let eligible = if let Some((horizon, began)) = forced {
                    front.seq < horizon && front.failed_at.is_none_or(|t| t < began)
                } else {
                    front.not_before.is_none_or(|t| t <= now)
                        && (full || young.is_none_or(|y| front.enqueued_at <= y))
                };
                if !eligible || batch.len() >= self.config.batch_size {
                    break;
                }
                if let Some(q) = part.queue.pop_front() {
                    batch.push((i, q));
                }
            }
            drop(part);
            visited += 1;
            i = (i + 1) % n;
        }
        (batch, i)
    }

    async fn write_batch(&self, batch: Vec<(usize, Queued)>) {
        let writes: Vec<Write> = batch
            .iter()
            .map(|(_, q)| Write {
                key: q.key.clone(),
                value: q.value.clone(),
                version: q.version,
            })
            .collect();
        match self.store.upsert_batch(&writes).await {
            Ok(outcome) => {
                self.counters
                    .coalesced
                    .fetch_add(outcome.coalesced as u64, Ordering::Relaxed);
                self.done(batch);
            }
            Err(e) if e.is_retryable() => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                debug!(ns = %self.ns, error = %e, writes = batch.len(), "store unavailable; retrying later");
                let delay = self.config.retry_backoff;
                self.requeue(batch, delay);
                // Give the store the backoff before the next pass.
                tokio::time::sleep(delay).await;
            }
            Err(e) => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(ns = %self.ns, error = %e, writes = batch.len(), "batch refused; writing one by one");
                for item in batch {
                    let write = Write {
                        key: item.1.key.clone(),
                        value: item.1.value.clone(),
                        version: item.1.version,
                    };
                    match self.store.write(write).await {
                        Ok(_) => self.done(vec![item]),
                        Err(e) => {
                            self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                            let counts = !e.is_retryable();
                            self.failed(item, &e, counts);
                        }
                    }
                }
            }
        }
    }

    fn failed(&self, (p, mut q): (usize, Queued), e: &StoreError, counts: bool) {
        if counts {
            q.attempts += 1;
        }
        if q.attempts >= self.config.max_attempts {
            warn!(ns = %self.ns, version = q.version, error = %e, "write-behind write moved to the dead-letter list");
            let mut dead = self.dead.lock();
            dead.total += 1;
            dead.list.push_back(DeadLetter {
                key: q.key.clone(),
                version: q.version,
                delete: q.value.is_none(),
                attempts: q.attempts,
                error: e.to_string(),
            });
            while dead.list.len() > DEAD_LETTER_KEEP {
                dead.list.pop_front();
            }
            drop(dead);
            self.done(vec![(p, q)]);
            return;
        }
        let shift = q.attempts.min(16);
        let delay = self
            .config
            .retry_backoff
            .saturating_mul(1 << shift)
            .min(self.config.max_backoff);
        self.requeue(vec![(p, q)], delay);
    }

    /// Puts failed writes back at the end of their queues, to be tried after `delay`.
    /// The end, so that one refused write does not hold up the writes behind it (order
    /// does not matter to the store: writes are version-guarded).
    fn requeue(&self, batch: Vec<(usize, Queued)>, delay: Duration) {
        let now = Instant::now();
        self.counters
            .retries
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for (p, mut q) in batch {
            q.not_before = Some(now + delay);
            q.failed_at = Some(now);
            self.parts[p].lock().queue.push_back(q);
        }
    }

    /// Writes that reached the store (or the dead-letter list): unpin and forget them.
    fn done(&self, batch: Vec<(usize, Queued)>) {
        let n = batch.len() as u64;
        for (p, q) in &batch {
            let mut part = self.parts[*p].lock();
            if part
                .latest
                .get(&q.key)
                .is_some_and(|l| l.version == q.version)
            {
                part.latest.remove(&q.key);
                // Under the partition lock no write can slip in between the check and
                // the unpin.
                if self.engines[*p]
                    .engine
                    .peek(&q.key)
                    .is_some_and(|e| e.version == q.version && e.pinned)
                {
                    self.engines[*p].engine.unpin(&q.key);
                }
            }
        }
        self.depth.fetch_sub(n, Ordering::Relaxed);
        self.counters.flushed.fetch_add(n, Ordering::Relaxed);
        if let Some(wal) = &self.wal {
            let mut unwritten = self.unwritten.lock();
            for (_, q) in &batch {
                unwritten.remove(&q.seq);
            }
            let low = unwritten
                .first()
                .copied()
                .unwrap_or_else(|| self.next_seq.load(Ordering::Relaxed));
            drop(unwritten);
            wal.release_below(low);
        }
    }
}
