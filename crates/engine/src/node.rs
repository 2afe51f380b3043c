//! The per-entry record and the slab that owns it.
//!
//! Entries live in a `Vec<Node>` and are named by their `u32` slot index; the hash
//! table stores only that index (the key is kept once, in the node), and every policy
//! links nodes through index fields instead of pointers. That keeps the engine in safe
//! Rust and makes a policy switch a matter of relinking.

use bytes::Bytes;

use crate::hash::SHORT_KEY;

/// "No node": the end of a list, or not in a heap.
pub(crate) const NIL: u32 = u32::MAX;

/// No deadline.
pub(crate) const NEVER: u64 = u64::MAX;

/// Keys up to this long are stored inside the node (no allocation, no pointer to chase
/// on lookup); longer ones on the heap. At least [`SHORT_KEY`]: short keys compare by
/// words. Unused bytes are zero.
const INLINE_KEY: usize = 22;
const _: () = assert!(INLINE_KEY >= SHORT_KEY);

/// A key, inline when short.
#[derive(Clone)]
pub(crate) enum KeyBytes {
    Inline { len: u8, buf: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

impl KeyBytes {
    #[inline]
    pub(crate) fn new(key: &[u8]) -> Self {
        if key.len() <= INLINE_KEY {
            let mut buf = [0; INLINE_KEY];
            buf[..key.len()].copy_from_slice(key);
            KeyBytes::Inline {
                len: key.len() as u8,
                buf,
            }
        } else {
            KeyBytes::Heap(key.into())
        }
    }

    #[inline]
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            KeyBytes::Inline { len, buf } => &buf[..usize::from(*len)],
            KeyBytes::Heap(b) => b,
        }
    }

    /// Whether this is `key`, whose zero-padded words ([`short_words`](crate::hash::short_words)) are `words` when
    /// it is at most [`SHORT_KEY`] bytes long: then an inline key compares as a length
    /// and two words, without a call to `memcmp`.
    #[inline]
    pub(crate) fn is(&self, key: &[u8], words: Option<[u64; 2]>) -> bool {
        match (self, words) {
            (KeyBytes::Inline { len, buf }, Some([a, b])) => {
                let word = |at: usize| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(&buf[at..at + 8]);
                    u64::from_le_bytes(w)
                };
                usize::from(*len) == key.len() && word(0) == a && word(8) == b
            }
            _ => self.as_slice() == key,
        }
    }

    #[inline]
    pub(crate) fn into_boxed(self) -> Box<[u8]> {
        match self {
            KeyBytes::Inline { .. } => self.as_slice().into(),
            KeyBytes::Heap(b) => b,
        }
    }
}

impl Default for KeyBytes {
    fn default() -> Self {
        KeyBytes::Inline {
            len: 0,
            buf: [0; INLINE_KEY],
        }
    }
}

impl std::fmt::Debug for KeyBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_slice())
    }
}

/// One entry. `repr(C)` because the order matters: a hit reads the key, the expiry
/// flag and the pinned flag, bumps `aux` and clones the value, and those fields fill
/// the first 64 bytes, so a hit touches one or two cache lines of the node, not three.
/// The policies' links and the accounting follow; expiry details come last.
#[derive(Debug)]
#[repr(C)]
pub(crate) struct Node {
    pub(crate) key: KeyBytes,
    pub(crate) value: Bytes,
    /// Policy-owned: a frequency, a heap position or an array position.
    pub(crate) aux: u32,
    /// Policy-owned: which queue or segment the node is in.
    pub(crate) tag: u8,
    pub(crate) pinned: bool,
    pub(crate) live: bool,
    /// `deadline != NEVER || tti != 0`, kept by [`Node::set_expiry`] so a hit on an entry
    /// without expiry reads neither.
    expiring: bool,
    /// Intrusive list links (towards the head / towards the tail).
    pub(crate) prev: u32,
    pub(crate) next: u32,
    pub(crate) hash: u64,
    /// What this entry counts against the bound.
    pub(crate) charge: u64,
    /// Insertion order within the shard (FIFO tie-breaks, policy switches).
    pub(crate) stamp: u64,
    pub(crate) version: u64,
    pub(crate) flags: u32,
    /// Position in the shard's expiry heap, or [`NIL`].
    pub(crate) exp_pos: u32,
    /// Absolute TTL deadline in clock nanoseconds, or [`NEVER`]. Set with
    /// [`Node::set_expiry`].
    deadline: u64,
    /// Time-to-idle in nanoseconds, 0 for none. Set with [`Node::set_expiry`].
    tti: u64,
    /// Last read or write, in clock nanoseconds; kept only when `tti != 0`.
    pub(crate) last_access: u64,
    /// The deadline this node is filed under in the expiry heap: never later than
    /// [`Node::effective_deadline`], because idle deadlines only move later and the
    /// heap is corrected lazily when the entry reaches its top.
    pub(crate) filed_deadline: u64,
}

impl Node {
    pub(crate) fn vacant() -> Self {
        Self {
            key: KeyBytes::default(),
            value: Bytes::new(),
            aux: 0,
            tag: 0,
            pinned: false,
            live: false,
            expiring: false,
            prev: NIL,
            next: NIL,
            hash: 0,
            charge: 0,
            stamp: 0,
            version: 0,
            flags: 0,
            exp_pos: NIL,
            deadline: NEVER,
            tti: 0,
            last_access: 0,
            filed_deadline: NEVER,
        }
    }

    /// Sets the TTL deadline ([`NEVER`] for none) and the time-to-idle (0 for none).
    #[inline]
    pub(crate) fn set_expiry(&mut self, deadline: u64, tti: u64) {
        self.deadline = deadline;
        self.tti = tti;
        self.expiring = deadline != NEVER || tti != 0;
    }

    /// The time-to-idle in nanoseconds, 0 for none.
    #[inline]
    pub(crate) fn tti(&self) -> u64 {
        if self.expiring { self.tti } else { 0 }
    }

    /// The moment this entry stops being readable, or [`NEVER`].
    #[inline]
    pub(crate) fn effective_deadline(&self) -> u64 {
        if !self.expiring {
            NEVER
        } else if self.tti == 0 {
            self.deadline
        } else {
            self.deadline.min(self.last_access.saturating_add(self.tti))
        }
    }

    #[inline]
    pub(crate) fn expires(&self) -> bool {
        self.expiring
    }
}

/// Converts a slot index into a `usize` for indexing.
#[inline]
pub(crate) fn ix(i: u32) -> usize {
    i as usize
}
#[cfg(test)]
mod tests {
    use super::Node;
    use std::mem::offset_of;

    #[test]
    fn a_hit_reads_the_first_64_bytes() {
        assert!(offset_of!(Node, expiring) < 64);
        assert!(offset_of!(Node, aux) < 64);
        assert!(offset_of!(Node, value) + size_of::<bytes::Bytes>() <= 64);
    }
}
