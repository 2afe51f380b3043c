//! What the cluster commands show, computed from the node's answers without I/O: the
//! status header, the member and move tables, the ring balance, a key's replica set.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use ringcache_proto::units::format_bytes;
use ringcache_proto::{ClusterInfo, ClusterStatus, Epoch, MemberStatus, MoveStatus, NodeId};
use serde::Serialize;

use crate::output::Table;

/// Moves `cluster status` lists; `cluster moves` lists all.
const STATUS_MOVES: usize = 10;

/// Whether `cluster status` could ask a member for its counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Health {
    /// It answered `Stats`.
    Ok,
    /// It did not (the reason is in [`MemberRow::error`]).
    Unreachable,
}

/// One member as `cluster status` and `cluster members` show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemberRow {
    #[serde(flatten)]
    pub(crate) member: MemberStatus,
    pub(crate) health: Health,
    /// Bytes charged, summed over the member's namespaces (`null`: unreachable).
    pub(crate) used_bytes: Option<u64>,
    /// Memory bounds, summed over its namespaces.
    pub(crate) capacity_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) error: Option<String>,
}

impl MemberRow {
    /// A member whose `Stats` answer (or failure) is known.
    pub(crate) fn new(member: MemberStatus, memory: Result<(u64, u64), String>) -> Self {
        match memory {
            Ok((used, capacity)) => Self {
                member,
                health: Health::Ok,
                used_bytes: Some(used),
                capacity_bytes: Some(capacity),
                error: None,
            },
            Err(e) => Self {
                member,
                health: Health::Unreachable,
                used_bytes: None,
                capacity_bytes: None,
                error: Some(e),
            },
        }
    }
}

/// `cluster status --json`: the node's answer with each member's memory and health.
#[derive(Debug, Serialize)]
pub(crate) struct StatusView {
    /// The answering node.
    pub(crate) node: NodeId,
    pub(crate) leader: Option<NodeId>,
    pub(crate) term: u64,
    pub(crate) epoch: Epoch,
    pub(crate) partitions: u32,
    pub(crate) replication: u32,
    pub(crate) members: Vec<MemberRow>,
    pub(crate) moves: Vec<MoveStatus>,
}

impl StatusView {
    /// `status` with `rows` (one per member, in `status.members` order) in place of its
    /// members.
    pub(crate) fn new(status: ClusterStatus, rows: Vec<MemberRow>) -> Self {
        Self {
            node: status.node,
            leader: status.leader,
            term: status.term,
            epoch: status.epoch,
            partitions: status.partitions,
            replication: status.replication,
            members: rows,
            moves: status.moves,
        }
    }

    /// Header, member table, then the moves if any.
    pub(crate) fn render(&self) -> String {
        let mut s = header(
            self.leader,
            self.term,
            self.epoch,
            self.partitions,
            self.replication,
            self.node,
        );
        s.push_str("\n\n");
        s.push_str(&members_table(&self.members).render());
        if !self.moves.is_empty() {
            let shown = &self.moves[..self.moves.len().min(STATUS_MOVES)];
            let _ = write!(
                s,
                "\n{}\n{}",
                moves_summary(&self.moves),
                moves_table(shown).render()
            );
            if shown.len() < self.moves.len() {
                let _ = writeln!(
                    s,
                    "... {} more (`ringctl cluster moves` lists them all)",
                    self.moves.len() - shown.len()
                );
            }
        }
        s
    }
}

/// The one-line summary above the member table.
pub(crate) fn header(
    leader: Option<NodeId>,
    term: u64,
    epoch: Epoch,
    partitions: u32,
    replication: u32,
    answered_by: NodeId,
) -> String {
    let leader = leader.map_or_else(|| "none known".to_owned(), |l| l.to_string());
    let epoch = if epoch.0 == 0 {
        "none yet".to_owned()
    } else {
        epoch.0.to_string()
    };
    format!(
        "leader {leader}, term {term}, epoch {epoch}, {partitions} partitions, \
         replication {replication} (as {answered_by} sees it)"
    )
}

