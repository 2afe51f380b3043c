//! One behaviour suite, run against SQLite (a temp file) and PostgreSQL (the server in
//! `RINGCACHE_TEST_PG_URL`; start one with `eval "$(scripts/pg-test-server.sh start)"`).
//!
//! Without `RINGCACHE_TEST_PG_URL` the PostgreSQL tests print a skip note and pass,
//! except under CI (`CI` set), where they fail: CI must never skip them silently.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use ringcache_store::{
    Applied, BatchOutcome, Row, Store, StoreConfig, StoreError, StoreKind, StoredValue, Write,
};

const PG_ENV: &str = "RINGCACHE_TEST_PG_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Sqlite,
    Postgres,
}

/// One test's database: a fresh, uniquely named table.
struct Fixture {
    target: Target,
    dir: tempfile::TempDir,
    pg_url: Option<String>,
    table: String,
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn unique_name(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}_{}_{nanos}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl Fixture {
    /// `None`: PostgreSQL is not configured and this is not CI (skip).
    fn new(target: Target) -> Result<Option<Self>> {
        let pg_url = match target {
            Target::Sqlite => None,
            Target::Postgres => match std::env::var(PG_ENV) {
                Ok(url) if !url.is_empty() => Some(url),
                _ if ci() => bail!(
                    "{PG_ENV} is not set but CI is: the PostgreSQL suite must run in CI \
                     (.ci/run starts a server with scripts/pg-test-server.sh)"
                ),
                _ => {
                    eprintln!(
                        "SKIPPED: PostgreSQL test: {PG_ENV} is not set. Run \
                         `eval \"$(scripts/pg-test-server.sh start)\"` first to include it."
                    );
                    return Ok(None);
                }
            },
        };
        Ok(Some(Self {
            target,
            dir: tempfile::tempdir()?,
            pg_url,
            table: unique_name("t"),
        }))
    }

    fn sqlite_path(&self) -> std::path::PathBuf {
        self.dir.path().join("store.sqlite")
    }

    /// The URL with an application name unique to this test, so a test that kills
    /// its own connections cannot touch another test's.
    fn pg_url(&self) -> String {
        let url = self.pg_url.as_deref().expect("postgres fixture has a URL");
        let sep = if url.contains('?') { '&' } else { '?' };
        format!("{url}{sep}application_name={}", self.table)
    }

    fn config(&self) -> StoreConfig {
        let mut c = match self.target {
            Target::Sqlite => StoreConfig::sqlite(self.sqlite_path()),
            Target::Postgres => StoreConfig::postgres(self.pg_url()),
        };
        c.table = self.table.clone();
        c.pool_size = 8;
        c
    }

    async fn open_with(&self, c: StoreConfig) -> Result<Store, StoreError> {
        let c = c.validate(self.dir.path())?;
        Store::open(&c).await
    }

    async fn open(&self) -> Result<Store> {
        let store = self.open_with(self.config()).await.context("open store")?;
        ensure!(store.kind() == self.kind());
        Ok(store)
    }

    fn kind(&self) -> StoreKind {
        match self.target {
            Target::Sqlite => StoreKind::Sqlite,
            Target::Postgres => StoreKind::Postgres,
        }
    }

    /// Runs SQL on the same database, outside the store.
    async fn exec(&self, sql: &str) -> Result<()> {
        match self.target {
            Target::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path())?;
                conn.execute_batch(sql).with_context(|| sql.to_owned())?;
            }
            Target::Postgres => {
                let client = self.pg_client().await?;
                client
                    .batch_execute(sql)
                    .await
                    .with_context(|| sql.to_owned())?;
            }
        }
        Ok(())
    }

    /// One integer from a query run outside the store.
    async fn query_i64(&self, sql: &str) -> Result<i64> {
        Ok(match self.target {
            Target::Sqlite => {
                let conn = rusqlite::Connection::open(self.sqlite_path())?;
                conn.query_row(sql, [], |r| r.get(0))?
            }
            Target::Postgres => self.pg_client().await?.query_one(sql, &[]).await?.get(0),
        })
    }

    async fn pg_client(&self) -> Result<tokio_postgres::Client> {
        let url = self.pg_url.as_deref().expect("postgres fixture has a URL");
        let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        tokio::spawn(conn);
        Ok(client)
    }

    /// Column types for hand-made tables.
    fn bytes_ty(&self) -> &'static str {
        match self.target {
            Target::Sqlite => "BLOB",
            Target::Postgres => "bytea",
        }
    }
    fn int_ty(&self) -> &'static str {
        match self.target {
            Target::Sqlite => "INTEGER",
            Target::Postgres => "bigint",
        }
    }
    fn ts_ty(&self) -> &'static str {
        match self.target {
            Target::Sqlite => "INTEGER",
            Target::Postgres => "timestamptz",
        }
    }
}

