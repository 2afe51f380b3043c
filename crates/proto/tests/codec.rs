//! Frame codec: round trips, every way a frame can be wrong, and arbitrary bytes.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;
use ringcache_proto::{
    ClusterInfo, DEFAULT_MAX_FRAME, Entry, Epoch, ErrorCode, FrameError, Hints, Member,
    NamespaceStats, NodeId, Op, PROTOCOL_VERSION, Request, RequestId, Response, SetItem, WireError,
    WriteCondition, decode, encode,
};

fn bytes() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn ns() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,16}"
}

fn cond() -> impl Strategy<Value = WriteCondition> {
    prop_oneof![
        Just(WriteCondition::Always),
        Just(WriteCondition::IfAbsent),
        any::<u64>().prop_map(WriteCondition::IfVersion),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        Just(Op::Ping),
        Just(Op::ClusterInfo),
        (ns(), bytes()).prop_map(|(ns, key)| Op::Get { ns, key }),
        (ns(), prop::collection::vec(bytes(), 0..8))
            .prop_map(|(ns, keys)| Op::GetMany { ns, keys }),
        (ns(), bytes(), bytes(), any::<Option<u64>>(), cond()).prop_map(
            |(ns, key, value, ttl_ms, condition)| Op::Set {
                ns,
                key,
                value,
                ttl_ms,
                condition
            }
        ),
        (
            ns(),
            prop::collection::vec((bytes(), bytes(), any::<Option<u64>>()), 0..6)
        )
            .prop_map(|(ns, items)| Op::SetMany {
                ns,
                items: items
                    .into_iter()
                    .map(|(key, value, ttl_ms)| SetItem { key, value, ttl_ms })
                    .collect()
            }),
        (ns(), bytes(), any::<Option<u64>>()).prop_map(|(ns, key, if_version)| Op::Delete {
            ns,
            key,
            if_version
        }),
        (ns(), bytes()).prop_map(|(ns, key)| Op::Exists { ns, key }),
        (ns(), bytes(), any::<Option<u64>>()).prop_map(|(ns, key, ttl_ms)| Op::Touch {
            ns,
            key,
            ttl_ms
        }),
        (ns(), bytes(), any::<i64>(), any::<Option<u64>>()).prop_map(|(ns, key, delta, ttl_ms)| {
            Op::Increment {
                ns,
                key,
                delta,
                ttl_ms,
            }
        }),
        (ns(), bytes()).prop_map(|(ns, prefix)| Op::Purge { ns, prefix }),
        prop::option::of(ns()).prop_map(|ns| Op::Stats { ns }),
    ]
}

fn wire_error() -> impl Strategy<Value = WireError> {
    (
        prop::sample::select(ErrorCode::ALL.to_vec()),
        ".{0,40}",
        any::<(Option<u64>, Option<u64>, Option<u32>, Option<u64>)>(),
    )
        .prop_map(|(code, message, (owner, epoch, retry, current))| {
            WireError::new(code, message).with_hints(Hints {
                owner: owner.map(NodeId),
                epoch: epoch.map(Epoch),
                retry_after_ms: retry,
                current_version: current,
            })
        })
}

