//! The names certificates carry and connections verify.
//!
//! | who | name | used for |
//! | --- | --- | --- |
//! | the CA | subject CN `ca.<domain>` | recovering the domain when a CA is reloaded |
//! | node N | SAN `node-N.<domain>` | "this is node N": dialing a known node, [`crate::peer_node_id_matches`] |
//! | every node | SAN `node.<domain>` | "this is some node": dialing an address whose id is unknown |
//! | client `x` | SAN `client-x.<domain>` | logging and future per-client policy |

use std::net::IpAddr;

use ringcache_proto::NodeId;
use rustls_pki_types::DnsName;

use crate::error::{Result, TlsError};

/// The longest client name: `client-<name>` must fit one 63-byte DNS label.
pub const MAX_CLIENT_NAME_LEN: usize = 63 - "client-".len();

/// The name node `id`'s certificate carries: `node-<id>.<domain>`.
///
/// Use it as the server name when dialing a node whose id you know, so the handshake
/// proves you reached that node and not merely some member of the cluster.
pub fn node_server_name(id: NodeId, cluster_domain: &str) -> String {
    // NodeId displays as `node-<id>`.
    format!("{id}.{cluster_domain}")
}

/// The name every node's certificate carries: `node.<domain>`.
///
/// Use it as the server name when dialing an address whose node id is unknown (a client
/// bootstrapping from a seed address). The handshake then proves only "a cluster member";
/// learn the id from the cluster and dial [`node_server_name`] for anything that depends
/// on which node it is.
pub fn any_node_server_name(cluster_domain: &str) -> String {
    format!("node.{cluster_domain}")
}

/// The name client `name`'s certificate carries: `client-<name>.<domain>`.
pub fn client_cert_name(name: &str, cluster_domain: &str) -> String {
    format!("client-{name}.{cluster_domain}")
}

/// The CA certificate's common name: `ca.<domain>`.
pub(crate) fn ca_common_name(cluster_domain: &str) -> String {
    format!("ca.{cluster_domain}")
}

/// Checks that `domain` can be the suffix of the names above.
pub(crate) fn validate_domain(domain: &str) -> Result<()> {
    let refuse = |reason| {
        Err(TlsError::InvalidDomain {
            domain: domain.to_owned(),
            reason,
        })
    };
    if domain.is_empty() {
        return refuse("it is empty");
    }
    if domain.parse::<IpAddr>().is_ok() {
        return refuse("it is an IP address, not a DNS name");
    }
    if domain.contains('*') {
        return refuse("wildcards are not allowed");
    }
    if domain.ends_with('.') {
        return refuse("write it without the trailing dot");
    }
    // The longest name we derive from it must be a valid DNS name too.
    let longest = format!("client-{}.{domain}", "x".repeat(MAX_CLIENT_NAME_LEN));
    if DnsName::try_from(longest.as_str()).is_err() || DnsName::try_from(domain).is_err() {
        return refuse(
            "it is not a valid DNS name (letters, digits, '-' and '.', at most 189 bytes)",
        );
    }
    Ok(())
}

/// Checks a client name: one DNS label of lowercase letters, digits and `-`.
pub(crate) fn validate_client_name(name: &str) -> Result<()> {
    let refuse = |reason| {
        Err(TlsError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_CLIENT_NAME_LEN {
        return refuse("a client name has 1 to 56 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return refuse("a client name has only lowercase letters, digits and '-'");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return refuse("a client name does not start or end with '-'");
    }
    Ok(())
}

/// One extra subject alternative name for a node certificate.
pub(crate) enum ExtraSan {
    Ip(IpAddr),
    Dns(String),
}

/// Parses an extra SAN: an IP address, or a DNS name outside the identity namespaces.
///
/// `node-*.<domain>`, `node.<domain>` and `client-*.<domain>` are refused: they are the
/// names identity checks rely on, and only [`crate::CertAuthority`] decides who gets them.
pub(crate) fn parse_extra_san(san: &str, cluster_domain: &str) -> Result<ExtraSan> {
    let refuse = |reason| {
        Err(TlsError::InvalidName {
            name: san.to_owned(),
            reason,
        })
    };
    if let Ok(ip) = san.parse::<IpAddr>() {
        return Ok(ExtraSan::Ip(ip));
    }
    if san.contains('*') {
        return refuse("wildcard names are not issued");
    }
    if DnsName::try_from(san).is_err() {
        return refuse("neither an IP address nor a valid DNS name");
    }
    let lower = san.to_ascii_lowercase();
    let suffix = format!(".{}", cluster_domain.to_ascii_lowercase());
    if let Some(label) = lower.strip_suffix(&suffix)
        && (label == "node"
            || label == "ca"
            || label.starts_with("node-")
            || label.starts_with("client-"))
    {
        return refuse("names node-*, node, ca and client-* under the cluster domain are reserved");
    }
    Ok(ExtraSan::Dns(san.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(node_server_name(NodeId(3), "c.test"), "node-3.c.test");
        assert_eq!(any_node_server_name("c.test"), "node.c.test");
        assert_eq!(client_cert_name("app", "c.test"), "client-app.c.test");
    }

    #[test]
    fn domains() {
        assert!(validate_domain("ringcache.local").is_ok());
        assert!(validate_domain("cluster").is_ok());
        for bad in [
            "",
            "127.0.0.1",
            "*.x",
            "x.",
            "a..b",
            "sp ace",
            &"a".repeat(300),
        ] {
            assert!(validate_domain(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn client_names() {
        assert!(validate_client_name("app-1").is_ok());
        for bad in ["", "App", "a.b", "-a", "a-", "a/b", &"a".repeat(57)] {
            assert!(validate_client_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn extra_sans() {
        assert!(matches!(
            parse_extra_san("127.0.0.1", "c.test"),
            Ok(ExtraSan::Ip(_))
        ));
        assert!(matches!(
            parse_extra_san("::1", "c.test"),
            Ok(ExtraSan::Ip(_))
        ));
        assert!(matches!(
            parse_extra_san("cache.example.com", "c.test"),
            Ok(ExtraSan::Dns(_))
        ));
        for bad in [
            "node-4.c.test",
            "NODE-4.C.TEST",
            "node.c.test",
            "client-x.c.test",
            "ca.c.test",
            "*.c.test",
            "bad name",
        ] {
            assert!(parse_extra_san(bad, "c.test").is_err(), "{bad:?} accepted");
        }
    }
}
