//! Errors as they cross the wire: a closed code, a message and hints. Never a
//! serialized Rust error.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{Epoch, NodeId};

/// What went wrong, as a closed set both sides agree on. Codes are stable numbers on
/// the wire; a peer that receives a code it does not know maps it to
/// [`ErrorCode::Internal`] (see [`ErrorCode::from_wire`]), so new codes never break an
/// old client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "u16", into = "u16")]
#[repr(u16)]
pub enum ErrorCode {
    /// The request was not understood (bad encoding, impossible field values).
    Malformed = 1,
    /// The frame's protocol version is not one this node speaks.
    UnsupportedVersion = 2,
    /// The frame exceeds the configured maximum.
    FrameTooLarge = 3,
    /// A key exceeds the configured maximum.
    KeyTooLarge = 4,
    /// A value exceeds the configured maximum.
    ValueTooLarge = 5,
    /// The namespace does not exist.
    UnknownNamespace = 6,
    /// A conditional write's condition did not hold (hint: the current version).
    ConditionFailed = 7,
    /// `increment` on a value that is not a decimal 64-bit integer, or overflow.
    NotANumber = 8,
    /// Namespace settings that do not validate (the message names the field).
    InvalidConfig = 9,
    /// The thing to create exists already (a namespace).
    AlreadyExists = 10,
    /// The request is valid but this namespace's strategy cannot serve it (for example a
    /// conditional write on a write-around namespace, which keeps no cached copy to
    /// compare with).
    Unsupported = 11,
    /// This node does not own the key's partition at the request's epoch (hints: the
    /// owner and the current epoch). Retrying at the owner is safe.
    NotOwner = 20,
    /// The request carried an older partition-table epoch than the node's.
    StaleEpoch = 21,
    /// No replica of the partition is available: the data is not served rather than
    /// served as empty.
    Unavailable = 22,
    /// The memory bound is held by pinned entries (writes not yet in the database).
    NoRoom = 30,
    /// A queue (write-behind, in-flight requests) is full; retry after the hint.
    Backpressure = 31,
    /// Too many requests in flight on this connection.
    TooManyRequests = 32,
    /// The backing store failed.
    StoreError = 40,
    /// The operation timed out; whether it applied is unknown.
    Timeout = 41,
    /// The client is not allowed to do this.
    Unauthorized = 50,
    /// The node is shutting down; retry elsewhere.
    ShuttingDown = 60,
    /// A bug or an unexpected condition on the node.
    Internal = 99,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 22] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::FrameTooLarge,
        ErrorCode::KeyTooLarge,
        ErrorCode::ValueTooLarge,
        ErrorCode::UnknownNamespace,
        ErrorCode::ConditionFailed,
        ErrorCode::NotANumber,
        ErrorCode::InvalidConfig,
        ErrorCode::AlreadyExists,
        ErrorCode::Unsupported,
        ErrorCode::NotOwner,
        ErrorCode::StaleEpoch,
        ErrorCode::Unavailable,
        ErrorCode::NoRoom,
        ErrorCode::Backpressure,
        ErrorCode::TooManyRequests,
        ErrorCode::StoreError,
        ErrorCode::Timeout,
        ErrorCode::Unauthorized,
        ErrorCode::ShuttingDown,
        ErrorCode::Internal,
    ];

    /// The code for a wire number; unknown numbers become [`ErrorCode::Internal`].
    #[must_use]
    pub fn from_wire(n: u16) -> Self {
        Self::ALL
            .into_iter()
            .find(|c| *c as u16 == n)
            .unwrap_or(ErrorCode::Internal)
    }

    /// Whether sending the same request again may succeed without changing it
    /// (possibly at another node, after the hinted delay).
    #[must_use]
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            ErrorCode::NotOwner
                | ErrorCode::StaleEpoch
                | ErrorCode::Unavailable
                | ErrorCode::Backpressure
                | ErrorCode::TooManyRequests
                | ErrorCode::ShuttingDown
                | ErrorCode::StoreError
                | ErrorCode::NoRoom
        )
    }

    /// The stable snake_case name used in logs and `--json` output.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::KeyTooLarge => "key_too_large",
            ErrorCode::ValueTooLarge => "value_too_large",
            ErrorCode::UnknownNamespace => "unknown_namespace",
            ErrorCode::ConditionFailed => "condition_failed",
            ErrorCode::NotANumber => "not_a_number",
            ErrorCode::InvalidConfig => "invalid_config",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::Unsupported => "unsupported",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::NoRoom => "no_room",
            ErrorCode::Backpressure => "backpressure",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::StoreError => "store_error",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }
}

impl From<u16> for ErrorCode {
    fn from(n: u16) -> Self {
        Self::from_wire(n)
    }
}

impl From<ErrorCode> for u16 {
    fn from(c: ErrorCode) -> Self {
        c as u16
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Machine-readable context for an error: where to go, when to retry, what is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hints {
    /// The partition's owner (with [`ErrorCode::NotOwner`]).
    pub owner: Option<NodeId>,
    /// The node's current partition-table epoch.
    pub epoch: Option<Epoch>,
    /// Wait at least this long before retrying.
    pub retry_after_ms: Option<u32>,
    /// The entry's current version (with [`ErrorCode::ConditionFailed`]); `None` when
    /// the key is absent.
    pub current_version: Option<u64>,
}

/// An error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// What went wrong.
    pub code: ErrorCode,
    /// A human sentence, lowercase, naming the offending field or limit.
    pub message: String,
    /// Context for programs.
    pub hints: Hints,
}

impl WireError {
    /// An error without hints.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            hints: Hints::default(),
        }
    }

    /// The same error with hints.
    #[must_use]
    pub fn with_hints(mut self, hints: Hints) -> Self {
        self.hints = hints;
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for WireError {}
