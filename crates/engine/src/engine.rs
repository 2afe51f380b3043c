//! The sharded engine: the public, thread-safe face of the shards.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::clock::{Clock, SystemClock};
use crate::entry::{Condition, EntryRef, EntryView, InsertError, InsertOptions, InsertOutcome};
use crate::shard::{Now, Shard, Sink};
use crate::stats::{Removal, Stats};
use crate::table::TableHint;
use crate::{Capacity, Policy};

/// Called with every removed entry, after the shard lock is released, on the thread
/// whose call caused the removal. It MUST NOT block for long: it runs inline.
pub type RemovalListener = Arc<dyn Fn(&Removal) + Send + Sync>;

/// Shards are split until each holds at least this many entries (entry mode) ...
/// Replays with 34-75 entries per shard kept one shard's miss ratios (within 0.4%);
/// with 13-30 they missed up to 2% more, with 3-8 up to 13% (docs/benchmarks/engine.md, "Two threads"). 128 gives an
/// engine of 10,000 entries 64 shards, which two threads sharing it run faster on than
/// on 16 (a fifth, by the median of five runs).
const MIN_SHARD_ENTRIES: u64 = 128;
/// ... or bytes (byte mode). Below that a shard's policy sees too few entries to tell
/// hot from cold (the adaptive window is 1% of a shard), and the largest entry one
/// shard can take shrinks with it (variable sizes lost most of their byte hit ratio at
/// 64 shards of 78 KiB).
const MIN_SHARD_BYTES: u64 = 512 << 10;
/// Default upper bound on shards: enough that a few dozen threads rarely collide.
const MAX_DEFAULT_SHARDS: u64 = 64;

/// A lock on its own cache lines, so neighbouring shards do not false-share.
#[repr(align(128))]
#[derive(Debug)]
struct Padded<T>(T);

/// A shard's lock and, outside it, where its hash table is (read without the lock, to
/// prefetch: see [`Engine::prefetch_table`]).
struct ShardCell {
    lock: Mutex<Shard>,
    hint: Arc<TableHint>,
}

impl std::ops::Deref for ShardCell {
    type Target = Mutex<Shard>;
    fn deref(&self) -> &Mutex<Shard> {
        &self.lock
    }
}

/// A key's hash in one engine, from [`Engine::prefetch_table`], for the later prefetch
/// steps of the same key in the same engine (a hash from another engine or key only
/// wastes the prefetch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrefetchHash(u64);

/// A byte- or entry-bounded in-memory store with a pluggable eviction policy.
///
/// Keys hash (seeded: two multiplies for keys of up to 16 bytes, xxh3 beyond) to one of a power-of-two number of shards, each behind its
/// own mutex with its own slab, table, policy and expiry schedule; the bound is split
/// evenly between shards. Every call locks exactly one shard (whole-engine calls lock
/// them one after another), so calls on different keys mostly run in parallel. The cost:
/// the policy is per shard, so its view of recency and frequency is per shard too, and
/// one entry may be at most `capacity / shards` (see [`EngineBuilder::shards`]).
///
/// ```
/// use bytes::Bytes;
/// use ringcache_engine::{Capacity, Engine, InsertOptions, Policy};
///
/// let engine = Engine::builder(Capacity::Bytes(1 << 20)).policy(Policy::Lru).build();
/// engine.insert(b"k", Bytes::from_static(b"v"), &InsertOptions::new()).unwrap();
/// assert_eq!(engine.get(b"k"), Some(Bytes::from_static(b"v")));
/// ```
pub struct Engine {
    shards: Box<[Padded<ShardCell>]>,
    mask: u64,
    seed: u64,
    clock: Arc<dyn Clock>,
    listener: Option<RemovalListener>,
    capacity: Capacity,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.shards.len())
            .field("capacity", &self.capacity)
            .field("policy", &self.policy())
            .finish_non_exhaustive()
    }
}

/// Builds an [`Engine`].
#[derive(Clone)]
pub struct EngineBuilder {
    capacity: Capacity,
    policy: Policy,
    shards: Option<usize>,
    clock: Option<Arc<dyn Clock>>,
    listener: Option<RemovalListener>,
    seed: u64,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("capacity", &self.capacity)
            .field("policy", &self.policy)
            .field("shards", &self.shards)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// A builder for an engine bounded by `capacity`, with the default policy.
    #[must_use]
    pub fn new(capacity: Capacity) -> Self {
        Self {
            capacity,
            policy: Policy::default(),
            shards: None,
            clock: None,
            listener: None,
            seed: 0x52_49_4E_47_43_41_43_48, // "RINGCACH"
        }
    }

