//! Raft storage on redb: the log, the vote and the state machine in one file.
//!
//! `<data dir>/raft.redb` holds three tables:
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `logs` | `u64` log index | an `openraft::Entry<TypeConfig>` |
//! | `meta` | `"format"` | [`FORMAT_VERSION`] as `u32` little endian |
//! | | `"vote"` | the last saved `Vote` |
//! | | `"committed"` | the last saved committed `LogId` |
//! | | `"last_purged"` | the last purged `LogId` |
//! | `state_machine` | `"applied"` | last applied `LogId`, last membership, [`ClusterState`] |
//! | | `"snapshot"` | the current snapshot: its meta and its data (an encoded [`ClusterState`]) |
//!
//! Values are encoded by `codec` (bincode). Every write is one redb transaction run on
//! a blocking thread. Log appends, truncations, purges, votes, snapshots and snapshot
//! installs commit with [`Durability::Immediate`] (redb fsyncs before `commit` returns),
//! so openraft's "flushed" callback and vote persistence mean what Raft needs. Applying
//! entries and saving the committed index commit with [`Durability::None`]: both can be
//! recomputed (openraft re-applies committed entries from the log at startup), and the
//! next immediate commit makes them durable too. A crash therefore loses at most some
//! applied-but-not-yet-durable progress of the state machine, never a log entry or a
//! vote that openraft was told is stored.

use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, EntryPayload, LogState, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    StorageIOError,
};
use redb::{Durability, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::codec::{self, FORMAT_VERSION};
use crate::error::{ClusterError, StoreError};
use crate::state::{ClusterState, CommandResult};
use crate::types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig, Vote,
};

const LOGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("logs");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const SM: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("state_machine");

const KEY_FORMAT: &str = "format";
const KEY_VOTE: &str = "vote";
const KEY_COMMITTED: &str = "committed";
const KEY_LAST_PURGED: &str = "last_purged";
const KEY_APPLIED: &str = "applied";
const KEY_SNAPSHOT: &str = "snapshot";

/// The database file's name inside the data directory.
pub const DB_FILE: &str = "raft.redb";

/// The open database, shared by the log store, its readers and the state machine.
struct Db {
    db: redb::Database,
    /// Dropped with the last reference: lets [`crate::Cluster::shutdown`] wait until the
    /// file is closed, so the directory can be opened again at once.
    _closed: watch::Sender<()>,
}

/// What the state machine persists after applying.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Applied {
    last_applied: Option<LogId>,
    last_membership: StoredMembership,
    state: ClusterState,
}

/// A stored snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta,
    data: Vec<u8>,
}

fn io_err(verb: impl FnOnce(AnyError) -> StorageIOError<u64>, e: &StoreError) -> StorageError {
    StorageError::IO {
        source: verb(AnyError::new(e)),
    }
}

fn read_err(e: impl Into<StoreError>) -> StorageError {
    io_err(StorageIOError::read, &e.into())
}

fn write_err(e: impl Into<StoreError>) -> StorageError {
    io_err(StorageIOError::write, &e.into())
}

/// Opens (creating if needed) the Raft storage in `dir`: its log store and state machine.
///
/// One process may hold a directory at a time (redb locks the file).
///
/// # Errors
/// [`ClusterError::Storage`] if the directory or file cannot be created or opened, or the
/// file has another storage format.
pub fn open_storage(dir: &Path) -> Result<(LogStore, StateMachineStore), ClusterError> {
    let path = dir.join(DB_FILE);
    let fail = |source: StoreError| ClusterError::Storage {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(e.into()))?;
    let db = redb::Database::create(&path).map_err(|e| fail(e.into()))?;
    let applied = init_db(&db).map_err(fail)?;
    let db = Arc::new(Db {
        db,
        _closed: watch::channel(()).0,
    });
    let (state_tx, _) = watch::channel(applied.state.clone());
    Ok((
        LogStore {
            db: db.clone(),
            path: path.clone(),
        },
        StateMachineStore {
            db,
            applied,
            state_tx: Arc::new(state_tx),
            snapshot_seq: 0,
        },
    ))
}

