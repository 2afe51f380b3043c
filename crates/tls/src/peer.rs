//! Who is on the other end: from "a cluster member" to "node N".

use ringcache_proto::NodeId;
use rustls_pki_types::{CertificateDer, ServerName};
use webpki::EndEntityCert;

use crate::error::{Result, TlsError};
use crate::names::{any_node_server_name, node_server_name};

/// The end-entity certificate the peer of `connection` presented and the handshake
/// verified against the cluster CA.
///
/// Fails with [`TlsError::NoPeerCertificate`] when the peer presented none (a client
/// accepted under [`crate::ClientAuth::Optional`]).
pub fn peer_certificate(connection: &quinn::Connection) -> Result<CertificateDer<'static>> {
    connection
        .peer_identity()
        // quinn's rustls session reports the peer's chain as this type, end entity first.
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .and_then(|chain| chain.into_iter().next())
        .ok_or(TlsError::NoPeerCertificate)
}

/// Checks that `peer_cert_der` is valid for node `claimed`: it carries the name
/// `node-<claimed>.<cluster_domain>`.
///
/// This checks the **name only**. The caller guarantees the certificate was verified
/// against the cluster CA, which is the case for any certificate obtained from an
/// established connection ([`peer_certificate`]); on its own this function proves
/// nothing about a certificate from elsewhere.
///
/// Mutual TLS proves "signed by our CA", which every node, and every client, is. Call
/// this whenever a peer *claims* an id (Raft vote, replication, a membership message):
/// otherwise node 3 could speak as node 4, and a client certificate as any node.
pub fn peer_node_id_matches(
    peer_cert_der: &[u8],
    claimed: NodeId,
    cluster_domain: &str,
) -> Result<()> {
    let der = CertificateDer::from(peer_cert_der);
    let cert =
        EndEntityCert::try_from(&der).map_err(|source| TlsError::BadCertificate { source })?;
    let expected = node_server_name(claimed, cluster_domain);
    let name = ServerName::try_from(expected.as_str()).map_err(|_| TlsError::InvalidDomain {
        domain: cluster_domain.to_owned(),
        reason: "node names under it are not valid DNS names",
    })?;
    cert.verify_is_valid_for_subject_name(&name)
        .map_err(|source| TlsError::NotThisNode {
            claimed,
            expected,
            source,
        })
}

/// [`peer_certificate`] then [`peer_node_id_matches`]: the peer of `connection` is node
/// `claimed`.
pub fn verify_peer_node(
    connection: &quinn::Connection,
    claimed: NodeId,
    cluster_domain: &str,
) -> Result<()> {
    let cert = peer_certificate(connection)?;
    peer_node_id_matches(&cert, claimed, cluster_domain)
}

/// Whether the peer of `connection` presented a *node* certificate of the cluster (one
/// valid for the shared name `node.<cluster_domain>`, which client certificates never
/// carry). Gates the operations only members may use (partition moves).
#[must_use]
pub fn peer_is_node(connection: &quinn::Connection, cluster_domain: &str) -> bool {
    let Ok(der) = peer_certificate(connection) else {
        return false;
    };
    let Ok(cert) = EndEntityCert::try_from(&der) else {
        return false;
    };
    let expected = any_node_server_name(cluster_domain);
    ServerName::try_from(expected.as_str())
        .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
}