/// The members: state and role as the node words them, memory as `used / capacity`.
pub(crate) fn members_table(rows: &[MemberRow]) -> Table {
    let mut t = Table::new(&[
        "id",
        "address",
        "state",
        "role",
        ">primaries",
        ">backups",
        ">memory",
        "health",
    ]);
    for r in rows {
        let m = &r.member;
        let memory = match (r.used_bytes, r.capacity_bytes) {
            (Some(u), Some(c)) => format!("{} / {}", format_bytes(u), format_bytes(c)),
            _ => "-".to_owned(),
        };
        let health = match r.health {
            Health::Ok => "ok",
            Health::Unreachable => "unreachable",
        };
        t.row(vec![
            m.id.0.to_string(),
            m.addr.clone(),
            m.state.clone(),
            m.role.clone(),
            m.primaries.to_string(),
            m.backups.to_string(),
            memory,
            health.to_owned(),
        ]);
    }
    t
}

/// The members without memory and health (after a change, when they were not asked).
pub(crate) fn membership_table(members: &[MemberStatus]) -> Table {
    let mut t = Table::new(&["id", "address", "state", "role", ">primaries", ">backups"]);
    for m in members {
        t.row(vec![
            m.id.0.to_string(),
            m.addr.clone(),
            m.state.clone(),
            m.role.clone(),
            m.primaries.to_string(),
            m.backups.to_string(),
        ]);
    }
    t
}

/// Partition moves.
pub(crate) fn moves_table(moves: &[MoveStatus]) -> Table {
    let mut t = Table::new(&[">partition", "from", "to", "state", ">entries"]);
    for m in moves {
        t.row(vec![
            m.partition.to_string(),
            m.from.map_or_else(|| "-".to_owned(), |n| n.0.to_string()),
            m.to.0.to_string(),
            m.state.clone(),
            m.entries.to_string(),
        ]);
    }
    t
}

/// `3 moves in progress: 1 copying, 2 queued` (states in first-seen order).
pub(crate) fn moves_summary(moves: &[MoveStatus]) -> String {
    let mut states: Vec<(&str, usize)> = Vec::new();
    for m in moves {
        match states.iter_mut().find(|(s, _)| *s == m.state) {
            Some((_, n)) => *n += 1,
            None => states.push((&m.state, 1)),
        }
    }
    let parts: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    format!("{} moves in progress: {}", moves.len(), parts.join(", "))
}

/// `cluster moves`: a summary and every move; with none, says so.
pub(crate) fn render_moves(moves: &[MoveStatus]) -> String {
    if moves.is_empty() {
        "no partition moves in progress".to_owned()
    } else {
        format!(
            "{}\n\n{}",
            moves_summary(moves),
            moves_table(moves).render()
        )
    }
}

/// One node of `cluster ring`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RingNode {
    pub(crate) id: NodeId,
    /// Its address (`?` for a node the table names but the member list does not).
    pub(crate) addr: String,
    pub(crate) primaries: u32,
    pub(crate) backups: u32,
    /// primaries / partitions.
    pub(crate) share: f64,
}

/// `cluster ring`: how the table spreads the partitions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RingView {
    pub(crate) epoch: Epoch,
    pub(crate) partitions: u32,
    /// Copies of each partition (the longest replica set).
    pub(crate) replication: u32,
    pub(crate) nodes: Vec<RingNode>,
    /// The most primaries any node has over the mean (partitions / nodes); 1.0 is a
    /// perfect spread, 0 with no node.
    pub(crate) primary_balance: f64,
    /// The same over every copy (primaries and backups).
    pub(crate) copy_balance: f64,
}

// Counts are at most 65 536 partitions times a few copies: exact in f64.
#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

