//! Certificates: issuing, reloading a CA, bundles on disk, and node-name checks.

use std::path::Path;

use anyhow::{Context, Result};
use ringcache_proto::NodeId;
use ringcache_tls::{
    CertAuthority, CertDir, IssuedCert, TlsError, load_identity, peer_node_id_matches, write_bundle,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use webpki::{EndEntityCert, KeyUsage, anchor_from_trusted_cert};

const DOMAIN: &str = "ringcache.test";

fn der(cert: &IssuedCert) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).expect("issued PEM parses")
}

/// Verifies `leaf` against `ca_pem` alone, as rustls would, for `usage`.
fn chains_to(leaf: &IssuedCert, ca_pem: &str, usage: KeyUsage) -> Result<(), webpki::Error> {
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA PEM parses");
    let anchors = [anchor_from_trusted_cert(&ca)?.to_owned()];
    let leaf = der(leaf);
    let ee = EndEntityCert::try_from(&leaf)?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &anchors,
        &[],
        UnixTime::now(),
        usage,
        None,
        None,
    )
    .map(|_| ())
}

fn valid_for(cert: &IssuedCert, name: &str) -> bool {
    let der = der(cert);
    let ee = EndEntityCert::try_from(&der).expect("issued certificate parses");
    let name = rustls_pki_types::ServerName::try_from(name).expect("valid name");
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

#[test]
fn issues_node_and_client_certificates() -> Result<()> {
    let ca = CertAuthority::generate(DOMAIN)?;
    assert_eq!(ca.cluster_domain(), DOMAIN);
    assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(ca.key_pem().contains("PRIVATE KEY"));

    let node = ca.issue_node(NodeId(3), &["127.0.0.1".into(), "cache.example.com".into()])?;
    chains_to(&node, ca.cert_pem(), KeyUsage::server_auth()).context("node as server")?;
    chains_to(&node, ca.cert_pem(), KeyUsage::client_auth()).context("node as client")?;
    assert!(valid_for(&node, "node-3.ringcache.test"));
    assert!(valid_for(&node, "node.ringcache.test"));
    assert!(valid_for(&node, "127.0.0.1"));
    assert!(valid_for(&node, "cache.example.com"));
    assert!(!valid_for(&node, "node-4.ringcache.test"));
    assert!(!valid_for(&node, "127.0.0.2"));

    let client = ca.issue_client("app-1")?;
    chains_to(&client, ca.cert_pem(), KeyUsage::client_auth()).context("client as client")?;
    assert!(valid_for(&client, "client-app-1.ringcache.test"));
    // A client certificate can never pass for a server (a node).
    assert!(chains_to(&client, ca.cert_pem(), KeyUsage::server_auth()).is_err());
    assert!(!valid_for(&client, "node.ringcache.test"));

    // Debug output never shows private keys.
    assert!(!format!("{ca:?} {client:?}").contains("PRIVATE KEY"));
    Ok(())
}

#[test]
fn refuses_bad_names() -> Result<()> {
    assert!(matches!(
        CertAuthority::generate("not a domain"),
        Err(TlsError::InvalidDomain { .. })
    ));
    let ca = CertAuthority::generate(DOMAIN)?;
    for bad in ["node-4.ringcache.test", "*.ringcache.test", "bad name"] {
        assert!(
            matches!(
                ca.issue_node(NodeId(3), &[bad.to_string()]),
                Err(TlsError::InvalidName { .. })
            ),
            "extra SAN {bad:?} accepted"
        );
    }
    for bad in ["", "App", "../x", "a.b"] {
        assert!(
            matches!(ca.issue_client(bad), Err(TlsError::InvalidName { .. })),
            "client name {bad:?} accepted"
        );
    }
    Ok(())
}

#[test]
fn reloaded_ca_issues_certificates_the_original_trusts() -> Result<()> {
    let original = CertAuthority::generate(DOMAIN)?;
    let first = original.issue_node(NodeId(1), &[])?;

    let reloaded = CertAuthority::from_pem(original.cert_pem(), original.key_pem())?;
    assert_eq!(reloaded.cluster_domain(), DOMAIN);
    assert_eq!(reloaded.cert_der(), original.cert_der());
    assert_eq!(reloaded.not_after_unix(), original.not_after_unix());

    let later = reloaded.issue_node(NodeId(2), &[])?;
    chains_to(&later, original.cert_pem(), KeyUsage::server_auth()).context("node 2")?;
    chains_to(&first, reloaded.cert_pem(), KeyUsage::server_auth()).context("node 1")?;
    let client = reloaded.issue_client("late")?;
    chains_to(&client, original.cert_pem(), KeyUsage::client_auth()).context("client")?;

    // And nothing from another CA passes.
    let other = CertAuthority::generate(DOMAIN)?;
    let stranger = other.issue_node(NodeId(2), &[])?;
    assert!(chains_to(&stranger, original.cert_pem(), KeyUsage::server_auth()).is_err());
    Ok(())
}

#[test]
fn reloading_refuses_a_foreign_key_or_certificate() -> Result<()> {
    let ca = CertAuthority::generate(DOMAIN)?;
    let other = CertAuthority::generate(DOMAIN)?;
    let err = CertAuthority::from_pem(ca.cert_pem(), other.key_pem()).expect_err("wrong key");
    assert!(matches!(err, TlsError::KeyMismatch), "{err:?}");

    // A leaf certificate is not a CA.
    let node = ca.issue_node(NodeId(1), &[])?;
    let err = CertAuthority::from_pem(&node.cert_pem, &node.key_pem).expect_err("leaf");
    assert!(matches!(err, TlsError::InvalidCa { .. }), "{err:?}");

    // Garbage.
    assert!(CertAuthority::from_pem("hello", ca.key_pem()).is_err());
    assert!(CertAuthority::from_pem(ca.cert_pem(), "hello").is_err());
    Ok(())
}

#[test]
fn peer_node_id_matches_checks_the_claimed_id() -> Result<()> {
    let ca = CertAuthority::generate(DOMAIN)?;
    let node3 = der(&ca.issue_node(NodeId(3), &["127.0.0.1".into()])?);
    peer_node_id_matches(&node3, NodeId(3), DOMAIN)?;
    let err = peer_node_id_matches(&node3, NodeId(4), DOMAIN).expect_err("node 3 is not 4");
    assert!(
        matches!(&err, TlsError::NotThisNode { claimed, expected, .. }
            if *claimed == NodeId(4) && expected == "node-4.ringcache.test"),
        "{err:?}"
    );
    // Node 3 in another cluster domain is someone else.
    assert!(peer_node_id_matches(&node3, NodeId(3), "other.test").is_err());
    // A client certificate is no node at all.
    let client = der(&ca.issue_client("app")?);
    assert!(peer_node_id_matches(&client, NodeId(3), DOMAIN).is_err());
    // Not a certificate.
    assert!(matches!(
        peer_node_id_matches(b"junk", NodeId(3), DOMAIN),
        Err(TlsError::BadCertificate { .. })
    ));
    Ok(())
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("file exists")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn bundle_round_trips_through_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("certs");
    let ca = CertAuthority::generate(DOMAIN)?;
    let node = ca.issue_node(NodeId(7), &["127.0.0.1".into()])?;
    let client = ca.issue_client("app")?;
    let bundle = write_bundle(&dir, &ca, &[(NodeId(7), &node)], &[("app", &client)])?;

    let mut names: Vec<String> = std::fs::read_dir(&dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    assert_eq!(
        names,
        [
            "ca.key",
            "ca.pem",
            "client-app.key",
            "client-app.pem",
            "node-7.key",
            "node-7.pem"
        ]
    );
    #[cfg(unix)]
    {
        assert_eq!(mode(&dir), 0o700);
        for key in ["ca.key", "node-7.key", "client-app.key"] {
            assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
        }
        // Certificates are public (0644, less whatever the umask takes away).
        assert_eq!(mode(&dir.join("ca.pem")) & 0o600, 0o600);
    }

    assert_eq!(bundle.load_node(NodeId(7))?, node);
    assert_eq!(bundle.load_client("app")?, client);
    assert_eq!(bundle.load_ca_cert()?, ca.cert_pem());
    let reloaded = bundle.load_ca()?;
    let later = reloaded.issue_node(NodeId(8), &[])?;
    chains_to(&later, ca.cert_pem(), KeyUsage::server_auth()).context("node 8")?;
    let (cert_path, key_path) = bundle.node_paths(NodeId(7));
    assert_eq!(load_identity(&cert_path, &key_path)?, node);
    Ok(())
}

#[test]
fn bundle_never_overwrites_and_names_bad_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let bundle = CertDir::new(tmp.path());
    let ca = CertAuthority::generate(DOMAIN)?;
    bundle.write_ca(&ca)?;
    let other = CertAuthority::generate(DOMAIN)?;
    let err = bundle.write_ca(&other).expect_err("CA overwritten");
    assert!(matches!(&err, TlsError::AlreadyExists { path } if path.ends_with("ca.pem")));
    assert_eq!(
        bundle.load_ca()?.cert_pem(),
        ca.cert_pem(),
        "the first CA stays"
    );

    // A missing file is named.
    let err = bundle.load_node(NodeId(9)).expect_err("no node 9");
    assert!(err.to_string().contains("node-9.pem"), "{err}");

    // A file with the wrong content is named.
    let node = ca.issue_node(NodeId(9), &[])?;
    bundle.write_node(NodeId(9), &node)?;
    let (_, key_path) = bundle.node_paths(NodeId(9));
    std::fs::write(&key_path, node.cert_pem.as_bytes())?; // a certificate, not a key
    let err = bundle
        .load_node(NodeId(9))
        .expect_err("key file holds a certificate");
    let message = format!("{err}");
    assert!(message.contains("node-9.key"), "{message}");
    assert!(message.contains("private key"), "{message}");

    // The CA key belonging to another CA is named too.
    std::fs::write(bundle.ca_key_path(), other.key_pem())?;
    let err = bundle.load_ca().expect_err("CA key of another CA");
    assert!(err.to_string().contains("ca.key"), "{err}");
    assert!(
        matches!(&err, TlsError::File { source, .. } if matches!(**source, TlsError::KeyMismatch)),
        "{err:?}"
    );
    Ok(())
}
