//! `ringcache-store`: the backing stores a namespace's strategies (read-through,
//! write-through, write-behind, ...) read from and write to. PostgreSQL for production,
//! SQLite (bundled, nothing to install) as the embedded default.
//!
//! This crate is only the database side: open a [`Store`] from a [`StoreConfig`], then
//! `get`, `upsert`, `delete`, `upsert_batch`, `ping`. It knows nothing about caching,
//! queues or retries; strategies live in the node.
//!
//! # Guarantees
//!
//! - **Writes are version-guarded.** A write at version `v` applies only if the row is
//!   absent or holds a version older than `v`; otherwise it is [`Applied::Stale`] and
//!   changes nothing. An equal version is a no-op. Replaying any writes, in any order,
//!   any number of times, leaves the row at the highest version: the database never
//!   moves backwards, so at-least-once flushing is safe.
//! - **Deletes leave a tombstone.** [`Store::delete`] at version `v` stores the row with
//!   a NULL `value` and version `v`, so a replayed older write (version below `v`)
//!   cannot resurrect the key. [`Store::get`] treats a tombstone as absent;
//!   [`Store::get_row`] shows it. Tombstones are never removed by this crate.
//! - **Versions are `u64` in the API and `bigint` (i64) in the database.** Versions
//!   above `i64::MAX` are refused with [`StoreError::VersionOutOfRange`] before touching
//!   the database.
//! - **Failures are typed and never partial.** A single write is one statement, a batch
//!   one statement (PostgreSQL) or one transaction (SQLite). Errors are
//!   [`StoreError`] variants with the cause; [`StoreError::is_retryable`] says whether
//!   to try again. A [`StoreError::Timeout`] leaves the outcome unknown, which a
//!   version-guarded retry makes harmless.
//! - **Every call is bounded** by the configured per-operation timeout (plus 250 ms on
//!   PostgreSQL, where the server's own `statement_timeout` fires first).
//!
//! # The table
//!
//! Each namespace uses one table (default `ringcache_kv`), created on open unless
//! `create_table = false`. The columns Ringcache reads and writes, by name:
//!
//! | column | PostgreSQL | SQLite | meaning |
//! | --- | --- | --- | --- |
//! | `key` | `bytea`, primary key | `BLOB PRIMARY KEY NOT NULL` | the cache key, raw bytes |
//! | `value` | `bytea`, nullable | `BLOB`, nullable | the value; NULL is a tombstone |
//! | `version` | `bigint NOT NULL` | `INTEGER NOT NULL` | version of the last applied write |
//! | `updated_at` | `timestamptz NOT NULL` | `INTEGER NOT NULL` (Unix ms) | when it was applied |
//!
//! ```sql
//! -- PostgreSQL
//! CREATE TABLE IF NOT EXISTS ringcache_kv (
//!     key        bytea       PRIMARY KEY,
//!     value      bytea,
//!     version    bigint      NOT NULL,
//!     updated_at timestamptz NOT NULL DEFAULT now()
//! );
//! -- SQLite
//! CREATE TABLE IF NOT EXISTS ringcache_kv (
//!     key        BLOB    PRIMARY KEY NOT NULL,
//!     value      BLOB,
//!     version    INTEGER NOT NULL,
//!     updated_at INTEGER NOT NULL  -- Unix ms; default: now
//!         DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
//! );
//! ```
//!
//! Every write is one upsert (the batch form feeds the same statement from arrays with
//! `UNNEST($1::bytea[], $2::bytea[], $3::int8[])` on PostgreSQL):
//!
//! ```sql
//! INSERT INTO ringcache_kv AS t (key, value, version, updated_at) VALUES ($1, $2, $3, now())
//! ON CONFLICT (key) DO UPDATE
//!   SET value = EXCLUDED.value, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at
//!   WHERE t.version < EXCLUDED.version
//! ```
//!
//! ## Pointing a namespace at your own table
//!
//! Set `table` to its name (`schema.table` is accepted; the name is quoted, so it is
//! case-sensitive: PostgreSQL folds unquoted names to lowercase) and `create_table =
//! false`. When the store opens it checks, and refuses with a message naming the
//! column:
//!
//! - columns `key`, `value`, `version`, `updated_at` exist (PostgreSQL: `bytea`,
//!   `bytea`, `bigint`, `timestamp[tz]`; SQLite: `version` without TEXT or REAL
//!   affinity);
//! - `key` alone is the primary key or has a unique, non-partial index (what
//!   `ON CONFLICT (key)` needs);
//! - `value` is nullable (tombstones) and `version` is NOT NULL;
//! - every other column is nullable or has a default (Ringcache writes only these four).
//!
//! Other columns, triggers and indexes are yours. Rows written by something else must
//! carry a `version` that is comparable with the cache's versions: a row with a higher
//! version than the cache's writes will never be overwritten. The role needs SELECT,
//! INSERT and UPDATE on the table (and CREATE on the schema when `create_table` is on).
//! Two namespaces must not share a table: keys would collide.
//!
//! # Layout
//!
//! - `config`: [`StoreConfig`] (serde, per namespace) and its checked form
//!   [`ValidStoreConfig`].
//! - `error`: [`StoreError`].
//! - `write`: [`Write`], [`Row`], [`StoredValue`], [`Applied`], [`BatchOutcome`] and the
//!   batch coalescing rule.
//! - `sqlite`: [`SqliteStore`]: one connection behind a mutex, driven from tokio's
//!   blocking pool; WAL journal, `synchronous = FULL`, busy timeout = the timeout.
//! - `postgres`: [`PostgresStore`]: tokio-postgres through a deadpool pool; server-side
//!   `statement_timeout` and `lock_timeout` plus a client-side bound.
//! - `schema`: the shape check run at open.
//!
//! # Example
//!
//! ```
//! # async fn demo() -> Result<(), ringcache_store::StoreError> {
//! use ringcache_store::{Applied, Store, StoreConfig};
//!
//! let dir = std::env::temp_dir().join(format!("ringcache-store-doc-{}", std::process::id()));
//! let config = StoreConfig::sqlite(dir.join("cache.sqlite")).validate(&dir)?;
//! let store = Store::open(&config).await?;
//!
//! assert_eq!(store.upsert("user:42", "v2", 2).await?, Applied::Written);
//! assert_eq!(store.upsert("user:42", "v1", 1).await?, Applied::Stale); // older: ignored
//! assert_eq!(store.get(b"user:42").await?.map(|v| v.version), Some(2));
//! assert_eq!(store.delete("user:42", 3).await?, Applied::Written);
//! assert_eq!(store.upsert("user:42", "v2", 2).await?, Applied::Stale); // tombstone holds
//! assert!(store.get(b"user:42").await?.is_none());
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
//! ```

