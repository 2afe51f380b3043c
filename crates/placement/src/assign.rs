//! The placement algorithm: primaries with bounded loads, then backups by ring walk.
//! The crate docs describe it; the phase comments below say why each step is as it is.

use std::cmp::Reverse;

use ringcache_proto::NodeId;

use crate::bounds::Bounds;
use crate::ring::{Ring, partition_point};

/// Places `partitions` partitions on `members` (sorted by id, validated) and returns the
/// replica sets (primary first). `previous` holds the replica sets of the table being
/// replaced (same partition count), or `None` for a fresh placement.
pub(crate) fn place(
    members: &[(NodeId, u32)],
    previous: Option<&[Vec<NodeId>]>,
    partitions: u32,
    replication: u32,
    load_ppm: u64,
) -> Vec<Vec<NodeId>> {
    let ring = Ring::new(members);
    let bounds = Bounds::new(members, partitions, load_ppm);
    let mut st = State {
        owner: vec![None; partitions as usize],
        load: vec![0; members.len()],
        below_floor: bounds.floor.iter().filter(|&&f| f > 0).count(),
        below_target: bounds.target.iter().filter(|&&t| t > 0).count(),
        bounds,
    };

    // Phase 0: keep every primary whose node is still a member.
    let mut had_primary = vec![false; members.len()];
    for (p, set) in previous.unwrap_or_default().iter().enumerate() {
        if let Some(primary) = set.first()
            && let Ok(i) = members.binary_search_by_key(primary, |m| m.0)
            && p < st.owner.len()
        {
            st.give(p, i);
            had_primary[i] = true;
        }
    }

    // Phase 1: orphans (all partitions on a fresh placement), in partition order.
    for p in 0..st.owner.len() {
        if st.owner[p].is_none() {
            let i = st.home(&ring, p);
            st.give(p, i);
        }
    }

    // Phase 2: members that owned no primary before (new members; every member on a
    // fresh placement) pull up to their fair share.
    st.pull(members, &had_primary);

    // Phase 3: whatever is still over its cap (only when caps shrank and no new member
    // could take the excess) sheds its farthest partitions to ring homes.
    st.shed(members, &ring);

    // Phase 4: backups.
    (0..st.owner.len())
        .map(|p| {
            let primary = st.owner[p].expect("phases 1 and 3 give every partition an owner");
            replica_set(members, &ring, p, primary, replication)
        })
        .collect()
}

/// `primary` first, then the next distinct members clockwise from the partition's point,
/// up to `replication` members (all of them if there are fewer).
fn replica_set(
    members: &[(NodeId, u32)],
    ring: &Ring,
    p: usize,
    primary: usize,
    replication: u32,
) -> Vec<NodeId> {
    let want = (replication as usize).min(members.len());
    let mut set = Vec::with_capacity(want);
    set.push(members[primary].0);
    if want > 1 {
        for i in ring.walk(partition_point(p as u32)) {
            if i != primary {
                set.push(members[i].0);
                if set.len() == want {
                    break;
                }
            }
        }
        // Only reachable if two virtual nodes collide on a point and hide a member.
        for &(node, _) in members {
            if set.len() == want {
                break;
            }
            if !set.contains(&node) {
                set.push(node);
            }
        }
    }
    set
}

struct State {
    /// Primary of each partition (index into the member list).
    owner: Vec<Option<usize>>,
    /// Primaries per member.
    load: Vec<u32>,
    /// Members whose load is below their floor.
    below_floor: usize,
    /// Members whose load is below their target.
    below_target: usize,
    bounds: Bounds,
}

impl State {
    fn give(&mut self, p: usize, i: usize) {
        self.take(p);
        self.owner[p] = Some(i);
        let b = &self.bounds;
        if self.load[i] + 1 == b.floor[i] {
            self.below_floor -= 1;
        }
        if self.load[i] + 1 == b.target[i] {
            self.below_target -= 1;
        }
        self.load[i] += 1;
    }

    fn take(&mut self, p: usize) {
        if let Some(old) = self.owner[p].take() {
            let b = &self.bounds;
            if self.load[old] == b.floor[old] {
                self.below_floor += 1;
            }
            if self.load[old] == b.target[old] {
                self.below_target += 1;
            }
            self.load[old] -= 1;
        }
    }

