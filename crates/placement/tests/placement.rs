//! Placement properties over random memberships: joins move only to the joining node
//! and about its fair share, leaves move only the leaver's partitions, nobody exceeds
//! the bounded load, replica sets are well formed, and everything is deterministic.
//!
//! Proptest runs from a fixed seed (set PROPTEST_RNG_SEED to hunt with another one;
//! PROPTEST_CASES scales every property's case count).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use proptest::test_runner::RngSeed;
use ringcache_placement::{
    DEFAULT_LOAD_FACTOR, DEFAULT_PARTITIONS, DEFAULT_WEIGHT, Move, PartitionTable, Role, plan_moves,
};
use ringcache_proto::{Epoch, NodeId, PartitionId};

const P: u32 = DEFAULT_PARTITIONS;
const LF: f64 = DEFAULT_LOAD_FACTOR;

fn config(cases: u32) -> ProptestConfig {
    let base = ProptestConfig::default();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        rng_seed: match base.rng_seed {
            RngSeed::Random => RngSeed::Fixed(0x5EED_1ACE),
            fixed => fixed,
        },
        failure_persistence: None,
        ..base
    }
}

/// `n` distinct random node ids.
fn ids(n: impl Into<proptest::sample::SizeRange>) -> impl Strategy<Value = Vec<NodeId>> {
    proptest::collection::btree_set(any::<u64>(), n)
        .prop_map(|s| s.into_iter().map(NodeId).collect())
}

fn with_weight(ids: &[NodeId], w: u32) -> Vec<(NodeId, u32)> {
    ids.iter().map(|&n| (n, w)).collect()
}

/// `ceil(lf * fair share)`, computed independently of the crate (in f64; where the exact
/// product is an integer this may be one above the crate's cap, never below).
fn cap(members: &[(NodeId, u32)], node: NodeId, partitions: u32, lf: f64) -> u32 {
    let total: u64 = members.iter().map(|m| u64::from(m.1)).sum();
    let w = members
        .iter()
        .find(|m| m.0 == node)
        .expect("node is a member")
        .1;
    (lf * f64::from(partitions) * f64::from(w) / total as f64).ceil() as u32
}

fn primaries(t: &PartitionTable) -> BTreeMap<NodeId, u32> {
    t.loads()
        .into_iter()
        .filter(|(_, l)| l.primaries > 0)
        .map(|(n, l)| (n, l.primaries))
        .collect()
}

/// `(partition, old primary, new primary)` for every primary that changed.
fn primary_changes(a: &PartitionTable, b: &PartitionTable) -> Vec<(PartitionId, NodeId, NodeId)> {
    a.iter()
        .zip(b.iter())
        .filter(|((_, x), (_, y))| x[0] != y[0])
        .map(|((p, x), (_, y))| (p, x[0], y[0]))
        .collect()
}

fn assert_within_caps(t: &PartitionTable, members: &[(NodeId, u32)], lf: f64) {
    for (node, count) in primaries(t) {
        let c = cap(members, node, t.partitions(), lf);
        assert!(count <= c, "{node} owns {count} primaries, cap {c}");
    }
}

fn assert_well_formed(t: &PartitionTable, members: &[(NodeId, u32)], replication: u32) {
    let member_ids: BTreeSet<NodeId> = members.iter().map(|m| m.0).collect();
    let want = (replication as usize).min(members.len());
    assert_eq!(t.iter().len(), t.partitions() as usize);
    for (p, set) in t.iter() {
        assert_eq!(set.len(), want, "{p}: {set:?}");
        let distinct: BTreeSet<NodeId> = set.iter().copied().collect();
        assert_eq!(distinct.len(), set.len(), "{p} repeats a node: {set:?}");
        assert!(distinct.is_subset(&member_ids), "{p} names a non-member");
        assert_eq!(t.owner(p), Some(set[0]), "primary first");
        assert_eq!(t.backups(p), &set[1..]);
    }
}

