//! How a client finds and authenticates to the cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use ringcache_proto::Limits;
use serde::Deserialize;

use crate::error::Error;

/// Client settings; `client.toml` (as written by `ringctl local up`) has the same
/// fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// Node addresses (`host:port`); the first that answers is used.
    pub endpoints: Vec<String>,
    /// The cluster CA certificate (PEM).
    pub ca_cert: PathBuf,
    /// This client's certificate (PEM); nodes require one signed by the cluster CA.
    pub client_cert: PathBuf,
    /// Its private key (PEM).
    pub client_key: PathBuf,
    /// The cluster's certificate domain. Default `ringcache.local`.
    #[serde(default = "default_domain")]
    pub cluster_domain: String,
    /// Time allowed to establish a connection, retries included. Default 5 s.
    #[serde(default = "default_connect_timeout", with = "millis")]
    pub connect_timeout: Duration,
    /// Time allowed for one request. Default 5 s.
    #[serde(default = "default_request_timeout", with = "millis")]
    pub request_timeout: Duration,
    /// Sizes checked before sending (must not exceed the nodes'). Default: the
    /// protocol defaults.
    #[serde(default)]
    pub limits: Limits,
}

fn default_domain() -> String {
    "ringcache.local".into()
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_request_timeout() -> Duration {
    Duration::from_secs(5)
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl ClientConfig {
    /// A configuration for `endpoints` with the given certificate files and defaults
    /// for the rest.
    #[must_use]
    pub fn new(
        endpoints: Vec<String>,
        ca_cert: PathBuf,
        client_cert: PathBuf,
        client_key: PathBuf,
    ) -> Self {
        Self {
            endpoints,
            ca_cert,
            client_cert,
            client_key,
            cluster_domain: default_domain(),
            connect_timeout: default_connect_timeout(),
            request_timeout: default_request_timeout(),
            limits: Limits::default(),
        }
    }

    /// Reads a TOML file (relative paths resolve against its directory). Durations
    /// are milliseconds (`connect_timeout = 5000`).
    ///
    /// # Errors
    /// [`Error::Config`] naming the file and the problem.
    pub fn from_file(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        let mut cfg: Self = toml::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {}", path.display(), e.message())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.ca_cert, &mut cfg.client_cert, &mut cfg.client_key] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        Ok(cfg)
    }
}
