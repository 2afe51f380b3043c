//! One shard: a slab of nodes, a hash table of slot indices, an expiry heap and the
//! policy that orders the unpinned nodes. Everything here runs under the shard's lock.

use bytes::Bytes;

use crate::clock::Clock;
use crate::entry::{Condition, EntryRef, EntryView, InsertError, InsertOptions, InsertOutcome};
use crate::hash::{SHORT_KEY, short_words};
use crate::heap::{HeapSlots, IndexedHeap};
use crate::node::{KeyBytes, NEVER, NIL, Node, ix};
use crate::policy::{PolicyState, Sizing};
use crate::stats::{Removal, RemovalCause, Stats};
use crate::table::{SlotTable, TableHint};
use crate::{ENTRY_OVERHEAD, Policy};

/// Expired entries reclaimed per write, and per [`READ_RECLAIM_PERIOD`] reads.
const RECLAIM_BUDGET: usize = 4;
const READ_RECLAIM_PERIOD: u32 = 64;

/// Removed entries waiting to be handed to the listener once the lock is released.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) enabled: bool,
    pub(crate) events: Vec<Removal>,
}

/// The current time, read at most once per call and only if needed.
pub(crate) struct Now<'a> {
    clock: &'a dyn Clock,
    t: Option<u64>,
}

impl<'a> Now<'a> {
    pub(crate) fn new(clock: &'a dyn Clock) -> Self {
        Self { clock, t: None }
    }
    #[inline]
    fn get(&mut self) -> u64 {
        *self.t.get_or_insert_with(|| self.clock.now().0)
    }
}

struct ExpirySlots<'a>(&'a mut [Node]);

impl HeapSlots for ExpirySlots<'_> {
    fn key(&self, i: u32) -> (u64, u64) {
        let n = &self.0[ix(i)];
        (n.filed_deadline, n.stamp)
    }
    fn set_pos(&mut self, i: u32, pos: u32) {
        self.0[ix(i)].exp_pos = pos;
    }
}

/// `repr(C)` because the order matters. The engine's lock sits just before the shard;
/// its cache line is written by every call, so it also holds everything else a hit
/// writes or a miss changes that a hit reads: the table's header (its item count changes
/// with every insert), the read count and the hit and miss counters. The next line
/// holds what only a slab growth or a reconfiguration writes (the slab's header, the
/// bound, the seed). When two threads share a shard, a hit then takes over one line of
/// the shard's state from the other core, not three.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Shard {
    table: SlotTable,
    reads: u32,
    hits: u64,
    misses: u64,
    nodes: Vec<Node>,
    limit: u64,
    seed: u64,
    entries_mode: bool,
    expiry: IndexedHeap,
    policy: PolicyState,
    free: Vec<u32>,
    used: u64,
    pinned_used: u64,
    pinned_entries: u64,
    stamp: u64,
    /// Every counter but `hits` and `misses` (kept next to the table above).
    stats: Stats,
    /// Where the table is, for prefetching outside the lock (the engine holds it too).
    hint: std::sync::Arc<TableHint>,
}

impl Shard {
    /// A shard whose table publishes where it is to `hint`.
    pub(crate) fn new(
        limit: u64,
        entries_mode: bool,
        policy: Policy,
        seed: u64,
        hint: std::sync::Arc<TableHint>,
    ) -> Self {
        let sizing = Sizing {
            limit,
            entries_mode,
        };
        Self {
            table: SlotTable::new(&hint),
            hint,
            nodes: Vec::new(),
            reads: 0,
            hits: 0,
            misses: 0,
            expiry: IndexedHeap::default(),
            policy: PolicyState::new(policy, sizing, seed),
            free: Vec::new(),
            limit,
            entries_mode,
            used: 0,
            pinned_used: 0,
            pinned_entries: 0,
            stamp: 0,
            stats: Stats::default(),
            seed,
        }
    }

