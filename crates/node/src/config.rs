//! `ringcached --config FILE`: the node's TOML configuration.
//!
//! [`NodeConfig`] is what users write (every field documented with its default);
//! [`NodeConfig::validate`] checks it and returns [`ValidConfig`], the only form the
//! node runs with. Unknown keys and bad values are refused with one line naming the
//! field.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcache_engine::Policy;
use ringcache_proto::{Limits, NodeId, valid_namespace};
use ringcache_store::{StoreConfig, ValidStoreConfig};
use serde::{Deserialize, Deserializer, Serialize};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML did not parse into the schema (unknown key, wrong type, bad value).
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's one-line explanation, naming the key.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("config: {field}: {reason}")]
    Invalid {
        /// The dotted path of the field.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's id: unique in the cluster, stable across restarts, at least 1. Its
    /// certificate must name it (`node-<id>.<cluster_domain>`).
    pub node_id: u64,
    /// Address to listen on for clients and peers (UDP, QUIC). Default
    /// `127.0.0.1:7700`; port 0 picks a free port (the chosen address is logged and
    /// written to `<data_dir>/listen.addr`).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Directory for this node's state (created if missing).
    pub data_dir: PathBuf,
    /// TLS material. The node never serves without TLS.
    pub tls: TlsConfig,
    /// Request size limits and connection limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Number of partitions keys hash to. Fixed when a cluster is created; default 1024.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// Namespaces, by name. Default: one namespace `default` with default settings.
    #[serde(default = "default_namespaces")]
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// Cluster membership. Absent: a standalone node that owns every partition.
    pub cluster: Option<ClusterSection>,
}

/// `[cluster]`: how this node forms or joins a cluster.
///
/// ```toml
/// [cluster]
/// bootstrap = true                 # on exactly one node, once: start a new cluster
/// seeds = ["10.0.0.1:7700"]        # the others: members to join through
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterSection {
    /// The address other members and clients reach this node at (`host:port`).
    /// Default: the listen address (the bound one when the port is 0); required when
    /// listening on `0.0.0.0`.
    pub advertise: Option<String>,
    /// Start a new cluster with this node as its first member, if this node's data
    /// directory holds no cluster state yet. Set it on one node only. Default false.
    pub bootstrap: bool,
    /// Members to join through (any member will do; the request reaches the leader).
    /// Ignored once this node is a member: a restarted node rejoins by itself.
    pub seeds: Vec<String>,
    /// Voting members at most; later members are non-voting. Default 5.
    pub max_voters: u32,
    /// Copies of each partition (owner plus backups) in the table. Default 2. Used when
    /// the cluster is created.
    pub replication: u32,
    /// Bound on any node's primaries as a multiple of its fair share (consistent hashing
    /// with bounded loads). Default 1.15.
    pub load_factor: f64,
    /// This node's placement weight (virtual nodes). Default 128.
    pub weight: u32,
    /// The leader marks a member down after this long without contact, e.g. `"5s"`.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub down_after: Duration,
    /// A member that has not proved contact with the leader (a round trip to a leader
    /// in contact with a quorum, its own table caught up) for this long stops serving
    /// its partitions until it has again, so a member cut off from the cluster stops
    /// acknowledging writes before the leader gives its partitions to others. Must be
    /// less than `down_after` minus two heartbeats. Default: half of `down_after`.
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub fence_after: Option<Duration>,
    /// Raft heartbeat interval. Default 250ms.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub heartbeat: Duration,
    /// Raft election timeout (randomized between this and twice this). Default 1s.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub election_timeout: Duration,
    /// Partitions copied at the same time, committed in one table step. Default 16.
    pub move_concurrency: u32,
}

impl ClusterSection {
    /// The effective `fence_after`: as set, or half of `down_after`.
    #[must_use]
    pub fn fence_after(&self) -> Duration {
        self.fence_after.unwrap_or(self.down_after / 2)
    }
}

