//! The client against a fake node (a quinn server with the cluster's certificates) that
//! answers pings and nothing else: request deadlines, and clients sharing an endpoint.

use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringcache_client::{Client, ClientConfig, Endpoint, Error};
use ringcache_proto::{NodeId, Op, Request, Response, decode, encode};
use ringcache_tls::{
    ALPN_CLIENT, CertAuthority, ClientAuth, bind_endpoint, load_cert_pem, load_identity,
    quinn_server_config, server_config, write_bundle,
};
use tokio::io::AsyncReadExt;

const MAX_FRAME: u32 = 1 << 20;

/// Starts the fake node (certificates in `dir`); returns a client configuration for it.
async fn fake_node(dir: &std::path::Path, request_timeout: Duration) -> ClientConfig {
    let ca = CertAuthority::generate("ringcache.local").expect("ca");
    let node = ca
        .issue_node(NodeId(1), &["127.0.0.1".to_owned()])
        .expect("node cert");
    let client = ca.issue_client("test").expect("client cert");
    write_bundle(dir, &ca, &[(NodeId(1), &node)], &[("test", &client)]).expect("bundle");
    let tls = server_config(
        &load_cert_pem(&dir.join("ca.pem")).expect("ca pem"),
        &load_identity(&dir.join("node-1.pem"), &dir.join("node-1.key")).expect("identity"),
        ClientAuth::Required,
        &[ALPN_CLIENT],
    )
    .expect("tls");
    let endpoint = bind_endpoint(
        ([127, 0, 0, 1], 0).into(),
        Some(quinn_server_config(tls).expect("quinn config")),
    )
    .expect("bind");
    let addr = endpoint.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    tokio::spawn(async move {
                        let mut buf = BytesMut::new();
                        while recv.read_buf(&mut buf).await.unwrap_or(0) > 0 {
                            let mut out = BytesMut::new();
                            while let Ok(Some((id, req))) = decode::<Request>(&mut buf, MAX_FRAME) {
                                if req.op == Op::Ping {
                                    let pong = Response::Pong { node: NodeId(1) };
                                    encode(id, &pong, MAX_FRAME, &mut out).expect("encode");
                                }
                            }
                            if send.write_all(&out).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            });
        }
    });
    let mut cfg = ClientConfig::new(
        vec![addr.to_string()],
        dir.join("ca.pem"),
        dir.join("client-test.pem"),
        dir.join("client-test.key"),
    );
    cfg.request_timeout = request_timeout;
    cfg
}

#[tokio::test]
async fn an_unanswered_request_times_out_near_its_deadline_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().expect("dir");
    let timeout = Duration::from_millis(300);
    let client = Client::connect(fake_node(dir.path(), timeout).await)
        .await
        .expect("connect");
    assert_eq!(client.ping().await.expect("ping"), NodeId(1));

    let started = Instant::now();
    let err = client
        .get("default", "k")
        .await
        .expect_err("the fake node never answers a get");
    let waited = started.elapsed();
    assert!(
        matches!(err, Error::Timeout { after, .. } if after == timeout),
        "{err:?}"
    );
    assert!(err.outcome_unknown(), "{err:?}");
    // Never early; late by at most two sweeper ticks (a twentieth of the timeout each)
    // plus scheduling slack.
    assert!(waited >= timeout, "timed out after {waited:?}");
    assert!(
        waited < timeout + Duration::from_millis(250),
        "timed out only after {waited:?}"
    );

    // Many at once: all time out, none is lost, and the connection still serves.
    let many: Vec<_> = (0..20)
        .map(|i| {
            let c = client.clone();
            tokio::spawn(async move { c.exists("default", format!("k{i}")).await })
        })
        .collect();
    for t in many {
        let r = t.await.expect("task");
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    }
    assert_eq!(client.ping().await.expect("ping after timeouts"), NodeId(1));
}

#[tokio::test]
async fn clients_on_one_endpoint_share_its_socket_and_close_independently() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = fake_node(dir.path(), Duration::from_secs(5)).await;
    let endpoint = Endpoint::bind().expect("endpoint");
    let a = Client::connect_on(cfg.clone(), &endpoint)
        .await
        .expect("connect a");
    let b = Client::connect_on(cfg, &endpoint).await.expect("connect b");
    assert_eq!(a.ping().await.expect("ping a"), NodeId(1));
    assert_eq!(b.ping().await.expect("ping b"), NodeId(1));

    // Closing one returns at once (it does not wait for the shared socket to go idle)
    // and leaves the other working.
    tokio::time::timeout(Duration::from_secs(2), a.close())
        .await
        .expect("close does not wait for the other client");
    assert_eq!(b.ping().await.expect("b still works"), NodeId(1));
    assert!(endpoint.local_addr().is_ok());
}
