//! The QUIC listener: accept connections (mutual TLS, ALPN `ringcache/1`), serve each
//! bidirectional stream with [`crate::conn::serve_stream`], shut down gracefully.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use quinn::{Endpoint, VarInt};
use ringcache_tls::{
    ALPN_CLIENT, ClientAuth, load_cert_pem, load_identity, quinn_server_config, server_config,
};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{Instrument, info, info_span, warn};

use crate::config::ValidConfig;
use crate::conn::{serve_stream, stop_requested};
use crate::control::{Control, ControlConfig};
use crate::handler::Handler;
use crate::keyspace::Keyspace;
use crate::routing::Routing;

/// How long a graceful shutdown waits for connections to finish before closing them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the node could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// TLS material could not be loaded or used.
    #[error("tls: {0}")]
    Tls(#[from] ringcache_tls::TlsError),
    /// The data directory could not be prepared.
    #[error("data directory {path}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The cluster control plane could not start (Raft storage, TLS).
    #[error("cluster: {0}")]
    Cluster(#[from] ringcache_cluster::ClusterError),
    /// A namespace could not open (its store, its write-behind log).
    #[error(transparent)]
    Namespace(#[from] crate::keyspace::OpenError),
    /// The UDP socket could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A started node: its address and the means to stop it.
#[derive(Debug)]
pub struct Node {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    /// The address the node listens on (the real port when the config said 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, answers what every stream already received, closes, and waits
    /// (at most [`DRAIN_TIMEOUT`] for the streams).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            warn!(error = %e, "node task ended abnormally");
        }
    }
}

/// Starts a node: loads TLS, builds the keyspace, binds, and serves in the background.
///
/// # Errors
/// See [`ServeError`]; nothing is left running on error.
pub async fn start(config: ValidConfig) -> Result<Node, ServeError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| ServeError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    let ca = load_cert_pem(&config.tls.ca)?;
    let identity = load_identity(&config.tls.cert, &config.tls.key)?;
    let tls = server_config(
        &ca,
        &identity,
        ClientAuth::Required,
        &[ALPN_CLIENT, ringcache_tls::ALPN_PEER],
    )?;
    let mut quic = quinn_server_config(tls)?;
    let mut transport = ringcache_tls::transport_config();
    transport.max_concurrent_bidi_streams(VarInt::from_u32(config.max_streams_per_connection));
    quic.transport_config(Arc::new(transport));
    let endpoint = ringcache_tls::bind_endpoint(config.listen, Some(quic)).map_err(|source| {
        ServeError::Bind {
            addr: config.listen,
            source,
        }
    })?;
    let addr = endpoint.local_addr().map_err(|source| ServeError::Bind {
        addr: config.listen,
        source,
    })?;
    // Written whole under a temporary name, then renamed: a reader polling for the
    // file never sees it empty or half written.
    let addr_file = config.data_dir.join("listen.addr");
    let partial = config.data_dir.join("listen.addr.partial");
    std::fs::write(&partial, format!("{addr}\n"))
        .and_then(|()| std::fs::rename(&partial, &addr_file))
        .map_err(|source| ServeError::DataDir {
            path: addr_file,
            source,
        })?;

    let keyspace = Arc::new(
        Keyspace::open(
            config.partitions,
            &config.namespaces,
            &config.data_dir,
            &config.base,
        )
        .await?,
    );
    let advertise = config
        .cluster
        .as_ref()
        .and_then(|c| c.advertise.clone())
        .unwrap_or_else(|| addr.to_string());
    let handler = match &config.cluster {
        None => Handler::new(keyspace, config.limits, config.node_id, advertise),
        Some(section) => {
            let routing = Arc::new(Routing::clustered(config.node_id, config.partitions));
            let control = Control::start(
                ControlConfig {
                    me: config.node_id,
                    advertise,
                    section: section.clone(),
                    partitions: config.partitions,
                    data_dir: config.data_dir.clone(),
                    tls: config.tls.clone(),
                    endpoint: endpoint.clone(),
                },
                Arc::clone(&routing),
                Arc::clone(&keyspace),
            )
            .await?;
            Handler::clustered(keyspace, config.limits, config.node_id, routing, control)
        }
    }
    .with_domain(&config.tls.cluster_domain);
    let (stop, stopped) = watch::channel(false);
    info!(node = %config.node_id, %addr, partitions = config.partitions, "serving");
    let task = tokio::spawn(
        accept_loop(endpoint, handler, stopped, config.max_connections as usize)
            .instrument(info_span!("node", id = %config.node_id)),
    );
    Ok(Node { addr, stop, task })
}

