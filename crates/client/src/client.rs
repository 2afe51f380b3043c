//! The client: connection management, retries, and the operations.

use std::net::ToSocketAddrs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringcache_proto::{
    ClusterInfo, Entry, Epoch, NamespaceStats, NodeId, Op, OpRef, RequestRef, Response, SetItem,
    WireError, WriteCondition,
};
use ringcache_tls::{
    ALPN_CLIENT, any_node_server_name, client_config, load_cert_pem, load_identity,
    quinn_client_config,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::config::ClientConfig;
use crate::connection::{Connection, Done};
use crate::endpoint::Endpoint;
use crate::error::{Error, Outcome, Result};

/// Attempts for a request that is safe to repeat, when the connection fails under it.
const IDEMPOTENT_ATTEMPTS: usize = 3;

/// How a write applies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SetOptions {
    /// Time to live; `None` for the namespace default.
    pub ttl: Option<Duration>,
    /// When the write applies.
    pub condition: WriteCondition,
}

impl SetOptions {
    /// With a time to live.
    #[must_use]
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            ..Self::default()
        }
    }
}

/// A Ringcache client. Cheap to clone; clones share one connection, on which any
/// number of tasks may have requests in flight at once.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    endpoint: quinn::Endpoint,
    /// Whether `endpoint` is this client's own (closing waits for it to go idle) or
    /// shared ([`Client::connect_on`]).
    own_endpoint: bool,
    quic: quinn::ClientConfig,
    conn: Mutex<Option<Arc<Connection>>>,
    /// The live connection for the request path's fast read; written only by the task
    /// holding `conn` (which serializes reconnects).
    current: std::sync::RwLock<Option<Arc<Connection>>>,
    /// When the last connect attempt gave up, and why.
    last_failure: std::sync::Mutex<Option<(Instant, String)>>,
    pub(crate) aside: crate::aside::Flights,
    /// The partition table and the per-node clients requests are routed with.
    pub(crate) routes: crate::routing::Routes,
}

fn read_current(c: &std::sync::RwLock<Option<Arc<Connection>>>) -> Option<Arc<Connection>> {
    // Only whole-value assignments happen under this lock; a poisoned value is intact.
    c.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone()
}

fn lock_failure(
    m: &std::sync::Mutex<Option<(Instant, String)>>,
) -> std::sync::MutexGuard<'_, Option<(Instant, String)>> {
    // Only a plain assignment happens under this lock; a poisoned value is still whole.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether sending `op` twice has the same effect as once.
fn idempotent(op: &Op) -> bool {
    match op {
        Op::With { op, .. } => idempotent(op),
        Op::Increment { .. } => false,
        Op::Set { condition, .. } => *condition == WriteCondition::Always,
        Op::Delete { if_version, .. } => if_version.is_none(),
        _ => true,
    }
}

/// As [`idempotent`], for an operation given by borrowed parts.
fn idempotent_ref(op: OpRef<'_>) -> bool {
    match op {
        OpRef::Get { .. } => true,
        OpRef::Set { condition, .. } => condition == WriteCondition::Always,
        OpRef::Op(op) => idempotent(op),
    }
}

impl Client {
    /// Loads the certificates and connects to the first endpoint that answers, over a
    /// UDP socket of its own.
    ///
    /// # Errors
    /// [`Error::Config`] for unreadable certificates or addresses, [`Error::Connect`]
    /// when no endpoint answers within `connect_timeout`.
    pub async fn connect(config: ClientConfig) -> Result<Self> {
        let endpoint = Endpoint::bind()?;
        Self::connect_with(config, endpoint.quic().clone(), true).await
    }

    /// As [`Client::connect`], over `endpoint`'s socket, shared with the other clients
    /// using it (see [`Endpoint`]).
    ///
    /// # Errors
    /// As [`Client::connect`].
    pub async fn connect_on(config: ClientConfig, endpoint: &Endpoint) -> Result<Self> {
        Self::connect_with(config, endpoint.quic().clone(), false).await
    }

