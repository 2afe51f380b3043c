//! What the request loops ask for: the operation, the key (uniform or Zipf), the value.
//!
//! Every loop has its own [`Picker`] seeded from (seed, connection, loop), so the
//! Ringcache and Redis runs of one invocation issue the same sequence per loop.

use std::sync::Arc;

use bytes::Bytes;

use super::resp::push_decimal;
use crate::cli::{BenchOp, KeyDist};

/// One request's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum OpKind {
    /// A read.
    Get,
    /// A write of the workload's value.
    Set,
}

impl OpKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::Set => "set",
        }
    }

    /// Index into per-op arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Self::Get => 0,
            Self::Set => 1,
        }
    }

    pub(crate) const ALL: [Self; 2] = [Self::Get, Self::Set];
}

/// The workload, shared by every loop of both systems.
#[derive(Debug)]
pub(crate) struct Workload {
    /// Keys are `key:0 .. key:<keyspace-1>`.
    pub(crate) keyspace: u64,
    /// What writes store.
    pub(crate) value: Bytes,
    /// Share of GETs: 1 for `--op get`, 0 for `--op set`.
    pub(crate) get_ratio: f64,
    pub(crate) op: BenchOp,
    dist: Dist,
}

#[derive(Debug)]
enum Dist {
    Uniform,
    Zipf(Zipf),
}

impl Workload {
    pub(crate) fn new(
        keyspace: u64,
        value_size: usize,
        op: BenchOp,
        get_ratio: f64,
        dist: KeyDist,
        zipf_alpha: f64,
    ) -> Self {
        let get_ratio = match op {
            BenchOp::Get => 1.0,
            BenchOp::Set => 0.0,
            BenchOp::Mixed => get_ratio,
        };
        let dist = match dist {
            KeyDist::Uniform => Dist::Uniform,
            KeyDist::Zipf => Dist::Zipf(Zipf::new(keyspace, zipf_alpha)),
        };
        Self {
            keyspace,
            value: value(value_size),
            get_ratio,
            op,
            dist,
        }
    }

    /// The chooser of request loop `lp` of connection `conn`.
    pub(crate) fn picker(self: &Arc<Self>, seed: u64, conn: u64, lp: u64) -> Picker {
        let mut mix = SplitMix64(seed);
        let a = mix.next_u64() ^ conn.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let b = SplitMix64(a).next_u64() ^ lp.wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
        Picker {
            rng: SplitMix64(b),
            workload: Arc::clone(self),
        }
    }
}

/// Printable, deterministic bytes: the same value on both systems.
fn value(size: usize) -> Bytes {
    (0..size)
        .map(|i| {
            // i % 26 < 26: the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let c = (i % 26) as u8;
            b'a' + c
        })
        .collect::<Vec<u8>>()
        .into()
}

/// Writes `key:<n>` into `out` (cleared first).
/// Claims the next `batch` key numbers of a fill shared by several tasks; `None` once
/// the keyspace is covered.
pub(crate) fn next_batch(
    next: &std::sync::atomic::AtomicU64,
    batch: u64,
    keyspace: u64,
) -> Option<std::ops::Range<u64>> {
    let first = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
    (first < keyspace).then(|| first..(first + batch).min(keyspace))
}

pub(crate) fn write_key(n: u64, out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(b"key:");
    push_decimal(n, out);
}

/// One loop's chooser of operations and keys.
#[derive(Debug)]
pub(crate) struct Picker {
    rng: SplitMix64,
    workload: Arc<Workload>,
}

impl Picker {
    /// The next request: its kind and key number.
    pub(crate) fn next(&mut self) -> (OpKind, u64) {
        let w = &*self.workload;
        let op = match w.op {
            BenchOp::Get => OpKind::Get,
            BenchOp::Set => OpKind::Set,
            BenchOp::Mixed => {
                if self.rng.next_f64() < w.get_ratio {
                    OpKind::Get
                } else {
                    OpKind::Set
                }
            }
        };
        let key = match &w.dist {
            Dist::Uniform => self.rng.below(w.keyspace),
            Dist::Zipf(z) => z.sample(&mut self.rng) - 1,
        };
        (op, key)
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, good enough to pick keys, and
/// no dependency.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub(crate) fn next_f64(&mut self) -> f64 {
        // 53 random bits: exactly representable.
        #[allow(clippy::cast_precision_loss)]
        let top = (self.next_u64() >> 11) as f64;
        top * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n) (Lemire's multiply-shift; the bias is below 2^-32 for any
    /// keyspace this tool takes).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        let wide = u128::from(self.next_u64()) * u128::from(n);
        // The high half of a u64 x u64 product fits a u64.
        #[allow(clippy::cast_possible_truncation)]
        let high = (wide >> 64) as u64;
        high
    }
}

/// Zipf over ranks 1..=n with exponent `s`: P(k) proportional to 1/k^s. Rejection
/// inversion (Hörmann and Derflinger, "Rejection-inversion to generate variates from
/// monotone discrete distributions", 1996), as in Apache Commons' sampler: O(1) per
/// sample and no table, for any s > 0 (s = 1 included).
#[derive(Debug, Clone)]
pub(crate) struct Zipf {
    n: f64,
    s: f64,
    h_integral_x1: f64,
    h_integral_n: f64,
    threshold: f64,
}