async fn accept_loop(
    endpoint: Endpoint,
    handler: Handler,
    stopped: watch::Receiver<bool>,
    max_connections: usize,
) {
    let mut stop_signal = stopped.clone();
    let active = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        tokio::select! {
            incoming = endpoint.accept() => {
                let Some(incoming) = incoming else { break };
                if active.load(Ordering::Relaxed) >= max_connections {
                    warn!(remote = %incoming.remote_address(), max_connections, "refusing connection: limit reached");
                    incoming.refuse();
                    continue;
                }
                next_id += 1;
                active.fetch_add(1, Ordering::Relaxed);
                let span = info_span!("conn", id = next_id, remote = %incoming.remote_address());
                let (handler, stopped, active) = (handler.clone(), stopped.clone(), Arc::clone(&active));
                connections.spawn(
                    async move {
                        serve_connection(incoming, handler, stopped).await;
                        active.fetch_sub(1, Ordering::Relaxed);
                    }
                    .instrument(span),
                );
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = stop_requested(&mut stop_signal) => break,
        }
    }
    // Graceful: no new connections; streams answer what they hold and finish.
    endpoint.set_server_config(None);
    info!(
        connections = connections.len(),
        "shutting down: draining connections"
    );
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("drain timed out; closing the remaining connections");
        connections.abort_all();
    }
    // Every acknowledged write-behind write is queued by now: write them out.
    handler.keyspace().shutdown().await;
    if let Some(control) = handler.control() {
        control.shutdown().await;
    }
    endpoint.close(VarInt::from_u32(0), b"shutting down");
    endpoint.wait_idle().await;
    info!("stopped");
}

async fn serve_connection(
    incoming: quinn::Incoming,
    handler: Handler,
    stopped: watch::Receiver<bool>,
) {
    let conn = match incoming.await {
        Ok(c) => c,
        Err(e) => {
            // Includes clients refused by mutual TLS.
            info!(error = %e, "handshake failed");
            return;
        }
    };
    let alpn = conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol);
    if alpn.as_deref() == Some(ringcache_tls::ALPN_PEER) {
        match handler.control() {
            Some(control) => {
                tracing::debug!("peer connected");
                ringcache_cluster::serve_peer(conn, control.cluster().clone()).await;
            }
            None => conn.close(VarInt::from_u32(1), b"standalone node"),
        }
        return;
    }
    let handler =
        handler.for_connection(ringcache_tls::peer_is_node(&conn, handler.cluster_domain()));
    info!("connected");
    let mut streams = JoinSet::new();
    let mut watch_stop = stopped.clone();
    loop {
        tokio::select! {
            stream = conn.accept_bi() => match stream {
                Ok((send, recv)) => {
                    let (handler, stopped) = (handler.clone(), stopped.clone());
                    streams.spawn(async move {
                        match serve_stream(&handler, recv, send, stopped).await {
                            Ok(end) => tracing::debug!(?end, "stream ended"),
                            Err(e) => tracing::debug!(error = %e, "stream failed"),
                        }
                    });
                }
                Err(e) => {
                    info!(reason = %e, "disconnected");
                    break;
                }
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {}
            () = stop_requested(&mut watch_stop) => break,
        }
    }
    while streams.join_next().await.is_some() {}
    conn.close(VarInt::from_u32(0), b"bye");
}

/// Starts a node and serves until `shutdown` resolves, then stops gracefully.
///
/// # Errors
/// See [`start`].
pub async fn run(
    config: ValidConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let node = start(config).await?;
    shutdown.await;
    info!("shutdown requested");
    node.shutdown().await;
    Ok(())
}
