//! Candidate default: S3-FIFO's queues with a TinyLFU admission duel ("S3-LFU").
//!
//! S3-FIFO (Yang et al., SOSP 2023) demotes quickly: a new key that is not read while
//! in the small FIFO leaves at once, and main is a CLOCK whose counters decay, so a key
//! that stopped being read drops out within a pass. What it lacks is memory beyond its
//! ghost queue: a loop larger than the cache, or a key read at long intervals, never
//! earns a place in main. TinyLFU (Einziger et al.) has exactly that memory in a
//! frequency sketch. Here a key leaving the small queue unread is not simply dropped:
//! it duels the CLOCK victim of main, and wins the place if the sketch says it is the
//! more frequent of the two. Reads in small still promote without a duel, ghost hits
//! still go straight to main.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::sketch::FrequencySketch;
use super::{List, Sizing};
use crate::node::{Node, ix};

const SMALL: u8 = 0;
const MAIN: u8 = 1;
const SMALL_SHARE: f64 = 0.10;
const MAX_FREQ: u32 = 3;
/// A key leaving small unread duels for a place in main only if the sketch has seen it
/// at least this often: below that, S3-FIFO's quick demotion is right (one-hit wonders,
/// Zipf tails); above it, the key keeps coming back and deserves frequency's judgement.
const MIN_DUEL_FREQ: u32 = 4;

#[derive(Debug)]
pub(crate) struct S3Lfu {
    small: List,
    main: List,
    limit: u64,
    small_target: u64,
    entries_mode: bool,
    ghost: Ghost,
    sketch: FrequencySketch,
}

impl S3Lfu {
    pub(crate) fn new(sizing: Sizing) -> Self {
        let sketch_entries = if sizing.entries_mode {
            usize::try_from(sizing.limit).unwrap_or(usize::MAX)
        } else {
            256
        };
        let mut p = Self {
            small: List::default(),
            main: List::default(),
            limit: 0,
            small_target: 0,
            entries_mode: sizing.entries_mode,
            ghost: Ghost::default(),
            sketch: FrequencySketch::new(sketch_entries),
        };
        p.resize(sizing);
        p
    }

    pub(crate) fn resize(&mut self, sizing: Sizing) {
        self.limit = sizing.limit;
        self.small_target = ((sizing.limit as f64 * SMALL_SHARE) as u64).max(1);
        if self.entries_mode {
            self.sketch
                .ensure_capacity(usize::try_from(sizing.limit).unwrap_or(usize::MAX));
        }
    }

    /// Byte mode only: the entry count is unknown up front, so the sketch grows with the
    /// population (keeping its counts). Entry mode sized it for the bound already.
    pub(crate) fn ensure_sketch_capacity(&mut self, entries: usize) {
        if !self.entries_mode {
            self.sketch.ensure_capacity(entries);
        }
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        let hash = nodes[ix(i)].hash;
        self.sketch.increment(hash);
        nodes[ix(i)].aux = 0;
        self.ghost.capacity = (self.main.len + self.small.len).max(16);
        if self.ghost.take(hash) {
            nodes[ix(i)].tag = MAIN;
            self.main.push_front(nodes, i);
        } else {
            nodes[ix(i)].tag = SMALL;
            self.small.push_front(nodes, i);
        }
    }

    /// A hit costs what it costs in S3-FIFO: a saturating 2-bit counter. The sketch is
    /// credited later, when CLOCK spends the counter (see `main_victim`) or the key is
    /// promoted out of small, so a resident's sketch count grows by one for every pass
    /// of the clock in which it was read. That is the same unit the misses of a key
    /// outside the cache count in, which is what the duel compares.
    #[inline]
    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        let n = &mut nodes[ix(i)];
        n.aux = (n.aux + 1).min(MAX_FREQ);
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        if nodes[ix(i)].tag == SMALL {
            self.small.unlink(nodes, i);
        } else {
            self.main.unlink(nodes, i);
        }
    }

    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        let charge = nodes[ix(i)].charge;
        let list = if nodes[ix(i)].tag == SMALL {
            &mut self.small
        } else {
            &mut self.main
        };
        list.weight = list.weight - old + charge;
    }

    /// Advances main's CLOCK to a member whose counter is zero (decrementing the ones it
    /// passes) and returns it, still linked at the tail.
    fn main_victim(&mut self, nodes: &mut [Node]) -> Option<u32> {
        loop {
            let t = self.main.tail()?;
            if nodes[ix(t)].aux == 0 {
                return Some(t);
            }
            nodes[ix(t)].aux -= 1;
            self.sketch.increment(nodes[ix(t)].hash);
            self.main.move_to_front(nodes, t);
        }
    }

    fn move_to_main(&mut self, nodes: &mut [Node], t: u32) {
        nodes[ix(t)].aux = 0;
        nodes[ix(t)].tag = MAIN;
        self.main.push_front(nodes, t);
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        loop {
            if !self.small.is_empty()
                && (self.small.weight > self.small_target || self.main.is_empty())
            {
                let t = self.small.pop_back(nodes).expect("small is not empty");
                if nodes[ix(t)].aux > 0 {
                    self.sketch.increment(nodes[ix(t)].hash);
                    self.move_to_main(nodes, t);
                    continue;
                }
                let main_room = self.limit.saturating_sub(self.small_target);
                if self.main.weight + nodes[ix(t)].charge <= main_room {
                    self.move_to_main(nodes, t);
                    continue;
                }
                let cf = self.sketch.frequency(nodes[ix(t)].hash);
                if cf >= MIN_DUEL_FREQ
                    && let Some(v) = self.main_victim(nodes)
                    && cf > self.sketch.frequency(nodes[ix(v)].hash)
                {
                    self.main.unlink(nodes, v);
                    self.move_to_main(nodes, t);
                    return Some(v);
                }
                self.ghost.insert(nodes[ix(t)].hash);
                return Some(t);
            }
            let v = self.main_victim(nodes)?;
            self.main.unlink(nodes, v);
            return Some(v);
        }
    }
}

/// A bounded FIFO of key hashes; a hash counts as present while its latest insertion
/// is still in the queue.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    queue: VecDeque<(u64, u64)>,
    present: HashMap<u64, u64>,
    seq: u64,
    pub(crate) capacity: u64,
}

impl Ghost {
    pub(crate) fn insert(&mut self, hash: u64) {
        self.seq += 1;
        self.queue.push_back((hash, self.seq));
        self.present.insert(hash, self.seq);
        while self.queue.len() as u64 > self.capacity {
            let Some((h, s)) = self.queue.pop_front() else {
                break;
            };
            if self.present.get(&h) == Some(&s) {
                self.present.remove(&h);
            }
        }
    }

    pub(crate) fn take(&mut self, hash: u64) -> bool {
        self.present.remove(&hash).is_some()
    }
}
