//! Requests to responses: the node's data operations over its keyspace.
//!
//! Synchronous and fast (engine calls only); the connection task calls it inline for
//! every decoded frame. Every failure becomes a [`WireError`] with a code and a message
//! naming what was wrong; nothing here panics on input.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ringcache_engine::{Condition, EntryView, InsertError, InsertOptions};
use ringcache_placement::partition_for;
use ringcache_proto::{
    ClusterInfo, Entry, Epoch, ErrorCode, Hints, Limits, Member, NamespaceStats, NodeId, Op,
    Request, Response, SetItem, WireError, WriteCondition,
};

use crate::keyspace::{Keyspace, Namespace, Partition};

/// Attempts of an increment's read-modify-write before giving up under contention.
const INCREMENT_ATTEMPTS: usize = 64;

/// Serves requests from a [`Keyspace`].
#[derive(Debug, Clone)]
pub struct Handler {
    keyspace: Arc<Keyspace>,
    limits: Limits,
    node: NodeId,
    advertise: String,
}

fn err(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn entry(v: EntryView) -> Entry {
    Entry {
        value: v.value,
        version: v.version,
        ttl_ms: v.expires_in.map(ms),
    }
}

impl Handler {
    /// A handler for `keyspace`, answering as node `node` reachable at `advertise`.
    #[must_use]
    pub fn new(keyspace: Arc<Keyspace>, limits: Limits, node: NodeId, advertise: String) -> Self {
        Self {
            keyspace,
            limits,
            node,
            advertise,
        }
    }

    /// The limits requests are checked against.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Answers one request.
    #[must_use]
    pub fn handle(&self, req: Request) -> Response {
        if let Err(e) = self.limits.check(&req.op) {
            return Response::Error(e);
        }
        match self.dispatch(req.op) {
            Ok(r) => r,
            Err(e) => Response::Error(e),
        }
    }

    fn ns(&self, name: &str) -> Result<&Arc<Namespace>, WireError> {
        self.keyspace.namespace(name).ok_or_else(|| {
            err(
                ErrorCode::UnknownNamespace,
                format!("unknown namespace {name:?}"),
            )
        })
    }

    fn part<'a>(&self, ns: &'a Namespace, key: &[u8]) -> &'a Partition {
        ns.partition(partition_for(
            &ns.name,
            key,
            self.keyspace.partition_count(),
        ))
    }

    fn dispatch(&self, op: Op) -> Result<Response, WireError> {
        Ok(match op {
            Op::Ping => Response::Pong { node: self.node },
            Op::Get { ns, key } => {
                let ns = self.ns(&ns)?;
                Response::Value(self.part(ns, &key).engine.get_entry(&key).map(entry))
            }
            Op::GetMany { ns, keys } => {
                let ns = self.ns(&ns)?;
                Response::Values(
                    keys.iter()
                        .map(|k| self.part(ns, k).engine.get_entry(k).map(entry))
                        .collect(),
                )
            }
            Op::Set {
                ns,
                key,
                value,
                ttl_ms,
                condition,
            } => {
                let ns = self.ns(&ns)?;
                Response::Stored {
                    version: self.set(ns, &key, value, ttl_ms, condition)?,
                }
            }
            Op::SetMany { ns, items } => {
                let ns = self.ns(&ns)?;
                Response::StoredMany(
                    items
                        .into_iter()
                        .map(|SetItem { key, value, ttl_ms }| {
                            self.set(ns, &key, value, ttl_ms, WriteCondition::Always)
                        })
                        .collect(),
                )
            }
            Op::Delete {
                ns,
                key,
                if_version,
            } => {
                let ns = self.ns(&ns)?;
                let cond = if_version.map_or(Condition::Always, Condition::IfVersion);
                match self.part(ns, &key).engine.remove_if(&key, cond) {
                    Ok(removed) => Response::Deleted(removed.is_some()),
                    Err(e) => return Err(insert_error(e, 0)),
                }
            }
            Op::Exists { ns, key } => {
                let ns = self.ns(&ns)?;
                Response::Exists(self.part(ns, &key).engine.contains(&key))
            }
            Op::Touch { ns, key, ttl_ms } => {
                let ns = self.ns(&ns)?;
                Response::Touched(
                    self.part(ns, &key)
                        .engine
                        .touch(&key, ttl_ms.map(Duration::from_millis)),
                )
            }
            Op::Increment {
                ns,
                key,
                delta,
                ttl_ms,
            } => {
                let ns = self.ns(&ns)?;
                Response::Counter(self.increment(ns, &key, delta, ttl_ms)?)
            }
            Op::Purge { ns, prefix } => {
                let ns = self.ns(&ns)?;
                let removed: usize = ns
                    .partitions()
                    .map(|p| p.engine.retain(|k, _| !k.starts_with(&prefix)))
                    .sum();
                Response::Purged(removed as u64)
            }
            Op::Stats { ns } => {
                let list: Vec<Arc<Namespace>> = match ns {
                    Some(name) => vec![Arc::clone(self.ns(&name)?)],
                    None => self.keyspace.namespaces().cloned().collect(),
                };
                Response::Stats(
                    list.iter()
                        .map(|ns| {
                            let s = ns.stats();
                            NamespaceStats {
                                ns: ns.name.clone(),
                                hits: s.hits,
                                misses: s.misses,
                                entries: s.entries,
                                used_bytes: s.used,
                                capacity_bytes: s.capacity,
                                evicted: s.evicted,
                                expired: s.expired,
                                ..NamespaceStats::default()
                            }
                        })
                        .collect(),
                )
            }
            Op::NsList
            | Op::NsShow { .. }
            | Op::NsCreate { .. }
            | Op::NsAlter { .. }
            | Op::WriteBehindStatus { .. }
            | Op::WriteBehindFlush { .. } => {
                return Err(err(ErrorCode::Unsupported, "not implemented yet"));
            }
            Op::ClusterInfo => {
                let n = self.keyspace.partition_count();
                Response::ClusterInfo(ClusterInfo {
                    // A single node owns everything at the first epoch; the cluster work
                    // replaces this with the committed table.
                    epoch: Epoch(1),
                    partitions: n,
                    members: vec![Member {
                        id: self.node,
                        addr: self.advertise.clone(),
                    }],
                    owners: vec![self.node; n as usize],
                })
            }
        })
    }

    fn set(
        &self,
        ns: &Namespace,
        key: &[u8],
        value: Bytes,
        ttl_ms: Option<u64>,
        condition: WriteCondition,
    ) -> Result<u64, WireError> {
        let part = self.part(ns, key);
        let version = part.next_version();
        let mut opts = InsertOptions::new()
            .version(version)
            .condition(match condition {
                WriteCondition::Always => Condition::Always,
                WriteCondition::IfAbsent => Condition::IfAbsent,
                WriteCondition::IfVersion(v) => Condition::IfVersion(v),
            });
        opts.ttl = ttl_ms.map(Duration::from_millis).or(ns.default_ttl());
        let len = value.len();
        part.engine
            .insert(key, value, &opts)
            .map(|_| version)
            .map_err(|e| insert_error(e, key.len() + len))
    }

    /// Read-modify-write with compare-and-set, retried while other writers interleave.
    fn increment(
        &self,
        ns: &Namespace,
        key: &[u8],
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, WireError> {
        let part = self.part(ns, key);
        for _ in 0..INCREMENT_ATTEMPTS {
            let current = part.engine.peek(key);
            let (old, condition, ttl) = match &current {
                None => (
                    0,
                    Condition::IfAbsent,
                    ttl_ms.map(Duration::from_millis).or(ns.default_ttl()),
                ),
                Some(v) => {
                    let n = std::str::from_utf8(&v.value)
                        .ok()
                        .and_then(|s| s.trim().parse::<i64>().ok())
                        .ok_or_else(|| {
                            err(
                                ErrorCode::NotANumber,
                                "value is not a decimal 64-bit integer",
                            )
                        })?;
                    (n, Condition::IfVersion(v.version), v.expires_in)
                }
            };
            let new = old.checked_add(delta).ok_or_else(|| {
                err(
                    ErrorCode::NotANumber,
                    format!("{old} + {delta} overflows a 64-bit integer"),
                )
            })?;
            let mut opts = InsertOptions::new()
                .version(part.next_version())
                .condition(condition);
            opts.ttl = ttl;
            match part.engine.insert(key, Bytes::from(new.to_string()), &opts) {
                Ok(_) => return Ok(new),
                Err(InsertError::ConditionFailed { .. }) => {}
                Err(e) => return Err(insert_error(e, key.len())),
            }
        }
        Err(err(
            ErrorCode::Backpressure,
            "increment kept racing with other writers; retry",
        )
        .with_hints(Hints {
            retry_after_ms: Some(1),
            ..Hints::default()
        }))
    }
}

fn insert_error(e: InsertError, size: usize) -> WireError {
    match e {
        InsertError::TooLarge { charge, limit } => err(
            ErrorCode::ValueTooLarge,
            format!(
                "entry of {size} bytes ({charge} with overhead) exceeds the partition's memory of {limit} bytes; raise the namespace's memory"
            ),
        ),
        InsertError::NoRoom { pinned, limit, .. } => err(
            ErrorCode::NoRoom,
            format!("{pinned} of {limit} bytes are held by entries not yet written to the store"),
        ),
        InsertError::ConditionFailed { current } => err(
            ErrorCode::ConditionFailed,
            match current {
                Some(v) => format!("condition failed: current version is {v}"),
                None => "condition failed: key is absent".to_owned(),
            },
        )
        .with_hints(Hints {
            current_version: current,
            ..Hints::default()
        }),
        other => err(ErrorCode::Internal, other.to_string()),
    }
}