impl RingView {
    /// Counts each node's primaries (first of each replica set) and backups (the rest).
    pub(crate) fn new(info: &ClusterInfo) -> Self {
        let mut counts: BTreeMap<NodeId, (u32, u32)> =
            info.members.iter().map(|m| (m.id, (0, 0))).collect();
        let mut replication = 0;
        for p in 0..info.partitions as usize {
            let set: Vec<NodeId> = match info.replicas.get(p) {
                Some(set) if !set.is_empty() => set.clone(),
                _ => info.owners.get(p).copied().into_iter().collect(),
            };
            replication = replication.max(u32::try_from(set.len()).unwrap_or(u32::MAX));
            for (i, n) in set.into_iter().enumerate() {
                let c = counts.entry(n).or_default();
                if i == 0 {
                    c.0 += 1;
                } else {
                    c.1 += 1;
                }
            }
        }
        let nodes: Vec<RingNode> = counts
            .into_iter()
            .map(|(id, (primaries, backups))| RingNode {
                id,
                addr: address(info, id),
                primaries,
                backups,
                share: ratio(u64::from(primaries), u64::from(info.partitions)),
            })
            .collect();
        let n = nodes.len() as u64;
        let max_primaries = nodes.iter().map(|n| n.primaries).max().unwrap_or(0);
        let max_copies = nodes
            .iter()
            .map(|n| n.primaries + n.backups)
            .max()
            .unwrap_or(0);
        let total_copies: u64 = nodes
            .iter()
            .map(|n| u64::from(n.primaries + n.backups))
            .sum();
        // max / (total / n) = max * n / total
        let primary_balance = ratio(
            u64::from(max_primaries) * n,
            nodes.iter().map(|n| u64::from(n.primaries)).sum(),
        );
        let copy_balance = ratio(u64::from(max_copies) * n, total_copies);
        Self {
            epoch: info.epoch,
            partitions: info.partitions,
            replication,
            nodes,
            primary_balance,
            copy_balance,
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut t = Table::new(&["id", "address", ">primaries", ">backups", ">share"]);
        for n in &self.nodes {
            t.row(vec![
                n.id.0.to_string(),
                n.addr.clone(),
                n.primaries.to_string(),
                n.backups.to_string(),
                format!("{:.1}%", n.share * 100.0),
            ]);
        }
        format!(
            "epoch {}, {} partitions, replication {}, {} nodes\n\n{}\n\
             busiest / mean: {:.2} (primaries), {:.2} (all copies)",
            self.epoch.0,
            self.partitions,
            self.replication,
            self.nodes.len(),
            t.render(),
            self.primary_balance,
            self.copy_balance
        )
    }
}

fn address(info: &ClusterInfo, id: NodeId) -> String {
    info.members
        .iter()
        .find(|m| m.id == id)
        .map_or_else(|| "?".to_owned(), |m| m.addr.clone())
}

/// One holder of a key's partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Replica {
    pub(crate) id: NodeId,
    pub(crate) addr: String,
    /// `primary` or `backup`.
    pub(crate) role: &'static str,
}

/// `locate KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct LocateView {
    pub(crate) ns: String,
    pub(crate) key: String,
    pub(crate) partition: u32,
    pub(crate) partitions: u32,
    pub(crate) epoch: Epoch,
    /// Owner first.
    pub(crate) replicas: Vec<Replica>,
}

impl LocateView {
    /// Where `key` of `ns` lives in `info`'s table (the hash is the protocol's,
    /// [`ringcache_placement::partition_for`]).
    pub(crate) fn new(info: &ClusterInfo, ns: &str, key: &str) -> Self {
        let p = ringcache_placement::partition_for(ns, key.as_bytes(), info.partitions);
        let set: Vec<NodeId> = match info.replicas.get(p.0 as usize) {
            Some(set) if !set.is_empty() => set.clone(),
            _ => info.owner(p).into_iter().collect(),
        };
        let replicas = set
            .into_iter()
            .enumerate()
            .map(|(i, id)| Replica {
                id,
                addr: address(info, id),
                role: if i == 0 { "primary" } else { "backup" },
            })
            .collect();
        Self {
            ns: ns.to_owned(),
            key: key.to_owned(),
            partition: p.0,
            partitions: info.partitions,
            epoch: info.epoch,
            replicas,
        }
    }

