//! [`PostgresStore`]: PostgreSQL through a deadpool connection pool. Every call is
//! bounded by the per-operation timeout, enforced twice: by the server
//! (`statement_timeout`, `lock_timeout`: the statement is cancelled and rolled back)
//! and by the client (the call returns even if the server or network went silent).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use deadpool_postgres::{
    Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use tokio_postgres::NoTls;
use tokio_postgres::error::DbError;

use crate::config::TableName;
use crate::error::StoreError;
use crate::schema::{Column, check_shape};
use crate::write::{Applied, BatchOutcome, Row, Write, to_db_version};

/// The default table for PostgreSQL.
pub const POSTGRES_CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS {table} (
    key        bytea       PRIMARY KEY,
    value      bytea,
    version    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
)";

/// Extra time the client waits beyond the timeout, so the server's own
/// `statement_timeout` normally fires first and the statement is known to have been
/// rolled back.
const CLIENT_GRACE: Duration = Duration::from_millis(250);

/// A store in a PostgreSQL table. Cheap to clone (shares the pool).
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    inner: Arc<Inner>,
}

struct Inner {
    table: TableName,
    timeout: Duration,
    get_sql: String,
    upsert_sql: String,
    batch_sql: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("table", &self.inner.table.to_string())
            .field("timeout", &self.inner.timeout)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

fn db_cause(db: &DbError) -> String {
    let mut s = format!("{} (SQLSTATE {})", db.message(), db.code().code());
    if let Some(detail) = db.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

impl Inner {
    fn err(&self, op: &'static str, e: &tokio_postgres::Error) -> StoreError {
        let Some(db) = e.as_db_error() else {
            // Not from the server: connecting failed, the connection broke, or a
            // network error. All mean the server cannot be used right now.
            return StoreError::unavailable(e.to_string());
        };
        let code = db.code().code();
        let cause = db_cause(db);
        match code {
            // query_canceled (statement_timeout), lock_not_available (lock_timeout).
            "57014" | "55P03" => StoreError::Timeout {
                op,
                after: self.timeout,
            },
            // serialization_failure, deadlock_detected.
            "40001" | "40P01" => StoreError::Transient { cause },
            // undefined_table, undefined_column, datatype_mismatch, no unique
            // constraint for ON CONFLICT, invalid_schema_name.
            "42P01" | "42703" | "42804" | "42P10" | "3F000" => {
                StoreError::schema(self.table.to_string(), cause)
            }
            c if c.starts_with("23") => StoreError::Constraint { cause },
            // connection exceptions, insufficient resources, operator intervention
            // (shutdown, cannot connect now).
            c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57P") => {
                StoreError::Unavailable { cause }
            }
            _ => StoreError::Database {
                code: Some(code.to_owned()),
                cause,
            },
        }
    }

    fn pool_err(&self, op: &'static str, e: PoolError) -> StoreError {
        match e {
            // Every connection is busy: the store is slow, not down.
            PoolError::Timeout(TimeoutType::Wait) => StoreError::Timeout {
                op,
                after: self.timeout,
            },
            PoolError::Timeout(_) => StoreError::unavailable(format!(
                "no connection could be made within {:?}",
                self.timeout
            )),
            PoolError::Backend(e) => self.err(op, &e),
            PoolError::Closed => StoreError::unavailable("connection pool closed"),
            other => StoreError::unavailable(other.to_string()),
        }
    }
}

impl PostgresStore {
    /// Builds the pool, connects once (so a wrong URL or a down server fails now),
    /// creates the table if allowed and checks its shape.
    pub(crate) async fn open(
        pg: &tokio_postgres::Config,
        pool_size: usize,
        table: TableName,
        create_table: bool,
        timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut pg = pg.clone();
        pg.connect_timeout(timeout);
        if pg.get_application_name().is_none() {
            pg.application_name("ringcache");
        }
        let ms = timeout.as_millis();
        let options = format!(
            "{} -c statement_timeout={ms} -c lock_timeout={ms}",
            pg.get_options().unwrap_or_default()
        );
        pg.options(options.trim_start());
        let manager = Manager::from_config(
            pg,
            NoTls,
            ManagerConfig {
                // A broken connection is dropped at checkout (its connection task has
                // ended); no extra round trip per call.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .wait_timeout(Some(timeout))
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::config("pool_size", e.to_string()))?;
        let t = table.quoted();
        let inner = Arc::new(Inner {
            get_sql: format!("SELECT value, version FROM {t} WHERE key = $1"),
            upsert_sql: format!(
                "INSERT INTO {t} AS t (key, value, version, updated_at) \
                 VALUES ($1, $2, $3, now()) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 version = EXCLUDED.version, updated_at = EXCLUDED.updated_at \
                 WHERE t.version < EXCLUDED.version"
            ),
            batch_sql: format!(
                "INSERT INTO {t} AS t (key, value, version, updated_at) \
                 SELECT u.key, u.value, u.version, now() \
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::int8[]) AS u(key, value, version) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 version = EXCLUDED.version, updated_at = EXCLUDED.updated_at \
                 WHERE t.version < EXCLUDED.version"
            ),
            table,
            timeout,
        });
        let store = Self { pool, inner };
        store
            .bounded("open", store.prepare_table(create_table))
            .await
            .map_err(|e| match e {
                // Nothing answered in time while opening: the server is not usable.
                StoreError::Timeout { after, .. } => {
                    StoreError::unavailable(format!("no answer from the server within {after:?}"))
                }
                e => e,
            })?;
        Ok(store)
    }

    /// The table.
    #[must_use]
    pub fn table(&self) -> &TableName {
        &self.inner.table
    }

    async fn bounded<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::time::timeout(self.inner.timeout + CLIENT_GRACE, fut)
            .await
            .unwrap_or(Err(StoreError::Timeout {
                op,
                after: self.inner.timeout,
            }))
    }