    /// A client of one more node over this client's socket, for routing.
    pub(crate) async fn sibling(&self, addr: &str) -> Result<Self> {
        let mut config = self.inner.config.clone();
        config.endpoints = vec![addr.to_owned()];
        Self::connect_with(config, self.inner.endpoint.clone(), false).await
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    pub(crate) fn routes(&self) -> &crate::routing::Routes {
        &self.inner.routes
    }

    async fn connect_with(
        config: ClientConfig,
        endpoint: quinn::Endpoint,
        own_endpoint: bool,
    ) -> Result<Self> {
        if config.endpoints.is_empty() {
            return Err(Error::Config("no endpoints".into()));
        }
        let ca = load_cert_pem(&config.ca_cert).map_err(|e| Error::Config(e.to_string()))?;
        let identity = load_identity(&config.client_cert, &config.client_key)
            .map_err(|e| Error::Config(e.to_string()))?;
        let tls = client_config(&ca, Some(&identity), &[ALPN_CLIENT])
            .map_err(|e| Error::Config(e.to_string()))?;
        let quic = quinn_client_config(tls).map_err(|e| Error::Config(e.to_string()))?;
        let client = Self {
            inner: Arc::new(Inner {
                config,
                endpoint,
                own_endpoint,
                quic,
                conn: Mutex::new(None),
                current: std::sync::RwLock::new(None),
                last_failure: std::sync::Mutex::new(None),
                aside: crate::aside::Flights::default(),
                routes: crate::routing::Routes::default(),
            }),
        };
        client.connection().await?;
        Ok(client)
    }

    pub(crate) fn flights(&self) -> &crate::aside::Flights {
        &self.inner.aside
    }

    /// The live connection, reconnecting (with backoff, within `connect_timeout`) if
    /// there is none.
    async fn connection(&self) -> Result<Arc<Connection>> {
        // Fast path, taken by every request while the connection is up: a shared read
        // of the current connection, no async lock.
        if let Some(c) = read_current(&self.inner.current)
            && !c.is_closed()
        {
            return Ok(c);
        }
        // The slow path in a box of its own: otherwise every request's future would
        // carry the dialing state inline (several hundred bytes to set up, and to move
        // wherever a caller keeps its futures).
        Box::pin(self.reconnect()).await
    }

    /// Takes the connection slot and dials if the connection is still down.
    async fn reconnect(&self) -> Result<Arc<Connection>> {
        let waited_since = Instant::now();
        let mut slot = self.inner.conn.lock().await;
        if let Some(c) = slot.as_ref()
            && !c.is_closed()
        {
            return Ok(Arc::clone(c));
        }
        // Callers queue here while one of them dials; if that attempt failed after this
        // caller started waiting, share its verdict instead of dialing again (otherwise
        // n waiters would take n connect timeouts).
        if let Some((at, reason)) = lock_failure(&self.inner.last_failure).clone()
            && at >= waited_since
        {
            return Err(Error::Connect {
                endpoints: self.inner.config.endpoints.clone(),
                reason,
            });
        }
        let cfg = &self.inner.config;
        let deadline = Instant::now() + cfg.connect_timeout;
        let mut backoff = Duration::from_millis(25);
        let mut last = String::new();
        loop {
            for ep in &cfg.endpoints {
                // One dead endpoint must not use up the whole connect timeout: each try
                // gets a share of it (at least 500 ms).
                let share = (cfg.connect_timeout / cfg.endpoints.len().max(1) as u32)
                    .max(Duration::from_millis(500));
                let attempt_deadline = deadline.min(Instant::now() + share);
                match self.dial(ep, attempt_deadline).await {
                    Ok(c) => {
                        let c = Arc::new(c);
                        *slot = Some(Arc::clone(&c));
                        *self
                            .inner
                            .current
                            .write()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) =
                            Some(Arc::clone(&c));
                        return Ok(c);
                    }
                    Err(e) => {
                        tracing::debug!(endpoint = %ep, error = %e, "connect failed");
                        last = e;
                    }
                }
            }
            let now = Instant::now();
            if now + backoff >= deadline {
                *lock_failure(&self.inner.last_failure) = Some((Instant::now(), last.clone()));
                return Err(Error::Connect {
                    endpoints: cfg.endpoints.clone(),
                    reason: last,
                });
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    async fn dial(
        &self,
        endpoint: &str,
        deadline: Instant,
    ) -> std::result::Result<Connection, String> {
        let addr = endpoint
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve {endpoint}: {e}"))?
            .next()
            .ok_or_else(|| format!("{endpoint} resolves to nothing"))?;
        let name = any_node_server_name(&self.inner.config.cluster_domain);
        let connecting = self
            .inner
            .endpoint
            .connect_with(self.inner.quic.clone(), addr, &name)
            .map_err(|e| e.to_string())?;
        let quic = tokio::time::timeout_at(deadline.into(), connecting)
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        Connection::start(
            quic,
            self.inner.config.limits.max_frame,
            self.inner.config.request_timeout,
        )
        .await
        .map_err(|e| e.to_string())
    }

    /// Sends one operation and waits for its answer. Operations safe to repeat are
    /// retried on a new connection when the old one fails under them.
    ///
    /// # Errors
    /// See [`Error`]; [`Error::retry_is_safe`] and [`Error::outcome_unknown`] say what
    /// the caller may do.
    pub async fn request(&self, op: Op) -> Result<Response> {
        self.inner
            .config
            .limits
            .check(&op)
            .map_err(Error::Invalid)?;
        self.routed(op).await
    }

    /// Sends `op` to the node this client connected to, without routing by the
    /// partition table (tools and tests that address one node on purpose).
    ///
    /// # Errors
    /// As [`Client::request`]; a key this node does not own is `Server` with code
    /// `NotOwner`.
    pub async fn request_here(&self, op: Op) -> Result<Response> {
        self.inner
            .config
            .limits
            .check(&op)
            .map_err(Error::Invalid)?;
        self.send(RequestRef {
            epoch: Epoch(0),
            op: OpRef::from(&op),
        })
        .await
    }

    /// Sends a GET or SET given by borrowed parts (no `Op` is built for it), routed like
    /// [`Client::request`].
    async fn request_ref(&self, op: OpRef<'_>) -> Result<Response> {
        self.inner
            .config
            .limits
            .check_ref(op)
            .map_err(Error::Invalid)?;
        self.routed_ref(op).await
    }

    /// Sends `req` on this client's own connection (no routing).
    pub(crate) async fn send(&self, req: RequestRef<'_>) -> Result<Response> {
        let repeatable = idempotent_ref(req.op);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.once(req).await {
                // A connection that failed under the request: try once more on a new one
                // if that cannot apply it twice. (Connect errors are final: connecting
                // already retried for the whole connect timeout.)
                Err(e @ Error::ConnectionLost { .. })
                    if (repeatable || e.retry_is_safe()) && attempt < IDEMPOTENT_ATTEMPTS =>
                {
                    tracing::debug!(error = %e, attempt, "retrying on a new connection");
                }
                Ok(Response::Error(e)) => return Err(Error::Server(e)),
                other => return other,
            }
        }
    }

    async fn once(&self, req: RequestRef<'_>) -> Result<Response> {
        let conn = self.connection().await?;
        let after = self.inner.config.request_timeout;
        // `conn` stays held until the answer: a connection is finished only once no
        // request holds it.
        let waiting = conn.send(req).await?;
        // Sent: from here on a failure cannot tell whether the node applied it.
        match waiting.await {
            Done::Response(resp) => Ok(resp),
            Done::Lost(reason) => Err(Error::ConnectionLost {
                reason,
                outcome: Outcome::Unknown,
            }),
            Done::TimedOut => Err(Error::Timeout {
                after,
                outcome: Outcome::Unknown,
            }),
        }
    }

    /// Closes the connection (outstanding requests fail).
    pub async fn close(&self) {
        let mut slot = self.inner.conn.lock().await;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        if let Some(c) = slot.take() {
            c.close();
        }
        drop(slot);
        // The per-node connections opened for routing share this client's socket.
        for sibling in self.inner.routes.take_nodes() {
            Box::pin(sibling.close()).await;
        }
        // A shared endpoint stays open for the other clients, and sends this
        // connection's close on its own.
        if self.inner.own_endpoint {
            self.inner.endpoint.wait_idle().await;
        }
    }

    /// Round trip to a node; returns its id.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn ping(&self) -> Result<NodeId> {
        match self.request(Op::Ping).await? {
            Response::Pong { node } => Ok(node),
            other => Err(unexpected("ping", &other)),
        }
    }

    /// The value and metadata under `key`, `None` on a miss.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn get(&self, ns: &str, key: impl AsRef<[u8]>) -> Result<Option<Entry>> {
        let op = OpRef::Get {
            ns,
            key: key.as_ref(),
        };
        match self.request_ref(op).await? {
            Response::Value(v) => Ok(v),
            other => Err(unexpected("get", &other)),
        }
    }

