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
use serde::{Deserialize, Deserializer};

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

/// One namespace.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceConfig {
    /// Eviction policy: `adaptive` (default), `lru`, `lfu`, `fifo`, `random`, `ttl`.
    pub policy: Policy,
    /// Memory bound of the namespace on this node, e.g. `"256MiB"`. Split evenly over
    /// the partitions (each partition's engine gets `memory / partitions`), so one
    /// entry can be at most that large. Default 64 MiB.
    #[serde(deserialize_with = "de_bytes")]
    pub memory: u64,
    /// TTL for writes that give none, e.g. `"10m"`; absent: no expiry.
    #[serde(deserialize_with = "de_opt_duration")]
    pub default_ttl: Option<Duration>,
}

impl Default for NamespaceConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            memory: 64 << 20,
            default_ttl: None,
        }
    }
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
        toml::from_str(text).map_err(|e| {
            let msg = e.message().to_owned();
            match e.span() {
                Some(span) => {
                    // toml names unknown keys but not always the key whose value it
                    // refused; quoting the line names it in every case.
                    let start = span.start.min(text.len());
                    let line = text[..start].matches('\n').count() + 1;
                    let content = text.lines().nth(line - 1).unwrap_or("").trim();
                    format!("line {line} `{content}`: {}", msg.replace('\n', " "))
                }
                None => msg.replace('\n', " "),
            }
        })
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
            if !valid_namespace(name) {
                return Err(invalid(
                    format!("namespaces.{name}"),
                    "names are 1 to 64 bytes of letters, digits, '_', '-', '.'",
                ));
            }
            let per = ns.memory / u64::from(self.partitions);
            if per < MIN_PARTITION_MEMORY {
                return Err(invalid(
                    format!("namespaces.{name}.memory"),
                    format!(
                        "{} bytes over {} partitions leaves {per} bytes each; at least {MIN_PARTITION_MEMORY} per partition",
                        ns.memory, self.partitions
                    ),
                ));
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
        })
    }
}
