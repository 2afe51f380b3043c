//! Ringcache's eviction engine: the store every partition shard of a node runs.
//!
//! It is a bounded in-memory map from byte keys to byte values with per-entry metadata
//! (version, flags, TTL, time-to-idle, pinning), a choice of eviction policies that can
//! be switched on a live engine, removal notifications with a cause, and counters. It
//! is synchronous and does no I/O: no threads, no sockets, no system clock (time comes
//! through [`Clock`]). It is not a network cache, a persistence layer or a loader; the
//! node crate builds those on top.
//!
//! # Layout
//! - [`engine`](Engine): the sharded, thread-safe front and its builder.
//! - `shard`: one lock's worth of state: slab of nodes, hash table of slot indices,
//!   expiry heap, accounting, and the policy.
//! - `table`: that hash table: cache-line groups of 8 tags and slot indices, so a
//!   lookup reads one line, which can be prefetched from the hash alone.
//! - `policy`: LRU, FIFO, LFU with aging, Random, TTL, the candidates S3-FIFO and
//!   W-TinyLFU (hill-climbed window), and the default, S3-LFU (S3-FIFO queues with a
//!   TinyLFU admission duel), all over intrusive index links.
//! - [`Clock`], [`SystemClock`], [`MockClock`]: monotonic time.
//! - [`Stats`], [`Removal`], [`RemovalCause`]: what happened.
//!
//! # Accounting
//! In [`Capacity::Bytes`] mode every entry is charged `key.len() + value.len() +`
//! [`ENTRY_OVERHEAD`] unless the insert names its own charge; in [`Capacity::Entries`]
//! mode every entry is charged 1. After every call, each shard's charge is within its
//! share of the bound (pinned entries aside, see [`Engine::set_capacity`]).
//!
//! # Expiry
//! Deadlines are monotonic nanoseconds. An expired entry is never returned. Expired
//! entries are reclaimed from a min-heap of deadlines: a few per write and per 64
//! reads, before any live entry is evicted, and by [`Engine::reclaim_expired`].
//! Idle deadlines move on every read without touching the heap; the heap is corrected
//! lazily when such an entry reaches its top.
//!
//! # Concurrency
//! Keys hash (seeded; a folded multiply for keys of up to 16 bytes, xxh3 for longer
//! ones) to a power-of-two number of shards (by default as many as leave each at least
//! 128 entries, or 512 KiB in byte mode, at most 64; see `EngineBuilder::shards`);
//! each shard is a `parking_lot::Mutex` around its own slab, hash table, expiry heap and policy, on its
//! own cache lines. A call locks one shard (whole-engine calls visit them in turn), so
//! threads collide only on the same shard; a hit costs one uncontended lock/unlock pair
//! (two atomic operations) plus the policy's bookkeeping, which for the default is a
//! 2-bit counter. The costs of the design: the bound and the policy are per shard (a
//! shard sees 1/n of the traffic, and one entry may take at most 1/n of the bound), and
//! reads take the exclusive lock, so many threads reading the same hot key serialize.
//! Removal listeners run after the lock is released.
//!
//! # Example
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//! use bytes::Bytes;
//! use ringcache_engine::{Capacity, Engine, InsertOptions, MockClock};
//!
//! let clock = MockClock::new();
//! let engine = Engine::builder(Capacity::Entries(1000))
//!     .clock(Arc::new(clock.clone()))
//!     .build();
//! engine.insert(b"session:1", Bytes::from_static(b"alice"),
//!     &InsertOptions::new().ttl(Duration::from_secs(30)))?;
//! assert!(engine.get(b"session:1").is_some());
//! clock.advance(Duration::from_secs(31));
//! assert!(engine.get(b"session:1").is_none());
//! # Ok::<(), ringcache_engine::InsertError>(())
//! ```

mod clock;
mod engine;
mod entry;
mod hash;
mod heap;
mod node;
mod policy;
mod policy_kind;
mod prefetch;
mod shard;
mod stats;
mod table;

pub use clock::{Clock, MockClock, SystemClock, Timestamp};
pub use engine::{Engine, EngineBuilder, PrefetchHash, RemovalListener};
pub use entry::{Condition, EntryRef, EntryView, InsertError, InsertOptions, InsertOutcome};
pub use policy_kind::{Capacity, Policy, UnknownPolicy};
pub use stats::{Removal, RemovalCause, Stats};

/// Bytes charged per entry on top of its key and value in [`Capacity::Bytes`] mode: the
/// node record plus its hash-table slot (8 bytes: tag and slot index, in groups kept at
/// most 7/8 full), plus the policy's per-entry share (expiry heap slot or random-array
/// slot). The record's size is measured from the real struct, so it follows the build.
pub const ENTRY_OVERHEAD: u64 = (std::mem::size_of::<node::Node>() + 16) as u64;
