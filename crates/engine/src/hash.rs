//! Key hashing and short-key words.
//!
//! Most cache keys are short (ids, counters, `user:1234`), and the hash is on every
//! call's path, so keys of up to 16 bytes take a short path of two 64-bit multiplies:
//! the key is read as two little-endian words, zero-padded (the same words
//! [`short_words`] gives for comparing a key with a stored inline one), mixed with the
//! seed by a folded multiply (the high and low halves of the 128-bit product xor-ed),
//! plus the words themselves so no single word value cancels the other, then folded
//! once more with the length. Longer keys use xxh3. Both are seeded; as with any fast
//! non-cryptographic hash, a deployment facing untrusted keys should pick a random seed
//! ([`EngineBuilder::seed`](crate::EngineBuilder::seed)).

/// Keys up to this long take the short path.
pub(crate) const SHORT_KEY: usize = 16;

/// Odd constants with no structure (hex digits of pi).
const K0: u64 = 0x243F_6A88_85A3_08D3;
const K1: u64 = 0x1319_8A2E_0370_7344;
const K2: u64 = 0xA409_3822_299F_31D1;

/// The high and low halves of the full product, xor-ed.
#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// A key of at most [`SHORT_KEY`] bytes as two little-endian words, zero-padded: the
/// same values as the first 16 bytes of a zero-padded buffer holding the key, read as
/// two `u64`s. Reads whole words where it can (overlapping reads, shifted), so it
/// costs a few instructions and no copy.
#[inline(always)]
pub(crate) fn short_words(key: &[u8]) -> [u64; 2] {
    let len = key.len();
    debug_assert!(len <= SHORT_KEY);
    let word = |at: usize| -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&key[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |at: usize| -> u64 {
        let mut w = [0u8; 4];
        w.copy_from_slice(&key[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    if len >= 8 {
        // The second word is the last 8 bytes shifted right past the overlap with the
        // first (nothing is left of them when the key is exactly 8 bytes).
        let tail = if len == 8 {
            0
        } else {
            word(len - 8) >> ((SHORT_KEY - len) * 8)
        };
        [word(0), tail]
    } else if len >= 4 {
        let tail = half(len - 4) >> ((8 - len) * 8);
        [half(0) | tail << 32, 0]
    } else {
        let mut w = 0u64;
        for (k, &b) in key.iter().enumerate() {
            w |= u64::from(b) << (8 * k);
        }
        [w, 0]
    }
}

/// The seeded hash of `key`.
#[inline(always)]
pub(crate) fn hash(key: &[u8], seed: u64) -> u64 {
    if key.len() > SHORT_KEY {
        return xxhash_rust::xxh3::xxh3_64_with_seed(key, seed);
    }
    let [a, b] = short_words(key);
    let (lo, hi) = (a ^ seed ^ K0, b ^ seed.rotate_left(32) ^ K1);
    let h = fold(lo, hi)
        .wrapping_add(lo.rotate_left(29))
        .wrapping_add(hi);
    fold(h, K2 ^ (key.len() as u64) << 56)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded_words(key: &[u8]) -> [u64; 2] {
        let mut buf = [0u8; 16];
        buf[..key.len()].copy_from_slice(key);
        [
            u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")),
            u64::from_le_bytes(buf[8..].try_into().expect("8 bytes")),
        ]
    }

    #[test]
    fn short_words_are_the_zero_padded_words() {
        let bytes: Vec<u8> = (1..=16u8).map(|b| b.wrapping_mul(17)).collect();
        for len in 0..=SHORT_KEY {
            assert_eq!(
                short_words(&bytes[..len]),
                padded_words(&bytes[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn lengths_and_seeds_change_the_hash() {
        // Keys that agree on their zero-padded words differ by length only.
        let zeros = [0u8; 16];
        let hashes: std::collections::HashSet<u64> =
            (0..=SHORT_KEY).map(|n| hash(&zeros[..n], 7)).collect();
        assert_eq!(hashes.len(), SHORT_KEY + 1);
        assert_ne!(hash(b"key", 1), hash(b"key", 2));
        assert_ne!(hash(&[7u8; 17], 1), hash(&[7u8; 17], 2));
    }

    #[test]
    fn every_output_bit_moves_with_the_input() {
        // Flipping one input bit flips each output bit about half the time.
        let mut flips = [0u32; 64];
        let trials = 4000u64;
        for t in 0..trials {
            let key = t.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
            let h = hash(&key, 0x5EED);
            let mut other = key;
            other[(t % 8) as usize] ^= 1 << (t % 7);
            let d = h ^ hash(&other, 0x5EED);
            for (bit, f) in flips.iter_mut().enumerate() {
                *f += u32::from(d >> bit & 1 == 1);
            }
        }
        for (bit, &f) in flips.iter().enumerate() {
            let share = f64::from(f) / trials as f64;
            assert!(
                (0.4..0.6).contains(&share),
                "bit {bit} flips {share:.3} of the time"
            );
        }
    }
}
