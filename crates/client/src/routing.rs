//! Routing by the partition table: each keyed request goes to its partition's owner.
//!
//! - The table (`ClusterInfo`) is fetched from a node on first use and cached with its
//!   epoch; every request carries that epoch.
//! - A node that does not own the key answers `not_owner` (with the owner and epoch),
//!   one that has a newer table answers `stale_epoch`, one that is handing the partition
//!   over answers `unavailable` with a retry hint. The client then refreshes its table
//!   (from any node) and sends again, until `request_timeout` passes. None of these
//!   answers means the request applied, so resending is safe for every operation. An
//!   owner that cannot be reached at all is treated the same way (its partitions are
//!   re-placed once the cluster marks it down).
//!   Since every request carries the epoch, a table change reaches a busy client with
//!   its next request, not by polling.
//! - Batches (`get_many`, `set_many`) are split by owner, sent concurrently, and
//!   reassembled in request order; `purge` goes to every member.
//! - A one-node table (a standalone node) is served on the first connection as before.
//! - One connection per node, opened on first use over the client's socket.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringcache_placement::partition_for;
use ringcache_proto::{
    ClusterInfo, Epoch, ErrorCode, NodeId, Op, OpRef, RequestMode, RequestRef, Response, SetItem,
};

use crate::client::Client;
use crate::error::{Error, Result};

/// The cached table and the per-node clients.
#[derive(Debug, Default)]
pub(crate) struct Routes {
    table: std::sync::RwLock<Option<Arc<ClusterInfo>>>,
    nodes: std::sync::Mutex<HashMap<NodeId, Client>>,
    refresh: tokio::sync::Mutex<()>,
}

impl Routes {
    /// The per-node clients, removed (to close them).
    pub(crate) fn take_nodes(&self) -> Vec<Client> {
        self.nodes
            .lock()
            .unwrap_or_else(poisoned)
            .drain()
            .map(|(_, c)| c)
            .collect()
    }
}

fn poisoned<T>(e: std::sync::PoisonError<T>) -> T {
    e.into_inner()
}

/// Answers that say "ask someone else, or again".
fn reroute(e: &Error) -> Option<Duration> {
    match e {
        Error::Server(w) => match w.code {
            ErrorCode::NotOwner | ErrorCode::StaleEpoch => Some(Duration::ZERO),
            ErrorCode::Unavailable => Some(Duration::from_millis(
                w.hints.retry_after_ms.map_or(50, u64::from),
            )),
            _ => None,
        },
        _ => None,
    }
}

enum Target<'a> {
    /// Any node (admin, stats, ping).
    Any,
    /// The owner of this key.
    Key(&'a str, &'a [u8]),
    /// Split by owner.
    Batch,
    /// Every member.
    All,
}

fn target(op: &Op) -> Target<'_> {
    match op {
        Op::With { op, .. } => target(op),
        Op::Get { ns, key }
        | Op::Set { ns, key, .. }
        | Op::Delete { ns, key, .. }
        | Op::Exists { ns, key }
        | Op::Touch { ns, key, .. }
        | Op::Increment { ns, key, .. } => Target::Key(ns, key),
        Op::GetMany { .. } | Op::SetMany { .. } => Target::Batch,
        Op::Purge { .. } => Target::All,
        _ => Target::Any,
    }
}

impl Client {
    /// Sends `op` where the table says it belongs.
    pub(crate) async fn routed(&self, op: Op) -> Result<Response> {
        match target(&op) {
            Target::Any => self.send(anywhere(&op)).await.and_then(into_result),
            Target::Key(ns, key) => self.keyed(ns, key, OpRef::from(&op)).await,
            Target::Batch => match op {
                Op::With { mode, op } => self.batch(*op, Some(mode)).await,
                op => self.batch(op, None).await,
            },
            Target::All => self.everywhere(op).await,
        }
    }

    /// As [`Client::routed`] for a GET or SET given by borrowed parts (a single key).
    pub(crate) async fn routed_ref(&self, op: OpRef<'_>) -> Result<Response> {
        match op {
            OpRef::Get { ns, key } | OpRef::Set { ns, key, .. } => self.keyed(ns, key, op).await,
            OpRef::Op(op) => self.routed(op.clone()).await,
        }
    }

    /// The cached table, fetched if there is none.
    async fn table(&self) -> Result<Arc<ClusterInfo>> {
        if let Some(t) = self.routes().table.read().unwrap_or_else(poisoned).clone() {
            return Ok(t);
        }
        self.refresh_table(Epoch(0)).await
    }

