//! Namespaces and their partitions: one eviction engine per (namespace, partition),
//! and for namespaces with a backing store, their [`Strategy`].
//!
//! Memory is keyed by partition from the start, so the cluster work only changes which
//! partitions a node holds, never how a partition stores its data.
//!
//! Namespaces can be created and changed at runtime (`ringctl ns create|alter`). Those
//! changes are saved to `<data_dir>/namespaces.toml` and win over the config file's
//! settings for the same namespace on the next start (a log line says so).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::RwLock;
use ringcache_engine::{Capacity, Clock, Engine, InsertOptions, Stats, SystemClock};
use ringcache_proto::{DumpCursor, DumpEntry, ErrorCode, PartitionId, WireError};
use ringcache_store::Store;
use tracing::{info, warn};

use crate::config::{NamespaceConfig, WriteMode};
use crate::strategy::Strategy;

/// The file runtime namespace changes are saved to, in the data directory.
pub const RUNTIME_NAMESPACES: &str = "namespaces.toml";

/// One partition of one namespace.
#[derive(Debug)]
pub struct Partition {
    /// The store.
    pub engine: Engine,
    /// The last version handed out in this partition.
    version: AtomicU64,
}

impl Partition {
    /// The next write version: strictly increasing within the partition, and starting
    /// from the wall clock in microseconds so a restarted node does not reuse versions
    /// it handed out before (unless its clock went back by the length of its downtime).
    pub fn next_version(&self) -> u64 {
        self.version.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Makes later versions exceed `seen` (a version read from the store or a log).
    pub fn observe_version(&self, seen: u64) {
        self.version.fetch_max(seen, Ordering::Relaxed);
    }
}

/// A namespace on this node.
#[derive(Debug)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub config: NamespaceConfig,
    partitions: Arc<[Partition]>,
    /// Store-backed strategies, when the namespace uses a store.
    pub strategy: Option<Arc<Strategy>>,
}

/// The engines' hash seed: random per process, so clients cannot pick keys that all
/// collide in a node's tables (the engine's default seed is fixed for reproducible runs).
fn hash_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SEED.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    })
}

fn build_partitions(
    config: &NamespaceConfig,
    partitions: u32,
    clock: &Arc<dyn Clock>,
) -> Arc<[Partition]> {
    let per = config.memory / u64::from(partitions);
    let start = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    (0..partitions)
        .map(|_| Partition {
            engine: Engine::builder(Capacity::Bytes(per))
                .seed(hash_seed())
                .policy(config.policy)
                // Partitions already spread the lock traffic.
                .shards(1)
                .clock(Arc::clone(clock))
                .build(),
            version: AtomicU64::new(start),
        })
        .collect()
}

impl Namespace {
    /// The partition `p` (the caller computed it with the same partition count).
    ///
    /// # Panics
    /// If `p` is out of range: a bug in the caller.
    #[must_use]
    pub fn partition(&self, p: PartitionId) -> &Partition {
        &self.partitions[p.0 as usize]
    }

    /// All partitions.
    pub fn partitions(&self) -> impl Iterator<Item = &Partition> {
        self.partitions.iter()
    }

    /// Counters summed over partitions.
    #[must_use]
    pub fn stats(&self) -> Stats {
        let mut total = Stats::default();
        for p in self.partitions.iter() {
            total.merge(&p.engine.stats());
        }
        total
    }

    /// The TTL for a write that names none.
    #[must_use]
    pub fn default_ttl(&self) -> Option<Duration> {
        self.config.default_ttl
    }
}

/// Why the keyspace could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("namespace {ns}: {reason}")]
pub struct OpenError {
    /// The namespace.
    pub ns: String,
    /// Why.
    pub reason: String,
}

/// Every namespace on this node.
#[derive(Debug)]
pub struct Keyspace {
    partitions: u32,
    data_dir: Option<PathBuf>,
    clock: Arc<dyn Clock>,
    namespaces: RwLock<HashMap<String, Arc<Namespace>>>,
    /// Bumped by every change to `namespaces`, so an [`NsMemo`] knows when to look again.
    generation: AtomicU64,
    /// Serializes namespace creation and changes.
    admin: tokio::sync::Mutex<BTreeMap<String, NamespaceConfig>>,
}

/// One request stream's last namespace, looked up again only when the namespaces have
/// changed: the request path then takes no lock and no reference count that every
/// request on every thread would write.
#[derive(Debug, Default)]
pub struct NsMemo {
    /// The [`Keyspace`] generation `ns` was looked up at.
    generation: u64,
    ns: Option<Arc<Namespace>>,
}