    fn sizing(&self) -> Sizing {
        Sizing {
            limit: self.limit,
            entries_mode: self.entries_mode,
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        self.policy.kind()
    }

    pub(crate) fn limit(&self) -> u64 {
        self.limit
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn stats(&self) -> Stats {
        Stats {
            used: self.used,
            entries: self.table.len() as u64,
            pinned_used: self.pinned_used,
            pinned_entries: self.pinned_entries,
            capacity: self.limit,
            hits: self.hits,
            misses: self.misses,
            ..self.stats
        }
    }

    #[inline(always)]
    fn find(&self, key: &[u8], hash: u64) -> Option<u32> {
        let nodes = &self.nodes;
        let words = (key.len() <= SHORT_KEY).then(|| short_words(key));
        self.table.find(hash, |i| nodes[ix(i)].key.is(key, words))
    }

    /// The live entry for `key`, removing it (cause expired) if it has expired.
    #[inline(always)]
    fn find_live(
        &mut self,
        key: &[u8],
        hash: u64,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Option<u32> {
        let i = self.find(key, hash)?;
        self.live_at(i, now, sink)
    }

    /// `i` if it is live at `now`; otherwise removes it (cause expired) and returns None.
    #[inline]
    fn live_at(&mut self, i: u32, now: &mut Now<'_>, sink: &mut Sink) -> Option<u32> {
        let n = &self.nodes[ix(i)];
        if n.expires() && n.effective_deadline() <= now.get() {
            self.remove(i, RemovalCause::Expired, sink);
            return None;
        }
        Some(i)
    }

    /// Time until `i` expires, `None` without expiry.
    fn expires_in(&self, i: u32, now: &mut Now<'_>) -> Option<std::time::Duration> {
        let n = &self.nodes[ix(i)];
        n.expires().then(|| {
            std::time::Duration::from_nanos(n.effective_deadline().saturating_sub(now.get()))
        })
    }

    fn view(&self, i: u32, now: &mut Now<'_>) -> EntryView {
        let expires_in = self.expires_in(i, now);
        let n = &self.nodes[ix(i)];
        EntryView {
            value: n.value.clone(),
            version: n.version,
            flags: n.flags,
            expires_in,
            pinned: n.pinned,
            charge: n.charge,
        }
    }

    /// A read: counts a hit or miss and lets the policy see the access.
    #[inline]
    pub(crate) fn get(
        &mut self,
        key: &[u8],
        hash: u64,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Option<Bytes> {
        self.read(key, hash, now, sink)
            .map(|i| self.nodes[ix(i)].value.clone())
    }

    /// A read that inserts `make()` on a miss, under one lock. Returns the value and
    /// whether it was a hit.
    #[inline]
    pub(crate) fn get_or_insert_with(
        &mut self,
        key: &[u8],
        hash: u64,
        opts: &InsertOptions,
        make: impl FnOnce() -> Bytes,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Result<(Bytes, bool), InsertError> {
        if let Some(i) = self.read(key, hash, now, sink) {
            return Ok((self.nodes[ix(i)].value.clone(), true));
        }
        // `read` found no live entry (and removed an expired one), so this is a new key.
        let value = make();
        let charge = self.charge_of(key, &value, opts);
        if charge > self.limit {
            return Err(InsertError::TooLarge {
                charge,
                limit: self.limit,
            });
        }
        self.insert_at(key, hash, None, charge, value.clone(), opts, now, sink)?;
        Ok((value, false))
    }

    /// Like [`Shard::get`] with metadata.
    pub(crate) fn get_entry(
        &mut self,
        key: &[u8],
        hash: u64,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Option<EntryView> {
        self.read(key, hash, now, sink).map(|i| self.view(i, now))
    }

    /// Like [`Shard::get_entry`], lending the entry to `f` instead of copying it out.
    #[inline]
    pub(crate) fn get_entry_with<R>(
        &mut self,
        key: &[u8],
        hash: u64,
        now: &mut Now<'_>,
        sink: &mut Sink,
        f: impl FnOnce(EntryRef<'_>) -> R,
    ) -> Option<R> {
        let i = self.read(key, hash, now, sink)?;
        let expires_in = self.expires_in(i, now);
        let n = &self.nodes[ix(i)];
        Some(f(EntryRef {
            value: &n.value,
            version: n.version,
            flags: n.flags,
            expires_in,
        }))
    }

    #[inline(always)]
    fn read(&mut self, key: &[u8], hash: u64, now: &mut Now<'_>, sink: &mut Sink) -> Option<u32> {
        self.reads = self.reads.wrapping_add(1);
        if self.reads.is_multiple_of(READ_RECLAIM_PERIOD) && !self.expiry.is_empty() {
            self.reclaim(now.get(), RECLAIM_BUDGET, sink);
        }
        let found = self.find_live(key, hash, now, sink);
        let Some(i) = found else {
            self.misses += 1;
            return None;
        };
        let n = &mut self.nodes[ix(i)];
        if n.tti() != 0 {
            n.last_access = now.get();
        }
        if !n.pinned {
            self.policy.touch(&mut self.nodes, i);
        }
        self.hits += 1;
        Some(i)
    }

    /// Prefetches the nodes the table files under `hash` (the key's node, and rarely a
    /// node whose tag collides): reads the table, not the nodes.
    #[inline]
    pub(crate) fn prefetch_nodes(&self, hash: u64) {
        self.table.find(hash, |i| {
            if let Some(n) = self.nodes.get(ix(i)) {
                crate::prefetch::line(n);
            }
            false
        });
    }

    /// Prefetches the start of `key`'s value (its node is best already in cache: see
    /// [`Shard::prefetch_nodes`]).
    #[inline]
    pub(crate) fn prefetch_value(&self, key: &[u8], hash: u64) {
        if let Some(i) = self.find(key, hash) {
            crate::prefetch::bytes(&self.nodes[ix(i)].value);
        }
    }

    /// A read that changes nothing: no stats, no policy access, no idle-time refresh.
    pub(crate) fn peek(&mut self, key: &[u8], hash: u64, now: &mut Now<'_>) -> Option<EntryView> {
        let i = self.find(key, hash)?;
        let n = &self.nodes[ix(i)];
        if n.expires() && n.effective_deadline() <= now.get() {
            return None;
        }
        Some(self.view(i, now))
    }

    fn charge_of(&self, key: &[u8], value: &Bytes, opts: &InsertOptions) -> u64 {
        opts.charge.unwrap_or(if self.entries_mode {
            1
        } else {
            key.len() as u64 + value.len() as u64 + ENTRY_OVERHEAD
        })
    }

    pub(crate) fn insert(
        &mut self,
        key: &[u8],
        hash: u64,
        value: Bytes,
        opts: &InsertOptions,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Result<InsertOutcome, InsertError> {
        let charge = self.charge_of(key, &value, opts);
        if charge > self.limit {
            return Err(InsertError::TooLarge {
                charge,
                limit: self.limit,
            });
        }
        if !self.expiry.is_empty() {
            self.reclaim(now.get(), RECLAIM_BUDGET, sink);
        }
        let existing = self.find_live(key, hash, now, sink);
        self.insert_at(key, hash, existing, charge, value, opts, now, sink)
    }

    /// The insert once the live entry for `key` (if any) is known.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn insert_at(
        &mut self,
        key: &[u8],
        hash: u64,
        existing: Option<u32>,
        charge: u64,
        value: Bytes,
        opts: &InsertOptions,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Result<InsertOutcome, InsertError> {
        let current = existing.map(|i| self.nodes[ix(i)].version);
        let holds = match opts.condition {
            Condition::Always => true,
            Condition::IfAbsent => current.is_none(),
            Condition::IfVersion(v) => current == Some(v),
        };
        if !holds {
            return Err(InsertError::ConditionFailed { current });
        }
        let (old_charge, old_pinned) = existing.map_or((0, false), |i| {
            let n = &self.nodes[ix(i)];
            (n.charge, n.pinned)
        });
        let pinned_after = |pinned_used: u64| {
            pinned_used - if old_pinned { old_charge } else { 0 }
                + if opts.pinned { charge } else { 0 }
        };
        let limit = self.limit;
        let fits = |pinned_used: u64| {
            pinned_after(pinned_used) + if opts.pinned { 0 } else { charge } <= limit
        };
        if !fits(self.pinned_used) && !self.expiry.is_empty() {
            // Expired pinned entries are dead weight: reclaim them all before refusing.
            // This is the error path, so the unbounded pass is paid only when it matters.
            self.reclaim(now.get(), usize::MAX, sink);
        }
        if !fits(self.pinned_used) {
            self.stats.no_room += 1;
            return Err(InsertError::NoRoom {
                charge,
                pinned: self.pinned_used,
                limit: self.limit,
            });
        }

        let deadline = opts.ttl.map_or(NEVER, |d| {
            crate::clock::Timestamp(now.get()).saturating_add(d).0
        });
        let tti = opts.tti.map_or(0, |d| {
            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
        });
        let last_access = if tti != 0 { now.get() } else { 0 };

        let (i, outcome) = if let Some(i) = existing {
            let n = &mut self.nodes[ix(i)];
            let old_value = std::mem::replace(&mut n.value, value);
            let previous_version = n.version;
            if sink.enabled {
                sink.events.push(Removal {
                    key: n.key.as_slice().into(),
                    value: old_value,
                    version: previous_version,
                    cause: RemovalCause::Replaced,
                });
            }
            n.version = opts.version;
            n.flags = opts.flags;
            if !old_pinned && opts.pinned {
                // Unlink while the policy's weight sums still include the old charge.
                self.policy.forget(&mut self.nodes, i);
            }
            let n = &mut self.nodes[ix(i)];
            n.charge = charge;
            n.set_expiry(deadline, tti);
            n.last_access = last_access;
            self.used = self.used - old_charge + charge;
            self.stats.replaced += 1;
            self.stats.updates += 1;
            match (old_pinned, opts.pinned) {
                (true, true) => self.pinned_used = self.pinned_used - old_charge + charge,
                (true, false) => {
                    self.pinned_used -= old_charge;
                    self.pinned_entries -= 1;
                    self.nodes[ix(i)].pinned = false;
                    self.policy.admit(&mut self.nodes, i);
                }
                (false, true) => {
                    self.nodes[ix(i)].pinned = true;
                    self.pinned_used += charge;
                    self.pinned_entries += 1;
                }
                (false, false) => {
                    self.policy.reweigh(&mut self.nodes, i, old_charge);
                    self.policy.deadline_changed(&mut self.nodes, i);
                    self.policy.touch(&mut self.nodes, i);
                }
            }
            self.refile(i);
            (i, InsertOutcome::Replaced { previous_version })
        } else {
            let i = self.alloc();
            let n = &mut self.nodes[ix(i)];
            n.key = KeyBytes::new(key);
            n.value = value;
            n.hash = hash;
            n.charge = charge;
            n.version = opts.version;
            n.set_expiry(deadline, tti);
            n.last_access = last_access;
            n.filed_deadline = NEVER;
            n.exp_pos = NIL;
            n.prev = NIL;
            n.next = NIL;
            n.aux = 0;
            n.tag = 0;
            n.pinned = opts.pinned;
            n.live = true;
            n.flags = opts.flags;
            let nodes = &self.nodes;
            self.table
                .insert(hash, i, |j| nodes[ix(j)].hash, &self.hint);
            self.used += charge;
            self.stats.inserts += 1;
            if opts.pinned {
                self.pinned_used += charge;
                self.pinned_entries += 1;
            } else {
                self.policy.entries_grew(self.table.len());
                self.policy.admit(&mut self.nodes, i);
            }
            self.refile(i);
            (i, InsertOutcome::Inserted)
        };

        let rejected = self.make_room(now, sink, Some(i));
        Ok(if rejected {
            InsertOutcome::Rejected
        } else {
            outcome
        })
    }

    /// A free slot with a fresh stamp; the caller fills every other field.
    #[inline]
    fn alloc(&mut self) -> u32 {
        self.stamp += 1;
        let i = if let Some(i) = self.free.pop() {
            i
        } else {
            let i = u32::try_from(self.nodes.len()).expect("a shard holds fewer than 2^32 entries");
            assert!(i != NIL, "a shard holds fewer than 2^32 - 1 entries");
            self.nodes.push(Node::vacant());
            i
        };
        self.nodes[ix(i)].stamp = self.stamp;
        i
    }

    /// Evicts (expired entries first) until within the bound. Returns whether `fresh`
    /// was among the victims.
    fn make_room(&mut self, now: &mut Now<'_>, sink: &mut Sink, fresh: Option<u32>) -> bool {
        let mut hit_fresh = false;
        while self.used > self.limit {
            if !self.expiry.is_empty() && self.reclaim(now.get(), 1, sink) > 0 {
                continue;
            }
            let Some(victim) = self.policy.evict(&mut self.nodes) else {
                // Only pinned entries are left; inserts checked for room, so this is
                // reachable only after the bound shrank below the pinned charge.
                break;
            };
            if Some(victim) == fresh {
                hit_fresh = true;
            }
            self.release(victim, RemovalCause::Size, sink);
        }
        hit_fresh
    }

    /// Puts `i` in the expiry heap at its current deadline (or takes it out).
    #[inline]
    fn refile(&mut self, i: u32) {
        let n = &mut self.nodes[ix(i)];
        if n.exp_pos == NIL && !n.expires() {
            return;
        }
        let deadline = n.effective_deadline();
        let pos = n.exp_pos;
        n.filed_deadline = deadline;
        let mut slots = ExpirySlots(&mut self.nodes);
        match (pos != NIL, deadline != NEVER) {
            (true, true) => self.expiry.update(&mut slots, pos),
            (true, false) => {
                self.expiry.remove_at(&mut slots, pos);
            }
            (false, true) => self.expiry.push(&mut slots, i),
            (false, false) => {}
        }
    }

    /// [`Shard::reclaim`] at the current time (read only if something can expire).
    pub(crate) fn reclaim_now(
        &mut self,
        now: &mut Now<'_>,
        budget: usize,
        sink: &mut Sink,
    ) -> usize {
        if self.expiry.is_empty() {
            return 0;
        }
        self.reclaim(now.get(), budget, sink)
    }

    /// Removes up to `budget` expired entries. Entries whose idle deadline moved on are
    /// refiled (that costs no budget: each refile follows a real access).
    pub(crate) fn reclaim(&mut self, now: u64, budget: usize, sink: &mut Sink) -> usize {
        let mut removed = 0;
        while removed < budget {
            let Some(top) = self.expiry.peek() else { break };
            let n = &self.nodes[ix(top)];
            if n.filed_deadline > now {
                break;
            }
            if n.effective_deadline() > now {
                self.refile(top);
                continue;
            }
            self.remove(top, RemovalCause::Expired, sink);
            removed += 1;
        }
        removed
    }

    /// Removes a live entry that the policy still links.
    fn remove(&mut self, i: u32, cause: RemovalCause, sink: &mut Sink) {
        if !self.nodes[ix(i)].pinned {
            self.policy.forget(&mut self.nodes, i);
        }
        self.release(i, cause, sink);
    }

    /// Frees a live entry the policy no longer links.
    fn release(&mut self, i: u32, cause: RemovalCause, sink: &mut Sink) {
        let pos = self.nodes[ix(i)].exp_pos;
        if pos != NIL {
            self.expiry
                .remove_at(&mut ExpirySlots(&mut self.nodes), pos);
        }
        let hash = self.nodes[ix(i)].hash;
        self.table.remove(hash, i);
        let n = &mut self.nodes[ix(i)];
        n.live = false;
        let (charge, pinned, version) = (n.charge, n.pinned, n.version);
        let key = std::mem::take(&mut n.key);
        let value = std::mem::take(&mut n.value);
        self.used -= charge;
        if pinned {
            self.pinned_used -= charge;
            self.pinned_entries -= 1;
        }
        match cause {
            RemovalCause::Expired => self.stats.expired += 1,
            RemovalCause::Explicit => self.stats.explicit += 1,
            RemovalCause::Replaced => self.stats.replaced += 1,
            RemovalCause::Size => self.stats.evicted += 1,
        }
        if sink.enabled {
            sink.events.push(Removal {
                key: key.into_boxed(),
                value,
                version,
                cause,
            });
        }
        self.free.push(i);
    }

    pub(crate) fn remove_key(
        &mut self,
        key: &[u8],
        hash: u64,
        condition: Condition,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> Result<Option<EntryView>, InsertError> {
        let found = self.find_live(key, hash, now, sink);
        let current = found.map(|i| self.nodes[ix(i)].version);
        match condition {
            Condition::IfVersion(v) if current != Some(v) => {
                return Err(InsertError::ConditionFailed { current });
            }
            _ => {}
        }
        let Some(i) = found else { return Ok(None) };
        let view = self.view(i, now);
        self.remove(i, RemovalCause::Explicit, sink);
        Ok(Some(view))
    }

    /// Sets a new TTL (`None`: no TTL) on a live entry. Returns whether it exists.
    pub(crate) fn set_ttl(
        &mut self,
        key: &[u8],
        hash: u64,
        ttl: Option<std::time::Duration>,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> bool {
        let Some(i) = self.find_live(key, hash, now, sink) else {
            return false;
        };
        let t = now.get();
        let n = &mut self.nodes[ix(i)];
        let tti = n.tti();
        n.set_expiry(
            ttl.map_or(NEVER, |d| crate::clock::Timestamp(t).saturating_add(d).0),
            tti,
        );
        if tti != 0 {
            n.last_access = t;
        }
        let pinned = n.pinned;
        if !pinned {
            self.policy.deadline_changed(&mut self.nodes, i);
        }
        self.refile(i);
        true
    }

    /// Pins or unpins a live entry. Returns whether it exists.
    pub(crate) fn set_pinned(
        &mut self,
        key: &[u8],
        hash: u64,
        pin: bool,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> bool {
        let Some(i) = self.find_live(key, hash, now, sink) else {
            return false;
        };
        let n = &mut self.nodes[ix(i)];
        if n.pinned == pin {
            return true;
        }
        n.pinned = pin;
        let charge = n.charge;
        if pin {
            self.policy.forget(&mut self.nodes, i);
            self.pinned_used += charge;
            self.pinned_entries += 1;
        } else {
            self.pinned_used -= charge;
            self.pinned_entries -= 1;
            self.policy.admit(&mut self.nodes, i);
            // The bound may have shrunk below the pinned charge meanwhile.
            self.make_room(now, sink, None);
        }
        true
    }

    /// Removes every live entry for which `keep` returns false (cause explicit).
    pub(crate) fn retain(
        &mut self,
        keep: &mut dyn FnMut(&[u8], &EntryView) -> bool,
        now: &mut Now<'_>,
        sink: &mut Sink,
    ) -> usize {
        let mut removed = 0;
        for i in 0..self.nodes.len() {
            let i = u32::try_from(i).expect("slot index fits u32");
            if !self.nodes[ix(i)].live {
                continue;
            }
            if self.live_at(i, now, sink).is_none() {
                continue;
            }
            let view = self.view(i, now);
            if !keep(self.nodes[ix(i)].key.as_slice(), &view) {
                self.remove(i, RemovalCause::Explicit, sink);
                removed += 1;
            }
        }
        removed
    }

    /// Calls `f` on every live entry, oldest insertion first.
    pub(crate) fn for_each(&mut self, f: &mut dyn FnMut(&[u8], &EntryView), now: &mut Now<'_>) {
        for i in self.in_insertion_order(|_| true) {
            let n = &self.nodes[ix(i)];
            if n.expires() && n.effective_deadline() <= now.get() {
                continue;
            }
            let view = self.view(i, now);
            f(self.nodes[ix(i)].key.as_slice(), &view);
        }
    }

    /// Slots of the live entries that pass `filter`, oldest insertion first.
    fn in_insertion_order(&self, filter: impl Fn(&Node) -> bool) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.nodes.len())
            .filter_map(|i| u32::try_from(i).ok())
            .filter(|&i| self.nodes[ix(i)].live && filter(&self.nodes[ix(i)]))
            .collect();
        order.sort_unstable_by_key(|&i| self.nodes[ix(i)].stamp);
        order
    }

    /// Replaces the policy, relinking every unpinned entry in insertion order.
    pub(crate) fn set_policy(&mut self, kind: Policy) {
        if self.policy.kind() == kind {
            return;
        }
        let order = self.in_insertion_order(|n| !n.pinned);
        self.policy = PolicyState::new(kind, self.sizing(), self.seed);
        self.policy.entries_grew(self.table.len());
        for &i in &order {
            let n = &mut self.nodes[ix(i)];
            n.prev = NIL;
            n.next = NIL;
            n.aux = 0;
            n.tag = 0;
            self.policy.admit(&mut self.nodes, i);
        }
    }

    /// Changes the bound, evicting as needed (pinned entries stay, even over it).
    pub(crate) fn set_limit(&mut self, limit: u64, now: &mut Now<'_>, sink: &mut Sink) {
        self.limit = limit;
        self.policy.resize(self.sizing());
        self.make_room(now, sink, None);
    }

    /// Removes everything (cause explicit).
    pub(crate) fn clear(&mut self, sink: &mut Sink) {
        for i in 0..self.nodes.len() {
            let i = u32::try_from(i).expect("slot index fits u32");
            if self.nodes[ix(i)].live {
                self.remove(i, RemovalCause::Explicit, sink);
            }
        }
    }

    /// Checks every internal invariant; for tests. Panics with a reason on violation.
    #[doc(hidden)]
    pub(crate) fn check(&self) {
        let live: Vec<&Node> = self.nodes.iter().filter(|n| n.live).collect();
        assert_eq!(live.len(), self.table.len(), "table and slab disagree");
        self.table.check(|i| self.nodes[ix(i)].hash);
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.live) {
            let i = u32::try_from(i).expect("slot index fits u32");
            assert_eq!(
                self.table.find(n.hash, |j| j == i),
                Some(i),
                "live entry not filed"
            );
        }
        let used: u64 = live.iter().map(|n| n.charge).sum();
        assert_eq!(used, self.used, "used charge drifted");
        let pinned: u64 = live.iter().filter(|n| n.pinned).map(|n| n.charge).sum();
        assert_eq!(pinned, self.pinned_used, "pinned charge drifted");
        assert!(
            self.used <= self.limit || self.pinned_used > self.limit,
            "over the bound: {} > {}",
            self.used,
            self.limit
        );
        let expiring = live
            .iter()
            .filter(|n| n.effective_deadline() != NEVER)
            .count();
        assert_eq!(expiring, self.expiry.len(), "expiry heap misses entries");
        for n in &live {
            assert_eq!(
                n.exp_pos != NIL,
                n.filed_deadline != NEVER,
                "expiry heap position and filed deadline disagree"
            );
        }
        for &m in self.expiry.members() {
            assert!(self.nodes[ix(m)].live, "expiry heap holds a free slot");
        }
    }
}

#[cfg(test)]
mod layout {
    use std::mem::{align_of, offset_of, size_of};

    use super::Shard;

    /// What a hit writes (and the table header a miss changes) shares the lock's cache
    /// line: the shard starts right after the lock word, padded to the shard's
    /// alignment, and the fields above end within the line.
    #[test]
    fn what_a_hit_writes_shares_the_locks_line() {
        let shard_start = size_of::<parking_lot::RawMutex>().next_multiple_of(align_of::<Shard>());
        let end = |offset: usize, size: usize| shard_start + offset + size;
        assert!(
            end(
                offset_of!(Shard, table),
                size_of::<crate::table::SlotTable>()
            ) <= 64
        );
        assert!(end(offset_of!(Shard, reads), 4) <= 64);
        assert!(end(offset_of!(Shard, hits), 8) <= 64);
        assert!(end(offset_of!(Shard, misses), 8) <= 64);
        // The slab's header, read by every call and written only when the slab grows,
        // starts the next line.
        assert_eq!(shard_start + offset_of!(Shard, nodes), 64);
    }
}
