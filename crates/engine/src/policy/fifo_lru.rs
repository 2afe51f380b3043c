//! LRU and FIFO: one list each; they differ only in whether a read moves the entry.

use super::List;
use crate::node::Node;

/// Least recently used: reads and overwrites move the entry to the head.
#[derive(Debug, Default)]
pub(crate) struct Lru {
    list: List,
}

impl Lru {
    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        self.list.push_front(nodes, i);
    }
    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        self.list.move_to_front(nodes, i);
    }
    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        self.list.unlink(nodes, i);
    }
    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        self.list.weight = self.list.weight - old + nodes[crate::node::ix(i)].charge;
    }
    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        self.list.pop_back(nodes)
    }
}

/// First in, first out: an entry's place is fixed at insertion.
#[derive(Debug, Default)]
pub(crate) struct Fifo {
    list: List,
}

impl Fifo {
    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        self.list.push_front(nodes, i);
    }
    pub(crate) fn touch(&mut self, _nodes: &mut [Node], _i: u32) {}
    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        self.list.unlink(nodes, i);
    }
    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        self.list.weight = self.list.weight - old + nodes[crate::node::ix(i)].charge;
    }
    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        self.list.pop_back(nodes)
    }
}
