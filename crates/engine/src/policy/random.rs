//! Random eviction: a dense array of members, each node remembering its position, so
//! admission, removal and picking a victim are all O(1).

use super::Rng;
use crate::node::{Node, ix};

#[derive(Debug)]
pub(crate) struct RandomPolicy {
    members: Vec<u32>,
    rng: Rng,
}

impl RandomPolicy {
    pub(crate) fn new(seed: u64) -> Self {
        Self {
            members: Vec::new(),
            rng: Rng::new(seed ^ 0x5EED_0F0F_AB12_3456),
        }
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        nodes[ix(i)].aux = u32::try_from(self.members.len()).expect("fewer than 2^32 entries");
        self.members.push(i);
    }

    pub(crate) fn touch(&mut self, _nodes: &mut [Node], _i: u32) {}

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        let pos = ix(nodes[ix(i)].aux);
        self.members.swap_remove(pos);
        if let Some(&moved) = self.members.get(pos) {
            nodes[ix(moved)].aux = nodes[ix(i)].aux;
        }
    }

    pub(crate) fn reweigh(&mut self, _nodes: &mut [Node], _i: u32, _old: u64) {}

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        if self.members.is_empty() {
            return None;
        }
        let pos = self.rng.below(self.members.len() as u64) as usize;
        let victim = self.members[pos];
        self.forget(nodes, victim);
        Some(victim)
    }
}
