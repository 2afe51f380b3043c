//! Requests to responses: the node's data operations over its keyspace.
//!
//! Namespaces without a store are served synchronously (engine calls only): the
//! connection task calls [`Handler::handle`] inline for every decoded frame and gets
//! [`Reply::Ready`]. Requests that wait for a store, a load, a log or an admin change
//! come back as [`Reply::Pending`], a future the connection polls alongside its other
//! requests. Every failure becomes a [`WireError`] with a code and a message naming what
//! was wrong; nothing here panics on input.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ringcache_engine::{Condition, EntryView, InsertError, InsertOptions};
use ringcache_placement::partition_for;
use ringcache_proto::{
    EncodeError, Entry, Epoch, ErrorCode, Hints, Limits, NamespaceInfo, NamespaceStats, NodeId, Op,
    OpRef, PartitionId, Request, RequestId, RequestMode, RequestRef, Response, SetItem, ValueRef,
    WireError, WriteCondition, WriteOverride, encode_value_response, peek_request,
};

use futures::future::BoxFuture;

use crate::control::Control;
use crate::keyspace::{Keyspace, Namespace, NsMemo, Partition};
use crate::routing::{InFlight, Routing, TableMemo};
use crate::strategy::Strategy;

/// Requests whose entries [`Handler::scan_gets`] loads together at most.
pub const PREFETCH_BATCH: usize = 16;

/// A GET or SET read in place from the front of a stream's buffer by
/// [`Handler::scan_gets`], to be answered by [`Handler::handle_scanned`].
#[derive(Debug, Clone, Copy)]
pub struct Scanned<'a> {
    /// The request's id.
    pub id: RequestId,
    /// The request, borrowing the buffer.
    pub req: RequestRef<'a>,
    /// The frame's length: what to advance the buffer by once it is answered.
    pub len: usize,
    /// The key's partition, when the scan computed it (to prefetch its entry), so that
    /// the answer does not hash the key again.
    partition: Option<PartitionId>,
}

/// The GETs and SETs at the front of a stream's buffer, at most [`PREFETCH_BATCH`], in
/// order; see [`Handler::scan_gets`]. Filled in place (it is over a kilobyte: moving
/// it would copy all of it).
#[derive(Debug)]
pub struct ScanBatch<'a> {
    items: [Option<Scanned<'a>>; PREFETCH_BATCH],
    len: usize,
}

impl Default for ScanBatch<'_> {
    fn default() -> Self {
        Self {
            items: [None; PREFETCH_BATCH],
            len: 0,
        }
    }
}

impl<'a> ScanBatch<'a> {
    /// How many requests the scan read.
    #[must_use]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer starts with anything but a complete GET or SET.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The requests, in stream order.
    pub fn iter(&self) -> impl Iterator<Item = &Scanned<'a>> {
        self.items[..self.len].iter().flatten()
    }

    /// How many bytes the requests take at the front of the buffer.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.iter().map(|s| s.len).sum()
    }
}

/// What one request stream remembers between requests so the next needs no shared
/// lock: its last namespace and the partition table (see [`Handler::handle_scanned`]).
#[derive(Debug, Default)]
pub struct StreamMemo {
    ns: NsMemo,
    table: TableMemo,
}

/// An answer now, or one to wait for.
pub enum Reply {
    /// The response.
    Ready(Response),
    /// A response that needs the store, a load or the log.
    Pending(BoxFuture<'static, Response>),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Self::Pending(_) => f.write_str("Pending"),
        }
    }
}

impl Reply {
    /// Waits for the response (tests and tools; the connection polls instead).
    pub async fn wait(self) -> Response {
        match self {
            Self::Ready(r) => r,
            Self::Pending(f) => f.await,
        }
    }
}

fn pending(
    f: impl std::future::Future<Output = Result<Response, WireError>> + Send + 'static,
) -> Reply {
    Reply::Pending(Box::pin(
        async move { f.await.unwrap_or_else(Response::Error) },
    ))
}

/// The partition of a single-key request when already computed (in a cluster, admission
/// hashes the key; the lookup reuses it).
type Known = Option<PartitionId>;

/// The partitions a request is counted in until answered (one without an allocation:
/// most requests name one key).
enum Admitted {
    One(Option<InFlight>),
    Many(Vec<InFlight>),
}

impl Admitted {
    fn is_empty(&self) -> bool {
        match self {
            Admitted::One(g) => g.is_none(),
            Admitted::Many(v) => v.is_empty(),
        }
    }
}

