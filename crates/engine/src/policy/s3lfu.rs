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
//!
//! ```text
//!  new ──► small FIFO (10%) ──read while there──────────────► main CLOCK (2-bit counters)
//!             │ unread                                          ▲      │ counter 0
//!             ├─ sketch ≥ 4 and more frequent than the ─────────┘      ▼
//!             │  main CLOCK victim: duel won                         evicted
//!             └─ otherwise: evicted, hash kept in the ghost ── requested again ──► main
//! ```
//!
//! Costs: a hit bumps a 2-bit counter and nothing else (the sketch is credited when the
//! clock spends the counter, one count per pass in which the key was read: the unit a
//! miss counts in too). Misses pay a sketch increment, the ghost probe and the eviction.
//! In byte mode a newcomer larger than small's average member must bring more frequency
//! than the members it would push out (moka's aggregated-victim rule); otherwise it
//! enters at small's cold end, ghost hit or not. And the duel is won on density there:
//! more frequency per byte than main's victim, not just more frequency.

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
    /// False: plain S3-FIFO (no sketch, no duel, no density rule), the `s3fifo` policy.
    lfu: bool,
    small: List,
    main: List,
    limit: u64,
    small_target: u64,
    entries_mode: bool,
    ghost: Ghost,
    sketch: FrequencySketch,
}

impl S3Lfu {
    /// The default policy.
    pub(crate) fn new(sizing: Sizing) -> Self {
        Self::build(sizing, true)
    }

    /// Plain S3-FIFO (the `s3fifo` candidate), on the same queues and ghost.
    pub(crate) fn plain(sizing: Sizing) -> Self {
        Self::build(sizing, false)
    }

