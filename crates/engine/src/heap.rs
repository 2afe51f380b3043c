//! An indexed binary min-heap of slot indices.
//!
//! Each member records its own position (through [`HeapSlots`]) so any member can be
//! removed or re-keyed in O(log n). Used for the expiry schedule and the TTL policy.

use crate::node::{NIL, ix};

/// Where a heap finds its members' keys and records their positions.
///
/// An implementation MUST return the same key for a member between calls unless the
/// caller re-sifts it with [`IndexedHeap::update`].
pub(crate) trait HeapSlots {
    fn key(&self, i: u32) -> (u64, u64);
    fn set_pos(&mut self, i: u32, pos: u32);
}

#[derive(Debug, Default, Clone)]
pub(crate) struct IndexedHeap {
    items: Vec<u32>,
}

impl IndexedHeap {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub(crate) fn peek(&self) -> Option<u32> {
        self.items.first().copied()
    }

    pub(crate) fn push(&mut self, s: &mut impl HeapSlots, i: u32) {
        let pos = self.items.len();
        self.items.push(i);
        s.set_pos(i, pos_u32(pos));
        self.sift_up(s, pos);
    }

    /// Removes the member at `pos`.
    pub(crate) fn remove_at(&mut self, s: &mut impl HeapSlots, pos: u32) -> u32 {
        let pos = ix(pos);
        let last = self.items.len() - 1;
        self.items.swap(pos, last);
        let removed = self.items.pop().expect("heap has the member being removed");
        s.set_pos(removed, NIL);
        if pos < self.items.len() {
            s.set_pos(self.items[pos], pos_u32(pos));
            self.update(s, pos_u32(pos));
        }
        removed
    }

    /// Restores order after the key of the member at `pos` changed.
    pub(crate) fn update(&mut self, s: &mut impl HeapSlots, pos: u32) {
        let pos = ix(pos);
        if pos > 0 && s.key(self.items[pos]) < s.key(self.items[(pos - 1) / 2]) {
            self.sift_up(s, pos);
        } else {
            self.sift_down(s, pos);
        }
    }

    pub(crate) fn members(&self) -> &[u32] {
        &self.items
    }

    fn sift_up(&mut self, s: &mut impl HeapSlots, mut pos: usize) {
        let item = self.items[pos];
        let key = s.key(item);
        while pos > 0 {
            let parent = (pos - 1) / 2;
            let p = self.items[parent];
            if s.key(p) <= key {
                break;
            }
            self.items[pos] = p;
            s.set_pos(p, pos_u32(pos));
            pos = parent;
        }
        self.items[pos] = item;
        s.set_pos(item, pos_u32(pos));
    }

    fn sift_down(&mut self, s: &mut impl HeapSlots, mut pos: usize) {
        let len = self.items.len();
        let item = self.items[pos];
        let key = s.key(item);
        loop {
            let left = 2 * pos + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && s.key(self.items[right]) < s.key(self.items[left]) {
                right
            } else {
                left
            };
            let c = self.items[child];
            if key <= s.key(c) {
                break;
            }
            self.items[pos] = c;
            s.set_pos(c, pos_u32(pos));
            pos = child;
        }
        self.items[pos] = item;
        s.set_pos(item, pos_u32(pos));
    }
}

fn pos_u32(pos: usize) -> u32 {
    u32::try_from(pos).expect("a shard holds fewer than 2^32 entries")
}
