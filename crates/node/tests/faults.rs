//! Network and process faults on real `ringcached` processes, each test in its own
//! network namespace with nftables cuts (`common::netns`):
//! - a member cut off from the others (both ways, or one way either way) stops
//!   acknowledging writes before the leader gives its partitions to others
//!   (TESTING.md, invariant 2), and the cluster converges once the cut heals
//!   (invariant 4: one leader, one epoch everywhere, nobody stuck mid-change);
//! - a leader cut off from the others stops serving, the others elect a new leader
//!   and keep serving every partition;
//! - a paused member (SIGSTOP past `down_after`) that resumes with an old table never
//!   acknowledges a write on it (invariant 11);
//! - members whose clocks are an hour ahead and an hour behind (libfaketime) join, and
//!   expire entries neither early nor late (TTLs travel as durations and run on each
//!   node's monotonic clock; versions move past any version a node is handed).
//!
//! The assertions are about order, not speed: the member refuses (`unavailable`)
//! before anyone observes its partitions placed elsewhere, and never acknowledges after
//! its first refusal while cut off. The timings are printed for the record.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::{Client, Error as ClientError};
use ringcache_placement::partition_for;
use ringcache_proto::{ErrorCode, NodeId, Op, Response, WriteCondition};
use tokio::sync::watch;

use common::netns::{cut_off, cut_one_way, heal, isolated};
use common::{Cluster, Options, PARTITIONS, Router, node_ip, wait};

fn options() -> Options {
    Options {
        per_node_ip: true,
        down_after: "4s",
        ..Options::default()
    }
}

/// What one direct write got, and when.
#[derive(Debug)]
enum Outcome {
    Acked(Instant),
    Refused(Instant, ErrorCode),
    #[allow(dead_code)] // shown in failure messages
    Failed(Instant, String),
}

/// A key of the default namespace whose partition `node` owns.
async fn key_owned_by(c: &Cluster, node: u64) -> String {
    let client = c.client_of(node).await.expect("client");
    let info = client.cluster_info().await.expect("cluster info");
    (0..10_000)
        .map(|i| format!("key{i}"))
        .find(|k| {
            info.owners[partition_for("default", k.as_bytes(), PARTITIONS).0 as usize]
                == NodeId(node)
        })
        .expect("a key the node owns")
}

fn set(key: &str, value: u64) -> Op {
    Op::Set {
        ns: "default".into(),
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Bytes::from(value.to_string()),
        ttl_ms: None,
        condition: WriteCondition::Always,
    }
}

