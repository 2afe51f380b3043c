//! `ringctl certs init`, and the bundle `local up` creates or reuses.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use ringcache_proto::NodeId;
use ringcache_tls::{CertAuthority, CertDir, any_node_server_name, node_server_name};
use serde::Serialize;

use crate::cli::CertsInitArgs;
use crate::output::{Table, print_json, print_line};

/// Subject alternative names every node certificate gets, so tools on the same machine
/// can verify by address.
const DEFAULT_SANS: [&str; 2] = ["127.0.0.1", "localhost"];

/// One file of a bundle, as reported.
#[derive(Debug, Serialize)]
pub(crate) struct BundleFile {
    /// Where it is.
    pub(crate) path: PathBuf,
    /// What it holds.
    pub(crate) what: String,
    /// Its permission bits, e.g. `0600`.
    pub(crate) mode: String,
}

#[derive(Debug, Serialize)]
struct InitReport {
    dir: PathBuf,
    domain: String,
    node_names: Vec<String>,
    sans: Vec<String>,
    files: Vec<BundleFile>,
}

/// The default SANs plus `extra`, without duplicates, in order.
fn node_sans(extra: &[String]) -> Vec<String> {
    let mut sans: Vec<String> = DEFAULT_SANS.iter().map(|s| (*s).to_owned()).collect();
    for s in extra {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    sans
}

/// A member's certificate and key files.
struct Member {
    cert: PathBuf,
    key: PathBuf,
    /// `node-1`, `client admin`.
    who: String,
}

/// The pairs of the bundle's members: nodes, then the client.
fn members(bundle: &CertDir, nodes: &[NodeId], client: &str) -> anyhow::Result<Vec<Member>> {
    let mut out: Vec<Member> = nodes
        .iter()
        .map(|id| {
            let (cert, key) = bundle.node_paths(*id);
            Member {
                cert,
                key,
                who: id.to_string(),
            }
        })
        .collect();
    let (cert, key) = bundle.client_paths(client).context("--client")?;
    out.push(Member {
        cert,
        key,
        who: format!("client {client}"),
    });
    Ok(out)
}

/// `ringctl certs init`: everything new, nothing replaced.
pub(crate) fn init(args: &CertsInitArgs, json: bool) -> anyhow::Result<()> {
    let bundle = CertDir::new(&args.dir);
    let nodes: Vec<NodeId> = (1..=args.nodes).map(NodeId).collect();
    let mut files = vec![
        (bundle.ca_cert_path(), "CA certificate".to_owned()),
        (bundle.ca_key_path(), "CA private key".to_owned()),
    ];
    for m in members(&bundle, &nodes, &args.client)? {
        files.push((m.cert, format!("{} certificate", m.who)));
        files.push((m.key, format!("{} private key", m.who)));
    }
    let existing: Vec<String> = files
        .iter()
        .filter(|(p, _)| p.exists())
        .map(|(p, _)| file_name(p))
        .collect();
    if !existing.is_empty() {
        bail!(
            "refusing to overwrite {} in {} ({}); remove them or choose another --dir",
            if existing.len() == 1 {
                "an existing file"
            } else {
                "existing files"
            },
            args.dir.display(),
            existing.join(", ")
        );
    }

    // Make everything in memory first: a bad domain, name or SAN writes nothing.
    let sans = node_sans(&args.sans);
    let ca = CertAuthority::generate(&args.domain).context("creating the CA")?;
    let mut issued = Vec::new();
    for id in &nodes {
        let cert = ca
            .issue_node(*id, &sans)
            .with_context(|| format!("issuing the {id} certificate"))?;
        issued.push((*id, cert));
    }
    let client = ca
        .issue_client(&args.client)
        .context("issuing the client certificate")?;

    bundle.write_ca(&ca).context("writing the CA")?;
    for (id, cert) in &issued {
        bundle.write_node(*id, cert)?;
    }
    bundle.write_client(&args.client, &client)?;

    let report = InitReport {
        dir: args.dir.clone(),
        domain: args.domain.clone(),
        node_names: nodes
            .iter()
            .map(|id| node_server_name(*id, &args.domain))
            .collect(),
        sans,
        files: files
            .into_iter()
            .map(|(path, what)| describe(path, what))
            .collect(),
    };
    if json {
        return print_json(&report);
    }
    let mut table = Table::new(&["file", "holds", "mode"]);
    for f in &report.files {
        table.row(vec![file_name(&f.path), f.what.clone(), f.mode.clone()]);
    }
    print_line(&format!(
        "created a certificate bundle in {} for cluster domain {}\n\n{}\n\
         node certificates also name {} and {}\n\
         keep ca.key off the nodes: whoever holds it can admit members",
        args.dir.display(),
        args.domain,
        table.render(),
        any_node_server_name(&args.domain),
        report.sans.join(", "),
    ))
}

/// What `local up` found or made in its certificate directory.
#[derive(Debug)]
pub(crate) struct LocalBundle {
    /// The cluster domain (from the CA).
    pub(crate) domain: String,
    /// Files created now (empty when everything was reused).
    pub(crate) created: Vec<PathBuf>,
}

/// Reuses the bundle in `dir` or completes it: a CA if there is none, and each member
/// pair that is missing. A half pair, or members without a CA, is an error: guessing
/// would leave certificates that do not chain.
pub(crate) fn ensure_bundle(
    dir: &Path,
    nodes: &[NodeId],
    client: &str,
) -> anyhow::Result<LocalBundle> {
    let bundle = CertDir::new(dir);
    let members = members(&bundle, nodes, client)?;
    let mut created = Vec::new();
    let ca = if bundle.ca_cert_path().exists() {
        bundle.load_ca().with_context(|| {
            format!(
                "reusing the certificates in {} (remove the directory to start afresh)",
                dir.display()
            )
        })?
    } else {
        if let Some(p) = members
            .iter()
            .flat_map(|m| [&m.cert, &m.key])
            .find(|p| p.exists())
        {
            bail!(
                "{} exists but {} does not; remove {} to start afresh",
                p.display(),
                bundle.ca_cert_path().display(),
                dir.display()
            );
        }
        let ca = CertAuthority::generate("ringcache.local").context("creating the CA")?;
        bundle.write_ca(&ca).context("writing the CA")?;
        created.extend([bundle.ca_cert_path(), bundle.ca_key_path()]);
        ca
    };
    let sans = node_sans(&[]);
    for Member { cert, key, .. } in &members {
        match (cert.exists(), key.exists()) {
            (true, true) => continue,
            (false, false) => {}
            (true, false) | (false, true) => bail!(
                "{} and {} must both exist or both be absent; remove the one that is there",
                cert.display(),
                key.display()
            ),
        }
        created.extend([cert.clone(), key.clone()]);
    }
    for id in nodes {
        let (cert, _) = bundle.node_paths(*id);
        if created.contains(&cert) {
            let issued = ca
                .issue_node(*id, &sans)
                .with_context(|| format!("issuing the {id} certificate"))?;
            bundle.write_node(*id, &issued)?;
        }
    }
    let (client_cert, _) = bundle.client_paths(client)?;
    if created.contains(&client_cert) {
        let issued = ca
            .issue_client(client)
            .context("issuing the client certificate")?;
        bundle.write_client(client, &issued)?;
    }
    Ok(LocalBundle {
        domain: ca.cluster_domain().to_owned(),
        created,
    })
}

fn describe(path: PathBuf, what: String) -> BundleFile {
    let mode = mode_of(&path);
    BundleFile { path, what, mode }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).map_or_else(
        |_| "?".to_owned(),
        |m| format!("{:04o}", m.permissions().mode() & 0o7777),
    )
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> String {
    "-".to_owned()
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
