//! Requests and responses.
//!
//! Every key is `(namespace, key bytes)`. Values carry a version the node assigns on
//! every write; conditional writes compare against it. Durations travel as milliseconds.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::{Epoch, NodeId, PartitionId, WireError};

/// A request: the operation and the partition-table epoch the client routed it with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The epoch of the client's partition table; `Epoch(0)` when it has none yet. A node
    /// that does not own the key at its current epoch answers `NotOwner`.
    pub epoch: Epoch,
    /// What to do.
    pub op: Op,
}

/// When a write applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WriteCondition {
    /// Always (an upsert).
    #[default]
    Always,
    /// Only if the key is absent.
    IfAbsent,
    /// Only if the key's current version is exactly this (compare-and-set).
    IfVersion(u64),
}

/// One item of a [`Op::SetMany`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetItem {
    /// The key.
    pub key: Bytes,
    /// The value.
    pub value: Bytes,
    /// Time to live; `None` for the namespace default.
    pub ttl_ms: Option<u64>,
}

/// An operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Liveness check; answered with [`Response::Pong`].
    Ping,
    /// Read one key.
    Get {
        /// Namespace.
        ns: String,
        /// Key.
        key: Bytes,
    },
    /// Read several keys of one namespace; answers in request order.
    GetMany {
        /// Namespace.
        ns: String,
        /// Keys.
        keys: Vec<Bytes>,
    },
    /// Write one key.
    Set {
        /// Namespace.
        ns: String,
        /// Key.
        key: Bytes,
        /// Value.
        value: Bytes,
        /// Time to live; `None` for the namespace default.
        ttl_ms: Option<u64>,
        /// When the write applies.
        condition: WriteCondition,
    },
    /// Write several keys of one namespace, unconditionally; per-item results.
    SetMany {
        /// Namespace.
        ns: String,
        /// Items.
        items: Vec<SetItem>,
    },
    /// Remove a key.
    Delete {
        /// Namespace.
        ns: String,
        /// Key.
        key: Bytes,
        /// Only if the current version is this one.
        if_version: Option<u64>,
    },
    /// Whether a key is present (not an access: no stats, no reordering).
    Exists {
        /// Namespace.
        ns: String,
        /// Key.
        key: Bytes,
    },
    /// Replace a key's TTL (`None`: no expiry).
    Touch {
        /// Namespace.
        ns: String,
        /// Key.
        key: Bytes,
        /// The new time to live.
        ttl_ms: Option<u64>,
    },
    /// Add `delta` to a decimal integer value (an absent key counts as 0).
    Increment {
        /// Namespace.
        ns: String,
        /// Key.
        key: Bytes,
        /// What to add (may be negative).
        delta: i64,
        /// TTL for a key the increment creates.
        ttl_ms: Option<u64>,
    },
    /// Remove every key of a namespace that starts with `prefix`.
    Purge {
        /// Namespace.
        ns: String,
        /// Key prefix (empty: the whole namespace).
        prefix: Bytes,
    },
    /// Counters, for one namespace or all.
    Stats {
        /// Namespace, or `None` for all.
        ns: Option<String>,
    },
    /// The partition table and the members.
    ClusterInfo,
    /// Every namespace with its settings.
    NsList,
    /// One namespace's settings.
    NsShow {
        /// Namespace.
        ns: String,
    },
    /// Creates a namespace at runtime. `config` is the namespace's table in the node
    /// config's TOML schema (`policy = "lru"`, `memory = "64MiB"`, `[store]`, ...); absent
    /// fields take their defaults. Fails if the namespace exists.
    NsCreate {
        /// Namespace.
        ns: String,
        /// Settings, TOML.
        config: String,
    },
    /// Changes a namespace at runtime. `config` is TOML like [`Op::NsCreate`]'s; fields it
    /// names replace the current ones, others are kept.
    NsAlter {
        /// Namespace.
        ns: String,
        /// Changed settings, TOML.
        config: String,
    },
    /// Write-behind queues: depth, age, rates, dead letters.
    WriteBehindStatus {
        /// Namespace, or `None` for every write-behind namespace.
        ns: Option<String>,
    },
    /// Writes every queued write-behind entry now and answers when they are written (or
    /// have failed into retry or the dead-letter list).
    WriteBehindFlush {
        /// Namespace, or `None` for every write-behind namespace.
        ns: Option<String>,
    },
    /// Members, roles, leader, term, epoch, moves: answered by any member.
    ClusterStatus,
    /// Bootstraps a cluster with this node as its only member (once, on a node not yet
    /// in a cluster).
    ClusterInit,
    /// Makes this node (not yet in a cluster) join the cluster of one of `seeds`.
    ClusterJoin {
        /// Addresses (`host:port`) of members.
        seeds: Vec<String>,
    },
    /// Moves every partition off `node`, then removes it from the cluster.
    ClusterDrain {
        /// The node.
        node: NodeId,
    },
    /// Removes `node` at once (a dead node); its partitions are placed elsewhere empty.
    ClusterRemove {
        /// The node.
        node: NodeId,
    },
    /// Peer only (node certificates): stop serving `partition` until released or until
    /// `for_ms` passes; answered once every request already running on it is done.
    PartitionFence {
        /// The partition.
        partition: u32,
        /// Longest fence (a crashed mover must not leave it fenced).
        for_ms: u64,
    },
    /// Peer only: entries of `partition` (every namespace), in pages.
    PartitionDump {
        /// The partition.
        partition: u32,
        /// Where the previous page ended (`None`: from the start).
        after: Option<DumpCursor>,
        /// Most entries in this page.
        limit: u32,
    },
    /// Peer only: stores moved entries of `partition` (before this node serves it).
    PartitionLoad {
        /// The partition.
        partition: u32,
        /// The first page of a copy: drop whatever an earlier, abandoned copy left.
        first: bool,
        /// The entries.
        entries: Vec<DumpEntry>,
    },
    /// Peer only: lifts a fence.
    PartitionRelease {
        /// The partition.
        partition: u32,
    },
    /// `op` (a `Get`, `GetMany`, `Set`, `SetMany` or `Delete`) with the namespace's
    /// strategy overridden for this request only.
    With {
        /// The override.
        mode: RequestMode,
        /// The operation.
        op: Box<Op>,
    },
}

