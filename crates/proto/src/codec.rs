//! The frame codec: the only place that knows bincode.
//!
//! ```text
//! 0        4          6              14
//! ┌────────┬──────────┬──────────────┬─────────────────────────────┐
//! │ len u32│ version  │ request id   │ body: bincode 2 (standard    │
//! │ LE     │ u16 LE   │ u64 LE       │ config, varint) of Request  │
//! │        │          │              │ or Response                 │
//! └────────┴──────────┴──────────────┴─────────────────────────────┘
//!  len = bytes after the length field (10 + body), at most the configured maximum
//! ```
//!
//! The length is checked against the limit before anything is buffered for the frame,
//! and the body is decoded with a bincode limit that scales with the body's real size,
//! so a short hostile frame cannot make the decoder allocate much more than it sent.

use bincode::config;
use bytes::{Buf, BufMut, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::wire::{self, OpRef, RequestRef, ValueRef};
use crate::{Request, RequestId, Response};

/// The protocol version this build speaks (the first field of every frame).
pub const PROTOCOL_VERSION: u16 = 1;

/// Bytes of the length prefix.
const LEN_PREFIX: usize = 4;
/// Bytes after the length prefix and before the body: version and request id.
const FIXED: usize = 2 + 8;
/// Bytes before the body.
pub const HEADER_LEN: usize = LEN_PREFIX + FIXED;

/// Default maximum frame (bytes after the length prefix): 16 MiB.
pub const DEFAULT_MAX_FRAME: u32 = 16 << 20;

/// Why a frame could not be read.
///
/// Fatal errors ([`FrameError::is_fatal`]) leave the stream unsynchronized: the reader
/// answers (if it knows the request id) and closes. The others consumed the whole frame:
/// the reader answers with an error for that request id and goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix exceeds the limit (the frame was not read).
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The claimed length.
        len: u32,
        /// The limit.
        max: u32,
        /// The request id, if the header had arrived.
        request_id: Option<RequestId>,
    },
    /// The length prefix is smaller than the fixed header: not a frame of ours.
    #[error("frame length {len} is shorter than the {FIXED}-byte header")]
    TooShort {
        /// The claimed length.
        len: u32,
    },
    /// The frame's protocol version is not [`PROTOCOL_VERSION`].
    #[error("unsupported protocol version {got} (this side speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion {
        /// The frame's version.
        got: u16,
        /// Its request id.
        request_id: RequestId,
    },
    /// The body is not a valid message (bad encoding, trailing bytes, over the limit).
    #[error("malformed frame body")]
    Malformed {
        /// The frame's request id.
        request_id: RequestId,
    },
}

impl FrameError {
    /// The request id of the offending frame, when it could be read.
    #[must_use]
    pub fn request_id(&self) -> Option<RequestId> {
        match *self {
            FrameError::TooLarge { request_id, .. } => request_id,
            FrameError::TooShort { .. } => None,
            FrameError::UnsupportedVersion { request_id, .. }
            | FrameError::Malformed { request_id } => Some(request_id),
        }
    }

    /// Whether the stream can no longer be read (the frame boundary is lost or the
    /// frame too large to skip cheaply).
    #[must_use]
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            FrameError::TooLarge { .. } | FrameError::TooShort { .. }
        )
    }
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded frame would exceed the limit the peer enforces.
    #[error("encoded frame of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's length.
        len: usize,
        /// The limit.
        max: u32,
    },
    /// The serializer refused the message (a bug: our types always serialize).
    #[error("cannot encode message: {reason}")]
    Serialize {
        /// bincode's explanation.
        reason: String,
    },
}

/// The encoding: bincode 2's standard configuration (little endian, varints).
fn wire_config() -> config::Configuration {
    config::standard()
}

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was.
///
/// # Errors
/// [`EncodeError::TooLarge`] if the frame would exceed `max_frame`.
pub fn encode<T: Serialize>(
    request_id: RequestId,
    msg: &T,
    max_frame: u32,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    frame(request_id, max_frame, out, |out| serialize(msg, out))
}

