//! Caching strategies of a namespace with a backing store: read-through with owner-side
//! load coalescing, negative caching, refresh-ahead and stale-while-revalidate; and
//! write-through, write-behind and write-around.
//!
//! # Reads
//! A hit is served from the engine exactly like a plain namespace's (one extra flag
//! test), so read-through costs nothing on hits. On a miss the first request starts a
//! load task; every other miss for the key while it runs waits for the same result
//! (counted as a coalesced load): however many clients ask, the store sees one read.
//! The task, not the request, owns the load, so a client that goes away does not cancel
//! it for the others. Loader errors are returned to every waiter and never cached.
//!
//! With `negative_ttl`, "the store has no such key" is cached as an entry flagged
//! [`NEGATIVE`] (empty value) that reads report as a miss without asking the store.
//!
//! Refresh-ahead: a hit on a value whose remaining TTL is below
//! `(1 - refresh_ahead_factor) * default_ttl` returns it and starts a background load
//! (at most one per key: it shares the load table). Stale-while-revalidate: values are
//! kept `stale_while_revalidate` longer than their TTL; a hit in that window is
//! returned with `ttl_ms = 0` and starts the same background load. Refreshes replace
//! the value only if it is still the version they refreshed.
//!
//! # Racing loads and writes
//! A load reads the store, then inserts into the cache only if the key is still absent
//! (a refresh: still at the version it refreshed), while holding the load table's lock.
//! Every write marks an in-flight load of its key stale (under the same lock) after it
//! changed the store and before it changes the cache, and a stale load does not insert.
//! So a load that read the store before a write can never put the old value back after
//! the write.
//!
//! # Writes
//! - cache-only: the engine, as in a namespace without store.
//! - write-through: under a per-key lock (striped), the store write first (version
//!   guarded), then the cache. A store error reaches the client and leaves the cache
//!   unchanged; a store timeout is reported as `timeout` (outcome unknown).
//! - write-around: the store write, then the cached copy is dropped.
//! - write-behind: the cache (pinned) and the queue (see [`crate::writebehind`]).
//!
//! Conditions (`IfAbsent`, `IfVersion`) compare with the cached copy; on a read-through
//! namespace a cold key is loaded first, so they see the store's value. Write-around
//! keeps no copy, so it refuses conditional writes (`unsupported`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use parking_lot::Mutex;
use ringcache_engine::{Condition, EntryView, InsertOptions};
use ringcache_proto::{Entry, ErrorCode, Hints, WireError, WriteOverride};
use ringcache_store::{Applied, Store, StoreError, Write};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{FsyncMode, NamespaceConfig, ReadMode, WriteMode};
use crate::handler::insert_error;
use crate::keyspace::Partition;
use crate::wal::{FsyncPolicy, Wal, WalOptions};
use crate::writebehind::{QueueFull, WriteBehind};

/// Engine flag of a cached "not in the store" (negative caching).
pub const NEGATIVE: u32 = 1;

/// Stripes of the per-key lock that orders write-through and write-around writes.
const STRIPES: usize = 1024;

/// Store attempts of one write-through when the store holds a newer version.
const STALE_ATTEMPTS: usize = 3;

type LoadResult = Result<Option<Entry>, WireError>;

#[derive(Debug)]
struct LoadSlot {
    result: watch::Sender<Option<LoadResult>>,
    stale: AtomicBool,
}

/// Counters shared by every configuration of the namespace.
#[derive(Debug, Default)]
pub struct StrategyCounters {
    /// Values read from the store.
    pub store_loads: AtomicU64,
    /// Failed store calls made for reads and write-through/around.
    pub store_errors: AtomicU64,
    /// Background reloads started.
    pub refreshes: AtomicU64,
    /// Misses that waited for another request's load.
    pub coalesced_loads: AtomicU64,
}

