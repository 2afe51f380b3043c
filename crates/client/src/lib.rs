//! The Ringcache client.
//!
//! One [`Client`] holds one QUIC connection (mutual TLS) with one long-lived stream;
//! any number of tasks share it, their requests multiplexed by id and written together.
//! Errors say what happened and what is safe: [`Error::retry_is_safe`] and
//! [`Error::outcome_unknown`] (a write whose answer was lost is reported as possibly
//! applied, never as simply failed). Requests that are safe to repeat are retried on a
//! new connection when the old one fails; others are not.
//!
//! # Layout
//! - [`Client`], [`SetOptions`]: connection management and the operations.
//! - [`ClientConfig`]: endpoints, certificates, timeouts (also `client.toml`).
//! - [`Endpoint`]: a local UDP socket several clients can share
//!   ([`Client::connect_on`]).
//! - [`Error`], [`Outcome`]: typed failures.
//! - `get_or_load` ([`LoadOptions`], [`LoadError`]): cache-aside with single flight,
//!   XFetch early refresh and TTL jitter.
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), ringcache_client::Error> {
//! use std::time::Duration;
//! use ringcache_client::{Client, ClientConfig, SetOptions};
//!
//! let config = ClientConfig::from_file(".ringcache/local/client.toml".as_ref())?;
//! let client = Client::connect(config).await?;
//! client.set("default", "greeting", "hello", SetOptions::ttl(Duration::from_secs(60))).await?;
//! let hit = client.get("default", "greeting").await?;
//! assert_eq!(hit.map(|e| e.value), Some("hello".into()));
//! # Ok(()) }
//! ```

mod aside;
mod client;
mod config;
mod connection;
mod endpoint;
mod error;
mod routing;

pub use aside::{LoadError, LoadOptions};
pub use client::{Client, SetOptions};
pub use config::ClientConfig;
pub use endpoint::Endpoint;
pub use error::{Error, Outcome, Result};
pub use ringcache_proto::{Entry, ErrorCode, NamespaceStats, WireError, WriteCondition};