fn entry() -> impl Strategy<Value = Entry> {
    (bytes(), any::<u64>(), any::<Option<u64>>()).prop_map(|(value, version, ttl_ms)| Entry {
        value,
        version,
        ttl_ms,
    })
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<u64>().prop_map(|n| Response::Pong { node: NodeId(n) }),
        prop::option::of(entry()).prop_map(Response::Value),
        prop::collection::vec(prop::option::of(entry()), 0..6).prop_map(Response::Values),
        any::<u64>().prop_map(|version| Response::Stored { version }),
        prop::collection::vec(
            prop_oneof![any::<u64>().prop_map(Ok), wire_error().prop_map(Err)],
            0..6
        )
        .prop_map(Response::StoredMany),
        any::<bool>().prop_map(Response::Deleted),
        any::<bool>().prop_map(Response::Exists),
        any::<bool>().prop_map(Response::Touched),
        any::<i64>().prop_map(Response::Counter),
        any::<u64>().prop_map(Response::Purged),
        prop::collection::vec((ns(), any::<[u64; 6]>()), 0..4).prop_map(|v| Response::Stats(
            v.into_iter()
                .map(|(ns, c)| NamespaceStats {
                    ns,
                    hits: c[0],
                    misses: c[1],
                    entries: c[2],
                    used_bytes: c[3],
                    capacity_bytes: c[4],
                    evicted: c[5],
                    expired: c[0] ^ c[5],
                    store_loads: c[1] ^ c[2],
                    store_errors: c[3] ^ c[4],
                    refreshes: c[0].wrapping_add(1),
                    coalesced_loads: c[2] / 2,
                })
                .collect()
        )),
        (
            any::<u64>(),
            1u32..64,
            prop::collection::vec(any::<u64>(), 0..8)
        )
            .prop_map(|(e, partitions, owners)| {
                Response::ClusterInfo(ClusterInfo {
                    epoch: Epoch(e),
                    partitions,
                    members: owners
                        .iter()
                        .map(|&id| Member {
                            id: NodeId(id),
                            addr: format!("127.0.0.1:{}", id % 65536),
                        })
                        .collect(),
                    replicas: owners
                        .iter()
                        .map(|&o| vec![NodeId(o), NodeId(o ^ 1)])
                        .collect(),
                    owners: owners.into_iter().map(NodeId).collect(),
                })
            }),
        wire_error().prop_map(Response::Error),
    ]
}

fn frame_of<T: serde::Serialize>(id: u64, msg: &T) -> BytesMut {
    let mut buf = BytesMut::new();
    encode(RequestId(id), msg, DEFAULT_MAX_FRAME, &mut buf).expect("encodes");
    buf
}

proptest! {
    #[test]
    fn requests_round_trip(id in any::<u64>(), epoch in any::<u64>(), op in op()) {
        let req = Request { epoch: Epoch(epoch), op };
        let mut buf = frame_of(id, &req);
        let got: Option<(RequestId, Request)> = decode(&mut buf, DEFAULT_MAX_FRAME).expect("valid frame");
        prop_assert_eq!(got, Some((RequestId(id), req)));
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn responses_round_trip(id in any::<u64>(), resp in response()) {
        let mut buf = frame_of(id, &resp);
        let got: Option<(RequestId, Response)> = decode(&mut buf, DEFAULT_MAX_FRAME).expect("valid frame");
        prop_assert_eq!(got, Some((RequestId(id), resp)));
    }

    /// Every strict prefix of a frame is "not yet"; the whole frame decodes.
    #[test]
    fn truncated_frames_wait_for_the_rest(op in op()) {
        let full = frame_of(1, &Request { epoch: Epoch(3), op });
        for cut in 0..full.len() {
            let mut part = BytesMut::from(&full[..cut]);
            let got: Option<(RequestId, Request)> = decode(&mut part, DEFAULT_MAX_FRAME).expect("a prefix is not an error");
            prop_assert!(got.is_none(), "decoded from {} of {} bytes", cut, full.len());
            prop_assert_eq!(part.len(), cut, "a partial frame is not consumed");
        }
    }

    /// Whatever arrives, decoding returns (never panics) and every non-fatal error
    /// consumes at least one byte, so a reader loop always makes progress.
    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512), max in 10u32..1024) {
        let mut buf = BytesMut::from(&data[..]);
        loop {
            let before = buf.len();
            match decode::<Request>(&mut buf, max) {
                Ok(Some(_)) => prop_assert!(buf.len() < before),
                Ok(None) => break,
                Err(e) if e.is_fatal() => break,
                Err(_) => prop_assert!(buf.len() < before, "a non-fatal error must consume the frame"),
            }
        }
    }

    /// A valid header with a random body: the same guarantees, and the request id of
    /// a malformed body is reported.
    #[test]
    fn random_bodies_are_malformed_or_valid(id in any::<u64>(), body in prop::collection::vec(any::<u8>(), 0..256)) {
        let mut buf = BytesMut::new();
        buf.put_u32_le(10 + body.len() as u32);
        buf.put_u16_le(PROTOCOL_VERSION);
        buf.put_u64_le(id);
        buf.put_slice(&body);
        match decode::<Request>(&mut buf, DEFAULT_MAX_FRAME) {
            Ok(Some((rid, _))) => prop_assert_eq!(rid, RequestId(id)),
            Err(FrameError::Malformed { request_id }) => prop_assert_eq!(request_id, RequestId(id)),
            other => prop_assert!(false, "unexpected {:?}", other),
        }
        prop_assert!(buf.is_empty());
    }
}

