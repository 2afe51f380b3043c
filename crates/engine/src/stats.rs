//! Counters and removal notifications.

use bytes::Bytes;
use serde::Serialize;

/// Why an entry left the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RemovalCause {
    /// Its TTL or idle time ran out.
    Expired,
    /// A caller removed it.
    Explicit,
    /// An insert overwrote it.
    Replaced,
    /// The policy evicted it to stay within the bound (including admission rejection).
    Size,
}

impl RemovalCause {
    /// The label used in metrics (`cause="expired"` …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            RemovalCause::Expired => "expired",
            RemovalCause::Explicit => "explicit",
            RemovalCause::Replaced => "replaced",
            RemovalCause::Size => "size",
        }
    }
}

/// A removed entry, as handed to the removal listener.
#[derive(Debug, Clone)]
pub struct Removal {
    /// The key.
    pub key: Box<[u8]>,
    /// The value that was removed (for `Replaced`, the old value).
    pub value: Bytes,
    /// Its version.
    pub version: u64,
    /// Why.
    pub cause: RemovalCause,
}

/// A snapshot of an engine's counters, summed over shards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Reads that found a live entry.
    pub hits: u64,
    /// Reads that found none (including expired entries).
    pub misses: u64,
    /// New entries stored.
    pub inserts: u64,
    /// Overwrites of existing entries.
    pub updates: u64,
    /// Removals because of expiry.
    pub expired: u64,
    /// Removals by callers.
    pub explicit: u64,
    /// Old values removed by overwrites.
    pub replaced: u64,
    /// Evictions to stay within the bound (including admission rejections).
    pub evicted: u64,
    /// Inserts refused because pinned entries left no room.
    pub no_room: u64,
    /// Charge currently held (bytes in byte mode).
    pub used: u64,
    /// Entries currently held.
    pub entries: u64,
    /// Charge held by pinned entries.
    pub pinned_used: u64,
    /// Pinned entries.
    pub pinned_entries: u64,
    /// The bound, summed over shards.
    pub capacity: u64,
}

impl Stats {
    /// Hits over reads, 0 when there were none.
    #[must_use]
    pub fn hit_ratio(&self) -> f64 {
        let reads = self.hits + self.misses;
        if reads == 0 {
            0.0
        } else {
            self.hits as f64 / reads as f64
        }
    }

    /// Adds another snapshot's counters to this one (for totals over shards, partitions
    /// or engines).
    pub fn merge(&mut self, o: &Stats) {
        self.hits += o.hits;
        self.misses += o.misses;
        self.inserts += o.inserts;
        self.updates += o.updates;
        self.expired += o.expired;
        self.explicit += o.explicit;
        self.replaced += o.replaced;
        self.evicted += o.evicted;
        self.no_room += o.no_room;
        self.used += o.used;
        self.entries += o.entries;
        self.pinned_used += o.pinned_used;
        self.pinned_entries += o.pinned_entries;
        self.capacity += o.capacity;
    }
}
