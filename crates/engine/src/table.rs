//! The shard's hash table: slot indices filed by hash, in groups of one cache line.
//!
//! A group holds 8 entries: a 16-bit tag per entry (from the hash's top bits; 0 marks a
//! free entry) and the entry's slot index, and counts how many entries whose home is an
//! earlier group overflowed past it. A key's home group is chosen by the hash's low
//! bits; a lookup reads the home group, compares the 8 tags, and goes on to the next
//! group only while the overflow count says something was pushed past. So a lookup
//! reads one line, where a SwissTable reads two (its control bytes and, elsewhere, the
//! slot indices), and that line's address follows from the hash and two words
//! ([`TableHint`]), so a caller can prefetch it without taking the shard's lock.
//!
//! Removal clears the entry and decrements the overflow counts along the probe path;
//! the table grows (doubling, rehashing every entry by its node's stored hash) when
//! more than 7/8 of the entries are in use. Memory: 8 bytes per entry slot.

use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

/// Entries per group.
const WIDTH: usize = 8;

/// One cache line: 8 tags (16-bit lanes, compared all at once), 8 slot indices, the
/// overflow count.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Group {
    tags: Tags,
    slots: [u32; WIDTH],
    /// Entries whose probe went past this group (their home is earlier).
    overflow: u32,
}

const _: () = assert!(size_of::<Group>() == 64);

impl Default for Group {
    fn default() -> Self {
        Self {
            tags: Tags::default(),
            slots: [0; WIDTH],
            overflow: 0,
        }
    }
}

impl Group {
    /// The entries whose tag is `tag`, a bit each ([`Tags::bit`]; [`lane`] turns the
    /// lowest back into an entry).
    #[inline(always)]
    fn matches(&self, tag: u16) -> u32 {
        self.tags.matches(tag)
    }

    #[inline(always)]
    fn set_tag(&mut self, k: usize, tag: u16) {
        self.tags.set(k, tag);
    }

    #[inline(always)]
    fn tag(&self, k: usize) -> u16 {
        self.tags.get(k)
    }
}

/// Eight 16-bit tags in one SSE2 register's worth: compared with one `pcmpeqw`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Tags(core::arch::x86_64::__m128i);

// SAFETY (every `unsafe` block of the two impls below): the intrinsics called need
// SSE2, which every x86-64 CPU has (it is part of the target's baseline, enabled for
// the whole build); they take and return values only, no pointers.
#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl Default for Tags {
    fn default() -> Self {
        Self(unsafe { core::arch::x86_64::_mm_setzero_si128() })
    }
}

#[cfg(target_arch = "x86_64")]
#[allow(unsafe_code)]
impl Tags {
    #[inline(always)]
    fn matches(&self, tag: u16) -> u32 {
        use core::arch::x86_64::{_mm_cmpeq_epi16, _mm_movemask_epi8, _mm_set1_epi16};
        // Two mask bits per lane (bits 2k and 2k + 1 for lane k); keep the low one.
        let m = unsafe { _mm_movemask_epi8(_mm_cmpeq_epi16(self.0, _mm_set1_epi16(tag as i16))) };
        m as u32 & Self::ALL
    }

    /// Every lane's bit in a [`Tags::matches`] mask.
    const ALL: u32 = 0x5555;

    /// Lane `k`'s bit in a [`Tags::matches`] mask.
    #[cfg(test)]
    fn bit(k: usize) -> u32 {
        1 << (2 * k)
    }

    /// The lane of the lowest bit of a [`Tags::matches`] mask.
    #[inline(always)]
    fn lane(m: u32) -> usize {
        m.trailing_zeros() as usize / 2
    }

    #[inline(always)]
    fn set(&mut self, k: usize, tag: u16) {
        use core::arch::x86_64::_mm_insert_epi16;
        let t = i32::from(tag);
        self.0 = unsafe {
            match k {
                0 => _mm_insert_epi16::<0>(self.0, t),
                1 => _mm_insert_epi16::<1>(self.0, t),
                2 => _mm_insert_epi16::<2>(self.0, t),
                3 => _mm_insert_epi16::<3>(self.0, t),
                4 => _mm_insert_epi16::<4>(self.0, t),
                5 => _mm_insert_epi16::<5>(self.0, t),
                6 => _mm_insert_epi16::<6>(self.0, t),
                _ => _mm_insert_epi16::<7>(self.0, t),
            }
        };
    }