fn val(s: &str) -> StoredValue {
    StoredValue {
        value: Bytes::copy_from_slice(s.as_bytes()),
        version: 0,
    }
}

fn at(s: &str, version: u64) -> Option<StoredValue> {
    Some(StoredValue { version, ..val(s) })
}

fn tombstone(version: u64) -> Option<Row> {
    Some(Row {
        value: None,
        version,
    })
}

fn assert_schema_error(r: Result<Store, StoreError>, needles: &[&str]) -> Result<()> {
    match r {
        Err(e @ StoreError::Schema { .. }) => {
            let msg = e.to_string();
            for n in needles {
                ensure!(msg.contains(n), "{msg:?} does not mention {n:?}");
            }
            ensure!(!e.is_retryable());
            Ok(())
        }
        Err(e) => bail!("expected a schema error, got {e:?}"),
        Ok(_) => bail!("expected a schema error, the store opened"),
    }
}

mod behaviours {
    use super::*;

    pub(super) async fn round_trip(fx: &Fixture) -> Result<()> {
        let store = fx.open().await?;
        store.ping().await?;
        assert_eq!(store.get(b"absent").await?, None);
        assert_eq!(store.get_row(b"absent").await?, None);
        assert_eq!(store.upsert("k", "hello", 1).await?, Applied::Written);
        assert_eq!(store.get(b"k").await?, at("hello", 1));

        // Empty key and empty value are values, not tombstones.
        assert_eq!(store.upsert("", "", 1).await?, Applied::Written);
        assert_eq!(store.get(b"").await?, at("", 1));

        // Arbitrary bytes and a large value come back exactly.
        let all: Vec<u8> = (0..=255).collect();
        let big: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
        assert!(
            store
                .upsert(all.clone(), all.clone(), 9)
                .await?
                .is_written()
        );
        assert!(store.upsert("big", big.clone(), 1).await?.is_written());
        assert_eq!(store.get(&all).await?.map(|v| v.value), Some(all.into()));
        assert_eq!(store.get(b"big").await?.map(|v| v.value), Some(big.into()));

        // The full version range the database can hold, and a typed refusal beyond.
        let max = i64::MAX as u64;
        assert!(store.upsert("max", "m", max).await?.is_written());
        assert_eq!(store.get(b"max").await?, at("m", max));
        for r in [
            store.upsert("k", "x", max + 1).await,
            store.delete("k", u64::MAX).await,
        ] {
            assert!(
                matches!(r, Err(StoreError::VersionOutOfRange { .. })),
                "{r:?}"
            );
        }
        let r = store
            .upsert_batch(&[Write::put("a", "a", 5), Write::put("b", "b", u64::MAX)])
            .await;
        assert!(
            matches!(r, Err(StoreError::VersionOutOfRange { .. })),
            "{r:?}"
        );
        assert_eq!(
            store.get(b"a").await?,
            None,
            "a refused batch writes nothing"
        );

        assert_eq!(store.upsert_batch(&[]).await?, BatchOutcome::default());
        assert_eq!(store.get(b"k").await?, at("hello", 1));
        Ok(())
    }