    /// Several keys of one namespace, in order.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn get_many<K: AsRef<[u8]>>(
        &self,
        ns: &str,
        keys: &[K],
    ) -> Result<Vec<Option<Entry>>> {
        let op = Op::GetMany {
            ns: ns.to_owned(),
            keys: keys
                .iter()
                .map(|k| Bytes::copy_from_slice(k.as_ref()))
                .collect(),
        };
        match self.request(op).await? {
            Response::Values(v) => Ok(v),
            other => Err(unexpected("get_many", &other)),
        }
    }

    /// Stores `value`; returns the version the node assigned.
    ///
    /// # Errors
    /// See [`Client::request`]; a failed condition is `Server` with code
    /// `ConditionFailed` and the current version in its hints.
    pub async fn set(
        &self,
        ns: &str,
        key: impl AsRef<[u8]>,
        value: impl Into<Bytes>,
        opts: SetOptions,
    ) -> Result<u64> {
        let value = value.into();
        let op = OpRef::Set {
            ns,
            key: key.as_ref(),
            value: &value,
            ttl_ms: opts.ttl.map(ms),
            condition: opts.condition,
        };
        match self.request_ref(op).await? {
            Response::Stored { version } => Ok(version),
            other => Err(unexpected("set", &other)),
        }
    }

    /// Stores several values of one namespace; per-item results in order.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn set_many(
        &self,
        ns: &str,
        items: Vec<(Bytes, Bytes, Option<Duration>)>,
    ) -> Result<Vec<std::result::Result<u64, WireError>>> {
        let op = Op::SetMany {
            ns: ns.to_owned(),
            items: items
                .into_iter()
                .map(|(key, value, ttl)| SetItem {
                    key,
                    value,
                    ttl_ms: ttl.map(ms),
                })
                .collect(),
        };
        match self.request(op).await? {
            Response::StoredMany(v) => Ok(v),
            other => Err(unexpected("set_many", &other)),
        }
    }

    /// Removes `key` (only at `if_version` when given); whether something was removed.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn delete(
        &self,
        ns: &str,
        key: impl AsRef<[u8]>,
        if_version: Option<u64>,
    ) -> Result<bool> {
        let op = Op::Delete {
            ns: ns.to_owned(),
            key: Bytes::copy_from_slice(key.as_ref()),
            if_version,
        };
        match self.request(op).await? {
            Response::Deleted(b) => Ok(b),
            other => Err(unexpected("delete", &other)),
        }
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn exists(&self, ns: &str, key: impl AsRef<[u8]>) -> Result<bool> {
        let op = Op::Exists {
            ns: ns.to_owned(),
            key: Bytes::copy_from_slice(key.as_ref()),
        };
        match self.request(op).await? {
            Response::Exists(b) => Ok(b),
            other => Err(unexpected("exists", &other)),
        }
    }

    /// Replaces the TTL of `key` (`None`: no expiry); whether it exists.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn touch(
        &self,
        ns: &str,
        key: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let op = Op::Touch {
            ns: ns.to_owned(),
            key: Bytes::copy_from_slice(key.as_ref()),
            ttl_ms: ttl.map(ms),
        };
        match self.request(op).await? {
            Response::Touched(b) => Ok(b),
            other => Err(unexpected("touch", &other)),
        }
    }

    /// Adds `delta` to a decimal integer value (absent counts as 0); the new value. Not
    /// retried automatically: a lost answer is [`Outcome::Unknown`].
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn increment(&self, ns: &str, key: impl AsRef<[u8]>, delta: i64) -> Result<i64> {
        let op = Op::Increment {
            ns: ns.to_owned(),
            key: Bytes::copy_from_slice(key.as_ref()),
            delta,
            ttl_ms: None,
        };
        match self.request(op).await? {
            Response::Counter(n) => Ok(n),
            other => Err(unexpected("increment", &other)),
        }
    }

    /// Removes every key of `ns` starting with `prefix`; how many.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn purge(&self, ns: &str, prefix: impl AsRef<[u8]>) -> Result<u64> {
        let op = Op::Purge {
            ns: ns.to_owned(),
            prefix: Bytes::copy_from_slice(prefix.as_ref()),
        };
        match self.request(op).await? {
            Response::Purged(n) => Ok(n),
            other => Err(unexpected("purge", &other)),
        }
    }

    /// Counters of one namespace or all.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn stats(&self, ns: Option<&str>) -> Result<Vec<NamespaceStats>> {
        match self
            .request(Op::Stats {
                ns: ns.map(str::to_owned),
            })
            .await?
        {
            Response::Stats(v) => Ok(v),
            other => Err(unexpected("stats", &other)),
        }
    }

    /// The partition table and members.
    ///
    /// # Errors
    /// See [`Client::request`].
    pub async fn cluster_info(&self) -> Result<ClusterInfo> {
        match self.request(Op::ClusterInfo).await? {
            Response::ClusterInfo(i) => Ok(i),
            other => Err(unexpected("cluster_info", &other)),
        }
    }

    /// Reads a JSON-encoded value.
    ///
    /// # Errors
    /// As [`Client::get`], or [`Error::Encoding`] if the stored bytes are not a `T`.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        ns: &str,
        key: impl AsRef<[u8]>,
    ) -> Result<Option<T>> {
        match self.get(ns, key).await? {
            None => Ok(None),
            Some(e) => serde_json::from_slice(&e.value)
                .map(Some)
                .map_err(|err| Error::Encoding(err.to_string())),
        }
    }

    /// Stores a value as JSON.
    ///
    /// # Errors
    /// As [`Client::set`], or [`Error::Encoding`].
    pub async fn set_json<T: Serialize + ?Sized>(
        &self,
        ns: &str,
        key: impl AsRef<[u8]>,
        value: &T,
        opts: SetOptions,
    ) -> Result<u64> {
        let bytes = serde_json::to_vec(value).map_err(|e| Error::Encoding(e.to_string()))?;
        self.set(ns, key, bytes, opts).await
    }
}

fn unexpected(op: &str, resp: &Response) -> Error {
    Error::Protocol(format!("unexpected answer to {op}: {resp:?}"))
}