proptest! {
    #![proptest_config(config(96))]

    /// A join: every primary that moves goes to the new node, no more than 1.2x its
    /// ideal share move, every backup addition goes to the new node too, and all loads
    /// stay within the new caps.
    #[test]
    fn join_moves_only_to_the_new_node_and_about_its_share(
        ids in (1usize..=15).prop_flat_map(|n| ids(n + 1)),
        pick in any::<prop::sample::Index>(),
        replication in 1u32..=3,
    ) {
        let new = ids[pick.index(ids.len())];
        let old_ids: Vec<NodeId> = ids.iter().copied().filter(|&n| n != new).collect();
        let (before, after) = (with_weight(&old_ids, DEFAULT_WEIGHT), with_weight(&ids, DEFAULT_WEIGHT));
        let t1 = PartitionTable::compute(&before, P, replication, LF, Epoch(1)).unwrap();
        let t2 = t1.rebalance(&after, replication, LF, Epoch(2)).unwrap();

        let changes = primary_changes(&t1, &t2);
        prop_assert!(changes.iter().all(|&(_, _, to)| to == new), "moves to old nodes: {changes:?}");
        let ideal = f64::from(P) / ids.len() as f64;
        prop_assert!(changes.len() as f64 <= 1.2 * ideal, "{} moves, ideal {ideal:.1}", changes.len());
        prop_assert!(changes.len() as f64 >= 0.8 * ideal, "the new node got only {}", changes.len());
        let moves = plan_moves(&t1, &t2).unwrap();
        prop_assert!(moves.iter().all(|m| m.to == new));
        assert_within_caps(&t2, &after, LF);
        assert_well_formed(&t2, &after, replication);
    }

    /// The same with unequal weights (virtual node counts 32..=256): the share is the
    /// weighted one.
    #[test]
    fn weighted_join_moves_only_to_the_new_node(
        members in (1usize..=15).prop_flat_map(|n| (ids(n + 1), proptest::collection::vec(32u32..=256, n + 1))),
        pick in any::<prop::sample::Index>(),
    ) {
        let (ids, weights) = members;
        let after: Vec<(NodeId, u32)> = ids.iter().copied().zip(weights).collect();
        let (new, new_weight) = after[pick.index(after.len())];
        let before: Vec<(NodeId, u32)> = after.iter().copied().filter(|m| m.0 != new).collect();
        let t1 = PartitionTable::compute(&before, P, 2, LF, Epoch(1)).unwrap();
        let t2 = t1.rebalance(&after, 2, LF, Epoch(2)).unwrap();

        let changes = primary_changes(&t1, &t2);
        prop_assert!(changes.iter().all(|&(_, _, to)| to == new));
        let total: u32 = after.iter().map(|m| m.1).sum();
        let ideal = f64::from(P) * f64::from(new_weight) / f64::from(total);
        prop_assert!(changes.len() as f64 <= 1.2 * ideal, "{} moves, ideal {ideal:.1}", changes.len());
        assert_within_caps(&t2, &after, LF);
    }

    /// A leave: only the leaver's primaries move; a backup is added only where the
    /// leaver held a replica; loads stay within the caps.
    #[test]
    fn leave_moves_only_the_leavers_partitions(
        ids in ids(2..=16),
        pick in any::<prop::sample::Index>(),
        replication in 1u32..=3,
    ) {
        let gone = ids[pick.index(ids.len())];
        let rest: Vec<NodeId> = ids.iter().copied().filter(|&n| n != gone).collect();
        let (before, after) = (with_weight(&ids, DEFAULT_WEIGHT), with_weight(&rest, DEFAULT_WEIGHT));
        let t1 = PartitionTable::compute(&before, P, replication, LF, Epoch(1)).unwrap();
        let t2 = t1.rebalance(&after, replication, LF, Epoch(2)).unwrap();

        let changes = primary_changes(&t1, &t2);
        prop_assert!(changes.iter().all(|&(_, from, _)| from == gone), "{changes:?}");
        prop_assert_eq!(changes.len(), t1.partitions_of(gone).len());
        for m in plan_moves(&t1, &t2).unwrap() {
            prop_assert!(t1.replicas(m.partition).contains(&gone), "{m:?}");
        }
        assert_within_caps(&t2, &after, LF);
        assert_well_formed(&t2, &after, replication);
    }

    /// Bounded loads on a fresh table: the busiest node owns at most 1.15x the mean.
    #[test]
    fn busiest_node_within_load_factor(ids in ids(2..=20)) {
        let members = with_weight(&ids, DEFAULT_WEIGHT);
        let t = PartitionTable::compute(&members, P, 2, LF, Epoch(1)).unwrap();
        let loads = primaries(&t);
        let busiest = loads.values().copied().max().unwrap();
        let mean = f64::from(P) / ids.len() as f64;
        prop_assert!(f64::from(busiest) <= LF * mean, "busiest {busiest}, mean {mean:.1}");
        prop_assert_eq!(loads.values().sum::<u32>(), P);
    }

    /// With weights and other load factors, every node stays within its own cap.
    #[test]
    fn weighted_loads_within_caps(
        members in (1usize..=20).prop_flat_map(|n| (ids(n), proptest::collection::vec(1u32..=300, n))),
        partitions in prop_oneof![Just(1u32), Just(7), 1u32..=2048],
        lf in prop_oneof![Just(1.0), Just(1.15), 1.0f64..2.0],
    ) {
        let members: Vec<(NodeId, u32)> = members.0.into_iter().zip(members.1).collect();
        let t = PartitionTable::compute(&members, partitions, 2, lf, Epoch(1)).unwrap();
        assert_within_caps(&t, &members, lf);
        assert_well_formed(&t, &members, 2);
    }

    /// Replica sets: distinct members, `min(replication, members)` of them, primary first.
    #[test]
    fn replica_sets_are_well_formed(ids in ids(1..=20), replication in 1u32..=5) {
        let members = with_weight(&ids, DEFAULT_WEIGHT);
        let t = PartitionTable::compute(&members, P, replication, LF, Epoch(1)).unwrap();
        assert_well_formed(&t, &members, replication);
        let mut seen = 0;
        for &n in &ids {
            for p in t.partitions_of(n) {
                prop_assert_eq!(t.owner(p), Some(n));
                seen += 1;
            }
            for p in t.backups_of(n) {
                prop_assert!(t.backups(p).contains(&n));
            }
            let load = t.loads().get(&n).copied().unwrap_or_default();
            prop_assert_eq!(load.primaries as usize, t.partitions_of(n).len());
            prop_assert_eq!(load.backups as usize, t.backups_of(n).len());
        }
        prop_assert_eq!(seen, P);
    }

    /// Same inputs, any member order: identical tables, fresh and rebalanced.
    #[test]
    fn deterministic_regardless_of_member_order(
        members in (2usize..=12).prop_flat_map(|n| (ids(n), proptest::collection::vec(1u32..=200, n))),
        seed in any::<u64>(),
    ) {
        let members: Vec<(NodeId, u32)> = members.0.into_iter().zip(members.1).collect();
        let mut shuffled = members.clone();
        // A seeded Fisher-Yates (proptest's own shuffle would do too; this keeps it explicit).
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let a = PartitionTable::compute(&members, P, 2, LF, Epoch(3)).unwrap();
        let b = PartitionTable::compute(&shuffled, P, 2, LF, Epoch(3)).unwrap();
        prop_assert_eq!(&a, &b);
        // The same change (one leave, one join) described in both orders.
        let gone = members[0].0;
        let change = |m: &[(NodeId, u32)], join_first: bool| {
            let mut m: Vec<(NodeId, u32)> = m.iter().copied().filter(|x| x.0 != gone).collect();
            if join_first {
                m.insert(0, (NodeId(u64::MAX), 77));
            } else {
                m.push((NodeId(u64::MAX), 77));
            }
            m
        };
        prop_assume!(!members.iter().any(|m| m.0 == NodeId(u64::MAX)));
        prop_assert_eq!(
            a.rebalance(&change(&members, false), 2, LF, Epoch(4)).unwrap(),
            b.rebalance(&change(&shuffled, true), 2, LF, Epoch(4)).unwrap()
        );
        // And computing twice gives the same table.
        prop_assert_eq!(&a, &PartitionTable::compute(&members, P, 2, LF, Epoch(3)).unwrap());
    }

    /// plan_moves lists exactly the partitions whose primary changed or that gained a
    /// node holding no copy, in order; nothing for identical tables.
    #[test]
    fn plan_moves_lists_exactly_the_changes(
        ids in ids(2..=12),
        extra in ids(1..=3),
        drop in any::<prop::sample::Index>(),
        replication in 1u32..=3,
    ) {
        let before = with_weight(&ids, DEFAULT_WEIGHT);
        let t1 = PartitionTable::compute(&before, P, replication, LF, Epoch(1)).unwrap();
        prop_assert!(plan_moves(&t1, &t1).unwrap().is_empty());
        prop_assert!(plan_moves(&t1, &t1.clone()).unwrap().is_empty());

        // One leave and a few joins at once.
        let gone = ids[drop.index(ids.len())];
        let mut after: Vec<(NodeId, u32)> = before.iter().copied().filter(|m| m.0 != gone).collect();
        for n in extra {
            if !ids.contains(&n) {
                after.push((n, DEFAULT_WEIGHT));
            }
        }
        let t2 = t1.rebalance(&after, replication, LF, Epoch(2)).unwrap();
        let moves = plan_moves(&t1, &t2).unwrap();
        let mut sorted = moves.clone();
        sorted.sort_by_key(|m| (m.partition, m.role, m.to));
        prop_assert_eq!(&moves, &sorted);

        let mut expected: Vec<(PartitionId, Role, NodeId)> = Vec::new();
        for ((p, old), (_, new)) in t1.iter().zip(t2.iter()) {
            if old[0] != new[0] {
                expected.push((p, Role::Primary, new[0]));
            }
            for &b in &new[1..] {
                if !old.contains(&b) {
                    expected.push((p, Role::Backup, b));
                }
            }
        }
        expected.sort();
        let got: Vec<(PartitionId, Role, NodeId)> = moves.iter().map(|m| (m.partition, m.role, m.to)).collect();
        prop_assert_eq!(got, expected);
        for m in &moves {
            let old = t1.replicas(m.partition);
            match m.from {
                Some(from) => prop_assert!(old.contains(&from) && from != gone, "{m:?}"),
                None => prop_assert!(old.iter().all(|n| !t2.nodes().contains(n)), "{m:?}"),
            }
        }
    }
}

