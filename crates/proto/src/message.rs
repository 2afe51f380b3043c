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
}