    /// Fetches the table unless one newer than `seen` arrived meanwhile.
    async fn refresh_table(&self, seen: Epoch) -> Result<Arc<ClusterInfo>> {
        let _one = self.routes().refresh.lock().await;
        if let Some(t) = self.routes().table.read().unwrap_or_else(poisoned).clone()
            && t.epoch > seen
        {
            return Ok(t);
        }
        let mut last = None;
        let mut best: Option<ClusterInfo> = None;
        // This client's own node first, then every member it has a connection to, then
        // the other members of the table, until one has a table newer than `seen` (a
        // member cut off from the cluster still answers with the table it had; the
        // newest table any member has is the best one).
        let connected: Vec<(NodeId, Client)> = self
            .routes()
            .nodes
            .lock()
            .unwrap_or_else(poisoned)
            .iter()
            .map(|(id, c)| (*id, c.clone()))
            .collect();
        let mut found = false;
        for c in std::iter::once(self.clone()).chain(connected.iter().map(|(_, c)| c.clone())) {
            if self.ask_table(&c, seen, &mut best, &mut last).await {
                found = true;
                break;
            }
        }
        let fallback = best.clone().or_else(|| {
            self.routes()
                .table
                .read()
                .unwrap_or_else(poisoned)
                .as_deref()
                .cloned()
        });
        if !found && let Some(table) = fallback {
            for m in &table.members {
                if connected.iter().any(|(id, _)| *id == m.id) {
                    continue;
                }
                match self.node(&table, m.id).await {
                    Ok(c) => {
                        if self.ask_table(&c, seen, &mut best, &mut last).await {
                            break;
                        }
                    }
                    Err(e) => {
                        self.forget(m.id);
                        last = Some(e);
                    }
                }
            }
        }
        if let Some(info) = best {
            let info = Arc::new(info);
            *self.routes().table.write().unwrap_or_else(poisoned) = Some(Arc::clone(&info));
            return Ok(info);
        }
        Err(last.unwrap_or_else(|| Error::Protocol("no node to ask for the table".into())))
    }

    /// Asks `c` for its table; keeps it in `best` if newer than what `best` holds, and
    /// returns whether it is newer than `seen`.
    async fn ask_table(
        &self,
        c: &Client,
        seen: Epoch,
        best: &mut Option<ClusterInfo>,
        last: &mut Option<Error>,
    ) -> bool {
        match c.send(anywhere(&Op::ClusterInfo)).await {
            Ok(Response::ClusterInfo(info)) if info.epoch.0 > 0 && !info.owners.is_empty() => {
                let newer = info.epoch > seen;
                if best.as_ref().is_none_or(|b| info.epoch > b.epoch) {
                    *best = Some(info);
                }
                newer
            }
            Ok(Response::ClusterInfo(_)) => {
                *last = Some(Error::Server(ringcache_proto::WireError::new(
                    ErrorCode::Unavailable,
                    "the cluster has no partition table yet",
                )));
                false
            }
            Ok(other) => {
                *last = Some(Error::Protocol(format!(
                    "cluster info answered with {other:?}"
                )));
                false
            }
            Err(e) => {
                *last = Some(e);
                false
            }
        }
    }

    /// The client for `node` (this one when it is the only member or unknown).
    async fn node(&self, table: &ClusterInfo, node: NodeId) -> Result<Client> {
        if table.members.len() <= 1 {
            return Ok(self.clone());
        }
        if let Some(c) = self
            .routes()
            .nodes
            .lock()
            .unwrap_or_else(poisoned)
            .get(&node)
        {
            return Ok(c.clone());
        }
        let Some(addr) = table
            .members
            .iter()
            .find(|m| m.id == node)
            .map(|m| m.addr.clone())
        else {
            return Ok(self.clone());
        };
        let c = self.sibling(&addr).await?;
        self.routes()
            .nodes
            .lock()
            .unwrap_or_else(poisoned)
            .insert(node, c.clone());
        Ok(c)
    }

    fn forget(&self, node: NodeId) {
        self.routes()
            .nodes
            .lock()
            .unwrap_or_else(poisoned)
            .remove(&node);
    }

    /// Sends to the owner of `key` until it answers something other than a routing
    /// error, or the request timeout passes.
    async fn keyed(&self, ns: &str, key: &[u8], op: OpRef<'_>) -> Result<Response> {
        let deadline = Instant::now() + self.config().request_timeout;
        loop {
            let table = self.table().await?;
            // One member (a standalone node) owns everything: no need to hash the key.
            let owner = if table.members.len() <= 1 {
                table.members.first().map_or(NodeId(0), |m| m.id)
            } else {
                owner_of(&table, ns, key)
            };
            let req = RequestRef {
                epoch: table.epoch,
                op,
            };
            let result = match self.node(&table, owner).await {
                Ok(c) => c.send(req).await.and_then(into_result),
                Err(e) => {
                    self.forget(owner);
                    Err(e)
                }
            };
            let wait = match &result {
                // The owner cannot be reached: the table may be about to place its
                // partitions elsewhere (a dead node is marked down), so ask again.
                Err(Error::Connect { .. }) => Some(Duration::from_millis(100)),
                Err(e) => reroute(e),
                Ok(_) => None,
            };
            let Some(wait) = wait else { return result };
            if Instant::now() + wait >= deadline {
                return result;
            }
            tokio::time::sleep(wait).await;
            let _ = self.refresh_table(table.epoch).await;
        }
    }

