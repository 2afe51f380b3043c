//! Key -> partition: the one hash every client and node must agree on, byte for byte.

use ringcache_proto::PartitionId;
use xxhash_rust::xxh3::Xxh3Default;

/// The partition `key` of `namespace` belongs to, out of `partitions`.
///
/// `xxh3_64` (XXH3, 64-bit, seed 0, default secret) over
/// `u16 LE namespace byte length | namespace bytes | key bytes`, modulo `partitions`.
/// See the crate docs for the layout; it is part of the protocol and never changes.
///
/// `partitions == 0` is treated as 1 (everything maps to partition 0) rather than
/// panicking: a table never has 0 partitions, so only a caller bug passes it. A
/// namespace longer than 65 535 bytes (the protocol allows 64) is hashed with its length
/// field saturated at 65 535.
#[must_use]
pub fn partition_for(namespace: &str, key: &[u8], partitions: u32) -> PartitionId {
    let hash = key_hash(namespace, key);
    PartitionId((hash % u64::from(partitions.max(1))) as u32)
}

/// The 64-bit hash of `(namespace, key)` before the modulo.
pub(crate) fn key_hash(namespace: &str, key: &[u8]) -> u64 {
    /// Inputs up to this size are hashed one-shot from a stack buffer: on the request
    /// path keys are short, and one-shot XXH3 is several times cheaper than streaming.
    const STACK: usize = 256;
    let len = u16::try_from(namespace.len()).unwrap_or(u16::MAX);
    let total = 2 + namespace.len() + key.len();
    if total <= STACK {
        let mut buf = [0u8; STACK];
        buf[..2].copy_from_slice(&len.to_le_bytes());
        buf[2..2 + namespace.len()].copy_from_slice(namespace.as_bytes());
        buf[2 + namespace.len()..total].copy_from_slice(key);
        return xxhash_rust::xxh3::xxh3_64(&buf[..total]);
    }
    // Streaming gives the same digest as one-shot xxh3_64 over the concatenation
    // (checked by a property test), without allocating a buffer per key.
    let mut h = Xxh3Default::new();
    h.update(&len.to_le_bytes());
    h.update(namespace.as_bytes());
    h.update(key);
    h.digest()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn one_shot(ns: &str, key: &[u8]) -> u64 {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(ns.len() as u16).to_le_bytes());
        buf.extend_from_slice(ns.as_bytes());
        buf.extend_from_slice(key);
        xxh3_64(&buf)
    }

    proptest! {
        #[test]
        fn streaming_equals_one_shot(ns in "[a-z0-9_.-]{0,64}", key in proptest::collection::vec(any::<u8>(), 0..600)) {
            prop_assert_eq!(key_hash(&ns, &key), one_shot(&ns, &key));
        }

        #[test]
        fn partition_is_in_range(ns in "[a-z]{1,8}", key in proptest::collection::vec(any::<u8>(), 0..32), parts in 1u32..5000) {
            prop_assert!(partition_for(&ns, &key, parts).0 < parts);
        }
    }

    /// Pinned from the reference C implementation (xxHash 0.8.4 `XXH3_64bits`, through
    /// the Python `xxhash` package) over the documented layout. If this fails, keys
    /// would move to other partitions: that is a protocol break, not a test to update.
    #[test]
    fn fixed_vectors() {
        let long_ns = "x".repeat(64);
        let long_key = vec![b'k'; 300];
        let binary: Vec<u8> = (0..20).collect();
        let cases: [(&str, &[u8], u64, u32); 7] = [
            ("users", b"42", 0x2d3a_9240_282b_daaa, 682),
            ("users", b"", 0x7c93_1b8d_e20d_b4d3, 211),
            ("a", b"bc", 0x3dbe_54fd_b116_f019, 25),
            ("ab", b"c", 0x0490_e814_ba3b_1ed6, 726),
            ("sessions", &binary, 0xa3f9_98fd_f7b6_9a7c, 636),
            (&long_ns, &long_key, 0x525f_ceb9_9a13_3a6d, 621),
            ("ns", "ключ".as_bytes(), 0x1a51_afc2_1e04_fa0a, 522),
        ];
        for (ns, key, hash, partition) in cases {
            assert_eq!(key_hash(ns, key), hash, "hash of ({ns:?}, {key:?})");
            assert_eq!(partition_for(ns, key, 1024), PartitionId(partition));
            assert_eq!(partition_for(ns, key, 1), PartitionId(0));
        }
        assert_eq!(partition_for("users", b"42", 16_384), PartitionId(6826));
        assert_eq!(partition_for("a", b"bc", 7), PartitionId(6));
    }

    #[test]
    fn length_prefix_separates_namespace_from_key() {
        assert_ne!(key_hash("ab", b"c"), key_hash("a", b"bc"));
    }

    #[test]
    fn zero_partitions_maps_to_zero() {
        assert_eq!(partition_for("ns", b"k", 0), PartitionId(0));
    }
}