    /// Where a homeless partition goes: walking clockwise from its point, the first
    /// member below its floor if any member is; else the first member below its target
    /// if any member is; else the first member below its cap. The last level alone is
    /// consistent hashing with bounded loads; the first two make under-filled members
    /// catch up from orphans (after a leave the others stay near their fair share
    /// instead of filling up to their caps).
    fn home(&self, ring: &Ring, p: usize) -> usize {
        let b = &self.bounds;
        let load = &self.load;
        let level = if self.below_floor > 0 {
            &b.floor
        } else if self.below_target > 0 {
            &b.target
        } else {
            &b.cap
        };
        let mut first_with_room = None;
        for i in ring.walk(partition_point(p as u32)) {
            if load[i] < level[i] {
                return i;
            }
            if load[i] < b.cap[i] {
                first_with_room.get_or_insert(i);
            }
        }
        // Every level has a member below it (counted), and the caps add up to at least
        // the partition count; missing it takes a point collision hiding a member.
        first_with_room.unwrap_or_else(|| {
            (0..load.len())
                .max_by_key(|&i| (i64::from(b.cap[i]) - i64::from(load[i]), Reverse(i)))
                .expect("members are non-empty")
        })
    }

    /// Phase 2. Pullers are members that owned no primary in the previous table and are
    /// below their target; all other members are donors. Donors' partitions are offered
    /// in order of affinity to the nearest puller (a ring of the pullers' virtual nodes),
    /// each to the first puller on its walk over that ring that still wants one, in two
    /// passes:
    /// 1. partitions of donors over their cap, to pullers under their target if any is
    ///    on the walk, else under their cap: the excess must go somewhere, and a new
    ///    member is the only place where it displaces no one (so a joiner may end above
    ///    its fair share, never above its cap);
    /// 2. partitions of donors above their target, to pullers under their target.
    ///
    /// Pullers only gain and donors only lose, so one scan per pass suffices. Memory is
    /// one entry per partition, however many members join at once.
    fn pull(&mut self, members: &[(NodeId, u32)], had_primary: &[bool]) {
        let n = members.len();
        let pullers: Vec<usize> = (0..n)
            .filter(|&i| !had_primary[i] && self.load[i] < self.bounds.target[i])
            .collect();
        if pullers.is_empty() {
            return;
        }
        let mut is_puller = vec![false; n];
        for &i in &pullers {
            is_puller[i] = true;
        }
        let ring = Ring::new(&pullers.iter().map(|&i| members[i]).collect::<Vec<_>>());
        let mut offers: Vec<(u64, usize)> = (0..self.owner.len())
            .filter(|&p| self.owner[p].is_some_and(|j| !is_puller[j]))
            .map(|p| (ring.distance(partition_point(p as u32)), p))
            .collect();
        offers.sort_unstable();

        // Pass 1 against the caps, pass 2 against the targets: donors give while above
        // the limit, pullers take while below it.
        for limit in [self.bounds.cap.clone(), self.bounds.target.clone()] {
            for &(_, p) in &offers {
                if pullers.iter().all(|&i| self.load[i] >= limit[i]) {
                    break;
                }
                let Some(j) = self.owner[p] else { continue };
                if is_puller[j] || self.load[j] <= limit[j] {
                    continue;
                }
                // The first puller on the walk below its target, else below the limit
                // (in pass 1, a joiner exceeds its share only if all of them would).
                let mut below_limit = None;
                let mut taker = None;
                for i in ring.walk(partition_point(p as u32)).map(|k| pullers[k]) {
                    if self.load[i] < self.bounds.target[i] {
                        taker = Some(i);
                        break;
                    }
                    if self.load[i] < limit[i] {
                        below_limit.get_or_insert(i);
                    }
                }
                if let Some(i) = taker.or(below_limit) {
                    self.give(p, i);
                }
            }
        }
    }

    /// Phase 3: every member over its cap gives up its excess, the partitions farthest
    /// from its virtual nodes first; they are then placed like orphans, in partition
    /// order.
    fn shed(&mut self, members: &[(NodeId, u32)], ring: &Ring) {
        let mut homeless = Vec::new();
        for j in 0..members.len() {
            let Some(excess) = self.load[j].checked_sub(self.bounds.cap[j]) else {
                continue;
            };
            if excess == 0 {
                continue;
            }
            let own = Ring::new(&members[j..=j]);
            let mut mine: Vec<(Reverse<u64>, usize)> = (0..self.owner.len())
                .filter(|&p| self.owner[p] == Some(j))
                .map(|p| (Reverse(own.distance(partition_point(p as u32))), p))
                .collect();
            mine.sort_unstable();
            for &(_, p) in mine.iter().take(excess as usize) {
                self.take(p);
                homeless.push(p);
            }
        }
        homeless.sort_unstable();
        for p in homeless {
            let i = self.home(ring, p);
            self.give(p, i);
        }
    }
}
