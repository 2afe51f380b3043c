//! Real QUIC handshakes on 127.0.0.1: who gets in, who does not, and where a refusal
//! shows up.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use quinn::{ConnectionError, Endpoint, ReadError, ReadToEndError, WriteError};
use ringcache_proto::NodeId;
use ringcache_tls::{
    ALPN_CLIENT, ALPN_PEER, CertAuthority, ClientAuth, IssuedCert, TlsError, any_node_server_name,
    client_config, node_server_name, peer_certificate, quinn_client_config, quinn_server_config,
    server_config, verify_peer_node,
};
use tokio::sync::mpsc;
use tokio::time::timeout;

const DOMAIN: &str = "ringcache.test";
/// Upper bound for any single step (a connect, an echo, a server event).
const STEP: Duration = Duration::from_secs(10);
const MAX_ECHO: usize = 64 * 1024;

/// TLS alerts as QUIC transport error codes (0x100 + alert, RFC 9001 §4.8).
const CERTIFICATE_REQUIRED: u64 = 0x100 + 116;
const UNKNOWN_CA: u64 = 0x100 + 48;
const BAD_CERTIFICATE: u64 = 0x100 + 42;
const NO_APPLICATION_PROTOCOL: u64 = 0x100 + 120;

/// What the server saw of one incoming connection.
enum ServerEvent {
    Accepted(quinn::Connection),
    HandshakeFailed(ConnectionError),
}

/// An echo server: each bidirectional stream gets back what it sent.
struct Server {
    endpoint: Endpoint,
    addr: SocketAddr,
    events: mpsc::UnboundedReceiver<ServerEvent>,
}

impl Server {
    fn start(ca_pem: &str, identity: &IssuedCert, auth: ClientAuth) -> Result<Self> {
        let tls = server_config(ca_pem, identity, auth, &[ALPN_CLIENT, ALPN_PEER])?;
        let endpoint = Endpoint::server(quinn_server_config(tls)?, "127.0.0.1:0".parse()?)?;
        let addr = endpoint.local_addr()?;
        let (tx, events) = mpsc::unbounded_channel();
        let accepting = endpoint.clone();
        tokio::spawn(async move {
            while let Some(incoming) = accepting.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    match incoming.await {
                        Ok(conn) => {
                            let _ = tx.send(ServerEvent::Accepted(conn.clone()));
                            while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                                let Ok(data) = recv.read_to_end(MAX_ECHO).await else {
                                    break;
                                };
                                if send.write_all(&data).await.is_err() || send.finish().is_err() {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(ServerEvent::HandshakeFailed(e));
                        }
                    }
                });
            }
        });
        Ok(Self {
            endpoint,
            addr,
            events,
        })
    }

    async fn next_event(&mut self) -> Result<ServerEvent> {
        timeout(STEP, self.events.recv())
            .await
            .context("no server event within 10 s")?
            .context("server accept loop ended")
    }

    async fn accepted(&mut self) -> Result<quinn::Connection> {
        match self.next_event().await? {
            ServerEvent::Accepted(conn) => Ok(conn),
            ServerEvent::HandshakeFailed(e) => bail!("server refused the handshake: {e}"),
        }
    }

    async fn refused(&mut self) -> Result<ConnectionError> {
        match self.next_event().await? {
            ServerEvent::Accepted(_) => bail!("server accepted a connection it should refuse"),
            ServerEvent::HandshakeFailed(e) => Ok(e),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"test over");
    }
}

/// Where a client attempt ended.
#[derive(Debug)]
enum Outcome {
    /// Connected and echoed these bytes back.
    Echoed(Vec<u8>),
    /// `connect` itself failed.
    ConnectFailed(ConnectionError),
    /// `connect` succeeded, the first stream write or read failed.
    StreamFailed(ConnectionError),
}

/// A client endpoint with one configuration.
struct Client {
    endpoint: Endpoint,
}

