//! The Ringcache side without the client library (`--driver lean`): N QUIC connections
//! over one local UDP socket, one request stream each, driven exactly as the Redis side
//! drives its TCP connections ([`super::redis`]): one task per connection writes the D
//! first requests at once, and whenever answers arrive, each completes its request, its
//! loop records the latency and queues its next request, and the requests of one read
//! go out in one write.
//!
//! What it leaves out is what the client library adds on top of the protocol:
//! routing, per-request futures and wakers, timeouts, reconnects, decoded answers (an
//! answer is classified from its first body byte; only error answers are decoded).
//! So `--driver lean` measures the node with a load generator as cheap as the Redis
//! one, and the difference to `--driver client` is what the library costs the load
//! generator on these shared CPUs. Requests carry epoch 0 (unchecked routing), so
//! this driver is for one-node deployments (`ringctl local up`); on a member that does
//! not own a key the answer is `not_owner` and is counted as an error.

use std::net::ToSocketAddrs as _;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use bytes::{Buf as _, BytesMut};
use ringcache_client::ClientConfig;
use ringcache_proto::{
    Epoch, HEADER_LEN, OpRef, PROTOCOL_VERSION, RequestId, RequestRef, Response, WriteCondition,
};
use tokio::io::AsyncReadExt as _;
use tokio::task::JoinSet;

use super::recorder::{Recorder, Recorders, Shared, Window, run_connections};
use super::workload::{OpKind, Picker, Workload, write_key};

/// Read buffer growth step.
const READ_CHUNK: usize = 64 << 10;

/// One connection's request stream.
#[derive(Debug)]
pub(crate) struct Conn {
    /// Kept open while the stream is used.
    quic: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    max_frame: u32,
}

/// Opens `n` connections to the first endpoint of `config`, all over one local UDP
/// socket, each with its request stream.
pub(crate) async fn connect(config: &ClientConfig, n: u32) -> anyhow::Result<Vec<Conn>> {
    let endpoint_addr = config
        .endpoints
        .first()
        .context("the client configuration names no endpoint")?;
    let addr = endpoint_addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {endpoint_addr}"))?
        .next()
        .with_context(|| format!("{endpoint_addr} resolves to nothing"))?;
    let ca = ringcache_tls::load_cert_pem(&config.ca_cert)?;
    let identity = ringcache_tls::load_identity(&config.client_cert, &config.client_key)?;
    let tls = ringcache_tls::client_config(&ca, Some(&identity), &[ringcache_tls::ALPN_CLIENT])?;
    let quic = ringcache_tls::quinn_client_config(tls)?;
    let endpoint = ringcache_tls::bind_endpoint(([0, 0, 0, 0], 0).into(), None)
        .context("opening the UDP socket")?;
    let name = ringcache_tls::any_node_server_name(&config.cluster_domain);
    let max_frame = config.limits.max_frame;
    let mut set = JoinSet::new();
    for _ in 0..n {
        let (endpoint, quic, name) = (endpoint.clone(), quic.clone(), name.clone());
        set.spawn(async move {
            let connecting = endpoint.connect_with(quic, addr, &name)?;
            let quic = tokio::time::timeout(std::time::Duration::from_secs(10), connecting)
                .await
                .context("connect timed out")??;
            let (send, recv) = quic.open_bi().await?;
            anyhow::Ok(Conn {
                quic,
                send,
                recv,
                rbuf: BytesMut::with_capacity(READ_CHUNK),
                wbuf: BytesMut::with_capacity(READ_CHUNK),
                max_frame,
            })
        });
    }
    let mut conns = Vec::with_capacity(n as usize);
    while let Some(joined) = set.join_next().await {
        conns.push(
            joined
                .context("connect task failed")?
                .with_context(|| format!("connecting to Ringcache at {addr}"))?,
        );
    }
    Ok(conns)
}