impl Keyspace {
    /// Builds the engines for namespaces that use no store (tests and embedded use).
    ///
    /// # Panics
    /// If a namespace uses a store: open those with [`Keyspace::open`].
    #[must_use]
    pub fn new(partitions: u32, namespaces: &BTreeMap<String, NamespaceConfig>) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let map = namespaces
            .iter()
            .map(|(name, cfg)| {
                assert!(
                    !cfg.uses_store(),
                    "namespace {name} uses a store: use Keyspace::open"
                );
                (
                    name.clone(),
                    Arc::new(Namespace {
                        name: name.clone(),
                        config: cfg.clone(),
                        partitions: build_partitions(cfg, partitions, &clock),
                        strategy: None,
                    }),
                )
            })
            .collect();
        Self {
            partitions,
            data_dir: None,
            clock,
            namespaces: RwLock::new(map),
            generation: AtomicU64::new(0),
            admin: tokio::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Opens every namespace: the configured ones, overridden or extended by the runtime
    /// changes saved in `data_dir`; opens their stores, replays write-behind logs and
    /// starts the flushers. `base` resolves relative store paths of the config file.
    ///
    /// # Errors
    /// The first namespace that cannot open, with why.
    pub async fn open(
        partitions: u32,
        configured: &BTreeMap<String, NamespaceConfig>,
        data_dir: &Path,
        base: &Path,
    ) -> Result<Self, OpenError> {
        let mut all: BTreeMap<String, (NamespaceConfig, PathBuf)> = configured
            .iter()
            .map(|(n, c)| (n.clone(), (c.clone(), base.to_owned())))
            .collect();
        let saved = load_runtime(data_dir)?;
        for (name, cfg) in &saved {
            if all.contains_key(name) {
                warn!(ns = %name, file = %data_dir.join(RUNTIME_NAMESPACES).display(), "using the namespace's runtime settings (changed with ringctl) instead of the config file's");
            }
            all.insert(name.clone(), (cfg.clone(), data_dir.to_owned()));
        }
        let me = Self {
            partitions,
            data_dir: Some(data_dir.to_owned()),
            clock: Arc::new(SystemClock::new()),
            namespaces: RwLock::new(HashMap::new()),
            generation: AtomicU64::new(0),
            admin: tokio::sync::Mutex::new(saved),
        };
        for (name, (cfg, base)) in all {
            let ns = me
                .build(&name, cfg, &base, None)
                .await
                .map_err(|e| OpenError {
                    ns: name.clone(),
                    reason: e.message,
                })?;
            me.serve(ns);
        }
        Ok(me)
    }

    async fn build(
        &self,
        name: &str,
        mut config: NamespaceConfig,
        base: &Path,
        reuse: Option<&Namespace>,
    ) -> Result<Arc<Namespace>, WireError> {
        let valid = config
            .check(name, self.partitions, base)
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))?;
        let partitions = match reuse {
            Some(old) => {
                for p in old.partitions.iter() {
                    p.engine.set_policy(config.policy);
                    p.engine
                        .set_capacity(config.memory / u64::from(self.partitions));
                }
                Arc::clone(&old.partitions)
            }
            None => build_partitions(&config, self.partitions, &self.clock),
        };
        let strategy = match valid {
            Some(store_config) if config.uses_store() => {
                // A config-file namespace's relative path resolves against the file's
                // directory; pin it, so the settings mean the same when saved with the
                // runtime ones (which resolve against the data directory, on every
                // member alike).
                if self.data_dir.as_deref() != Some(base)
                    && let (Some(store), ringcache_store::Backend::Sqlite { path }) =
                        (config.store.as_mut(), &store_config.backend)
                {
                    store.path = Some(path.clone());
                }
                let reusable = reuse
                    .and_then(|old| old.strategy.as_ref())
                    .filter(|s| s.same_store_and_writes(&config));
                let store = match reusable {
                    Some(s) => s.store().clone(),
                    None => Store::open(&store_config).await.map_err(|e| {
                        WireError::new(
                            ErrorCode::StoreError,
                            format!("namespace {name}: cannot open its store: {e}"),
                        )
                    })?,
                };
                let wal_dir = self.data_dir.as_ref().map(|d| d.join("wal").join(name));
                let strategy = match reusable {
                    Some(old) => old.reconfigured(&config),
                    None => {
                        if config.write == WriteMode::WriteBehind
                            && config.write_behind.wal
                            && wal_dir.is_none()
                        {
                            return Err(WireError::new(
                                ErrorCode::InvalidConfig,
                                "write_behind.wal needs a data directory",
                            ));
                        }
                        Strategy::start(
                            name,
                            &config,
                            store,
                            Arc::clone(&partitions),
                            wal_dir.as_deref(),
                        )
                        .await
                        .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e))?
                    }
                };
                Some(Arc::new(strategy))
            }
            _ => None,
        };
        Ok(Arc::new(Namespace {
            name: name.to_owned(),
            config,
            partitions,
            strategy,
        }))
    }

    /// Creates a namespace from TOML settings.
    ///
    /// # Errors
    /// `already_exists`, `invalid_config` naming the field, `store_error`.
    pub async fn create(&self, name: &str, toml: &str) -> Result<Arc<Namespace>, WireError> {
        let mut saved = self.admin.lock().await;
        if self.namespace(name).is_some() {
            return Err(WireError::new(
                ErrorCode::AlreadyExists,
                format!("namespace {name:?} exists; change it with `ringctl ns alter`"),
            ));
        }
        let config = NamespaceConfig::from_toml(toml).map_err(|e| {
            WireError::new(ErrorCode::InvalidConfig, format!("namespace {name}: {e}"))
        })?;
        self.add(&mut saved, name, config).await
    }

    /// Changes the fields `patch` (TOML) names. Changing the store or the write mode of
    /// a namespace whose write-behind queue is not empty is refused: flush first.
    ///
    /// # Errors
    /// `unknown_namespace`, `invalid_config`, `store_error`, `backpressure` (queue not
    /// empty).
    pub async fn alter(&self, name: &str, patch: &str) -> Result<Arc<Namespace>, WireError> {
        let config = self.patched(name, patch)?;
        self.replace(name, config).await
    }

    /// The settings `name` would have with `patch` applied, checked (nothing changes).
    ///
    /// # Errors
    /// `unknown_namespace`, `invalid_config`.
    pub fn patched(&self, name: &str, patch: &str) -> Result<NamespaceConfig, WireError> {
        let old = self.namespace(name).ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownNamespace,
                format!("unknown namespace {name:?}"),
            )
        })?;
        let config = old.config.patched(patch).map_err(|e| {
            WireError::new(ErrorCode::InvalidConfig, format!("namespace {name}: {e}"))
        })?;
        self.check(name, &config)?;
        Ok(config)
    }

    /// Parses and checks a namespace's complete settings (nothing changes).
    ///
    /// # Errors
    /// `invalid_config` naming the field.
    pub fn parse(&self, name: &str, toml: &str) -> Result<NamespaceConfig, WireError> {
        let config = NamespaceConfig::from_toml(toml).map_err(|e| {
            WireError::new(ErrorCode::InvalidConfig, format!("namespace {name}: {e}"))
        })?;
        self.check(name, &config)?;
        Ok(config)
    }

    fn check(&self, name: &str, config: &NamespaceConfig) -> Result<(), WireError> {
        let base = self.runtime_base()?;
        config
            .check(name, self.partitions, &base)
            .map(|_| ())
            .map_err(|e| WireError::new(ErrorCode::InvalidConfig, e.to_string()))
    }

    /// Creates `name` with `config`, or replaces its settings (the cluster applies
    /// namespace settings committed through Raft this way).
    ///
    /// # Errors
    /// As [`Keyspace::create`] and [`Keyspace::alter`].
    pub async fn put(
        &self,
        name: &str,
        config: NamespaceConfig,
    ) -> Result<Arc<Namespace>, WireError> {
        if self.namespace(name).is_some() {
            return self.replace(name, config).await;
        }
        let mut saved = self.admin.lock().await;
        self.add(&mut saved, name, config).await
    }

    async fn replace(
        &self,
        name: &str,
        config: NamespaceConfig,
    ) -> Result<Arc<Namespace>, WireError> {
        let mut saved = self.admin.lock().await;
        let old = self.namespace(name).ok_or_else(|| {
            WireError::new(
                ErrorCode::UnknownNamespace,
                format!("unknown namespace {name:?}"),
            )
        })?;
        let keeps_writes = old
            .strategy
            .as_ref()
            .is_none_or(|s| s.same_store_and_writes(&config));
        if !keeps_writes
            && let Some(wb) = old.strategy.as_ref().and_then(|s| s.write_behind())
            && wb.depth() > 0
        {
            return Err(WireError::new(
                ErrorCode::Backpressure,
                format!(
                    "namespace {name} has {} write-behind writes not yet in its store; run `ringctl writebehind flush {name}` and retry",
                    wb.depth()
                ),
            ));
        }
        let base = self.runtime_base()?;
        let ns = self.build(name, config, &base, Some(&old)).await?;
        if !keeps_writes && let Some(s) = &old.strategy {
            s.stop();
        }
        self.install(&mut saved, &ns)?;
        info!(ns = %name, "namespace changed");
        Ok(ns)
    }

    /// Builds a new namespace and serves it (the caller holds the admin lock).
    async fn add(
        &self,
        saved: &mut BTreeMap<String, NamespaceConfig>,
        name: &str,
        config: NamespaceConfig,
    ) -> Result<Arc<Namespace>, WireError> {
        let base = self.runtime_base()?;
        let ns = self.build(name, config, &base, None).await?;
        self.install(saved, &ns)?;
        info!(ns = %name, "namespace created");
        Ok(ns)
    }

    /// Saves a created or changed namespace with the runtime ones and serves it.
    fn install(
        &self,
        saved: &mut BTreeMap<String, NamespaceConfig>,
        ns: &Arc<Namespace>,
    ) -> Result<(), WireError> {
        saved.insert(ns.name.clone(), ns.config.clone());
        self.save(saved)?;
        self.serve(Arc::clone(ns));
        Ok(())
    }

    /// Serves `ns` (replacing the namespace of that name, if any).
    fn serve(&self, ns: Arc<Namespace>) {
        let mut map = self.namespaces.write();
        map.insert(ns.name.clone(), ns);
        // Inside the lock, so the generation never runs behind the map it stands for.
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn runtime_base(&self) -> Result<PathBuf, WireError> {
        self.data_dir.clone().ok_or_else(|| {
            WireError::new(
                ErrorCode::Unsupported,
                "this node has no data directory for runtime namespace changes",
            )
        })
    }

    fn save(&self, saved: &BTreeMap<String, NamespaceConfig>) -> Result<(), WireError> {
        let Some(dir) = &self.data_dir else {
            return Ok(());
        };
        let text = toml::to_string(saved).map_err(|e| {
            WireError::new(
                ErrorCode::Internal,
                format!("cannot render namespaces: {e}"),
            )
        })?;
        let path = dir.join(RUNTIME_NAMESPACES);
        let tmp = dir.join(format!("{RUNTIME_NAMESPACES}.tmp"));
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| {
                WireError::new(
                    ErrorCode::Internal,
                    format!("cannot save {}: {e}", path.display()),
                )
            })
    }

    /// Drains every write-behind queue (bounded by each namespace's `drain_timeout`).
    pub async fn shutdown(&self) {
        let all: Vec<_> = self.namespaces.read().values().cloned().collect();
        for ns in all {
            if let Some(s) = &ns.strategy {
                s.shutdown(&ns.name).await;
            }
        }
    }

    /// One page of partition `p`'s entries, every namespace, in (namespace, key) order:
    /// cached values with their version and remaining TTL, and queued write-behind
    /// writes (flagged `queued`; a queued delete has no value). The caller has fenced
    /// the partition, so the pages form one consistent copy.
    #[must_use]
    pub fn dump(
        &self,
        p: u32,
        after: Option<&DumpCursor>,
        limit: u32,
    ) -> (Vec<DumpEntry>, Option<DumpCursor>) {
        let mut out = Vec::new();
        for ns in self.namespaces() {
            if after.is_some_and(|c| ns.name < c.ns) {
                continue;
            }
            let Some(part) = ns.partitions.get(p as usize) else {
                continue;
            };
            let pending: HashMap<Bytes, crate::writebehind::Pending> = ns
                .strategy
                .as_ref()
                .and_then(|s| s.write_behind())
                .map(|wb| wb.pending_all(p as usize).into_iter().collect())
                .unwrap_or_default();
            let mut entries: BTreeMap<Bytes, DumpEntry> = BTreeMap::new();
            part.engine.for_each(|k, v| {
                if v.flags & crate::strategy::NEGATIVE != 0 {
                    return;
                }
                let key = Bytes::copy_from_slice(k);
                let queued = pending.get(&key).is_some_and(|q| q.version == v.version);
                entries.insert(
                    key.clone(),
                    DumpEntry {
                        ns: ns.name.clone(),
                        key,
                        value: Some(v.value.clone()),
                        version: v.version,
                        ttl_ms: v
                            .expires_in
                            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                        queued,
                    },
                );
            });
            // Queued writes the cache no longer shows (deletes, expired or newer).
            for (key, q) in pending {
                let shown = entries.get(&key).is_some_and(|e| e.version >= q.version);
                if !shown {
                    entries.insert(
                        key.clone(),
                        DumpEntry {
                            ns: ns.name.clone(),
                            key,
                            value: q.value,
                            version: q.version,
                            ttl_ms: None,
                            queued: true,
                        },
                    );
                }
            }
            let start = match after {
                Some(c) if c.ns == ns.name => std::ops::Bound::Excluded(c.key.clone()),
                _ => std::ops::Bound::Unbounded,
            };
            for (_, e) in entries.range((start, std::ops::Bound::Unbounded)) {
                if out.len() >= limit as usize {
                    let last: &DumpEntry = out.last().unwrap_or(e);
                    let cursor = DumpCursor {
                        ns: last.ns.clone(),
                        key: last.key.clone(),
                    };
                    return (out, Some(cursor));
                }
                out.push(e.clone());
            }
        }
        (out, None)
    }

    /// Stores entries copied from partition `p`'s previous owner: values at their
    /// versions and TTLs; queued write-behind writes go into this node's queue (and log).
    ///
    /// # Errors
    /// An unknown namespace, or an entry the engine refuses.
    pub async fn load(&self, p: u32, entries: Vec<DumpEntry>) -> Result<(), WireError> {
        for e in entries {
            let ns = self.namespace(&e.ns).ok_or_else(|| {
                WireError::new(
                    ErrorCode::UnknownNamespace,
                    format!("moved entry of unknown namespace {:?}", e.ns),
                )
            })?;
            let Some(part) = ns.partitions.get(p as usize) else {
                return Err(WireError::new(
                    ErrorCode::Malformed,
                    format!("no partition {p}"),
                ));
            };
            part.observe_version(e.version);
            let ttl = e.ttl_ms.map(Duration::from_millis);
            match (e.queued, ns.strategy.as_ref()) {
                (true, Some(s)) if s.write_behind().is_some() => {
                    s.adopt(p as usize, e.key, e.value, ttl, e.version).await?;
                }
                _ => {
                    if let Some(value) = e.value {
                        let mut opts = InsertOptions::new().version(e.version);
                        opts.ttl = ttl;
                        let len = e.key.len() + value.len();
                        part.engine
                            .insert(&e.key, value, &opts)
                            .map_err(|err| crate::handler::insert_error(err, len))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Forgets partition `p`'s cached data (this node no longer owns it). Queued
    /// write-behind writes stay queued: the new owner has copies, and version-guarded
    /// store writes make the double flush harmless. Returns the entries dropped.
    pub fn drop_partition(&self, p: u32) -> usize {
        self.namespaces()
            .iter()
            .filter_map(|ns| ns.partitions.get(p as usize))
            .map(|part| {
                let n = part.engine.len();
                part.engine.clear();
                n
            })
            .sum()
    }

    /// The number of partitions.
    #[must_use]
    pub fn partition_count(&self) -> u32 {
        self.partitions
    }

    /// A namespace by name.
    #[must_use]
    pub fn namespace(&self, name: &str) -> Option<Arc<Namespace>> {
        self.namespaces.read().get(name).cloned()
    }

    /// As [`Keyspace::namespace`], through a stream's `memo` of its last namespace.
    pub fn namespace_memo<'m>(
        &self,
        name: &str,
        memo: &'m mut NsMemo,
    ) -> Option<&'m Arc<Namespace>> {
        let generation = self.generation.load(Ordering::SeqCst);
        let fresh =
            memo.generation == generation && memo.ns.as_ref().is_some_and(|ns| ns.name == name);
        if !fresh {
            memo.ns = self.namespace(name);
            memo.generation = generation;
        }
        memo.ns.as_ref()
    }

    /// All namespaces, by name.
    #[must_use]
    pub fn namespaces(&self) -> Vec<Arc<Namespace>> {
        let mut v: Vec<_> = self.namespaces.read().values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }
}

fn load_runtime(data_dir: &Path) -> Result<BTreeMap<String, NamespaceConfig>, OpenError> {
    let path = data_dir.join(RUNTIME_NAMESPACES);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(OpenError {
                ns: "*".into(),
                reason: format!("cannot read {}: {e}", path.display()),
            });
        }
    };
    toml::from_str(&text).map_err(|e| OpenError {
        ns: "*".into(),
        reason: format!("{}: {}", path.display(), e.message().replace('\n', " ")),
    })
}