impl Default for ClusterSection {
    fn default() -> Self {
        Self {
            advertise: None,
            bootstrap: false,
            seeds: Vec::new(),
            max_voters: 5,
            replication: 2,
            load_factor: 1.15,
            weight: 128,
            down_after: Duration::from_secs(5),
            fence_after: None,
            heartbeat: Duration::from_millis(250),
            election_timeout: Duration::from_secs(1),
            move_concurrency: 16,
        }
    }
}

/// Certificates and keys (PEM files, as written by `ringctl certs init`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The cluster CA certificate: clients and peers must present certificates it signed.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
    /// This node's private key (keep it 0600).
    pub key: PathBuf,
    /// The DNS suffix of the cluster's certificate names. Default `ringcache.local`.
    #[serde(default = "default_domain")]
    pub cluster_domain: String,
}

/// Limits. Exceeding one gets the client a clear error; the node keeps serving.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest frame (request or response), e.g. `"16MiB"`. Default 16 MiB.
    #[serde(deserialize_with = "de_bytes")]
    pub max_frame: u64,
    /// Largest key. Default 16 KiB.
    #[serde(deserialize_with = "de_bytes")]
    pub max_key: u64,
    /// Largest value. Default 8 MiB; must be below `max_frame`.
    #[serde(deserialize_with = "de_bytes")]
    pub max_value: u64,
    /// Most keys or items per batch request. Default 4096.
    pub max_batch: u32,
    /// Most client connections at once; more are refused. Default 10,000.
    pub max_connections: u32,
    /// Most streams a client may open on one connection. Default 16.
    pub max_streams_per_connection: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        Self {
            max_frame: u64::from(l.max_frame),
            max_key: u64::from(l.max_key),
            max_value: u64::from(l.max_value),
            max_batch: l.max_batch,
            max_connections: 10_000,
            max_streams_per_connection: 16,
        }
    }
}

/// Where reads come from on a miss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReadMode {
    /// A miss is a miss; the application loads and sets (the client's `get_or_load`).
    #[default]
    CacheAside,
    /// On a miss the node loads the key from the store, once for all concurrent misses.
    ReadThrough,
}

/// Where writes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WriteMode {
    /// Writes change the cache only.
    #[default]
    CacheOnly,
    /// The store first, then the cache; the ack means both.
    WriteThrough,
    /// The cache and the partition's write-behind queue; a flusher writes the store in
    /// batches. The ack means queued (and logged, with `write_behind.wal`).
    WriteBehind,
    /// The store, then the cached copy is dropped.
    WriteAround,
}

impl ReadMode {
    /// The config spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CacheAside => "cache-aside",
            Self::ReadThrough => "read-through",
        }
    }
}

impl WriteMode {
    /// The config spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CacheOnly => "cache-only",
            Self::WriteThrough => "write-through",
            Self::WriteBehind => "write-behind",
            Self::WriteAround => "write-around",
        }
    }
}

/// When the write-behind log is fsynced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsyncMode {
    /// Before every ack (concurrent writes share one fsync). The default.
    #[default]
    Always,
    /// Every `fsync_interval`: a machine crash may lose the last interval's acks (a
    /// process crash loses nothing).
    Interval,
    /// Never explicitly (the OS decides): a process crash loses nothing, a machine crash
    /// may lose recent acks.
    Never,
}