    async fn client(&self, op: &'static str) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool
            .get()
            .await
            .map_err(|e| self.inner.pool_err(op, e))
    }

    async fn prepare_table(&self, create_table: bool) -> Result<(), StoreError> {
        let op = "open";
        let inner = &self.inner;
        let client = self.client(op).await?;
        let name = inner.table.quoted();
        let relkind = async |client: &deadpool_postgres::Object| {
            let row = client
                .query_one(
                    "SELECT (SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass($1::text))",
                    &[&name],
                )
                .await?;
            Ok::<_, tokio_postgres::Error>(row.get::<_, Option<String>>(0))
        };
        let mut kind = relkind(&client).await.map_err(|e| inner.err(op, &e))?;
        if kind.is_none() {
            if !create_table {
                return Err(StoreError::schema(
                    inner.table.to_string(),
                    "does not exist (create_table = false; create it or allow creation)",
                ));
            }
            let create = POSTGRES_CREATE_TABLE.replace("{table}", &inner.table.quoted());
            if let Err(e) = client.batch_execute(&create).await {
                // Two nodes creating the table at once: one loses with a unique
                // violation on the catalog; the table exists, which is all we need.
                tracing::debug!(error = %e, "create table failed; checking whether it exists");
            } else {
                tracing::info!(table = %inner.table, "created postgres store table");
            }
            kind = relkind(&client).await.map_err(|e| inner.err(op, &e))?;
            if kind.is_none() {
                return Err(StoreError::schema(
                    inner.table.to_string(),
                    "could not be created (check the role's CREATE privilege on the schema)",
                ));
            }
            return self.check_columns().await;
        }
        if !matches!(kind.as_deref(), Some("r" | "p")) {
            return Err(StoreError::schema(
                inner.table.to_string(),
                format!(
                    "is not a table (pg_class.relkind {:?}); views cannot take ON CONFLICT upserts",
                    kind.unwrap_or_default()
                ),
            ));
        }
        drop(client);
        self.check_columns().await
    }