/// Checks or writes the format version, creates the tables, reads the state machine.
fn init_db(db: &redb::Database) -> Result<Applied, StoreError> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let found = meta.get(KEY_FORMAT)?.map(|v| {
            v.value()
                .try_into()
                .map(u32::from_le_bytes)
                .unwrap_or(u32::MAX)
        });
        match found {
            Some(v) if v == FORMAT_VERSION => {}
            Some(found) => {
                return Err(StoreError::Format {
                    found,
                    expected: FORMAT_VERSION,
                });
            }
            None => {
                meta.insert(KEY_FORMAT, FORMAT_VERSION.to_le_bytes().as_slice())?;
            }
        }
        txn.open_table(LOGS)?;
        txn.open_table(SM)?;
    }
    txn.commit()?;
    let read = db.begin_read()?;
    let sm = read.open_table(SM)?;
    match sm.get(KEY_APPLIED)? {
        Some(v) => Ok(codec::decode("state machine", v.value())?),
        None => Ok(Applied::default()),
    }
}

/// Runs `f` in one write transaction on a blocking thread and commits it.
async fn write<R, F>(db: &Arc<Db>, durability: Durability, f: F) -> Result<R, StoreError>
where
    R: Send + 'static,
    F: FnOnce(&WriteTransaction) -> Result<R, StoreError> + Send + 'static,
{
    let db = db.clone();
    tokio::task::spawn_blocking(move || {
        let mut txn = db.db.begin_write()?;
        txn.set_durability(durability)?;
        let r = f(&txn)?;
        txn.commit()?;
        Ok(r)
    })
    .await
    .map_err(|e| StoreError::Task {
        reason: e.to_string(),
    })?
}

/// Reads and decodes one value of a `&str`-keyed table.
fn read_value<T: serde::de::DeserializeOwned>(
    db: &Db,
    table: TableDefinition<'_, &str, &[u8]>,
    key: &str,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    let txn = db.db.begin_read()?;
    let table = txn.open_table(table)?;
    let Some(v) = table.get(key)? else {
        return Ok(None);
    };
    Ok(Some(codec::decode(what, v.value())?))
}

/// Writes one encoded value of a `&str`-keyed table.
async fn write_value<T: Serialize>(
    db: &Arc<Db>,
    durability: Durability,
    table: TableDefinition<'static, &'static str, &'static [u8]>,
    key: &'static str,
    what: &'static str,
    value: &T,
) -> Result<(), StoreError> {
    let bytes = codec::encode(what, value)?;
    write(db, durability, move |txn| {
        txn.open_table(table)?.insert(key, bytes.as_slice())?;
        Ok(())
    })
    .await
}

/// The Raft log and vote (openraft's `RaftLogStorage`), and a reader of the log.
///
/// Cloning gives another handle on the same database (that is what
/// [`RaftLogStorage::get_log_reader`] returns).
#[derive(Clone)]
pub struct LogStore {
    db: Arc<Db>,
    path: PathBuf,
}

impl Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("path", &self.path)
            .finish()
    }
}

impl LogStore {
    /// A receiver whose `changed()` fails once every handle on the database (this log
    /// store, its readers, the state machine, snapshot builders) is dropped.
    pub(crate) fn closed_signal(&self) -> watch::Receiver<()> {
        self.db._closed.subscribe()
    }

    fn last_purged(&self) -> Result<Option<LogId>, StoreError> {
        read_value(&self.db, META, KEY_LAST_PURGED, "last purged log id")
    }
}