/// As [`encode`] for a request given by borrowed parts (a GET or SET is written without
/// serde; the bytes are the same).
///
/// # Errors
/// As [`encode`].
pub fn encode_request(
    request_id: RequestId,
    req: RequestRef<'_>,
    max_frame: u32,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    frame(request_id, max_frame, out, |out| match req.op {
        OpRef::Op(op) => {
            // A struct is its fields in order: the epoch, then the operation.
            wire::put_varint(out, req.epoch.0);
            serialize(op, out)
        }
        OpRef::Get { .. } | OpRef::Set { .. } => {
            wire::put_request(out, req);
            Ok(())
        }
    })
}

/// As [`encode`] for a response (a `Value` or `Stored` answer is written without serde;
/// the bytes are the same).
///
/// # Errors
/// As [`encode`].
pub fn encode_response(
    request_id: RequestId,
    resp: &Response,
    max_frame: u32,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    frame(request_id, max_frame, out, |out| {
        if wire::put_response(out, resp) {
            Ok(())
        } else {
            serialize(resp, out)
        }
    })
}

fn serialize<T: Serialize + ?Sized>(msg: &T, out: &mut BytesMut) -> Result<(), EncodeError> {
    let mut w = out.writer();
    bincode::serde::encode_into_std_write(msg, &mut w, wire_config())
        .map(drop)
        .map_err(|e| EncodeError::Serialize {
            reason: e.to_string(),
        })
}

/// Appends the header, lets `body` write the body, then fills in the length (or takes
/// everything back out on error).
fn frame(
    request_id: RequestId,
    max_frame: u32,
    out: &mut BytesMut,
    body: impl FnOnce(&mut BytesMut) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_u32_le(0);
    out.put_u16_le(PROTOCOL_VERSION);
    out.put_u64_le(request_id.0);
    if let Err(e) = body(out) {
        out.truncate(start);
        return Err(e);
    }
    let len = out.len() - start - LEN_PREFIX;
    match u32::try_from(len) {
        Ok(l) if l <= max_frame => {
            out[start..start + LEN_PREFIX].copy_from_slice(&l.to_le_bytes());
            Ok(())
        }
        _ => {
            out.truncate(start);
            Err(EncodeError::TooLarge {
                len,
                max: max_frame,
            })
        }
    }
}

/// Takes one complete frame off the front of `buf` and decodes it.
///
/// Returns `Ok(None)` when `buf` does not hold a whole frame yet (it then reserves room
/// for the rest, never more than `max_frame`). Never panics, whatever the bytes.
///
/// # Errors
/// See [`FrameError`]; non-fatal errors consumed the frame.
pub fn decode<T: DeserializeOwned>(
    buf: &mut BytesMut,
    max_frame: u32,
) -> Result<Option<(RequestId, T)>, FrameError> {
    decode_with(buf, max_frame, decode_body::<T>)
}

/// As [`decode`] for a request (a GET or SET is read without serde; the result is the
/// same).
///
/// # Errors
/// As [`decode`].
pub fn decode_request(
    buf: &mut BytesMut,
    max_frame: u32,
) -> Result<Option<(RequestId, Request)>, FrameError> {
    decode_with(buf, max_frame, |body| {
        wire::get_request(body).or_else(|| decode_body(body))
    })
}

/// As [`decode`] for a response (a `Value` or `Stored` answer is read without serde; the
/// result is the same).
///
/// # Errors
/// As [`decode`].
pub fn decode_response(
    buf: &mut BytesMut,
    max_frame: u32,
) -> Result<Option<(RequestId, Response)>, FrameError> {
    decode_with(buf, max_frame, |body| {
        wire::get_response(body).or_else(|| decode_body(body))
    })
}

/// A request at the front of `buf` whose parts borrow from `buf`: its id, the request
/// and the frame's length (what to advance `buf` by once done with it).
///
/// Only a complete, well-formed GET or SET frame of this protocol version is read this
/// way; for anything else (an incomplete frame, another operation, any error) this
/// returns `None` and [`decode_request`] reads the frame and reports what is wrong. A
/// node answers a GET from the engine this way without copying the key out of the frame.
#[must_use]
pub fn peek_request(buf: &[u8], max_frame: u32) -> Option<(RequestId, RequestRef<'_>, usize)> {
    let Ok(Some(frame)) = split_frame(buf, max_frame) else {
        return None;
    };
    if frame.version != PROTOCOL_VERSION {
        return None;
    }
    let req = wire::get_request_ref(frame.payload)?;
    Some((frame.request_id, req, frame.total))
}