proptest! {
    #![proptest_config(config(32))]

    /// Long histories of joins and leaves with random weights: every step keeps the
    /// join/leave properties and the caps.
    #[test]
    fn histories_keep_every_property(
        start in ids(2..=8),
        steps in proptest::collection::vec((any::<bool>(), any::<u64>(), 32u32..=256, any::<prop::sample::Index>()), 20),
    ) {
        let mut members = with_weight(&start, DEFAULT_WEIGHT);
        let mut t = PartitionTable::compute(&members, P, 2, LF, Epoch(1)).unwrap();
        for (k, (join, id, weight, pick)) in steps.into_iter().enumerate() {
            let epoch = Epoch(k as u64 + 2);
            let before = t.clone();
            if (join || members.len() == 1) && members.len() < 20 && !members.iter().any(|m| m.0 == NodeId(id)) {
                let new = NodeId(id);
                members.push((new, weight));
                t = t.rebalance(&members, 2, LF, epoch).unwrap();
                let changes = primary_changes(&before, &t);
                prop_assert!(changes.iter().all(|&(_, _, to)| to == new));
                let total: u32 = members.iter().map(|m| m.1).sum();
                let ideal = f64::from(P) * f64::from(weight) / f64::from(total);
                prop_assert!(changes.len() as f64 <= 1.2 * ideal, "{} moves, ideal {ideal:.1}", changes.len());
            } else if members.len() > 1 {
                let gone = members.remove(pick.index(members.len())).0;
                t = t.rebalance(&members, 2, LF, epoch).unwrap();
                prop_assert!(primary_changes(&before, &t).iter().all(|&(_, from, _)| from == gone));
            }
            assert_within_caps(&t, &members, LF);
            assert_well_formed(&t, &members, 2);
        }
    }
}

