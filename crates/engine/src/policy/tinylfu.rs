//! Candidate (policy `wtinylfu`): window TinyLFU with a hill-climbed window (after Einziger,
//! Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission Policy", and
//! Caffeine's adaptive window). Written from the papers; `docs/benchmarks/engine.md` has
//! the measurements that made S3-LFU the default instead.
//!
//! ```text
//!  new ──► window (LRU, ~1%) ──overflow──► candidate ─┐
//!                                                     │ freq(candidate) > freq(victim)?
//!                  main: probation (LRU) ◄── yes ─────┤
//!                        │ hit                        └── no: candidate evicted
//!                        ▼
//!                  protected (LRU, ≤ 80% of main) ──overflow──► back to probation
//! ```
//!
//! Frequencies come from a 4-bit count-min sketch that is halved every 10 × capacity
//! accesses, so history ages. The window absorbs bursts of new keys (recency); the
//! admission duel keeps one-hit wonders, scans and loops from flushing main (frequency).
//! Every sample period the climber compares the hit rate with the previous period and
//! moves the window/main split in the direction that helped, with a decaying step; a
//! large swing in hit rate restarts the search. Recency-heavy workloads grow the window,
//! frequency-heavy ones shrink it.

use super::sketch::FrequencySketch;
use super::{List, Rng, Sizing};
use crate::node::{Node, ix};

const WINDOW: u8 = 0;
const PROBATION: u8 = 1;
const PROTECTED: u8 = 2;

/// Initial window share of the bound.
const INITIAL_WINDOW: f64 = 0.01;
/// Protected share of main.
const PROTECTED_SHARE: f64 = 0.80;
/// Climber: first step as a share of the bound, per-period decay, restart threshold.
const STEP_PERCENT: f64 = 0.0625;
const STEP_DECAY: f64 = 0.98;
const RESTART_THRESHOLD: f64 = 0.05;
/// Candidates at least this frequent win a tie-breaking coin flip 1 in 128 times, so an
/// attacker cannot pin a victim by inflating its frequency (hash flooding).
const ADMIT_HASHDOS_THRESHOLD: u32 = 6;
/// Wear: a probation victim that beats a candidate by more than `WEAR_MARGIN` moves to
/// the head of probation and has its frequency halved for each such win since its last
/// access (up to `MAX_WEAR` halvings). Without it a formerly hot key at the tail of
/// probation beats every newcomer until the sketch's next reset (10 × capacity
/// accesses later); with it a stale key loses its place within a few rounds while a
/// live one is reset by its next access. Near-ties do not wear, so the members of a
/// loop larger than the cache (whose frequencies are all about equal) keep their place.
const MAX_WEAR: u32 = 4;
const WEAR_MARGIN: u32 = 1;

#[derive(Debug)]
pub(crate) struct WTinyLfu {
    window: List,
    probation: List,
    protected: List,
    limit: u64,
    max_window: u64,
    max_protected: u64,
    entries_mode: bool,
    sketch: FrequencySketch,
    rng: Rng,
    hits: u64,
    misses: u64,
    prev_hit_rate: f64,
    step: f64,
}

impl WTinyLfu {
    pub(crate) fn new(sizing: Sizing, seed: u64) -> Self {
        let sketch_entries = if sizing.entries_mode {
            usize::try_from(sizing.limit).unwrap_or(usize::MAX)
        } else {
            // Unknown entry count in byte mode: start small, grow with the population.
            256
        };
        let mut p = Self {
            window: List::default(),
            probation: List::default(),
            protected: List::default(),
            limit: 0,
            max_window: 0,
            max_protected: 0,
            entries_mode: sizing.entries_mode,
            sketch: FrequencySketch::new(sketch_entries),
            rng: Rng::new(seed ^ 0x7141_9F0C_5A5A_0001),
            hits: 0,
            misses: 0,
            prev_hit_rate: 0.0,
            step: 0.0,
        };
        p.resize(sizing);
        p
    }

    pub(crate) fn resize(&mut self, sizing: Sizing) {
        self.limit = sizing.limit;
        self.max_window = ((sizing.limit as f64 * INITIAL_WINDOW) as u64).max(1);
        let main = self.limit.saturating_sub(self.max_window);
        self.max_protected = (main as f64 * PROTECTED_SHARE) as u64;
        self.step = -STEP_PERCENT * self.limit as f64;
        if self.entries_mode {
            self.sketch
                .ensure_capacity(usize::try_from(sizing.limit).unwrap_or(usize::MAX));
        }
    }

    /// Byte mode only (entry mode is sized for the bound): grow with the population,
    /// keeping the counts.
    pub(crate) fn ensure_sketch_capacity(&mut self, entries: usize) {
        if !self.entries_mode {
            self.sketch.ensure_capacity(entries);
        }
    }

    fn max_main(&self) -> u64 {
        self.limit.saturating_sub(self.max_window)
    }

    fn segment(&mut self, tag: u8) -> &mut List {
        match tag {
            WINDOW => &mut self.window,
            PROBATION => &mut self.probation,
            _ => &mut self.protected,
        }
    }

