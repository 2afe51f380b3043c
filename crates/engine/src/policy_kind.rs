//! The user-facing names of the eviction policies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which entry an engine evicts when it is over its bound.
///
/// Switchable on a live engine with [`Engine::set_policy`](crate::Engine::set_policy);
/// no entry is lost by a switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Policy {
    /// The default ("S3-LFU"): S3-FIFO's small and main queues, where a key that leaves
    /// the small queue unread can still win a place in main by a TinyLFU frequency duel.
    /// It demotes one-hit wonders and stale keys as quickly as S3-FIFO (so it follows
    /// moving hot sets and resists scans) and keeps a stable resident set under loops
    /// larger than the cache like LIRS and TinyLFU. Measured against S3-FIFO, W-TinyLFU,
    /// LIRS, ARC, SIEVE, quick_cache and moka in `docs/benchmarks/engine.md`, which says
    /// why it was chosen.
    #[default]
    Adaptive,
    /// Least recently used.
    Lru,
    /// Least frequently used, with aging: every counter is halved periodically, so a
    /// formerly hot key does not stay forever. Ties go to the least recently used.
    Lfu,
    /// First in, first out: reads do not reorder.
    Fifo,
    /// A uniformly random entry.
    Random,
    /// The entry closest to expiry first (like Redis `volatile-ttl`); entries without
    /// expiry go after all expiring ones, oldest first (an entry that loses its TTL counts
    /// as written at that moment).
    Ttl,
    /// S3-FIFO (Yang et al., SOSP 2023): small and main FIFO queues with a ghost queue.
    /// A candidate the default was measured against; kept for comparison.
    S3Fifo,
    /// Window TinyLFU with a hill-climbed window (Caffeine's design) and victim wear.
    /// A candidate the default was measured against; kept for comparison.
    WTinyLfu,
}

impl Policy {
    /// Every policy, in documentation order.
    pub const ALL: [Policy; 8] = [
        Policy::Adaptive,
        Policy::Lru,
        Policy::Lfu,
        Policy::Fifo,
        Policy::Random,
        Policy::Ttl,
        Policy::S3Fifo,
        Policy::WTinyLfu,
    ];

    /// The lowercase name used in configs and on the command line.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Policy::Adaptive => "adaptive",
            Policy::Lru => "lru",
            Policy::Lfu => "lfu",
            Policy::Fifo => "fifo",
            Policy::Random => "random",
            Policy::Ttl => "ttl",
            Policy::S3Fifo => "s3fifo",
            Policy::WTinyLfu => "wtinylfu",
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A policy name that is not one of [`Policy::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown eviction policy {name:?} (expected one of: adaptive, lru, lfu, fifo, random, ttl, s3fifo, wtinylfu)"
)]
pub struct UnknownPolicy {
    /// What was given.
    pub name: String,
}

impl FromStr for Policy {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Policy::ALL
            .into_iter()
            .find(|p| p.name() == lower || (lower == "default" && *p == Policy::Adaptive))
            .ok_or(UnknownPolicy { name: s.to_owned() })
    }
}

/// What bounds an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capacity {
    /// At most this many bytes, each entry charged key + value +
    /// [`ENTRY_OVERHEAD`](crate::ENTRY_OVERHEAD) (or its explicit charge).
    Bytes(u64),
    /// At most this many entries, each charged 1.
    Entries(u64),
}

impl Capacity {
    /// The bound in charge units (bytes or entries).
    #[must_use]
    pub fn limit(self) -> u64 {
        match self {
            Capacity::Bytes(n) | Capacity::Entries(n) => n,
        }
    }
}
