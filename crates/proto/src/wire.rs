//! Hand-written encoders and decoders for the messages on the request path, byte for
//! byte the bincode 2 "standard" encoding that `codec` uses for every other message.
//!
//! A GET or a SET and their answers are most of what a busy node and client exchange;
//! going through serde for them costs a visitor per field, an `io::Write` call per
//! field on encode and a `Vec` per byte string on decode. The functions here write and
//! read the same bytes directly. They cover:
//!
//! - requests: `Get` and `Set` (encode from borrowed parts, [`OpRef`]; decode);
//! - responses: `Value` and `Stored` (encode; decode).
//!
//! Anything else, and anything the fast decoders do not recognize as one of these in
//! its canonical form, is left to bincode (`None` here), so what is accepted and
//! rejected is exactly what bincode accepts and rejects. Property tests compare both
//! encoders byte for byte and both decoders message for message.
//!
//! Decoded byte strings are copied out of the frame into allocations of their own, as
//! bincode's are: a key or value kept afterwards (in the engine, a write-behind queue, a
//! caller's map) must not pin the much larger read buffer it arrived in.

use bytes::{BufMut, Bytes, BytesMut};

use crate::{Entry, Epoch, Op, Request, Response, WriteCondition};

/// bincode's varint tags: a value up to 250 is one byte, larger ones a tag then the
/// integer, little endian.
const SINGLE_BYTE_MAX: u8 = 250;
const U16_TAG: u8 = 251;
const U32_TAG: u8 = 252;
const U64_TAG: u8 = 253;

/// `Op` variant indexes (declaration order in `message.rs`).
const OP_GET: u8 = 1;
const OP_SET: u8 = 3;
/// `Response` variant indexes.
const RESP_VALUE: u8 = 1;
const RESP_STORED: u8 = 3;
/// `WriteCondition` variant indexes.
const COND_ALWAYS: u8 = 0;
const COND_IF_ABSENT: u8 = 1;
const COND_IF_VERSION: u8 = 2;

/// A request to encode, borrowing its parts: a client encodes a GET or a SET from the
/// caller's namespace and key without building an owned [`Request`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRef<'a> {
    /// As [`Request::epoch`].
    pub epoch: Epoch,
    /// What to do.
    pub op: OpRef<'a>,
}

/// An operation to encode: the hot ones borrowed field by field, any other as an [`Op`].
/// Encodes to the same bytes as the [`Op`] it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpRef<'a> {
    /// As [`Op::Get`].
    Get {
        /// Namespace.
        ns: &'a str,
        /// Key.
        key: &'a [u8],
    },
    /// As [`Op::Set`].
    Set {
        /// Namespace.
        ns: &'a str,
        /// Key.
        key: &'a [u8],
        /// Value.
        value: &'a [u8],
        /// Time to live; `None` for the namespace default.
        ttl_ms: Option<u64>,
        /// When the write applies.
        condition: WriteCondition,
    },
    /// Any operation.
    Op(&'a Op),
}

impl<'a> From<&'a Op> for OpRef<'a> {
    fn from(op: &'a Op) -> Self {
        match op {
            Op::Get { ns, key } => OpRef::Get { ns, key },
            Op::Set {
                ns,
                key,
                value,
                ttl_ms,
                condition,
            } => OpRef::Set {
                ns,
                key,
                value,
                ttl_ms: *ttl_ms,
                condition: *condition,
            },
            other => OpRef::Op(other),
        }
    }
}

impl<'a> From<&'a Request> for RequestRef<'a> {
    fn from(req: &'a Request) -> Self {
        RequestRef {
            epoch: req.epoch,
            op: OpRef::from(&req.op),
        }
    }
}

impl OpRef<'_> {
    /// The owned operation (for callers that need one, e.g. to keep it).
    #[must_use]
    pub fn to_op(&self) -> Op {
        match *self {
            OpRef::Get { ns, key } => Op::Get {
                ns: ns.to_owned(),
                key: Bytes::copy_from_slice(key),
            },
            OpRef::Set {
                ns,
                key,
                value,
                ttl_ms,
                condition,
            } => Op::Set {
                ns: ns.to_owned(),
                key: Bytes::copy_from_slice(key),
                value: Bytes::copy_from_slice(value),
                ttl_ms,
                condition,
            },
            OpRef::Op(op) => op.clone(),
        }
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, v: u64) {
    if v <= u64::from(SINGLE_BYTE_MAX) {
        // Checked just above.
        #[allow(clippy::cast_possible_truncation)]
        out.put_u8(v as u8);
    } else if let Ok(v) = u16::try_from(v) {
        out.put_u8(U16_TAG);
        out.put_u16_le(v);
    } else if let Ok(v) = u32::try_from(v) {
        out.put_u8(U32_TAG);
        out.put_u32_le(v);
    } else {
        out.put_u8(U64_TAG);
        out.put_u64_le(v);
    }
}

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.put_slice(b);
}

fn put_opt(out: &mut BytesMut, v: Option<u64>) {
    match v {
        None => out.put_u8(0),
        Some(v) => {
            out.put_u8(1);
            put_varint(out, v);
        }
    }
}

