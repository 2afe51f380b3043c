//! Black-box: the real `ringcached` binary on 127.0.0.1 port 0, driven by the client.

use std::process::Stdio;
use std::time::{Duration, Instant};

use ringcache_client::{Client, ClientConfig, Error, ErrorCode, SetOptions, WriteCondition};
use ringcache_proto::NodeId;
use ringcache_tls::{CertAuthority, write_bundle};
use tokio::process::{Child, Command};

/// A node process with its certificates in a temp dir; killed on drop.
struct TestNode {
    dir: tempfile::TempDir,
    child: Child,
    addr: String,
}

impl TestNode {
    async fn start(namespaces: &str) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = CertAuthority::generate("ringcache.local").expect("ca");
        let node = ca
            .issue_node(NodeId(1), &["127.0.0.1".to_owned()])
            .expect("node cert");
        let client = ca.issue_client("test").expect("client cert");
        write_bundle(
            dir.path().join("certs"),
            &ca,
            &[(NodeId(1), &node)],
            &[("test", &client)],
        )
        .expect("bundle");
        let config = format!(
            r#"
node_id = 1
listen = "127.0.0.1:0"
data_dir = "data"
partitions = 64

[tls]
ca = "certs/ca.pem"
cert = "certs/node-1.pem"
key = "certs/node-1.key"

[limits]
max_key = 256
max_value = "64KiB"

{namespaces}
"#
        );
        let config_path = dir.path().join("node.toml");
        std::fs::write(&config_path, config).expect("write config");
        let (child, addr) = Self::spawn(dir.path()).await;
        Self { dir, child, addr }
    }

    /// Starts `ringcached` on `dir/node.toml` and waits until it listens.
    async fn spawn(dir: &std::path::Path) -> (Child, String) {
        let config_path = dir.join("node.toml");
        let addr_file = dir.join("data/listen.addr");
        let _ = std::fs::remove_file(&addr_file);
        let child = Command::new(env!("CARGO_BIN_EXE_ringcached"))
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ringcached");
        let addr = wait_for("the node to listen", || {
            std::fs::read_to_string(&addr_file)
                .ok()
                .filter(|a| a.ends_with('\n'))
        })
        .await;
        (child, addr.trim().to_owned())
    }

    /// Replaces `from` with `to` in the config and starts the node again on the same
    /// data directory (the old process must be gone).
    async fn restart_with(&mut self, from: &str, to: &str) {
        let path = self.dir.path().join("node.toml");
        let text = std::fs::read_to_string(&path).expect("config");
        assert!(text.contains(from), "{from} not in the config");
        std::fs::write(&path, text.replace(from, to)).expect("config");
        let (child, addr) = Self::spawn(self.dir.path()).await;
        self.child = child;
        self.addr = addr;
    }

    fn client_config(&self, name: &str) -> ClientConfig {
        let certs = self.dir.path().join("certs");
        let mut cfg = ClientConfig::new(
            vec![self.addr.clone()],
            certs.join("ca.pem"),
            certs.join(format!("client-{name}.pem")),
            certs.join(format!("client-{name}.key")),
        );
        cfg.connect_timeout = Duration::from_secs(10);
        cfg.request_timeout = Duration::from_secs(10);
        cfg
    }

    async fn client(&self) -> Client {
        Client::connect(self.client_config("test"))
            .await
            .expect("connect")
    }
}

/// Polls `f` until it yields, failing the test after 20 s with `what`.
async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

const NS: &str = r#"
[namespaces.default]
memory = "8MiB"
"#;