    pub(super) async fn version_guard(fx: &Fixture) -> Result<()> {
        let store = fx.open().await?;
        assert_eq!(store.upsert("k", "five", 5).await?, Applied::Written);
        assert_eq!(store.upsert("k", "three", 3).await?, Applied::Stale);
        assert_eq!(
            store.get(b"k").await?,
            at("five", 5),
            "older never overwrites"
        );
        assert_eq!(store.upsert("k", "other five", 5).await?, Applied::Stale);
        assert_eq!(
            store.get(b"k").await?,
            at("five", 5),
            "equal version is a no-op"
        );
        assert_eq!(store.upsert("k", "six", 6).await?, Applied::Written);
        assert_eq!(store.get(b"k").await?, at("six", 6));
        // Version 0 is a version like any other on an absent row.
        assert_eq!(store.upsert("z", "zero", 0).await?, Applied::Written);
        assert_eq!(store.upsert("z", "zero again", 0).await?, Applied::Stale);
        Ok(())
    }

    pub(super) async fn batch_replay_changes_nothing(fx: &Fixture) -> Result<()> {
        let store = fx.open().await?;
        let batch: Vec<Write> = (0..500u64)
            .map(|i| {
                let version = 10 + (i * 7919) % 100;
                if i % 10 == 3 {
                    Write::delete(format!("k{i}"), version)
                } else {
                    Write::put(format!("k{i}"), format!("v{i}@{version}"), version)
                }
            })
            .collect();
        let first = store.upsert_batch(&batch).await?;
        assert_eq!(
            first,
            BatchOutcome {
                written: 500,
                stale: 0,
                coalesced: 0
            }
        );
        let snapshot = |store: Store| async move {
            let mut rows = Vec::new();
            for i in 0..500u64 {
                rows.push(store.get_row(format!("k{i}").as_bytes()).await?);
            }
            Ok::<_, StoreError>(rows)
        };
        let before = snapshot(store.clone()).await?;
        for (i, (w, row)) in batch.iter().zip(&before).enumerate() {
            let row = row.as_ref().with_context(|| format!("k{i} missing"))?;
            assert_eq!((&row.value, row.version), (&w.value, w.version), "k{i}");
        }

        let replay = store.upsert_batch(&batch).await?;
        assert_eq!((replay.written, replay.stale), (0, 500));
        let older: Vec<Write> = batch
            .iter()
            .map(|w| Write::put(w.key.clone(), "older", w.version - 1))
            .collect();
        assert_eq!(store.upsert_batch(&older).await?.written, 0);
        assert_eq!(
            snapshot(store.clone()).await?,
            before,
            "replays changed rows"
        );

        let newer: Vec<Write> = batch
            .iter()
            .step_by(2)
            .map(|w| Write::put(w.key.clone(), "newer", w.version + 1))
            .collect();
        assert_eq!(store.upsert_batch(&newer).await?.written, 250);
        assert_eq!(store.get(b"k0").await?, at("newer", batch[0].version + 1));
        Ok(())
    }

    pub(super) async fn batch_with_duplicate_keys(fx: &Fixture) -> Result<()> {
        let store = fx.open().await?;
        let batch = [
            Write::put("k", "a", 1),
            Write::put("k", "c", 3),
            Write::put("j", "x", 1),
            Write::put("k", "b", 2),
            Write::put("k", "d", 3), // equal to the earlier 3: a no-op, "c" stays
            Write::delete("j", 2),
        ];
        let out = store.upsert_batch(&batch).await?;
        assert_eq!(
            out,
            BatchOutcome {
                written: 2,
                stale: 0,
                coalesced: 4
            }
        );
        assert_eq!(store.get(b"k").await?, at("c", 3));
        assert_eq!(store.get_row(b"j").await?, tombstone(2));

        // Against existing rows: the batch's best write still has to beat the row.
        let out = store
            .upsert_batch(&[
                Write::put("k", "z", 2),
                Write::put("k", "w", 4),
                Write::put("k", "y", 3),
                Write::put("j", "old", 1),
                Write::put("j", "older", 0),
            ])
            .await?;
        assert_eq!((out.written, out.stale, out.coalesced), (1, 1, 3));
        assert_eq!(store.get(b"k").await?, at("w", 4));
        assert_eq!(store.get(b"j").await?, None);
        Ok(())
    }

