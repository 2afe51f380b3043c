//! A count-min sketch of 4-bit counters, blocked so that one key's four counters share a
//! 64-byte cache line (one miss per increment or estimate). Counters saturate at 15 and
//! are all halved after `sample` increments, which both ages the history and bounds the
//! error (the TinyLFU "reset").

/// Words per block: 8 × 64 bits = one cache line.
const BLOCK_WORDS: usize = 8;
const RESET_MASK: u64 = 0x7777_7777_7777_7777;

/// One key's counters: a block aligned to a cache line, so an increment or an estimate
/// touches one line (a plain `Vec<u64>` is only 8-aligned and its blocks straddle two).
#[derive(Debug, Clone, Copy, Default)]
#[repr(align(64))]
struct Block([u64; BLOCK_WORDS]);

#[derive(Debug)]
pub(crate) struct FrequencySketch {
    table: Vec<Block>,
    block_mask: u64,
    /// Increments since the last reset.
    size: u64,
    /// Increments between resets: 10 × the entries the sketch is sized for.
    sample: u64,
    capacity: usize,
}

impl FrequencySketch {
    /// A sketch sized for about `entries` distinct hot keys.
    pub(crate) fn new(entries: usize) -> Self {
        let capacity = entries.clamp(16, 1 << 26);
        let blocks = (capacity.next_power_of_two() / BLOCK_WORDS).max(1);
        Self {
            table: vec![Block::default(); blocks],
            block_mask: (blocks - 1) as u64,
            size: 0,
            sample: 10 * capacity as u64,
            capacity,
        }
    }

    /// Grows the sketch to serve at least `entries` keys, keeping every estimate: the
    /// table doubles with each copy of a block placed where the wider block mask now
    /// sends its keys (a key's counter positions inside a block do not depend on the
    /// table size), so each key reads the same counters as before.
    pub(crate) fn ensure_capacity(&mut self, entries: usize) {
        let target = entries.min(1 << 26);
        while self.capacity < target {
            let old = self.table.len();
            self.table.extend_from_within(..);
            debug_assert_eq!(self.table.len(), 2 * old);
            self.block_mask = (self.table.len() - 1) as u64;
            self.capacity *= 2;
            self.sample = 10 * self.capacity as u64;
        }
    }

    /// The sample period (increments per reset).
    pub(crate) fn sample_size(&self) -> u64 {
        self.sample
    }

    /// The block of `hash` (from the low bits) and its four (word in block, shift)
    /// slots: the counter positions come from one independent remix (a byte of it per
    /// counter), so keys that share a block rarely share all four counters.
    #[inline]
    fn slots(&self, hash: u64) -> (usize, [(usize, u32); 4]) {
        let block = (hash & self.block_mask) as usize;
        let h = (hash ^ (hash >> 29)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let slots = std::array::from_fn(|k| {
            let b = (h >> (k * 8)) as usize;
            ((k << 1) + (b & 1), ((b >> 1) & 15) as u32 * 4)
        });
        (block, slots)
    }

    /// Estimated frequency of `hash` (0..=15).
    #[inline]
    pub(crate) fn frequency(&self, hash: u64) -> u32 {
        let (block, slots) = self.slots(hash);
        let words = &self.table[block].0;
        slots
            .iter()
            .map(|&(w, s)| ((words[w & (BLOCK_WORDS - 1)] >> s) & 15) as u32)
            .min()
            .unwrap_or(0)
    }

    /// Counts one access of `hash`.
    #[inline]
    pub(crate) fn increment(&mut self, hash: u64) {
        let (block, slots) = self.slots(hash);
        let words = &mut self.table[block].0;
        // Branch-free: each counter below 15 gains one.
        let mut added = 0u64;
        for (w, s) in slots {
            // `w` is below BLOCK_WORDS already; the mask lets the compiler see it.
            let word = &mut words[w & (BLOCK_WORDS - 1)];
            let below_max = u64::from((*word >> s) & 15 != 15);
            *word += below_max << s;
            added |= below_max;
        }
        if added != 0 {
            self.size += 1;
            if self.size >= self.sample {
                self.reset();
            }
        }
    }

    /// Halves every counter.
    fn reset(&mut self) {
        let mut odd = 0u64;
        for w in self.table.iter_mut().flat_map(|b| b.0.iter_mut()) {
            odd += u64::from((*w & 0x1111_1111_1111_1111).count_ones());
            *w = (*w >> 1) & RESET_MASK;
        }
        self.size = (self.size - (odd >> 2)) >> 1;
    }
}
