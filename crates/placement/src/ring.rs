//! The consistent-hashing ring: virtual nodes on a [`hashring::HashRing`] with a stable
//! xxh3 hasher, and walks over it.
//!
//! hashring 0.3.6 keeps its sorted vector of points private and offers only `get` (the
//! first virtual node at or after a key's hash) and `get_with_replicas` (which clones the
//! whole ring per call and repeats physical nodes). A walk therefore asks `get` for the
//! first virtual node strictly after the one it is on. To ask for "the first virtual
//! node at or after *this point*", the hasher passes a [`RingPoint`] through unchanged
//! (it writes a `u64` with `write_u64`, which [`RingHasher`] treats as an already-hashed
//! point), while a [`VNode`] hashes its bytes with xxh3. Each step costs one binary
//! search and no copying, and the ring (membership, points, successor lookups) stays
//! hashring's.

use std::hash::{BuildHasher, Hash, Hasher};

use hashring::HashRing;
use ringcache_proto::NodeId;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// The bytes that place virtual node `index` of `node`: `node u64 LE | index u32 LE`.
fn vnode_bytes(node: NodeId, index: u32) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..8].copy_from_slice(&node.0.to_le_bytes());
    b[8..].copy_from_slice(&index.to_le_bytes());
    b
}

/// Where virtual node `index` of `node` sits: `xxh3_64(node u64 LE | index u32 LE)`.
pub(crate) fn vnode_point(node: NodeId, index: u32) -> u64 {
    xxh3_64(&vnode_bytes(node, index))
}

/// Where partition `p` sits: `xxh3_64(p u32 LE)`.
pub(crate) fn partition_point(p: u32) -> u64 {
    xxh3_64(&p.to_le_bytes())
}

/// One virtual node: a point on the ring owned by a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VNode {
    /// The member's id (hashed).
    node: NodeId,
    /// Which of the member's virtual nodes (hashed).
    index: u32,
    /// The member's position in the sorted member list (not hashed).
    member: usize,
    /// `vnode_point(node, index)`, kept to step past it (not hashed).
    point: u64,
}

impl Hash for VNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // One `write` of the documented bytes: with RingHasher this is exactly
        // `vnode_point(node, index)`.
        state.write(&vnode_bytes(self.node, self.index));
    }
}

/// A position on the ring that is already a hash: hashes to itself under [`RingHasher`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingPoint(pub(crate) u64);

impl Hash for RingPoint {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// The ring's hasher builder: xxh3, identical on every build and platform (hashring's
/// default is SipHash with fixed keys, which is stable too but not specified anywhere a
/// non-Rust implementation could follow).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RingHashBuilder;

impl BuildHasher for RingHashBuilder {
    type Hasher = RingHasher;

    fn build_hasher(&self) -> RingHasher {
        RingHasher { state: 0 }
    }
}

/// xxh3 over the bytes written, chained through the seed (a single `write` gives plain
/// `xxh3_64`); `write_u64` sets the state to the value, so a [`RingPoint`] passes through.
/// Only [`VNode`] and [`RingPoint`] are ever hashed with it.
#[derive(Debug)]
pub(crate) struct RingHasher {
    state: u64,
}

impl Hasher for RingHasher {
    fn finish(&self) -> u64 {
        self.state
    }

    fn write(&mut self, bytes: &[u8]) {
        self.state = xxh3_64_with_seed(bytes, self.state);
    }

    fn write_u64(&mut self, point: u64) {
        self.state = point;
    }
}

/// The ring of a member list (sorted by id, weights > 0, validated by the caller).
pub(crate) struct Ring {
    ring: HashRing<VNode, RingHashBuilder>,
    members: usize,
}

impl Ring {
    /// Builds the ring: `weight` virtual nodes per member.
    pub(crate) fn new(members: &[(NodeId, u32)]) -> Self {
        let total: usize = members.iter().map(|&(_, w)| w as usize).sum();
        let mut vnodes = Vec::with_capacity(total);
        for (member, &(node, weight)) in members.iter().enumerate() {
            for index in 0..weight {
                vnodes.push(VNode {
                    node,
                    index,
                    member,
                    point: vnode_point(node, index),
                });
            }
        }
        let mut ring = HashRing::with_hasher(RingHashBuilder);
        ring.batch_add(vnodes);
        Self {
            ring,
            members: members.len(),
        }
    }

