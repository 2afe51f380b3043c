//! The stream loop over an in-memory pipe: good frames, coalesced frames, and every
//! kind of bad input, with the stream (or the next one) still serving afterwards.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_node::config::NamespaceConfig;
use ringcache_node::conn::{StreamEnd, serve_stream};
use ringcache_node::handler::{Handler, Reply, ScanBatch, StreamMemo};
use ringcache_node::keyspace::Keyspace;
use ringcache_proto::{
    Epoch, ErrorCode, FrameError, Limits, NodeId, Op, PROTOCOL_VERSION, Request, RequestId,
    Response, WriteCondition, decode, decode_response, encode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;

const MAX_FRAME: u32 = 64 << 10;

fn handler() -> Handler {
    let namespaces = BTreeMap::from([(
        "default".to_owned(),
        NamespaceConfig {
            memory: 1 << 20,
            ..NamespaceConfig::default()
        },
    )]);
    Handler::new(
        Arc::new(Keyspace::new(8, &namespaces)),
        Limits {
            max_frame: MAX_FRAME,
            max_key: 256,
            max_value: 8192,
            max_batch: 64,
        },
        NodeId(1),
        "127.0.0.1:1".into(),
    )
}

/// Starts the loop on one end of a pipe; returns the client end and the loop's task.
fn start_with_shutdown() -> (
    DuplexStream,
    tokio::task::JoinHandle<std::io::Result<StreamEnd>>,
    watch::Sender<bool>,
) {
    let (client, server) = tokio::io::duplex(1 << 20);
    let (stop, stopped) = watch::channel(false);
    let h = handler();
    let task = tokio::spawn(async move {
        let (r, w) = tokio::io::split(server);
        serve_stream(&h, r, w, stopped).await
    });
    (client, task, stop)
}

fn frame(id: u64, op: Op) -> BytesMut {
    let mut b = BytesMut::new();
    encode(
        RequestId(id),
        &Request {
            epoch: Epoch(0),
            op,
        },
        MAX_FRAME,
        &mut b,
    )
    .expect("encodes");
    b
}

/// Reads responses until `n` have arrived (bounded by a timeout).
async fn responses(client: &mut DuplexStream, n: usize) -> Vec<(RequestId, Response)> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        while out.len() < n {
            while let Some(r) =
                decode::<Response>(&mut buf, MAX_FRAME).expect("node sends valid frames")
            {
                out.push(r);
            }
            if out.len() >= n {
                break;
            }
            let read = client.read_buf(&mut buf).await.expect("read");
            assert!(
                read > 0,
                "stream closed after {} of {n} responses",
                out.len()
            );
        }
    })
    .await
    .expect("responses arrive in time");
    out
}

fn ping() -> Op {
    Op::Ping
}

#[tokio::test]
async fn frames_sent_together_are_all_answered() {
    let (mut client, _task, _stop) = start_with_shutdown();
    let mut batch = BytesMut::new();
    for i in 0..50u64 {
        batch.extend_from_slice(&frame(
            i,
            Op::Set {
                ns: "default".into(),
                key: Bytes::from(format!("k{i}")),
                value: Bytes::from_static(b"v"),
                ttl_ms: None,
                condition: WriteCondition::Always,
            },
        ));
    }
    client.write_all(&batch).await.expect("write");
    let got = responses(&mut client, 50).await;
    let mut ids: Vec<u64> = got.iter().map(|(id, _)| id.0).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..50).collect::<Vec<_>>());
    assert!(
        got.iter()
            .all(|(_, r)| matches!(r, Response::Stored { .. }))
    );
}

#[tokio::test]
async fn a_frame_split_across_writes_is_answered_once_complete() {
    let (mut client, _task, _stop) = start_with_shutdown();
    let f = frame(7, ping());
    client.write_all(&f[..5]).await.expect("write");
    client.flush().await.expect("flush");
    tokio::task::yield_now().await;
    client.write_all(&f[5..]).await.expect("write");
    let got = responses(&mut client, 1).await;
    assert_eq!(
        got,
        vec![(RequestId(7), Response::Pong { node: NodeId(1) })]
    );
}