    /// Splits a batch by owner; per-owner parts are routed like single keys.
    async fn batch(&self, op: Op, mode: Option<RequestMode>) -> Result<Response> {
        let wrap = |op: Op| match mode {
            Some(mode) => Op::With {
                mode,
                op: Box::new(op),
            },
            None => op,
        };
        let table = self.table().await?;
        if table.members.len() <= 1 {
            return self.keyed_batch(wrap(op)).await;
        }
        match op {
            Op::GetMany { ns, keys } => {
                let mut groups: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
                for (i, k) in keys.iter().enumerate() {
                    groups.entry(owner_of(&table, &ns, k)).or_default().push(i);
                }
                let parts = groups.into_values().map(|idx| {
                    let op = wrap(Op::GetMany {
                        ns: ns.clone(),
                        keys: idx.iter().map(|&i| keys[i].clone()).collect(),
                    });
                    async move { (idx, self.keyed_batch(op).await) }
                });
                let mut out = vec![None; keys.len()];
                for (idx, r) in futures::future::join_all(parts).await {
                    let Response::Values(values) = r? else {
                        return Err(Error::Protocol(
                            "get_many part answered with something else".into(),
                        ));
                    };
                    for (i, v) in idx.into_iter().zip(values) {
                        out[i] = v;
                    }
                }
                Ok(Response::Values(out))
            }
            Op::SetMany { ns, items } => {
                let mut groups: BTreeMap<NodeId, Vec<usize>> = BTreeMap::new();
                for (i, it) in items.iter().enumerate() {
                    groups
                        .entry(owner_of(&table, &ns, &it.key))
                        .or_default()
                        .push(i);
                }
                let parts = groups.into_values().map(|idx| {
                    let op = Op::SetMany {
                        ns: ns.clone(),
                        items: idx
                            .iter()
                            .map(|&i| items[i].clone())
                            .collect::<Vec<SetItem>>(),
                    };
                    async move { (idx, self.keyed_batch(op).await) }
                });
                let mut out: Vec<Option<std::result::Result<u64, ringcache_proto::WireError>>> =
                    vec![None; items.len()];
                for (idx, r) in futures::future::join_all(parts).await {
                    let Response::StoredMany(results) = r? else {
                        return Err(Error::Protocol(
                            "set_many part answered with something else".into(),
                        ));
                    };
                    for (i, v) in idx.into_iter().zip(results) {
                        out[i] = Some(v);
                    }
                }
                Ok(Response::StoredMany(out.into_iter().flatten().collect()))
            }
            other => self.keyed_batch(wrap(other)).await,
        }
    }

    /// A batch whose keys share one owner (by the table it was split with): routed by
    /// its first key; a table change meanwhile re-splits it.
    async fn keyed_batch(&self, op: Op) -> Result<Response> {
        let (inner, mode) = match &op {
            Op::With { mode, op } => (&**op, Some(*mode)),
            other => (other, None),
        };
        let (ns, first) = match inner {
            Op::GetMany { ns, keys } => (ns.clone(), keys.first().map(|k| k.to_vec())),
            Op::SetMany { ns, items } => (ns.clone(), items.first().map(|i| i.key.to_vec())),
            _ => return Err(Error::Protocol("not a batch".into())),
        };
        let Some(first) = first else {
            return self.send(anywhere(&op)).await.and_then(into_result);
        };
        let seen = self.table().await?.epoch;
        match self.keyed(&ns, &first, OpRef::from(&op)).await {
            // Keys that moved apart: split again by the new table.
            Err(e) if reroute(&e).is_some() => {
                let table = self.refresh_table(seen).await?;
                if table.epoch > seen {
                    let op = match op {
                        Op::With { op, .. } => *op,
                        other => other,
                    };
                    Box::pin(self.batch(op, mode)).await
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }

    /// `purge` on every member; the counts add up.
    async fn everywhere(&self, op: Op) -> Result<Response> {
        let table = self.table().await?;
        if table.members.len() <= 1 {
            return self.send(anywhere(&op)).await.and_then(into_result);
        }
        let mut total = 0;
        for m in &table.members {
            let c = self.node(&table, m.id).await?;
            match c.send(anywhere(&op)).await.and_then(into_result)? {
                Response::Purged(n) => total += n,
                other => return Err(Error::Protocol(format!("purge answered with {other:?}"))),
            }
        }
        Ok(Response::Purged(total))
    }
}

/// `op` for any node (epoch 0: not routed by a table).
fn anywhere(op: &Op) -> RequestRef<'_> {
    RequestRef {
        epoch: Epoch(0),
        op: OpRef::from(op),
    }
}

fn owner_of(table: &ClusterInfo, ns: &str, key: &[u8]) -> NodeId {
    let p = partition_for(ns, key, table.partitions);
    table.owners.get(p.0 as usize).copied().unwrap_or(NodeId(0))
}

fn into_result(r: Response) -> Result<Response> {
    match r {
        Response::Error(e) => Err(Error::Server(e)),
        other => Ok(other),
    }
}
