//! Which cluster the data commands talk to: a client.toml, flags, or both.

use std::path::{Path, PathBuf};

use anyhow::bail;
use ringcache_client::ClientConfig;

use crate::cli::GlobalArgs;

/// Where `ringctl local up` writes its client configuration, relative to the working
/// directory; used when no `-c` is given and the file exists.
pub(crate) const DEFAULT_CLIENT_CONFIG: &str = ".ringcache/local/client.toml";

/// The configuration from `-c FILE` (or `$RINGCACHE_CONFIG`, or the local default), with
/// the connection flags applied on top; or from the flags alone.
pub(crate) fn client_config(g: &GlobalArgs) -> anyhow::Result<ClientConfig> {
    let file = g.config.clone().or_else(|| {
        let p = PathBuf::from(DEFAULT_CLIENT_CONFIG);
        p.is_file().then_some(p)
    });
    let mut cfg = match file {
        Some(path) => ClientConfig::from_file(&path)?,
        None => from_flags(g)?,
    };
    if !g.endpoints.is_empty() {
        cfg.endpoints.clone_from(&g.endpoints);
    }
    for (slot, flag) in [
        (&mut cfg.ca_cert, &g.ca_cert),
        (&mut cfg.client_cert, &g.client_cert),
        (&mut cfg.client_key, &g.client_key),
    ] {
        if let Some(p) = flag {
            slot.clone_from(p);
        }
    }
    if let Some(d) = &g.cluster_domain {
        cfg.cluster_domain.clone_from(d);
    }
    if let Some(t) = g.timeout {
        cfg.connect_timeout = t;
        cfg.request_timeout = t;
    }
    Ok(cfg)
}

fn from_flags(g: &GlobalArgs) -> anyhow::Result<ClientConfig> {
    if g.endpoints.is_empty() {
        bail!(
            "no client config: pass -c FILE (or set RINGCACHE_CONFIG), start a local node with \
             `ringctl local up` (which writes {DEFAULT_CLIENT_CONFIG}), or give --endpoint with \
             --ca, --cert and --key"
        );
    }
    let (Some(ca), Some(cert), Some(key)) = (&g.ca_cert, &g.client_cert, &g.client_key) else {
        bail!("--endpoint without a client config needs --ca, --cert and --key");
    };
    Ok(ClientConfig::new(
        g.endpoints.clone(),
        ca.clone(),
        cert.clone(),
        key.clone(),
    ))
}

/// `path` as the user should type it in a follow-up command: relative to the working
/// directory when it is below it.
pub(crate) fn display_path(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}
