//! Each strategy's contract as a client sees it, through the node's request handler,
//! against SQLite (always) and PostgreSQL (`RINGCACHE_TEST_PG_URL`; required under CI).
//!
//! Start a server for the PostgreSQL half with `eval "$(scripts/pg-test-server.sh start)"`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use bytes::Bytes;
use ringcache_node::config::NamespaceConfig;
use ringcache_node::handler::Handler;
use ringcache_node::keyspace::Keyspace;
use ringcache_proto::{
    Epoch, ErrorCode, Limits, NamespaceStats, NodeId, Op, Request, Response, WireError,
    WriteBehindStatus, WriteCondition,
};
use ringcache_store::{Store, StoreConfig};

const PG_ENV: &str = "RINGCACHE_TEST_PG_URL";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Sqlite,
    Postgres,
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn unique(prefix: &str) -> String {
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

/// A node's handler over one namespace `ns` backed by a fresh table, and a direct
/// connection to that table.
struct Fixture {
    handler: Handler,
    keyspace: Arc<Keyspace>,
    db: Store,
    _dir: tempfile::TempDir,
}

/// The store section for `target`, or `None` to skip (PostgreSQL not configured, not CI).
fn store_config(
    target: Target,
    dir: &std::path::Path,
    url_override: Option<&str>,
) -> Result<Option<StoreConfig>> {
    let table = unique("t");
    let mut cfg = match target {
        Target::Sqlite => StoreConfig::sqlite(dir.join("store.sqlite")),
        Target::Postgres => match std::env::var(PG_ENV) {
            Ok(url) if !url.is_empty() => {
                StoreConfig::postgres(url_override.map_or(url, str::to_owned))
            }
            _ if ci() => bail!("{PG_ENV} is not set but CI is: the PostgreSQL suite must run"),
            _ => {
                eprintln!("SKIPPED: PostgreSQL half: {PG_ENV} is not set");
                return Ok(None);
            }
        },
    };
    cfg.table = table;
    cfg.timeout = Duration::from_secs(30);
    Ok(Some(cfg))
}

impl Fixture {
    async fn new(target: Target, ns: NamespaceConfig) -> Result<Option<Self>> {
        Self::with_url(target, ns, None).await
    }

    async fn with_url(
        target: Target,
        mut ns: NamespaceConfig,
        url: Option<&str>,
    ) -> Result<Option<Self>> {
        let dir = tempfile::tempdir()?;
        let Some(store) = store_config(target, dir.path(), url)? else {
            return Ok(None);
        };
        // The test's direct connection goes straight to the database, never through a proxy.
        let mut direct = store.clone();
        if target == Target::Postgres {
            direct.url = std::env::var(PG_ENV).ok();
        }
        ns.store = Some(store);
        ns.memory = 16 << 20;
        let keyspace = Arc::new(
            Keyspace::open(
                16,
                &BTreeMap::from([("ns".to_owned(), ns)]),
                dir.path(),
                dir.path(),
            )
            .await
            .context("open keyspace")?,
        );
        let db = Store::open(&direct.validate(dir.path())?).await?;
        let handler = Handler::new(
            Arc::clone(&keyspace),
            Limits::default(),
            NodeId(1),
            "127.0.0.1:0".into(),
        );
        Ok(Some(Self {
            handler,
            keyspace,
            db,
            _dir: dir,
        }))
    }

    async fn call(&self, op: Op) -> Response {
        self.handler
            .handle_wait(Request {
                epoch: Epoch(0),
                op,
            })
            .await
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        match self
            .call(Op::Get {
                ns: "ns".into(),
                key: b(key),
            })
            .await
        {
            Response::Value(v) => Ok(v.map(|e| e.value)),
            other => bail!("get {key}: {other:?}"),
        }
    }

    async fn set(&self, key: &str, value: &str) -> Result<u64, WireError> {
        self.set_if(key, value, WriteCondition::Always).await
    }

    async fn set_if(
        &self,
        key: &str,
        value: &str,
        condition: WriteCondition,
    ) -> Result<u64, WireError> {
        match self
            .call(Op::Set {
                ns: "ns".into(),
                key: b(key),
                value: b(value),
                ttl_ms: None,
                condition,
            })
            .await
        {
            Response::Stored { version } => Ok(version),
            Response::Error(e) => Err(e),
            other => panic!("set: {other:?}"),
        }
    }

    async fn delete(&self, key: &str) -> Result<bool, WireError> {
        match self
            .call(Op::Delete {
                ns: "ns".into(),
                key: b(key),
                if_version: None,
            })
            .await
        {
            Response::Deleted(d) => Ok(d),
            Response::Error(e) => Err(e),
            other => panic!("delete: {other:?}"),
        }
    }

    async fn cached(&self, key: &str) -> bool {
        matches!(
            self.call(Op::Exists {
                ns: "ns".into(),
                key: b(key)
            })
            .await,
            Response::Exists(true)
        )
    }

    async fn stats(&self) -> NamespaceStats {
        match self
            .call(Op::Stats {
                ns: Some("ns".into()),
            })
            .await
        {
            Response::Stats(mut v) => v.remove(0),
            other => panic!("stats: {other:?}"),
        }
    }

    async fn status(&self) -> WriteBehindStatus {
        match self
            .call(Op::WriteBehindStatus {
                ns: Some("ns".into()),
            })
            .await
        {
            Response::WriteBehind(mut v) => v.remove(0),
            other => panic!("status: {other:?}"),
        }
    }

    async fn flush(&self) -> WriteBehindStatus {
        match self
            .call(Op::WriteBehindFlush {
                ns: Some("ns".into()),
            })
            .await
        {
            Response::WriteBehind(mut v) => v.remove(0),
            other => panic!("flush: {other:?}"),
        }
    }

    async fn db_value(&self, key: &str) -> Result<Option<Bytes>> {
        Ok(self.db.get(key.as_bytes()).await?.map(|v| v.value))
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut f: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if f().await? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn read_through() -> NamespaceConfig {
    NamespaceConfig {
        read: ringcache_node::config::ReadMode::ReadThrough,
        ..NamespaceConfig::default()
    }
}

fn writes(mode: ringcache_node::config::WriteMode) -> NamespaceConfig {
    NamespaceConfig {
        write: mode,
        ..read_through()
    }
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() -> anyhow::Result<()> {
                super::$name(super::Target::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() -> anyhow::Result<()> {
                super::$name(super::Target::Postgres).await
            }
        }
    };
}

both!(read_through_loads_rows_inserted_in_the_database);
async fn read_through_loads_rows_inserted_in_the_database(t: Target) -> Result<()> {
    let Some(f) = Fixture::new(t, read_through()).await? else {
        return Ok(());
    };
    let _ = f.db.upsert("user:1", "alice", 7).await?;
    assert_eq!(f.get("user:1").await?, Some(b("alice")));
    assert_eq!(f.get("user:1").await?, Some(b("alice")));
    assert_eq!(f.get("nobody").await?, None);
    let s = f.stats().await;
    assert_eq!(
        s.store_loads, 2,
        "one load for user:1 (then a hit), one for the miss"
    );
    assert_eq!(s.hits, 1);
    // The loaded version is the row's: compare-and-set works against it.
    assert!(
        f.set_if("user:1", "bob", WriteCondition::IfVersion(7))
            .await
            .is_ok()
    );
    Ok(())
}

both!(a_thousand_concurrent_misses_read_the_database_once);
async fn a_thousand_concurrent_misses_read_the_database_once(t: Target) -> Result<()> {
    let Some(f) = Fixture::new(t, read_through()).await? else {
        return Ok(());
    };
    let _ = f.db.upsert("hot", "value", 1).await?;
    // On PostgreSQL, hold the load in flight until every request has joined it, so the
    // coalescing is certain rather than a matter of timing.
    let lock = match t {
        Target::Postgres => {
            let (client, conn) =
                tokio_postgres::connect(&std::env::var(PG_ENV)?, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            let table = f
                .keyspace
                .namespace("ns")
                .and_then(|n| n.config.store.clone())
                .context("store")?
                .table;
            client
                .batch_execute(&format!(
                    "BEGIN; LOCK TABLE \"{table}\" IN ACCESS EXCLUSIVE MODE"
                ))
                .await?;
            Some(client)
        }
        Target::Sqlite => None,
    };
    let f = Arc::new(f);
    let start = Arc::new(tokio::sync::Barrier::new(1000));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..1000 {
        let (f, start) = (Arc::clone(&f), Arc::clone(&start));
        tasks.spawn(async move {
            start.wait().await;
            f.get("hot").await
        });
    }
    if let Some(client) = lock {
        wait_until(
            "every miss to join the one load",
            Duration::from_secs(20),
            || async { Ok(f.stats().await.coalesced_loads == 999) },
        )
        .await?;
        client.batch_execute("COMMIT").await?;
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r??, Some(b("value")));
    }
    let s = f.stats().await;
    assert_eq!(s.store_loads, 1, "exactly one database read: {s:?}");
    if t == Target::Postgres {
        assert_eq!(s.coalesced_loads, 999, "{s:?}");
    }
    Ok(())
}

both!(negative_caching_and_errors_are_not_cached);
async fn negative_caching_and_errors_are_not_cached(t: Target) -> Result<()> {
    let mut cfg = read_through();
    cfg.negative_ttl = Some(Duration::from_secs(60));
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    assert_eq!(f.get("ghost").await?, None);
    let _ = f.db.upsert("ghost", "boo", 1).await?;
    assert_eq!(
        f.get("ghost").await?,
        None,
        "the miss is remembered for negative_ttl"
    );
    assert!(!f.cached("ghost").await, "a remembered miss is not a value");
    assert_eq!(f.stats().await.store_loads, 1);
    // A write replaces the remembered miss.
    f.set("ghost", "real").await?;
    assert_eq!(f.get("ghost").await?, Some(b("real")));
    Ok(())
}

both!(write_through_is_in_the_database_at_the_ack);
async fn write_through_is_in_the_database_at_the_ack(t: Target) -> Result<()> {
    let Some(f) = Fixture::new(t, writes(ringcache_node::config::WriteMode::WriteThrough)).await?
    else {
        return Ok(());
    };
    let v1 = f.set("k", "one").await?;
    assert_eq!(f.db_value("k").await?, Some(b("one")));
    assert_eq!(f.db.get(b"k").await?.map(|v| v.version), Some(v1));
    assert!(f.cached("k").await);
    // A row written by someone else with a far higher version: the node moves past it.
    let _ = f.db.upsert("k", "external", u64::MAX / 4).await?;
    let v2 = f.set("k", "two").await?;
    assert!(v2 > u64::MAX / 4);
    assert_eq!(f.db_value("k").await?, Some(b("two")));
    assert!(f.delete("k").await?);
    assert_eq!(f.db_value("k").await?, None);
    assert!(!f.cached("k").await);
    Ok(())
}

both!(write_through_store_failure_leaves_the_cache_unchanged);
async fn write_through_store_failure_leaves_the_cache_unchanged(t: Target) -> Result<()> {
    let mut cfg = writes(ringcache_node::config::WriteMode::WriteThrough);
    cfg.read = ringcache_node::config::ReadMode::CacheAside;
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    f.set("k", "good").await?;
    break_table(&f).await?;
    let e = f.set("k", "bad").await.expect_err("the store refuses");
    assert_eq!(e.code, ErrorCode::StoreError, "{e}");
    assert_eq!(f.get("k").await?, Some(b("good")), "cache unchanged");
    assert!(f.stats().await.store_errors >= 1);
    Ok(())
}

/// Makes every write to the fixture's table fail with a non-retryable error.
async fn break_table(f: &Fixture) -> Result<()> {
    let ns = f.keyspace.namespace("ns").context("ns")?;
    let table = ns.config.store.as_ref().context("store")?.table.clone();
    match f.db.kind() {
        ringcache_store::StoreKind::Sqlite => {
            let path = ns
                .config
                .store
                .as_ref()
                .and_then(|s| s.path.clone())
                .context("path")?;
            let conn = rusqlite::Connection::open(path)?;
            conn.execute_batch(&format!(
                "CREATE TRIGGER no_writes_{table} BEFORE INSERT ON \"{table}\" BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END;
                 CREATE TRIGGER no_updates_{table} BEFORE UPDATE ON \"{table}\" BEGIN SELECT RAISE(ABORT, 'writes refused by the test'); END;"
            ))?;
        }
        ringcache_store::StoreKind::Postgres => {
            let url = std::env::var(PG_ENV)?;
            let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
            tokio::spawn(conn);
            client
                .batch_execute(&format!(
                    "ALTER TABLE \"{table}\" ADD CONSTRAINT refuse_{table} CHECK (length(key) < 0) NOT VALID"
                ))
                .await?;
        }
    }
    Ok(())
}

both!(write_around_leaves_the_cache_cold);
async fn write_around_leaves_the_cache_cold(t: Target) -> Result<()> {
    let Some(f) = Fixture::new(t, writes(ringcache_node::config::WriteMode::WriteAround)).await?
    else {
        return Ok(());
    };
    assert_eq!(f.get("k").await?, None);
    f.set("k", "v1").await?;
    assert_eq!(f.db_value("k").await?, Some(b("v1")));
    assert!(!f.cached("k").await, "write-around does not cache");
    assert_eq!(f.get("k").await?, Some(b("v1")), "read-through loads it");
    f.set("k", "v2").await?;
    assert!(!f.cached("k").await, "the cached copy is dropped");
    assert_eq!(f.get("k").await?, Some(b("v2")));
    let e = f
        .set_if("k", "v3", WriteCondition::IfAbsent)
        .await
        .expect_err("no copy to compare");
    assert_eq!(e.code, ErrorCode::Unsupported);
    Ok(())
}

both!(write_behind_flushes_and_coalesces);
async fn write_behind_flushes_and_coalesces(t: Target) -> Result<()> {
    let mut cfg = writes(ringcache_node::config::WriteMode::WriteBehind);
    cfg.write_behind.batch_delay = Duration::from_secs(3600);
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    for i in 0..10 {
        f.set("counter", &format!("v{i}")).await?;
    }
    f.set("other", "x").await?;
    assert!(f.delete("gone").await.is_ok());
    assert_eq!(
        f.db_value("counter").await?,
        None,
        "nothing flushed before the delay"
    );
    assert_eq!(
        f.get("counter").await?,
        Some(b("v9")),
        "reads see the queued value"
    );
    let s = f.status().await;
    assert_eq!(s.depth, 12);
    assert!(s.oldest_ms.is_some());
    let s = f.flush().await;
    assert_eq!(s.depth, 0, "{s:?}");
    assert_eq!(s.flushed, 12);
    assert_eq!(s.coalesced, 9, "ten writes to one key became one: {s:?}");
    assert_eq!(f.db_value("counter").await?, Some(b("v9")));
    assert_eq!(f.db_value("other").await?, Some(b("x")));
    // Written entries are unpinned (evictable again).
    let ns = f.keyspace.namespace("ns").context("ns")?;
    assert_eq!(ns.stats().pinned_entries, 0);
    Ok(())
}

both!(write_behind_backpressure_and_dead_letters);
async fn write_behind_backpressure_and_dead_letters(t: Target) -> Result<()> {
    let mut cfg = writes(ringcache_node::config::WriteMode::WriteBehind);
    cfg.write_behind.batch_delay = Duration::from_secs(3600);
    cfg.write_behind.queue_capacity = 5;
    cfg.write_behind.max_attempts = 2;
    cfg.write_behind.retry_backoff = Duration::from_millis(10);
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    for i in 0..5 {
        f.set(&format!("k{i}"), "v").await?;
    }
    let e = f.set("k5", "v").await.expect_err("queue full");
    assert_eq!(e.code, ErrorCode::Backpressure, "{e}");
    assert!(e.hints.retry_after_ms.is_some());
    // A store that refuses the rows for good: each write is tried max_attempts times,
    // then parked in the dead-letter list, and the queue empties.
    break_table(&f).await?;
    wait_until("dead letters", Duration::from_secs(20), || async {
        Ok(f.flush().await.dead_letter_count == 5)
    })
    .await?;
    let s = f.status().await;
    assert_eq!(s.depth, 0);
    assert_eq!(s.dead_letters.len(), 5);
    assert!(s.dead_letters.iter().all(|d| d.attempts == 2), "{s:?}");
    f.set("k5", "v").await.context("room again")?;
    Ok(())
}

both!(refresh_ahead_reloads_once_before_expiry);
async fn refresh_ahead_reloads_once_before_expiry(t: Target) -> Result<()> {
    let mut cfg = read_through();
    cfg.default_ttl = Some(Duration::from_secs(30));
    cfg.refresh_ahead_factor = Some(0.05); // due after 1.5 s
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    let _ = f.db.upsert("k", "old", 1).await?;
    assert_eq!(f.get("k").await?, Some(b("old")));
    let _ = f.db.upsert("k", "new", 2).await?;
    assert_eq!(f.get("k").await?, Some(b("old")), "not due yet");
    assert_eq!(f.stats().await.refreshes, 0);
    // Time has to pass for the refresh to become due.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let f = Arc::new(f);
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let f = Arc::clone(&f);
        tasks.spawn(async move { f.get("k").await });
    }
    while let Some(r) = tasks.join_next().await {
        assert!(r??.is_some(), "a due value is still served");
    }
    wait_until("the refreshed value", Duration::from_secs(10), || async {
        Ok(f.get("k").await? == Some(b("new")))
    })
    .await?;
    let s = f.stats().await;
    assert_eq!(s.refreshes, 1, "one refresh however many readers: {s:?}");
    assert_eq!(s.store_loads, 2);
    Ok(())
}

both!(stale_while_revalidate_serves_the_old_value_once_expired);
async fn stale_while_revalidate_serves_the_old_value_once_expired(t: Target) -> Result<()> {
    let mut cfg = read_through();
    cfg.default_ttl = Some(Duration::from_millis(500));
    cfg.stale_while_revalidate = Some(Duration::from_secs(60));
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    let _ = f.db.upsert("k", "old", 1).await?;
    assert_eq!(f.get("k").await?, Some(b("old")));
    let _ = f.db.upsert("k", "new", 2).await?;
    tokio::time::sleep(Duration::from_millis(600)).await;
    match f
        .call(Op::Get {
            ns: "ns".into(),
            key: b("k"),
        })
        .await
    {
        Response::Value(Some(e)) => {
            assert!(e.value == b("old") || e.value == b("new"));
            if e.value == b("old") {
                assert_eq!(e.ttl_ms, Some(0), "a stale value says so");
            }
        }
        other => bail!("{other:?}"),
    }
    wait_until("revalidated", Duration::from_secs(10), || async {
        Ok(f.get("k").await? == Some(b("new")))
    })
    .await?;
    assert_eq!(f.stats().await.refreshes, 1);
    Ok(())
}

/// A loopback TCP relay to PostgreSQL that the test can cut and heal.
struct Relay {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    generation: Arc<tokio::sync::watch::Sender<u64>>,
}

impl Relay {
    async fn start(target: std::net::SocketAddr) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let up = Arc::new(AtomicBool::new(true));
        let generation = Arc::new(tokio::sync::watch::Sender::new(0u64));
        let (up2, gen2) = (Arc::clone(&up), Arc::clone(&generation));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    continue; // dropped: refused
                }
                let mut cut = gen2.subscribe();
                let born = *cut.borrow();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.wait_for(|g| *g != born) => {}
                    }
                });
            }
        });
        Ok(Self {
            addr,
            up,
            generation,
        })
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn heal(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// PostgreSQL goes away while writing behind: writes keep being acknowledged until the
/// queue is full, then fail with `backpressure`; when it returns, the queue drains and
/// every acknowledged write is in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fills_the_queue_then_drains() -> Result<()> {
    let Ok(url) = std::env::var(PG_ENV) else {
        ensure!(!ci(), "{PG_ENV} must be set under CI");
        eprintln!("SKIPPED: {PG_ENV} is not set");
        return Ok(());
    };
    let pg: tokio_postgres::Config = url.parse()?;
    let port = pg.get_ports().first().copied().unwrap_or(5432);
    let relay = Relay::start(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await?;
    let relayed = url.replacen(&format!(":{port}/"), &format!(":{}/", relay.addr.port()), 1);
    ensure!(relayed != url, "cannot point {url} at the relay");
    let mut cfg = writes(ringcache_node::config::WriteMode::WriteBehind);
    cfg.read = ringcache_node::config::ReadMode::CacheAside;
    cfg.write_behind.batch_delay = Duration::from_millis(20);
    cfg.write_behind.queue_capacity = 200;
    cfg.write_behind.retry_backoff = Duration::from_millis(50);
    cfg.write_behind.max_backoff = Duration::from_millis(200);
    let Some(f) = Fixture::with_url(Target::Postgres, cfg, Some(&relayed)).await? else {
        return Ok(());
    };
    f.set("before", "1").await?;
    wait_until("first flush", Duration::from_secs(10), || async {
        Ok(f.db_value("before").await?.is_some())
    })
    .await?;

    relay.cut();
    let mut acked = BTreeMap::new();
    f.set("during", "1").await?;
    acked.insert("during".to_owned(), "1".to_owned());
    wait_until(
        "the flusher to meet the outage",
        Duration::from_secs(20),
        || async { Ok(f.stats().await.store_errors > 0) },
    )
    .await?;
    let mut refused = None;
    for i in 0..1000 {
        let key = format!("k{}", i % 300);
        match f.set(&key, &format!("v{i}")).await {
            Ok(_) => {
                acked.insert(key, format!("v{i}"));
            }
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let (i, e) = refused.context("the queue never filled")?;
    assert_eq!(e.code, ErrorCode::Backpressure, "{e}");
    assert_eq!(
        i + 1,
        200,
        "the whole capacity (with `during`) was acknowledged"
    );
    assert!(f.status().await.depth <= 200);
    assert_eq!(
        f.db_value("during").await?,
        None,
        "nothing got through the cut"
    );

    relay.heal();
    wait_until("the queue to drain", Duration::from_secs(60), || async {
        Ok(f.status().await.depth == 0)
    })
    .await?;
    for (key, value) in &acked {
        assert_eq!(f.db_value(key).await?, Some(b(value)), "{key}");
    }
    assert_eq!(f.status().await.dead_letter_count, 0);
    Ok(())
}

async fn admin(h: &Handler, op: Op) -> Result<Vec<ringcache_proto::NamespaceInfo>, WireError> {
    match h
        .handle_wait(Request {
            epoch: Epoch(0),
            op,
        })
        .await
    {
        Response::Namespaces(v) => Ok(v),
        Response::Error(e) => Err(e),
        other => panic!("{other:?}"),
    }
}

/// `ringctl ns create|alter|show|list` end to end through the handler, and the changes
/// survive a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_are_created_changed_and_kept_at_runtime() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let open = || async {
        let ks = Keyspace::open(
            16,
            &BTreeMap::from([(
                "default".to_owned(),
                NamespaceConfig {
                    memory: 1 << 20,
                    ..NamespaceConfig::default()
                },
            )]),
            dir.path(),
            dir.path(),
        )
        .await?;
        anyhow::Ok(Handler::new(
            Arc::new(ks),
            Limits::default(),
            NodeId(1),
            "x".into(),
        ))
    };
    let h = open().await?;
    let created = admin(
        &h,
        Op::NsCreate {
            ns: "users".into(),
            config: "memory = \"1MiB\"\nread = \"read-through\"\nwrite = \"write-behind\"\n[store]\nkind = \"sqlite\"\npath = \"users.sqlite\"\n[write_behind]\nbatch_delay = \"1h\"\n".into(),
        },
    )
    .await?;
    assert!(
        created[0].config.contains("read-through"),
        "{}",
        created[0].config
    );
    assert!(
        dir.path().join("users.sqlite").exists(),
        "relative paths resolve in the data dir"
    );

    let e = admin(
        &h,
        Op::NsCreate {
            ns: "users".into(),
            config: String::new(),
        },
    )
    .await
    .expect_err("exists");
    assert_eq!(e.code, ErrorCode::AlreadyExists);
    let e = admin(
        &h,
        Op::NsCreate {
            ns: "bad".into(),
            config: "refresh_ahead_factor = 2.0".into(),
        },
    )
    .await
    .expect_err("invalid");
    assert_eq!(e.code, ErrorCode::InvalidConfig);
    assert!(e.message.contains("refresh_ahead_factor"), "{e}");
    let e = admin(
        &h,
        Op::NsCreate {
            ns: "bad".into(),
            config: "polcy = \"lru\"".into(),
        },
    )
    .await
    .expect_err("unknown field");
    assert!(e.message.contains("polcy"), "{e}");
    let e = admin(
        &h,
        Op::NsCreate {
            ns: "bad".into(),
            config: "write = \"write-through\"".into(),
        },
    )
    .await
    .expect_err("no store");
    assert!(e.message.contains("store"), "{e}");

    // A queued write blocks changing where writes go, not other settings.
    let r = h
        .handle_wait(Request {
            epoch: Epoch(0),
            op: Op::Set {
                ns: "users".into(),
                key: b("k"),
                value: b("v"),
                ttl_ms: None,
                condition: WriteCondition::Always,
            },
        })
        .await;
    assert!(matches!(r, Response::Stored { .. }), "{r:?}");
    let e = admin(
        &h,
        Op::NsAlter {
            ns: "users".into(),
            config: "write = \"write-through\"".into(),
        },
    )
    .await
    .expect_err("queue not empty");
    assert_eq!(e.code, ErrorCode::Backpressure, "{e}");
    let altered = admin(
        &h,
        Op::NsAlter {
            ns: "users".into(),
            config: "policy = \"lru\"".into(),
        },
    )
    .await?;
    assert!(
        altered[0].config.contains("policy = \"lru\""),
        "{}",
        altered[0].config
    );
    let ns = h.keyspace().namespace("users").context("users")?;
    assert_eq!(
        ns.partitions().next().context("p")?.engine.policy(),
        ringcache_engine::Policy::Lru
    );
    assert_eq!(
        ns.strategy
            .as_ref()
            .and_then(|s| s.write_behind())
            .map(|w| w.depth()),
        Some(1),
        "the queue carried over"
    );

    let list = admin(&h, Op::NsList).await?;
    assert_eq!(
        list.iter().map(|i| i.ns.as_str()).collect::<Vec<_>>(),
        ["default", "users"]
    );
    let e = admin(&h, Op::NsShow { ns: "nope".into() })
        .await
        .expect_err("unknown");
    assert_eq!(e.code, ErrorCode::UnknownNamespace);

    // Graceful shutdown writes the queue out; a restart keeps the runtime namespaces.
    h.keyspace().shutdown().await;
    drop(h);
    let h = open().await?;
    let shown = admin(&h, Op::NsShow { ns: "users".into() }).await?;
    assert!(
        shown[0].config.contains("policy = \"lru\""),
        "{}",
        shown[0].config
    );
    let r = h
        .handle_wait(Request {
            epoch: Epoch(0),
            op: Op::Get {
                ns: "users".into(),
                key: b("k"),
            },
        })
        .await;
    match r {
        Response::Value(Some(e)) => {
            assert_eq!(e.value, b("v"), "drained to the store, loaded back")
        }
        other => bail!("{other:?}"),
    }
    Ok(())
}

both!(per_request_overrides_change_one_request_only);
async fn per_request_overrides_change_one_request_only(t: Target) -> Result<()> {
    use ringcache_proto::{RequestMode, WriteOverride};
    let mut cfg = writes(ringcache_node::config::WriteMode::WriteBehind);
    cfg.write_behind.batch_delay = Duration::from_secs(3600);
    let Some(f) = Fixture::new(t, cfg).await? else {
        return Ok(());
    };
    let with = |write: Option<WriteOverride>, no_load: bool, op: Op| Op::With {
        mode: RequestMode { no_load, write },
        op: Box::new(op),
    };
    let set = |k: &str, v: &str| Op::Set {
        ns: "ns".into(),
        key: b(k),
        value: b(v),
        ttl_ms: None,
        condition: WriteCondition::Always,
    };
    // A write that must be durable now, on a write-behind namespace.
    let r = f
        .call(with(
            Some(WriteOverride::WriteThrough),
            false,
            set("now", "1"),
        ))
        .await;
    assert!(matches!(r, Response::Stored { .. }), "{r:?}");
    assert_eq!(
        f.db_value("now").await?,
        Some(b("1")),
        "written through at the ack"
    );
    // Warming the cache without touching the store.
    let r = f
        .call(with(
            Some(WriteOverride::CacheOnly),
            false,
            set("warm", "2"),
        ))
        .await;
    assert!(matches!(r, Response::Stored { .. }), "{r:?}");
    assert_eq!(f.status().await.depth, 0, "nothing queued");
    assert_eq!(f.get("warm").await?, Some(b("2")));
    // The namespace's own mode is untouched: a plain write still queues.
    f.set("later", "3").await?;
    assert_eq!(f.status().await.depth, 1);
    // A read that must not load.
    let _ = f.db.upsert("cold", "x", 1).await?;
    let get = Op::Get {
        ns: "ns".into(),
        key: b("cold"),
    };
    let r = f.call(with(None, true, get)).await;
    assert_eq!(r, Response::Value(None), "no_load answers a miss as a miss");
    assert_eq!(f.stats().await.store_loads, 0);
    assert_eq!(
        f.get("cold").await?,
        Some(b("x")),
        "a plain read still loads"
    );
    // Only data operations can be wrapped.
    let r = f.call(with(None, true, Op::Ping)).await;
    assert!(
        matches!(r, Response::Error(ref e) if e.code == ErrorCode::Malformed),
        "{r:?}"
    );
    Ok(())
}
