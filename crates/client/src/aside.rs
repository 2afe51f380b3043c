//! Cache-aside with stampede protection: `get_or_load`.
//!
//! - Single flight: concurrent callers in this process for one key run the loader once;
//!   the others wait for its result (a failed load lets the next waiter try).
//! - XFetch (Vattani, Chierichetti, Lowenstein, "Optimal probabilistic cache stampede
//!   prevention", VLDB 2015): a hit is reloaded early with a probability that grows as
//!   expiry nears, scaled by how long the last load took, so one caller refreshes before
//!   the crowd finds the key expired.
//! - TTL jitter: stored TTLs are spread by ±`jitter`, so keys loaded together do not
//!   expire together.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::OnceCell;

use crate::client::{Client, SetOptions};
use crate::error::Error;

/// Loads remembered for XFetch's "how long does a recompute take"; beyond this the
/// oldest half is forgotten.
const MAX_REMEMBERED: usize = 4096;

/// Options of [`Client::get_or_load`].
#[derive(Debug, Clone, Copy)]
pub struct LoadOptions {
    /// TTL of the stored value.
    pub ttl: Duration,
    /// Spread the TTL uniformly by ± this fraction (0.0 to 0.5). Default 0.1.
    pub jitter: f64,
    /// XFetch's β: 0 disables early refresh, 1 is the paper's optimum, above 1 refreshes
    /// earlier. Default 1.0.
    pub beta: f64,
}

impl LoadOptions {
    /// `ttl` with the default jitter and β.
    #[must_use]
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            jitter: 0.1,
            beta: 1.0,
        }
    }
}

/// Why `get_or_load` failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    /// The loader failed (nothing was cached).
    #[error("loader failed: {0}")]
    Loader(E),
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] Error),
}

type Key = (String, Bytes);

/// In-flight loads and recent load durations.
#[derive(Debug, Default)]
pub(crate) struct Flights {
    inflight: Mutex<HashMap<Key, Arc<OnceCell<Bytes>>>>,
    cost: Mutex<HashMap<Key, Duration>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Only map operations happen under these locks; a poisoned map is still consistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A uniform sample in (0, 1] from a cheap thread-local generator.
fn uniform() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0x9E37_79B9, |d| d.as_nanos() as u64)
                | 1,
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        ((x >> 11) as f64 + 1.0) / (1u64 << 53) as f64
    })
}

/// XFetch: refresh now if `now - cost * beta * ln(u) >= expiry`, i.e. if
/// `cost * beta * -ln(u) >= remaining`.
pub(crate) fn refresh_early(remaining: Duration, cost: Duration, beta: f64) -> bool {
    beta > 0.0 && cost.as_secs_f64() * beta * -uniform().ln() >= remaining.as_secs_f64()
}

fn jittered(ttl: Duration, jitter: f64) -> Duration {
    let j = jitter.clamp(0.0, 0.5);
    ttl.mul_f64(1.0 - j + 2.0 * j * uniform())
}

impl Client {
    /// Returns the cached value of `key`, or runs `loader`, stores its result with
    /// `opts.ttl` (jittered) and returns it. Concurrent callers in this process for the
    /// same key share one loader run; a hit close to expiry may be refreshed early
    /// (XFetch), in which case a failing refresh still returns the cached value.
    ///
    /// # Errors
    /// [`LoadError::Loader`] when the loader fails (nothing is cached), or
    /// [`LoadError::Cache`] when the cache does.
    pub async fn get_or_load<F, Fut, E>(
        &self,
        ns: &str,
        key: impl AsRef<[u8]>,
        opts: LoadOptions,
        loader: F,
    ) -> Result<Bytes, LoadError<E>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, E>>,
    {
        let key: Key = (ns.to_owned(), Bytes::copy_from_slice(key.as_ref()));
        let cached = self.get(ns, &key.1).await?;
        if let Some(entry) = &cached {
            let cost = lock(&self.flights().cost).get(&key).copied();
            let early = match (entry.ttl_ms, cost) {
                (Some(left), Some(cost)) => {
                    refresh_early(Duration::from_millis(left), cost, opts.beta)
                }
                _ => false,
            };
            if !early {
                return Ok(entry.value.clone());
            }
        }
        let cell = Arc::clone(
            lock(&self.flights().inflight)
                .entry(key.clone())
                .or_default(),
        );
        let result = cell
            .get_or_try_init(|| async {
                let started = Instant::now();
                let value = loader().await.map_err(LoadError::Loader)?;
                self.remember_cost(&key, started.elapsed());
                self.set(
                    ns,
                    &key.1,
                    value.clone(),
                    SetOptions::ttl(jittered(opts.ttl, opts.jitter)),
                )
                .await?;
                Ok(value)
            })
            .await
            .cloned();
        {
            let mut inflight = lock(&self.flights().inflight);
            if inflight.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(&key);
            }
        }
        match (result, cached) {
            (Ok(v), _) => Ok(v),
            // An early refresh failed: the cached value is still good.
            (Err(_), Some(entry)) => Ok(entry.value),
            (Err(e), None) => Err(e),
        }
    }

    fn remember_cost(&self, key: &Key, cost: Duration) {
        let mut costs = lock(&self.flights().cost);
        if costs.len() >= MAX_REMEMBERED {
            let drop: Vec<Key> = costs.keys().take(MAX_REMEMBERED / 2).cloned().collect();
            for k in drop {
                costs.remove(&k);
            }
        }
        costs.insert(key.clone(), cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xfetch_never_refreshes_far_from_expiry_and_usually_does_at_it() {
        let cost = Duration::from_millis(100);
        let far = (0..10_000)
            .filter(|_| refresh_early(Duration::from_secs(60), cost, 1.0))
            .count();
        assert_eq!(far, 0, "60 s left vs a 100 ms load: P = e^-600");
        let near = (0..10_000)
            .filter(|_| refresh_early(Duration::from_millis(1), cost, 1.0))
            .count();
        assert!(near > 9_800, "1 ms left: almost always ({near})");
        let off = (0..10_000)
            .filter(|_| refresh_early(Duration::ZERO, cost, 0.0))
            .count();
        assert_eq!(off, 0, "beta 0 disables it");
    }

    #[test]
    fn jitter_stays_within_its_band() {
        let ttl = Duration::from_secs(100);
        for _ in 0..10_000 {
            let t = jittered(ttl, 0.1);
            assert!(
                t >= Duration::from_secs(90) && t <= Duration::from_secs(110),
                "{t:?}"
            );
        }
        assert_eq!(jittered(ttl, 0.0), ttl);
    }
}