    fn build(sizing: Sizing, lfu: bool) -> Self {
        let sketch_entries = if sizing.entries_mode && lfu {
            usize::try_from(sizing.limit).unwrap_or(usize::MAX)
        } else {
            256
        };
        let mut p = Self {
            lfu,
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
        if self.entries_mode && self.lfu {
            self.sketch
                .ensure_capacity(usize::try_from(sizing.limit).unwrap_or(usize::MAX));
        }
    }

    /// Byte mode only: the entry count is unknown up front, so the sketch grows with the
    /// population (keeping its counts). Entry mode sized it for the bound already.
    pub(crate) fn ensure_sketch_capacity(&mut self, entries: usize) {
        if !self.entries_mode && self.lfu {
            self.sketch.ensure_capacity(entries);
        }
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        let hash = nodes[ix(i)].hash;
        self.credit(hash);
        nodes[ix(i)].aux = 0;
        self.ghost
            .ensure_capacity((self.main.len + self.small.len) / 2);
        // Byte mode: a large key that brings less frequency than the members of small it
        // would push out goes in at small's cold end, to leave first. This applies to
        // ghost hits too: without that, a large key rejected once would get into main on
        // its second request, whatever it displaces.
        if self.lfu && !self.entries_mode && !self.worth_its_size(nodes, i) {
            nodes[ix(i)].tag = SMALL;
            self.small.push_back(nodes, i);
        } else if self.ghost.take(hash) {
            nodes[ix(i)].tag = MAIN;
            self.main.push_front(nodes, i);
        } else {
            nodes[ix(i)].tag = SMALL;
            self.small.push_front(nodes, i);
        }
    }

    /// Byte mode: does a new key bring more frequency than the oldest members of small
    /// it would displace, summed until they cover its charge (moka's aggregated-victim
    /// rule)? Keys no larger than small's average member always qualify, so only the
    /// large ones are judged.
    fn worth_its_size(&self, nodes: &[Node], i: u32) -> bool {
        let need = nodes[ix(i)].charge;
        if self.small.len == 0 || need <= self.small.weight / self.small.len {
            return true;
        }
        let mine = self.sketch.frequency(nodes[ix(i)].hash);
        let (mut freed, mut theirs) = (0u64, 0u32);
        for v in self.small.iter_from_tail(nodes).take(16) {
            freed += nodes[ix(v)].charge;
            theirs += self.sketch.frequency(nodes[ix(v)].hash).max(1);
            if mine <= theirs {
                return false;
            }
            if freed >= need {
                break;
            }
        }
        true
    }

    /// A hit costs what it costs in S3-FIFO: a saturating 2-bit counter. The sketch is
    /// credited later, when CLOCK spends the counter (see `main_victim`) or the key is
    /// promoted out of small, so a resident's sketch count grows by one for every pass
    /// of the clock in which it was read. That is the same unit the misses of a key
    /// outside the cache count in, which is what the duel compares.
    ///
    /// A saturated counter is left unwritten: a hot entry's node then stays a clean,
    /// shared cache line that hits on other cores read without taking it over.
    #[inline]
    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        let n = &mut nodes[ix(i)];
        if n.aux < MAX_FREQ {
            n.aux += 1;
        }
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
            self.credit(nodes[ix(t)].hash);
            self.main.move_to_front(nodes, t);
        }
    }

    #[inline]
    fn credit(&mut self, hash: u64) {
        if self.lfu {
            self.sketch.increment(hash);
        }
    }

    fn move_to_main(&mut self, nodes: &mut [Node], t: u32) {
        nodes[ix(t)].aux = 0;
        nodes[ix(t)].tag = MAIN;
        self.main.push_front(nodes, t);
    }

    /// Whether `t`, leaving small unread with sketch frequency `cf`, takes the place of
    /// main's CLOCK victim `v`: it must be more frequent and, in byte mode, also denser
    /// (more frequency per unit of charge). Frequency alone let a large key win against
    /// a small victim and then push out further members of main after it, one eviction
    /// at a time, until its charge was covered: on `varsize` that cost up to 15% more
    /// object misses (docs/benchmarks/engine.md).
    fn wins_duel(&self, nodes: &[Node], t: u32, cf: u32, v: u32) -> bool {
        let vf = self.sketch.frequency(nodes[ix(v)].hash);
        cf > vf
            && (self.entries_mode
                || u128::from(cf) * u128::from(nodes[ix(v)].charge)
                    > u128::from(vf) * u128::from(nodes[ix(t)].charge))
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        loop {
            if !self.small.is_empty()
                && (self.small.weight > self.small_target || self.main.is_empty())
            {
                let t = self.small.pop_back(nodes).expect("small is not empty");
                if nodes[ix(t)].aux > 0 {
                    self.credit(nodes[ix(t)].hash);
                    self.move_to_main(nodes, t);
                    continue;
                }
                let main_room = self.limit.saturating_sub(self.small_target);
                if self.lfu && self.main.weight + nodes[ix(t)].charge <= main_room {
                    self.move_to_main(nodes, t);
                    continue;
                }
                let cf = self.sketch.frequency(nodes[ix(t)].hash);
                if self.lfu
                    && cf >= MIN_DUEL_FREQ
                    && let Some(v) = self.main_victim(nodes)
                    && self.wins_duel(nodes, t, cf, v)
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

/// The ghost: hashes of keys recently evicted from small unread. A direct-mapped table
/// of 32-bit fingerprints (a newer hash overwrites an older one in its slot), so insert
/// and lookup are one memory access each and memory is fixed. Sized at about half the
/// entries the cache holds (rounded up to a power of two): measured against a FIFO
/// ghost of one entry per cached entry (S3-FIFO's choice), this matches its miss ratios
/// within 0.1% while a table twice as large admits too much to main and loses ~1%.
#[derive(Debug, Default)]
pub(crate) struct Ghost {
    slots: Vec<u32>,
    mask: u64,
}

impl Ghost {
    /// Grows to remember about `entries` keys (forgetting what it held: growth happens
    /// only while a cache fills, a handful of times). Never shrinks, so a population
    /// that hovers around a power of two does not make it flap.
    #[inline]
    pub(crate) fn ensure_capacity(&mut self, entries: u64) {
        let want = entries.clamp(16, 1 << 26).next_power_of_two();
        if (self.slots.len() as u64) < want {
            self.slots = vec![0; usize::try_from(want).unwrap_or(1 << 26)];
            self.mask = want - 1;
        }
    }

    #[inline]
    fn slot(&self, hash: u64) -> (usize, u32) {
        // Slot from bits 8.., fingerprint from the top 32 (never 0: 0 marks empty).
        (
            ((hash >> 8) & self.mask) as usize,
            ((hash >> 32) as u32) | 1,
        )
    }

    #[inline]
    pub(crate) fn insert(&mut self, hash: u64) {
        if self.slots.is_empty() {
            return;
        }
        let (i, fp) = self.slot(hash);
        self.slots[i] = fp;
    }

    #[inline]
    pub(crate) fn take(&mut self, hash: u64) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (i, fp) = self.slot(hash);
        if self.slots[i] == fp {
            self.slots[i] = 0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(hash: u64, charge: u64) -> Node {
        let mut n = Node::vacant();
        n.hash = hash;
        n.charge = charge;
        n
    }

    fn policy(entries_mode: bool) -> S3Lfu {
        S3Lfu::new(Sizing {
            limit: 1 << 20,
            entries_mode,
        })
    }

    #[test]
    fn a_duel_in_byte_mode_is_won_on_density() {
        // Candidate 0: frequency 6, 10 KiB. Victim 1: frequency 2, 1 KiB.
        let nodes = [node(0x1111, 10 << 10), node(0x2222_0000_0000, 1 << 10)];
        for entries_mode in [true, false] {
            let mut p = policy(entries_mode);
            for _ in 0..6 {
                p.sketch.increment(nodes[0].hash);
            }
            for _ in 0..2 {
                p.sketch.increment(nodes[1].hash);
            }
            let cf = p.sketch.frequency(nodes[0].hash);
            assert_eq!((cf, p.sketch.frequency(nodes[1].hash)), (6, 2));
            // More frequent: wins in entry mode; 6/10 KiB is less dense than 2/1 KiB.
            assert_eq!(p.wins_duel(&nodes, 0, cf, 1), entries_mode);
            // Against a victim at least as frequent it never wins.
            assert!(!p.wins_duel(&nodes, 1, 2, 0));
        }
        // A dense enough large candidate still wins in byte mode.
        let mut p = policy(false);
        let nodes = [node(0x1111, 2 << 10), node(0x2222_0000_0000, 1 << 10)];
        for _ in 0..6 {
            p.sketch.increment(nodes[0].hash);
        }
        p.sketch.increment(nodes[1].hash);
        assert!(p.wins_duel(&nodes, 0, p.sketch.frequency(nodes[0].hash), 1));
    }
}