#[test]
fn frames_written_back_to_back_decode_in_order() {
    let mut buf = BytesMut::new();
    for i in 0..5u64 {
        encode(
            RequestId(i),
            &Request {
                epoch: Epoch(i),
                op: Op::Ping,
            },
            DEFAULT_MAX_FRAME,
            &mut buf,
        )
        .expect("encodes");
    }
    for i in 0..5u64 {
        let (id, req): (RequestId, Request) = decode(&mut buf, DEFAULT_MAX_FRAME)
            .expect("valid")
            .expect("complete");
        assert_eq!((id, req.epoch), (RequestId(i), Epoch(i)));
    }
    assert!(
        decode::<Request>(&mut buf, DEFAULT_MAX_FRAME)
            .expect("empty")
            .is_none()
    );
}

#[test]
fn an_oversized_frame_is_refused_from_its_header_alone() {
    let mut buf = BytesMut::new();
    buf.put_u32_le(1_000_001);
    buf.put_u16_le(PROTOCOL_VERSION);
    buf.put_u64_le(77);
    let err = decode::<Request>(&mut buf, 1_000_000).expect_err("over the limit");
    assert_eq!(
        err,
        FrameError::TooLarge {
            len: 1_000_001,
            max: 1_000_000,
            request_id: Some(RequestId(77))
        }
    );
    assert!(err.is_fatal());
    // Nothing was reserved for the body: the decoder did not trust the length.
    assert!(buf.capacity() < 1_000_000, "capacity {}", buf.capacity());

    // The length prefix alone is enough to refuse.
    let mut buf = BytesMut::from(&u32::MAX.to_le_bytes()[..]);
    assert!(matches!(
        decode::<Request>(&mut buf, DEFAULT_MAX_FRAME),
        Err(FrameError::TooLarge {
            request_id: None,
            ..
        })
    ));
}

#[test]
fn a_length_shorter_than_the_header_is_fatal() {
    let mut buf = BytesMut::from(&3u32.to_le_bytes()[..]);
    let err = decode::<Request>(&mut buf, DEFAULT_MAX_FRAME).expect_err("too short");
    assert_eq!(err, FrameError::TooShort { len: 3 });
    assert!(err.is_fatal());
}

#[test]
fn a_wrong_version_skips_the_frame_and_the_stream_goes_on() {
    let mut buf = frame_of(
        5,
        &Request {
            epoch: Epoch(0),
            op: Op::Ping,
        },
    );
    buf[4..6].copy_from_slice(&(PROTOCOL_VERSION + 1).to_le_bytes());
    buf.extend_from_slice(&frame_of(
        6,
        &Request {
            epoch: Epoch(0),
            op: Op::ClusterInfo,
        },
    ));
    let err = decode::<Request>(&mut buf, DEFAULT_MAX_FRAME).expect_err("wrong version");
    assert_eq!(
        err,
        FrameError::UnsupportedVersion {
            got: PROTOCOL_VERSION + 1,
            request_id: RequestId(5)
        }
    );
    assert!(!err.is_fatal());
    let (id, req): (RequestId, Request) = decode(&mut buf, DEFAULT_MAX_FRAME)
        .expect("next frame is fine")
        .expect("complete");
    assert_eq!((id, req.op), (RequestId(6), Op::ClusterInfo));
}

#[test]
fn trailing_bytes_after_the_message_are_malformed() {
    let mut buf = frame_of(
        9,
        &Request {
            epoch: Epoch(0),
            op: Op::Ping,
        },
    );
    let len = u32::from_le_bytes(buf[..4].try_into().expect("4 bytes")) + 1;
    buf[..4].copy_from_slice(&len.to_le_bytes());
    buf.put_u8(0);
    assert_eq!(
        decode::<Request>(&mut buf, DEFAULT_MAX_FRAME),
        Err(FrameError::Malformed {
            request_id: RequestId(9)
        })
    );
    assert!(buf.is_empty());
}

