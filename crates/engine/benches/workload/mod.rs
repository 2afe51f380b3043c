//! The engine speed workload, shared by the criterion bench (`benches/engine.rs`) and
//! the instruction-count example (`examples/opcount.rs`): Zipf(1.0) over 1,000,000 8-byte
//! keys, a cache of 1% of them, get-or-insert of a static 16-byte value, and the
//! get-or-insert adapters for the engine, quick_cache and moka.
#![allow(dead_code)] // each user takes part of it

use bytes::Bytes;
use ringcache_engine::{Engine, InsertOptions};

/// Distinct keys.
pub(crate) const KEYSPACE: usize = 1_000_000;
/// Zipf exponent.
pub(crate) const ALPHA: f64 = 1.0;
/// Requests per precomputed sequence.
pub(crate) const REQUESTS: usize = 2_000_000;
/// Cache capacity in entries: 1% of the keyspace.
pub(crate) const CAPACITY: u64 = KEYSPACE as u64 / 100;

/// The value every insert stores: static, so cloning it is a copy of two words.
pub(crate) static VALUE: [u8; 16] = [0xA5; 16];

/// SplitMix64: a small, fast, seedable generator; enough for drawing a workload.
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// A bounded Zipf over ranks `0..n` (rank 0 the most popular) by inverse-CDF lookup.
pub(crate) struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub(crate) fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for k in 1..=n {
            sum += (k as f64).powf(-alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    fn sample(&self, rng: &mut SplitMix64) -> usize {
        let u = rng.next_f64();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// A precomputed request sequence of 8-byte keys. Ranks are scrambled by an odd
/// multiplier (a bijection), so popular keys are not small consecutive integers.
pub(crate) fn sequence(zipf: &Zipf, n: usize, seed: u64) -> Vec<[u8; 8]> {
    let mut rng = SplitMix64(seed);
    (0..n)
        .map(|_| {
            (zipf.sample(&mut rng) as u64)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .to_le_bytes()
        })
        .collect()
}

/// A cache under benchmark. `get_or_insert` MUST do one lookup and, on a miss, one
/// insert; it returns whether the lookup hit.
pub(crate) trait BenchCache: Sync {
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool;
}

impl BenchCache for Engine {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        // An entry-mode insert of a 16-byte value cannot be too large; any error would
        // only mean it was not stored, which the next get reports as a miss.
        let _ = self.insert(key, value.clone(), &InsertOptions::new());
        false
    }
}

/// The engine through its one-lock `get_or_insert_with` (the node's read-through path
/// uses the same call), next to the lookup-then-insert form above.
pub(crate) struct Fused(pub(crate) Engine);

impl BenchCache for Fused {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        matches!(
            self.0
                .get_or_insert_with(key, &InsertOptions::new(), || value.clone()),
            Ok((_, true))
        )
    }
}

impl BenchCache for quick_cache::sync::Cache<Box<[u8]>, Bytes> {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        self.insert(key.into(), value.clone());
        false
    }
}

impl BenchCache for moka::sync::Cache<Box<[u8]>, Bytes> {
    #[inline]
    fn get_or_insert(&self, key: &[u8], value: &Bytes) -> bool {
        if self.get(key).is_some() {
            return true;
        }
        self.insert(key.into(), value.clone());
        false
    }
}
