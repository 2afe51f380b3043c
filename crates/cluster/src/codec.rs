//! Encoding of persisted records: the only module of this crate that knows bincode.
//!
//! Records are bincode 2 (standard configuration: little endian, varints) of serde
//! types, with no framing: redb stores each as one value and knows its length. The
//! layout of the stored types is versioned as a whole by [`FORMAT_VERSION`] (kept in the
//! database's `meta` table). Decoding is bounded: a corrupted length field fails with an
//! error instead of allocating more than a fixed multiple of the record's size.

use bincode::config;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Version of the persisted layout (log entries, vote, state machine, snapshots).
/// Bump it when a stored type changes shape; opening a database of another version fails.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// A record that could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct CodecError {
    what: &'static str,
    reason: String,
}

/// Encodes `value` (`what` names it in errors).
pub(crate) fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config::standard()).map_err(|e| CodecError {
        what,
        reason: format!("cannot encode: {e}"),
    })
}

/// Decodes exactly one `T` from `bytes` (`what` names it in errors).
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    bytes: &[u8],
) -> Result<T, CodecError> {
    fn with<T: DeserializeOwned, const LIMIT: usize>(bytes: &[u8]) -> Result<T, String> {
        let cfg = config::standard().with_limit::<LIMIT>();
        match bincode::serde::decode_from_slice::<T, _>(bytes, cfg) {
            Ok((v, used)) if used == bytes.len() => Ok(v),
            Ok((_, used)) => Err(format!("{} trailing bytes", bytes.len() - used)),
            Err(e) => Err(e.to_string()),
        }
    }
    let res = match bytes.len() {
        0..=65_536 => with::<T, { 16 << 20 }>(bytes),
        65_537..=16_777_216 => with::<T, { 256 << 20 }>(bytes),
        _ => with::<T, { 2 << 30 }>(bytes),
    };
    res.map_err(|reason| CodecError {
        what,
        reason: format!("cannot decode: {reason}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ClusterState, Command};

    #[test]
    fn round_trip_and_garbage() {
        let cmd = Command::PutNamespace {
            name: "users".into(),
            config: "x = 1".into(),
        };
        let bytes = encode("command", &cmd).expect("encodes");
        assert_eq!(decode::<Command>("command", &bytes).expect("decodes"), cmd);
        // Trailing bytes, truncation and a huge claimed length are errors, not panics.
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode::<Command>("command", &long).is_err());
        assert!(decode::<Command>("command", &bytes[..bytes.len() - 1]).is_err());
        let hostile = [3u8, 0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode::<Command>("command", &hostile).is_err());
        assert!(decode::<ClusterState>("state", &[0xff; 64]).is_err());
    }
}
