//! [`StoreError`]: every way a backing-store call can fail, each carrying its cause.

use std::path::PathBuf;
use std::time::Duration;

/// Why a store call failed.
///
/// A failed call never leaves the database half-written: single writes are one
/// statement and batches one transaction, so a call either applied completely or not at
/// all. The one exception is [`StoreError::Timeout`] (and a connection lost mid-call,
/// reported as [`StoreError::Unavailable`]): the statement may still have committed, so
/// the outcome is unknown. Every write is an idempotent, version-guarded upsert, so
/// retrying it is always safe.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store configuration is not acceptable.
    #[error("store config: {field}: {reason}")]
    Config {
        /// The field, relative to the store section (`table`, `url`, ...).
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The store cannot be reached: connection refused or lost, server shutting down,
    /// out of connections or disk, no connection could be made within the timeout.
    /// Retryable.
    #[error("store unavailable: {cause}")]
    Unavailable {
        /// The underlying error.
        cause: String,
    },
    /// The call did not finish within the per-operation timeout (a lock held elsewhere,
    /// a saturated pool, a slow server). Its outcome is unknown. Retryable.
    #[error("store {op} timed out after {after:?}")]
    Timeout {
        /// The operation (`get`, `upsert`, `delete`, `upsert_batch`, `ping`).
        op: &'static str,
        /// The configured per-operation timeout.
        after: Duration,
    },
    /// The table is missing or does not have the shape Ringcache needs (see the crate
    /// docs for the shape). Detected when the store is opened.
    #[error("store table {table}: {reason}")]
    Schema {
        /// The table, as configured.
        table: String,
        /// What is missing or wrong, naming the column.
        reason: String,
    },
    /// The database refused a write because of a constraint on the table (a CHECK, a
    /// foreign key, a NOT NULL column Ringcache does not write, ...). Not retryable.
    #[error("store constraint violated: {cause}")]
    Constraint {
        /// The database's message.
        cause: String,
    },
    /// A transient conflict between transactions (deadlock, serialization failure).
    /// Retryable.
    #[error("store transient conflict: {cause}")]
    Transient {
        /// The database's message.
        cause: String,
    },
    /// Versions are stored as signed 64-bit integers; this one does not fit.
    #[error("version {version} exceeds the largest storable version {max}", max = i64::MAX)]
    VersionOutOfRange {
        /// The refused version.
        version: u64,
    },
    /// The SQLite file could not be opened or created.
    #[error("store file {path}: {cause}")]
    Io {
        /// The database file.
        path: PathBuf,
        /// Why it could not be used.
        cause: String,
    },
    /// Any other database error (permission denied, authentication failed, corrupt
    /// file, unexpected data in a column). Not retryable.
    #[error("store error: {cause}")]
    Database {
        /// The SQLSTATE (PostgreSQL) or extended result code (SQLite), when known.
        code: Option<String>,
        /// The database's message.
        cause: String,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed. Every write is idempotent and
    /// version-guarded, so retrying after an unknown outcome is safe.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::Timeout { .. } | Self::Transient { .. }
        )
    }

    pub(crate) fn config(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Config {
            field,
            reason: reason.into(),
        }
    }

    pub(crate) fn unavailable(cause: impl Into<String>) -> Self {
        Self::Unavailable {
            cause: cause.into(),
        }
    }

    pub(crate) fn schema(table: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Schema {
            table: table.into(),
            reason: reason.into(),
        }
    }
}
