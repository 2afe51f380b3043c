//! Ringcache's TLS: the cluster certificate authority, the certificates it issues, and
//! the rustls and quinn configurations nodes and clients connect with.
//!
//! This crate makes and checks certificates and builds configurations; it opens no
//! sockets and runs no tasks (the node and the client own their quinn endpoints). All
//! cryptography goes through rustls' `ring` provider, chosen explicitly
//! ([`crypto_provider`]); aws-lc-rs is never compiled in (`cargo tree -i aws-lc-rs`
//! finds nothing), so no configuration depends on a process-wide default provider.
//!
//! # Layout
//! - [`CertAuthority`], [`IssuedCert`]: make a CA (ECDSA P-256, [`CA_VALIDITY`]), reload
//!   it from PEM, issue node and client certificates ([`LEAF_VALIDITY`]).
//! - [`CertDir`], [`write_bundle`], [`load_identity`], ...: bundles on disk (`ca.pem`,
//!   `ca.key`, `node-<id>.pem`/`.key`, `client-<name>.pem`/`.key`; keys 0600), with
//!   errors that name the file.
//! - [`server_config`], [`client_config`], [`ClientAuth`], [`ALPN_CLIENT`],
//!   [`ALPN_PEER`]: rustls configurations, TLS 1.3 only.
//! - [`quinn_server_config`], [`quinn_client_config`], [`transport_config`]: the quinn
//!   wrappers with keep-alive 2 s, idle timeout 10 s, 64 concurrent bidi streams;
//!   [`bind_endpoint`], [`bind_udp`]: endpoints on sockets with [`UDP_SOCKET_BUFFER`].
//! - [`node_server_name`], [`any_node_server_name`], [`client_cert_name`]: the names.
//! - [`peer_certificate`], [`peer_node_id_matches`], [`verify_peer_node`]: "is the peer
//!   really node N?".
//! - [`TlsError`]: the error type.
//!
//! # Security model
//! - **The CA is cluster membership.** A node accepts a connection only from a peer
//!   whose certificate chains to the cluster CA ([`ClientAuth::Required`], the default),
//!   and clients trust only that CA, not the system roots. Whoever holds `ca.key` can
//!   admit members: keep it off the nodes.
//! - **Names are identity.** Node N's certificate carries `node-N.<domain>`; a client's
//!   carries `client-<name>.<domain>`. Mutual TLS alone proves only "signed by our CA",
//!   which node 3, node 4 and every client all are. So:
//!   - dialing node N, use the server name [`node_server_name`]`(N)`: the handshake then
//!     fails unless the far end is node N;
//!   - accepting a peer that *claims* to be node N (in a Raft message, a replication
//!     stream), call [`verify_peer_node`]: otherwise node 3 could speak as node 4, or a
//!     client certificate as a node.
//! - **Dialing by address without an id.** Every node certificate also carries the
//!   shared name `node.<domain>` ([`any_node_server_name`]). A client bootstrapping from a
//!   seed address verifies against it, which proves "some node of this cluster", nothing
//!   more. No wildcard names are ever issued, so the shared name cannot stand for
//!   `node-N.<domain>`. Node certificates may also carry IP SANs for tools that verify by
//!   address.
//! - **Key usages.** Node certificates are valid for TLS server and client auth; client
//!   certificates for client auth only, so a client certificate cannot serve as a node.
//!   The CA has path length 0: it cannot mint intermediate CAs.
//! - **Not checked:** revocation (there is no CRL or OCSP: to evict a member whose key
//!   leaked, make a new CA and reissue), which *client* name a client has (any valid
//!   client certificate may use the client protocol), which ALPN a peer used beyond
//!   "one we offered" (the node routes by ALPN and must call [`verify_peer_node`] on the
//!   peer protocol), and the permissions of key files when loading them.
//! - **No 0-RTT:** early data can be replayed, and cache writes are not idempotent.
//!
//! With TLS 1.3 a server validates the client certificate *after* the client has
//! finished its side of the handshake, so a client whose certificate is refused usually
//! sees its connection succeed and then fail on its first stream read or write with a
//! TLS alert (`certificate required` 0x174, `unknown CA` 0x130). A server whose
//! certificate the client refuses fails the connect itself.
//!
//! # Example
//! ```
//! use ringcache_proto::NodeId;
//! use ringcache_tls::{
//!     ALPN_CLIENT, ALPN_PEER, CertAuthority, CertDir, ClientAuth, client_config,
//!     node_server_name, quinn_client_config, quinn_server_config, server_config,
//! };
//!
//! # fn main() -> Result<(), ringcache_tls::TlsError> {
//! // Once per cluster (what `ringctl` does): a CA, a certificate per node and client.
//! let ca = CertAuthority::generate("ringcache.local")?;
//! let node = ca.issue_node(NodeId(1), &["127.0.0.1".to_string()])?;
//! let app = ca.issue_client("app")?;
//!
//! let dir = std::env::temp_dir().join(format!("ringcache-tls-doc-{}", std::process::id()));
//! let bundle = CertDir::new(&dir);
//! bundle.write_ca(&ca)?;
//! bundle.write_node(NodeId(1), &node)?;
//!
//! // On node 1: one endpoint for clients and peers, client certificates required.
//! let ca_pem = bundle.load_ca_cert()?;
//! let identity = bundle.load_node(NodeId(1))?;
//! let server = server_config(&ca_pem, &identity, ClientAuth::Required, &[ALPN_CLIENT, ALPN_PEER])?;
//! let _quinn_server = quinn_server_config(server)?; // quinn::Endpoint::server(_, addr)
//!
//! // In the application: trust the cluster CA, present the client certificate, and
//! // connect with server name "node-1.ringcache.local".
//! let client = client_config(ca.cert_pem(), Some(&app), &[ALPN_CLIENT])?;
//! let _quinn_client = quinn_client_config(client)?;
//! assert_eq!(node_server_name(NodeId(1), ca.cluster_domain()), "node-1.ringcache.local");
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(())
//! # }
//! ```

mod ca;
mod config;
mod error;
mod files;
mod names;
mod peer;
mod quic;

pub use ca::{CA_VALIDITY, CLOCK_SKEW_ALLOWANCE, CertAuthority, IssuedCert, LEAF_VALIDITY};
pub use config::{
    ALPN_CLIENT, ALPN_PEER, ClientAuth, client_config, crypto_provider, server_config,
};
pub use error::{Result, TlsError};
pub use files::{CertDir, load_cert_pem, load_identity, load_key_pem, write_bundle};
pub use names::{MAX_CLIENT_NAME_LEN, any_node_server_name, client_cert_name, node_server_name};
pub use peer::{peer_certificate, peer_is_node, peer_node_id_matches, verify_peer_node};
pub use quic::{
    IDLE_TIMEOUT, KEEP_ALIVE_INTERVAL, MAX_CONCURRENT_BIDI_STREAMS, UDP_SOCKET_BUFFER,
    bind_endpoint, bind_udp, quinn_client_config, quinn_server_config, transport_config,
};
