//! [`SqliteStore`]: the embedded default. One connection per store behind a mutex;
//! every call runs on tokio's blocking pool, never on the async runtime's workers.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use crate::config::TableName;
use crate::error::StoreError;
use crate::schema::{Column, check_shape};
use crate::write::{Applied, BatchOutcome, Row, Write, to_db_version};

/// The default table for SQLite. `updated_at` is Unix time in milliseconds.
pub const SQLITE_CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS {table} (
    key        BLOB    PRIMARY KEY NOT NULL,
    value      BLOB,
    version    INTEGER NOT NULL,
    updated_at INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
)";

/// A store in an SQLite file. Cheap to clone (shares the connection).
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    path: PathBuf,
    table: TableName,
    timeout: Duration,
    get_sql: String,
    upsert_sql: String,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.inner.path)
            .field("table", &self.inner.table.to_string())
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Maps a rusqlite error to a [`StoreError`] for `op`.
struct Ctx<'a> {
    op: &'static str,
    path: &'a Path,
    table: &'a TableName,
    timeout: Duration,
}

impl Ctx<'_> {
    fn err(&self, e: rusqlite::Error) -> StoreError {
        let cause = e.to_string();
        match &e {
            rusqlite::Error::SqliteFailure(f, msg) => match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => StoreError::Timeout {
                    op: self.op,
                    after: self.timeout,
                },
                ErrorCode::ConstraintViolation => StoreError::Constraint { cause },
                ErrorCode::DiskFull | ErrorCode::SystemIoFailure | ErrorCode::OutOfMemory => {
                    StoreError::Unavailable { cause }
                }
                ErrorCode::CannotOpen
                | ErrorCode::PermissionDenied
                | ErrorCode::ReadOnly
                | ErrorCode::NotADatabase => StoreError::Io {
                    path: self.path.to_owned(),
                    cause,
                },
                _ if msg.as_deref().is_some_and(|m| {
                    m.starts_with("no such table")
                        || m.starts_with("no such column")
                        || m.contains("has no column")
                }) =>
                {
                    StoreError::schema(self.table.to_string(), cause)
                }
                _ => StoreError::Database {
                    code: Some(f.extended_code.to_string()),
                    cause,
                },
            },
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..)
            | rusqlite::Error::IntegralValueOutOfRange(..) => {
                StoreError::schema(self.table.to_string(), format!("unexpected data: {cause}"))
            }
            _ => StoreError::Database { code: None, cause },
        }
    }
}

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Opens (creating if needed) the file, switches it to WAL, creates the table if
    /// allowed and checks its shape.
    pub(crate) async fn open(
        path: PathBuf,
        table: TableName,
        create_table: bool,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let task =
            tokio::task::spawn_blocking(move || open_blocking(path, table, create_table, timeout));
        match task.await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(StoreError::unavailable("runtime shutting down")),
        }
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &TableName {
        &self.inner.table
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on the blocking pool with the connection, bounded by the timeout. A
    /// call that waited past its deadline for the connection gives up before touching
    /// the database, so a timed-out call usually did nothing (but see
    /// [`StoreError::Timeout`]).
    async fn run<T, F>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Inner) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        let timeout = inner.timeout;
        let deadline = Instant::now() + timeout;
        let task = tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            if Instant::now() >= deadline {
                return Err(StoreError::Timeout { op, after: timeout });
            }
            let ctx = Ctx {
                op,
                path: &inner.path,
                table: &inner.table,
                timeout,
            };
            f(&mut conn, &inner).map_err(|e| ctx.err(e))
        });
        match tokio::time::timeout(timeout, task).await {
            Err(_elapsed) => Err(StoreError::Timeout { op, after: timeout }),
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Ok(Err(_)) => Err(StoreError::unavailable("runtime shutting down")),
        }
    }

    pub(crate) async fn get_row(&self, key: &[u8]) -> Result<Option<Row>, StoreError> {
        let key = key.to_vec();
        let row = self
            .run("get", move |conn, inner| {
                let mut st = conn.prepare_cached(&inner.get_sql)?;
                st.query_row([&key], |r| {
                    let value = match r.get_ref(0)? {
                        ValueRef::Null => None,
                        ValueRef::Blob(b) | ValueRef::Text(b) => Some(Bytes::copy_from_slice(b)),
                        other => {
                            return Err(rusqlite::Error::InvalidColumnType(
                                0,
                                "value".into(),
                                other.data_type(),
                            ));
                        }
                    };
                    Ok((value, r.get::<_, i64>(1)?))
                })
                .optional()
            })
            .await?;
        row.map(|(value, version)| {
            let version = u64::try_from(version).map_err(|_| {
                StoreError::schema(
                    self.inner.table.to_string(),
                    format!("negative version {version} in column `version`"),
                )
            })?;
            Ok(Row { value, version })
        })
        .transpose()
    }

    pub(crate) async fn write(&self, w: Write) -> Result<Applied, StoreError> {
        let version = to_db_version(w.version)?;
        let op = if w.value.is_some() {
            "upsert"
        } else {
            "delete"
        };
        self.run(op, move |conn, inner| {
            let mut st = conn.prepare_cached(&inner.upsert_sql)?;
            let n = st.execute(rusqlite::params![
                &w.key[..],
                w.value.as_deref(),
                version,
                now_ms()
            ])?;
            Ok(if n > 0 {
                Applied::Written
            } else {
                Applied::Stale
            })
        })
        .await
    }

    pub(crate) async fn write_batch(
        &self,
        writes: Vec<Write>,
        coalesced: usize,
    ) -> Result<BatchOutcome, StoreError> {
        self.run("upsert_batch", move |conn, inner| {
            // IMMEDIATE takes the write lock up front, so the busy timeout applies
            // (a deferred transaction upgrading its lock can fail at once instead).
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut written = 0;
            {
                let mut st = tx.prepare_cached(&inner.upsert_sql)?;
                let now = now_ms();
                for w in &writes {
                    let version = i64::try_from(w.version).expect("coalesce checked versions");
                    written += st.execute(rusqlite::params![
                        &w.key[..],
                        w.value.as_deref(),
                        version,
                        now
                    ])?;
                }
            }
            tx.commit()?;
            Ok(BatchOutcome {
                written,
                stale: writes.len() - written,
                coalesced,
            })
        })
        .await
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", |conn, _| {
            conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(drop)
        })
        .await
    }
}