/// Runs the closed loops until `window.end`; returns every connection's measurements
/// merged.
pub(crate) async fn load(
    conns: Vec<Conn>,
    ns: &str,
    workload: &Arc<Workload>,
    depth: u32,
    seed: u64,
    window: Window,
    shared: &Arc<Shared>,
) -> Recorder {
    let ns: Arc<str> = ns.into();
    run_connections(
        conns,
        workload,
        depth,
        seed,
        &window,
        shared,
        |conn, pickers, recorders| {
            connection_loop(
                conn,
                Arc::clone(&ns),
                pickers,
                Arc::clone(workload),
                window,
                Arc::clone(shared),
                recorders,
            )
        },
    )
    .await
}

/// What an answer is, as far as the loops care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// A `Value` answer: found (`true`) or not.
    Value(bool),
    /// A `Stored` answer.
    Stored,
    /// Anything else (an error, or an answer GET and SET never get).
    Other,
}

/// `Response` variant indexes (the bincode encoding starts with them; see
/// `docs/protocol.md`).
const RESP_VALUE: u8 = 1;
const RESP_STORED: u8 = 3;

/// The frame at the front of `buf`: its request id, what it answers and its length;
/// `Ok(None)` while incomplete.
fn peek_answer(buf: &[u8], max_frame: u32) -> anyhow::Result<Option<(u64, Answer, usize)>> {
    let Some(prefix) = buf.get(..4) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes"));
    if len > max_frame || (len as usize) < HEADER_LEN - 4 + 1 {
        bail!("bad frame length {len} from the node");
    }
    let total = 4 + len as usize;
    let Some(frame) = buf.get(..total) else {
        return Ok(None);
    };
    let version = u16::from_le_bytes([frame[4], frame[5]]);
    if version != PROTOCOL_VERSION {
        bail!("the node answered with protocol version {version}");
    }
    let id = u64::from_le_bytes(frame[6..14].try_into().expect("8 bytes"));
    let answer = match (frame[HEADER_LEN], frame.get(HEADER_LEN + 1)) {
        (RESP_VALUE, Some(0)) => Answer::Value(false),
        (RESP_VALUE, Some(1)) => Answer::Value(true),
        (RESP_STORED, _) => Answer::Stored,
        _ => Answer::Other,
    };
    Ok(Some((id, answer, total)))
}

/// The message of an answer that is neither `Value` nor `Stored`.
fn describe(frame: &[u8], max_frame: u32) -> String {
    let mut buf = BytesMut::from(frame);
    match ringcache_proto::decode_response(&mut buf, max_frame) {
        Ok(Some((_, Response::Error(e)))) => format!("{}: {}", e.code.name(), e.message),
        Ok(Some((_, other))) => format!("unexpected answer {other:?}"),
        Ok(None) => "a truncated answer".to_owned(),
        Err(e) => format!("a bad answer: {e}"),
    }
}

/// Loop `lp`'s request in flight: what it is and when it was sent.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    op: OpKind,
    sent: Instant,
    /// The request id it was sent with (ids count up per connection; `id % D` is the
    /// loop).
    id: u64,
}

