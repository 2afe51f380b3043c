//! A doubly linked list threaded through [`Node::prev`]/[`Node::next`].
//!
//! Head is the most recently pushed end (MRU), tail the oldest (LRU/FIFO end). The list
//! also sums the charges of its members, which the segmented policies size against.

use crate::node::{NIL, Node, ix};

#[derive(Debug, Clone)]
pub(crate) struct List {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub(crate) len: u64,
    pub(crate) weight: u64,
}

impl Default for List {
    fn default() -> Self {
        Self {
            head: NIL,
            tail: NIL,
            len: 0,
            weight: 0,
        }
    }
}

impl List {
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head == NIL
    }

    #[inline]
    pub(crate) fn tail(&self) -> Option<u32> {
        (self.tail != NIL).then_some(self.tail)
    }

    /// Links `i` at the head. The caller guarantees `i` is in no list.
    #[inline]
    pub(crate) fn push_front(&mut self, nodes: &mut [Node], i: u32) {
        let old = self.head;
        {
            let n = &mut nodes[ix(i)];
            n.prev = NIL;
            n.next = old;
            self.weight += n.charge;
        }
        if old == NIL {
            self.tail = i;
        } else {
            nodes[ix(old)].prev = i;
        }
        self.head = i;
        self.len += 1;
    }

    /// Links `i` at the tail (the next to leave). The caller guarantees `i` is in no list.
    #[inline]
    pub(crate) fn push_back(&mut self, nodes: &mut [Node], i: u32) {
        let old = self.tail;
        {
            let n = &mut nodes[ix(i)];
            n.prev = old;
            n.next = NIL;
            self.weight += n.charge;
        }
        if old == NIL {
            self.head = i;
        } else {
            nodes[ix(old)].next = i;
        }
        self.tail = i;
        self.len += 1;
    }

    /// Unlinks `i`. The caller guarantees `i` is in this list.
    #[inline]
    pub(crate) fn unlink(&mut self, nodes: &mut [Node], i: u32) {
        let (prev, next, charge) = {
            let n = &nodes[ix(i)];
            (n.prev, n.next, n.charge)
        };
        if prev == NIL {
            self.head = next;
        } else {
            nodes[ix(prev)].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            nodes[ix(next)].prev = prev;
        }
        let n = &mut nodes[ix(i)];
        n.prev = NIL;
        n.next = NIL;
        self.len -= 1;
        self.weight -= charge;
    }

    /// Moves `i`, already in this list, to the head.
    #[inline]
    pub(crate) fn move_to_front(&mut self, nodes: &mut [Node], i: u32) {
        if self.head != i {
            self.unlink(nodes, i);
            self.push_front(nodes, i);
        }
    }

    /// Unlinks and returns the tail.
    #[inline]
    pub(crate) fn pop_back(&mut self, nodes: &mut [Node]) -> Option<u32> {
        let t = self.tail()?;
        self.unlink(nodes, t);
        Some(t)
    }

    /// Members from tail (oldest) to head.
    pub(crate) fn iter_from_tail<'a>(&self, nodes: &'a [Node]) -> impl Iterator<Item = u32> + 'a {
        let mut cur = self.tail;
        std::iter::from_fn(move || {
            if cur == NIL {
                return None;
            }
            let i = cur;
            cur = nodes[ix(i)].prev;
            Some(i)
        })
    }
}
