//! Ringcache's wire protocol: what clients, nodes and `ringctl` say to each other.
//!
//! This crate is types and bytes only: no sockets, no runtime, no clock. The transport
//! (QUIC streams) lives in the node and the client; both call [`encode`] and [`decode`]
//! on the bytes they move.
//!
//! # Layout
//! - [`NodeId`], [`PartitionId`], [`Epoch`], [`RequestId`]: id newtypes.
//! - [`Request`], [`Op`], [`Response`] and their parts: the messages.
//! - [`ErrorCode`], [`WireError`], [`Hints`]: errors as a closed set of codes with a
//!   message and machine-readable hints, never serialized Rust errors.
//! - [`Limits`]: frame, key, value and batch sizes, checked on both sides.
//! - [`units`]: sizes and durations as people type them (`256MiB`, `1m30s`), shared by
//!   configs and the CLI.
//! - `codec`: frames (`len u32 | version u16 | request id u64 | bincode body`), the only
//!   module that knows bincode (2.0.x, pinned: 3.0.0 is an empty placeholder).
//!   [`encode_request`] / [`decode_request`] and [`encode_response`] /
//!   [`decode_response`] write and read GET and SET and their answers by hand (the
//!   same bytes, checked against bincode by property tests) and leave the rest to
//!   bincode; [`RequestRef`] / [`OpRef`] encode a request from borrowed parts.
//!
//! # Example
//! ```
//! use bytes::{Bytes, BytesMut};
//! use ringcache_proto::{decode, encode, Epoch, Op, Request, RequestId, DEFAULT_MAX_FRAME};
//!
//! let req = Request { epoch: Epoch(0), op: Op::Get { ns: "users".into(), key: Bytes::from_static(b"42") } };
//! let mut buf = BytesMut::new();
//! encode(RequestId(7), &req, DEFAULT_MAX_FRAME, &mut buf).unwrap();
//! let (id, back): (RequestId, Request) = decode(&mut buf, DEFAULT_MAX_FRAME).unwrap().unwrap();
//! assert_eq!((id, back), (RequestId(7), req));
//! assert!(buf.is_empty());
//! ```

mod codec;
mod error;
mod ids;
mod limits;
mod message;
pub mod units;
mod wire;

pub use codec::{
    DEFAULT_MAX_FRAME, EncodeError, FrameError, HEADER_LEN, PROTOCOL_VERSION, decode,
    decode_request, decode_response, encode, encode_request, encode_response,
    encode_value_response, peek_request,
};
pub use error::{ErrorCode, Hints, WireError};
pub use ids::{Epoch, NodeId, PartitionId, RequestId};
pub use limits::{Limits, MAX_NAMESPACE_LEN, valid_namespace};
pub use message::{
    ClusterInfo, ClusterStatus, DeadLetter, DumpCursor, DumpEntry, Entry, Member, MemberStatus,
    MoveStatus, NamespaceInfo, NamespaceStats, Op, Request, RequestMode, Response, SetItem,
    WriteBehindStatus, WriteCondition, WriteOverride,
};
pub use wire::{OpRef, RequestRef, ValueRef};