    pub(super) async fn delete_tombstone_blocks_older_replays(fx: &Fixture) -> Result<()> {
        let store = fx.open().await?;
        assert!(store.upsert("k", "two", 2).await?.is_written());
        assert_eq!(store.delete("k", 3).await?, Applied::Written);
        assert_eq!(store.get(b"k").await?, None);
        assert_eq!(store.get_row(b"k").await?, tombstone(3));
        assert_eq!(store.upsert("k", "two", 2).await?, Applied::Stale, "replay");
        assert_eq!(store.upsert("k", "one", 1).await?, Applied::Stale);
        assert_eq!(store.upsert("k", "three", 3).await?, Applied::Stale);
        assert_eq!(store.delete("k", 3).await?, Applied::Stale);
        assert_eq!(store.get(b"k").await?, None, "not resurrected");
        assert_eq!(store.upsert("k", "four", 4).await?, Applied::Written);
        assert_eq!(
            store.get(b"k").await?,
            at("four", 4),
            "a newer write revives it"
        );
        assert_eq!(store.delete("k", 1).await?, Applied::Stale, "older delete");
        assert_eq!(store.get(b"k").await?, at("four", 4));

        // Deleting an absent key still blocks older writes that arrive later.
        assert_eq!(store.delete("never", 5).await?, Applied::Written);
        assert_eq!(store.upsert("never", "late", 4).await?, Applied::Stale);
        assert_eq!(store.get(b"never").await?, None);

        // In the database the tombstone is a row with a NULL value.
        let t = &fx.table;
        let nulls = fx
            .query_i64(&format!("SELECT count(*) FROM \"{t}\" WHERE value IS NULL"))
            .await?;
        assert_eq!(nulls, 1);
        Ok(())
    }

    pub(super) async fn table_auto_created(fx: &Fixture) -> Result<()> {
        let t = &fx.table;
        let store = fx.open().await?;
        assert!(store.upsert("k", "v", 1).await?.is_written());
        drop(store);
        // The created table has the documented shape: write it by hand.
        fx.exec(&format!(
            "INSERT INTO \"{t}\" (key, value, version) VALUES ({k}, NULL, 7)",
            k = match fx.target {
                Target::Sqlite => "x'6a'",
                Target::Postgres => "'\\x6a'::bytea",
            }
        ))
        .await?;
        // Reopening finds the table (no second creation) and its rows.
        let store = fx.open().await?;
        assert_eq!(store.get(b"k").await?, at("v", 1));
        assert_eq!(store.get_row(b"j").await?, tombstone(7));
        let rows = fx
            .query_i64(&format!("SELECT count(*) FROM \"{t}\""))
            .await?;
        assert_eq!(rows, 2);
        Ok(())
    }

    pub(super) async fn missing_table_without_create_is_refused(fx: &Fixture) -> Result<()> {
        let c = StoreConfig {
            create_table: false,
            ..fx.config()
        };
        let r = fx.open_with(c).await;
        assert_schema_error(r, &[&fx.table, "does not exist", "create_table"])
    }

    pub(super) async fn wrong_user_tables_are_refused(fx: &Fixture) -> Result<()> {
        let (b, i, ts) = (fx.bytes_ty(), fx.int_ty(), fx.ts_ty());
        let cases = [
            (
                format!("key {b} PRIMARY KEY, value {b}, updated_at {ts}"),
                vec!["missing column `version`"],
            ),
            (
                format!("key {b} PRIMARY KEY, version {i} NOT NULL, updated_at {ts}"),
                vec!["missing column `value`"],
            ),
            (
                format!("key {b}, value {b}, version {i} NOT NULL, updated_at {ts}"),
                vec!["`key`", "unique"],
            ),
            (
                format!(
                    "key {b} PRIMARY KEY, value {b} NOT NULL, version {i} NOT NULL, updated_at {ts}"
                ),
                vec!["`value`", "NOT NULL"],
            ),
            (
                format!("key {b} PRIMARY KEY, value {b}, version {i}, updated_at {ts}"),
                vec!["`version`", "NOT NULL"],
            ),
            (
                format!(
                    "key {b} PRIMARY KEY, value {b}, version {i} NOT NULL, updated_at {ts}, owner text NOT NULL"
                ),
                vec!["`owner`"],
            ),
            (
                format!(
                    "key {b} PRIMARY KEY, value {b}, version {} NOT NULL, updated_at {ts}",
                    match fx.target {
                        Target::Sqlite => "TEXT",
                        Target::Postgres => "integer",
                    }
                ),
                vec!["`version`"],
            ),
        ];
        for (n, (columns, needles)) in cases.iter().enumerate() {
            let table = format!("{}_{n}", fx.table);
            fx.exec(&format!("CREATE TABLE \"{table}\" ({columns})"))
                .await?;
            // create_table = true must not paper over a wrong existing table.
            for create_table in [false, true] {
                let c = StoreConfig {
                    table: table.clone(),
                    create_table,
                    ..fx.config()
                };
                assert_schema_error(fx.open_with(c).await, needles)
                    .with_context(|| format!("table ({columns})"))?;
            }
        }
        Ok(())
    }