#[tokio::test]
async fn wrong_version_and_garbage_bodies_get_errors_and_the_stream_goes_on() {
    let (mut client, _task, _stop) = start_with_shutdown();
    let mut bad_version = frame(1, ping());
    bad_version[4..6].copy_from_slice(&(PROTOCOL_VERSION + 7).to_le_bytes());
    let mut garbage = BytesMut::new();
    garbage.put_u32_le(10 + 5);
    garbage.put_u16_le(PROTOCOL_VERSION);
    garbage.put_u64_le(2);
    garbage.put_slice(&[0xFF, 0xFE, 0xFD, 0xFC, 0xFB]);
    client.write_all(&bad_version).await.expect("write");
    client.write_all(&garbage).await.expect("write");
    client.write_all(&frame(3, ping())).await.expect("write");
    let got = responses(&mut client, 3).await;
    let code = |id: u64| {
        got.iter()
            .find(|(r, _)| r.0 == id)
            .map(|(_, resp)| match resp {
                Response::Error(e) => Some(e.code),
                _ => None,
            })
    };
    assert_eq!(code(1), Some(Some(ErrorCode::UnsupportedVersion)));
    assert_eq!(code(2), Some(Some(ErrorCode::Malformed)));
    assert_eq!(code(3), Some(None), "the stream still serves");
}

#[tokio::test]
async fn an_oversized_frame_gets_an_error_and_the_stream_closes() {
    let (mut client, task, _stop) = start_with_shutdown();
    let mut big = BytesMut::new();
    big.put_u32_le(MAX_FRAME + 1);
    big.put_u16_le(PROTOCOL_VERSION);
    big.put_u64_le(9);
    client.write_all(&big).await.expect("write");
    let got = responses(&mut client, 1).await;
    assert!(
        matches!(&got[0], (RequestId(9), Response::Error(e)) if e.code == ErrorCode::FrameTooLarge)
    );
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("loop ends")
        .expect("no panic")
        .expect("no I/O error");
    assert!(matches!(
        end,
        StreamEnd::ProtocolError(FrameError::TooLarge { .. })
    ));
    // Nothing more arrives: the node closed its side.
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(n, 0);
}

#[tokio::test]
async fn pure_garbage_ends_the_stream_without_a_panic() {
    let (mut client, task, _stop) = start_with_shutdown();
    // A length of 3 cannot even hold the header: this is not our protocol.
    client
        .write_all(&[3, 0, 0, 0, 42, 42, 42])
        .await
        .expect("write");
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("loop ends")
        .expect("no panic")
        .expect("no I/O error");
    assert_eq!(
        end,
        StreamEnd::ProtocolError(FrameError::TooShort { len: 3 })
    );
}

#[tokio::test]
async fn a_response_larger_than_a_frame_becomes_an_error() {
    let (mut client, _task, _stop) = start_with_shutdown();
    let mut batch = BytesMut::new();
    for i in 0..12u64 {
        batch.extend_from_slice(&frame(
            i,
            Op::Set {
                ns: "default".into(),
                key: Bytes::from(format!("big{i}")),
                value: Bytes::from(vec![b'x'; 8000]),
                ttl_ms: None,
                condition: WriteCondition::Always,
            },
        ));
    }
    let keys = (0..12u64).map(|i| Bytes::from(format!("big{i}"))).collect();
    batch.extend_from_slice(&frame(
        100,
        Op::GetMany {
            ns: "default".into(),
            keys,
        },
    ));
    client.write_all(&batch).await.expect("write");
    let got = responses(&mut client, 13).await;
    let last = got.iter().find(|(id, _)| id.0 == 100).expect("answered");
    assert!(
        matches!(&last.1, Response::Error(e) if e.code == ErrorCode::FrameTooLarge),
        "{:?}",
        last.1
    );
}

#[tokio::test]
async fn shutdown_answers_what_was_received_then_finishes_the_stream() {
    let (mut client, task, stop) = start_with_shutdown();
    client.write_all(&frame(1, ping())).await.expect("write");
    let got = responses(&mut client, 1).await;
    assert_eq!(got.len(), 1);
    stop.send(true).expect("loop is listening");
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("loop ends")
        .expect("no panic")
        .expect("no I/O error");
    assert_eq!(end, StreamEnd::ShutDown);
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut rest))
        .await
        .expect("finished in time")
        .expect("read");
    assert_eq!(n, 0, "nothing after the shutdown");
}

/// One request at a time on one stream, answered in order.
async fn ask(client: &mut DuplexStream, id: u64, op: Op) -> Response {
    client.write_all(&frame(id, op)).await.expect("write");
    let got = responses(client, 1).await;
    assert_eq!(got[0].0, RequestId(id));
    got.into_iter().next().expect("one response").1
}

