//! Namespaces and their partitions: one eviction engine per (namespace, partition).
//!
//! Memory is keyed by partition from the start, so the cluster work only changes which
//! partitions a node holds, never how a partition stores its data.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ringcache_engine::{Capacity, Clock, Engine, Stats, SystemClock};
use ringcache_proto::PartitionId;

use crate::config::NamespaceConfig;

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
}

/// A namespace on this node.
#[derive(Debug)]
pub struct Namespace {
    /// Its name.
    pub name: String,
    /// Its settings.
    pub config: NamespaceConfig,
    partitions: Box<[Partition]>,
}

impl Namespace {
    fn new(name: &str, config: NamespaceConfig, partitions: u32, clock: &Arc<dyn Clock>) -> Self {
        let per = config.memory / u64::from(partitions);
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        let partitions = (0..partitions)
            .map(|_| Partition {
                engine: Engine::builder(Capacity::Bytes(per))
                    .policy(config.policy)
                    // Partitions already spread the lock traffic.
                    .shards(1)
                    .clock(Arc::clone(clock))
                    .build(),
                version: AtomicU64::new(start),
            })
            .collect();
        Self {
            name: name.to_owned(),
            config,
            partitions,
        }
    }

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

/// Every namespace on this node.
#[derive(Debug)]
pub struct Keyspace {
    partitions: u32,
    namespaces: HashMap<String, Arc<Namespace>>,
}

impl Keyspace {
    /// Builds the engines for every configured namespace.
    #[must_use]
    pub fn new(
        partitions: u32,
        namespaces: &std::collections::BTreeMap<String, NamespaceConfig>,
    ) -> Self {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let namespaces = namespaces
            .iter()
            .map(|(name, cfg)| {
                (
                    name.clone(),
                    Arc::new(Namespace::new(name, cfg.clone(), partitions, &clock)),
                )
            })
            .collect();
        Self {
            partitions,
            namespaces,
        }
    }

    /// The number of partitions.
    #[must_use]
    pub fn partition_count(&self) -> u32 {
        self.partitions
    }

    /// A namespace by name.
    #[must_use]
    pub fn namespace(&self, name: &str) -> Option<&Arc<Namespace>> {
        self.namespaces.get(name)
    }

    /// All namespaces, by name.
    pub fn namespaces(&self) -> impl Iterator<Item = &Arc<Namespace>> {
        let mut v: Vec<_> = self.namespaces.values().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v.into_iter()
    }
}