    /// The eviction policy (default: [`Policy::Adaptive`]).
    #[must_use]
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The number of shards, rounded up to a power of two (at least 1). Default: enough
    /// that each shard holds at least 128 entries or 512 KiB, at most 64. More shards mean
    /// less lock contention but a coarser policy and a smaller largest entry.
    #[must_use]
    pub fn shards(mut self, shards: usize) -> Self {
        self.shards = Some(shards);
        self
    }

    /// The clock (default: [`SystemClock`]).
    #[must_use]
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A listener for removals of every cause.
    #[must_use]
    pub fn removal_listener(mut self, listener: impl Fn(&Removal) + Send + Sync + 'static) -> Self {
        self.listener = Some(Arc::new(listener));
        self
    }

    /// The hash seed (default: fixed, so runs are reproducible). A node facing untrusted
    /// keys should pass a random seed.
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Builds the engine.
    #[must_use]
    pub fn build(self) -> Engine {
        let limit = self.capacity.limit();
        let entries_mode = matches!(self.capacity, Capacity::Entries(_));
        let shards = match self.shards {
            Some(n) => n.max(1).next_power_of_two(),
            None => {
                let per = if entries_mode {
                    MIN_SHARD_ENTRIES
                } else {
                    MIN_SHARD_BYTES
                };
                let n = (limit / per).clamp(1, MAX_DEFAULT_SHARDS);
                // The largest power of two not above `n`, so every shard keeps at least
                // `per` (rounding up gave 32 shards of 312 entries for 10,000 entries).
                usize::try_from(1u64 << (63 - n.leading_zeros())).unwrap_or(1)
            }
        };
        let n = shards as u64;
        let shards: Box<[_]> = (0..n)
            .map(|s| {
                let share = limit / n + u64::from(s < limit % n);
                let hint = Arc::new(TableHint::default());
                Padded(ShardCell {
                    lock: Mutex::new(Shard::new(
                        share,
                        entries_mode,
                        self.policy,
                        self.seed ^ s.wrapping_mul(0x9E37_79B9_7F4A_7C15),
                        Arc::clone(&hint),
                    )),
                    hint,
                })
            })
            .collect();
        Engine {
            mask: n - 1,
            shards,
            seed: self.seed,
            clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock::new())),
            listener: self.listener,
            capacity: self.capacity,
        }
    }
}

impl Engine {
    /// Starts building an engine bounded by `capacity`.
    #[must_use]
    pub fn builder(capacity: Capacity) -> EngineBuilder {
        EngineBuilder::new(capacity)
    }

    #[inline]
    fn hash(&self, key: &[u8]) -> u64 {
        crate::hash::hash(key, self.seed)
    }

    /// The shard for a hash: bits 32.. of the hash, which the table's home group (low
    /// bits) does not use and its tag (top 16 bits) does not use below 65,536 shards.
    #[inline]
    fn shard(&self, hash: u64) -> &ShardCell {
        &self.shards[((hash >> 32) & self.mask) as usize].0
    }

    #[inline]
    fn sink(&self) -> Sink {
        Sink {
            enabled: self.listener.is_some(),
            events: Vec::new(),
        }
    }

    #[inline]
    fn deliver(&self, sink: Sink) {
        if let Some(l) = &self.listener {
            for r in &sink.events {
                l(r);
            }
        }
    }