#[test]
fn rebalance_with_unchanged_inputs_changes_nothing() {
    let members = with_weight(&[NodeId(3), NodeId(1), NodeId(2)], DEFAULT_WEIGHT);
    let t1 = PartitionTable::compute(&members, P, 2, LF, Epoch(1)).unwrap();
    let t2 = t1.rebalance(&members, 2, LF, Epoch(2)).unwrap();
    assert_eq!(t2.epoch(), Epoch(2));
    assert!(plan_moves(&t1, &t2).unwrap().is_empty());
    assert!(t1.iter().zip(t2.iter()).all(|(a, b)| a == b));
}

#[test]
fn one_node_owns_everything_and_two_split_evenly() {
    let one = PartitionTable::compute(&[(NodeId(9), 1)], P, 3, LF, Epoch(1)).unwrap();
    assert!(one.iter().all(|(_, set)| set == [NodeId(9)]));
    let two = one
        .rebalance(&[(NodeId(9), 1), (NodeId(4), 1)], 3, LF, Epoch(2))
        .unwrap();
    assert_eq!(
        primaries(&two).values().copied().collect::<Vec<_>>(),
        vec![512, 512]
    );
    let moves = plan_moves(&one, &two).unwrap();
    // 512 primaries to node 4; node 4 becomes a backup of the other 512.
    assert_eq!(moves.len(), 1024);
    assert!(
        moves
            .iter()
            .all(|m| m.to == NodeId(4) && m.from == Some(NodeId(9)))
    );
    assert_eq!(
        moves.iter().filter(|m| m.role == Role::Primary).count(),
        512
    );
}