    pub(super) async fn own_table_with_extra_columns_works(fx: &Fixture) -> Result<()> {
        let (b, i, ts) = (fx.bytes_ty(), fx.int_ty(), fx.ts_ty());
        let (schema, id, extra) = match fx.target {
            Target::Sqlite => (
                "main",
                "id INTEGER PRIMARY KEY",
                "created INTEGER DEFAULT 0",
            ),
            Target::Postgres => (
                "public",
                "id bigserial PRIMARY KEY",
                "created timestamptz NOT NULL DEFAULT now()",
            ),
        };
        let t = &fx.table;
        // `key` is unique through an index, not the primary key.
        fx.exec(&format!(
            "CREATE TABLE \"{t}\" ({id}, key {b} NOT NULL, value {b}, version {i} NOT NULL, \
             updated_at {ts} NOT NULL, note text, {extra}); \
             CREATE UNIQUE INDEX \"{t}_key\" ON \"{t}\" (key);"
        ))
        .await?;
        let c = StoreConfig {
            table: format!("{schema}.{t}"),
            create_table: false,
            ..fx.config()
        };
        let store = fx.open_with(c).await?;
        assert!(store.upsert("k", "v1", 1).await?.is_written());
        assert!(store.upsert("k", "v2", 2).await?.is_written());
        assert!(store.delete("gone", 3).await?.is_written());
        let out = store
            .upsert_batch(&[Write::put("a", "1", 1), Write::put("k", "v0", 0)])
            .await?;
        assert_eq!((out.written, out.stale), (1, 1));
        assert_eq!(store.get(b"k").await?, at("v2", 2));
        assert_eq!(
            fx.query_i64(&format!("SELECT count(*) FROM \"{t}\""))
                .await?,
            3
        );
        Ok(())
    }