    pub(crate) fn render(&self) -> String {
        let mut t = Table::new(&["role", "id", "address"]);
        for r in &self.replicas {
            t.row(vec![r.role.to_owned(), r.id.0.to_string(), r.addr.clone()]);
        }
        let body = if self.replicas.is_empty() {
            "no node holds it in this table\n".to_owned()
        } else {
            t.render()
        };
        format!(
            "{:?} in namespace {}: partition {} of {} at epoch {}\n\n{body}",
            self.key, self.ns, self.partition, self.partitions, self.epoch.0
        )
    }
}

/// How far a drain has come, from a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DrainState {
    /// The node is removed, or no longer a member.
    Done,
    /// Still going.
    Going {
        /// Its state (`draining`, ...).
        state: String,
        primaries: u32,
        backups: u32,
        /// Moves in progress off it.
        moves: usize,
    },
}

impl DrainState {
    pub(crate) fn of(status: &ClusterStatus, node: NodeId) -> Self {
        let Some(m) = status.members.iter().find(|m| m.id == node) else {
            return Self::Done;
        };
        if m.primaries == 0 && m.state == "removed" {
            return Self::Done;
        }
        Self::Going {
            state: m.state.clone(),
            primaries: m.primaries,
            backups: m.backups,
            moves: status
                .moves
                .iter()
                .filter(|mv| mv.from == Some(node))
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use ringcache_proto::Member;

    use super::*;

    fn member(id: u64, state: &str, role: &str, primaries: u32, backups: u32) -> MemberStatus {
        MemberStatus {
            id: NodeId(id),
            addr: format!("127.0.0.1:70{id:02}"),
            state: state.into(),
            role: role.into(),
            primaries,
            backups,
        }
    }

    fn status() -> ClusterStatus {
        ClusterStatus {
            node: NodeId(2),
            leader: Some(NodeId(1)),
            term: 3,
            epoch: Epoch(7),
            partitions: 8,
            replication: 2,
            members: vec![
                member(1, "active", "leader", 3, 3),
                member(2, "active", "voter", 3, 3),
                member(3, "joining", "learner", 2, 2),
            ],
            membership_changing: false,
            moves: vec![
                MoveStatus {
                    partition: 5,
                    from: Some(NodeId(1)),
                    to: NodeId(3),
                    state: "copying".into(),
                    entries: 1200,
                },
                MoveStatus {
                    partition: 6,
                    from: None,
                    to: NodeId(3),
                    state: "queued".into(),
                    entries: 0,
                },
            ],
        }
    }

    fn rows(s: &ClusterStatus) -> Vec<MemberRow> {
        s.members
            .iter()
            .map(|m| {
                let mem = if m.id == NodeId(3) {
                    Err("connect timed out".to_owned())
                } else {
                    Ok((1 << 20, 256 << 20))
                };
                MemberRow::new(m.clone(), mem)
            })
            .collect()
    }

    #[test]
    fn status_shows_header_members_health_and_moves() {
        let s = status();
        let view = StatusView::new(s.clone(), rows(&s));
        let text = view.render();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "leader node-1, term 3, epoch 7, 8 partitions, replication 2 (as node-2 sees it)"
        );
        assert_eq!(lines[1], "");
        assert_eq!(
            lines[2],
            "ID  ADDRESS         STATE    ROLE     PRIMARIES  BACKUPS               MEMORY  HEALTH"
        );
        assert_eq!(
            lines[3],
            "1   127.0.0.1:7001  active   leader           3        3  1.0 MiB / 256.0 MiB  ok"
        );
        assert_eq!(
            lines[5],
            "3   127.0.0.1:7003  joining  learner          2        2                    -  unreachable"
        );
        assert_eq!(lines[6], "");
        assert_eq!(lines[7], "2 moves in progress: 1 copying, 1 queued");
        assert_eq!(lines[8], "PARTITION  FROM  TO  STATE    ENTRIES");
        assert_eq!(lines[9], "        5  1     3   copying     1200");
        assert_eq!(lines[10], "        6  -     3   queued         0");
        assert_eq!(lines.len(), 11, "{text}");

        let json = serde_json::to_value(&view).expect("JSON");
        assert_eq!(json["leader"], 1);
        assert_eq!(json["epoch"], 7);
        let m = &json["members"];
        assert_eq!(m[0]["id"], 1);
        assert_eq!(m[0]["state"], "active");
        assert_eq!(m[0]["health"], "ok");
        assert_eq!(m[0]["used_bytes"], 1 << 20);
        assert_eq!(m[2]["health"], "unreachable");
        assert_eq!(m[2]["used_bytes"], serde_json::Value::Null);
        assert_eq!(m[2]["error"], "connect timed out");
        assert_eq!(json["moves"][0]["from"], 1);
        assert_eq!(json["moves"][1]["from"], serde_json::Value::Null);
    }

    #[test]
    fn status_without_moves_or_leader() {
        let mut s = status();
        s.moves.clear();
        s.leader = None;
        s.epoch = Epoch(0);
        let text = StatusView::new(s.clone(), rows(&s)).render();
        assert!(
            text.starts_with("leader none known, term 3, epoch none yet,"),
            "{text}"
        );
        assert!(!text.contains("moves"), "{text}");
        assert_eq!(
            render_moves(&s.moves),
            "no partition moves in progress".to_owned()
        );
    }

    #[test]
    fn long_move_lists_are_cut_in_status_but_not_in_moves() {
        let mut s = status();
        s.moves = (0..25)
            .map(|p| MoveStatus {
                partition: p,
                from: Some(NodeId(1)),
                to: NodeId(3),
                state: if p < 4 { "copying" } else { "queued" }.into(),
                entries: 0,
            })
            .collect();
        let text = StatusView::new(s.clone(), rows(&s)).render();
        assert!(
            text.contains("25 moves in progress: 4 copying, 21 queued\nPARTITION"),
            "{text}"
        );
        assert!(
            text.ends_with("... 15 more (`ringctl cluster moves` lists them all)\n"),
            "{text}"
        );
        let all = render_moves(&s.moves);
        assert!(all.starts_with("25 moves in progress: 4 copying, 21 queued\n\nPARTITION"));
        assert_eq!(all.lines().count(), 2 + 1 + 25, "{all}");
    }

    fn info(replicas: Vec<Vec<u64>>, members: &[u64]) -> ClusterInfo {
        let replicas: Vec<Vec<NodeId>> = replicas
            .into_iter()
            .map(|r| r.into_iter().map(NodeId).collect())
            .collect();
        ClusterInfo {
            epoch: Epoch(4),
            partitions: u32::try_from(replicas.len()).expect("small"),
            members: members
                .iter()
                .map(|&id| Member {
                    id: NodeId(id),
                    addr: format!("127.0.0.1:70{id:02}"),
                })
                .collect(),
            owners: replicas.iter().map(|r| r[0]).collect(),
            replicas,
        }
    }

    #[test]
    fn ring_counts_primaries_backups_and_balance() {
        // 6 partitions over 3 nodes: node 1 owns 3, node 2 owns 2, node 3 owns 1.
        let i = info(
            vec![
                vec![1, 2],
                vec![1, 3],
                vec![1, 2],
                vec![2, 3],
                vec![2, 1],
                vec![3, 1],
            ],
            &[1, 2, 3],
        );
        let r = RingView::new(&i);
        assert_eq!((r.partitions, r.replication, r.epoch), (6, 2, Epoch(4)));
        let counts: Vec<(u64, u32, u32)> = r
            .nodes
            .iter()
            .map(|n| (n.id.0, n.primaries, n.backups))
            .collect();
        assert_eq!(counts, [(1, 3, 2), (2, 2, 2), (3, 1, 2)]);
        assert!((r.nodes[0].share - 0.5).abs() < 1e-9);
        // Mean primaries 2, busiest 3: 1.5. Copies: 5, 4, 3 over a mean of 4: 1.25.
        assert!((r.primary_balance - 1.5).abs() < 1e-9, "{r:?}");
        assert!((r.copy_balance - 1.25).abs() < 1e-9, "{r:?}");
        let text = r.render();
        assert!(
            text.starts_with("epoch 4, 6 partitions, replication 2, 3 nodes\n\n"),
            "{text}"
        );
        assert!(
            text.contains("1   127.0.0.1:7001          3        2  50.0%"),
            "{text}"
        );
        assert!(
            text.ends_with("busiest / mean: 1.50 (primaries), 1.25 (all copies)"),
            "{text}"
        );
    }

    #[test]
    fn ring_lists_members_without_partitions_and_unknown_owners() {
        // Node 4 just joined (no partition yet); node 9 is in the table only.
        let i = info(vec![vec![1], vec![9]], &[1, 4]);
        let r = RingView::new(&i);
        let ids: Vec<(u64, u32, &str)> = r
            .nodes
            .iter()
            .map(|n| (n.id.0, n.primaries, n.addr.as_str()))
            .collect();
        assert_eq!(
            ids,
            [
                (1, 1, "127.0.0.1:7001"),
                (4, 0, "127.0.0.1:7004"),
                (9, 1, "?")
            ]
        );
        // Mean 2/3, busiest 1: 1.5.
        assert!((r.primary_balance - 1.5).abs() < 1e-9, "{r:?}");
        let empty = info(vec![], &[]);
        assert!(RingView::new(&empty).primary_balance.abs() < f64::EPSILON);
    }

    #[test]
    fn locate_names_the_partition_and_its_replicas() {
        let i = info(
            vec![vec![1, 2], vec![2, 3], vec![3, 1], vec![1, 3]],
            &[1, 2, 3],
        );
        let key = "greeting";
        let p = ringcache_placement::partition_for("default", key.as_bytes(), 4).0;
        let v = LocateView::new(&i, "default", key);
        assert_eq!(v.partition, p);
        let expected: Vec<u64> = i.replicas[p as usize].iter().map(|n| n.0).collect();
        let got: Vec<u64> = v.replicas.iter().map(|r| r.id.0).collect();
        assert_eq!(got, expected);
        assert_eq!(v.replicas[0].role, "primary");
        assert_eq!(v.replicas[1].role, "backup");
        let text = v.render();
        assert!(
            text.starts_with(&format!(
                "\"greeting\" in namespace default: partition {p} of 4 at epoch 4\n\nROLE"
            )),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "primary  {}   127.0.0.1:70{:02}",
                expected[0], expected[0]
            )),
            "{text}"
        );
        let json = serde_json::to_value(&v).expect("JSON");
        assert_eq!(json["partition"], p);
        assert_eq!(json["replicas"][0]["role"], "primary");
        assert_eq!(
            json["replicas"][1]["addr"],
            format!("127.0.0.1:70{:02}", expected[1])
        );

        // Another namespace hashes differently; a standalone node's table (no replica
        // sets) falls back to the owners.
        let mut standalone = info(vec![vec![1]; 4], &[1]);
        standalone.replicas.clear();
        let v = LocateView::new(&standalone, "other", key);
        assert_eq!(
            v.partition,
            ringcache_placement::partition_for("other", key.as_bytes(), 4).0
        );
        assert_eq!(v.replicas.len(), 1);
        assert_eq!(v.replicas[0].id, NodeId(1));
    }

    #[test]
    fn drain_is_done_when_the_node_is_removed_or_gone() {
        let mut s = status();
        assert_eq!(
            DrainState::of(&s, NodeId(1)),
            DrainState::Going {
                state: "active".into(),
                primaries: 3,
                backups: 3,
                moves: 1
            }
        );
        s.members[0].state = "removed".into();
        assert_eq!(
            DrainState::of(&s, NodeId(1)),
            DrainState::Going {
                state: "removed".into(),
                primaries: 3,
                backups: 3,
                moves: 1
            }
        );
        s.members[0].primaries = 0;
        assert_eq!(DrainState::of(&s, NodeId(1)), DrainState::Done);
        assert_eq!(DrainState::of(&s, NodeId(42)), DrainState::Done);
    }
}