/// One connection's D loops (see the module docs).
async fn connection_loop(
    mut conn: Conn,
    ns: Arc<str>,
    mut pickers: Vec<Picker>,
    workload: Arc<Workload>,
    window: Window,
    shared: Arc<Shared>,
    recorders: Arc<Recorders>,
) {
    let depth = pickers.len();
    let mut inflight: Vec<Option<InFlight>> = vec![None; depth];
    let mut outstanding = 0usize;
    let mut ready: Vec<usize> = (0..depth).collect();
    let mut key = Vec::with_capacity(24);
    let mut next_id = 0u64;
    loop {
        let sent = Instant::now();
        if sent < window.end {
            for &lp in &ready {
                let (op, n) = pickers[lp].next();
                write_key(n, &mut key);
                let op_ref = match op {
                    OpKind::Get => OpRef::Get { ns: &ns, key: &key },
                    OpKind::Set => OpRef::Set {
                        ns: &ns,
                        key: &key,
                        value: &workload.value,
                        ttl_ms: None,
                        condition: WriteCondition::Always,
                    },
                };
                // The next id that names this loop.
                let id = next_id - next_id % depth as u64 + lp as u64;
                next_id += depth as u64;
                let req = RequestRef {
                    epoch: Epoch(0),
                    op: op_ref,
                };
                if let Err(e) = ringcache_proto::encode_request(
                    RequestId(id),
                    req,
                    conn.max_frame,
                    &mut conn.wbuf,
                ) {
                    shared.error(1, || format!("{}: {e}", op.name()));
                    continue;
                }
                inflight[lp] = Some(InFlight { op, sent, id });
                outstanding += 1;
            }
            ready.clear();
            if let Err(e) = conn.send.write_all(&conn.wbuf).await {
                shared.error(outstanding as u64, || format!("writing to the node: {e}"));
                break;
            }
            conn.wbuf.clear();
        }
        if outstanding == 0 {
            break;
        }
        if conn.rbuf.capacity() - conn.rbuf.len() < READ_CHUNK / 4 {
            conn.rbuf.reserve(READ_CHUNK);
        }
        match conn.recv.read_buf(&mut conn.rbuf).await {
            Ok(0) => {
                shared.error(outstanding as u64, || "the node closed the stream".into());
                break;
            }
            Ok(_) => {}
            Err(e) => {
                shared.error(outstanding as u64, || format!("reading from the node: {e}"));
                break;
            }
        }
        let done = Instant::now();
        let mut rec = recorders.here();
        let mut used = 0;
        let broken = loop {
            let (id, answer, len) = match peek_answer(&conn.rbuf[used..], conn.max_frame) {
                Ok(Some(a)) => a,
                Ok(None) => break None,
                Err(e) => break Some(format!("{e:#}")),
            };
            let frame = &conn.rbuf[used..used + len];
            used += len;
            let lp = (id % depth as u64) as usize;
            let Some(req) = inflight[lp].take_if(|r| r.id == id) else {
                break Some(format!("an answer to request {id}, which is not in flight"));
            };
            outstanding -= 1;
            match (answer, req.op) {
                (Answer::Value(hit), OpKind::Get) => {
                    rec.record(req.op, req.sent, done, Some(hit), &window, &shared);
                }
                (Answer::Stored, OpKind::Set) => {
                    rec.record(req.op, req.sent, done, None, &window, &shared);
                }
                (_, op) => {
                    let why = describe(frame, conn.max_frame);
                    shared.error(1, || format!("{}: {why}", op.name()));
                }
            }
            ready.push(lp);
        };
        drop(rec);
        conn.rbuf.advance(used);
        if let Some(why) = broken {
            shared.error(outstanding as u64, || why);
            break;
        }
    }
    conn.quic.close(0u32.into(), b"bench done");
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ringcache_proto::{Entry, ErrorCode, WireError, encode_response};

    fn frame(id: u64, resp: &Response) -> BytesMut {
        let mut out = BytesMut::new();
        encode_response(RequestId(id), resp, 1 << 20, &mut out).expect("encodes");
        out
    }

    #[test]
    fn answers_are_classified_from_their_frames() {
        let hit = Response::Value(Some(Entry {
            value: Bytes::from_static(b"v"),
            version: 7,
            ttl_ms: None,
        }));
        let cases = [
            (hit, Answer::Value(true)),
            (Response::Value(None), Answer::Value(false)),
            (Response::Stored { version: 3 }, Answer::Stored),
            (
                Response::Error(WireError::new(
                    ErrorCode::UnknownNamespace,
                    "no such namespace",
                )),
                Answer::Other,
            ),
        ];
        for (resp, want) in cases {
            let f = frame(42, &resp);
            // Incomplete until the last byte.
            for cut in 0..f.len() {
                assert_eq!(peek_answer(&f[..cut], 1 << 20).expect("no error"), None);
            }
            let (id, got, len) = peek_answer(&f, 1 << 20).expect("ok").expect("complete");
            assert_eq!((id, got, len), (42, want, f.len()), "{resp:?}");
        }
        let err = frame(
            1,
            &Response::Error(WireError::new(ErrorCode::UnknownNamespace, "gone")),
        );
        assert!(describe(&err, 1 << 20).contains("gone"));
        let mut bad = frame(1, &Response::Value(None));
        bad[4] = 9;
        assert!(peek_answer(&bad, 1 << 20).is_err());
        assert!(peek_answer(&[0xff, 0xff, 0xff, 0x7f], 1 << 20).is_err());
    }
}