/// Write-behind settings (used when `write = "write-behind"`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WriteBehindConfig {
    /// Most queued writes on this node for the namespace; beyond it writes get
    /// `backpressure`. Default 100,000.
    pub queue_capacity: u64,
    /// Most writes per store batch. Default 500.
    pub batch_size: usize,
    /// How long a write may wait for a batch to fill, e.g. `"100ms"`. Default 100ms.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub batch_delay: Duration,
    /// Failures (that retrying cannot fix, like a constraint error) before a write goes
    /// to the dead-letter list. A store that is down or timing out is retried forever
    /// without counting. Default 5.
    pub max_attempts: u32,
    /// First retry delay after a failure, doubled per attempt. Default 100ms.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub retry_backoff: Duration,
    /// Longest retry delay. Default 10s.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub max_backoff: Duration,
    /// Also append every queued write to a log in `<data_dir>/wal/<namespace>/`,
    /// replayed on restart, so a crash loses no acknowledged write. Default false.
    pub wal: bool,
    /// When the log is fsynced: `always` (default), `interval`, `never`.
    pub fsync: FsyncMode,
    /// With `fsync = "interval"`: how often. Default 100ms.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub fsync_interval: Duration,
    /// On graceful shutdown, how long to keep flushing before giving up (what remains
    /// is in the log with `wal`, lost without it, and logged either way). Default 30s.
    #[serde(deserialize_with = "de_duration", serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 100_000,
            batch_size: 500,
            batch_delay: Duration::from_millis(100),
            max_attempts: 5,
            retry_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            wal: false,
            fsync: FsyncMode::Always,
            fsync_interval: Duration::from_millis(100),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// One namespace.
///
/// ```toml
/// [namespaces.users]
/// policy = "adaptive"
/// memory = "256MiB"
/// default_ttl = "10m"
/// read = "read-through"            # or "cache-aside" (default)
/// write = "write-behind"           # "cache-only" (default), "write-through", "write-around"
/// negative_ttl = "30s"             # read-through: remember "not in the store" this long
/// refresh_ahead_factor = 0.8       # reload in the background after 80% of the TTL
/// stale_while_revalidate = "30s"   # after expiry, serve the old value this long while reloading
///
/// [namespaces.users.store]         # see ringcache-store's StoreConfig
/// kind = "postgres"
/// url = "postgres://app@127.0.0.1/app"
///
/// [namespaces.users.write_behind]
/// batch_size = 500
/// wal = true
/// ```
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceConfig {
    /// Eviction policy: `adaptive` (default), `lru`, `lfu`, `fifo`, `random`, `ttl`.
    pub policy: Policy,
    /// Memory bound of the namespace on this node, e.g. `"256MiB"`. Split evenly over
    /// the partitions (each partition's engine gets `memory / partitions`), so one
    /// entry can be at most that large. Default 64 MiB.
    #[serde(deserialize_with = "de_bytes")]
    pub memory: u64,
    /// TTL for writes that give none and for loaded values, e.g. `"10m"`; absent: no
    /// expiry.
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_ttl: Option<Duration>,
    /// `cache-aside` (default) or `read-through` (needs `store`).
    pub read: ReadMode,
    /// `cache-only` (default), `write-through`, `write-behind`, `write-around` (all but
    /// the first need `store`).
    pub write: WriteMode,
    /// Read-through only: cache "the store has no such key" for this long. Absent
    /// (default): every miss asks the store.
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub negative_ttl: Option<Duration>,
    /// Read-through with a `default_ttl` only: a value read after this share of the
    /// TTL (between 0 and 1, e.g. 0.8) is returned and reloaded in the background, one
    /// reload per key at a time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_ahead_factor: Option<f64>,
    /// Read-through with a `default_ttl` only: for this long after a value's TTL ran
    /// out, serve it (with `ttl_ms = 0`) while one background reload runs.
    #[serde(
        deserialize_with = "de_opt_duration",
        serialize_with = "ser_opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub stale_while_revalidate: Option<Duration>,
    /// The backing store (ringcache-store's `StoreConfig`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreConfig>,
    /// Write-behind settings.
    pub write_behind: WriteBehindConfig,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            memory: 64 << 20,
            default_ttl: None,
            read: ReadMode::default(),
            write: WriteMode::default(),
            negative_ttl: None,
            refresh_ahead_factor: None,
            stale_while_revalidate: None,
            store: None,
            write_behind: WriteBehindConfig::default(),
        }
    }
}