#[test]
fn encoding_refuses_frames_over_the_limit() {
    let req = Request {
        epoch: Epoch(0),
        op: Op::Set {
            ns: "n".into(),
            key: Bytes::from_static(b"k"),
            value: Bytes::from(vec![0u8; 200]),
            ttl_ms: None,
            condition: WriteCondition::Always,
        },
    };
    let mut buf = BytesMut::from(&b"earlier frames"[..]);
    let err = encode(RequestId(1), &req, 100, &mut buf).expect_err("too large");
    assert!(matches!(
        err,
        ringcache_proto::EncodeError::TooLarge { max: 100, .. }
    ));
    assert_eq!(
        &buf[..],
        b"earlier frames",
        "a failed encode leaves the buffer as it was"
    );
}

/// The hand-written encoders and decoders of the request path against bincode: the same
/// bytes out, the same messages (or the same refusal) in.
mod fast_paths {
    use super::*;
    use ringcache_proto::{
        RequestRef, ValueRef, decode_request, decode_response, encode_request, encode_response,
        encode_value_response, peek_request,
    };

    fn long_bytes() -> impl Strategy<Value = Bytes> {
        // Lengths around the varint tags (250, 251, 65535, 65536).
        prop_oneof![
            bytes(),
            (240usize..300).prop_map(|n| Bytes::from(vec![7u8; n])),
            (65_530usize..65_540).prop_map(|n| Bytes::from(vec![9u8; n])),
        ]
    }

    fn version() -> impl Strategy<Value = u64> {
        prop_oneof![
            0u64..300,
            Just(u64::from(u16::MAX)),
            Just(u64::from(u16::MAX) + 1),
            Just(u64::from(u32::MAX)),
            Just(u64::from(u32::MAX) + 1),
            any::<u64>(),
        ]
    }

