//! rustls configurations: who trusts whom.

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{IssuedCert, pem_error};
use crate::error::{Result, TlsError};

/// ALPN of the client protocol (clients and `ringctl` talking to a node).
pub const ALPN_CLIENT: &[u8] = b"ringcache/1";

/// ALPN of the peer protocol (node to node: Raft, replication, partition moves).
pub const ALPN_PEER: &[u8] = b"ringcache-peer/1";

/// Whether a server demands a client certificate.
///
/// Whichever is chosen, a certificate that *is* presented must chain to the cluster CA,
/// or the handshake fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Every client must present a certificate signed by the cluster CA. The default, and
    /// what nodes use: a client without a valid certificate is refused during the handshake.
    #[default]
    Required,
    /// Clients without a certificate are let in too. The application must then treat such
    /// connections as anonymous and check [`crate::peer_certificate`] before anything that
    /// needs an identity (the peer protocol always does).
    Optional,
}

/// The only crypto provider this crate uses: rustls' `ring` provider.
///
/// Built explicitly (never through the process-wide default), so a second provider
/// linked in by some other crate can neither be picked up nor make rustls panic for want
/// of a choice.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration presenting `identity` (a node certificate), trusting only the
/// cluster CA `ca_pem` for client certificates, and speaking the given ALPN protocols
/// (a client offering none of them is refused).
///
/// TLS 1.3 only (QUIC requires it), `ring` provider, no 0-RTT (early data could be
/// replayed, and writes are not idempotent).
pub fn server_config(
    ca_pem: &str,
    identity: &IssuedCert,
    client_auth: ClientAuth,
    alpn: &[&[u8]],
) -> Result<ServerConfig> {
    let provider = crypto_provider();
    let roots = Arc::new(root_store(ca_pem)?);
    let mut verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone());
    if client_auth == ClientAuth::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    let verifier = verifier
        .build()
        .map_err(|source| TlsError::Verifier { source })?;
    let (chain, key) = parse_identity(identity)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Rustls {
            what: "certificate and key",
            source,
        })?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration trusting only the cluster CA `ca_pem`, presenting `identity`
/// when given (a node dialing a peer, or a client with a client certificate), and
/// offering the given ALPN protocols.
///
/// The server name passed when connecting decides what the handshake proves: use
/// [`crate::node_server_name`] to reach a specific node, [`crate::any_node_server_name`]
/// to reach any member of the cluster.
pub fn client_config(
    ca_pem: &str,
    identity: Option<&IssuedCert>,
    alpn: &[&[u8]],
) -> Result<ClientConfig> {
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|source| TlsError::Rustls {
            what: "protocol versions",
            source,
        })?
        .with_root_certificates(root_store(ca_pem)?);
    let mut config = match identity {
        Some(identity) => {
            let (chain, key) = parse_identity(identity)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Rustls {
                    what: "client certificate and key",
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The trust store: every certificate in `ca_pem` (normally exactly one, the cluster CA).
fn root_store(ca_pem: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        let cert = cert.map_err(|e| pem_error("CA certificate", e))?;
        roots.add(cert).map_err(|source| TlsError::Rustls {
            what: "CA certificate",
            source,
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Missing {
            what: "CA certificate",
        });
    }
    Ok(roots)
}

fn parse_identity(
    identity: &IssuedCert,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_slice_iter(identity.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error("certificate", e))?;
    if chain.is_empty() {
        return Err(TlsError::Missing {
            what: "certificate",
        });
    }
    let key = PrivateKeyDer::from_pem_slice(identity.key_pem.as_bytes())
        .map_err(|e| pem_error("private key", e))?;
    Ok((chain, key))
}