impl NamespaceConfig {
    /// Parses one namespace's TOML table (as `ringctl ns create` sends it).
    ///
    /// # Errors
    /// toml's message, one line.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| toml_error(text, &e))
    }

    /// The settings as TOML, every field written out; `redact` hides store passwords.
    #[must_use]
    pub fn to_toml(&self, redact: bool) -> String {
        let mut c = self.clone();
        if redact && let Some(store) = c.store.as_mut() {
            store.url = store.url.as_deref().map(ringcache_store::redact_url);
        }
        toml::to_string(&c).unwrap_or_else(|e| format!("# cannot render: {e}"))
    }

    /// This configuration with the fields `patch` (TOML) names replaced.
    ///
    /// # Errors
    /// The patch does not parse, or the result does not fit the schema.
    pub fn patched(&self, patch: &str) -> Result<Self, String> {
        let patch: toml::Table =
            toml::from_str(patch).map_err(|e| e.message().replace('\n', " "))?;
        let mut base: toml::Table = toml::Table::try_from(self)
            .map_err(|e| format!("cannot render the current settings: {e}"))?;
        merge(&mut base, patch);
        base.try_into()
            .map_err(|e: toml::de::Error| e.message().replace('\n', " "))
    }

    /// Whether any strategy uses the store.
    #[must_use]
    pub fn uses_store(&self) -> bool {
        self.read == ReadMode::ReadThrough || self.write != WriteMode::CacheOnly
    }

    /// Checks the namespace's settings; `base` resolves a relative SQLite path.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the field (relative to the namespace).
    pub fn check(
        &self,
        name: &str,
        partitions: u32,
        base: &Path,
    ) -> Result<Option<ValidStoreConfig>, ConfigError> {
        let field = |f: &str| format!("namespaces.{name}.{f}");
        if !valid_namespace(name) {
            return Err(invalid(
                format!("namespaces.{name}"),
                "names are 1 to 64 bytes of letters, digits, '_', '-', '.'",
            ));
        }
        let per = self.memory / u64::from(partitions);
        if per < MIN_PARTITION_MEMORY {
            return Err(invalid(
                field("memory"),
                format!(
                    "{} bytes over {partitions} partitions leaves {per} bytes each; at least {MIN_PARTITION_MEMORY} per partition",
                    self.memory
                ),
            ));
        }
        let read_through = self.read == ReadMode::ReadThrough;
        if self.uses_store() && self.store.is_none() {
            return Err(invalid(
                field("store"),
                format!(
                    "read = \"{}\" with write = \"{}\" needs a [store] section",
                    self.read.as_str(),
                    self.write.as_str()
                ),
            ));
        }
        if self.negative_ttl.is_some() && !read_through {
            return Err(invalid(
                field("negative_ttl"),
                "only applies with read = \"read-through\"",
            ));
        }
        if let Some(f) = self.refresh_ahead_factor {
            if !(f > 0.0 && f < 1.0) {
                return Err(invalid(
                    field("refresh_ahead_factor"),
                    format!("{f} is not between 0 and 1 (exclusive)"),
                ));
            }
            if !read_through || self.default_ttl.is_none() {
                return Err(invalid(
                    field("refresh_ahead_factor"),
                    "needs read = \"read-through\" and a default_ttl",
                ));
            }
        }
        if self.stale_while_revalidate.is_some() && (!read_through || self.default_ttl.is_none()) {
            return Err(invalid(
                field("stale_while_revalidate"),
                "needs read = \"read-through\" and a default_ttl",
            ));
        }
        let wb = &self.write_behind;
        if wb.queue_capacity == 0 {
            return Err(invalid(
                field("write_behind.queue_capacity"),
                "must be at least 1",
            ));
        }
        if !(1..=10_000).contains(&wb.batch_size) {
            return Err(invalid(
                field("write_behind.batch_size"),
                "must be between 1 and 10000",
            ));
        }
        if wb.max_attempts == 0 {
            return Err(invalid(
                field("write_behind.max_attempts"),
                "must be at least 1",
            ));
        }
        if wb.retry_backoff.is_zero() || wb.max_backoff < wb.retry_backoff {
            return Err(invalid(
                field("write_behind.max_backoff"),
                "retry_backoff must be at least 1ms and max_backoff at least retry_backoff",
            ));
        }
        if wb.fsync == FsyncMode::Interval && wb.fsync_interval.is_zero() {
            return Err(invalid(
                field("write_behind.fsync_interval"),
                "must be at least 1ms",
            ));
        }
        match &self.store {
            None => Ok(None),
            Some(store) => store
                .clone()
                .validate(base)
                .map(Some)
                .map_err(|e| invalid(field("store"), e.to_string())),
        }
    }
}