fn open_blocking(
    path: PathBuf,
    table: TableName,
    create_table: bool,
    timeout: Duration,
) -> Result<SqliteStore, StoreError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| StoreError::Io {
            path: path.clone(),
            cause: format!("cannot create directory {}: {e}", parent.display()),
        })?;
    }
    let ctx = Ctx {
        op: "open",
        path: &path,
        table: &table,
        timeout,
    };
    let conn = Connection::open(&path).map_err(|e| ctx.err(e))?;
    conn.busy_timeout(timeout).map_err(|e| ctx.err(e))?;
    // WAL: readers do not block the writer; FULL: a commit survives power loss (a
    // write-behind queue drops entries once the store acknowledged them).
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
        .map_err(|e| ctx.err(e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "sqlite store is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| ctx.err(e))?;

    let mut columns = table_columns(&conn, &table).map_err(|e| ctx.err(e))?;
    if columns.is_empty() {
        if !create_table {
            return Err(StoreError::schema(
                table.to_string(),
                format!(
                    "does not exist in {} (create_table = false; create it or allow creation)",
                    path.display()
                ),
            ));
        }
        conn.execute_batch(&SQLITE_CREATE_TABLE.replace("{table}", &table.quoted()))
            .map_err(|e| ctx.err(e))?;
        tracing::info!(path = %path.display(), %table, "created sqlite store table");
        columns = table_columns(&conn, &table).map_err(|e| ctx.err(e))?;
    }
    let key_unique = key_is_unique(&conn, &table, &columns).map_err(|e| ctx.err(e))?;
    let columns: Vec<Column> = columns.into_iter().map(|(c, _pk)| c).collect();
    check_shape(&table, &columns, key_unique, sqlite_type_ok)?;

    let t = table.quoted();
    Ok(SqliteStore {
        inner: Arc::new(Inner {
            conn: Mutex::new(conn),
            get_sql: format!("SELECT value, version FROM {t} WHERE key = ?1"),
            upsert_sql: format!(
                "INSERT INTO {t} AS t (key, value, version, updated_at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 version = excluded.version, updated_at = excluded.updated_at \
                 WHERE t.version < excluded.version"
            ),
            path,
            table,
            timeout,
        }),
    })
}

/// The table's columns with their primary-key position (0: not in the key); empty when
/// the table does not exist.
fn table_columns(
    conn: &Connection,
    table: &TableName,
) -> Result<Vec<(Column, i64)>, rusqlite::Error> {
    let mut st = conn.prepare(
        "SELECT name, type, \"notnull\", dflt_value IS NOT NULL, pk \
         FROM pragma_table_info(?1, ?2)",
    )?;
    let rows = st.query_map(
        rusqlite::params![table.name(), table.schema().unwrap_or("main")],
        |r| {
            Ok((
                Column {
                    name: r.get(0)?,
                    ty: r.get::<_, String>(1)?.to_ascii_lowercase(),
                    not_null: r.get(2)?,
                    has_default: r.get(3)?,
                },
                r.get(4)?,
            ))
        },
    )?;
    rows.collect()
}

/// Whether `key` alone is the primary key or has a unique, non-partial index: what
/// `ON CONFLICT (key)` needs.
fn key_is_unique(
    conn: &Connection,
    table: &TableName,
    columns: &[(Column, i64)],
) -> Result<bool, rusqlite::Error> {
    let pk: Vec<&str> = columns
        .iter()
        .filter(|(_, pk)| *pk > 0)
        .map(|(c, _)| c.name.as_str())
        .collect();
    if pk == ["key"] {
        return Ok(true);
    }
    let schema = table.schema().unwrap_or("main");
    let mut st = conn.prepare(
        "SELECT name FROM pragma_index_list(?1, ?2) WHERE \"unique\" = 1 AND partial = 0",
    )?;
    let indexes: Vec<String> = st
        .query_map(rusqlite::params![table.name(), schema], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    let mut cols = conn.prepare("SELECT name FROM pragma_index_info(?1, ?2)")?;
    for index in indexes {
        let names: Vec<Option<String>> = cols
            .query_map(rusqlite::params![index, schema], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if names == [Some("key".to_owned())] {
            return Ok(true);
        }
    }
    Ok(false)
}

/// SQLite types are affinities; only `version` matters: TEXT or REAL affinity would
/// compare versions as strings or lose precision above 2^53.
fn sqlite_type_ok(column: &str, ty: &str) -> Result<(), String> {
    if column != "version" {
        return Ok(());
    }
    let textual = ["char", "clob", "text"].iter().any(|t| ty.contains(t));
    let real = ["real", "floa", "doub"].iter().any(|t| ty.contains(t));
    if !ty.contains("int") && (textual || real) {
        return Err("versions need INTEGER affinity (declare it INTEGER)".into());
    }
    Ok(())
}
