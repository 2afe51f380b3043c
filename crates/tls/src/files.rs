//! Certificate bundles on disk (layout and rules on [`CertDir`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ringcache_proto::NodeId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::ca::{CertAuthority, IssuedCert, pem_error};
use crate::error::{Result, TlsError};
use crate::names::validate_client_name;

/// Mode of private key files.
const KEY_MODE: u32 = 0o600;
/// Mode of certificate files (public).
const CERT_MODE: u32 = 0o644;
/// Mode of a bundle directory this crate creates.
const DIR_MODE: u32 = 0o700;

/// A directory holding a certificate bundle:
///
/// ```text
/// <dir>/                      mode 0700 when this crate creates it
///   ca.pem                    CA certificate (0644): every node and client needs it
///   ca.key                    CA private key (0600): stays with the operator, never on nodes
///   node-<id>.pem             node certificate (0644)
///   node-<id>.key             node private key (0600)
///   client-<name>.pem         client certificate (0644)
///   client-<name>.key         client private key (0600)
/// ```
///
/// Writing never replaces a file: reissuing means removing the old pair first, so a
/// slip cannot destroy the CA key every certificate depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertDir {
    dir: PathBuf,
}

impl CertDir {
    /// The bundle in `dir` (nothing is read or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/ca.pem`.
    pub fn ca_cert_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// `<dir>/ca.key`.
    pub fn ca_key_path(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    /// `(<dir>/node-<id>.pem, <dir>/node-<id>.key)`.
    pub fn node_paths(&self, id: NodeId) -> (PathBuf, PathBuf) {
        self.pair(&id.to_string())
    }

    /// `(<dir>/client-<name>.pem, <dir>/client-<name>.key)`; fails for a name
    /// [`CertAuthority::issue_client`] would refuse (which also keeps `/` and `..` out of
    /// the path).
    pub fn client_paths(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        validate_client_name(name)?;
        Ok(self.pair(&format!("client-{name}")))
    }

    fn pair(&self, stem: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        )
    }

    /// Writes `ca.pem` and `ca.key`, creating the directory if needed.
    pub fn write_ca(&self, ca: &CertAuthority) -> Result<()> {
        self.write_pair(
            &self.ca_cert_path(),
            ca.cert_pem(),
            &self.ca_key_path(),
            ca.key_pem(),
        )
    }

    /// Writes `node-<id>.pem` and `node-<id>.key`, creating the directory if needed.
    pub fn write_node(&self, id: NodeId, cert: &IssuedCert) -> Result<()> {
        let (cert_path, key_path) = self.node_paths(id);
        self.write_pair(&cert_path, &cert.cert_pem, &key_path, &cert.key_pem)
    }

    /// Writes `client-<name>.pem` and `client-<name>.key`, creating the directory if
    /// needed.
    pub fn write_client(&self, name: &str, cert: &IssuedCert) -> Result<()> {
        let (cert_path, key_path) = self.client_paths(name)?;
        self.write_pair(&cert_path, &cert.cert_pem, &key_path, &cert.key_pem)
    }

    /// Loads the CA with its key, to issue more certificates.
    pub fn load_ca(&self) -> Result<CertAuthority> {
        let cert_path = self.ca_cert_path();
        let key_path = self.ca_key_path();
        let cert_pem = read_to_string(&cert_path)?;
        let key_pem = read_to_string(&key_path)?;
        CertAuthority::from_pem(&cert_pem, &key_pem).map_err(|e| {
            // A key that does not parse or does not fit is the key file's fault; anything
            // else, the certificate's.
            let path = match e {
                TlsError::Generate { .. } | TlsError::KeyMismatch => key_path,
                _ => cert_path,
            };
            TlsError::File {
                path,
                what: "cluster CA",
                source: Box::new(e),
            }
        })
    }

    /// Loads `ca.pem`, the trust anchor (what a node or client needs; no key).
    pub fn load_ca_cert(&self) -> Result<String> {
        load_cert_pem(&self.ca_cert_path())
    }

    /// Loads node `id`'s certificate and key.
    pub fn load_node(&self, id: NodeId) -> Result<IssuedCert> {
        let (cert_path, key_path) = self.node_paths(id);
        load_identity(&cert_path, &key_path)
    }

    /// Loads client `name`'s certificate and key.
    pub fn load_client(&self, name: &str) -> Result<IssuedCert> {
        let (cert_path, key_path) = self.client_paths(name)?;
        load_identity(&cert_path, &key_path)
    }

    fn write_pair(&self, cert_path: &Path, cert: &str, key_path: &Path, key: &str) -> Result<()> {
        create_dir(&self.dir)?;
        // Check both before writing either, so a refusal leaves no half pair behind.
        for path in [cert_path, key_path] {
            if path.exists() {
                return Err(TlsError::AlreadyExists {
                    path: path.to_owned(),
                });
            }
        }
        write_new(cert_path, cert, CERT_MODE)?;
        write_new(key_path, key, KEY_MODE)
    }
}

/// Writes a whole bundle into `dir`: the CA, then each node's and each client's pair.
pub fn write_bundle(
    dir: impl Into<PathBuf>,
    ca: &CertAuthority,
    nodes: &[(NodeId, &IssuedCert)],
    clients: &[(&str, &IssuedCert)],
) -> Result<CertDir> {
    let bundle = CertDir::new(dir);
    bundle.write_ca(ca)?;
    for (id, cert) in nodes {
        bundle.write_node(*id, cert)?;
    }
    for (name, cert) in clients {
        bundle.write_client(name, cert)?;
    }
    Ok(bundle)
}

/// Reads a PEM file holding at least one certificate (`ca.pem`, `node-3.pem`, ...).
/// Errors name the file.
pub fn load_cert_pem(path: &Path) -> Result<String> {
    let pem = read_to_string(path)?;
    let first = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap_or(Err(rustls_pki_types::pem::Error::NoItemsFound));
    first.map_err(|e| TlsError::File {
        path: path.to_owned(),
        what: "PEM certificate file",
        source: Box::new(pem_error("certificate", e)),
    })?;
    Ok(pem)
}

/// Reads a PEM private key file (`node-3.key`, ...). Errors name the file.
pub fn load_key_pem(path: &Path) -> Result<String> {
    let pem = read_to_string(path)?;
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::File {
        path: path.to_owned(),
        what: "PEM private key file",
        source: Box::new(pem_error("private key", e)),
    })?;
    Ok(pem)
}

/// Reads a certificate and its key from two files (paths from a node's configuration,
/// say). Errors name the file.
pub fn load_identity(cert_path: &Path, key_path: &Path) -> Result<IssuedCert> {
    Ok(IssuedCert {
        cert_pem: load_cert_pem(cert_path)?,
        key_pem: load_key_pem(key_path)?,
    })
}

fn read_to_string(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|source| TlsError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

fn create_dir(dir: &Path) -> Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder.create(dir).map_err(|source| TlsError::Io {
        action: "create directory",
        path: dir.to_owned(),
        source,
    })
}

/// Creates `path` (it must not exist) with `mode` from the start, so a key is never
/// readable by others, not even for a moment.
fn write_new(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let io_error = |source: io::Error| match source.kind() {
        io::ErrorKind::AlreadyExists => TlsError::AlreadyExists {
            path: path.to_owned(),
        },
        _ => TlsError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        },
    };
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(io_error)?;
    file.write_all(contents.as_bytes()).map_err(io_error)?;
    file.sync_all().map_err(io_error)
}