mod config;
mod error;
mod postgres;
mod schema;
mod sqlite;
mod write;

use bytes::Bytes;

pub use config::{
    Backend, DEFAULT_TABLE, StoreConfig, StoreKind, TableName, ValidStoreConfig, parse_timeout,
    redact_url,
};
pub use error::StoreError;
pub use postgres::{POSTGRES_CREATE_TABLE, PostgresStore};
pub use sqlite::{SQLITE_CREATE_TABLE, SqliteStore};
pub use write::{Applied, BatchOutcome, Row, StoredValue, Write};

/// An open backing store. Cheap to clone: clones share the connection or pool.
///
/// Every method is safe to call concurrently from many tasks. No method holds a lock
/// across an `.await` of the caller's.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Store {
    /// An SQLite file.
    Sqlite(SqliteStore),
    /// A PostgreSQL table.
    Postgres(PostgresStore),
}

impl Store {
    /// Opens the store: connects (PostgreSQL) or opens the file (SQLite), creates the
    /// table if it is missing and allowed, and checks the table's shape.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when the server cannot be reached within the timeout,
    /// [`StoreError::Io`] when the SQLite file cannot be opened, [`StoreError::Schema`]
    /// when the table is missing (with `create_table = false`) or has the wrong shape.
    pub async fn open(config: &ValidStoreConfig) -> Result<Self, StoreError> {
        let table = config.table.clone();
        let store = match &config.backend {
            Backend::Sqlite { path } => Self::Sqlite(
                SqliteStore::open(path.clone(), table, config.create_table, config.timeout).await?,
            ),
            Backend::Postgres { pg, pool_size } => Self::Postgres(
                PostgresStore::open(pg, *pool_size, table, config.create_table, config.timeout)
                    .await?,
            ),
        };
        tracing::debug!(kind = %store.kind(), table = %store.table(), "store open");
        Ok(store)
    }