    #[inline(always)]
    fn get(&self, k: usize) -> u16 {
        use core::arch::x86_64::_mm_extract_epi16;
        (unsafe {
            match k {
                0 => _mm_extract_epi16::<0>(self.0),
                1 => _mm_extract_epi16::<1>(self.0),
                2 => _mm_extract_epi16::<2>(self.0),
                3 => _mm_extract_epi16::<3>(self.0),
                4 => _mm_extract_epi16::<4>(self.0),
                5 => _mm_extract_epi16::<5>(self.0),
                6 => _mm_extract_epi16::<6>(self.0),
                _ => _mm_extract_epi16::<7>(self.0),
            }
        }) as u16
    }
}

/// Eight 16-bit tags in two words, compared four at a time (SWAR) where there is no
/// SSE2.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[derive(Clone, Copy, Default)]
struct SwarTags([u64; 2]);

#[cfg(not(target_arch = "x86_64"))]
use SwarTags as Tags;

#[cfg(any(test, not(target_arch = "x86_64")))]
impl SwarTags {
    #[inline(always)]
    fn matches(&self, tag: u16) -> u32 {
        /// 0x0001 in every 16-bit lane of a word.
        const LOW: u64 = u64::MAX / 0xffff;
        const SEVEN_F: u64 = LOW * 0x7fff;
        const HIGH: u64 = LOW * 0x8000;
        // Multiplying by this moves bit 16j to bit 45 + j; no two partial products
        // share a bit, so nothing carries into bits 45..49.
        const GATHER: u64 = (1 << 45) | (1 << 30) | (1 << 15) | 1;
        let eq = |word: u64| {
            let x = word ^ (LOW * u64::from(tag));
            // A lane is zero exactly when its high bit ends up clear here.
            let m = !(((x & SEVEN_F) + SEVEN_F) | x) & HIGH;
            ((m >> 15).wrapping_mul(GATHER) >> 45) as u32 & 0xf
        };
        eq(self.0[0]) | (eq(self.0[1]) << 4)
    }

    /// Every lane's bit in a [`Tags::matches`] mask.
    const ALL: u32 = 0xff;

    /// Lane `k`'s bit in a [`Tags::matches`] mask.
    #[cfg(test)]
    fn bit(k: usize) -> u32 {
        1 << k
    }

    /// The lane of the lowest bit of a [`Tags::matches`] mask.
    #[inline(always)]
    fn lane(m: u32) -> usize {
        m.trailing_zeros() as usize
    }

    #[inline(always)]
    fn set(&mut self, k: usize, tag: u16) {
        let shift = (k % 4) * 16;
        let w = &mut self.0[k / 4];
        *w = (*w & !(0xffff << shift)) | (u64::from(tag) << shift);
    }

    #[inline(always)]
    fn get(&self, k: usize) -> u16 {
        (self.0[k / 4] >> ((k % 4) * 16)) as u16
    }
}

/// The entry of the lowest bit set in a [`Group::matches`] mask.
#[inline(always)]
fn lane(m: u32) -> usize {
    Tags::lane(m)
}

/// The tag of a hash: its top 16 bits, never 0 (0 marks a free entry).
#[inline(always)]
fn tag_of(hash: u64) -> u16 {
    ((hash >> 48) as u16) | 1
}

/// Slot indices by hash (see the module docs).
pub(crate) struct SlotTable {
    groups: Box<[Group]>,
    /// `groups.len() - 1` (a power of two minus one).
    mask: usize,
    len: usize,
}

impl std::fmt::Debug for SlotTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SlotTable")
            .field("groups", &self.groups.len())
            .field("len", &self.len)
            .finish()
    }
}

