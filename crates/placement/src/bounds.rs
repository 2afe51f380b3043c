//! Per-member primary counts: the cap (bounded loads), the floor and the fair share.
//!
//! Integer arithmetic only (the load factor enters as parts per million), so every
//! build on every platform computes the same bounds.

use ringcache_proto::NodeId;

/// Parts per million: the load factor's resolution.
const PPM: u128 = 1_000_000;

/// The load factor in parts per million (`1.15` -> `1_150_000`). The caller has
/// validated that it is finite and in `1.0..=MAX_LOAD_FACTOR`.
pub(crate) fn load_ppm(load_factor: f64) -> u64 {
    (load_factor * 1e6).round() as u64
}

/// For member `i` with fair share `ideal_i = partitions * w_i / W`:
/// - `cap[i] = ceil(load_factor * ideal_i)`: most primaries it may own;
/// - `floor[i] = floor(ideal_i / load_factor)`: below this, orphans go to it first;
/// - `target[i] = round(ideal_i)` (half up): what a new member pulls up to.
#[derive(Debug)]
pub(crate) struct Bounds {
    pub(crate) cap: Vec<u32>,
    pub(crate) floor: Vec<u32>,
    pub(crate) target: Vec<u32>,
}

impl Bounds {
    pub(crate) fn new(members: &[(NodeId, u32)], partitions: u32, load_ppm: u64) -> Self {
        let total: u128 = members.iter().map(|&(_, w)| u128::from(w)).sum();
        let (p, c) = (u128::from(partitions), u128::from(load_ppm));
        let to_u32 = |v: u128| u32::try_from(v).unwrap_or(u32::MAX);
        let mut b = Self {
            cap: Vec::with_capacity(members.len()),
            floor: Vec::with_capacity(members.len()),
            target: Vec::with_capacity(members.len()),
        };
        for &(_, w) in members {
            let pw = p * u128::from(w);
            b.cap.push(to_u32((pw * c).div_ceil(total * PPM)));
            b.floor.push(to_u32(pw * PPM / (total * c)));
            b.target.push(to_u32((2 * pw + total) / (2 * total)));
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_bounds() {
        let m: Vec<(NodeId, u32)> = (0..2).map(|i| (NodeId(i), 128)).collect();
        let b = Bounds::new(&m, 1024, load_ppm(1.15));
        // ideal 512: cap ceil(588.8) = 589, floor floor(445.2) = 445, target 512.
        assert_eq!((b.cap[0], b.floor[0], b.target[0]), (589, 445, 512));
        let m: Vec<(NodeId, u32)> = (0..20).map(|i| (NodeId(i), 128)).collect();
        let b = Bounds::new(&m, 1024, load_ppm(1.15));
        // ideal 51.2: cap ceil(58.88) = 59, floor floor(44.52) = 44, target 51.
        assert_eq!((b.cap[0], b.floor[0], b.target[0]), (59, 44, 51));
    }

    #[test]
    fn caps_always_cover_every_partition() {
        for n in 1..40u64 {
            let m: Vec<(NodeId, u32)> = (0..n)
                .map(|i| (NodeId(i), 1 + (i as u32 * 37) % 200))
                .collect();
            for parts in [1, 7, 1024, 65536] {
                let b = Bounds::new(&m, parts, load_ppm(1.0));
                let sum: u64 = b.cap.iter().map(|&c| u64::from(c)).sum();
                assert!(sum >= u64::from(parts));
                assert!(b.floor.iter().zip(&b.target).all(|(f, t)| f <= t));
                assert!(b.target.iter().zip(&b.cap).all(|(t, c)| t <= c));
            }
        }
    }
}
