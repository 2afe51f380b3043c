//! The crate's error type.

use std::path::PathBuf;

use ringcache_proto::NodeId;

/// Everything that can go wrong while making, storing, loading or using certificates.
///
/// Messages name the thing that failed (a file, a name, a node id) so an operator can act
/// on them without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The cluster domain is not a valid DNS name (e.g. empty, a leading dot, an IP).
    #[error("invalid cluster domain {domain:?}: {reason}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A client name or an extra subject alternative name was refused.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// rcgen could not generate a key or sign a certificate.
    #[error("could not {action}")]
    Generate {
        /// What was being done ("generate the CA key", "sign node-3's certificate", ...).
        action: String,
        /// The underlying rcgen error.
        #[source]
        source: rcgen::Error,
    },
    /// A persisted CA could not be used (not ours, key does not match, expired).
    #[error("unusable CA certificate: {reason}")]
    InvalidCa {
        /// Why the CA was refused.
        reason: String,
    },
    /// A CA's private key is not the key of its certificate.
    #[error("the private key does not belong to the CA certificate")]
    KeyMismatch,
    /// PEM text could not be decoded.
    #[error("could not read {what} as PEM")]
    Pem {
        /// What was being decoded ("CA certificate", "private key", ...).
        what: &'static str,
        /// The underlying decoding error.
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    /// PEM text held no item of the expected kind (no `CERTIFICATE` section, say).
    #[error("no {what} found in the PEM text")]
    Missing {
        /// What was looked for.
        what: &'static str,
    },
    /// rustls refused a certificate, key or trust anchor.
    #[error("rustls refused the {what}")]
    Rustls {
        /// What rustls was given.
        what: &'static str,
        /// The underlying rustls error.
        #[source]
        source: rustls::Error,
    },
    /// The client-certificate verifier could not be built.
    #[error("could not build the client certificate verifier")]
    Verifier {
        /// The underlying rustls error.
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    /// quinn refused a rustls configuration (it needs TLS 1.3 with AES-128-GCM).
    #[error("quinn refused the TLS configuration")]
    Quic {
        /// The underlying quinn error.
        #[source]
        source: quinn::crypto::rustls::NoInitialCipherSuite,
    },
    /// Reading or writing a file of a certificate bundle failed.
    #[error("{action} {path}", path = path.display())]
    Io {
        /// What was being done ("read", "write", "create directory", ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file that holds a PEM item could not be parsed.
    #[error("{path} is not a usable {what}", path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What it should have held.
        what: &'static str,
        /// Why it could not be used.
        #[source]
        source: Box<TlsError>,
    },
    /// Writing a bundle file would replace an existing one.
    #[error("{path} already exists; remove it first to replace it", path = path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The connection has no verified peer certificate (the peer sent none, which a server
    /// with [`ClientAuth::Optional`](crate::ClientAuth::Optional) allows).
    #[error("the peer presented no certificate")]
    NoPeerCertificate,
    /// A peer certificate could not be parsed.
    #[error("could not parse the peer certificate")]
    BadCertificate {
        /// The underlying webpki error.
        #[source]
        source: webpki::Error,
    },
    /// The peer's certificate is not valid for the node id it claims.
    #[error("peer certificate is not valid for {claimed} (expected the name {expected})")]
    NotThisNode {
        /// The node id the peer claimed.
        claimed: NodeId,
        /// The name its certificate would have to carry.
        expected: String,
        /// The underlying webpki error.
        #[source]
        source: webpki::Error,
    },
}

/// Results of this crate.
pub type Result<T, E = TlsError> = std::result::Result<T, E>;