    async fn check_columns(&self) -> Result<(), StoreError> {
        let op = "open";
        let inner = &self.inner;
        let client = self.client(op).await?;
        let name = inner.table.quoted();
        let rows = client
            .query(
                "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull, \
                        (a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '') \
                 FROM pg_attribute a \
                 WHERE a.attrelid = to_regclass($1::text) AND a.attnum > 0 AND NOT a.attisdropped",
                &[&name],
            )
            .await
            .map_err(|e| inner.err(op, &e))?;
        let columns: Vec<Column> = rows
            .iter()
            .map(|r| Column {
                name: r.get(0),
                ty: r.get(1),
                not_null: r.get(2),
                has_default: r.get(3),
            })
            .collect();
        let key_unique: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_index i \
                   JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
                   WHERE i.indrelid = to_regclass($1::text) AND i.indisunique \
                     AND i.indnkeyatts = 1 AND i.indpred IS NULL AND i.indexprs IS NULL \
                     AND a.attname = 'key')",
                &[&name],
            )
            .await
            .map_err(|e| inner.err(op, &e))?
            .get(0);
        check_shape(&inner.table, &columns, key_unique, pg_type_ok)
    }

    pub(crate) async fn get_row(&self, key: &[u8]) -> Result<Option<Row>, StoreError> {
        let op = "get";
        let inner = &self.inner;
        let row = self
            .bounded(op, async {
                let client = self.client(op).await?;
                let st = client
                    .prepare_cached(&inner.get_sql)
                    .await
                    .map_err(|e| inner.err(op, &e))?;
                client
                    .query_opt(&st, &[&key])
                    .await
                    .map_err(|e| inner.err(op, &e))
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let unexpected = |e: tokio_postgres::Error| {
            StoreError::schema(inner.table.to_string(), format!("unexpected data: {e}"))
        };
        let value: Option<Vec<u8>> = row.try_get(0).map_err(unexpected)?;
        let version: i64 = row.try_get(1).map_err(unexpected)?;
        let version = u64::try_from(version).map_err(|_| {
            StoreError::schema(
                inner.table.to_string(),
                format!("negative version {version} in column `version`"),
            )
        })?;
        Ok(Some(Row {
            value: value.map(Bytes::from),
            version,
        }))
    }

    pub(crate) async fn write(&self, w: &Write) -> Result<Applied, StoreError> {
        let op = if w.value.is_some() {
            "upsert"
        } else {
            "delete"
        };
        let version = to_db_version(w.version)?;
        let inner = &self.inner;
        let n = self
            .bounded(op, async {
                let client = self.client(op).await?;
                let st = client
                    .prepare_cached(&inner.upsert_sql)
                    .await
                    .map_err(|e| inner.err(op, &e))?;
                client
                    .execute(&st, &[&&w.key[..], &w.value.as_deref(), &version])
                    .await
                    .map_err(|e| inner.err(op, &e))
            })
            .await?;
        Ok(if n > 0 {
            Applied::Written
        } else {
            Applied::Stale
        })
    }

    /// `writes` are coalesced (one per key) and sorted by key.
    pub(crate) async fn write_batch(
        &self,
        writes: &[&Write],
        coalesced: usize,
    ) -> Result<BatchOutcome, StoreError> {
        let op = "upsert_batch";
        let inner = &self.inner;
        let keys: Vec<&[u8]> = writes.iter().map(|w| &w.key[..]).collect();
        let values: Vec<Option<&[u8]>> = writes.iter().map(|w| w.value.as_deref()).collect();
        let versions: Vec<i64> = writes
            .iter()
            .map(|w| to_db_version(w.version))
            .collect::<Result<_, _>>()?;
        let n = self
            .bounded(op, async {
                let client = self.client(op).await?;
                let st = client
                    .prepare_cached(&inner.batch_sql)
                    .await
                    .map_err(|e| inner.err(op, &e))?;
                client
                    .execute(&st, &[&keys, &values, &versions])
                    .await
                    .map_err(|e| inner.err(op, &e))
            })
            .await?;
        let written = usize::try_from(n).expect("rows written <= batch length");
        Ok(BatchOutcome {
            written,
            stale: writes.len() - written,
            coalesced,
        })
    }

    pub(crate) async fn ping(&self) -> Result<(), StoreError> {
        let op = "ping";
        self.bounded(op, async {
            let client = self.client(op).await?;
            client
                .simple_query("SELECT 1")
                .await
                .map(drop)
                .map_err(|e| self.inner.err(op, &e))
        })
        .await
    }
}

fn pg_type_ok(column: &str, ty: &str) -> Result<(), String> {
    let ok = match column {
        "key" | "value" => ty == "bytea",
        "version" => ty == "bigint",
        "updated_at" => ty.starts_with("timestamp"),
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(match column {
            "version" => "expected bigint (int8)".into(),
            "updated_at" => "expected timestamptz".into(),
            _ => "expected bytea".into(),
        })
    }
}