impl Client {
    fn new(ca_pem: &str, identity: Option<&IssuedCert>, alpn: &[&[u8]]) -> Result<Self> {
        let mut endpoint = Endpoint::client("127.0.0.1:0".parse()?)?;
        endpoint.set_default_client_config(quinn_client_config(client_config(
            ca_pem, identity, alpn,
        )?)?);
        Ok(Self { endpoint })
    }

    async fn connect(&self, addr: SocketAddr, server_name: &str) -> Result<quinn::Connection> {
        let connecting = self.endpoint.connect(addr, server_name)?;
        Ok(timeout(STEP, connecting)
            .await
            .context("connect timed out")??)
    }

    /// Connects and sends `payload` on one bidirectional stream, bounded by [`STEP`].
    async fn attempt(&self, addr: SocketAddr, server_name: &str, payload: &[u8]) -> Outcome {
        let run = async {
            let connecting = self
                .endpoint
                .connect(addr, server_name)
                .expect("connect parameters are valid");
            let conn = match connecting.await {
                Ok(conn) => conn,
                Err(e) => return Outcome::ConnectFailed(e),
            };
            match echo(&conn, payload).await {
                Ok(data) => Outcome::Echoed(data),
                Err(e) => Outcome::StreamFailed(e),
            }
        };
        timeout(STEP, run)
            .await
            .expect("a client attempt ends within 10 s")
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.endpoint.close(0u32.into(), b"test over");
    }
}

async fn echo(conn: &quinn::Connection, payload: &[u8]) -> Result<Vec<u8>, ConnectionError> {
    let lost = |what: &str| -> ConnectionError {
        panic!("stream failed without losing the connection: {what}")
    };
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(payload).await.map_err(|e| match e {
        WriteError::ConnectionLost(e) => e,
        other => lost(&other.to_string()),
    })?;
    send.finish().map_err(|e| lost(&e.to_string()))?;
    recv.read_to_end(MAX_ECHO).await.map_err(|e| match e {
        ReadToEndError::Read(ReadError::ConnectionLost(e)) => e,
        other => lost(&other.to_string()),
    })
}

/// The QUIC error code a failed connection carries: the peer's CONNECTION_CLOSE code,
/// or the local error's code when this side gave up.
fn error_code(e: &ConnectionError) -> Option<u64> {
    match e {
        ConnectionError::ConnectionClosed(close) => Some(close.error_code.into()),
        ConnectionError::TransportError(err) => Some(err.code.into()),
        _ => None,
    }
}

struct Cluster {
    ca: CertAuthority,
    node3: IssuedCert,
    node4: IssuedCert,
    app: IssuedCert,
}

fn cluster() -> Result<Cluster> {
    let ca = CertAuthority::generate(DOMAIN)?;
    Ok(Cluster {
        node3: ca.issue_node(NodeId(3), &["127.0.0.1".into()])?,
        node4: ca.issue_node(NodeId(4), &["127.0.0.1".into()])?,
        app: ca.issue_client("app")?,
        ca,
    })
}

#[tokio::test]
async fn mutual_tls_handshake_and_echo() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    let client = Client::new(c.ca.cert_pem(), Some(&c.app), &[ALPN_CLIENT])?;

    let conn = client
        .connect(server.addr, &node_server_name(NodeId(3), DOMAIN))
        .await?;
    let server_side = server.accepted().await?;
    assert_eq!(
        server_side.handshake_data().and_then(|h| {
            h.downcast::<quinn::crypto::rustls::HandshakeData>()
                .ok()?
                .protocol
        }),
        Some(ALPN_CLIENT.to_vec())
    );

    let echoed = timeout(STEP, echo(&conn, b"hello ring")).await??;
    assert_eq!(echoed, b"hello ring");

    // Each side knows who the other is.
    verify_peer_node(&conn, NodeId(3), DOMAIN)?;
    let client_cert = peer_certificate(&server_side)?;
    assert!(ringcache_tls::peer_node_id_matches(&client_cert, NodeId(3), DOMAIN).is_err());
    Ok(())
}