#[test]
fn replacing_a_node_moves_its_partitions_to_the_replacement() {
    // A leave and a join in one change: only the leaver's primaries move, most of them
    // to the new node (it is below its floor, so orphans go to it first).
    let ids: Vec<NodeId> = (1..=6).map(NodeId).collect();
    let before = with_weight(&ids, DEFAULT_WEIGHT);
    let mut after = with_weight(&ids[1..], DEFAULT_WEIGHT);
    after.push((NodeId(100), DEFAULT_WEIGHT));
    let t1 = PartitionTable::compute(&before, P, 2, LF, Epoch(1)).unwrap();
    let t2 = t1.rebalance(&after, 2, LF, Epoch(2)).unwrap();
    let changes = primary_changes(&t1, &t2);
    assert!(changes.iter().all(|&(_, from, _)| from == NodeId(1)));
    assert_eq!(changes.len(), t1.partitions_of(NodeId(1)).len());
    // The replacement fills to its floor first; the last orphans may top up old members
    // one short of their fair share.
    let to_new = changes.iter().filter(|c| c.2 == NodeId(100)).count();
    assert!(
        to_new * 10 >= changes.len() * 8,
        "{to_new} of {}",
        changes.len()
    );
}

#[test]
fn route_agrees_with_partition_for() {
    let members = with_weight(&[NodeId(1), NodeId(2)], DEFAULT_WEIGHT);
    let t = PartitionTable::compute(&members, P, 2, LF, Epoch(1)).unwrap();
    let (p, owner) = t.route("users", b"42");
    // Pinned in the key module's vectors: ("users", "42") is partition 682 of 1024.
    assert_eq!(p, PartitionId(682));
    assert_eq!(p, ringcache_placement::partition_for("users", b"42", P));
    assert_eq!(Some(owner), t.owner(p));
    assert_eq!(t.owner(PartitionId(P)), None);
    assert!(t.replicas(PartitionId(P)).is_empty());
}