/// `range` as `start..end` (end exclusive, `None` = unbounded); `None` if empty.
fn index_bounds<RB: RangeBounds<u64>>(range: &RB) -> Option<(u64, Option<u64>)> {
    let start = match range.start_bound() {
        Bound::Included(&s) => s,
        Bound::Excluded(&s) => s.checked_add(1)?,
        Bound::Unbounded => 0,
    };
    let end = match range.end_bound() {
        Bound::Included(&e) => e.checked_add(1),
        Bound::Excluded(&e) => Some(e),
        Bound::Unbounded => None,
    };
    match end {
        Some(e) if e <= start => None,
        _ => Some((start, end)),
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let Some((start, end)) = index_bounds(&range) else {
            return Ok(Vec::new());
        };
        let txn = self.db.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let iter = match end {
            Some(end) => table.range(start..end),
            None => table.range(start..),
        }
        .map_err(read_err)?;
        let mut out = Vec::new();
        for item in iter {
            let (_, v) = item.map_err(read_err)?;
            out.push(codec::decode::<Entry>("log entry", v.value()).map_err(read_err)?);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged = self.last_purged().map_err(read_err)?;
        let txn = self.db.db.begin_read().map_err(read_err)?;
        let table = txn.open_table(LOGS).map_err(read_err)?;
        let last = match table.last().map_err(read_err)? {
            Some((_, v)) => Some(
                codec::decode::<Entry>("log entry", v.value())
                    .map_err(read_err)?
                    .log_id,
            ),
            None => None,
        };
        Ok(LogState {
            last_log_id: last.or(last_purged),
            last_purged_log_id: last_purged,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        write_value(
            &self.db,
            Durability::Immediate,
            META,
            KEY_VOTE,
            "vote",
            vote,
        )
        .await
        .map_err(|e| io_err(StorageIOError::write_vote, &e))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        read_value(&self.db, META, KEY_VOTE, "vote")
            .map_err(|e| io_err(StorageIOError::read_vote, &e))
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        write_value(
            &self.db,
            Durability::None,
            META,
            KEY_COMMITTED,
            "committed log id",
            &committed,
        )
        .await
        .map_err(write_err)
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(
            read_value::<Option<LogId>>(&self.db, META, KEY_COMMITTED, "committed log id")
                .map_err(read_err)?
                .flatten(),
        )
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let encoded = entries
            .into_iter()
            .map(|e| Ok((e.log_id.index, codec::encode("log entry", &e)?)))
            .collect::<Result<Vec<_>, StoreError>>();
        let res = match encoded {
            Ok(encoded) => {
                write(&self.db, Durability::Immediate, move |txn| {
                    let mut table = txn.open_table(LOGS)?;
                    for (index, bytes) in &encoded {
                        table.insert(*index, bytes.as_slice())?;
                    }
                    Ok(())
                })
                .await
            }
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(io_err(StorageIOError::write_logs, &e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        write(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(LOGS)?
                .retain_in(log_id.index.., |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| io_err(StorageIOError::write_logs, &e))
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = codec::encode("last purged log id", &log_id).map_err(write_err)?;
        write(&self.db, Durability::Immediate, move |txn| {
            txn.open_table(META)?
                .insert(KEY_LAST_PURGED, bytes.as_slice())?;
            txn.open_table(LOGS)?
                .retain_in(..=log_id.index, |_, _| false)?;
            Ok(())
        })
        .await
        .map_err(|e| io_err(StorageIOError::write_logs, &e))
    }
}

/// The state machine (openraft's `RaftStateMachine`): applies [`crate::Command`]s to a
/// [`ClusterState`], persists it, publishes it on a watch channel, and builds and
/// installs snapshots.
pub struct StateMachineStore {
    db: Arc<Db>,
    applied: Applied,
    state_tx: Arc<watch::Sender<ClusterState>>,
    snapshot_seq: u64,
}

impl Debug for StateMachineStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateMachineStore")
            .field("last_applied", &self.applied.last_applied)
            .finish_non_exhaustive()
    }
}

impl StateMachineStore {
    /// The cluster map, updated after every applied batch and installed snapshot.
    pub fn subscribe(&self) -> watch::Receiver<ClusterState> {
        self.state_tx.subscribe()
    }

    /// The cluster map as last applied.
    pub fn state(&self) -> &ClusterState {
        &self.applied.state
    }

    async fn persist(&self, durability: Durability) -> Result<(), StoreError> {
        write_value(
            &self.db,
            durability,
            SM,
            KEY_APPLIED,
            "state machine",
            &self.applied,
        )
        .await
    }
}

/// Builds a snapshot of the state machine as it was when the builder was made.
pub struct SnapshotBuilder {
    db: Arc<Db>,
    applied: Applied,
    seq: u64,
}

impl Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("last_applied", &self.applied.last_applied)
            .finish_non_exhaustive()
    }
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let data = codec::encode("snapshot", &self.applied.state)
            .map_err(|e| io_err(|a| StorageIOError::write_snapshot(None, a), &e.into()))?;
        let index = self
            .applied
            .last_applied
            .map_or_else(|| "none".to_owned(), |l| l.index.to_string());
        let meta = SnapshotMeta {
            last_log_id: self.applied.last_applied,
            last_membership: self.applied.last_membership.clone(),
            snapshot_id: format!("{index}-{}", self.seq),
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: data.clone(),
        };
        write_value(
            &self.db,
            Durability::Immediate,
            SM,
            KEY_SNAPSHOT,
            "snapshot",
            &stored,
        )
        .await
        .map_err(|e| {
            io_err(
                |a| StorageIOError::write_snapshot(Some(meta.signature()), a),
                &e,
            )
        })?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((
            self.applied.last_applied,
            self.applied.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut results = Vec::new();
        for entry in entries {
            self.applied.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Applied,
                EntryPayload::Normal(cmd) => self.applied.state.apply(&cmd),
                EntryPayload::Membership(m) => {
                    self.applied.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::Applied
                }
            };
            results.push(result);
        }
        if results.is_empty() {
            return Ok(results);
        }
        self.persist(Durability::None)
            .await
            .map_err(|e| io_err(StorageIOError::write_state_machine, &e))?;
        self.state_tx.send_replace(self.applied.state.clone());
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshot_seq += 1;
        SnapshotBuilder {
            db: self.db.clone(),
            applied: self.applied.clone(),
            seq: self.snapshot_seq,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let data = snapshot.into_inner();
        let snapshot_err = |e: StoreError| {
            io_err(
                |a| StorageIOError::read_snapshot(Some(meta.signature()), a),
                &e,
            )
        };
        let state: ClusterState =
            codec::decode("snapshot", &data).map_err(|e| snapshot_err(e.into()))?;
        let applied = Applied {
            last_applied: meta.last_log_id,
            last_membership: meta.last_membership.clone(),
            state,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data,
        };
        let applied_bytes =
            codec::encode("state machine", &applied).map_err(|e| snapshot_err(e.into()))?;
        let snapshot_bytes =
            codec::encode("snapshot", &stored).map_err(|e| snapshot_err(e.into()))?;
        write(&self.db, Durability::Immediate, move |txn| {
            let mut sm = txn.open_table(SM)?;
            sm.insert(KEY_APPLIED, applied_bytes.as_slice())?;
            sm.insert(KEY_SNAPSHOT, snapshot_bytes.as_slice())?;
            Ok(())
        })
        .await
        .map_err(snapshot_err)?;
        self.applied = applied;
        self.state_tx.send_replace(self.applied.state.clone());
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let stored: Option<StoredSnapshot> = read_value(&self.db, SM, KEY_SNAPSHOT, "snapshot")
            .map_err(|e| io_err(|a| StorageIOError::read_snapshot(None, a), &e))?;
        Ok(stored.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Bound;

    use super::index_bounds;

    #[test]
    fn bounds() {
        assert_eq!(index_bounds(&(3..7)), Some((3, Some(7))));
        assert_eq!(index_bounds(&(3..=7)), Some((3, Some(8))));
        assert_eq!(index_bounds(&(3..)), Some((3, None)));
        assert_eq!(index_bounds(&(..)), Some((0, None)));
        assert_eq!(
            index_bounds(&(Bound::Included(7), Bound::Excluded(3))),
            None
        );
        assert_eq!(index_bounds(&(3..3)), None);
        assert_eq!(index_bounds(&(0..=u64::MAX)), Some((0, None)));
    }
}
