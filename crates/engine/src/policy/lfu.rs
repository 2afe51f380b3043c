//! LFU with aging.
//!
//! Entries sit in one list per frequency (1..=[`MAX_FREQ`]); a bitmap of non-empty
//! buckets finds the least frequent in O(1). Within a frequency the least recently used
//! goes first. Aging: after [`AGING_FACTOR`] × (entries) accesses every frequency is
//! halved (at least 1), an O(n) pass amortized to O(1) per access. Without it a key that
//! was hot an hour ago outlives the keys that are hot now; the cap bounds how many
//! halvings a cold key needs to fall back to the bottom.

use super::List;
use crate::node::{Node, ix};

/// Highest counted frequency; small on purpose (see module docs).
const MAX_FREQ: u32 = 31;
/// Accesses between halvings, per entry held.
const AGING_FACTOR: u64 = 1;
const BUCKETS: usize = MAX_FREQ as usize + 1;

#[derive(Debug)]
pub(crate) struct Lfu {
    buckets: Vec<List>,
    /// Bit f set when bucket f is non-empty.
    nonempty: u64,
    len: u64,
    accesses: u64,
}

impl Lfu {
    pub(crate) fn new() -> Self {
        Self {
            buckets: vec![List::default(); BUCKETS],
            nonempty: 0,
            len: 0,
            accesses: 0,
        }
    }

    fn link(&mut self, nodes: &mut [Node], i: u32, freq: u32) {
        nodes[ix(i)].aux = freq;
        self.buckets[freq as usize].push_front(nodes, i);
        self.nonempty |= 1 << freq;
    }

    fn unlink(&mut self, nodes: &mut [Node], i: u32) {
        let freq = nodes[ix(i)].aux as usize;
        self.buckets[freq].unlink(nodes, i);
        if self.buckets[freq].is_empty() {
            self.nonempty &= !(1 << freq);
        }
    }

    fn count_access(&mut self, nodes: &mut [Node]) {
        self.accesses += 1;
        if self.accesses >= AGING_FACTOR * self.len.max(16) {
            self.age(nodes);
        }
    }

    /// Halves every frequency. Buckets are merged oldest-first so that, within the new
    /// bucket, entries keep their relative recency per old bucket.
    fn age(&mut self, nodes: &mut [Node]) {
        self.accesses = 0;
        let old = std::mem::replace(&mut self.buckets, vec![List::default(); BUCKETS]);
        self.nonempty = 0;
        for (freq, list) in old.iter().enumerate() {
            let members: Vec<u32> = list.iter_from_tail(nodes).collect();
            let halved = u32::try_from(freq / 2).expect("freq <= MAX_FREQ").max(1);
            for i in members {
                self.link(nodes, i, halved);
            }
        }
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        self.len += 1;
        self.link(nodes, i, 1);
        self.count_access(nodes);
    }

    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        let freq = (nodes[ix(i)].aux + 1).min(MAX_FREQ);
        self.unlink(nodes, i);
        self.link(nodes, i, freq);
        self.count_access(nodes);
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        self.len -= 1;
        self.unlink(nodes, i);
    }

    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        let freq = nodes[ix(i)].aux as usize;
        let list = &mut self.buckets[freq];
        list.weight = list.weight - old + nodes[ix(i)].charge;
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        if self.nonempty == 0 {
            return None;
        }
        let freq = self.nonempty.trailing_zeros() as usize;
        let victim = self.buckets[freq].tail().expect("bucket marked non-empty");
        self.forget(nodes, victim);
        Some(victim)
    }
}
