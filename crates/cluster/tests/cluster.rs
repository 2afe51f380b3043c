//! Three nodes over real QUIC on loopback: forming a cluster, forwarding, failover,
//! restart from the data directory, and the peer identity check.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use common::{Node, NodeSpec, Pki, form_cluster, wait_leader, wait_state};
use ringcache_cluster::{ClusterError, Command, CommandResult, MemberState, Rejection, Role};
use ringcache_placement::{DEFAULT_LOAD_FACTOR, PartitionTable};
use ringcache_proto::{Epoch, NodeId};

fn upsert(id: u64, addr: &str) -> Command {
    Command::UpsertMember {
        id: NodeId(id),
        addr: addr.to_owned(),
        weight: 128,
    }
}

fn table(members: &[u64], epoch: u64) -> Result<PartitionTable> {
    let m: Vec<_> = members.iter().map(|&n| (NodeId(n), 128)).collect();
    Ok(PartitionTable::compute(
        &m,
        64,
        2,
        DEFAULT_LOAD_FACTOR,
        Epoch(epoch),
    )?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_proposed_on_a_follower_is_applied_everywhere() -> Result<()> {
    let pki = Pki::new()?;
    let nodes = form_cluster(&pki, 3, None).await?;
    let leader = wait_leader(&nodes[0], None).await?;
    let follower = nodes
        .iter()
        .find(|n| NodeId(n.id) != leader)
        .context("a follower")?;
    assert_eq!(follower.metrics().role, Role::Follower);

    // Proposed on a follower: forwarded to the leader, committed, applied on all three.
    for n in &nodes {
        let res = follower
            .cluster
            .propose(upsert(n.id, &n.addr.to_string()))
            .await?;
        assert_eq!(res, CommandResult::Applied);
    }
    let res = follower
        .cluster
        .propose(Command::SetTable {
            table: table(&[1, 2, 3], 1)?,
        })
        .await?;
    assert_eq!(res, CommandResult::Applied);
    // A stale table is refused with an error result, through the same path.
    let res = follower
        .cluster
        .propose(Command::SetTable {
            table: table(&[1, 2], 1)?,
        })
        .await?;
    assert_eq!(
        res,
        CommandResult::Rejected(Rejection::StaleEpoch {
            current: Epoch(1),
            proposed: Epoch(1)
        })
    );
    let mut states = Vec::new();
    for n in &nodes {
        states.push(
            wait_state(n, "members and table", |s| {
                s.members.len() == 3 && s.epoch() == Epoch(1)
            })
            .await?,
        );
    }
    assert_eq!(states[0], states[1]);
    assert_eq!(states[0], states[2]);
    assert_eq!(states[0].partitions, 64);
    assert_eq!(states[0].members[&NodeId(2)].state, MemberState::Joining);
    for n in nodes {
        n.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failover_elects_a_new_leader_and_a_restarted_node_catches_up() -> Result<()> {
    let pki = Pki::new()?;
    // Snapshot every 4 entries and keep no log behind it, so the restarted node is
    // brought up to date by a snapshot sent over the network, not only by the log.
    let mut nodes = form_cluster(&pki, 3, Some(4)).await?;
    let old = wait_leader(&nodes[0], None).await?;
    let at = nodes
        .iter()
        .position(|n| NodeId(n.id) == old)
        .context("leader among nodes")?;
    let stopped = nodes.remove(at);
    let stopped_id = stopped.id;
    let stopped_addr = stopped.stop().await?;

    // A new leader within 10 s.
    let t0 = Instant::now();
    let new = wait_leader(&nodes[0], Some(old)).await?;
    let elected_in = t0.elapsed();
    assert_ne!(new, old);
    assert!(
        elected_in < Duration::from_secs(10),
        "new leader after {elected_in:?}"
    );
    assert_eq!(wait_leader(&nodes[1], Some(old)).await?, new);

    // Commands still commit (proposed on both survivors, whichever leads).
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..3 {
            let res = n
                .cluster
                .propose(Command::PutNamespace {
                    name: format!("ns-{i}-{k}"),
                    config: format!("k = {k}"),
                })
                .await?;
            assert_eq!(res, CommandResult::Applied);
        }
    }
    let expected = wait_state(&nodes[0], "six namespaces", |s| s.namespaces.len() == 6).await?;
    wait_state(&nodes[1], "six namespaces", |s| s.namespaces.len() == 6).await?;

    // The stopped node restarts from its data directory at its address and catches up.
    let mut spec = NodeSpec::new(&pki, stopped_id)?;
    spec.bind = stopped_addr;
    spec.snapshot_every = Some(4);
    let restarted = Node::start(spec).await?;
    let got = wait_state(&restarted, "the same map as the others", |s| *s == expected).await?;
    assert_eq!(got, expected);
    let leader = wait_leader(&restarted, None).await?;
    assert_eq!(leader, new);
    // And it takes part again: a command proposed on it commits everywhere.
    let res = restarted
        .cluster
        .propose(Command::DeleteNamespace {
            name: "ns-0-0".into(),
        })
        .await?;
    assert_eq!(res, CommandResult::Applied);
    nodes.push(restarted);
    for n in &nodes {
        wait_state(n, "namespace deleted", |s| s.namespaces.len() == 5).await?;
    }
    for n in nodes {
        n.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_must_be_the_node_their_certificate_names() -> Result<()> {
    let pki = Pki::new()?;
    let n1 = Node::start(NodeSpec::new(&pki, 1)?).await?;
    n1.cluster.initialize(64, 2).await?;
    wait_leader(&n1, None).await?;

    // Node 4 presenting node 3's certificate: the TLS handshake succeeds (it is a
    // cluster certificate) but the hello claiming node 4 is refused.
    let mut impostor = NodeSpec::new(&pki, 4)?;
    impostor.identity = pki.node(3)?;
    let impostor = Node::start(impostor).await?;
    let err = impostor
        .cluster
        .join(NodeId(1), &n1.addr.to_string())
        .await
        .expect_err("node 3's certificate cannot join as node 4");
    assert!(
        matches!(&err, ClusterError::Refused { node: NodeId(1), reason } if reason.contains("node-4")),
        "{err}"
    );

    // A client certificate cannot speak as a node at all.
    let mut client = NodeSpec::new(&pki, 5)?;
    client.identity = pki.client()?;
    let client = Node::start(client).await?;
    let err = client
        .cluster
        .join(NodeId(1), &n1.addr.to_string())
        .await
        .expect_err("a client certificate cannot join");
    assert!(
        matches!(
            &err,
            ClusterError::Refused {
                node: NodeId(1),
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(n1.metrics().learners.len(), 0, "nobody was added");

    // The real node 3 joins as itself.
    let n3 = Node::start(NodeSpec::new(&pki, 3)?).await?;
    n3.cluster.join(NodeId(1), &n1.addr.to_string()).await?;
    let m = common::wait_for(&mut n1.cluster.metrics(), "node 3 learner", |m| {
        m.learners.contains(&NodeId(3))
    })
    .await?;
    assert!(!m.learners.contains(&NodeId(4)));
    wait_state(&n3, "replicated map", |s| s.partitions == 64).await?;

    for n in [n1, impostor, client, n3] {
        n.stop().await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_learner_behind_a_purged_log_is_sent_a_snapshot() -> Result<()> {
    let pki = Pki::new()?;
    let mut spec = NodeSpec::new(&pki, 1)?;
    spec.snapshot_every = Some(4);
    let n1 = Node::start(spec).await?;
    n1.cluster.initialize(64, 2).await?;
    for k in 0..10 {
        let res = n1
            .cluster
            .propose(Command::PutNamespace {
                name: format!("ns-{k}"),
                config: String::new(),
            })
            .await?;
        assert!(res.is_applied());
    }
    // The leader snapshotted and purged its log: a new learner cannot catch up from it.
    let m = common::wait_for(&mut n1.cluster.metrics(), "log purged", |m| {
        m.purged.is_some_and(|p| p >= 8)
    })
    .await?;
    assert!(m.snapshot >= m.purged);
    let expected = n1.cluster.state().borrow().clone();

    let n2 = Node::start(NodeSpec::new(&pki, 2)?).await?;
    n1.cluster
        .add_learner(NodeId(2), n2.addr.to_string())
        .await?;
    let got = wait_state(&n2, "the leader's map", |s| *s == expected).await?;
    assert_eq!(got.namespaces.len(), 10);
    let m2 = common::wait_for(&mut n2.cluster.metrics(), "a snapshot installed", |m| {
        m.snapshot.is_some()
    })
    .await?;
    assert_eq!(m2.role, Role::Learner);
    n2.stop().await?;
    n1.stop().await?;
    Ok(())
}