#[test]
fn bincode_round_trip_and_rejection_of_broken_tables() {
    let cfg = bincode::config::standard();
    let members = with_weight(&[NodeId(1), NodeId(2), NodeId(3)], 16);
    let t = PartitionTable::compute(&members, 64, 2, LF, Epoch(5)).unwrap();
    let bytes = bincode::serde::encode_to_vec(&t, cfg).unwrap();
    let (back, _): (PartitionTable, usize) =
        bincode::serde::decode_from_slice(&bytes, cfg).unwrap();
    assert_eq!(back, t);

    #[derive(serde::Serialize)]
    struct Raw {
        epoch: Epoch,
        partitions: u32,
        replicas: Vec<Vec<NodeId>>,
    }
    let broken = [
        Raw {
            epoch: Epoch(1),
            partitions: 2,
            replicas: vec![vec![NodeId(1)]],
        },
        Raw {
            epoch: Epoch(1),
            partitions: 1,
            replicas: vec![vec![]],
        },
        Raw {
            epoch: Epoch(1),
            partitions: 1,
            replicas: vec![vec![NodeId(1), NodeId(1)]],
        },
        Raw {
            epoch: Epoch(1),
            partitions: 0,
            replicas: vec![],
        },
    ];
    for raw in broken {
        let bytes = bincode::serde::encode_to_vec(&raw, cfg).unwrap();
        let r: Result<(PartitionTable, usize), _> = bincode::serde::decode_from_slice(&bytes, cfg);
        assert!(r.is_err(), "accepted {:?}", raw.replicas);
    }
}

#[test]
fn bad_inputs_are_errors_with_lowercase_messages() {
    use ringcache_placement::PlacementError as E;
    let ok = with_weight(&[NodeId(1), NodeId(2)], 8);
    let compute = |m: &[(NodeId, u32)], p, r, lf| PartitionTable::compute(m, p, r, lf, Epoch(1));
    let errors = [
        compute(&[], P, 2, LF).unwrap_err(),
        compute(&[(NodeId(1), 8), (NodeId(2), 0)], P, 2, LF).unwrap_err(),
        compute(&[(NodeId(1), 8), (NodeId(1), 9)], P, 2, LF).unwrap_err(),
        compute(&[(NodeId(1), u32::MAX)], P, 2, LF).unwrap_err(),
        compute(
            &with_weight(&(0..4097).map(NodeId).collect::<Vec<_>>(), 1),
            P,
            2,
            LF,
        )
        .unwrap_err(),
        compute(&ok, 0, 2, LF).unwrap_err(),
        compute(&ok, 65_537, 2, LF).unwrap_err(),
        compute(&ok, P, 0, LF).unwrap_err(),
        compute(&ok, P, 2, 0.99).unwrap_err(),
        compute(&ok, P, 2, f64::NAN).unwrap_err(),
        compute(&ok, P, 2, f64::INFINITY).unwrap_err(),
    ];
    assert!(matches!(errors[0], E::NoMembers));
    assert!(matches!(errors[1], E::ZeroWeight { node: NodeId(2) }));
    assert!(matches!(errors[2], E::DuplicateMember { node: NodeId(1) }));
    assert!(matches!(errors[3], E::TooManyVirtualNodes { .. }));
    assert!(matches!(errors[4], E::TooManyMembers { members: 4097, .. }));
    assert!(matches!(
        errors[5],
        E::InvalidPartitions { partitions: 0, .. }
    ));
    assert!(matches!(
        errors[6],
        E::InvalidPartitions {
            partitions: 65_537,
            ..
        }
    ));
    assert!(matches!(
        errors[7],
        E::InvalidReplication { replication: 0 }
    ));
    assert!(
        errors[8..]
            .iter()
            .all(|e| matches!(e, E::InvalidLoadFactor { .. }))
    );

    let t = compute(&ok, 16, 2, LF).unwrap();
    let stale = t.rebalance(&ok, 2, LF, Epoch(1)).unwrap_err();
    assert!(matches!(
        stale,
        E::EpochNotAfter {
            previous: Epoch(1),
            epoch: Epoch(1)
        }
    ));
    let other = compute(&ok, 32, 2, LF).unwrap();
    let mismatch = plan_moves(&t, &other).unwrap_err();
    assert!(matches!(
        mismatch,
        E::PartitionCountMismatch { old: 16, new: 32 }
    ));

    for e in errors.iter().chain([&stale, &mismatch]) {
        let msg = e.to_string();
        let first = msg.chars().next().unwrap();
        assert!(first.is_lowercase() || first.is_ascii_digit(), "{msg}");
    }
}