#[tokio::test]
async fn server_names_that_reach_node_3() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    let client = Client::new(c.ca.cert_pem(), Some(&c.app), &[ALPN_CLIENT])?;

    // Its own name, the shared name, its IP SAN: accepted.
    for name in [
        node_server_name(NodeId(3), DOMAIN),
        any_node_server_name(DOMAIN),
        "127.0.0.1".to_string(),
    ] {
        let outcome = client.attempt(server.addr, &name, b"x").await;
        assert!(
            matches!(&outcome, Outcome::Echoed(data) if data == b"x"),
            "{name}: {outcome:?}"
        );
        server.accepted().await?;
    }

    // Dialing node 4 and reaching node 3: the client refuses at connect.
    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(4), DOMAIN), b"x")
        .await;
    let Outcome::ConnectFailed(e) = &outcome else {
        panic!("node 3 passed for node 4: {outcome:?}");
    };
    assert_eq!(error_code(e), Some(BAD_CERTIFICATE), "{e}");
    server.refused().await?;
    Ok(())
}

#[tokio::test]
async fn node_to_node_peer_identity() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;

    // Node 4 dials node 3 on the peer protocol with its node certificate.
    let node4 = Client::new(c.ca.cert_pem(), Some(&c.node4), &[ALPN_PEER])?;
    let conn = node4
        .connect(server.addr, &node_server_name(NodeId(3), DOMAIN))
        .await?;
    let accepted = server.accepted().await?;
    verify_peer_node(&conn, NodeId(3), DOMAIN)?;
    verify_peer_node(&accepted, NodeId(4), DOMAIN)?;
    // Node 4 claiming to be node 5 (or 3) is caught.
    for claimed in [NodeId(5), NodeId(3)] {
        let err = verify_peer_node(&accepted, claimed, DOMAIN).expect_err("false claim");
        assert!(
            matches!(err, TlsError::NotThisNode { claimed: c, .. } if c == claimed),
            "{err:?}"
        );
    }

    // A client certificate on the peer protocol gets through TLS but is no node.
    let app = Client::new(c.ca.cert_pem(), Some(&c.app), &[ALPN_PEER])?;
    let _conn = app
        .connect(server.addr, &node_server_name(NodeId(3), DOMAIN))
        .await?;
    let accepted = server.accepted().await?;
    assert!(verify_peer_node(&accepted, NodeId(4), DOMAIN).is_err());
    Ok(())
}

#[tokio::test]
async fn client_without_certificate_is_refused() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    let client = Client::new(c.ca.cert_pem(), None, &[ALPN_CLIENT])?;

    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"hi")
        .await;
    let (Outcome::ConnectFailed(e) | Outcome::StreamFailed(e)) = &outcome else {
        panic!("a client without a certificate got an echo: {outcome:?}");
    };
    println!("no certificate: {outcome:?}");
    assert_eq!(error_code(e), Some(CERTIFICATE_REQUIRED), "{e}");
    let server_err = server.refused().await?;
    println!("server side: {server_err}");
    Ok(())
}

#[tokio::test]
async fn client_with_certificate_from_another_ca_is_refused() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    // Same domain, same names, different CA.
    let other = CertAuthority::generate(DOMAIN)?;
    let impostor = other.issue_client("app")?;
    let client = Client::new(c.ca.cert_pem(), Some(&impostor), &[ALPN_CLIENT])?;

    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"hi")
        .await;
    let (Outcome::ConnectFailed(e) | Outcome::StreamFailed(e)) = &outcome else {
        panic!("a client with a foreign certificate got an echo: {outcome:?}");
    };
    println!("foreign certificate: {outcome:?}");
    assert_eq!(error_code(e), Some(UNKNOWN_CA), "{e}");
    server.refused().await?;

    // Even a foreign *node* certificate for the right id.
    let impostor_node = other.issue_node(NodeId(4), &[])?;
    let client = Client::new(c.ca.cert_pem(), Some(&impostor_node), &[ALPN_PEER])?;
    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"hi")
        .await;
    assert!(
        matches!(
            &outcome,
            Outcome::ConnectFailed(_) | Outcome::StreamFailed(_)
        ),
        "{outcome:?}"
    );
    server.refused().await?;
    Ok(())
}

