//! What callers pass in and get back.

use std::time::Duration;

use bytes::Bytes;

/// When an insert may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Always (an upsert).
    #[default]
    Always,
    /// Only if no live entry has the key.
    IfAbsent,
    /// Only if a live entry has the key with exactly this version (compare-and-set).
    IfVersion(u64),
}

/// Options of [`Engine::insert`](crate::Engine::insert).
#[derive(Debug, Clone, Default)]
pub struct InsertOptions {
    /// Time to live from now; `None` means no TTL.
    pub ttl: Option<Duration>,
    /// Time to idle: the entry expires this long after its last read or write.
    pub tti: Option<Duration>,
    /// The version to store (the caller assigns versions; the engine only compares them).
    pub version: u64,
    /// Opaque caller flags stored with the entry.
    pub flags: u32,
    /// When the insert applies.
    pub condition: Condition,
    /// Insert the entry pinned: eviction never picks it until [`Engine::unpin`](crate::Engine::unpin).
    pub pinned: bool,
    /// Charge this many units instead of the computed size (key + value + overhead in
    /// byte mode, 1 in entry mode). For callers that keep the payload elsewhere, such as
    /// the trace simulator.
    pub charge: Option<u64>,
}

impl InsertOptions {
    /// Default options: no expiry, version 0, unconditional, unpinned.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the time to live.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
    /// Sets the time to idle.
    #[must_use]
    pub fn tti(mut self, tti: Duration) -> Self {
        self.tti = Some(tti);
        self
    }
    /// Sets the stored version.
    #[must_use]
    pub fn version(mut self, version: u64) -> Self {
        self.version = version;
        self
    }
    /// Sets the caller flags.
    #[must_use]
    pub fn flags(mut self, flags: u32) -> Self {
        self.flags = flags;
        self
    }
    /// Sets the condition.
    #[must_use]
    pub fn condition(mut self, condition: Condition) -> Self {
        self.condition = condition;
        self
    }
    /// Inserts pinned.
    #[must_use]
    pub fn pinned(mut self, pinned: bool) -> Self {
        self.pinned = pinned;
        self
    }
    /// Overrides the charge.
    #[must_use]
    pub fn charge(mut self, charge: u64) -> Self {
        self.charge = Some(charge);
        self
    }
}

/// What a successful insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// A new entry was stored.
    Inserted,
    /// An existing entry was overwritten; its old value was removed with cause
    /// [`RemovalCause::Replaced`](crate::RemovalCause::Replaced).
    Replaced {
        /// Version of the overwritten entry.
        previous_version: u64,
    },
    /// The entry was stored and then chosen as the eviction victim in the same call:
    /// the admission policy judged it less valuable than what it would displace. It is
    /// not cached; a removal with cause [`RemovalCause::Size`](crate::RemovalCause::Size)
    /// was reported.
    Rejected,
}

/// Why an insert did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InsertError {
    /// The entry alone is larger than a shard may hold.
    #[error("entry charge of {charge} exceeds the per-shard limit of {limit}")]
    TooLarge {
        /// The entry's charge.
        charge: u64,
        /// The shard's bound.
        limit: u64,
    },
    /// Pinned entries fill the shard: nothing may be evicted to make room.
    #[error("no room: {pinned} of {limit} is pinned and the entry needs {charge}")]
    NoRoom {
        /// The entry's charge.
        charge: u64,
        /// Charge held by pinned entries in the shard.
        pinned: u64,
        /// The shard's bound.
        limit: u64,
    },
    /// The [`Condition`] did not hold; nothing changed.
    #[error("condition failed (current version: {current:?})")]
    ConditionFailed {
        /// Version of the live entry, `None` if absent.
        current: Option<u64>,
    },
}

/// An entry's value and metadata, lent to a closure while the entry's shard is locked
/// (see [`crate::Engine::get_entry_with`]): reading it copies nothing and touches no
/// reference count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryRef<'a> {
    /// The value.
    pub value: &'a [u8],
    /// The stored version.
    pub version: u64,
    /// The caller flags.
    pub flags: u32,
    /// Time until the entry expires, `None` without expiry.
    pub expires_in: Option<Duration>,
}

/// A copy of an entry's value and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryView {
    /// The value (a cheap reference-counted handle).
    pub value: Bytes,
    /// The stored version.
    pub version: u64,
    /// The caller flags.
    pub flags: u32,
    /// Time until the entry expires, `None` without expiry.
    pub expires_in: Option<Duration>,
    /// Whether the entry is pinned.
    pub pinned: bool,
    /// The entry's charge against the bound.
    pub charge: u64,
}
