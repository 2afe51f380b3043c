//! What can go wrong, and what the caller may do about it.

use std::time::Duration;

use ringcache_proto::{ErrorCode, WireError};

/// Whether a failed request took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It certainly did not apply (never sent, or refused before applying).
    NotApplied,
    /// It may or may not have applied: it was sent and the answer was lost. Retrying a
    /// non-idempotent write (increment, compare-and-set) may apply it twice.
    Unknown,
}

/// A client error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (files, names, addresses).
    #[error("client config: {0}")]
    Config(String),
    /// No endpoint could be reached.
    #[error("cannot connect to any of {endpoints:?}: {reason}")]
    Connect {
        /// What was tried.
        endpoints: Vec<String>,
        /// The last failure.
        reason: String,
    },
    /// The node answered with an error.
    #[error("{0}")]
    Server(WireError),
    /// No answer within the request timeout.
    #[error("no answer within {after:?} (outcome {outcome:?})")]
    Timeout {
        /// The timeout.
        after: Duration,
        /// Whether the request may have applied.
        outcome: Outcome,
    },
    /// The connection failed while the request was outstanding.
    #[error("connection lost: {reason} (outcome {outcome:?})")]
    ConnectionLost {
        /// Why.
        reason: String,
        /// Whether the request may have applied.
        outcome: Outcome,
    },
    /// The request was refused locally before sending (over a size limit).
    #[error("invalid request: {0}")]
    Invalid(WireError),
    /// The node sent something this client does not understand.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A typed helper could not (de)serialize a value.
    #[error("value encoding: {0}")]
    Encoding(String),
}

impl Error {
    /// Whether the request certainly did not apply, so sending it again cannot apply it
    /// twice.
    #[must_use]
    pub fn retry_is_safe(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Server(e) => e.code.is_retryable(),
            Error::Timeout { outcome, .. } | Error::ConnectionLost { outcome, .. } => {
                *outcome == Outcome::NotApplied
            }
            Error::Config(_) | Error::Invalid(_) | Error::Protocol(_) | Error::Encoding(_) => false,
        }
    }

    /// Whether the request may have applied although it failed.
    #[must_use]
    pub fn outcome_unknown(&self) -> bool {
        matches!(
            self,
            Error::Timeout {
                outcome: Outcome::Unknown,
                ..
            } | Error::ConnectionLost {
                outcome: Outcome::Unknown,
                ..
            }
        ) || matches!(self, Error::Server(e) if e.code == ErrorCode::Timeout)
    }

    /// The server's error code, if the server answered with one.
    #[must_use]
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Server(e) | Error::Invalid(e) => Some(e.code),
            _ => None,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