    pub(super) async fn unreachable_store_fails_fast(fx: &Fixture) -> Result<()> {
        let timeout = Duration::from_millis(1500);
        match fx.target {
            Target::Postgres => {
                // A loopback port nothing listens on.
                let port = {
                    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
                    l.local_addr()?.port()
                };
                let c = StoreConfig {
                    timeout,
                    ..StoreConfig::postgres(format!("postgres://ringcache@127.0.0.1:{port}/x"))
                };
                let t0 = Instant::now();
                let r = fx.open_with(c).await;
                let took = t0.elapsed();
                match r {
                    Err(e @ StoreError::Unavailable { .. }) => {
                        assert!(e.is_retryable());
                        let msg = e.to_string();
                        assert!(msg.contains("refused") || msg.contains("connect"), "{msg}");
                    }
                    other => bail!("expected unavailable, got {other:?}"),
                }
                ensure!(took < timeout + Duration::from_secs(1), "took {took:?}");

                // A server that accepts the connection and never answers.
                let silent = std::net::TcpListener::bind("127.0.0.1:0")?;
                let c = StoreConfig {
                    timeout,
                    ..StoreConfig::postgres(format!(
                        "postgres://ringcache@127.0.0.1:{}/x",
                        silent.local_addr()?.port()
                    ))
                };
                let t0 = Instant::now();
                let r = fx.open_with(c).await;
                let took = t0.elapsed();
                assert!(
                    matches!(&r, Err(e @ StoreError::Unavailable { .. }) if e.is_retryable()),
                    "{r:?}"
                );
                ensure!(took < timeout + Duration::from_secs(1), "took {took:?}");
                drop(silent);

                // A database that does not exist: an answer, not an outage.
                let mut c = fx.config();
                let url = fx.pg_url.as_deref().expect("pg url");
                c.url = Some(format!(
                    "{}/no_such_db_{}",
                    &url[..url.rfind('/').expect("url has a database")],
                    fx.table
                ));
                match fx.open_with(c).await {
                    Err(e @ StoreError::Database { .. }) => {
                        assert!(!e.is_retryable());
                        assert!(e.to_string().contains("does not exist"), "{e}");
                    }
                    other => bail!("expected a database error, got {other:?}"),
                }
            }
            Target::Sqlite => {
                // The parent "directory" is a regular file.
                let file = fx.dir.path().join("plain-file");
                std::fs::write(&file, b"not a directory")?;
                let c = StoreConfig {
                    timeout,
                    ..StoreConfig::sqlite(file.join("store.sqlite"))
                };
                let t0 = Instant::now();
                match fx.open_with(c).await {
                    Err(e @ StoreError::Io { .. }) => {
                        assert!(e.to_string().contains("plain-file"), "{e}");
                    }
                    other => bail!("expected an io error, got {other:?}"),
                }
                // A file that is not a database.
                let c = StoreConfig {
                    timeout,
                    ..StoreConfig::sqlite(&file)
                };
                match fx.open_with(c).await {
                    Err(e @ StoreError::Io { .. }) => {
                        assert!(e.to_string().contains("not a database"), "{e}");
                    }
                    other => bail!("expected an io error, got {other:?}"),
                }
                ensure!(t0.elapsed() < timeout, "took {:?}", t0.elapsed());
            }
        }
        Ok(())
    }

    pub(super) async fn blocked_store_times_out_then_recovers(fx: &Fixture) -> Result<()> {
        let timeout = Duration::from_millis(400);
        let c = StoreConfig {
            timeout,
            ..fx.config()
        };
        let store = fx.open_with(c).await?;
        assert!(store.upsert("k", "v1", 1).await?.is_written());
        let t = &fx.table;

        // Something else holds the lock the write needs.
        enum Holder {
            Sqlite(rusqlite::Connection),
            Postgres(tokio_postgres::Client),
        }
        let holder = match fx.target {
            Target::Sqlite => {
                let conn = rusqlite::Connection::open(fx.sqlite_path())?;
                conn.execute_batch("BEGIN IMMEDIATE")?;
                Holder::Sqlite(conn)
            }
            Target::Postgres => {
                let client = fx.pg_client().await?;
                client
                    .batch_execute(&format!(
                        "BEGIN; SELECT * FROM \"{t}\" WHERE key = '\\x6b'::bytea FOR UPDATE"
                    ))
                    .await?;
                Holder::Postgres(client)
            }
        };
        let t0 = Instant::now();
        let r = store.upsert("k", "v2", 2).await;
        let took = t0.elapsed();
        match r {
            Err(e @ StoreError::Timeout { .. }) => assert!(e.is_retryable()),
            other => bail!("expected a timeout, got {other:?}"),
        }
        ensure!(took >= timeout / 2, "gave up too early: {took:?}");
        ensure!(took < timeout + Duration::from_secs(1), "took {took:?}");
        // Reads are not blocked by a writer in either database.
        assert_eq!(store.get(b"k").await?, at("v1", 1));

        match holder {
            Holder::Sqlite(conn) => conn.execute_batch("ROLLBACK")?,
            Holder::Postgres(client) => client.batch_execute("ROLLBACK").await?,
        }
        // The retry after the timeout applies (the timed-out attempt did not).
        assert_eq!(store.upsert("k", "v2", 2).await?, Applied::Written);
        assert_eq!(store.get(b"k").await?, at("v2", 2));
        Ok(())
    }

