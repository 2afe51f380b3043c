//! quinn configurations wrapping the rustls ones, with Ringcache's transport defaults.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{Endpoint, EndpointConfig, IdleTimeout, TransportConfig, VarInt};

use crate::error::{Result, TlsError};

/// Default keep-alive interval: 2 s. Keeps idle long-lived connections (a client's
/// connection to each node, peer links) open through NAT and firewall state timeouts, and
/// well inside [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);

/// Default idle timeout: 10 s. A peer that has not been heard from for this long (five
/// missed keep-alives) is declared gone and its connection closed, and requests waiting
/// on it fail (a killed node sends nothing, so this is how a client learns that requests
/// it already sent there will not be answered, and routes again). Lower it to detect dead
/// peers sooner at the price of false alarms under long pauses.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit of concurrent bidirectional streams a peer may open: 64. The protocol
/// uses one long-lived stream per connection (a few more for parallelism); the limit
/// bounds what a misbehaving peer can make us hold.
pub const MAX_CONCURRENT_BIDI_STREAMS: u32 = 64;

/// The transport parameters both ends use: [`KEEP_ALIVE_INTERVAL`], [`IDLE_TIMEOUT`],
/// [`MAX_CONCURRENT_BIDI_STREAMS`], quinn's defaults for the rest.
pub fn transport_config() -> TransportConfig {
    let mut transport = TransportConfig::default();
    transport
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(IDLE_TIMEOUT).expect("10 s is far below QUIC's 2^62 ms limit"),
        ))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_CONCURRENT_BIDI_STREAMS));
    transport
}

/// A quinn server configuration from a rustls one (see [`crate::server_config`]), with
/// [`transport_config`]. Change the transport afterwards with
/// [`quinn::ServerConfig::transport_config`].
pub fn quinn_server_config(config: rustls::ServerConfig) -> Result<quinn::ServerConfig> {
    let crypto = QuicServerConfig::try_from(config).map_err(|source| TlsError::Quic { source })?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport_config()));
    Ok(server)
}

/// A quinn client configuration from a rustls one (see [`crate::client_config`]), with
/// [`transport_config`].
pub fn quinn_client_config(config: rustls::ClientConfig) -> Result<quinn::ClientConfig> {
    let crypto = QuicClientConfig::try_from(config).map_err(|source| TlsError::Quic { source })?;
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    client.transport_config(Arc::new(transport_config()));
    Ok(client)
}

/// Kernel buffer size asked for on an endpoint's UDP socket, each direction: 4 MiB.
/// Linux' default (~208 KiB) overflows under pipelined load (every endpoint's
/// datagrams of a burst queue in one socket), and each drop costs a connection a
/// loss-recovery episode (milliseconds of tail latency). The kernel caps the request at
/// `net.core.rmem_max` / `wmem_max`; raise those to get all of it.
pub const UDP_SOCKET_BUFFER: usize = 4 << 20;

/// Binds a UDP socket for a quinn endpoint at `addr` with [`UDP_SOCKET_BUFFER`]
/// buffers (best effort: a kernel that refuses the size leaves its default).
///
/// # Errors
/// When the address cannot be bound.
pub fn bind_udp(addr: SocketAddr) -> std::io::Result<std::net::UdpSocket> {
    let socket = std::net::UdpSocket::bind(addr)?;
    let state = quinn::udp::UdpSocketState::new((&socket).into())?;
    // Failing to grow a buffer only leaves the smaller default: not worth refusing to
    // start over.
    let _ = state.set_recv_buffer_size((&socket).into(), UDP_SOCKET_BUFFER);
    let _ = state.set_send_buffer_size((&socket).into(), UDP_SOCKET_BUFFER);
    Ok(socket)
}

/// A quinn endpoint on the tokio runtime bound with [`bind_udp`]: a server when
/// `server` is given, else client-only. Must be called within a tokio runtime.
///
/// # Errors
/// When the address cannot be bound.
pub fn bind_endpoint(
    addr: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> std::io::Result<Endpoint> {
    let socket = bind_udp(addr)?;
    Endpoint::new(
        EndpointConfig::default(),
        server,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}