impl SlotTable {
    /// An empty table publishing where it is to `hint`.
    pub(crate) fn new(hint: &TableHint) -> Self {
        let table = Self {
            groups: vec![Group::default(); 1].into_boxed_slice(),
            mask: 0,
            len: 0,
        };
        hint.publish(&table);
        table
    }

    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        hash as usize & self.mask
    }

    /// Calls `f` with the slot of every entry filed under `hash`'s tag along its probe
    /// path (the key's entry, and rarely one whose tag collides) until `f` returns true;
    /// returns that slot.
    #[inline(always)]
    pub(crate) fn find(&self, hash: u64, mut f: impl FnMut(u32) -> bool) -> Option<u32> {
        let tag = tag_of(hash);
        let mut g = self.home(hash);
        // Every group at most once: after removals, each group may still count an
        // overflow while none of them holds the key.
        for _ in 0..=self.mask {
            let group = &self.groups[g];
            let mut m = group.matches(tag);
            while m != 0 {
                let slot = group.slots[lane(m)];
                if f(slot) {
                    return Some(slot);
                }
                m &= m - 1;
            }
            if group.overflow == 0 {
                return None;
            }
            g = (g + 1) & self.mask;
        }
        None
    }

    /// Files `slot` under `hash`; the caller knows the key is not in the table.
    /// `hash_of(slot)` gives the hash of any filed slot, and `hint` learns where the
    /// groups went (both needed when the table grows).
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        slot: u32,
        hash_of: impl Fn(u32) -> u64,
        hint: &TableHint,
    ) {
        if (self.len + 1) * 8 > self.groups.len() * WIDTH * 7 {
            self.grow(&hash_of);
            hint.publish(self);
        }
        self.place(hash, slot);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, slot: u32) {
        let tag = tag_of(hash);
        let mut g = self.home(hash);
        loop {
            let group = &mut self.groups[g];
            let free = group.matches(0);
            if free != 0 {
                let k = lane(free);
                group.set_tag(k, tag);
                group.slots[k] = slot;
                return;
            }
            group.overflow += 1;
            g = (g + 1) & self.mask;
        }
    }

    /// Removes the entry of `slot` filed under `hash`; false if there is none.
    pub(crate) fn remove(&mut self, hash: u64, slot: u32) -> bool {
        let tag = tag_of(hash);
        let home = self.home(hash);
        let mut g = home;
        for _ in 0..=self.mask {
            let group = &mut self.groups[g];
            let mut m = group.matches(tag);
            while m != 0 {
                let k = lane(m);
                if group.slots[k] == slot {
                    group.set_tag(k, 0);
                    self.len -= 1;
                    let mut h = home;
                    while h != g {
                        self.groups[h].overflow -= 1;
                        h = (h + 1) & self.mask;
                    }
                    return true;
                }
                m &= m - 1;
            }
            if group.overflow == 0 {
                return false;
            }
            g = (g + 1) & self.mask;
        }
        false
    }

    /// Doubles the groups and files every entry again.
    fn grow(&mut self, hash_of: &impl Fn(u32) -> u64) {
        let n = self.groups.len() * 2;
        let old = std::mem::replace(
            &mut self.groups,
            vec![Group::default(); n].into_boxed_slice(),
        );
        self.mask = n - 1;
        for group in old.iter() {
            let mut used = !group.matches(0) & Tags::ALL;
            while used != 0 {
                let slot = group.slots[lane(used)];
                self.place(hash_of(slot), slot);
                used &= used - 1;
            }
        }
    }

    /// Checks the overflow counts and the length against the entries (tests and
    /// `check_invariants`).
    pub(crate) fn check(&self, hash_of: impl Fn(u32) -> u64) {
        let mut overflow = vec![0u32; self.groups.len()];
        let mut len = 0;
        for (g, group) in self.groups.iter().enumerate() {
            for k in 0..WIDTH {
                let tag = group.tag(k);
                if tag == 0 {
                    continue;
                }
                len += 1;
                let hash = hash_of(group.slots[k]);
                assert_eq!(tag, tag_of(hash), "entry filed under another tag");
                let mut h = self.home(hash);
                while h != g {
                    overflow[h] += 1;
                    h = (h + 1) & self.mask;
                }
            }
        }
        assert_eq!(len, self.len, "table length");
        for (g, group) in self.groups.iter().enumerate() {
            assert_eq!(group.overflow, overflow[g], "overflow count of group {g}");
        }
    }
}

/// A table's shape published outside the shard's lock: where its groups start and
/// their mask. Read without the lock only to prefetch a key's home group (a hint: the
/// address is never dereferenced, so a stale shape only wastes the prefetch).
#[derive(Debug, Default)]
pub(crate) struct TableHint {
    base: AtomicPtr<u8>,
    mask: AtomicUsize,
}

impl TableHint {
    /// Publishes where `table`'s groups are (by the table, under the shard's lock).
    fn publish(&self, table: &SlotTable) {
        self.base.store(
            table.groups.as_ptr().cast::<u8>().cast_mut(),
            Ordering::Relaxed,
        );
        self.mask.store(table.mask, Ordering::Relaxed);
    }