    pub(super) async fn concurrent_writes_never_move_backwards(fx: &Fixture) -> Result<()> {
        const TASKS: u64 = 8;
        const MAX: u64 = 241;
        // Version v of key "hot" is a delete when v % 5 == 0, else the value "v{v}".
        fn expected(version: u64) -> Option<Bytes> {
            (!version.is_multiple_of(5)).then(|| Bytes::from(format!("v{version}")))
        }
        fn write(version: u64) -> Write {
            match expected(version) {
                Some(v) => Write::put("hot", v, version),
                None => Write::delete("hot", version),
            }
        }
        let store = fx.open().await?;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            tokio::spawn(async move {
                let mut last = 0;
                let mut reads = 0u32;
                while !done.load(Ordering::Relaxed) {
                    if let Some(row) = store.get_row(b"hot").await? {
                        ensure!(
                            row.version >= last,
                            "went back from {last} to {}",
                            row.version
                        );
                        ensure!(row.value == expected(row.version), "torn row {row:?}");
                        last = row.version;
                    }
                    reads += 1;
                }
                Ok::<_, anyhow::Error>(reads)
            })
        };
        let writers: Vec<_> = (0..TASKS)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    // This task's versions, in a scrambled order.
                    let mut mine: Vec<u64> = (1..=MAX).filter(|v| v % TASKS == task).collect();
                    let n = mine.len();
                    for i in 0..n {
                        mine.swap(i, (i * 37 + task as usize * 11) % n);
                    }
                    for (i, v) in mine.into_iter().enumerate() {
                        if i % 3 == 0 {
                            // Batches mixing the hot key with cold ones.
                            store
                                .upsert_batch(&[
                                    Write::put(format!("cold{task}"), "c", v),
                                    write(v),
                                    write(v.saturating_sub(TASKS)),
                                ])
                                .await?;
                        } else {
                            let _ = store.write(write(v)).await?;
                        }
                    }
                    Ok::<_, StoreError>(())
                })
            })
            .collect();
        for w in writers {
            w.await??;
        }
        done.store(true, Ordering::Relaxed);
        let reads = reader.await??;
        ensure!(reads > 0);
        assert_eq!(
            store.get_row(b"hot").await?,
            Some(Row {
                value: expected(MAX),
                version: MAX
            })
        );
        Ok(())
    }

    pub(super) async fn recovers_after_connections_are_killed(fx: &Fixture) -> Result<()> {
        if fx.target == Target::Sqlite {
            return Ok(()); // No connections to lose: the file is opened in-process.
        }
        let store = fx.open().await?;
        assert!(store.upsert("k", "v1", 1).await?.is_written());
        let killed = fx
            .query_i64(&format!(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = '{}') AS k",
                fx.table
            ))
            .await?;
        ensure!(killed >= 1, "no store connection found to kill");
        let mut attempts = 0;
        loop {
            attempts += 1;
            match store.upsert("k", "v2", 2).await {
                Ok(_) => break,
                Err(e) if e.is_retryable() && attempts < 10 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => bail!("attempt {attempts}: {e:?}"),
            }
        }
        assert_eq!(store.get(b"k").await?, at("v2", 2));
        Ok(())
    }
}

macro_rules! suite {
    ($($behaviour:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> Result<()> {
                    let fx = Fixture::new(Target::Sqlite)?.expect("sqlite always runs");
                    behaviours::$behaviour(&fx).await
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> Result<()> {
                    let Some(fx) = Fixture::new(Target::Postgres)? else { return Ok(()) };
                    behaviours::$behaviour(&fx).await
                }
            )*
        }
    };
}

suite!(
    round_trip,
    version_guard,
    batch_replay_changes_nothing,
    batch_with_duplicate_keys,
    delete_tombstone_blocks_older_replays,
    table_auto_created,
    missing_table_without_create_is_refused,
    wrong_user_tables_are_refused,
    own_table_with_extra_columns_works,
    unreachable_store_fails_fast,
    blocked_store_times_out_then_recovers,
    concurrent_writes_never_move_backwards,
    recovers_after_connections_are_killed,
);
