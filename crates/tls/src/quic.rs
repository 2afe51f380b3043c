//! quinn configurations wrapping the rustls ones, with Ringcache's transport defaults.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, TransportConfig, VarInt};

use crate::error::{Result, TlsError};

/// Default keep-alive interval: 5 s. Keeps idle long-lived connections (a client's
/// connection to each node, peer links) open through NAT and firewall state timeouts, and
/// well inside [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(5);

/// Default idle timeout: 30 s. A peer that has not been heard from for this long (six
/// missed keep-alives) is declared gone and its connection closed; lower it to detect dead
/// peers sooner at the price of false alarms under long pauses.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

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
            IdleTimeout::try_from(IDLE_TIMEOUT).expect("30 s is far below QUIC's 2^62 ms limit"),
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