    /// Prefetches the home group of `hash`.
    #[inline(always)]
    pub(crate) fn prefetch(&self, hash: u64) {
        let base = self.base.load(Ordering::Relaxed);
        if base.is_null() {
            return;
        }
        let g = hash as usize & self.mask.load(Ordering::Relaxed);
        crate::prefetch::line(base.wrapping_add(g * size_of::<Group>()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// Random inserts and removals against a map, with hashes that collide on purpose
    /// (few distinct home groups and tags), checking lookups and the overflow counts.
    #[test]
    fn matches_a_map_under_random_inserts_and_removals() {
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for spread in [3u64, 64, u64::MAX] {
            let mut table = SlotTable::new(&TableHint::default());
            let mut hashes: HashMap<u32, u64> = HashMap::new();
            for step in 0..20_000u32 {
                if next() % 3 != 0 || hashes.is_empty() {
                    let slot = step;
                    // Low bits pick the home group, the top 16 the tag: a small spread
                    // makes long overflow chains and colliding tags.
                    let r = next();
                    let hash = (r % spread) | ((r % spread) << 48);
                    table.insert(hash, slot, |s| hashes[&s], &TableHint::default());
                    hashes.insert(slot, hash);
                } else {
                    let slot = *hashes
                        .keys()
                        .nth((next() % hashes.len() as u64) as usize)
                        .expect("non-empty");
                    let hash = hashes.remove(&slot).expect("present");
                    assert!(table.remove(hash, slot));
                    assert!(!table.remove(hash, slot), "removed twice");
                    assert_eq!(table.find(hash, |s| s == slot), None);
                }
                if step % 997 == 0 {
                    table.check(|s| hashes[&s]);
                    for (&slot, &hash) in &hashes {
                        assert_eq!(table.find(hash, |s| s == slot), Some(slot));
                    }
                }
            }
            table.check(|s| hashes[&s]);
            assert_eq!(table.len(), hashes.len());
        }
    }

    /// The lane checks, for one implementation of the tags.
    macro_rules! lane_checks {
        ($tags:ty) => {{
            let bits = |ks: &[usize]| ks.iter().map(|&k| <$tags>::bit(k)).fold(0, |a, b| a | b);
            let mut g = <$tags>::default();
            assert_eq!(g.matches(0), <$tags>::ALL, "all free");
            for (k, tag) in [(0, 5u16), (3, 0x8005), (4, 5), (7, 0xffff)] {
                g.set(k, tag);
            }
            assert_eq!(g.matches(5), bits(&[0, 4]));
            assert_eq!(g.matches(0x8005), bits(&[3]));
            assert_eq!(g.matches(0xffff), bits(&[7]));
            assert_eq!(g.matches(0), bits(&[1, 2, 5, 6]));
            assert_eq!(g.matches(4), 0);
            assert_eq!(<$tags>::lane(g.matches(0xffff)), 7);
            assert_eq!((g.get(3), g.get(7), g.get(1)), (0x8005, 0xffff, 0));
            g.set(4, 0);
            assert_eq!(g.matches(5), bits(&[0]));
            // Every single lane, every pattern of high and low bits.
            for k in 0..WIDTH {
                for tag in [1u16, 0x7fff, 0x8000, 0x8001, 0xfffe] {
                    let mut g = <$tags>::default();
                    g.set(k, tag);
                    assert_eq!(g.matches(tag), <$tags>::bit(k), "lane {k}, tag {tag:#x}");
                    assert_eq!(g.matches(0), <$tags>::ALL & !<$tags>::bit(k));
                    assert_eq!(<$tags>::lane(g.matches(tag)), k);
                }
            }
        }};
    }

    #[test]
    fn tags_compare_lane_by_lane() {
        lane_checks!(Tags);
        // The portable version too (the one non-x86-64 targets build).
        lane_checks!(SwarTags);
    }

    #[test]
    fn a_group_is_one_cache_line_and_the_hint_points_at_it() {
        assert_eq!(align_of::<Group>(), 64);
        let hint = Arc::new(TableHint::default());
        hint.prefetch(7); // nothing published yet: a no-op
        let mut table = SlotTable::new(&hint);
        for slot in 0..100 {
            table.insert(
                u64::from(slot).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                slot,
                |s| u64::from(s).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                &hint,
            );
        }
        // The table grew several times; the hint follows it.
        assert_eq!(
            hint.base.load(Ordering::Relaxed).cast_const(),
            table.groups.as_ptr().cast::<u8>()
        );
        assert_eq!(hint.mask.load(Ordering::Relaxed), table.mask);
        assert!(table.mask >= 15, "100 entries need at least 16 groups");
        hint.prefetch(12_345);
    }
}