#[tokio::test]
async fn every_operation_over_quic() {
    let node = TestNode::start(NS).await;
    let c = node.client().await;
    assert_eq!(c.ping().await.expect("ping"), NodeId(1));

    let v1 = c
        .set("default", "k", "v1", SetOptions::default())
        .await
        .expect("set");
    let e = c.get("default", "k").await.expect("get").expect("hit");
    assert_eq!((e.value.as_ref(), e.version), (&b"v1"[..], v1));
    assert!(c.get("default", "absent").await.expect("get").is_none());
    assert!(c.exists("default", "k").await.expect("exists"));

    // Compare-and-set.
    let err = c
        .set(
            "default",
            "k",
            "x",
            SetOptions {
                condition: WriteCondition::IfVersion(v1 + 1),
                ..SetOptions::default()
            },
        )
        .await
        .expect_err("stale version");
    assert_eq!(err.code(), Some(ErrorCode::ConditionFailed));
    assert!(!err.retry_is_safe());
    let v2 = c
        .set(
            "default",
            "k",
            "v2",
            SetOptions {
                condition: WriteCondition::IfVersion(v1),
                ..SetOptions::default()
            },
        )
        .await
        .expect("cas with the current version");
    assert!(v2 > v1);

    // Batches, counters, typed values, purge, stats.
    let items = (0..10)
        .map(|i| (format!("user:{i}").into(), "x".into(), None))
        .collect();
    assert!(
        c.set_many("default", items)
            .await
            .expect("set many")
            .iter()
            .all(Result::is_ok)
    );
    let got = c
        .get_many("default", &["user:0", "user:9", "nope"])
        .await
        .expect("get many");
    assert_eq!(
        got.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![true, true, false]
    );
    assert_eq!(c.increment("default", "n", 3).await.expect("incr"), 3);
    assert_eq!(c.increment("default", "n", -1).await.expect("incr"), 2);
    c.set_json("default", "cfg", &vec![1, 2, 3], SetOptions::default())
        .await
        .expect("json");
    assert_eq!(
        c.get_json::<Vec<i32>>("default", "cfg")
            .await
            .expect("json"),
        Some(vec![1, 2, 3])
    );
    assert_eq!(c.purge("default", "user:").await.expect("purge"), 10);
    assert!(c.get("default", "user:3").await.expect("get").is_none());
    assert!(c.delete("default", "k", None).await.expect("delete"));
    let stats = c.stats(Some("default")).await.expect("stats");
    assert_eq!(stats[0].entries, 2, "n and cfg: {stats:?}");
    let info = c.cluster_info().await.expect("info");
    assert_eq!((info.partitions, info.owners.len()), (64, 64));

    // Bad input: clear errors, and the connection keeps working.
    let err = c.get("nope", "k").await.expect_err("unknown namespace");
    assert_eq!(err.code(), Some(ErrorCode::UnknownNamespace));
    let err = c
        .set("default", "k", vec![0u8; 70_000], SetOptions::default())
        .await
        .expect_err("too large");
    assert_eq!(err.code(), Some(ErrorCode::ValueTooLarge), "{err:?}");
    let huge = vec![0u8; 9 << 20];
    let err = c
        .set("default", "k", huge, SetOptions::default())
        .await
        .expect_err("over the client's own limit");
    assert!(
        matches!(err, Error::Invalid(_)),
        "refused before sending: {err:?}"
    );
    assert!(c.ping().await.is_ok());
}

#[tokio::test]
async fn ttl_expires_and_touch_extends() {
    let node = TestNode::start(NS).await;
    let c = node.client().await;
    c.set(
        "default",
        "short",
        "v",
        SetOptions::ttl(Duration::from_millis(300)),
    )
    .await
    .expect("set");
    c.set(
        "default",
        "kept",
        "v",
        SetOptions::ttl(Duration::from_millis(300)),
    )
    .await
    .expect("set");
    assert!(
        c.touch("default", "kept", Some(Duration::from_secs(60)))
            .await
            .expect("touch")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while c.get("default", "short").await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "a 300 ms TTL never expired");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let kept = c
        .get("default", "kept")
        .await
        .expect("get")
        .expect("touched key lives");
    assert!(kept.ttl_ms.is_some_and(|t| t > 50_000));
}

