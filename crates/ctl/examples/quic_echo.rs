//! The transport's ceiling: a QUIC server that speaks the client protocol's framing over
//! the same TLS and transport settings as `ringcached`, and answers every request
//! frame with a fixed 100-byte `Value` at once (no namespace, no routing, no engine).
//!
//! ```sh
//! ringctl local up --detach --dir /tmp/rc          # for its certificates
//! cargo run --release -p ringcache-ctl --example quic_echo -- /tmp/rc/certs 127.0.0.1:7400
//! sed 's/^endpoints = .*/endpoints = ["127.0.0.1:7400"]/' /tmp/rc/client.toml > /tmp/rc/echo.toml
//! ringctl -c /tmp/rc/echo.toml bench --driver lean --ns default --depth 16
//! ```
//!
//! `ringctl bench --driver lean` against it measures what QUIC, TLS and the stream
//! loop cost with nothing else to do: the most a node could serve on this machine with
//! this transport and this load generator (see `docs/benchmarks/node.md`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use bytes::{Buf as _, BytesMut};
use ringcache_proto::{
    DEFAULT_MAX_FRAME, ErrorCode, Op, OpRef, RequestId, Response, ValueRef, WireError,
};
use tokio::io::AsyncReadExt as _;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: quic_echo CERTS_DIR LISTEN_ADDR";
    let dir = PathBuf::from(args.next().context(usage)?);
    let addr: SocketAddr = args.next().context(usage)?.parse().context(usage)?;
    let ca = ringcache_tls::load_cert_pem(&dir.join("ca.pem"))?;
    let identity = ringcache_tls::load_identity(&dir.join("node-1.pem"), &dir.join("node-1.key"))?;
    let tls = ringcache_tls::server_config(
        &ca,
        &identity,
        ringcache_tls::ClientAuth::Required,
        &[ringcache_tls::ALPN_CLIENT],
    )?;
    let endpoint =
        ringcache_tls::bind_endpoint(addr, Some(ringcache_tls::quinn_server_config(tls)?))?;
    eprintln!("quic_echo: listening on {}", endpoint.local_addr()?);
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(async move {
            let Ok(conn) = incoming.await else { return };
            while let Ok((send, recv)) = conn.accept_bi().await {
                tokio::spawn(serve(send, recv));
            }
        });
    }
    Ok(())
}

/// Answers every complete frame of one read with one write: a GET with a fixed
/// 100-byte value, a SET with `Stored`, stats with an empty list.
async fn serve(mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
    let value = [b'v'; 100];
    let mut inbuf = BytesMut::with_capacity(64 << 10);
    let mut outbuf = BytesMut::with_capacity(64 << 10);
    loop {
        if inbuf.capacity() - inbuf.len() < 16 << 10 {
            inbuf.reserve(64 << 10);
        }
        match recv.read_buf(&mut inbuf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        loop {
            if let Some((id, req, len)) = ringcache_proto::peek_request(&inbuf, DEFAULT_MAX_FRAME) {
                match req.op {
                    OpRef::Get { .. } => {
                        let entry = ValueRef {
                            value: &value,
                            version: 1,
                            ttl_ms: None,
                        };
                        ringcache_proto::encode_value_response(
                            id,
                            Some(entry),
                            DEFAULT_MAX_FRAME,
                            &mut outbuf,
                        )
                        .expect("a 100-byte value fits");
                    }
                    _ => answer(id, &Response::Stored { version: 1 }, &mut outbuf),
                }
                inbuf.advance(len);
                continue;
            }
            // Anything but a GET or SET (the bench's namespace check asks for stats).
            match ringcache_proto::decode_request(&mut inbuf, DEFAULT_MAX_FRAME) {
                Ok(Some((id, req))) => {
                    let resp = match req.op {
                        Op::Stats { .. } => Response::Stats(Vec::new()),
                        _ => Response::Error(WireError::new(
                            ErrorCode::Unsupported,
                            "quic_echo answers get, set and stats only",
                        )),
                    };
                    answer(id, &resp, &mut outbuf);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        if send.write_all(&outbuf).await.is_err() {
            return;
        }
        outbuf.clear();
    }
}

fn answer(id: RequestId, resp: &Response, out: &mut BytesMut) {
    ringcache_proto::encode_response(id, resp, DEFAULT_MAX_FRAME, out)
        .expect("a small answer fits");
}