/// toml's message on one line; with the offending line quoted, since toml names unknown
/// keys but not always the key whose value it refused.
fn toml_error(text: &str, e: &toml::de::Error) -> String {
    let msg = e.message().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let start = span.start.min(text.len());
            let line = text[..start].matches('\n').count() + 1;
            let content = text.lines().nth(line - 1).unwrap_or("").trim();
            format!("line {line} `{content}`: {msg}")
        }
        None => msg,
    }
}

fn merge(base: &mut toml::Table, patch: toml::Table) {
    for (k, v) in patch {
        match (base.get_mut(&k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(p)) => merge(b, p),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

#[allow(clippy::ref_option)] // serde's serialize_with hands us `&Option<_>`
fn ser_opt_duration<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 7700))
}
fn default_partitions() -> u32 {
    1024
}
fn default_domain() -> String {
    "ringcache.local".into()
}
fn default_namespaces() -> BTreeMap<String, NamespaceConfig> {
    BTreeMap::from([("default".to_owned(), NamespaceConfig::default())])
}

pub use ringcache_proto::units::{parse_bytes, parse_duration};

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrString {
    Int(u64),
    Str(String),
}

fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    match IntOrString::deserialize(d)? {
        IntOrString::Int(n) => Ok(n),
        IntOrString::Str(s) => parse_bytes(&s).map_err(serde::de::Error::custom),
    }
}

fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct ValidConfig {
    /// This node.
    pub node_id: NodeId,
    /// Listen address.
    pub listen: SocketAddr,
    /// State directory.
    pub data_dir: PathBuf,
    /// TLS files.
    pub tls: TlsConfig,
    /// Protocol limits.
    pub limits: Limits,
    /// Connection limits.
    pub max_connections: u32,
    /// Streams per connection.
    pub max_streams_per_connection: u32,
    /// Partitions.
    pub partitions: u32,
    /// Namespaces.
    pub namespaces: BTreeMap<String, NamespaceConfig>,
    /// The directory relative paths in the file resolve against (the file's).
    pub base: PathBuf,
    /// Cluster settings; `None`: standalone.
    pub cluster: Option<ClusterSection>,
}

/// The smallest share of a namespace's memory one partition may get.
const MIN_PARTITION_MEMORY: u64 = 4 << 10;

