//! The peer protocol over QUIC: wire messages, the dialing side (links and openraft's
//! network traits) and the accepting side ([`serve_peer`]).

pub(crate) mod client;
pub(crate) mod raft;
mod server;
pub(crate) mod wire;

pub use server::{HELLO_TIMEOUT, MAX_IN_FLIGHT_PER_PEER, serve_peer};