fn get(ns: &str, key: &'static [u8]) -> Op {
    Op::Get {
        ns: ns.into(),
        key: Bytes::from_static(key),
    }
}

fn set(ns: &str, key: &'static [u8]) -> Op {
    Op::Set {
        ns: ns.into(),
        key: Bytes::from_static(key),
        value: Bytes::from_static(b"v"),
        ttl_ms: None,
        condition: WriteCondition::Always,
    }
}

/// A stream remembers its last namespace between requests (GETs and SETs are served
/// without a lookup): namespaces created and changed while it is open are still seen.
#[tokio::test]
async fn a_stream_sees_namespaces_created_and_changed_while_it_is_open() {
    // Runtime namespace changes need a data directory to save them in.
    let dir = tempfile::tempdir().expect("temp dir");
    let namespaces = BTreeMap::from([("default".to_owned(), NamespaceConfig::default())]);
    let keyspace = Keyspace::open(8, &namespaces, dir.path(), dir.path())
        .await
        .expect("opens");
    let h = Handler::new(
        Arc::new(keyspace),
        Limits::default(),
        NodeId(1),
        "127.0.0.1:1".into(),
    );
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let (_stop, stopped) = watch::channel(false);
    let _task = tokio::spawn(async move {
        let (r, w) = tokio::io::split(server);
        serve_stream(&h, r, w, stopped).await
    });
    assert!(matches!(
        ask(&mut client, 1, set("default", b"k")).await,
        Response::Stored { .. }
    ));
    match ask(&mut client, 2, get("other", b"k")).await {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::UnknownNamespace, "{e:?}"),
        r => panic!("expected unknown_namespace, got {r:?}"),
    }
    let created = ask(
        &mut client,
        3,
        Op::NsCreate {
            ns: "other".into(),
            config: "memory = \"1MiB\"".into(),
        },
    )
    .await;
    assert!(matches!(created, Response::Namespaces(_)), "{created:?}");
    assert!(matches!(
        ask(&mut client, 4, set("other", b"k")).await,
        Response::Stored { .. }
    ));
    assert!(matches!(
        ask(&mut client, 5, get("other", b"k")).await,
        Response::Value(Some(_))
    ));
    // The stream's last namespace changes under it: the next SET takes its new
    // default TTL.
    assert!(matches!(
        ask(&mut client, 50, get("default", b"k")).await,
        Response::Value(Some(_))
    ));
    let altered = ask(
        &mut client,
        6,
        Op::NsAlter {
            ns: "default".into(),
            config: "default_ttl = \"1h\"".into(),
        },
    )
    .await;
    assert!(matches!(altered, Response::Namespaces(_)), "{altered:?}");
    assert!(matches!(
        ask(&mut client, 7, set("default", b"k2")).await,
        Response::Stored { .. }
    ));
    match ask(&mut client, 8, get("default", b"k2")).await {
        Response::Value(Some(e)) => {
            let ttl = e.ttl_ms.expect("the new default TTL applies");
            assert!(ttl > 3_500_000 && ttl <= 3_600_000, "ttl {ttl} ms");
        }
        r => panic!("expected a value, got {r:?}"),
    }
}

fn scan<'a>(h: &Handler, buf: &'a [u8], memo: &mut StreamMemo) -> ScanBatch<'a> {
    let mut batch = ScanBatch::default();
    h.scan_gets(buf, memo, MAX_FRAME, &mut batch);
    batch
}