/// Writes `key` at the node `client` is connected to, directly (no routing, no epoch:
/// what a client with an old table does), until `stop`; every outcome with its time.
async fn hammer(client: Client, key: String, stop: watch::Receiver<bool>) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut i = 0;
    while !*stop.borrow() {
        i += 1;
        let res = client.request_here(set(&key, i)).await;
        let now = Instant::now();
        out.push(match res {
            Ok(Response::Stored { .. }) => Outcome::Acked(now),
            Err(ClientError::Server(e)) => Outcome::Refused(now, e.code),
            other => Outcome::Failed(now, format!("{other:?}")),
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    out
}

/// Polls `observer` until it reports `victim` down with no partitions; when it saw it.
async fn moved_away(c: &Cluster, observer: u64, victim: u64) -> Option<Instant> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(s) = c.status(observer).await
            && s.leader.is_some_and(|l| l.0 != victim)
            && s.members
                .iter()
                .any(|m| m.id.0 == victim && m.state == "down" && m.primaries == 0)
        {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Waits until every node of `ids` reports the same leader and epoch, all of them
/// active, no moves and no membership change under way.
async fn converged(c: &Cluster, ids: &[u64]) {
    let healed = Instant::now();
    let ok = wait("convergence", Duration::from_secs(60), || async {
        let mut seen = Vec::new();
        for id in ids {
            let Some(s) = c.status(*id).await else {
                return false;
            };
            seen.push(s);
        }
        let first = &seen[0];
        seen.iter().all(|s| {
            s.leader.is_some()
                && s.leader == first.leader
                && s.epoch == first.epoch
                && !s.membership_changing
        }) && first.moves.is_empty()
            && ids.iter().all(|id| {
                first
                    .members
                    .iter()
                    .any(|m| m.id.0 == *id && m.state == "active" && m.primaries > 0)
            })
    })
    .await;
    let statuses: Vec<_> = futures::future::join_all(ids.iter().map(|id| c.status(*id))).await;
    assert!(
        ok,
        "the cluster did not converge within 60 s of the heal: {statuses:#?}\n{}",
        ids.iter()
            .map(|n| format!("--- node {n}\n{}", c.log(*n)))
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!("converged {:?} after the heal", healed.elapsed());
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    Both,
    /// The victim's packets to the others are dropped; it still hears them.
    Outbound,
    /// The others' packets to the victim are dropped; it can still send.
    Inbound,
}

/// Cuts `victim` off as `cut` says while writing to a key it owns, directly; checks
/// that it refuses before `observer` sees its partitions placed elsewhere and never
/// acknowledges after its first refusal. Leaves the cut in place.
async fn cut_and_check(c: &Cluster, victim: u64, observer: u64, cut: Cut) {
    let key = key_owned_by(c, victim).await;
    let mut cfg = c.config(vec![c.nodes[&victim].addr.clone()]);
    cfg.request_timeout = Duration::from_secs(2);
    let client = Client::connect(cfg).await.expect("client");
    let (stop_tx, stop) = watch::channel(false);
    let writer = tokio::spawn(hammer(client.clone(), key.clone(), stop));
    // The victim serves before the cut.
    let serving = wait("the first acks", Duration::from_secs(10), || async {
        matches!(
            client
                .request_here(Op::Get {
                    ns: "default".into(),
                    key: Bytes::copy_from_slice(key.as_bytes()),
                })
                .await,
            Ok(Response::Value(Some(_)))
        )
    })
    .await;
    assert!(serving, "node {victim} did not serve {key} before the cut");
    let others: Vec<String> = c
        .nodes
        .keys()
        .filter(|n| **n != victim)
        .map(|n| node_ip(*n))
        .collect();
    let me = node_ip(victim);
    let cut_at = Instant::now();
    match cut {
        Cut::Both => cut_off(&me, &others),
        Cut::Outbound => others.iter().for_each(|o| cut_one_way(&me, o)),
        Cut::Inbound => others.iter().for_each(|o| cut_one_way(o, &me)),
    }
    let moved = moved_away(c, observer, victim).await;
    // Keep writing a little past the move: the victim must still refuse.
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop_tx.send_replace(true);
    let outcomes = writer.await.expect("writer");
    let Some(moved) = moved else {
        panic!(
            "{cut:?} cut: node {observer} never saw node {victim} down and its partitions \
             moved: {:#?}\n{}",
            c.status(observer).await,
            c.log(observer)
        )
    };
    let first_refusal = outcomes.iter().find_map(|o| match o {
        Outcome::Refused(t, ErrorCode::Unavailable) if *t > cut_at => Some(*t),
        _ => None,
    });
    let last_ack = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Acked(t) => Some(*t),
            _ => None,
        })
        .max();
    let acks = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Acked(_)))
        .count();
    eprintln!(
        "{cut:?} cut of node {victim}: {acks} acks, last {:?} after the cut; fenced {:?} \
         after the cut; partitions moved (seen by node {observer}) {:?} after the cut",
        last_ack.map(|t| t.saturating_duration_since(cut_at)),
        first_refusal.map(|t| t - cut_at),
        moved - cut_at
    );
    let first_refusal = first_refusal.unwrap_or_else(|| {
        panic!(
            "{cut:?} cut: node {victim} never refused a write: {outcomes:?}\n{}",
            c.log(victim)
        )
    });
    assert!(
        first_refusal < moved,
        "{cut:?} cut: node {victim} kept serving until its partitions moved"
    );
    assert!(
        last_ack.is_none_or(|t| t < first_refusal),
        "{cut:?} cut: node {victim} acknowledged a write after it had fenced itself: \
         {outcomes:?}"
    );
    client.close().await;
}

#[test]
fn a_member_cut_off_stops_acking_before_its_partitions_move() {
    isolated(
        "a_member_cut_off_stops_acking_before_its_partitions_move",
        || async {
            let c = Cluster::start_with(3, options()).await;
            let s = c.settled(1, &[1, 2, 3]).await;
            let leader = s.leader.expect("leader").0;
            let victim = (1..=3).rev().find(|n| *n != leader).expect("victim");
            cut_and_check(&c, victim, leader, Cut::Both).await;
            heal();
            converged(&c, &[1, 2, 3]).await;
        },
    );
}

#[test]
fn one_way_cuts_fence_the_member_too() {
    isolated("one_way_cuts_fence_the_member_too", || async {
        let c = Cluster::start_with(3, options()).await;
        let s = c.settled(1, &[1, 2, 3]).await;
        let leader = s.leader.expect("leader").0;
        let victim = (1..=3).rev().find(|n| *n != leader).expect("victim");
        cut_and_check(&c, victim, leader, Cut::Outbound).await;
        heal();
        converged(&c, &[1, 2, 3]).await;
        let s = c.settled(1, &[1, 2, 3]).await;
        let leader = s.leader.expect("leader").0;
        let victim = (1..=3).find(|n| *n != leader).expect("victim");
        cut_and_check(&c, victim, leader, Cut::Inbound).await;
        heal();
        converged(&c, &[1, 2, 3]).await;
    });
}

#[test]
fn a_leader_cut_off_stops_serving_and_the_rest_carry_on() {
    isolated(
        "a_leader_cut_off_stops_serving_and_the_rest_carry_on",
        || async {
            let c = Cluster::start_with(3, options()).await;
            let s = c.settled(1, &[1, 2, 3]).await;
            let leader = s.leader.expect("leader").0;
            let observer = (1..=3).find(|n| *n != leader).expect("observer");
            cut_and_check(&c, leader, observer, Cut::Both).await;
            // The majority serves every partition meanwhile.
            let r = Router::new(&c).await;
            for i in 0..50 {
                r.set(&format!("during{i}"), "x")
                    .await
                    .expect("the majority keeps serving");
            }
            heal();
            converged(&c, &[1, 2, 3]).await;
            for i in 0..50 {
                assert_eq!(
                    r.get(&format!("during{i}")).await.expect("get"),
                    Some(Bytes::from("x")),
                    "during{i}"
                );
            }
        },
    );
}