#[tokio::test]
async fn many_tasks_share_one_connection() {
    let node = TestNode::start(NS).await;
    let c = node.client().await;
    let tasks: Vec<_> = (0..200)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let key = format!("k{i}");
                c.set("default", &key, key.clone(), SetOptions::default())
                    .await?;
                c.get("default", &key).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let got = t.await.expect("task").expect("request").expect("hit");
        assert_eq!(got.value, format!("k{i}").as_bytes());
    }
}

#[tokio::test]
async fn a_client_without_a_valid_certificate_is_refused_and_others_keep_working() {
    let node = TestNode::start(NS).await;
    let good = node.client().await;

    // A certificate from another CA.
    let other = tempfile::tempdir().expect("dir");
    let rogue_ca = CertAuthority::generate("ringcache.local").expect("ca");
    let rogue = rogue_ca.issue_client("rogue").expect("cert");
    write_bundle(other.path(), &rogue_ca, &[], &[("rogue", &rogue)]).expect("bundle");
    let mut cfg = node.client_config("test");
    cfg.client_cert = other.path().join("client-rogue.pem");
    cfg.client_key = other.path().join("client-rogue.key");
    cfg.connect_timeout = Duration::from_secs(3);
    cfg.request_timeout = Duration::from_secs(3);
    let refused = match Client::connect(cfg).await {
        Err(e) => Some(e),
        // With TLS 1.3 the refusal can surface on the first request instead.
        Ok(c) => c.ping().await.err(),
    };
    assert!(
        refused.is_some(),
        "a client certificate from another CA must not be served"
    );

    // A client that does not trust the node's CA refuses the node.
    let mut cfg = node.client_config("test");
    cfg.ca_cert = other.path().join("ca.pem");
    cfg.connect_timeout = Duration::from_secs(3);
    assert!(Client::connect(cfg).await.is_err());

    assert_eq!(
        good.ping().await.expect("the good client still works"),
        NodeId(1)
    );
}

#[tokio::test]
async fn sigterm_answers_requests_in_flight_and_exits_cleanly() {
    let mut node = TestNode::start(NS).await;
    let c = node.client().await;
    c.set("default", "k", "v", SetOptions::default())
        .await
        .expect("set");
    let served = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let load: Vec<_> = (0..50)
        .map(|_| {
            let (c, served) = (c.clone(), std::sync::Arc::clone(&served));
            tokio::spawn(async move {
                let mut ok = 0u32;
                for _ in 0..100_000 {
                    match c.get("default", "k").await {
                        Ok(_) => {
                            ok += 1;
                            served.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        // After the node stops, requests fail with a typed error: never a hang.
                        Err(e) => return (ok, Some(e)),
                    }
                }
                (ok, None)
            })
        })
        .collect();
    // Signal only once the load is really being served.
    wait_for("requests to be served", || {
        (served.load(std::sync::atomic::Ordering::Relaxed) >= 500).then_some(())
    })
    .await;
    let pid = node.child.id().expect("running");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(30), node.child.wait())
        .await
        .expect("the node exits within 30 s")
        .expect("wait");
    assert!(exit.success(), "graceful exit: {exit:?}");
    let mut answered = 0;
    for t in load {
        let (ok, err) = tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("no client hangs")
            .expect("task");
        answered += ok;
        if let Some(e) = err {
            assert!(
                matches!(
                    e,
                    Error::ConnectionLost { .. } | Error::Connect { .. } | Error::Timeout { .. }
                ),
                "{e:?}"
            );
        }
    }
    assert!(
        answered > 0,
        "requests were being served when the signal came"
    );
}

const WRITE_BEHIND: &str = r#"
[namespaces.wb]
memory = "8MiB"
read = "read-through"
write = "write-behind"
[namespaces.wb.store]
path = "data/wb.sqlite"
[namespaces.wb.write_behind]
batch_delay = "1h"
batch_size = 10000
wal = true
"#;

