//! S3-FIFO (Yang, Zhang, Qiu, Yue, Rashmi: "FIFO queues are all you need for cache
//! eviction", SOSP 2023), a candidate the default was measured against.
//!
//! New keys enter a small FIFO (10%); those read while there move to the main FIFO,
//! the rest are evicted and remembered in a ghost FIFO of hashes. A key found in the
//! ghost goes straight to main. Main is a CLOCK-like FIFO with a 2-bit counter per entry:
//! a victim with a non-zero counter is decremented and reinserted.

use std::collections::VecDeque;

use hashbrown::HashMap;

use super::{List, Sizing};
use crate::node::{Node, ix};

const SMALL: u8 = 0;
const MAIN: u8 = 1;
const SMALL_SHARE: f64 = 0.10;
const MAX_FREQ: u32 = 3;

#[derive(Debug)]
pub(crate) struct S3Fifo {
    small: List,
    main: List,
    small_target: u64,
    ghost: Ghost,
}

impl S3Fifo {
    pub(crate) fn new(sizing: Sizing) -> Self {
        let mut p = Self {
            small: List::default(),
            main: List::default(),
            small_target: 0,
            ghost: Ghost::default(),
        };
        p.resize(sizing);
        p
    }

    pub(crate) fn resize(&mut self, sizing: Sizing) {
        self.small_target = ((sizing.limit as f64 * SMALL_SHARE) as u64).max(1);
    }

    pub(crate) fn admit(&mut self, nodes: &mut [Node], i: u32) {
        nodes[ix(i)].aux = 0;
        let in_ghost = self.ghost.take(nodes[ix(i)].hash);
        // The ghost remembers about as many keys as main holds.
        self.ghost.capacity = (self.main.len + self.small.len).max(16);
        if in_ghost {
            nodes[ix(i)].tag = MAIN;
            self.main.push_front(nodes, i);
        } else {
            nodes[ix(i)].tag = SMALL;
            self.small.push_front(nodes, i);
        }
    }

    pub(crate) fn touch(&mut self, nodes: &mut [Node], i: u32) {
        let n = &mut nodes[ix(i)];
        n.aux = (n.aux + 1).min(MAX_FREQ);
    }

    pub(crate) fn forget(&mut self, nodes: &mut [Node], i: u32) {
        if nodes[ix(i)].tag == SMALL {
            self.small.unlink(nodes, i);
        } else {
            self.main.unlink(nodes, i);
        }
    }

    pub(crate) fn reweigh(&mut self, nodes: &mut [Node], i: u32, old: u64) {
        let charge = nodes[ix(i)].charge;
        let list = if nodes[ix(i)].tag == SMALL {
            &mut self.small
        } else {
            &mut self.main
        };
        list.weight = list.weight - old + charge;
    }

    pub(crate) fn evict(&mut self, nodes: &mut [Node]) -> Option<u32> {
        loop {
            if !self.small.is_empty()
                && (self.small.weight > self.small_target || self.main.is_empty())
            {
                let t = self.small.pop_back(nodes).expect("small is not empty");
                if nodes[ix(t)].aux > 0 {
                    nodes[ix(t)].aux = 0;
                    nodes[ix(t)].tag = MAIN;
                    self.main.push_front(nodes, t);
                    continue;
                }
                self.ghost.insert(nodes[ix(t)].hash);
                return Some(t);
            }
            let t = self.main.pop_back(nodes)?;
            if nodes[ix(t)].aux > 0 {
                nodes[ix(t)].aux -= 1;
                self.main.push_front(nodes, t);
                continue;
            }
            return Some(t);
        }
    }
}

/// A bounded FIFO of key hashes; a hash counts as present while its latest insertion
/// is still in the queue.
#[derive(Debug, Default)]
struct Ghost {
    queue: VecDeque<(u64, u64)>,
    present: HashMap<u64, u64>,
    seq: u64,
    capacity: u64,
}

impl Ghost {
    fn insert(&mut self, hash: u64) {
        self.seq += 1;
        self.queue.push_back((hash, self.seq));
        self.present.insert(hash, self.seq);
        while self.queue.len() as u64 > self.capacity {
            let Some((h, s)) = self.queue.pop_front() else {
                break;
            };
            if self.present.get(&h) == Some(&s) {
                self.present.remove(&h);
            }
        }
    }

    fn take(&mut self, hash: u64) -> bool {
        self.present.remove(&hash).is_some()
    }
}