/// A per-request override of a namespace's strategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestMode {
    /// Reads: `true` answers a miss as a miss, without loading from the store (on a
    /// read-through namespace).
    pub no_load: bool,
    /// Writes: where this write goes instead of the namespace's `write` setting.
    pub write: Option<WriteOverride>,
}

/// Where one write goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WriteOverride {
    /// The cache only: the store is not touched (warming a cache from a bulk load).
    CacheOnly,
    /// The store first, then the cache, before the ack (a write that must be durable now
    /// on a write-behind namespace).
    WriteThrough,
    /// The store, then the cached copy is dropped.
    WriteAround,
}

/// Where a partition dump page ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpCursor {
    /// Namespace of the last entry sent.
    pub ns: String,
    /// Its key.
    pub key: Bytes,
}

/// One entry of a partition on the move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpEntry {
    /// Namespace.
    pub ns: String,
    /// Key.
    pub key: Bytes,
    /// Value; `None` for a queued delete.
    pub value: Option<Bytes>,
    /// Version.
    pub version: u64,
    /// Time left to live.
    pub ttl_ms: Option<u64>,
    /// A write-behind write not yet in the store: the new owner queues it again.
    pub queued: bool,
}

/// One member as `cluster status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberStatus {
    /// Its id.
    pub id: NodeId,
    /// Its address.
    pub addr: String,
    /// `joining`, `active`, `draining`, `down` or `removed`.
    pub state: String,
    /// `leader`, `voter` or `learner` in the Raft group.
    pub role: String,
    /// Partitions it owns in the current table.
    pub primaries: u32,
    /// Partitions it backs up.
    pub backups: u32,
}

/// A partition move in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoveStatus {
    /// The partition.
    pub partition: u32,
    /// Its owner now (`None`: none alive).
    pub from: Option<NodeId>,
    /// Its next owner.
    pub to: NodeId,
    /// `queued`, `copying`, `done`.
    pub state: String,
    /// Entries copied so far.
    pub entries: u64,
}

/// The cluster as one member sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterStatus {
    /// The answering node.
    pub node: NodeId,
    /// The Raft leader, if known.
    pub leader: Option<NodeId>,
    /// The Raft term.
    pub term: u64,
    /// The committed partition table's epoch (`0`: no table yet).
    pub epoch: Epoch,
    /// Partitions.
    pub partitions: u32,
    /// Replicas per partition.
    pub replication: u32,
    /// Members.
    pub members: Vec<MemberStatus>,
    /// Moves in progress (known on the leader).
    pub moves: Vec<MoveStatus>,
    /// A change of the voting members is under way (a joint configuration).
    pub membership_changing: bool,
}

/// A stored value with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The value.
    pub value: Bytes,
    /// Its version.
    pub version: u64,
    /// Time left to live, `None` without expiry.
    pub ttl_ms: Option<u64>,
}