impl Zipf {
    /// # Panics
    /// If `n` is 0 or `s` is not positive (the command line rules both out).
    pub(crate) fn new(n: u64, s: f64) -> Self {
        assert!(n >= 1 && s > 0.0, "Zipf needs n >= 1 and s > 0");
        // Keyspaces are at most 10^9: exact in an f64.
        #[allow(clippy::cast_precision_loss)]
        let n = n as f64;
        let h_integral_x1 = h_integral(1.5, s) - 1.0;
        let h_integral_n = h_integral(n + 0.5, s);
        let threshold = 2.0 - h_integral_inverse(h_integral(2.5, s) - h(2.0, s), s);
        Self {
            n,
            s,
            h_integral_x1,
            h_integral_n,
            threshold,
        }
    }

    /// A rank in 1..=n.
    pub(crate) fn sample(&self, rng: &mut SplitMix64) -> u64 {
        loop {
            let u = self.h_integral_n + rng.next_f64() * (self.h_integral_x1 - self.h_integral_n);
            let x = h_integral_inverse(u, self.s);
            let k = (x + 0.5).floor().clamp(1.0, self.n);
            if k - x <= self.threshold || u >= h_integral(k + 0.5, self.s) - h(k, self.s) {
                // 1 <= k <= n <= 10^9: the cast is exact.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                return k as u64;
            }
        }
    }
}

fn h(x: f64, s: f64) -> f64 {
    (-s * x.ln()).exp()
}

fn h_integral(x: f64, s: f64) -> f64 {
    let log_x = x.ln();
    helper2((1.0 - s) * log_x) * log_x
}

fn h_integral_inverse(x: f64, s: f64) -> f64 {
    let t = (x * (1.0 - s)).max(-1.0);
    (helper1(t) * x).exp()
}

/// ln(1 + x) / x, accurate near 0.
fn helper1(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.ln_1p() / x
    } else {
        1.0 - x * (0.5 - x * (1.0 / 3.0 - 0.25 * x))
    }
}

/// (e^x - 1) / x, accurate near 0.
fn helper2(x: f64) -> f64 {
    if x.abs() > 1e-8 {
        x.exp_m1() / x
    } else {
        1.0 + x * 0.5 * (1.0 + x * (1.0 / 3.0) * (1.0 + 0.25 * x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_key_colon_decimal() {
        let mut k = Vec::new();
        write_key(0, &mut k);
        assert_eq!(k, b"key:0");
        write_key(999_999, &mut k);
        assert_eq!(k, b"key:999999");
    }

    #[test]
    fn uniform_stays_in_range_and_covers_it() {
        let mut rng = SplitMix64(7);
        let mut seen = [0u32; 10];
        for _ in 0..10_000 {
            let k = rng.below(10);
            seen[usize::try_from(k).expect("small")] += 1;
        }
        assert!(seen.iter().all(|&c| (800..1200).contains(&c)), "{seen:?}");
        for _ in 0..1000 {
            let f = rng.next_f64();
            assert!((0.0..1.0).contains(&f));
        }
    }

    /// Empirical frequencies of the first ranks against the exact probabilities.
    fn check_zipf(n: u64, s: f64) {
        let z = Zipf::new(n, s);
        let mut rng = SplitMix64(42);
        let draws = 200_000;
        let mut counts = vec![0u32; usize::try_from(n).expect("small") + 1];
        for _ in 0..draws {
            let k = z.sample(&mut rng);
            assert!((1..=n).contains(&k), "{k}");
            counts[usize::try_from(k).expect("small")] += 1;
        }
        #[allow(clippy::cast_precision_loss)]
        let norm: f64 = (1..=n).map(|k| (k as f64).powf(-s)).sum();
        for k in 1..=5u32 {
            let p = f64::from(k).powf(-s) / norm;
            let got = f64::from(counts[k as usize]) / f64::from(draws);
            assert!(
                (got - p).abs() < 0.01 + 0.05 * p,
                "n={n} s={s} rank {k}: {got:.4} vs {p:.4}"
            );
        }
    }

    #[test]
    fn zipf_matches_its_probabilities() {
        check_zipf(1000, 0.99);
        check_zipf(1000, 1.0);
        check_zipf(100, 1.5);
        check_zipf(50, 0.5);
        let one = Zipf::new(1, 0.99);
        assert_eq!(one.sample(&mut SplitMix64(1)), 1);
    }

    #[test]
    fn loops_get_distinct_but_reproducible_sequences() {
        let w = Arc::new(Workload::new(
            1000,
            8,
            BenchOp::Mixed,
            0.5,
            KeyDist::Uniform,
            0.99,
        ));
        let run = |conn, lp| {
            let mut p = w.picker(1, conn, lp);
            (0..20).map(|_| p.next()).collect::<Vec<_>>()
        };
        assert_eq!(run(0, 0), run(0, 0));
        assert_ne!(run(0, 0), run(0, 1));
        assert_ne!(run(0, 1), run(1, 0));
        let ops = run(3, 3);
        assert!(ops.iter().any(|(o, _)| *o == OpKind::Get));
        assert!(ops.iter().any(|(o, _)| *o == OpKind::Set));
        assert_eq!(&w.value[..], b"abcdefgh");
    }
}