    /// The first virtual node at or after `point`, wrapping past the top.
    fn successor(&self, point: u64) -> VNode {
        *self
            .ring
            .get(&RingPoint(point))
            .expect("rings are built from validated, non-empty member lists")
    }

    /// Clockwise distance from `point` to the first virtual node at or after it. On a
    /// ring of one member, how soon a walk from `point` reaches that member.
    pub(crate) fn distance(&self, point: u64) -> u64 {
        self.successor(point).point.wrapping_sub(point)
    }

    /// The members in the order a clockwise walk from `point` first meets them; each
    /// member once.
    pub(crate) fn walk(&self, point: u64) -> Walk<'_> {
        Walk {
            ring: self,
            next_point: point,
            steps_left: self.ring.len(),
            seen: vec![false; self.members],
            unseen: self.members,
        }
    }
}

/// See [`Ring::walk`]. Visits each virtual node at most once (one lap), so it ends even
/// if two virtual nodes collide on a point (then the walk may miss a member that has no
/// other virtual node; callers fall back to the member list).
pub(crate) struct Walk<'a> {
    ring: &'a Ring,
    next_point: u64,
    steps_left: usize,
    seen: Vec<bool>,
    unseen: usize,
}

impl Iterator for Walk<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        while self.unseen > 0 && self.steps_left > 0 {
            let v = self.ring.successor(self.next_point);
            self.steps_left -= 1;
            self.next_point = v.point.wrapping_add(1);
            if let Some(seen) = self.seen.get_mut(v.member)
                && !*seen
            {
                *seen = true;
                self.unseen -= 1;
                return Some(v.member);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members() -> Vec<(NodeId, u32)> {
        vec![(NodeId(1), 16), (NodeId(7), 16), (NodeId(42), 16)]
    }

    #[test]
    fn hashring_places_vnodes_where_we_compute() {
        // hashring hashes VNode with RingHasher; it must land exactly on vnode_point,
        // so that asking for a RingPoint at that point returns that very vnode.
        let ring = Ring::new(&members());
        for (member, &(node, w)) in members().iter().enumerate() {
            for index in 0..w {
                let p = vnode_point(node, index);
                let v = ring.successor(p);
                assert_eq!(
                    (v.node, v.index, v.member, v.point),
                    (node, index, member, p)
                );
            }
        }
        assert_eq!(RingHashBuilder.hash_one(RingPoint(99)), 99);
    }

    #[test]
    fn successor_wraps_past_the_top() {
        let ring = Ring::new(&members());
        let max = (0..3)
            .flat_map(|m| (0..16).map(move |i| (m, i)))
            .map(|(m, i)| vnode_point(members()[m].0, i))
            .max()
            .expect("non-empty");
        let min = (0..3)
            .flat_map(|m| (0..16).map(move |i| (m, i)))
            .map(|(m, i)| vnode_point(members()[m].0, i))
            .min()
            .expect("non-empty");
        assert_eq!(ring.successor(max.wrapping_add(1)).point, min);
    }

    #[test]
    fn walk_visits_every_member_once() {
        let ring = Ring::new(&members());
        for p in 0..100 {
            let mut order: Vec<usize> = ring.walk(partition_point(p)).collect();
            assert_eq!(order.len(), 3);
            assert_eq!(
                order[0],
                ring.successor(partition_point(p)).member,
                "the walk starts at the successor"
            );
            order.sort_unstable();
            assert_eq!(order, vec![0, 1, 2]);
        }
    }

    #[test]
    fn walk_order_is_distance_order() {
        // The walk meets members in increasing clockwise distance of their first vnode.
        let all = members();
        let ring = Ring::new(&all);
        let singles: Vec<Ring> = all.iter().map(|&m| Ring::new(&[m])).collect();
        for p in 0..100 {
            let point = partition_point(p);
            let order: Vec<usize> = ring.walk(point).collect();
            let mut by_distance: Vec<usize> = (0..all.len()).collect();
            by_distance.sort_by_key(|&m| singles[m].distance(point));
            assert_eq!(order, by_distance);
        }
    }
}
