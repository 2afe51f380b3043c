//! TTL policy (Redis `volatile-ttl`): evict the entry whose expiry is nearest. Entries
//! without expiry sort after every expiring one, oldest insertion first.

use crate::heap::{HeapSlots, IndexedHeap};
use crate::node::{Node, ix};

#[derive(Debug, Default)]
pub(crate) struct TtlPolicy {
    heap: IndexedHeap,
}

/// Members keyed by (effective deadline, insertion stamp); position kept in `aux`.
struct Slots<'a>(&'a mut [Node]);

impl HeapSlots for Slots<'_> {
    fn key(&self, i: u32) -> (u64, u64) {
        let n = &self.0[ix(i)];
        (n.effective_deadline(), n.stamp)
    }
    fn set_pos(&mut self, i: u32, pos: u32) {
        self.0[ix(i)].aux = pos;
    }
}

impl TtlPolicy {
    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        self.heap.push(&mut Slots(nodes), i);
    }

    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        // A read moves only an idle deadline (the shard updated `last_access`).
        if nodes[ix(i)].tti != 0 {
            self.deadline_changed(nodes, i);
        }
    }

    pub(crate) fn deadline_changed(&mut self, nodes: &mut [Node], i: u32) {
        let pos = nodes[ix(i)].aux;
        self.heap.update(&mut Slots(nodes), pos);
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        let pos = nodes[ix(i)].aux;
        self.heap.remove_at(&mut Slots(nodes), pos);
    }

    pub(crate) fn reweigh(&mut self, _nodes: &mut [Node], _i: u32, _old: u64) {}

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        self.heap.peek()?;
        Some(self.heap.remove_at(&mut Slots(nodes), 0))
    }
}
