//! Multi-node clusters of real `ringcached` processes on 127.0.0.1 (ports allocated by
//! the harness): forming from seeds, leader failover, restart and rejoin, a join that
//! takes partitions with their data, and a drain under write load that loses nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_client::{Error as ClientError, SetOptions};
use ringcache_placement::partition_for;
use ringcache_proto::{ErrorCode, NodeId, Op, Response};

mod common;

use common::{Cluster, Options, PARTITIONS, Router, wait};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_from_seeds_and_serve_every_partition() {
    let c = Cluster::start(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    assert_eq!(s.partitions, PARTITIONS);
    assert_eq!(s.replication, 2);
    let voters = s
        .members
        .iter()
        .filter(|m| m.role == "voter" || m.role == "leader")
        .count();
    assert_eq!(voters, 3, "{s:#?}");
    let total: u32 = s.members.iter().map(|m| m.primaries).sum();
    assert_eq!(total, PARTITIONS);
    // Every node comes to the same table.
    let agreed = wait("one epoch everywhere", Duration::from_secs(30), || async {
        let mut epochs = Vec::new();
        for id in [1, 2, 3] {
            epochs.push(c.settled(id, &[1, 2, 3]).await.epoch);
        }
        epochs.windows(2).all(|w| w[0] == w[1])
    })
    .await;
    assert!(agreed, "the nodes did not agree on one table");
    let r = Router::new(&c).await;
    for i in 0..200 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    for i in 0..200 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from(format!("v{i}")))
        );
    }
    // A node that does not own a key says who does.
    let info = c
        .client_of(1)
        .await
        .expect("client")
        .cluster_info()
        .await
        .expect("info");
    let key = (0..).map(|i| format!("probe{i}")).find(|k| {
        info.owners[partition_for("default", k.as_bytes(), PARTITIONS).0 as usize] != NodeId(1)
    });
    let key = key.expect("some key is elsewhere");
    let owner = info.owners[partition_for("default", key.as_bytes(), PARTITIONS).0 as usize];
    let c1 = c.client_of(1).await.expect("client");
    match c1
        .request_here(Op::Get {
            ns: "default".into(),
            key: Bytes::from(key),
        })
        .await
    {
        Err(ClientError::Server(e)) => {
            assert_eq!(e.code, ErrorCode::NotOwner);
            assert_eq!(e.hints.owner, Some(owner));
            assert_eq!(e.hints.epoch, Some(info.epoch));
        }
        other => panic!("expected not_owner, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_node_takes_partitions_with_their_data() {
    let mut c = Cluster::start(2).await;
    c.settled(1, &[1, 2]).await;
    let r = Router::new(&c).await;
    for i in 0..500 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    c.add(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    let on3 = s
        .members
        .iter()
        .find(|m| m.id == NodeId(3))
        .expect("node 3")
        .primaries;
    assert!(on3 > 0);
    let r = Router::new(&c).await;
    for i in 0..500 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from(format!("v{i}"))),
            "k{i} lost in the move"
        );
    }
    // Node 3 really serves data now: its engine holds entries.
    let c3 = c.client_of(3).await.expect("client");
    let stats = c3.stats(Some("default")).await.expect("stats");
    assert!(stats[0].entries > 0, "{stats:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_under_write_load_loses_no_acknowledged_write() {
    let c = Cluster::start(3).await;
    c.settled(1, &[1, 2, 3]).await;
    let r = Router::new(&c).await;
    let acked: Arc<tokio::sync::Mutex<BTreeMap<String, String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (r, acked, stop) = (Arc::clone(&r), Arc::clone(&acked), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut i = 0u32;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (k, v) = (format!("w{w}-{}", i % 100), format!("{i}"));
                    // One writer per key: the last acknowledged value is well defined.
                    r.set(&k, &v).await.expect("writes keep being acknowledged");
                    acked.lock().await.insert(k, v);
                    i += 1;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c1 = c.client_of(1).await.expect("client");
    match c1.request(Op::ClusterDrain { node: NodeId(3) }).await {
        Ok(Response::ClusterStatus(_)) => {}
        other => panic!("drain: {other:?}"),
    }
    let gone = wait("node 3 to leave", Duration::from_secs(60), || async {
        c.status(1)
            .await
            .is_some_and(|s| s.members.iter().all(|m| m.id != NodeId(3)) && s.moves.is_empty())
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    assert!(
        gone,
        "node 3 did not leave: {:#?}\n{}",
        c.status(1).await,
        c.log(1)
    );
    let s = c.status(1).await.expect("status");
    assert_eq!(s.members.len(), 2);
    let r = Router::new(&c).await;
    let acked = acked.lock().await.clone();
    assert!(acked.len() >= 100, "the load ran: {}", acked.len());
    for (k, v) in &acked {
        assert_eq!(
            r.get(k).await.expect("get"),
            Some(Bytes::from(v.clone())),
            "{k}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_a_restarted_node_rejoins() {
    let mut c = Cluster::start(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    let leader = s.leader.expect("leader").0;
    let survivor = [1, 2, 3]
        .into_iter()
        .find(|n| *n != leader)
        .expect("survivor");
    let killed_at = Instant::now();
    c.kill(leader).await;
    // Within 10 s: a new leader, the dead node marked down, and a committed table that
    // gives none of its partitions to it.
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let replaced = wait(
        "a new leader and table",
        Duration::from_secs(10),
        || async {
            c.status(survivor).await.is_some_and(|s| {
                s.leader.is_some_and(|l| l.0 != leader)
                    && s.members
                        .iter()
                        .any(|m| m.id.0 == leader && m.state == "down" && m.primaries == 0)
            })
        },
    )
    .await;
    assert!(
        replaced,
        "no new leader and table 10 s after the kill of {leader}: {:#?}\n{}",
        c.status(survivor).await,
        [1, 2, 3]
            .map(|n| format!("--- node {n}\n{}", c.log(n)))
            .join("\n")
    );
    eprintln!("re-placed {:?} after the kill", killed_at.elapsed());
    c.settled(survivor, &rest).await;
    let r = Router::new(&c).await;
    for i in 0..100 {
        r.set(&format!("after{i}"), "x")
            .await
            .expect("clients keep working");
    }
    // The killed node restarts with its data directory and rejoins.
    c.spawn(leader);
    c.settled(survivor, &[1, 2, 3]).await;
    let s = c.settled(leader, &[1, 2, 3]).await;
    assert!(s.leader.is_some());
    for i in 0..100 {
        assert_eq!(
            r.get(&format!("after{i}")).await.expect("get"),
            Some(Bytes::from("x"))
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_nodes_form_with_five_voters_and_balanced_partitions() {
    let c = Cluster::start(5).await;
    let s = c.settled(1, &[1, 2, 3, 4, 5]).await;
    let voters = s
        .members
        .iter()
        .filter(|m| m.role == "voter" || m.role == "leader")
        .count();
    assert_eq!(voters, 5, "{s:#?}");
    let most = s.members.iter().map(|m| m.primaries).max().unwrap_or(0);
    let mean = f64::from(PARTITIONS) / 5.0;
    assert!(
        f64::from(most) <= (mean * 1.15).ceil(),
        "busiest node owns {most} of {PARTITIONS}: {s:#?}"
    );
    let r = Router::new(&c).await;
    for i in 0..100 {
        r.set(&format!("k{i}"), "v").await.expect("set");
    }
    for i in 0..100 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from("v"))
        );
    }
}

/// A move cut short by the crash of the node receiving the partitions starts over
/// cleanly: the sources serve again, nothing acknowledged is lost, and the moves run
/// again when the node comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_interrupted_by_a_crash_restarts_cleanly() {
    let mut c = Cluster::start(3).await;
    c.settled(1, &[1, 2, 3]).await;
    let r = Router::new(&c).await;
    let keys = 4000;
    let value = "v".repeat(200);
    for chunk in 0..keys / 500 {
        let items: Vec<(Bytes, Bytes, Option<Duration>)> = (chunk * 500..(chunk + 1) * 500)
            .map(|i| {
                (
                    Bytes::from(format!("k{i}")),
                    Bytes::from(format!("{value}{i}")),
                    None,
                )
            })
            .collect();
        let stored = r.client.set_many("default", items).await.expect("set_many");
        assert!(stored.iter().all(Result::is_ok), "{stored:?}");
    }
    // Every partition any table gives to node 4 (its data dies with node 4: there is no
    // replication yet, so those keys are not expected back).
    let c1 = c.client_of(1).await.expect("client");
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let watcher = tokio::spawn(async move {
        let mut given = std::collections::BTreeSet::new();
        while !*stop.borrow() {
            if let Ok(info) = c1.cluster_info().await {
                for (p, o) in info.owners.iter().enumerate() {
                    if *o == NodeId(4) {
                        given.insert(p);
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        given
    });
    c.add(4).await;
    let moving = wait("moves toward node 4", Duration::from_secs(60), || async {
        c.status(1)
            .await
            .is_some_and(|s| s.moves.iter().any(|m| m.to == NodeId(4)))
    })
    .await;
    c.kill(4).await;
    c.settled(1, &[1, 2, 3]).await;
    stop_tx.send_replace(true);
    let lost = watcher.await.expect("watcher");
    eprintln!(
        "node 4 killed {} its first moves; {} partitions had been handed to it",
        if moving { "during" } else { "after" },
        lost.len()
    );
    let check = |r: Arc<Router>, lost: std::collections::BTreeSet<usize>| async move {
        let mut kept = 0;
        for i in 0..keys {
            let key = format!("k{i}");
            if lost.contains(&(partition_for("default", key.as_bytes(), PARTITIONS).0 as usize)) {
                continue;
            }
            assert_eq!(
                r.get(&key).await.expect("get"),
                Some(Bytes::from(format!("{}{i}", "v".repeat(200)))),
                "{key}"
            );
            kept += 1;
        }
        assert!(kept > keys / 2, "only {kept} keys checked");
    };
    // The sources of the interrupted moves serve again, every key they held intact.
    check(Arc::clone(&r), lost.clone()).await;
    // Node 4 comes back and the moves run to the end.
    c.spawn(4);
    let s = c.settled(1, &[1, 2, 3, 4]).await;
    assert!(
        s.members
            .iter()
            .any(|m| m.id == NodeId(4) && m.primaries > 0),
        "{s:#?}"
    );
    check(r, lost).await;
}

/// Draining the leader hands leadership to another member, moves every partition off
/// it with its data, and removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_the_leader_hands_over_leadership() {
    let c = Cluster::start(3).await;
    let s = c.settled(1, &[1, 2, 3]).await;
    let leader = s.leader.expect("leader").0;
    let rest: Vec<u64> = [1, 2, 3].into_iter().filter(|n| *n != leader).collect();
    let r = Router::new(&c).await;
    for i in 0..200 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    let cl = c.client_of(leader).await.expect("client");
    match cl
        .request(Op::ClusterDrain {
            node: NodeId(leader),
        })
        .await
    {
        Ok(Response::ClusterStatus(_)) => {}
        other => panic!("drain: {other:?}"),
    }
    let gone = wait(
        "the old leader to leave",
        Duration::from_secs(60),
        || async {
            c.status(rest[0]).await.is_some_and(|s| {
                s.leader.is_some_and(|l| l.0 != leader)
                    && !s.membership_changing
                    && s.members.iter().all(|m| m.id.0 != leader)
            })
        },
    )
    .await;
    assert!(
        gone,
        "{:#?}\n{}",
        c.status(rest[0]).await,
        [1, 2, 3]
            .map(|n| format!("--- node {n}\n{}", c.log(n)))
            .join("\n")
    );
    let s = c.settled(rest[0], &rest).await;
    let voters = s
        .members
        .iter()
        .filter(|m| m.role == "voter" || m.role == "leader")
        .count();
    assert_eq!(voters, 2, "{s:#?}");
    for i in 0..200 {
        assert_eq!(
            r.get(&format!("k{i}")).await.expect("get"),
            Some(Bytes::from(format!("v{i}"))),
            "k{i}"
        );
    }
}

/// Members beyond `max_voters` join as non-voting members that still own partitions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_beyond_max_voters_stay_non_voting() {
    let c = Cluster::start_with(
        4,
        Options {
            max_voters: 3,
            ..Options::default()
        },
    )
    .await;
    let s = c.settled(1, &[1, 2, 3, 4]).await;
    let roles: Vec<&str> = s.members.iter().map(|m| m.role.as_str()).collect();
    assert_eq!(
        roles
            .iter()
            .filter(|r| **r == "leader" || **r == "voter")
            .count(),
        3,
        "{s:#?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "learner").count(),
        1,
        "{s:#?}"
    );
    assert!(s.members.iter().all(|m| m.primaries > 0), "{s:#?}");
}

/// A drain completes while another member is down (placement must converge instead of
/// re-committing backup changes forever).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_completes_while_another_member_is_down() {
    let mut c = Cluster::start(4).await;
    c.settled(1, &[1, 2, 3, 4]).await;
    let r = Router::new(&c).await;
    for i in 0..200 {
        r.set(&format!("k{i}"), &format!("v{i}"))
            .await
            .expect("set");
    }
    c.kill(2).await;
    c.settled(1, &[1, 3, 4]).await;
    let c1 = c.client_of(1).await.expect("client");
    match c1.request(Op::ClusterDrain { node: NodeId(4) }).await {
        Ok(Response::ClusterStatus(_)) => {}
        other => panic!("drain: {other:?}"),
    }
    c.settled(1, &[1, 3]).await;
    let left = wait("node 4 to leave", Duration::from_secs(30), || async {
        c.status(1)
            .await
            .is_some_and(|s| s.members.iter().all(|m| m.id != NodeId(4)))
    })
    .await;
    assert!(left, "{:#?}\n{}", c.status(1).await, c.log(1));
    // Keys that lived on node 2 died with it (no replication yet); every other one moved.
    let info = c1.cluster_info().await.expect("info");
    assert!(
        info.owners
            .iter()
            .all(|o| *o == NodeId(1) || *o == NodeId(3))
    );
    let mut found = 0;
    for i in 0..200 {
        let got = r.get(&format!("k{i}")).await;
        if got.expect("get").is_some() {
            found += 1;
        }
    }
    assert!(found >= 100, "only {found} of 200 keys survived the drain");
}

/// `ns create` and `ns alter` sent to any member apply on every member (through Raft).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_apply_cluster_wide() {
    let c = Cluster::start(3).await;
    c.settled(1, &[1, 2, 3]).await;
    let c1 = c.client_of(1).await.expect("client");
    match c1
        .request(Op::NsCreate {
            ns: "sessions".into(),
            config: "memory = \"4MiB\"\ndefault_ttl = \"10m\"\n".into(),
        })
        .await
    {
        Ok(Response::Namespaces(v)) => assert_eq!(v[0].ns, "sessions"),
        other => panic!("create: {other:?}"),
    }
    let c2 = c.client_of(2).await.expect("client");
    match c2
        .request(Op::NsAlter {
            ns: "sessions".into(),
            config: "policy = \"lru\"".into(),
        })
        .await
    {
        Ok(Response::Namespaces(v)) => assert!(v[0].config.contains("lru"), "{}", v[0].config),
        other => panic!("alter: {other:?}"),
    }
    for id in [1, 2, 3] {
        let applied = wait(
            "the namespace everywhere",
            Duration::from_secs(20),
            || async {
                let Some(client) = c.client_of(id).await else {
                    return false;
                };
                match client
                    .request(Op::NsShow {
                        ns: "sessions".into(),
                    })
                    .await
                {
                    Ok(Response::Namespaces(v)) => v[0].config.contains("lru"),
                    _ => false,
                }
            },
        )
        .await;
        assert!(
            applied,
            "node {id} lacks the altered namespace:\n{}",
            c.log(id)
        );
    }
    let e = c1
        .request(Op::NsCreate {
            ns: "sessions".into(),
            config: String::new(),
        })
        .await
        .expect_err("exists");
    assert!(
        matches!(e, ClientError::Server(ref w) if w.code == ErrorCode::AlreadyExists),
        "{e}"
    );
    let r = Router::new(&c).await;
    for i in 0..50 {
        r.client
            .set("sessions", format!("s{i}"), "x", SetOptions::default())
            .await
            .expect("set in the new namespace on its owner");
    }
}