#[tokio::test]
async fn client_trusting_another_ca_refuses_the_server() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    let other = CertAuthority::generate(DOMAIN)?;
    // The client's own certificate is fine; it just does not trust the server's CA.
    let client = Client::new(other.cert_pem(), Some(&c.app), &[ALPN_CLIENT])?;

    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"hi")
        .await;
    let Outcome::ConnectFailed(e) = &outcome else {
        panic!("the client accepted a server from another CA: {outcome:?}");
    };
    // The client gave up itself (a local transport error), before sending anything.
    assert!(matches!(e, ConnectionError::TransportError(_)), "{e:?}");
    assert_eq!(error_code(e), Some(UNKNOWN_CA), "{e}");
    server.refused().await?;
    Ok(())
}

#[tokio::test]
async fn wrong_alpn_is_refused() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    let client = Client::new(c.ca.cert_pem(), Some(&c.app), &[b"h3"])?;

    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"hi")
        .await;
    let Outcome::ConnectFailed(e) = &outcome else {
        panic!("a client speaking h3 got in: {outcome:?}");
    };
    assert_eq!(error_code(e), Some(NO_APPLICATION_PROTOCOL), "{e}");
    server.refused().await?;

    // Offering no ALPN at all is refused the same way.
    let client = Client::new(c.ca.cert_pem(), Some(&c.app), &[])?;
    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"hi")
        .await;
    let Outcome::ConnectFailed(e) = &outcome else {
        panic!("a client without ALPN got in: {outcome:?}");
    };
    assert_eq!(error_code(e), Some(NO_APPLICATION_PROTOCOL), "{e}");
    server.refused().await?;
    Ok(())
}

#[tokio::test]
async fn optional_client_auth_admits_anonymous_clients_without_identity() -> Result<()> {
    let c = cluster()?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Optional)?;

    let anonymous = Client::new(c.ca.cert_pem(), None, &[ALPN_CLIENT])?;
    let outcome = anonymous
        .attempt(server.addr, &any_node_server_name(DOMAIN), b"anon")
        .await;
    assert!(
        matches!(&outcome, Outcome::Echoed(data) if data == b"anon"),
        "{outcome:?}"
    );
    let accepted = server.accepted().await?;
    assert!(matches!(
        peer_certificate(&accepted),
        Err(TlsError::NoPeerCertificate)
    ));
    assert!(verify_peer_node(&accepted, NodeId(4), DOMAIN).is_err());

    // A certificate that is presented must still chain to the cluster CA.
    let other = CertAuthority::generate(DOMAIN)?;
    let impostor = other.issue_node(NodeId(4), &[])?;
    let client = Client::new(c.ca.cert_pem(), Some(&impostor), &[ALPN_PEER])?;
    let outcome = client
        .attempt(server.addr, &any_node_server_name(DOMAIN), b"hi")
        .await;
    assert!(
        matches!(
            &outcome,
            Outcome::ConnectFailed(_) | Outcome::StreamFailed(_)
        ),
        "{outcome:?}"
    );
    server.refused().await?;
    Ok(())
}

#[tokio::test]
async fn certificates_from_a_reloaded_ca_interoperate() -> Result<()> {
    let c = cluster()?;
    let reloaded = CertAuthority::from_pem(c.ca.cert_pem(), c.ca.key_pem())?;
    let late_client = reloaded.issue_client("late")?;
    let mut server = Server::start(c.ca.cert_pem(), &c.node3, ClientAuth::Required)?;
    let client = Client::new(reloaded.cert_pem(), Some(&late_client), &[ALPN_CLIENT])?;
    let outcome = client
        .attempt(server.addr, &node_server_name(NodeId(3), DOMAIN), b"late")
        .await;
    assert!(
        matches!(&outcome, Outcome::Echoed(data) if data == b"late"),
        "{outcome:?}"
    );
    server.accepted().await?;
    Ok(())
}
