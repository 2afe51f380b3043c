//! A client-side QUIC endpoint (one local UDP socket) that several clients can share.

use std::net::SocketAddr;

use crate::error::{Error, Result};

/// A local UDP socket for client connections.
///
/// [`Client::connect`](crate::Client::connect) opens one per client. Clients made with
/// [`Client::connect_on`](crate::Client::connect_on) share this one instead: a process
/// holding connections to several nodes, or many connections to one, then reads the
/// answers of all of them with one socket and one receive task (a socket read brings a
/// batch of datagrams for many connections, where a socket per connection costs a
/// system call, and a second one finding it empty, per datagram). Cheap to clone;
/// clones are the same socket, which stays open while a clone or a client using it
/// lives.
#[derive(Clone, Debug)]
pub struct Endpoint {
    quic: quinn::Endpoint,
}

impl Endpoint {
    /// Binds an unspecified IPv4 address, any port, with large socket buffers (see
    /// [`ringcache_tls::UDP_SOCKET_BUFFER`]). Must be called within a tokio runtime, and
    /// the endpoint works while that runtime runs.
    ///
    /// # Errors
    /// [`Error::Config`] when no UDP socket can be opened.
    pub fn bind() -> Result<Self> {
        Self::bind_addr(([0, 0, 0, 0], 0).into())
    }

    /// As [`Endpoint::bind`], at `addr`.
    ///
    /// # Errors
    /// [`Error::Config`] when the address cannot be bound.
    pub fn bind_addr(addr: SocketAddr) -> Result<Self> {
        let quic = ringcache_tls::bind_endpoint(addr, None)
            .map_err(|e| Error::Config(format!("cannot open a UDP socket at {addr}: {e}")))?;
        Ok(Self { quic })
    }

    /// The local address of the socket.
    ///
    /// # Errors
    /// [`Error::Config`] if the socket cannot tell.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        self.quic
            .local_addr()
            .map_err(|e| Error::Config(format!("cannot read the local address: {e}")))
    }

    /// Clients on an endpoint the process already has (a node dialing its peers from the
    /// socket it serves on, so that every packet it sends carries its own address).
    #[must_use]
    pub fn from_quinn(quic: quinn::Endpoint) -> Self {
        Self { quic }
    }

    pub(crate) fn quic(&self) -> &quinn::Endpoint {
        &self.quic
    }
}