    /// The kind of database.
    #[must_use]
    pub fn kind(&self) -> StoreKind {
        match self {
            Self::Sqlite(_) => StoreKind::Sqlite,
            Self::Postgres(_) => StoreKind::Postgres,
        }
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &TableName {
        match self {
            Self::Sqlite(s) => s.table(),
            Self::Postgres(s) => s.table(),
        }
    }

    /// The live value of `key`, or `None` when absent or deleted (tombstone).
    ///
    /// # Errors
    /// A [`StoreError`]; [`StoreError::Schema`] if the row holds data of the wrong type.
    pub async fn get(&self, key: &[u8]) -> Result<Option<StoredValue>, StoreError> {
        Ok(self.get_row(key).await?.and_then(|row| {
            row.value.map(|value| StoredValue {
                value,
                version: row.version,
            })
        }))
    }

    /// The row of `key` as stored, tombstones included.
    ///
    /// # Errors
    /// As [`Store::get`].
    pub async fn get_row(&self, key: &[u8]) -> Result<Option<Row>, StoreError> {
        match self {
            Self::Sqlite(s) => s.get_row(key).await,
            Self::Postgres(s) => s.get_row(key).await,
        }
    }

    /// Sets `key` to `value` at `version` if the row is absent or older (a tombstone
    /// counts: a write older than a delete does not resurrect the key).
    ///
    /// # Errors
    /// [`StoreError::VersionOutOfRange`] above `i64::MAX`; otherwise the database's
    /// failure. Nothing was written unless the error is a timeout or a lost connection
    /// (outcome unknown; retrying is safe).
    pub async fn upsert(
        &self,
        key: impl Into<Bytes>,
        value: impl Into<Bytes>,
        version: u64,
    ) -> Result<Applied, StoreError> {
        self.write(Write::put(key, value, version)).await
    }

    /// Deletes `key` at `version` if the row is absent or older, leaving a tombstone
    /// that blocks every later write older than `version`. Deleting an absent key still
    /// writes the tombstone.
    ///
    /// # Errors
    /// As [`Store::upsert`].
    pub async fn delete(&self, key: impl Into<Bytes>, version: u64) -> Result<Applied, StoreError> {
        self.write(Write::delete(key, version)).await
    }

    /// Applies one [`Write`] (a put or a delete).
    ///
    /// # Errors
    /// As [`Store::upsert`].
    pub async fn write(&self, write: Write) -> Result<Applied, StoreError> {
        match self {
            Self::Sqlite(s) => s.write(write).await,
            Self::Postgres(s) => s.write(&write).await,
        }
    }

    /// Applies a batch of puts and deletes atomically, each version-guarded as in
    /// [`Store::upsert`]. Several writes to one key are coalesced first: the highest
    /// version wins (between equal versions the earliest, as applying them in order
    /// would leave). An empty batch does nothing.
    ///
    /// # Errors
    /// [`StoreError::VersionOutOfRange`] if any version is above `i64::MAX` (nothing is
    /// written); otherwise as [`Store::upsert`], for the whole batch.
    pub async fn upsert_batch(&self, writes: &[Write]) -> Result<BatchOutcome, StoreError> {
        let unique = write::coalesce(writes)?;
        if unique.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let coalesced = writes.len() - unique.len();
        match self {
            Self::Sqlite(s) => {
                s.write_batch(unique.into_iter().cloned().collect(), coalesced)
                    .await
            }
            Self::Postgres(s) => s.write_batch(&unique, coalesced).await,
        }
    }

    /// Checks that the database answers a trivial query within the timeout.
    ///
    /// # Errors
    /// Why it does not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(s) => s.ping().await,
            Self::Postgres(s) => s.ping().await,
        }
    }
}