    fn hot_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (ns(), long_bytes()).prop_map(|(ns, key)| Op::Get { ns, key }),
            (
                ns(),
                bytes(),
                long_bytes(),
                prop::option::of(version()),
                cond()
            )
                .prop_map(|(ns, key, value, ttl_ms, condition)| Op::Set {
                    ns,
                    key,
                    value,
                    ttl_ms,
                    condition
                }),
            op(),
        ]
    }

    fn hot_response() -> impl Strategy<Value = Response> {
        prop_oneof![
            (long_bytes(), version(), prop::option::of(version())).prop_map(
                |(value, version, ttl_ms)| Response::Value(Some(Entry {
                    value,
                    version,
                    ttl_ms
                }))
            ),
            Just(Response::Value(None)),
            version().prop_map(|version| Response::Stored { version }),
            response(),
        ]
    }

    proptest! {
        #[test]
        fn requests_encode_and_decode_as_bincode_does(
            id in any::<u64>(),
            epoch in version(),
            op in hot_op(),
        ) {
            let req = Request { epoch: Epoch(epoch), op };
            let slow = frame_of(id, &req);
            let mut fast = BytesMut::new();
            encode_request(RequestId(id), RequestRef::from(&req), DEFAULT_MAX_FRAME, &mut fast)
                .expect("encodes");
            prop_assert_eq!(&fast, &slow);
            // The borrowed reading agrees, for the operations it reads, and never reads
            // an incomplete frame.
            let hot = matches!(req.op, Op::Get { .. } | Op::Set { .. });
            if let Some((pid, peeked, len)) = peek_request(&fast, DEFAULT_MAX_FRAME) {
                prop_assert!(hot);
                prop_assert_eq!(pid, RequestId(id));
                prop_assert_eq!(len, fast.len());
                prop_assert_eq!(peeked.epoch, req.epoch);
                prop_assert_eq!(peeked.op.to_op(), req.op.clone());
            } else {
                prop_assert!(!hot);
            }
            prop_assert!(peek_request(&fast[..fast.len() - 1], DEFAULT_MAX_FRAME).is_none());
            let got = decode_request(&mut fast, DEFAULT_MAX_FRAME).expect("valid frame");
            prop_assert_eq!(got, Some((RequestId(id), req)));
        }

        #[test]
        fn responses_encode_and_decode_as_bincode_does(id in any::<u64>(), resp in hot_response()) {
            let slow = frame_of(id, &resp);
            let mut fast = BytesMut::new();
            encode_response(RequestId(id), &resp, DEFAULT_MAX_FRAME, &mut fast).expect("encodes");
            prop_assert_eq!(&fast, &slow);
            if let Response::Value(entry) = &resp {
                let mut lent = BytesMut::new();
                let entry = entry.as_ref().map(|e| ValueRef {
                    value: &e.value,
                    version: e.version,
                    ttl_ms: e.ttl_ms,
                });
                encode_value_response(RequestId(id), entry, DEFAULT_MAX_FRAME, &mut lent)
                    .expect("encodes");
                prop_assert_eq!(&lent, &slow);
            }
            let got = decode_response(&mut fast, DEFAULT_MAX_FRAME).expect("valid frame");
            prop_assert_eq!(got, Some((RequestId(id), resp)));
        }

        /// Any body, valid or not: the fast decoders accept and refuse what bincode does,
        /// and decode it to the same message.
        #[test]
        fn arbitrary_bodies_decode_as_bincode_decodes(
            head in prop::sample::select(vec![0u8, 1, 3, 5, 250, 251, 252, 253, 254, 255]),
            second in prop::sample::select(vec![0u8, 1, 2, 3, 5, 251, 253]),
            body in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut b = vec![head, second];
            b.extend_from_slice(&body);
            let framed = |b: &[u8]| {
                let mut buf = BytesMut::new();
                buf.put_u32_le(u32::try_from(10 + b.len()).expect("small"));
                buf.put_u16_le(PROTOCOL_VERSION);
                buf.put_u64_le(5);
                buf.put_slice(b);
                buf
            };
            // As a request body (epoch first) and as a response body.
            for body in [b.clone(), [&[1u8][..], &b].concat()] {
                let decoded = decode_request(&mut framed(&body), DEFAULT_MAX_FRAME);
                prop_assert_eq!(
                    &decoded,
                    &decode::<Request>(&mut framed(&body), DEFAULT_MAX_FRAME)
                );
                let frame = framed(&body);
                if let Some((id, peeked, len)) = peek_request(&frame, DEFAULT_MAX_FRAME) {
                    prop_assert_eq!(len, frame.len());
                    let req = Request { epoch: peeked.epoch, op: peeked.op.to_op() };
                    prop_assert_eq!(decoded, Ok(Some((id, req))));
                }
                prop_assert_eq!(
                    decode_response(&mut framed(&body), DEFAULT_MAX_FRAME),
                    decode::<Response>(&mut framed(&body), DEFAULT_MAX_FRAME)
                );
            }
        }
    }

    /// Well-formed GET and SET bodies with their byte strings cut short or extended:
    /// both decoders agree.
    #[test]
    fn damaged_hot_frames_are_refused_as_bincode_refuses_them() {
        let set = Request {
            epoch: Epoch(300),
            op: Op::Set {
                ns: "users".into(),
                key: Bytes::from_static(b"k1"),
                value: Bytes::from_static(b"value"),
                ttl_ms: Some(70_000),
                condition: WriteCondition::IfVersion(9),
            },
        };
        let full = frame_of(4, &set);
        let body = &full[ringcache_proto::HEADER_LEN..];
        for cut in 0..body.len() {
            for extra in [&[][..], &[0u8][..], &[1, 2][..]] {
                let mut b = body[..cut].to_vec();
                b.extend_from_slice(extra);
                let mut buf = BytesMut::new();
                buf.put_u32_le(u32::try_from(10 + b.len()).expect("small"));
                buf.put_u16_le(PROTOCOL_VERSION);
                buf.put_u64_le(4);
                buf.put_slice(&b);
                let fast = decode_request(&mut buf.clone(), DEFAULT_MAX_FRAME);
                let slow = decode::<Request>(&mut buf, DEFAULT_MAX_FRAME);
                assert_eq!(fast, slow, "cut at {cut}, then {extra:?}");
            }
        }
    }
}
