//! TTL policy (Redis `volatile-ttl`): evict the entry whose expiry is nearest. Entries
//! without expiry go after every expiring one, oldest first, where an entry that loses
//! its TTL (an overwrite without one, or `touch(key, None)`) counts as written then.
//!
//! Expiring entries sit in an indexed min-heap keyed by (deadline, insertion stamp);
//! the others in a FIFO list, so a workload without TTLs pays list costs, not heap costs.

use super::List;
use crate::heap::{HeapSlots, IndexedHeap};
use crate::node::{NEVER, Node, ix};

const IN_HEAP: u8 = 0;
const IN_LIST: u8 = 1;

#[derive(Debug, Default)]
pub(crate) struct TtlPolicy {
    heap: IndexedHeap,
    rest: List,
}

/// Heap members keyed by (effective deadline, insertion stamp); position kept in `aux`.
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
        if nodes[ix(i)].effective_deadline() == NEVER {
            nodes[ix(i)].tag = IN_LIST;
            self.rest.push_front(nodes, i);
        } else {
            nodes[ix(i)].tag = IN_HEAP;
            self.heap.push(&mut Slots(nodes), i);
        }
    }

    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        // A read moves only an idle deadline (the shard updated `last_access`).
        if nodes[ix(i)].tti() != 0 {
            self.deadline_changed(nodes, i);
        }
    }

    pub(crate) fn deadline_changed(&mut self, nodes: &mut [Node], i: u32) {
        let expiring = nodes[ix(i)].effective_deadline() != NEVER;
        match (nodes[ix(i)].tag == IN_HEAP, expiring) {
            (true, true) => {
                let pos = nodes[ix(i)].aux;
                self.heap.update(&mut Slots(nodes), pos);
            }
            (false, false) => {}
            _ => {
                self.forget(nodes, i);
                self.admit(nodes, i);
            }
        }
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        if nodes[ix(i)].tag == IN_HEAP {
            let pos = nodes[ix(i)].aux;
            self.heap.remove_at(&mut Slots(nodes), pos);
        } else {
            self.rest.unlink(nodes, i);
        }
    }

    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        if nodes[ix(i)].tag == IN_LIST {
            self.rest.weight = self.rest.weight - old + nodes[ix(i)].charge;
        }
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        if self.heap.peek().is_some() {
            return Some(self.heap.remove_at(&mut Slots(nodes), 0));
        }
        self.rest.pop_back(nodes)
    }
}