#[test]
fn a_paused_member_never_acks_on_its_old_table() {
    isolated("a_paused_member_never_acks_on_its_old_table", || async {
        let c = Cluster::start_with(3, options()).await;
        let s = c.settled(1, &[1, 2, 3]).await;
        let leader = s.leader.expect("leader").0;
        let victim = (1..=3).rev().find(|n| *n != leader).expect("victim");
        let key = key_owned_by(&c, victim).await;
        let mut cfg = c.config(vec![c.nodes[&victim].addr.clone()]);
        cfg.request_timeout = Duration::from_secs(5);
        let direct = Client::connect(cfg).await.expect("client");
        match direct.request_here(set(&key, 1)).await {
            Ok(Response::Stored { .. }) => {}
            other => panic!("node {victim} did not serve {key}: {other:?}"),
        }
        let pid = c.nodes[&victim]
            .child
            .as_ref()
            .and_then(tokio::process::Child::id)
            .expect("pid");
        let signal = |sig: &str| {
            let ok = std::process::Command::new("kill")
                .args([sig, &pid.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill {sig} {pid}");
        };
        signal("-STOP");
        let paused = Instant::now();
        let moved = moved_away(&c, leader, victim).await;
        assert!(
            moved.is_some(),
            "node {victim} was not marked down while paused"
        );
        eprintln!(
            "paused node's partitions moved {:?} after the pause",
            paused.elapsed()
        );
        let r = Router::new(&c).await;
        r.set(&key, "after").await.expect("the new owner serves");
        signal("-CONT");
        // From the moment it resumes, the paused node must not take a write on its old
        // table: it refuses (its lease ran out while it was stopped) until it has caught
        // up, then answers that another node owns the key.
        let resumed = Instant::now();
        let mut refusals = 0;
        loop {
            match direct.request_here(set(&key, 2)).await {
                Err(ClientError::Server(e)) if e.code == ErrorCode::NotOwner => break,
                Err(ClientError::Server(e)) if e.code == ErrorCode::Unavailable => refusals += 1,
                Err(e) if e.retry_is_safe() => {}
                other => panic!(
                    "node {victim} answered {other:?} {:?} after resuming with an old table",
                    resumed.elapsed()
                ),
            }
            assert!(
                resumed.elapsed() < Duration::from_secs(30),
                "node {victim} did not catch up within 30 s of resuming"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        eprintln!(
            "resumed node refused {refusals} writes, then answered not_owner {:?} after resuming",
            resumed.elapsed()
        );
        assert_eq!(
            r.get(&key).await.expect("get"),
            Some(Bytes::from("after")),
            "the new owner's value stands"
        );
        converged(&c, &[1, 2, 3]).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_an_hour_off_expire_neither_early_nor_late() {
    if common::libfaketime().is_none() {
        let why = "the clock-skew test needs faketime (apt-get install faketime)";
        assert!(std::env::var_os("CI").is_none(), "{why}");
        eprintln!("skipped: {why}");
        return;
    }
    let c = Cluster::start_with(
        3,
        Options {
            faketime: vec![(2, "+1h"), (3, "-1h")],
            ..Options::default()
        },
    )
    .await;
    c.settled(1, &[1, 2, 3]).await;
    let r = Router::new(&c).await;
    let ttl = Duration::from_secs(4);
    // Keys on every node, the skewed ones included.
    let mut keys = Vec::new();
    let mut last_sent = Instant::now();
    for node in 1..=3 {
        let key = key_owned_by(&c, node).await;
        last_sent = Instant::now();
        r.client
            .set("default", &key, "v", ringcache_client::SetOptions::ttl(ttl))
            .await
            .expect("set");
        keys.push((node, key));
    }
    for (node, key) in &keys {
        let e = r
            .client
            .get("default", key)
            .await
            .expect("get")
            .unwrap_or_else(|| panic!("{key} on node {node} expired at once"));
        let left = e.ttl_ms.expect("a ttl");
        assert!(
            left <= 4_000 && left + 2_000 > 4_000,
            "{key} on node {node} reports {left} ms left of 4000"
        );
    }
    // Gone after the TTL, within a generous margin (never an hour late).
    let gone = wait("expiry", Duration::from_secs(20), || async {
        let mut all = true;
        for (_, key) in &keys {
            all &= r.get(key).await.expect("get").is_none();
        }
        all
    })
    .await;
    assert!(
        gone,
        "entries outlived their 4 s TTL by 16 s on a skewed node"
    );
    // The last write was sent at `last_sent`; its entry cannot have expired before its
    // TTL had run from then (less the node clock's tick, well under 100 ms).
    assert!(
        last_sent.elapsed() + Duration::from_millis(100) >= ttl,
        "expired before the TTL: all gone {:?} after the last write was sent",
        last_sent.elapsed()
    );
}
