//! The per-entry record and the slab that owns it.
//!
//! Entries live in a `Vec<Node>` and are named by their `u32` slot index; the hash
//! table stores only that index (the key is kept once, in the node), and every policy
//! links nodes through index fields instead of pointers. That keeps the engine in safe
//! Rust and makes a policy switch a matter of relinking.

use bytes::Bytes;

/// "No node": the end of a list, or not in a heap.
pub(crate) const NIL: u32 = u32::MAX;

/// No deadline.
pub(crate) const NEVER: u64 = u64::MAX;

/// Keys up to this long are stored inside the node (no allocation, no pointer to chase
/// on lookup); longer ones on the heap.
const INLINE_KEY: usize = 22;

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

#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) key: KeyBytes,
    pub(crate) value: Bytes,
    pub(crate) hash: u64,
    /// What this entry counts against the bound.
    pub(crate) charge: u64,
    pub(crate) version: u64,
    /// Insertion order within the shard (FIFO tie-breaks, policy switches).
    pub(crate) stamp: u64,
    /// Absolute TTL deadline in clock nanoseconds, or [`NEVER`].
    pub(crate) deadline: u64,
    /// Time-to-idle in nanoseconds, 0 for none.
    pub(crate) tti: u64,
    /// Last read or write, in clock nanoseconds; kept only when `tti != 0`.
    pub(crate) last_access: u64,
    /// The deadline this node is filed under in the expiry heap: never later than
    /// [`Node::effective_deadline`], because idle deadlines only move later and the
    /// heap is corrected lazily when the entry reaches its top.
    pub(crate) filed_deadline: u64,
    /// Position in the shard's expiry heap, or [`NIL`].
    pub(crate) exp_pos: u32,
    /// Intrusive list links (towards the head / towards the tail).
    pub(crate) prev: u32,
    pub(crate) next: u32,
    /// Policy-owned: a frequency, a heap position or an array position.
    pub(crate) aux: u32,
    /// Policy-owned: which queue or segment the node is in.
    pub(crate) tag: u8,
    pub(crate) pinned: bool,
    pub(crate) live: bool,
    pub(crate) flags: u32,
}

impl Node {
    pub(crate) fn vacant() -> Self {
        Self {
            key: KeyBytes::default(),
            value: Bytes::new(),
            hash: 0,
            charge: 0,
            version: 0,
            stamp: 0,
            deadline: NEVER,
            tti: 0,
            last_access: 0,
            filed_deadline: NEVER,
            exp_pos: NIL,
            prev: NIL,
            next: NIL,
            aux: 0,
            tag: 0,
            pinned: false,
            live: false,
            flags: 0,
        }
    }

    /// The moment this entry stops being readable, or [`NEVER`].
    #[inline]
    pub(crate) fn effective_deadline(&self) -> u64 {
        if self.tti == 0 {
            self.deadline
        } else {
            self.deadline.min(self.last_access.saturating_add(self.tti))
        }
    }

    #[inline]
    pub(crate) fn expires(&self) -> bool {
        self.deadline != NEVER || self.tti != 0
    }
}

/// Converts a slot index into a `usize` for indexing.
#[inline]
pub(crate) fn ix(i: u32) -> usize {
    i as usize
}