/// Counters of one namespace on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceStats {
    /// Namespace.
    pub ns: String,
    /// Reads that found a value.
    pub hits: u64,
    /// Reads that found none.
    pub misses: u64,
    /// Entries held.
    pub entries: u64,
    /// Bytes charged (keys, values and per-entry overhead).
    pub used_bytes: u64,
    /// The memory bound.
    pub capacity_bytes: u64,
    /// Evictions to stay within the bound.
    pub evicted: u64,
    /// Removals by expiry.
    pub expired: u64,
    /// Values loaded from the backing store (read-through misses and refreshes).
    pub store_loads: u64,
    /// Backing-store calls that failed (loads and writes, retries included).
    pub store_errors: u64,
    /// Background reloads (refresh-ahead and stale-while-revalidate).
    pub refreshes: u64,
    /// Misses that waited for a load another request had started instead of loading.
    pub coalesced_loads: u64,
}

/// A namespace and its settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// Namespace.
    pub ns: String,
    /// Its complete settings as TOML (the node config's namespace schema), passwords in
    /// store URLs redacted.
    pub config: String,
}

/// A write that the write-behind flusher gave up on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The key.
    pub key: Bytes,
    /// The write's version.
    pub version: u64,
    /// A delete (`true`) or a value.
    pub delete: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last error.
    pub error: String,
}

/// One namespace's write-behind queue on this node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBehindStatus {
    /// Namespace.
    pub ns: String,
    /// Writes queued and not yet written to the store.
    pub depth: u64,
    /// The queue's capacity; writes beyond it get `Backpressure`.
    pub capacity: u64,
    /// Age of the oldest queued write.
    pub oldest_ms: Option<u64>,
    /// Writes acknowledged into the queue since start.
    pub enqueued: u64,
    /// Writes the store applied (or found already applied) since start.
    pub flushed: u64,
    /// Writes merged into a later write to the same key before reaching the store.
    pub coalesced: u64,
    /// Flushed writes per second over the last ten seconds.
    pub flush_rate: u64,
    /// Failed store writes that were scheduled again.
    pub retries: u64,
    /// Whether the queue is also logged to the data directory.
    pub wal: bool,
    /// How many writes are in the dead-letter list.
    pub dead_letter_count: u64,
    /// The dead-letter list (the first 100).
    pub dead_letters: Vec<DeadLetter>,
}

/// A cluster member as the partition table names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its id.
    pub id: NodeId,
    /// Where clients reach it (`host:port`).
    pub addr: String,
}

/// The partition table: who owns what at which epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// The table's epoch.
    pub epoch: Epoch,
    /// The number of partitions (fixed at cluster creation).
    pub partitions: u32,
    /// The members.
    pub members: Vec<Member>,
    /// The owner of each partition, indexed by [`PartitionId`].
    pub owners: Vec<NodeId>,
    /// Each partition's replica set (owner first), indexed by [`PartitionId`].
    pub replicas: Vec<Vec<NodeId>>,
}

impl ClusterInfo {
    /// The owner of `p`, if the table covers it.
    #[must_use]
    pub fn owner(&self, p: PartitionId) -> Option<NodeId> {
        self.owners.get(p.0 as usize).copied()
    }
}

/// A response, matched to its request by the frame's request id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Answer to [`Op::Ping`].
    Pong {
        /// The answering node.
        node: NodeId,
    },
    /// Answer to [`Op::Get`]: `None` on a miss.
    Value(Option<Entry>),
    /// Answer to [`Op::GetMany`], in request order.
    Values(Vec<Option<Entry>>),
    /// Answer to [`Op::Set`]: the version the node assigned.
    Stored {
        /// The new version.
        version: u64,
    },
    /// Answer to [`Op::SetMany`], in request order.
    StoredMany(Vec<Result<u64, WireError>>),
    /// Answer to [`Op::Delete`]: whether a value was removed.
    Deleted(bool),
    /// Answer to [`Op::Exists`].
    Exists(bool),
    /// Answer to [`Op::Touch`]: whether the key existed.
    Touched(bool),
    /// Answer to [`Op::Increment`]: the new value.
    Counter(i64),
    /// Answer to [`Op::Purge`]: how many keys were removed.
    Purged(u64),
    /// Answer to [`Op::Stats`].
    Stats(Vec<NamespaceStats>),
    /// Answer to [`Op::ClusterInfo`].
    ClusterInfo(ClusterInfo),
    /// The request failed.
    Error(WireError),
    /// Answer to the namespace operations (`NsList`, `NsShow`, `NsCreate`, `NsAlter`).
    Namespaces(Vec<NamespaceInfo>),
    /// Answer to [`Op::WriteBehindStatus`] and [`Op::WriteBehindFlush`].
    WriteBehind(Vec<WriteBehindStatus>),
    /// Answer to the cluster operations.
    ClusterStatus(ClusterStatus),
    /// Answer to [`Op::PartitionDump`].
    PartitionChunk {
        /// Entries.
        entries: Vec<DumpEntry>,
        /// Where to continue; `None`: the dump is complete.
        next: Option<DumpCursor>,
    },
    /// Answer to the other partition operations.
    Done,
}
