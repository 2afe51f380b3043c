//! `ringcached --config FILE`: the Ringcache node.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ringcache_node::config::NodeConfig;

/// The Ringcache node.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The node's TOML configuration (see cluster-config/ for examples).
    #[arg(long, short, env = "RINGCACHED_CONFIG")]
    config: PathBuf,
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let base = args.config.parent().map(PathBuf::from).unwrap_or_default();
    let config = NodeConfig::from_file(&args.config)
        .and_then(|c| c.validate(&base))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    ringcache_node::server::run(config, shutdown_signal())
        .await
        .context("running the node")
}