/// `kill -9` with a full write-behind queue and the log on: after a restart the
/// database ends with the last acknowledged value of every key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_behind_log_survives_kill_9() {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let mut node = TestNode::start(WRITE_BEHIND).await;
    let c = node.client().await;
    // key -> (version, value) of the newest acknowledged write.
    let acked: Arc<Mutex<HashMap<String, (u64, String)>>> = Arc::default();
    let record = |acked: &Mutex<HashMap<String, (u64, String)>>,
                  key: String,
                  version: u64,
                  value: String| {
        let mut a = acked.lock().expect("lock");
        let e = a.entry(key).or_insert((0, String::new()));
        if version > e.0 {
            *e = (version, value);
        }
    };
    // Phase 1: writes that all finish before the kill.
    for i in 0..600u32 {
        let (key, value) = (format!("k{}", i % 150), format!("v{i}"));
        let v = c
            .set("wb", key.as_str(), value.clone(), SetOptions::default())
            .await
            .expect("set");
        record(&acked, key, v, value);
    }
    // Phase 2: writers still running when the node is killed.
    let phase2 = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let writers: Vec<_> = (0..8u32)
        .map(|w| {
            let (c, acked, phase2) = (c.clone(), Arc::clone(&acked), Arc::clone(&phase2));
            tokio::spawn(async move {
                for i in 0..100_000u32 {
                    let (key, value) = (format!("k{}", (i * 8 + w) % 150), format!("w{w}-{i}"));
                    match c
                        .set("wb", key.as_str(), value.clone(), SetOptions::default())
                        .await
                    {
                        Ok(v) => {
                            record(&acked, key, v, value);
                            phase2.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    wait_for("writes in flight", || {
        (phase2.load(std::sync::atomic::Ordering::Relaxed) >= 300).then_some(())
    })
    .await;
    let pid = node.child.id().expect("running");
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    node.child.wait().await.expect("reaped");
    for w in writers {
        tokio::time::timeout(Duration::from_secs(30), w)
            .await
            .expect("writers stop once the node is gone")
            .expect("task");
    }
    let db_path = node.dir.path().join("data/wb.sqlite");
    let unflushed = rusqlite::Connection::open(&db_path)
        .expect("db")
        .query_row("SELECT count(*) FROM ringcache_kv", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap_or(0);
    assert_eq!(
        unflushed, 0,
        "batch_delay = 1h: nothing was flushed before the kill"
    );

    node.restart_with("batch_delay = \"1h\"", "batch_delay = \"20ms\"")
        .await;
    let c = node.client().await;
    let status = match c
        .request(ringcache_proto::Op::WriteBehindFlush {
            ns: Some("wb".into()),
        })
        .await
    {
        Ok(ringcache_proto::Response::WriteBehind(s)) => s,
        other => panic!("flush: {other:?}"),
    };
    assert_eq!(status[0].depth, 0, "{status:?}");
    let db = rusqlite::Connection::open(&db_path).expect("db");
    let acked = acked.lock().expect("lock").clone();
    assert_eq!(acked.len(), 150);
    for (key, (version, value)) in &acked {
        let (db_value, db_version): (Vec<u8>, i64) = db
            .query_row(
                "SELECT value, version FROM ringcache_kv WHERE key = ?1",
                [key.as_bytes()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap_or_else(|e| panic!("{key} missing from the database: {e}"));
        let db_version = u64::try_from(db_version).expect("positive");
        // A write in flight at the kill may have been logged without its ack arriving:
        // it may be newer than the last acknowledged one, never older.
        assert!(
            db_version >= *version,
            "{key}: database at {db_version}, acknowledged {version}"
        );
        if db_version == *version {
            assert_eq!(db_value, value.as_bytes(), "{key}");
        }
        // The cache agrees with the database.
        let cached = c.get("wb", key).await.expect("get").expect("present");
        assert_eq!(cached.version, db_version, "{key}");
    }
}