/// `Handler::scan_gets` reads the GETs and SETs at the front of a buffer, one namespace
/// at a time, prefetches their entries without changing anything, and the requests it
/// read (with the partitions it computed) are answered as if read one by one.
#[test]
fn scanning_covers_a_run_of_gets_and_sets_and_changes_nothing() {
    let h = handler();
    let mut memo = StreamMemo::default();
    let get = |id, key: &str| {
        frame(
            id,
            Op::Get {
                ns: "default".into(),
                key: key.as_bytes().to_vec().into(),
            },
        )
    };
    let set = |id, key: &str| {
        frame(
            id,
            Op::Set {
                ns: "default".into(),
                key: key.as_bytes().to_vec().into(),
                value: Bytes::from_static(b"v"),
                ttl_ms: None,
                condition: WriteCondition::Always,
            },
        )
    };
    let ns = h.keyspace().namespace("default").expect("default");
    let stats = |ns: &ringcache_node::keyspace::Namespace| {
        ns.partitions()
            .map(|p| {
                let s = p.engine.stats();
                (s.hits, s.misses, s.inserts)
            })
            .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
    };
    let before = stats(&ns);

    // Three GETs and a SET, then half a frame: four frames covered.
    let mut buf = BytesMut::new();
    for (i, k) in ["a", "b", "c"].iter().enumerate() {
        buf.extend_from_slice(&get(i as u64, k));
    }
    buf.extend_from_slice(&set(3, "d"));
    let partial = get(4, "e");
    buf.extend_from_slice(&partial[..partial.len() / 2]);
    let batch = scan(&h, &buf, &mut memo);
    assert_eq!(batch.len(), 4);
    assert_eq!(
        batch.iter().map(|s| s.id.0).collect::<Vec<_>>(),
        [0, 1, 2, 3],
        "in stream order"
    );
    assert_eq!(batch.bytes(), buf.len() - partial.len() / 2);
    // Another namespace ends the run; so does any other operation.
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&get(0, "a"));
    buf.extend_from_slice(&frame(
        1,
        Op::Get {
            ns: "other".into(),
            key: b"a".to_vec().into(),
        },
    ));
    assert_eq!(scan(&h, &buf, &mut memo).len(), 1);
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&get(0, "a"));
    buf.extend_from_slice(&get(1, "b"));
    buf.extend_from_slice(&frame(2, Op::Ping));
    buf.extend_from_slice(&get(3, "c"));
    assert_eq!(scan(&h, &buf, &mut memo).len(), 2);
    // Nothing complete, or another operation first: empty, so the caller decodes (or
    // waits for more).
    assert!(scan(&h, &[], &mut memo).is_empty());
    assert!(scan(&h, &partial[..3], &mut memo).is_empty());
    assert!(scan(&h, &frame(0, Op::Ping), &mut memo).is_empty());
    // More than a batch: a batch's worth.
    let mut buf = BytesMut::new();
    for i in 0..40u64 {
        buf.extend_from_slice(&get(i, &format!("k{i}")));
    }
    let batch = scan(&h, &buf, &mut memo);
    assert_eq!(batch.len(), ringcache_node::handler::PREFETCH_BATCH);
    assert_eq!(stats(&ns), before, "prefetching counts no access");

    // Answered from the batch: SETs of 16 keys spread over the partitions, then GETs
    // of them read back through a second scan, each landing where a lone request
    // (hashing its own key) finds it.
    let mut buf = BytesMut::new();
    for i in 0..16u64 {
        buf.extend_from_slice(&set(i, &format!("s{i}")));
    }
    let batch = scan(&h, &buf, &mut memo);
    assert_eq!(batch.len(), 16);
    let mut out = BytesMut::new();
    for s in batch.iter() {
        match h.handle_scanned(s, &mut memo, MAX_FRAME, &mut out) {
            Some(Reply::Ready(Response::Stored { .. })) => {}
            other => panic!("expected stored, got {other:?}"),
        }
    }
    let mut buf = BytesMut::new();
    for i in 0..16u64 {
        buf.extend_from_slice(&get(100 + i, &format!("s{i}")));
    }
    let batch = scan(&h, &buf, &mut memo);
    for s in batch.iter() {
        assert!(
            h.handle_scanned(s, &mut memo, MAX_FRAME, &mut out)
                .is_none()
        );
    }
    let mut found = 0;
    while let Some((id, response)) = decode_response(&mut out, MAX_FRAME).expect("a response") {
        assert!(
            matches!(response, Response::Value(Some(ref v)) if v.value == Bytes::from_static(b"v")),
            "request {id:?}: {response:?}"
        );
        found += 1;
    }
    assert_eq!(found, 16);
    for i in 0..16u64 {
        let mut out = BytesMut::new();
        let lone = get(200 + i, &format!("s{i}"));
        // Scanned alone: no partition kept, the handler hashes the key itself.
        let batch = scan(&h, &lone, &mut memo);
        let [alone] = batch.iter().collect::<Vec<_>>()[..] else {
            panic!("one request scanned");
        };
        assert!(
            h.handle_scanned(alone, &mut memo, MAX_FRAME, &mut out)
                .is_none()
        );
        let (_, response) = decode_response(&mut out, MAX_FRAME)
            .expect("a response")
            .expect("complete");
        assert!(
            matches!(response, Response::Value(Some(_))),
            "key s{i} alone: {response:?}"
        );
    }
}