impl NodeConfig {
    /// Reads and parses a TOML file (not yet validated).
    ///
    /// # Errors
    /// [`ConfigError::Read`] or [`ConfigError::Parse`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text).map_err(|message| ConfigError::Parse {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses TOML text; the error is one line naming the key.
    ///
    /// # Errors
    /// toml's message, flattened to one line.
    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| toml_error(text, &e))
    }

    /// Checks every value; relative TLS and data paths resolve against `base` (the
    /// config file's directory).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the first bad field.
    pub fn validate(self, base: &Path) -> Result<ValidConfig, ConfigError> {
        if self.node_id == 0 {
            return Err(invalid("node_id", "must be at least 1"));
        }
        if !(1..=65_536).contains(&self.partitions) {
            return Err(invalid("partitions", "must be between 1 and 65536"));
        }
        let l = &self.limits;
        let u32_field = |name: &str, v: u64| {
            u32::try_from(v).map_err(|_| invalid(format!("limits.{name}"), "must be below 4 GiB"))
        };
        let limits = Limits {
            max_frame: u32_field("max_frame", l.max_frame)?,
            max_key: u32_field("max_key", l.max_key)?,
            max_value: u32_field("max_value", l.max_value)?,
            max_batch: l.max_batch,
        };
        if limits.max_frame < 1024 {
            return Err(invalid("limits.max_frame", "must be at least 1KiB"));
        }
        if u64::from(limits.max_key) + u64::from(limits.max_value) + 1024
            > u64::from(limits.max_frame)
        {
            return Err(invalid(
                "limits.max_value",
                format!(
                    "max_key + max_value ({} + {}) must leave 1KiB of room below max_frame ({})",
                    limits.max_key, limits.max_value, limits.max_frame
                ),
            ));
        }
        if limits.max_key == 0
            || limits.max_batch == 0
            || l.max_connections == 0
            || l.max_streams_per_connection == 0
        {
            return Err(invalid(
                "limits",
                "max_key, max_batch, max_connections and max_streams_per_connection must be at least 1",
            ));
        }
        if self.namespaces.is_empty() {
            return Err(invalid("namespaces", "at least one namespace is needed"));
        }
        for (name, ns) in &self.namespaces {
            ns.check(name, self.partitions, base)?;
        }
        if let Some(c) = &self.cluster {
            if c.max_voters == 0 || c.replication == 0 || c.weight == 0 || c.move_concurrency == 0 {
                return Err(invalid(
                    "cluster",
                    "max_voters, replication, weight and move_concurrency must be at least 1",
                ));
            }
            if !(1.0..=4.0).contains(&c.load_factor) {
                return Err(invalid(
                    "cluster.load_factor",
                    "must be between 1.0 and 4.0",
                ));
            }
            if c.heartbeat.is_zero() || c.election_timeout < c.heartbeat * 3 {
                return Err(invalid(
                    "cluster.election_timeout",
                    "must be at least three heartbeats",
                ));
            }
            if c.down_after < c.election_timeout {
                return Err(invalid(
                    "cluster.down_after",
                    "must be at least the election timeout",
                ));
            }
            let fence = c.fence_after();
            if fence < c.heartbeat * 2 || fence + c.heartbeat * 2 >= c.down_after {
                let field = if c.fence_after.is_some() {
                    "cluster.fence_after"
                } else {
                    "cluster.down_after"
                };
                return Err(invalid(
                    field,
                    format!(
                        "fence_after ({fence:?}) must be at least two heartbeats and less than \
                         down_after minus two heartbeats ({:?})",
                        c.down_after.saturating_sub(c.heartbeat * 2)
                    ),
                ));
            }
            if c.advertise.is_none() && self.listen.ip().is_unspecified() {
                return Err(invalid(
                    "cluster.advertise",
                    "required when listening on an unspecified address (0.0.0.0 or ::)",
                ));
            }
            for seed in &c.seeds {
                if !seed.contains(':') {
                    return Err(invalid(
                        "cluster.seeds",
                        format!("{seed:?} is not host:port"),
                    ));
                }
            }
        }
        if self.tls.cluster_domain.is_empty() {
            return Err(invalid("tls.cluster_domain", "must not be empty"));
        }
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        Ok(ValidConfig {
            node_id: NodeId(self.node_id),
            listen: self.listen,
            data_dir: resolve(&self.data_dir),
            tls: TlsConfig {
                ca: resolve(&self.tls.ca),
                cert: resolve(&self.tls.cert),
                key: resolve(&self.tls.key),
                cluster_domain: self.tls.cluster_domain,
            },
            limits,
            max_connections: l.max_connections,
            max_streams_per_connection: l.max_streams_per_connection,
            partitions: self.partitions,
            namespaces: self.namespaces,
            base: base.to_owned(),
            cluster: self.cluster,
        })
    }
}