/// How a write changed the key.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    /// The write's version.
    pub version: u64,
    /// Whether the cache held the key before (what `Deleted(bool)` reports).
    pub existed: bool,
}

/// The strategies of one namespace.
#[derive(Debug)]
pub struct Strategy {
    name: String,
    store: Store,
    config: NamespaceConfig,
    partitions: Arc<[Partition]>,
    loads: Mutex<HashMap<Bytes, Arc<LoadSlot>>>,
    stripes: Box<[tokio::sync::Mutex<()>]>,
    wb: Option<Arc<WriteBehind>>,
    counters: Arc<StrategyCounters>,
}

fn store_error(e: &StoreError) -> WireError {
    match e {
        StoreError::Timeout { .. } => WireError::new(
            ErrorCode::Timeout,
            format!("store: {e}; the write may or may not have applied"),
        ),
        _ => WireError::new(ErrorCode::StoreError, format!("store: {e}")),
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Strategy {
    /// Starts the strategies: opens (and replays) the write-behind log when configured
    /// and starts the flusher.
    ///
    /// # Errors
    /// The log cannot be opened or replayed.
    pub async fn start(
        name: &str,
        config: &NamespaceConfig,
        store: Store,
        partitions: Arc<[Partition]>,
        wal_dir: Option<&Path>,
    ) -> Result<Self, String> {
        let wb = if config.write == WriteMode::WriteBehind {
            let wbc = config.write_behind.clone();
            let (wal, replay, next_seq) = match (wbc.wal, wal_dir) {
                (true, Some(dir)) => {
                    let fsync = match wbc.fsync {
                        FsyncMode::Always => FsyncPolicy::Always,
                        FsyncMode::Interval => FsyncPolicy::Interval(wbc.fsync_interval),
                        FsyncMode::Never => FsyncPolicy::Never,
                    };
                    let dir = dir.to_owned();
                    let opened = tokio::task::spawn_blocking(move || {
                        Wal::open(
                            &dir,
                            WalOptions {
                                fsync,
                                segment_bytes: 64 << 20,
                            },
                        )
                    })
                    .await
                    .map_err(|e| format!("write-behind log: {e}"))?
                    .map_err(|e| format!("write-behind log: {e}"))?;
                    let (wal, replay) = opened;
                    if replay.truncated_bytes > 0 {
                        warn!(ns = %name, bytes = replay.truncated_bytes, "write-behind log: cut a torn tail (writes never acknowledged)");
                    }
                    (Some(wal), replay.records, replay.next_seq)
                }
                _ => (None, Vec::new(), 1),
            };
            let first_seq = replay
                .iter()
                .map(|r| r.seq + 1)
                .max()
                .unwrap_or(1)
                .max(next_seq);
            let wb = Arc::new(WriteBehind::new(
                name,
                wbc,
                store.clone(),
                Arc::clone(&partitions),
                wal,
                first_seq,
            ));
            let mut restored = 0usize;
            for r in replay {
                let Some(part) = partitions.get(r.partition as usize) else {
                    warn!(ns = %name, partition = r.partition, "write-behind log record for a partition this node does not have; skipped");
                    continue;
                };
                part.observe_version(r.version);
                let newer_cached = part
                    .engine
                    .peek(&r.key)
                    .is_some_and(|e| e.version >= r.version);
                if !newer_cached {
                    match &r.value {
                        Some(v) => {
                            let mut opts = InsertOptions::new().version(r.version).pinned(true);
                            opts.ttl = r.ttl_ms.map(Duration::from_millis);
                            if let Err(e) = part.engine.insert(&r.key, v.clone(), &opts) {
                                warn!(ns = %name, error = %e, "cannot restore a logged write into the cache; it is still queued for the store");
                            }
                        }
                        None => {
                            part.engine.remove(&r.key);
                        }
                    }
                }
                wb.restore(r.partition as usize, r.seq, r.key, r.value, r.version);
                restored += 1;
            }
            if restored > 0 {
                info!(ns = %name, writes = restored, "write-behind log replayed; flushing");
            }
            wb.spawn();
            Some(wb)
        } else {
            None
        };
        Ok(Self {
            name: name.to_owned(),
            store,
            config: config.clone(),
            partitions,
            loads: Mutex::default(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            wb,
            counters: Arc::default(),
        })
    }

    /// Whether `config` keeps this store and these write settings (so the queue and the
    /// store connection carry over a change).
    #[must_use]
    pub fn same_store_and_writes(&self, config: &NamespaceConfig) -> bool {
        self.config.store == config.store
            && self.config.write == config.write
            && self.config.write_behind == config.write_behind
    }

    /// The same store, queue and counters under new read settings.
    #[must_use]
    pub fn reconfigured(&self, config: &NamespaceConfig) -> Self {
        Self {
            name: self.name.clone(),
            store: self.store.clone(),
            config: config.clone(),
            partitions: Arc::clone(&self.partitions),
            loads: Mutex::default(),
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            wb: self.wb.clone(),
            counters: Arc::clone(&self.counters),
        }
    }

    /// The store.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The write-behind queues, when writing behind.
    #[must_use]
    pub fn write_behind(&self) -> Option<&Arc<WriteBehind>> {
        self.wb.as_ref()
    }

    /// Counters.
    #[must_use]
    pub fn counters(&self) -> &StrategyCounters {
        &self.counters
    }

    /// Store failures, reads and writes (write-behind flushes included).
    #[must_use]
    pub fn store_errors(&self) -> u64 {
        self.counters.store_errors.load(Ordering::Relaxed)
            + self.wb.as_ref().map_or(0, |w| w.store_errors())
    }

    /// Stops the flusher (the namespace's write settings were replaced).
    pub fn stop(&self) {
        if let Some(wb) = &self.wb {
            wb.stop();
        }
    }

    /// Graceful shutdown: drain the write-behind queue.
    pub async fn shutdown(&self, ns: &str) {
        if let Some(wb) = &self.wb {
            let left = wb.drain(wb.config().drain_timeout).await;
            if left > 0 {
                if wb.wal().is_some() {
                    warn!(
                        ns,
                        writes = left,
                        "write-behind queue not drained; the log keeps them for the next start"
                    );
                } else {
                    warn!(
                        ns,
                        writes = left,
                        "write-behind queue not drained and no log: these writes are lost"
                    );
                }
            } else {
                info!(ns, "write-behind queue drained");
            }
        }
    }

    fn swr(&self) -> Duration {
        self.config.stale_while_revalidate.unwrap_or_default()
    }

    /// The engine TTL of a value that should live `ttl`.
    fn engine_ttl(&self, ttl: Option<Duration>) -> Option<Duration> {
        ttl.map(|t| t + self.swr())
    }

    /// An engine entry as the client sees it (the stale window hidden).
    fn entry(&self, v: EntryView) -> Entry {
        let swr = self.swr();
        Entry {
            value: v.value,
            version: v.version,
            ttl_ms: v.expires_in.map(|d| ms(d.saturating_sub(swr))),
        }
    }

    /// A read: served from the cache, or a load to wait for.
    pub fn get(
        self: &Arc<Self>,
        p: usize,
        key: &Bytes,
    ) -> Result<Option<Entry>, BoxFuture<'static, LoadResult>> {
        self.get_as(p, key, true)
    }

    /// A read; `load: false` answers a miss as a miss even on a read-through namespace
    /// (a per-request override).
    pub fn get_as(
        self: &Arc<Self>,
        p: usize,
        key: &Bytes,
        load: bool,
    ) -> Result<Option<Entry>, BoxFuture<'static, LoadResult>> {
        match self.partitions[p].engine.get_entry(key) {
            Some(v) if v.flags & NEGATIVE != 0 => Ok(None),
            Some(v) => {
                self.maybe_refresh(p, key, &v);
                Ok(Some(self.entry(v)))
            }
            None if load && self.config.read == ReadMode::ReadThrough => {
                Err(self.load(p, key.clone()))
            }
            None => Ok(None),
        }
    }

    /// The cached value without counting an access; negative entries read as absent.
    fn peek(&self, p: usize, key: &[u8]) -> Option<EntryView> {
        self.partitions[p]
            .engine
            .peek(key)
            .filter(|v| v.flags & NEGATIVE == 0)
    }

    /// Whether the key is cached (negative entries are not).
    #[must_use]
    pub fn contains(&self, p: usize, key: &[u8]) -> bool {
        self.peek(p, key).is_some()
    }

    fn maybe_refresh(self: &Arc<Self>, p: usize, key: &Bytes, v: &EntryView) {
        if self.config.read != ReadMode::ReadThrough {
            return;
        }
        let (Some(ttl), Some(left)) = (self.config.default_ttl, v.expires_in) else {
            return;
        };
        let swr = self.swr();
        let stale = !swr.is_zero() && left <= swr;
        let due = self
            .config
            .refresh_ahead_factor
            .is_some_and(|f| left.saturating_sub(swr) < ttl.mul_f64(1.0 - f));
        if (stale || due) && !v.pinned {
            let _ = self.start_load(p, key.clone(), Some(v.version));
        }
    }

    /// Waits for the key's load, starting it if none runs.
    fn load(self: &Arc<Self>, p: usize, key: Bytes) -> BoxFuture<'static, LoadResult> {
        let mut rx = match self.start_load(p, key, None) {
            Ok(rx) => rx,
            // A load finished between this request's miss and now.
            Err(cached) => return Box::pin(std::future::ready(Ok(cached))),
        };
        Box::pin(async move {
            match rx.wait_for(Option::is_some).await {
                Ok(r) => r.clone().unwrap_or_else(|| {
                    Err(WireError::new(
                        ErrorCode::Internal,
                        "load ended without a result",
                    ))
                }),
                Err(_) => Err(WireError::new(
                    ErrorCode::Internal,
                    "load task ended abnormally",
                )),
            }
        })
    }

    /// Joins the key's running load or starts one (`refresh`: of this cached version).
    ///
    /// # Errors
    /// Not an error: for a read (`refresh: None`), the value a load cached after the
    /// caller's miss (a load inserts and leaves the table under the table's lock, so
    /// looking under it closes the gap between the miss and this call).
    fn start_load(
        self: &Arc<Self>,
        p: usize,
        key: Bytes,
        refresh: Option<u64>,
    ) -> Result<watch::Receiver<Option<LoadResult>>, Option<Entry>> {
        let mut loads = self.loads.lock();
        if let Some(slot) = loads.get(&key) {
            if refresh.is_none() {
                self.counters
                    .coalesced_loads
                    .fetch_add(1, Ordering::Relaxed);
            }
            return Ok(slot.result.subscribe());
        }
        let cached = self.partitions[p].engine.peek(&key);
        match (refresh, cached) {
            (None, Some(v)) => return Err((v.flags & NEGATIVE == 0).then(|| self.entry(v))),
            // Already refreshed (or rewritten) since the caller read it: nothing to do.
            (Some(version), cached) if cached.as_ref().is_none_or(|v| v.version != version) => {
                return Err(None);
            }
            _ => {}
        }
        let slot = Arc::new(LoadSlot {
            result: watch::Sender::new(None),
            stale: AtomicBool::new(false),
        });
        let rx = slot.result.subscribe();
        loads.insert(key.clone(), Arc::clone(&slot));
        drop(loads);
        if refresh.is_some() {
            self.counters.refreshes.fetch_add(1, Ordering::Relaxed);
        }
        let me = Arc::clone(self);
        tokio::spawn(async move { me.run_load(p, key, slot, refresh).await });
        Ok(rx)
    }

    /// What the store (or a queued write-behind write, which is newer) holds.
    async fn fetch(&self, p: usize, key: &Bytes) -> Result<Option<(Bytes, u64)>, WireError> {
        if let Some(wb) = &self.wb
            && let Some(pending) = wb.pending(p, key)
        {
            return Ok(pending.value.map(|v| (v, pending.version)));
        }
        match self.store.get(key).await {
            Ok(v) => {
                self.counters.store_loads.fetch_add(1, Ordering::Relaxed);
                Ok(v.map(|v| (v.value, v.version)))
            }
            Err(e) => {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                Err(store_error(&e))
            }
        }
    }

    async fn run_load(
        self: Arc<Self>,
        p: usize,
        key: Bytes,
        slot: Arc<LoadSlot>,
        refresh: Option<u64>,
    ) {
        let fetched = self.fetch(p, &key).await;
        let part = &self.partitions[p];
        let condition = refresh.map_or(Condition::IfAbsent, Condition::IfVersion);
        let mut loads = self.loads.lock();
        let fresh = !slot.stale.load(Ordering::Acquire);
        let result = match fetched {
            Ok(Some((value, version))) => {
                part.observe_version(version);
                let ttl = self.config.default_ttl;
                if fresh {
                    let mut opts = InsertOptions::new().version(version).condition(condition);
                    opts.ttl = self.engine_ttl(ttl);
                    // A value too large for the partition is served but not cached.
                    let _ = part.engine.insert(&key, value.clone(), &opts);
                }
                Ok(Some(Entry {
                    value,
                    version,
                    ttl_ms: ttl.map(ms),
                }))
            }
            Ok(None) => {
                if fresh {
                    match (refresh, self.config.negative_ttl) {
                        (Some(v), _) => {
                            let _ = part.engine.remove_if(&key, Condition::IfVersion(v));
                        }
                        (None, Some(neg)) => {
                            let opts = InsertOptions::new()
                                .flags(NEGATIVE)
                                .ttl(neg)
                                .condition(Condition::IfAbsent);
                            let _ = part.engine.insert(&key, Bytes::new(), &opts);
                        }
                        (None, None) => {}
                    }
                }
                Ok(None)
            }
            Err(e) => Err(e),
        };
        if loads.get(&key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
            loads.remove(&key);
        }
        drop(loads);
        slot.result.send_replace(Some(result));
    }

    /// Marks a running load of `key` stale: it will not insert what it read.
    fn invalidate_loads(&self, key: &[u8]) {
        if let Some(slot) = self.loads.lock().get(key) {
            slot.stale.store(true, Ordering::Release);
        }
    }

    /// Makes sure a conditional write sees the store's value of a cold key.
    async fn warm(
        self: &Arc<Self>,
        p: usize,
        key: &Bytes,
        condition: Condition,
    ) -> Result<(), WireError> {
        if condition != Condition::Always
            && self.config.read == ReadMode::ReadThrough
            && let Err(load) = self.get(p, key)
        {
            load.await?;
        }
        Ok(())
    }

    /// Checks a condition against the cached copy.
    fn check(
        &self,
        p: usize,
        key: &[u8],
        condition: Condition,
    ) -> Result<Option<EntryView>, WireError> {
        let current = self.peek(p, key);
        let ok = match condition {
            Condition::Always => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfVersion(v) => current.as_ref().is_some_and(|c| c.version == v),
        };
        if ok {
            Ok(current)
        } else {
            Err(insert_error(
                ringcache_engine::InsertError::ConditionFailed {
                    current: current.map(|c| c.version),
                },
                0,
            ))
        }
    }

    /// A write (`value: None` deletes) through the namespace's write mode.
    ///
    /// # Errors
    /// The store's, the queue's or the condition's error, as a [`WireError`].
    pub async fn write(
        self: Arc<Self>,
        p: usize,
        key: Bytes,
        value: Option<Bytes>,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<Written, WireError> {
        self.write_as(p, key, value, ttl, condition, None).await
    }

    /// A write through `mode` instead of the namespace's write setting (a per-request
    /// override); `None`: the namespace's. Mixing modes is safe: every store write is
    /// version-guarded, so a queued older write-behind write can never overwrite a newer
    /// write-through one.
    ///
    /// # Errors
    /// As [`Strategy::write`].
    pub async fn write_as(
        self: Arc<Self>,
        p: usize,
        key: Bytes,
        value: Option<Bytes>,
        ttl: Option<Duration>,
        condition: Condition,
        mode: Option<WriteOverride>,
    ) -> Result<Written, WireError> {
        let mode = mode.map_or(self.config.write, |m| match m {
            WriteOverride::CacheOnly => WriteMode::CacheOnly,
            WriteOverride::WriteThrough => WriteMode::WriteThrough,
            WriteOverride::WriteAround => WriteMode::WriteAround,
        });
        match mode {
            WriteMode::CacheOnly => {
                self.warm(p, &key, condition).await?;
                self.write_cache(p, &key, value, ttl, condition, false)
            }
            WriteMode::WriteBehind => {
                self.warm(p, &key, condition).await?;
                self.write_queued(p, key, value, ttl, condition).await
            }
            WriteMode::WriteThrough | WriteMode::WriteAround => {
                let around = mode == WriteMode::WriteAround;
                if around && condition != Condition::Always {
                    return Err(WireError::new(
                        ErrorCode::Unsupported,
                        format!(
                            "namespace {} writes around the cache: conditional writes need a cached copy to compare with",
                            self.name
                        ),
                    ));
                }
                self.warm(p, &key, condition).await?;
                self.write_store(p, key, value, ttl, condition, around)
                    .await
            }
        }
    }

    /// The cache side of a write, at a new version.
    fn write_cache(
        &self,
        p: usize,
        key: &[u8],
        value: Option<Bytes>,
        ttl: Option<Duration>,
        condition: Condition,
        pinned: bool,
    ) -> Result<Written, WireError> {
        let part = &self.partitions[p];
        let version = part.next_version();
        self.cache_at(p, key, value, ttl, condition, pinned, version)
    }

    #[allow(clippy::too_many_arguments)]
    fn cache_at(
        &self,
        p: usize,
        key: &[u8],
        value: Option<Bytes>,
        ttl: Option<Duration>,
        condition: Condition,
        pinned: bool,
        version: u64,
    ) -> Result<Written, WireError> {
        let engine = &self.partitions[p].engine;
        self.invalidate_loads(key);
        match value {
            Some(v) => {
                let existed = self.peek(p, key).is_some();
                let mut opts = InsertOptions::new()
                    .version(version)
                    .condition(condition)
                    .pinned(pinned);
                opts.ttl = self.engine_ttl(ttl);
                let len = key.len() + v.len();
                engine
                    .insert(key, v, &opts)
                    .map_err(|e| insert_error(e, len))?;
                Ok(Written { version, existed })
            }
            None => {
                let removed = engine
                    .remove_if(key, condition)
                    .map_err(|e| insert_error(e, 0))?;
                Ok(Written {
                    version,
                    existed: removed.is_some_and(|r| r.flags & NEGATIVE == 0),
                })
            }
        }
    }

    async fn write_queued(
        self: &Arc<Self>,
        p: usize,
        key: Bytes,
        value: Option<Bytes>,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<Written, WireError> {
        let Some(wb) = &self.wb else {
            return Err(WireError::new(
                ErrorCode::Internal,
                "write-behind namespace without a queue",
            ));
        };
        let mut existed = false;
        let submitted = wb.submit(p, &key, value.clone(), ttl.map(ms), || {
            let w = self.write_cache(p, &key, value.clone(), ttl, condition, true)?;
            existed = w.existed;
            Ok::<_, WireError>(w.version)
        });
        let (version, logged) = match submitted {
            Err(QueueFull::Full { capacity }) => {
                return Err(WireError::new(
                    ErrorCode::Backpressure,
                    format!(
                        "namespace {}: the write-behind queue is full ({capacity} writes not yet in the store); retry later",
                        self.name
                    ),
                )
                .with_hints(Hints {
                    retry_after_ms: Some(100),
                    ..Hints::default()
                }));
            }
            Ok(r) => r?,
        };
        if let Some(logged) = logged {
            logged.await.map_err(|e| {
                WireError::new(
                    ErrorCode::Internal,
                    format!(
                        "write-behind log: {e}; the write is queued but may not survive a crash"
                    ),
                )
            })?;
        }
        Ok(Written { version, existed })
    }

    /// Queues a write copied from a partition's previous owner at its own version
    /// (cache pinned, queue, log), as if it had been acknowledged here.
    ///
    /// # Errors
    /// As a write-behind write.
    pub async fn adopt(
        self: &Arc<Self>,
        p: usize,
        key: Bytes,
        value: Option<Bytes>,
        ttl: Option<Duration>,
        version: u64,
    ) -> Result<(), WireError> {
        let Some(wb) = &self.wb else {
            return Ok(());
        };
        let submitted = wb.submit(p, &key, value.clone(), ttl.map(ms), || {
            self.cache_at(
                p,
                &key,
                value.clone(),
                ttl,
                Condition::Always,
                true,
                version,
            )
            .map(|w| w.version)
        });
        let logged = match submitted {
            Err(QueueFull::Full { capacity }) => {
                return Err(WireError::new(
                    ErrorCode::Backpressure,
                    format!(
                        "namespace {}: write-behind queue full ({capacity}) while taking over a partition",
                        self.name
                    ),
                ));
            }
            Ok(r) => r?.1,
        };
        if let Some(logged) = logged {
            logged.await.map_err(|e| {
                WireError::new(ErrorCode::Internal, format!("write-behind log: {e}"))
            })?;
        }
        Ok(())
    }

    async fn write_store(
        self: &Arc<Self>,
        p: usize,
        key: Bytes,
        value: Option<Bytes>,
        ttl: Option<Duration>,
        condition: Condition,
        around: bool,
    ) -> Result<Written, WireError> {
        let stripe = (xxhash_rust::xxh3::xxh3_64(&key) % STRIPES as u64) as usize;
        let _order = self.stripes[stripe].lock().await;
        let existed = self.check(p, &key, condition)?.is_some();
        let part = &self.partitions[p];
        let mut version = part.next_version();
        let mut applied = Applied::Stale;
        for _ in 0..STALE_ATTEMPTS {
            let write = Write {
                key: key.clone(),
                value: value.clone(),
                version,
            };
            applied = self.store.write(write).await.map_err(|e| {
                self.counters.store_errors.fetch_add(1, Ordering::Relaxed);
                store_error(&e)
            })?;
            if applied.is_written() {
                break;
            }
            // The row carries a newer version than this partition's clock (written by
            // something else): move past it and write again.
            if let Ok(Some(row)) = self.store.get_row(&key).await {
                part.observe_version(row.version);
            }
            version = part.next_version();
        }
        if !applied.is_written() {
            return Err(WireError::new(
                ErrorCode::Internal,
                "the store kept refusing the write as older than its row",
            ));
        }
        if around {
            self.invalidate_loads(&key);
            part.engine.remove(&key);
            return Ok(Written { version, existed });
        }
        // The store holds the write; a cache that cannot hold it drops its old copy.
        match self.cache_at(p, &key, value, ttl, Condition::Always, false, version) {
            Ok(w) => Ok(Written {
                version,
                existed: w.existed || existed,
            }),
            Err(_) => {
                part.engine.remove(&key);
                Ok(Written { version, existed })
            }
        }
    }
}