/// Attempts of an increment's read-modify-write before giving up under contention.
const INCREMENT_ATTEMPTS: usize = 64;

/// Serves requests from a [`Keyspace`].
#[derive(Debug, Clone)]
pub struct Handler {
    keyspace: Arc<Keyspace>,
    limits: Limits,
    node: NodeId,
    routing: Arc<Routing>,
    control: Option<Arc<Control>>,
    /// The connection presented a node certificate (peer-only operations allowed).
    peer: bool,
    domain: Arc<str>,
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
        let routing = Arc::new(Routing::standalone(
            node,
            advertise,
            keyspace.partition_count(),
        ));
        Self {
            keyspace,
            limits,
            node,
            routing,
            control: None,
            peer: false,
            domain: Arc::from("ringcache.local"),
        }
    }

    /// The cluster's certificate domain (for telling node certificates apart).
    #[must_use]
    pub fn with_domain(mut self, domain: &str) -> Self {
        self.domain = Arc::from(domain);
        self
    }

    /// The cluster's certificate domain.
    #[must_use]
    pub fn cluster_domain(&self) -> &str {
        &self.domain
    }

    /// A handler for a cluster member: requests are checked against `routing`, cluster
    /// operations go to `control`.
    #[must_use]
    pub fn clustered(
        keyspace: Arc<Keyspace>,
        limits: Limits,
        node: NodeId,
        routing: Arc<Routing>,
        control: Arc<Control>,
    ) -> Self {
        Self {
            keyspace,
            limits,
            node,
            routing,
            control: Some(control),
            peer: false,
            domain: Arc::from("ringcache.local"),
        }
    }

    /// This handler for one connection; `peer`: it presented a node certificate.
    #[must_use]
    pub fn for_connection(&self, peer: bool) -> Self {
        Self {
            peer,
            ..self.clone()
        }
    }

    /// Ownership and fences.
    #[must_use]
    pub fn routing(&self) -> &Arc<Routing> {
        &self.routing
    }

    /// The control plane, on a cluster member.
    #[must_use]
    pub fn control(&self) -> Option<&Arc<Control>> {
        self.control.as_ref()
    }

    /// The keyspace served.
    #[must_use]
    pub fn keyspace(&self) -> &Arc<Keyspace> {
        &self.keyspace
    }

    /// The limits requests are checked against.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Answers one request, now or later.
    #[must_use]
    pub fn handle(&self, req: Request) -> Reply {
        if let Err(e) = self.limits.check(&req.op) {
            return Reply::Ready(Response::Error(e));
        }
        let (admitted, known) = match self.admit(&req.op, req.epoch) {
            Ok(a) => a,
            Err(e) => return Reply::Ready(Response::Error(e)),
        };
        match self.route(req.op, known) {
            // The request stays counted in its partitions until answered.
            Ok(Reply::Pending(f)) if !admitted.is_empty() => Reply::Pending(Box::pin(async move {
                let r = f.await;
                drop(admitted);
                r
            })),
            Ok(r) => r,
            Err(e) => Reply::Ready(Response::Error(e)),
        }
    }

    /// Answers a request [`Handler::scan_gets`] read in place from the stream's buffer.
    /// A GET or SET on a namespace without a store is served here without building a
    /// [`Request`]: a GET's answer is encoded into `out` straight from the engine's copy
    /// of the value (`None` returned: nothing left to do). Anything else is answered as
    /// [`Handler::handle`] answers it. Checks, errors and their order are those of
    /// [`Handler::handle`]. The key is hashed for its partition only if the scan did
    /// not already.
    #[must_use]
    pub fn handle_scanned(
        &self,
        scanned: &Scanned<'_>,
        memo: &mut StreamMemo,
        max_frame: u32,
        out: &mut BytesMut,
    ) -> Option<Reply> {
        let Scanned {
            id, req, partition, ..
        } = *scanned;
        let (OpRef::Get { ns, key } | OpRef::Set { ns, key, .. }) = req.op else {
            return Some(self.handle_owned(req));
        };
        if let Err(e) = self.limits.check_ref(req.op) {
            return Some(Reply::Ready(Response::Error(e)));
        }
        let count = self.keyspace.partition_count();
        let p = partition.unwrap_or_else(|| partition_for(ns, key, count));
        debug_assert_eq!(p, partition_for(ns, key, count), "a stale partition hint");
        let admitted = match self.routing.admit_scoped(p, req.epoch, &mut memo.table) {
            Ok(a) => a,
            Err(e) => return Some(Reply::Ready(Response::Error(e))),
        };
        let Some(namespace) = self.keyspace.namespace_memo(ns, &mut memo.ns) else {
            return Some(Reply::Ready(Response::Error(unknown_namespace(ns))));
        };
        if namespace.strategy.is_some() {
            drop(admitted);
            return Some(self.handle_owned(req));
        }
        let part = namespace.partition(p);
        let response = match req.op {
            OpRef::Set {
                value,
                ttl_ms,
                condition,
                ..
            } => match self.set(
                namespace,
                part,
                key,
                Bytes::copy_from_slice(value),
                ttl_ms,
                condition,
            ) {
                Ok(version) => Response::Stored { version },
                Err(e) => Response::Error(e),
            },
            _ => {
                let written = part
                    .engine
                    .get_entry_with(key, |e| {
                        let entry = ValueRef {
                            value: e.value,
                            version: e.version,
                            ttl_ms: e.expires_in.map(ms),
                        };
                        encode_value_response(id, Some(entry), max_frame, out)
                    })
                    .unwrap_or_else(|| encode_value_response(id, None, max_frame, out));
                match written {
                    Ok(()) => return None,
                    Err(e) => Response::Error(encode_error(&e)),
                }
            }
        };
        Some(Reply::Ready(response))
    }

    /// Reads the GETs and SETs at the front of `buf` (up to [`PREFETCH_BATCH`], one
    /// namespace: the run ends at anything else, at an incomplete frame, or where the
    /// namespace changes) for [`Handler::handle_scanned`] to answer in order, and starts
    /// loading their engine entries into the CPU caches. Over a keyspace much larger
    /// than the caches each request would otherwise wait on memory three or four times
    /// in a row (table, record, value; a SET reads the record and frees the old value),
    /// one request after the other; here the waits of the batch overlap (three passes:
    /// the table lines, the records, the values; see `Engine::prefetch_entry`). The
    /// partitions computed for that are kept with the requests, so each key is hashed
    /// for its partition once.
    ///
    /// Fills `batch` (whatever it held is dropped). Empty when `buf` does not start
    /// with a complete GET or SET: the caller decodes
    /// (and answers or reports) that frame another way. Changes nothing; a lone request
    /// (depth 1) is not prefetched, since nothing would overlap.
    pub fn scan_gets<'a>(
        &self,
        buf: &'a [u8],
        memo: &mut StreamMemo,
        max_frame: u32,
        batch: &mut ScanBatch<'a>,
    ) {
        batch.len = 0;
        let mut keys: [&[u8]; PREFETCH_BATCH] = [&[]; PREFETCH_BATCH];
        let mut at = 0;
        let mut batch_ns = None;
        while batch.len < PREFETCH_BATCH {
            let Some((id, req, len)) = peek_request(&buf[at..], max_frame) else {
                break;
            };
            // `peek_request` reads GETs and SETs only.
            let (OpRef::Get { ns, key } | OpRef::Set { ns, key, .. }) = req.op else {
                break;
            };
            if *batch_ns.get_or_insert(ns) != ns {
                break;
            }
            keys[batch.len] = key;
            batch.items[batch.len] = Some(Scanned {
                id,
                req,
                len,
                partition: None,
            });
            batch.len += 1;
            at += len;
        }
        let Some(ns) = batch_ns.filter(|_| batch.len >= 2) else {
            return;
        };
        let Some(namespace) = self.keyspace.namespace_memo(ns, &mut memo.ns) else {
            return;
        };
        let count = self.keyspace.partition_count();
        let mut placed = [None; PREFETCH_BATCH];
        let items = batch.items[..batch.len].iter_mut().flatten();
        for ((item, &key), slot) in items.zip(&keys).zip(&mut placed) {
            let p = partition_for(ns, key, count);
            item.partition = Some(p);
            let engine = &namespace.partition(p).engine;
            *slot = Some((engine, key, engine.prefetch_table(key)));
        }
        for &(engine, _, h) in placed.iter().flatten() {
            engine.prefetch_entry(h);
        }
        for &(engine, key, h) in placed.iter().flatten() {
            engine.prefetch_value(key, h);
        }
    }

    fn handle_owned(&self, req: RequestRef<'_>) -> Reply {
        self.handle(Request {
            epoch: req.epoch,
            op: req.op.to_op(),
        })
    }

    /// Checks that this node serves every partition the request touches; also returns
    /// a single-key request's partition, so it is hashed once per request.
    fn admit(&self, op: &Op, epoch: Epoch) -> Result<(Admitted, Known), WireError> {
        if !self.routing.is_clustered() {
            return Ok((Admitted::One(None), None));
        }
        let n = self.keyspace.partition_count();
        let op = match op {
            Op::With { op, .. } => &**op,
            other => other,
        };
        let mut parts: Vec<PartitionId> = match op {
            Op::Get { ns, key }
            | Op::Set { ns, key, .. }
            | Op::Delete { ns, key, .. }
            | Op::Exists { ns, key }
            | Op::Touch { ns, key, .. }
            | Op::Increment { ns, key, .. } => {
                let p = partition_for(ns, key, n);
                return Ok((Admitted::One(self.routing.admit(p, epoch)?), Some(p)));
            }
            Op::GetMany { ns, keys } => keys.iter().map(|k| partition_for(ns, k, n)).collect(),
            Op::SetMany { ns, items } => {
                items.iter().map(|i| partition_for(ns, &i.key, n)).collect()
            }
            _ => return Ok((Admitted::One(None), None)),
        };
        parts.sort_unstable();
        parts.dedup();
        let admitted = parts
            .into_iter()
            .filter_map(|p| self.routing.admit(p, epoch).transpose())
            .collect::<Result<_, _>>()?;
        Ok((Admitted::Many(admitted), None))
    }

    /// Cluster and peer operations.
    fn cluster_op(&self, op: Op) -> Result<Reply, WireError> {
        let control = self.control.clone().ok_or_else(|| {
            err(
                ErrorCode::Unsupported,
                "this node runs standalone (no [cluster] section in its config)",
            )
        })?;
        let peer_only = matches!(
            op,
            Op::PartitionFence { .. }
                | Op::PartitionDump { .. }
                | Op::PartitionLoad { .. }
                | Op::PartitionRelease { .. }
        );
        if peer_only && !self.peer {
            return Err(err(
                ErrorCode::Unauthorized,
                "partition moves are for cluster members (node certificates) only",
            ));
        }
        Ok(match op {
            Op::ClusterStatus => Reply::Ready(Response::ClusterStatus(control.status())),
            Op::ClusterInit => {
                pending(async move { control.init().await.map(Response::ClusterStatus) })
            }
            Op::ClusterJoin { seeds } => {
                pending(async move { control.join(&seeds).await.map(Response::ClusterStatus) })
            }
            Op::ClusterDrain { node } => {
                pending(async move { control.drain(node).await.map(Response::ClusterStatus) })
            }
            Op::ClusterRemove { node } => {
                pending(async move { control.remove(node).await.map(Response::ClusterStatus) })
            }
            Op::PartitionFence { partition, for_ms } => {
                let routing = Arc::clone(&self.routing);
                pending(async move {
                    routing
                        .fence(partition, Duration::from_millis(for_ms))
                        .await?;
                    Ok(Response::Done)
                })
            }
            Op::PartitionDump {
                partition,
                after,
                limit,
            } => {
                let (entries, next) = self.keyspace.dump(partition, after.as_ref(), limit.max(1));
                Reply::Ready(Response::PartitionChunk { entries, next })
            }
            Op::PartitionLoad {
                partition,
                first,
                entries,
            } => {
                // A move only ever loads into a partition its destination does not own
                // yet; a load into one it serves can only come from a leader that has
                // lost its leadership without knowing it, and would overwrite live data.
                if self.routing.owns(partition) {
                    return Err(WireError::new(
                        ErrorCode::StaleEpoch,
                        format!(
                            "node {} owns partition {partition} at epoch {}; refusing a load \
                             into it",
                            self.routing.me().0,
                            self.routing.epoch().0
                        ),
                    ));
                }
                let keyspace = Arc::clone(&self.keyspace);
                pending(async move {
                    if first {
                        keyspace.drop_partition(partition);
                    }
                    keyspace.load(partition, entries).await?;
                    Ok(Response::Done)
                })
            }
            Op::PartitionRelease { partition } => {
                self.routing.release(partition);
                Reply::Ready(Response::Done)
            }
            other => {
                return Err(err(
                    ErrorCode::Internal,
                    format!("not a cluster operation: {other:?}"),
                ));
            }
        })
    }

    /// Answers one request, waiting if it needs to (tests and tools).
    pub async fn handle_wait(&self, req: Request) -> Response {
        self.handle(req).wait().await
    }

    /// Keyed data operations (to the strategy, or the engine), admin operations, then
    /// the synchronous rest. `known`: the partition of a single-key operation, if
    /// already computed.
    fn route(&self, op: Op, known: Known) -> Result<Reply, WireError> {
        if let Op::With { mode, op } = op {
            return self.with_mode(mode, *op, known);
        }
        let ns = match &op {
            Op::Get { ns, .. }
            | Op::GetMany { ns, .. }
            | Op::Set { ns, .. }
            | Op::SetMany { ns, .. }
            | Op::Delete { ns, .. }
            | Op::Exists { ns, .. }
            | Op::Touch { ns, .. }
            | Op::Increment { ns, .. } => Some(self.ns(ns)?),
            _ => None,
        };
        if let Some(ns) = ns {
            // The namespace is looked up once; `data` and `with_strategy` take it.
            return match &ns.strategy {
                Some(s) => self.with_strategy(&ns, s, op, RequestMode::default(), known),
                None => self.data(&ns, op, known).map(Reply::Ready),
            };
        }
        match op {
            Op::ClusterStatus
            | Op::ClusterInit
            | Op::ClusterJoin { .. }
            | Op::ClusterDrain { .. }
            | Op::ClusterRemove { .. }
            | Op::PartitionFence { .. }
            | Op::PartitionDump { .. }
            | Op::PartitionLoad { .. }
            | Op::PartitionRelease { .. } => self.cluster_op(op),
            Op::NsList => Ok(Reply::Ready(Response::Namespaces(
                self.keyspace.namespaces().iter().map(|n| info(n)).collect(),
            ))),
            Op::NsShow { ns } => Ok(Reply::Ready(Response::Namespaces(vec![info(
                &*self.ns(&ns)?,
            )]))),
            // In a cluster, namespace settings go through Raft to every member.
            Op::NsCreate { ns, config } => {
                let keyspace = Arc::clone(&self.keyspace);
                let control = self.control.clone();
                Ok(pending(async move {
                    let n = match control {
                        None => keyspace.create(&ns, &config).await?,
                        Some(control) => {
                            if keyspace.namespace(&ns).is_some() {
                                return Err(err(
                                    ErrorCode::AlreadyExists,
                                    format!(
                                        "namespace {ns:?} exists; change it with `ringctl ns alter`"
                                    ),
                                ));
                            }
                            let parsed = keyspace.parse(&ns, &config)?;
                            control.put_namespace(&ns, &parsed).await?;
                            keyspace.namespace(&ns).ok_or_else(|| {
                                err(ErrorCode::Internal, "namespace applied but not found")
                            })?
                        }
                    };
                    Ok(Response::Namespaces(vec![info(&n)]))
                }))
            }
            Op::NsAlter { ns, config } => {
                let keyspace = Arc::clone(&self.keyspace);
                let control = self.control.clone();
                Ok(pending(async move {
                    let n = match control {
                        None => keyspace.alter(&ns, &config).await?,
                        Some(control) => {
                            let patched = keyspace.patched(&ns, &config)?;
                            control.put_namespace(&ns, &patched).await?;
                            keyspace.namespace(&ns).ok_or_else(|| {
                                err(ErrorCode::Internal, "namespace applied but not found")
                            })?
                        }
                    };
                    Ok(Response::Namespaces(vec![info(&n)]))
                }))
            }
            Op::WriteBehindStatus { ns } => {
                let list = self.write_behind_namespaces(ns.as_deref())?;
                Ok(Reply::Ready(Response::WriteBehind(
                    list.iter().map(|(_, s)| s.status()).collect(),
                )))
            }
            Op::WriteBehindFlush { ns } => {
                let list = self.write_behind_namespaces(ns.as_deref())?;
                Ok(pending(async move {
                    for (_, wb) in &list {
                        wb.flush().await;
                    }
                    Ok(Response::WriteBehind(
                        list.iter().map(|(_, s)| s.status()).collect(),
                    ))
                }))
            }
            op => self.dispatch(op).map(Reply::Ready),
        }
    }

    /// A data operation with the strategy overridden for this request.
    fn with_mode(&self, mode: RequestMode, op: Op, known: Known) -> Result<Reply, WireError> {
        let name = match &op {
            Op::Get { ns, .. }
            | Op::GetMany { ns, .. }
            | Op::Set { ns, .. }
            | Op::SetMany { ns, .. }
            | Op::Delete { ns, .. } => ns.clone(),
            _ => {
                return Err(err(
                    ErrorCode::Malformed,
                    "a strategy override wraps a get, get_many, set, set_many or delete",
                ));
            }
        };
        let ns = self.ns(&name)?;
        match &ns.strategy {
            Some(s) => self.with_strategy(&ns, s, op, mode, known),
            None if matches!(
                mode.write,
                Some(WriteOverride::WriteThrough | WriteOverride::WriteAround)
            ) =>
            {
                Err(err(
                    ErrorCode::Unsupported,
                    format!("namespace {name:?} has no store to write through or around"),
                ))
            }
            None => self.data(&ns, op, known).map(Reply::Ready),
        }
    }

    fn write_behind_namespaces(
        &self,
        ns: Option<&str>,
    ) -> Result<Vec<(String, Arc<crate::writebehind::WriteBehind>)>, WireError> {
        let list = match ns {
            Some(name) => vec![self.ns(name)?],
            None => self.keyspace.namespaces(),
        };
        let found: Vec<_> = list
            .iter()
            .filter_map(|n| {
                n.strategy
                    .as_ref()
                    .and_then(|s| s.write_behind())
                    .map(|w| (n.name.clone(), Arc::clone(w)))
            })
            .collect();
        if let (Some(name), true) = (ns, found.is_empty()) {
            return Err(err(
                ErrorCode::Unsupported,
                format!("namespace {name:?} does not write behind"),
            ));
        }
        Ok(found)
    }

    /// The partition of `key` in `ns`: `known` when the caller computed it already.
    fn pid(&self, ns: &Namespace, key: &[u8], known: Known) -> PartitionId {
        known.unwrap_or_else(|| partition_for(&ns.name, key, self.keyspace.partition_count()))
    }

    fn pindex(&self, ns: &Namespace, key: &[u8]) -> usize {
        self.pid(ns, key, None).0 as usize
    }

    /// Data operations on a namespace with a store.
    fn with_strategy(
        &self,
        ns: &Arc<Namespace>,
        s: &Arc<Strategy>,
        op: Op,
        mode: RequestMode,
        known: Known,
    ) -> Result<Reply, WireError> {
        let load = !mode.no_load;
        let write = mode.write;
        let default_ttl = ns.default_ttl();
        let ttl_of = move |ttl_ms: Option<u64>| ttl_ms.map(Duration::from_millis).or(default_ttl);
        Ok(match op {
            Op::Get { key, .. } => match s.get_as(self.pid(ns, &key, known).0 as usize, &key, load)
            {
                Ok(v) => Reply::Ready(Response::Value(v)),
                Err(load) => pending(async move { load.await.map(Response::Value) }),
            },
            Op::GetMany { keys, .. } => {
                let mut ready = Vec::with_capacity(keys.len());
                let mut loads = Vec::new();
                for (i, k) in keys.iter().enumerate() {
                    match s.get_as(self.pindex(ns, k), k, load) {
                        Ok(v) => ready.push(v),
                        Err(load) => {
                            ready.push(None);
                            loads.push((i, load));
                        }
                    }
                }
                if loads.is_empty() {
                    Reply::Ready(Response::Values(ready))
                } else {
                    pending(async move {
                        for (i, load) in loads {
                            ready[i] = load.await?;
                        }
                        Ok(Response::Values(ready))
                    })
                }
            }
            Op::Exists { key, .. } => Reply::Ready(Response::Exists(
                s.contains(self.pid(ns, &key, known).0 as usize, &key),
            )),
            Op::Set {
                key,
                value,
                ttl_ms,
                condition,
                ..
            } => {
                let (s, p) = (Arc::clone(s), self.pid(ns, &key, known).0 as usize);
                pending(async move {
                    let w = s
                        .write_as(
                            p,
                            key,
                            Some(value),
                            ttl_of(ttl_ms),
                            to_condition(condition),
                            write,
                        )
                        .await?;
                    Ok(Response::Stored { version: w.version })
                })
            }
            Op::SetMany { items, .. } => {
                let s = Arc::clone(s);
                let ps: Vec<usize> = items.iter().map(|i| self.pindex(ns, &i.key)).collect();
                pending(async move {
                    let mut out = Vec::with_capacity(items.len());
                    for (SetItem { key, value, ttl_ms }, p) in items.into_iter().zip(ps) {
                        out.push(
                            Arc::clone(&s)
                                .write_as(
                                    p,
                                    key,
                                    Some(value),
                                    ttl_of(ttl_ms),
                                    Condition::Always,
                                    write,
                                )
                                .await
                                .map(|w| w.version),
                        );
                    }
                    Ok(Response::StoredMany(out))
                })
            }
            Op::Delete {
                key, if_version, ..
            } => {
                let (s, p) = (Arc::clone(s), self.pid(ns, &key, known).0 as usize);
                let cond = if_version.map_or(Condition::Always, Condition::IfVersion);
                pending(async move {
                    let w = s.write_as(p, key, None, None, cond, write).await?;
                    Ok(Response::Deleted(w.existed))
                })
            }
            Op::Increment {
                key, delta, ttl_ms, ..
            } => {
                let (s, p) = (Arc::clone(s), self.pid(ns, &key, known).0 as usize);
                pending(async move {
                    for _ in 0..INCREMENT_ATTEMPTS {
                        let current = match s.get(p, &key) {
                            Ok(v) => v,
                            Err(load) => load.await?,
                        };
                        let (old, cond, ttl) = match &current {
                            None => (0, Condition::IfAbsent, ttl_of(ttl_ms)),
                            Some(e) => (
                                parse_counter(&e.value)?,
                                Condition::IfVersion(e.version),
                                e.ttl_ms.map(Duration::from_millis),
                            ),
                        };
                        let new = add(old, delta)?;
                        match Arc::clone(&s)
                            .write(
                                p,
                                key.clone(),
                                Some(Bytes::from(new.to_string())),
                                ttl,
                                cond,
                            )
                            .await
                        {
                            Ok(_) => return Ok(Response::Counter(new)),
                            Err(e) if e.code == ErrorCode::ConditionFailed => {}
                            Err(e) => return Err(e),
                        }
                    }
                    Err(contended())
                })
            }
            other => self.data(ns, other, known).map(Reply::Ready)?,
        })
    }

    fn ns(&self, name: &str) -> Result<Arc<Namespace>, WireError> {
        self.keyspace
            .namespace(name)
            .ok_or_else(|| unknown_namespace(name))
    }

    fn part<'a>(&self, ns: &'a Namespace, key: &[u8]) -> &'a Partition {
        ns.partition(self.pid(ns, key, None))
    }

    /// A keyed data operation on a namespace without a store (or one a strategy serves
    /// from the engine alone).
    fn data(&self, ns: &Namespace, op: Op, known: Known) -> Result<Response, WireError> {
        let part = |key: &[u8]| ns.partition(self.pid(ns, key, known));
        Ok(match op {
            Op::Get { key, .. } => Response::Value(part(&key).engine.get_entry(&key).map(entry)),
            Op::GetMany { keys, .. } => Response::Values(
                keys.iter()
                    .map(|k| self.part(ns, k).engine.get_entry(k).map(entry))
                    .collect(),
            ),
            Op::Set {
                key,
                value,
                ttl_ms,
                condition,
                ..
            } => Response::Stored {
                version: self.set(ns, part(&key), &key, value, ttl_ms, condition)?,
            },
            Op::SetMany { items, .. } => Response::StoredMany(
                items
                    .into_iter()
                    .map(|SetItem { key, value, ttl_ms }| {
                        let p = self.part(ns, &key);
                        self.set(ns, p, &key, value, ttl_ms, WriteCondition::Always)
                    })
                    .collect(),
            ),
            Op::Delete {
                key, if_version, ..
            } => {
                let cond = if_version.map_or(Condition::Always, Condition::IfVersion);
                match part(&key).engine.remove_if(&key, cond) {
                    Ok(removed) => Response::Deleted(removed.is_some()),
                    Err(e) => return Err(insert_error(e, 0)),
                }
            }
            Op::Exists { key, .. } => Response::Exists(part(&key).engine.contains(&key)),
            Op::Touch { key, ttl_ms, .. } => Response::Touched(
                part(&key)
                    .engine
                    .touch(&key, ttl_ms.map(Duration::from_millis)),
            ),
            Op::Increment {
                key, delta, ttl_ms, ..
            } => Response::Counter(self.increment(ns, part(&key), &key, delta, ttl_ms)?),
            other => self.dispatch(other)?,
        })
    }

    /// Operations that name no key: ping, purge, stats, the partition table.
    fn dispatch(&self, op: Op) -> Result<Response, WireError> {
        Ok(match op {
            Op::Ping => Response::Pong { node: self.node },
            Op::Purge { ns, prefix } => {
                let ns = &*self.ns(&ns)?;
                let removed: usize = ns
                    .partitions()
                    .map(|p| p.engine.retain(|k, _| !k.starts_with(&prefix)))
                    .sum();
                Response::Purged(removed as u64)
            }
            Op::Stats { ns } => {
                let list: Vec<Arc<Namespace>> = match ns {
                    Some(name) => vec![self.ns(&name)?],
                    None => self.keyspace.namespaces(),
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
                                ..strategy_stats(ns.strategy.as_deref())
                            }
                        })
                        .collect(),
                )
            }
            Op::ClusterInfo => Response::ClusterInfo(self.routing.cluster_info()),
            // Admin, cluster and wrapped operations are answered by `route`.
            _ => {
                return Err(err(
                    ErrorCode::Internal,
                    "an admin, cluster or wrapped operation reached the data path",
                ));
            }
        })
    }

    fn set(
        &self,
        ns: &Namespace,
        part: &Partition,
        key: &[u8],
        value: Bytes,
        ttl_ms: Option<u64>,
        condition: WriteCondition,
    ) -> Result<u64, WireError> {
        let version = part.next_version();
        let mut opts = InsertOptions::new()
            .version(version)
            .condition(to_condition(condition));
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
        part: &Partition,
        key: &[u8],
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, WireError> {
        for _ in 0..INCREMENT_ATTEMPTS {
            let current = part.engine.peek(key);
            let (old, condition, ttl) = match &current {
                None => (
                    0,
                    Condition::IfAbsent,
                    ttl_ms.map(Duration::from_millis).or(ns.default_ttl()),
                ),
                Some(v) => (
                    parse_counter(&v.value)?,
                    Condition::IfVersion(v.version),
                    v.expires_in,
                ),
            };
            let new = add(old, delta)?;
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
        Err(contended())
    }
}

fn unknown_namespace(name: &str) -> WireError {
    err(
        ErrorCode::UnknownNamespace,
        format!("unknown namespace {name:?}"),
    )
}

/// The error that answers a request whose response cannot be encoded.
pub(crate) fn encode_error(e: &EncodeError) -> WireError {
    match e {
        EncodeError::TooLarge { len, max } => err(
            ErrorCode::FrameTooLarge,
            format!("response of {len} bytes exceeds max_frame = {max}; ask for fewer keys"),
        ),
        other => err(ErrorCode::Internal, other.to_string()),
    }
}

fn to_condition(c: WriteCondition) -> Condition {
    match c {
        WriteCondition::Always => Condition::Always,
        WriteCondition::IfAbsent => Condition::IfAbsent,
        WriteCondition::IfVersion(v) => Condition::IfVersion(v),
    }
}

fn info(ns: &Namespace) -> NamespaceInfo {
    NamespaceInfo {
        ns: ns.name.clone(),
        config: ns.config.to_toml(true),
    }
}

fn strategy_stats(s: Option<&Strategy>) -> NamespaceStats {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(s) = s else {
        return NamespaceStats::default();
    };
    let c = s.counters();
    NamespaceStats {
        store_loads: c.store_loads.load(Relaxed),
        store_errors: s.store_errors(),
        refreshes: c.refreshes.load(Relaxed),
        coalesced_loads: c.coalesced_loads.load(Relaxed),
        ..NamespaceStats::default()
    }
}

fn parse_counter(value: &[u8]) -> Result<i64, WireError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            err(
                ErrorCode::NotANumber,
                "value is not a decimal 64-bit integer",
            )
        })
}

fn add(old: i64, delta: i64) -> Result<i64, WireError> {
    old.checked_add(delta).ok_or_else(|| {
        err(
            ErrorCode::NotANumber,
            format!("{old} + {delta} overflows a 64-bit integer"),
        )
    })
}

fn contended() -> WireError {
    err(
        ErrorCode::Backpressure,
        "increment kept racing with other writers; retry",
    )
    .with_hints(Hints {
        retry_after_ms: Some(1),
        ..Hints::default()
    })
}

/// An engine insert error as the client sees it (`size`: key plus value bytes).
pub(crate) fn insert_error(e: InsertError, size: usize) -> WireError {
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