/// As [`encode_response`] for a `Value` answer given by borrowed parts (the bytes are
/// those of `Response::Value` with the same entry).
///
/// # Errors
/// As [`encode`].
pub fn encode_value_response(
    request_id: RequestId,
    entry: Option<ValueRef<'_>>,
    max_frame: u32,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    frame(request_id, max_frame, out, |out| {
        wire::put_value(out, entry);
        Ok(())
    })
}

/// One whole frame at the front of a buffer.
struct Frame<'a> {
    version: u16,
    request_id: RequestId,
    payload: &'a [u8],
    /// Bytes the frame takes, length prefix included.
    total: usize,
}

/// The frame at the front of `buf`: `Ok(None)` while incomplete; an error when the
/// length prefix is out of bounds (a fatal error: the frame cannot be skipped).
fn split_frame(buf: &[u8], max_frame: u32) -> Result<Option<Frame<'_>>, FrameError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(prefix.try_into().expect("slice of 4 bytes"));
    if (len as usize) < FIXED {
        return Err(FrameError::TooShort { len });
    }
    if len > max_frame {
        let request_id = buf
            .get(LEN_PREFIX + 2..HEADER_LEN)
            .map(|b| RequestId(u64::from_le_bytes(b.try_into().expect("slice of 8 bytes"))));
        return Err(FrameError::TooLarge {
            len,
            max: max_frame,
            request_id,
        });
    }
    let total = LEN_PREFIX + len as usize;
    let Some(frame) = buf.get(LEN_PREFIX..total) else {
        return Ok(None);
    };
    let (header, payload) = frame.split_at(FIXED);
    Ok(Some(Frame {
        version: u16::from_le_bytes(header[..2].try_into().expect("2 of the 10 header bytes")),
        request_id: RequestId(u64::from_le_bytes(
            header[2..].try_into().expect("8 of the 10 header bytes"),
        )),
        payload,
        total,
    }))
}

fn decode_with<T>(
    buf: &mut BytesMut,
    max_frame: u32,
    body: impl FnOnce(&[u8]) -> Option<T>,
) -> Result<Option<(RequestId, T)>, FrameError> {
    // Decoded in place, then skipped: splitting the frame off would make the buffer
    // shared (an allocation the first time) and cost a reference count per frame.
    let (result, total) = match split_frame(buf, max_frame) {
        Ok(None) => {
            // Room for the rest of the frame once its length is known.
            if let Some(prefix) = buf.get(..LEN_PREFIX) {
                let len = u32::from_le_bytes(prefix.try_into().expect("slice of 4 bytes"));
                let total = LEN_PREFIX + len as usize;
                buf.reserve(total - buf.len());
            }
            return Ok(None);
        }
        Err(e) => return Err(e),
        Ok(Some(frame)) => {
            let request_id = frame.request_id;
            let result = if frame.version != PROTOCOL_VERSION {
                Err(FrameError::UnsupportedVersion {
                    got: frame.version,
                    request_id,
                })
            } else {
                match body(frame.payload) {
                    Some(msg) => Ok(Some((request_id, msg))),
                    None => Err(FrameError::Malformed { request_id }),
                }
            };
            (result, frame.total)
        }
    };
    buf.advance(total);
    result
}

/// Decodes a whole body, or `None` if it is not exactly one valid message.
///
/// bincode's limit is a type parameter, so bodies are sorted into size tiers, each
/// decoded with a limit a bounded multiple of its largest body: a length field that
/// claims more than that fails before allocation.
fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Option<T> {
    fn with<T: DeserializeOwned, const LIMIT: usize>(body: &[u8]) -> Option<T> {
        let cfg = wire_config().with_limit::<LIMIT>();
        match bincode::serde::decode_from_slice::<T, _>(body, cfg) {
            Ok((msg, used)) if used == body.len() => Some(msg),
            _ => None,
        }
    }
    match body.len() {
        0..=4_096 => with::<T, { 256 << 10 }>(body),
        4_097..=65_536 => with::<T, { 4 << 20 }>(body),
        65_537..=1_048_576 => with::<T, { 16 << 20 }>(body),
        1_048_577..=16_777_216 => with::<T, { 64 << 20 }>(body),
        _ => with::<T, { 1 << 30 }>(body),
    }
}