    fn move_to(&mut self, nodes: &mut [Node], i: u32, tag: u8) {
        let from = nodes[ix(i)].tag;
        self.segment(from).unlink(nodes, i);
        nodes[ix(i)].tag = tag;
        self.segment(tag).push_front(nodes, i);
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        self.sketch.increment(nodes[ix(i)].hash);
        self.misses += 1;
        nodes[ix(i)].tag = WINDOW;
        nodes[ix(i)].aux = 0;
        self.window.push_front(nodes, i);
        // While main has room, overflow from the window needs no duel.
        while self.window.weight > self.max_window {
            let Some(cand) = self.window.tail() else {
                break;
            };
            if self.probation.weight + self.protected.weight + nodes[ix(cand)].charge
                > self.max_main()
            {
                break;
            }
            self.move_to(nodes, cand, PROBATION);
        }
        self.climb();
    }

    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        self.sketch.increment(nodes[ix(i)].hash);
        nodes[ix(i)].aux = 0;
        self.hits += 1;
        match nodes[ix(i)].tag {
            WINDOW => self.window.move_to_front(nodes, i),
            PROBATION => {
                self.move_to(nodes, i, PROTECTED);
                self.demote_protected(nodes);
            }
            _ => self.protected.move_to_front(nodes, i),
        }
        self.climb();
    }

    fn demote_protected(&mut self, nodes: &mut [Node]) {
        while self.protected.weight > self.max_protected {
            let Some(t) = self.protected.tail() else {
                break;
            };
            self.move_to(nodes, t, PROBATION);
        }
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        let tag = nodes[ix(i)].tag;
        self.segment(tag).unlink(nodes, i);
    }

    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        let (tag, charge) = (nodes[ix(i)].tag, nodes[ix(i)].charge);
        let list = self.segment(tag);
        list.weight = list.weight - old + charge;
    }

    /// The TinyLFU duel: does the window's candidate deserve the main victim's place?
    /// Returns (admit, the victim won by more than the wear margin).
    fn admits(&mut self, candidate: u64, victim: u64, survived: u32) -> (bool, bool) {
        let cf = self.sketch.frequency(candidate);
        let vf = self.sketch.frequency(victim) >> survived;
        let strict = vf > cf + WEAR_MARGIN;
        if cf > vf {
            (true, false)
        } else if cf >= ADMIT_HASHDOS_THRESHOLD {
            (self.rng.next_u64() & 127 == 0, strict)
        } else {
            (false, strict)
        }
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        loop {
            if self.window.weight > self.max_window
                && let Some(cand) = self.window.tail()
            {
                let main = self.probation.weight + self.protected.weight;
                if main + nodes[ix(cand)].charge <= self.max_main() {
                    self.move_to(nodes, cand, PROBATION);
                    continue;
                }
                let Some(victim) = self.probation.tail().or(self.protected.tail()) else {
                    self.window.unlink(nodes, cand);
                    return Some(cand);
                };
                let survived = nodes[ix(victim)].aux;
                let (admit, strict) =
                    self.admits(nodes[ix(cand)].hash, nodes[ix(victim)].hash, survived);
                if admit {
                    self.forget(nodes, victim);
                    self.move_to(nodes, cand, PROBATION);
                    return Some(victim);
                }
                if strict && nodes[ix(victim)].tag == PROBATION {
                    nodes[ix(victim)].aux = (survived + 1).min(MAX_WEAR);
                    self.probation.move_to_front(nodes, victim);
                }
                self.window.unlink(nodes, cand);
                return Some(cand);
            }
            // The window is within its share, so main is over its own.
            return self
                .probation
                .pop_back(nodes)
                .or_else(|| self.protected.pop_back(nodes))
                .or_else(|| self.window.pop_back(nodes));
        }
    }

    /// One hill-climbing step per sample period.
    fn climb(&mut self) {
        let requests = self.hits + self.misses;
        if requests < self.sketch.sample_size() {
            return;
        }
        let hit_rate = self.hits as f64 / requests as f64;
        let change = hit_rate - self.prev_hit_rate;
        let amount = if change >= 0.0 { self.step } else { -self.step };
        self.step = if change.abs() >= RESTART_THRESHOLD {
            STEP_PERCENT * self.limit as f64 * amount.signum()
        } else {
            STEP_DECAY * amount
        };
        self.prev_hit_rate = hit_rate;
        self.hits = 0;
        self.misses = 0;
        let amount = amount as i64;
        if amount > 0 {
            // Grow the window at the protected segment's expense; entries move lazily
            // (main is now over its share, so the next evictions come from main).
            let quota = amount.unsigned_abs().min(self.max_protected);
            self.max_protected -= quota;
            self.max_window += quota;
        } else if amount < 0 {
            let quota = amount.unsigned_abs().min(self.max_window.saturating_sub(1));
            self.max_window -= quota;
            self.max_protected += quota;
        }
    }
}