#[test]
fn moves_name_their_source() {
    // Node 1 leaves with replication 1: its partitions have no surviving copy.
    let members = with_weight(&[NodeId(1), NodeId(2)], 16);
    let t1 = PartitionTable::compute(&members, 32, 1, LF, Epoch(1)).unwrap();
    let t2 = t1.rebalance(&members[1..], 1, LF, Epoch(2)).unwrap();
    let moves = plan_moves(&t1, &t2).unwrap();
    assert_eq!(moves.len(), t1.partitions_of(NodeId(1)).len());
    assert!(moves.iter().all(|m| *m
        == Move {
            partition: m.partition,
            from: None,
            to: NodeId(2),
            role: Role::Primary
        }));

    // With replication 2 the backup on node 2 is promoted in place.
    let t1 = PartitionTable::compute(&members, 32, 2, LF, Epoch(1)).unwrap();
    let t2 = t1.rebalance(&members[1..], 2, LF, Epoch(2)).unwrap();
    let moves = plan_moves(&t1, &t2).unwrap();
    assert!(!moves.is_empty());
    assert!(
        moves
            .iter()
            .all(|m| m.from == Some(NodeId(2)) && m.to == NodeId(2))
    );
}

#[test]
fn a_joining_node_absorbs_excess_beyond_its_share() {
    // Node 1's weight drops from 128 to 8 while node 4 joins with weight 96. Node 1 (341
    // primaries) must shed down to its new cap, ceil(1.15 * 1024 * 8 / 360) = 27: 314
    // partitions, more than node 4's fair share (273) but within its cap (315). The
    // joiner keeps taking excess past its share, so no old member receives anything.
    let t1 = PartitionTable::compute(
        &with_weight(&[NodeId(1), NodeId(2), NodeId(3)], DEFAULT_WEIGHT),
        P,
        2,
        LF,
        Epoch(1),
    )
    .unwrap();
    assert_eq!(primaries(&t1)[&NodeId(1)], 341);
    let after = [
        (NodeId(1), 8),
        (NodeId(2), 128),
        (NodeId(3), 128),
        (NodeId(4), 96),
    ];
    let t2 = t1.rebalance(&after, 2, LF, Epoch(2)).unwrap();
    let changes = primary_changes(&t1, &t2);
    assert!(
        changes
            .iter()
            .all(|&(_, from, to)| from == NodeId(1) && to == NodeId(4))
    );
    assert_eq!(changes.len(), 314);
    assert_within_caps(&t2, &after, LF);
}
