//! LRU and FIFO: one list; they differ only in whether a read moves the entry.

use super::List;
use crate::node::{Node, ix};

/// An entry list evicted from its tail. With `reorder` (LRU) reads and overwrites move
/// the entry to the head; without (FIFO) an entry's place is fixed at insertion.
#[derive(Debug, Default)]
pub(crate) struct ListPolicy {
    list: List,
    reorder: bool,
}

impl ListPolicy {
    /// Least recently used.
    pub(crate) fn lru() -> Self {
        Self {
            list: List::default(),
            reorder: true,
        }
    }

    /// First in, first out.
    pub(crate) fn fifo() -> Self {
        Self::default()
    }

    pub(crate) fn is_lru(&self) -> bool {
        self.reorder
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        self.list.push_front(nodes, i);
    }

    #[inline]
    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        if self.reorder {
            self.list.move_to_front(nodes, i);
        }
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        self.list.unlink(nodes, i);
    }

    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        self.list.weight = self.list.weight - old + nodes[ix(i)].charge;
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        self.list.pop_back(nodes)
    }
}
