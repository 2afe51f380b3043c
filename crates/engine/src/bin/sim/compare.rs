//! The reference caches (feature `compare`): the same trace through quick_cache and moka.
//!
//! Both are keyed by owned byte strings like the engine (`Box<[u8]>`, looked up by
//! `&[u8]`) and store the object's size as the value, which their weighers read.

use ringcache_engine::InsertError;

use crate::args::Mode;
use crate::replay::{Admission, Counts, SimCache};

/// quick_cache's weigher: 1 per object, or its size.
#[derive(Debug, Clone, Copy)]
struct SizeWeighter {
    bytes_mode: bool,
}

impl quick_cache::Weighter<Box<[u8]>, u32> for SizeWeighter {
    #[inline]
    fn weight(&self, _key: &Box<[u8]>, size: &u32) -> u64 {
        // quick_cache never evicts a zero-weight item; such items also take no room,
        // so they behave like the engine's zero-charge entries.
        if self.bytes_mode { u64::from(*size) } else { 1 }
    }
}

/// `quick_cache::sync::Cache` under the simulator.
pub(crate) struct QuickCacheSim {
    cache: quick_cache::sync::Cache<Box<[u8]>, u32, SizeWeighter>,
    capacity: u64,
}

impl QuickCacheSim {
    /// A cache of `capacity` weight with `shards` shards (quick_cache may use fewer for a
    /// small cache). `mean_size` is the trace's mean object size: quick_cache sizes its
    /// table and its ghost queue from the expected number of items.
    pub(crate) fn new(
        mode: Mode,
        capacity: u64,
        shards: usize,
        mean_size: f64,
    ) -> Result<Self, String> {
        let bytes_mode = mode == Mode::Bytes;
        let items = if bytes_mode {
            (capacity as f64 / mean_size.max(1.0)).ceil().max(1.0) as usize
        } else {
            usize::try_from(capacity).unwrap_or(usize::MAX)
        };
        let options = quick_cache::OptionsBuilder::new()
            .shards(shards)
            .estimated_items_capacity(items)
            .weight_capacity(capacity)
            .build()
            .map_err(|e| format!("quick_cache options: {e}"))?;
        let cache = quick_cache::sync::Cache::with_options(
            options,
            SizeWeighter { bytes_mode },
            quick_cache::DefaultHashBuilder::default(),
            quick_cache::sync::DefaultLifecycle::default(),
        );
        Ok(Self { cache, capacity })
    }
}

impl SimCache for QuickCacheSim {
    #[inline]
    fn get(&self, key: &[u8]) -> bool {
        self.cache.get(key).is_some()
    }

    #[inline]
    fn admit(&self, key: &[u8], size: u32, charge: u64) -> Result<Admission, InsertError> {
        // quick_cache drops an item heavier than its hot section (97% of a shard) without
        // a word; count those heavier than a whole shard as too large, like the engine.
        if charge > self.cache.shard_capacity() {
            return Ok(Admission::TooLarge);
        }
        self.cache.insert(key.into(), size);
        Ok(Admission::Stored)
    }

    fn verify(&self, _counts: &Counts) -> Vec<String> {
        let w = self.cache.weight();
        if w > self.capacity {
            vec![format!(
                "quick_cache holds weight {w} of a bound of {}",
                self.capacity
            )]
        } else {
            Vec::new()
        }
    }
}

/// `moka::sync::Cache` under the simulator.
///
/// moka applies evictions in batches ("pending tasks") that callers run every so many
/// writes, so between batches it may be over its bound. The simulator runs them after
/// every insert: moka then holds no more than the others do, at a cost to its
/// requests/s that the table shows and that production use would not pay.
pub(crate) struct MokaSim {
    cache: moka::sync::Cache<Box<[u8]>, u32>,
    capacity: u64,
}

impl MokaSim {
    /// A cache bounded by `capacity` entries or bytes.
    pub(crate) fn new(mode: Mode, capacity: u64) -> Self {
        let builder = moka::sync::Cache::builder().max_capacity(capacity);
        let cache = match mode {
            Mode::Objects => builder.build(),
            Mode::Bytes => builder.weigher(|_key, size: &u32| *size).build(),
        };
        Self { cache, capacity }
    }
}

impl SimCache for MokaSim {
    #[inline]
    fn get(&self, key: &[u8]) -> bool {
        self.cache.get(key).is_some()
    }

    #[inline]
    fn admit(&self, key: &[u8], size: u32, charge: u64) -> Result<Admission, InsertError> {
        if charge > self.capacity {
            return Ok(Admission::TooLarge);
        }
        self.cache.insert(key.into(), size);
        self.cache.run_pending_tasks();
        Ok(Admission::Stored)
    }

    fn verify(&self, _counts: &Counts) -> Vec<String> {
        self.cache.run_pending_tasks();
        let w = self.cache.weighted_size();
        if w > self.capacity {
            vec![format!(
                "moka holds weight {w} of a bound of {}",
                self.capacity
            )]
        } else {
            Vec::new()
        }
    }
}
