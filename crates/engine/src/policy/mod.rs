//! Eviction policies.
//!
//! A policy orders the shard's unpinned entries and names the next victim. It never
//! frees anything itself: the shard owns the nodes, the hash table and the accounting.
//!
//! The contract every policy implements (the shard guarantees the calling order):
//! - `admit(i)`: `i` is a live, unpinned node in no policy structure; the policy MUST
//!   link it. Called for a new entry and for an entry that was just unpinned.
//! - `touch(i)`: `i` is linked and was read or overwritten; the policy MAY reorder it.
//! - `forget(i)`: `i` is linked and leaves for another reason (explicit removal,
//!   expiry, pinning); the policy MUST unlink it.
//! - `reweigh(i, old)`: `i`'s charge changed from `old` to its current value; the policy
//!   MUST keep any per-segment weight sums exact.
//! - `deadline_changed(i)`: `i`'s expiry changed (TTL policy reorders).
//! - `evict()`: the shard is over its bound; the policy MUST unlink and return one of its
//!   members, or `None` only when it has none. It may return the entry just admitted
//!   (an admission policy rejecting it).

mod fifo_lru;
mod lfu;
mod list;
mod random;
mod s3lfu;
mod sketch;
mod tinylfu;
mod ttl;

pub(crate) use list::List;

use crate::Policy;
use crate::node::Node;

/// Rough size hints a policy sizes its internal structures with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sizing {
    /// The shard's bound in charge units.
    pub(crate) limit: u64,
    /// True when every entry is charged 1 (entry-count mode).
    pub(crate) entries_mode: bool,
}

#[derive(Debug)]
pub(crate) enum PolicyState {
    List(fifo_lru::ListPolicy),
    Lfu(lfu::Lfu),
    Random(random::RandomPolicy),
    Ttl(ttl::TtlPolicy),
    S3Fifo(s3lfu::S3Lfu),
    Adaptive(s3lfu::S3Lfu),
    WTinyLfu(tinylfu::WTinyLfu),
}

macro_rules! dispatch {
    ($self:expr, $p:ident => $e:expr) => {
        match $self {
            PolicyState::List($p) => $e,
            PolicyState::Lfu($p) => $e,
            PolicyState::Random($p) => $e,
            PolicyState::Ttl($p) => $e,
            PolicyState::S3Fifo($p) => $e,
            PolicyState::Adaptive($p) => $e,
            PolicyState::WTinyLfu($p) => $e,
        }
    };
}

impl PolicyState {
    pub(crate) fn new(kind: Policy, sizing: Sizing, seed: u64) -> Self {
        match kind {
            Policy::Lru => PolicyState::List(fifo_lru::ListPolicy::lru()),
            Policy::Fifo => PolicyState::List(fifo_lru::ListPolicy::fifo()),
            Policy::Lfu => PolicyState::Lfu(lfu::Lfu::new()),
            Policy::Random => PolicyState::Random(random::RandomPolicy::new(seed)),
            Policy::Ttl => PolicyState::Ttl(ttl::TtlPolicy::default()),
            Policy::S3Fifo => PolicyState::S3Fifo(s3lfu::S3Lfu::plain(sizing)),
            Policy::Adaptive => PolicyState::Adaptive(s3lfu::S3Lfu::new(sizing)),
            Policy::WTinyLfu => PolicyState::WTinyLfu(tinylfu::WTinyLfu::new(sizing, seed)),
        }
    }

    pub(crate) fn kind(&self) -> Policy {
        match self {
            PolicyState::List(p) if p.is_lru() => Policy::Lru,
            PolicyState::List(_) => Policy::Fifo,
            PolicyState::Lfu(_) => Policy::Lfu,
            PolicyState::Random(_) => Policy::Random,
            PolicyState::Ttl(_) => Policy::Ttl,
            PolicyState::S3Fifo(_) => Policy::S3Fifo,
            PolicyState::Adaptive(_) => Policy::Adaptive,
            PolicyState::WTinyLfu(_) => Policy::WTinyLfu,
        }
    }

    #[inline]
    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        dispatch!(self, p => p.admit(nodes, i));
    }

    #[inline(always)]
    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        dispatch!(self, p => p.touch(nodes, i));
    }

    #[inline]
    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        dispatch!(self, p => p.forget(nodes, i));
    }

    #[inline]
    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        dispatch!(self, p => p.reweigh(nodes, i, old));
    }

    #[inline]
    pub(crate) fn deadline_changed(&mut self, nodes: &mut [Node], i: u32) {
        if let PolicyState::Ttl(p) = self {
            p.deadline_changed(nodes, i);
        }
    }

    #[inline]
    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        dispatch!(self, p => p.evict(nodes))
    }

    /// The shard's bound changed.
    pub(crate) fn resize(&mut self, sizing: Sizing) {
        match self {
            PolicyState::S3Fifo(p) => p.resize(sizing),
            PolicyState::Adaptive(p) => p.resize(sizing),
            PolicyState::WTinyLfu(p) => p.resize(sizing),
            _ => {}
        }
    }

    /// Called by the shard when its number of entries grew (sketch sizing).
    #[inline]
    pub(crate) fn entries_grew(&mut self, entries: usize) {
        match self {
            PolicyState::Adaptive(p) => p.ensure_sketch_capacity(entries),
            PolicyState::WTinyLfu(p) => p.ensure_sketch_capacity(entries),
            _ => {}
        }
    }
}

/// A small, fast, seedable generator (xorshift64*): deterministic runs for tests and
/// the simulator, no global state.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    #[inline]
    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (no modulo bias worth the name).
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}
