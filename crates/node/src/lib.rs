//! The Ringcache node (`ringcached`): everything that runs.
//!
//! ```text
//!  client ──QUIC stream (frames)──► conn::serve_stream ──► Handler::handle ──► Keyspace
//!           ◄── responses, coalesced into one write per batch ──┘                │
//!                                                 namespace ─► partition (xxh3) ─► Engine
//! ```
//!
//! # Layout
//! - [`config`]: the TOML file, validated into [`config::ValidConfig`].
//! - [`keyspace`]: namespaces, each with one engine per partition.
//! - [`handler`]: requests to responses.
//! - [`conn`]: the framing loop of one stream.
//! - [`server`]: the QUIC listener (mutual TLS, ALPN `ringcache/1` for clients and
//!   `ringcache-peer/1` for Raft) and graceful shutdown.
//! - [`routing`]: which partitions this node serves (the committed table), fences.
//! - [`control`]: cluster membership, failure detection, placement and partition moves.
//! - [`strategy`], [`writebehind`], [`wal`]: the caching strategies against a store.

pub mod config;
pub mod conn;
pub mod control;
pub mod handler;
pub mod keyspace;
pub mod routing;
pub mod server;
pub mod strategy;
pub mod wal;
pub mod writebehind;