    /// Runs `f` on the key's shard, then hands removals to the listener.
    #[inline]
    fn with_shard<R>(
        &self,
        key: &[u8],
        f: impl FnOnce(&mut Shard, u64, &mut Now<'_>, &mut Sink) -> R,
    ) -> R {
        let hash = self.hash(key);
        let mut sink = self.sink();
        let mut now = Now::new(&*self.clock);
        let r = {
            let mut shard = self.shard(hash).lock();
            f(&mut shard, hash, &mut now, &mut sink)
        };
        if !sink.events.is_empty() {
            self.deliver(sink);
        }
        r
    }

    /// Runs `f` on every shard in turn.
    fn each_shard(&self, mut f: impl FnMut(&mut Shard, &mut Now<'_>, &mut Sink)) {
        for s in self.shards.iter() {
            let mut sink = self.sink();
            let mut now = Now::new(&*self.clock);
            f(&mut s.0.lock(), &mut now, &mut sink);
            if !sink.events.is_empty() {
                self.deliver(sink);
            }
        }
    }

    /// The value of a live entry; counts as an access (hit or miss).
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<Bytes> {
        self.with_shard(key, |s, h, now, sink| s.get(key, h, now, sink))
    }

    /// The value and metadata of a live entry; counts as an access.
    pub fn get_entry(&self, key: &[u8]) -> Option<EntryView> {
        self.with_shard(key, |s, h, now, sink| s.get_entry(key, h, now, sink))
    }

    /// Runs `f` on the live entry's value and metadata, borrowed, and returns what it
    /// returns; `None` (without calling `f`) if there is no live entry. Counts as an
    /// access, like [`Engine::get_entry`], but copies nothing: no value handle is cloned
    /// or dropped, so a caller that only writes the value somewhere (the node encoding a
    /// response) saves a reference-count round trip on a line other threads share. `f`
    /// runs under the shard lock: it MUST be short and MUST NOT call into this engine.
    #[inline]
    pub fn get_entry_with<R>(&self, key: &[u8], f: impl FnOnce(EntryRef<'_>) -> R) -> Option<R> {
        self.with_shard(key, |s, h, now, sink| {
            s.get_entry_with(key, h, now, sink, f)
        })
    }

    /// The first step of prefetching a batch (see [`Engine::prefetch_entry`]): starts
    /// loading the part of the shard's hash table where `key` is filed, without taking
    /// the shard's lock, and returns the key's hash for the next two steps. Changes
    /// nothing and counts nothing.
    #[inline]
    pub fn prefetch_table(&self, key: &[u8]) -> PrefetchHash {
        let hash = self.hash(key);
        self.shard(hash).hint.prefetch(hash);
        PrefetchHash(hash)
    }

    /// The second step of prefetching a batch: starts loading the record of the key
    /// whose [`PrefetchHash`] [`Engine::prefetch_table`] returned, and returns at once.
    /// Changes nothing and counts nothing.
    ///
    /// For a caller with a batch of reads at hand (a node with a read buffer of GETs):
    /// call [`Engine::prefetch_table`] for every key of the batch, then this for every
    /// key, then [`Engine::prefetch_value`] for every key, then read them. A lookup in a
    /// cache far larger than the CPU's waits on memory three times in a row (table,
    /// record, value); spread over a batch this way, those waits overlap instead of
    /// adding up. This step and the next take the shard lock briefly.
    #[inline]
    pub fn prefetch_entry(&self, hash: PrefetchHash) {
        self.shard(hash.0).lock().prefetch_nodes(hash.0);
    }

    /// The third step of [`Engine::prefetch_entry`]: starts loading the first bytes
    /// (up to 256) of `key`'s value. Best called once the entry's record has arrived,
    /// i.e. after [`Engine::prefetch_entry`] was called for the whole batch; on its own it
    /// waits for the record. Changes nothing and counts nothing.
    #[inline]
    pub fn prefetch_value(&self, key: &[u8], hash: PrefetchHash) {
        self.shard(hash.0).lock().prefetch_value(key, hash.0);
    }

    /// The value and metadata of a live entry without counting an access: no stats, no
    /// reordering, no idle-time refresh.
    pub fn peek(&self, key: &[u8]) -> Option<EntryView> {
        self.with_shard(key, |s, h, now, _| s.peek(key, h, now))
    }

    /// Whether a live entry has the key (does not count as an access).
    pub fn contains(&self, key: &[u8]) -> bool {
        self.peek(key).is_some()
    }

    /// Stores `value` under `key`, evicting as the policy decides until the shard is
    /// within its bound again. The bound holds when this returns, whatever it returns.
    ///
    /// # Errors
    /// [`InsertError::TooLarge`] if the entry exceeds a shard's bound,
    /// [`InsertError::NoRoom`] if pinned entries leave no room for it,
    /// [`InsertError::ConditionFailed`] if `opts.condition` does not hold. Nothing changes
    /// on error.
    #[inline]
    pub fn insert(
        &self,
        key: &[u8],
        value: Bytes,
        opts: &InsertOptions,
    ) -> Result<InsertOutcome, InsertError> {
        self.with_shard(key, |s, h, now, sink| {
            s.insert(key, h, value, opts, now, sink)
        })
    }

    /// Returns the live value for `key`, or stores `make()` under it, in one step under
    /// one lock: the read counts as an access like [`Engine::get`], the store behaves
    /// like [`Engine::insert`] (the policy may still reject it: the value is returned
    /// either way). The bool is true on a hit. `make` runs under the shard lock: it MUST
    /// be cheap and MUST NOT call into this engine (loaders belong outside, with
    /// coalescing, as the node does).
    ///
    /// # Errors
    /// As [`Engine::insert`] on a miss; nothing is stored then.
    #[inline]
    pub fn get_or_insert_with(
        &self,
        key: &[u8],
        opts: &InsertOptions,
        make: impl FnOnce() -> Bytes,
    ) -> Result<(Bytes, bool), InsertError> {
        self.with_shard(key, |s, h, now, sink| {
            s.get_or_insert_with(key, h, opts, make, now, sink)
        })
    }

    /// Removes the entry; returns what it held, `None` if there was no live entry.
    pub fn remove(&self, key: &[u8]) -> Option<EntryView> {
        self.remove_if(key, Condition::Always).unwrap_or(None)
    }

    /// Removes the entry if `condition` holds ([`Condition::IfVersion`] for a
    /// compare-and-delete; [`Condition::IfAbsent`] is treated as [`Condition::Always`]).
    ///
    /// # Errors
    /// [`InsertError::ConditionFailed`] if the version does not match; nothing changes.
    pub fn remove_if(
        &self,
        key: &[u8],
        condition: Condition,
    ) -> Result<Option<EntryView>, InsertError> {
        self.with_shard(key, |s, h, now, sink| {
            s.remove_key(key, h, condition, now, sink)
        })
    }

    /// Replaces the TTL of a live entry (`None` removes its TTL). Returns whether it exists.
    pub fn touch(&self, key: &[u8], ttl: Option<Duration>) -> bool {
        self.with_shard(key, |s, h, now, sink| s.set_ttl(key, h, ttl, now, sink))
    }

    /// Pins a live entry: eviction skips it until [`Engine::unpin`]. Expiry still applies.
    /// Returns whether it exists.
    pub fn pin(&self, key: &[u8]) -> bool {
        self.with_shard(key, |s, h, now, sink| s.set_pinned(key, h, true, now, sink))
    }

    /// Unpins a live entry, handing it back to the policy as if newly inserted.
    /// Returns whether it exists.
    pub fn unpin(&self, key: &[u8]) -> bool {
        self.with_shard(key, |s, h, now, sink| {
            s.set_pinned(key, h, false, now, sink)
        })
    }

    /// Removes every live entry for which `keep` returns false (cause explicit); returns
    /// how many. Locks one shard at a time, so it sees each shard at a different moment.
    pub fn retain(&self, mut keep: impl FnMut(&[u8], &EntryView) -> bool) -> usize {
        let mut removed = 0;
        self.each_shard(|s, now, sink| removed += s.retain(&mut keep, now, sink));
        removed
    }

    /// Calls `f` on every live entry (per shard, oldest insertion first). Locks one shard
    /// at a time; `f` MUST NOT call back into this engine.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], &EntryView)) {
        self.each_shard(|s, now, _| s.for_each(&mut f, now));
    }

    /// Removes up to `budget` expired entries per shard; returns how many. Reads and
    /// writes already reclaim a few each; a node calls this from a background task so an
    /// idle engine gives memory back too.
    pub fn reclaim_expired(&self, budget: usize) -> usize {
        let mut removed = 0;
        self.each_shard(|s, now, sink| removed += s.reclaim_now(now, budget, sink));
        removed
    }

    /// Removes everything (cause explicit).
    pub fn clear(&self) {
        self.each_shard(|s, _, sink| s.clear(sink));
    }

    /// Switches the eviction policy of a live engine. Every entry stays; the new policy
    /// starts from insertion order and learns access patterns afresh.
    pub fn set_policy(&self, policy: Policy) {
        for s in self.shards.iter() {
            s.0.lock().set_policy(policy);
        }
    }

    /// The current policy.
    pub fn policy(&self) -> Policy {
        self.shards[0].0.lock().policy()
    }

    /// Changes the bound (same unit as before), evicting as needed. Pinned entries are
    /// never evicted, so a shard may stay over a bound shrunk below its pinned charge;
    /// inserts then fail with [`InsertError::NoRoom`] until unpinning frees room.
    pub fn set_capacity(&self, limit: u64) {
        let n = self.shards.len() as u64;
        for (s, shard) in self.shards.iter().enumerate() {
            let share = limit / n + u64::from((s as u64) < limit % n);
            let mut sink = self.sink();
            let mut now = Now::new(&*self.clock);
            shard.0.lock().set_limit(share, &mut now, &mut sink);
            self.deliver(sink);
        }
    }

    /// The bound as built (see [`Engine::stats`] for the current one).
    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// The number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The largest charge one entry may have (the smallest shard's bound).
    pub fn max_entry_charge(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.0.lock().limit())
            .min()
            .unwrap_or(0)
    }

    /// Live entries (including expired ones not yet reclaimed).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| s.0.lock().len()).sum()
    }

    /// Whether the engine holds no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counters summed over shards.
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for s in self.shards.iter() {
            total.merge(&s.0.lock().stats());
        }
        total
    }

    /// Checks internal invariants (accounting, bound, table/slab/heap agreement) and
    /// panics with a reason if one is broken. For tests; O(entries).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        for s in self.shards.iter() {
            s.0.lock().check();
        }
    }
}
