//! The redb Raft storage: openraft's conformance suite, and reopening a directory.

use std::collections::BTreeMap;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftLogReader, RaftSnapshotBuilder,
    StorageError, Vote,
};
use ringcache_cluster::{
    ClusterState, Command, CommandResult, LogStore, MemberState, PeerNode, StateMachineStore,
    TypeConfig, open_storage,
};
use ringcache_proto::NodeId;
use tempfile::TempDir;

/// A fresh storage in its own temporary directory (the directory lives as long as the guard).
struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = TempDir::new().expect("temporary directory");
        let (log, sm) = open_storage(dir.path()).expect("open storage");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() -> anyhow::Result<()> {
    Suite::test_all(Builder)?;
    Ok(())
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
    Entry {
        log_id: log_id(term, index),
        payload,
    }
}

#[tokio::test]
async fn reopening_restores_vote_log_and_state() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let membership = Membership::new(
        vec![[1u64].into_iter().collect()],
        BTreeMap::from([(1u64, PeerNode::new("127.0.0.1:7001"))]),
    );
    let entries = vec![
        entry(1, 1, EntryPayload::Membership(membership.clone())),
        entry(
            1,
            2,
            EntryPayload::Normal(Command::Init {
                partitions: 16,
                replication: 2,
            }),
        ),
        entry(
            1,
            3,
            EntryPayload::Normal(Command::UpsertMember {
                id: NodeId(1),
                addr: "127.0.0.1:7001".into(),
                weight: 128,
            }),
        ),
        entry(
            2,
            4,
            EntryPayload::Normal(Command::PutNamespace {
                name: "users".into(),
                config: "ttl = \"1m\"".into(),
            }),
        ),
    ];
    let expected_state;
    {
        let (mut log, mut sm) = open_storage(dir.path())?;
        let mut state_rx = sm.subscribe();
        log.save_vote(&Vote::new(2, 1)).await?;
        log.blocking_append(entries.clone()).await?;
        log.save_committed(Some(log_id(2, 4))).await?;
        let results = sm.apply(entries.clone()).await?;
        assert_eq!(results, vec![CommandResult::Applied; 4]);
        assert!(state_rx.has_changed()?, "apply publishes the state");
        expected_state = state_rx.borrow_and_update().clone();
        assert_eq!(expected_state.partitions, 16);
        assert_eq!(
            expected_state.members[&NodeId(1)].state,
            MemberState::Joining
        );
        assert_eq!(expected_state.namespaces["users"], "ttl = \"1m\"");
        let snap = sm.get_snapshot_builder().await.build_snapshot().await?;
        assert_eq!(snap.meta.last_log_id, Some(log_id(2, 4)));
        // A fifth entry in the log only: not applied before the restart.
        log.blocking_append([entry(2, 5, EntryPayload::Blank)])
            .await?;
        log.purge(log_id(1, 1)).await?;
    }

    let (mut log, mut sm) = open_storage(dir.path())?;
    assert_eq!(log.read_vote().await?, Some(Vote::new(2, 1)));
    assert_eq!(log.read_committed().await?, Some(log_id(2, 4)));
    let state = log.get_log_state().await?;
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 1)));
    assert_eq!(state.last_log_id, Some(log_id(2, 5)));
    let got = log.try_get_log_entries(0..100).await?;
    let indexes: Vec<u64> = got.iter().map(|e| e.log_id.index).collect();
    assert_eq!(indexes, vec![2, 3, 4, 5]);
    let EntryPayload::Normal(cmd) = &got[2].payload else {
        panic!("entry 4 holds a command, got {:?}", got[2].payload);
    };
    assert!(matches!(&entries[3].payload, EntryPayload::Normal(c) if c == cmd));

    let (applied, stored_membership) = sm.applied_state().await?;
    assert_eq!(applied, Some(log_id(2, 4)));
    assert_eq!(stored_membership.membership(), &membership);
    assert_eq!(sm.state(), &expected_state);
    assert_eq!(*sm.subscribe().borrow(), expected_state);
    let snap = sm
        .get_current_snapshot()
        .await?
        .ok_or_else(|| anyhow::anyhow!("the snapshot survives a reopen"))?;
    assert_eq!(snap.meta.last_log_id, Some(log_id(2, 4)));
    let restored: ClusterState = {
        // The snapshot's data installs into a fresh state machine as the same state.
        let other = TempDir::new()?;
        let (_log2, mut sm2) = open_storage(other.path())?;
        let mut buf = sm2.begin_receiving_snapshot().await?;
        *buf = *snap.snapshot;
        sm2.install_snapshot(&snap.meta, buf).await?;
        sm2.state().clone()
    };
    assert_eq!(restored, expected_state);
    Ok(())
}

#[test]
fn a_second_open_of_the_same_directory_fails_cleanly() -> anyhow::Result<()> {
    let dir = TempDir::new()?;
    let _held = open_storage(dir.path())?;
    let err = open_storage(dir.path()).expect_err("redb locks the file");
    assert!(err.to_string().contains("raft.redb"), "{err}");
    Ok(())
}