/// Encodes a GET or SET body (nothing for [`OpRef::Op`], which bincode writes).
pub(crate) fn put_request(out: &mut BytesMut, req: RequestRef<'_>) {
    match req.op {
        OpRef::Get { ns, key } => {
            out.reserve(3 + 2 * 9 + ns.len() + key.len());
            put_varint(out, req.epoch.0);
            out.put_u8(OP_GET);
            put_bytes(out, ns.as_bytes());
            put_bytes(out, key);
        }
        OpRef::Set {
            ns,
            key,
            value,
            ttl_ms,
            condition,
        } => {
            out.reserve(6 + 5 * 9 + ns.len() + key.len() + value.len());
            put_varint(out, req.epoch.0);
            out.put_u8(OP_SET);
            put_bytes(out, ns.as_bytes());
            put_bytes(out, key);
            put_bytes(out, value);
            put_opt(out, ttl_ms);
            match condition {
                WriteCondition::Always => out.put_u8(COND_ALWAYS),
                WriteCondition::IfAbsent => out.put_u8(COND_IF_ABSENT),
                WriteCondition::IfVersion(v) => {
                    out.put_u8(COND_IF_VERSION);
                    put_varint(out, v);
                }
            }
        }
        OpRef::Op(_) => {}
    }
}

/// A `Value` answer's entry given by borrowed parts: a node encodes it straight from
/// the engine's copy of the value. Encodes to the same bytes as the [`Entry`] it
/// stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValueRef<'a> {
    /// As [`Entry::value`].
    pub value: &'a [u8],
    /// As [`Entry::version`].
    pub version: u64,
    /// As [`Entry::ttl_ms`].
    pub ttl_ms: Option<u64>,
}

/// Encodes a `Value` body.
pub(crate) fn put_value(out: &mut BytesMut, entry: Option<ValueRef<'_>>) {
    match entry {
        None => out.put_slice(&[RESP_VALUE, 0]),
        Some(e) => {
            out.reserve(4 + 3 * 9 + e.value.len());
            out.put_slice(&[RESP_VALUE, 1]);
            put_bytes(out, e.value);
            put_varint(out, e.version);
            put_opt(out, e.ttl_ms);
        }
    }
}

/// Encodes a `Value` or `Stored` body; `false` (nothing written) for any other response.
pub(crate) fn put_response(out: &mut BytesMut, resp: &Response) -> bool {
    match resp {
        Response::Value(entry) => {
            put_value(
                out,
                entry.as_ref().map(|e| ValueRef {
                    value: &e.value,
                    version: e.version,
                    ttl_ms: e.ttl_ms,
                }),
            );
            true
        }
        Response::Stored { version } => {
            out.put_u8(RESP_STORED);
            put_varint(out, *version);
            true
        }
        _ => false,
    }
}

/// A cursor over a body; every read fails (`None`) rather than run past the end.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.rest.split_first()?;
        self.rest = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, rest) = self.rest.split_at(n);
        self.rest = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// A u64 varint, as bincode reads one (no check that it is the shortest form).
    fn varint(&mut self) -> Option<u64> {
        match self.u8()? {
            b @ 0..=SINGLE_BYTE_MAX => Some(u64::from(b)),
            U16_TAG => Some(u64::from(u16::from_le_bytes(self.array()?))),
            U32_TAG => Some(u64::from(u32::from_le_bytes(self.array()?))),
            U64_TAG => Some(u64::from_le_bytes(self.array()?)),
            _ => None,
        }
    }

    fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        self.take(len)
    }

    fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    fn opt(&mut self) -> Option<Option<u64>> {
        match self.u8()? {
            0 => Some(None),
            1 => self.varint().map(Some),
            _ => None,
        }
    }

    fn end(&self) -> Option<()> {
        self.rest.is_empty().then_some(())
    }
}

/// Decodes a GET or SET request body, borrowing its parts; `None` for anything else
/// (bincode decides).
pub(crate) fn get_request_ref(body: &[u8]) -> Option<RequestRef<'_>> {
    let mut r = Reader { rest: body };
    let epoch = Epoch(r.varint()?);
    let op = match r.u8()? {
        OP_GET => OpRef::Get {
            ns: r.str()?,
            key: r.bytes()?,
        },
        OP_SET => OpRef::Set {
            ns: r.str()?,
            key: r.bytes()?,
            value: r.bytes()?,
            ttl_ms: r.opt()?,
            condition: match r.u8()? {
                COND_ALWAYS => WriteCondition::Always,
                COND_IF_ABSENT => WriteCondition::IfAbsent,
                COND_IF_VERSION => WriteCondition::IfVersion(r.varint()?),
                _ => return None,
            },
        },
        _ => return None,
    };
    r.end()?;
    Some(RequestRef { epoch, op })
}

/// Decodes a GET or SET request body; `None` for anything else (bincode decides).
pub(crate) fn get_request(body: &[u8]) -> Option<Request> {
    get_request_ref(body).map(|r| Request {
        epoch: r.epoch,
        op: r.op.to_op(),
    })
}

/// Decodes a `Value` or `Stored` response body; `None` for anything else.
pub(crate) fn get_response(body: &[u8]) -> Option<Response> {
    let mut r = Reader { rest: body };
    let resp = match r.u8()? {
        RESP_VALUE => match r.u8()? {
            0 => Response::Value(None),
            1 => {
                let value = Bytes::copy_from_slice(r.bytes()?);
                let version = r.varint()?;
                let ttl_ms = r.opt()?;
                Response::Value(Some(Entry {
                    value,
                    version,
                    ttl_ms,
                }))
            }
            _ => return None,
        },
        RESP_STORED => Response::Stored {
            version: r.varint()?,
        },
        _ => return None,
    };
    r.end()?;
    Some(resp)
}
