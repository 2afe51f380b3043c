//! Black-box: the real `ringctl` binary, and for `local` the real `ringcached` next to
//! it (`cargo build --workspace` builds both). Every command and wait is bounded.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use ringcache_proto::NodeId;
use ringcache_tls::CertDir;

mod common;
use common::*;

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777
}

#[test]
fn certs_init_writes_a_bundle_with_private_keys_and_never_overwrites() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let out = run(
        tmp.path(),
        &[
            "certs", "init", "--dir", "certs", "--nodes", "2", "--client", "app", "--san",
            "10.1.2.3",
        ],
    )
    .ok();
    assert!(out.stdout.contains("ca.key"), "{out:#?}");

    let dir = tmp.path().join("certs");
    let bundle = CertDir::new(&dir);
    let ca = bundle.load_ca().expect("CA loads with its key");
    assert_eq!(ca.cluster_domain(), "ringcache.local");
    bundle.load_node(NodeId(1)).expect("node-1");
    bundle.load_node(NodeId(2)).expect("node-2");
    bundle.load_client("app").expect("client-app");
    assert!(!dir.join("node-3.pem").exists());
    #[cfg(unix)]
    for key in ["ca.key", "node-1.key", "node-2.key", "client-app.key"] {
        assert_eq!(mode(&dir.join(key)), 0o600, "{key}");
    }

    // Again into the same directory: refused, nothing touched.
    let ca_before = std::fs::read(dir.join("ca.pem")).expect("read");
    let line = run(tmp.path(), &["certs", "init", "--dir", "certs"]).failed(1);
    assert!(line.contains("refusing to overwrite"), "{line}");
    assert!(line.contains("ca.pem"), "{line}");
    assert_eq!(std::fs::read(dir.join("ca.pem")).expect("read"), ca_before);

    // A new client in the same directory is refused too: the CA would be replaced.
    let line = run(
        tmp.path(),
        &["certs", "init", "--dir", "certs", "--client", "other"],
    )
    .failed(1);
    assert!(line.contains("refusing to overwrite"), "{line}");
    assert!(!dir.join("client-other.pem").exists());

    // Bad input writes nothing.
    let line = run(
        tmp.path(),
        &["certs", "init", "--dir", "bad", "--client", "Not_Valid"],
    )
    .failed(1);
    assert!(line.contains("--client"), "{line}");
    assert!(!tmp.path().join("bad").exists());

    // --json describes what it wrote.
    let out = run(tmp.path(), &["--json", "certs", "init", "--dir", "j"]).ok();
    let files = out.json()["files"].as_array().expect("files").clone();
    assert_eq!(files.len(), 6, "{out:#?}");
    assert!(
        files
            .iter()
            .any(|f| f["path"] == "j/ca.key" && f["mode"] == "0600")
    );
}

#[test]
fn local_up_detached_serves_the_data_commands_until_local_down() {
    require_ringcached();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    let dir = cwd.join("local");
    let guard = NodeGuard::new(&dir);

    let out = run(
        cwd,
        &[
            "local", "up", "--detach", "--dir", "local", "--memory", "16MiB",
        ],
    )
    .ok();
    assert!(
        out.stdout.contains("ringctl -c local/client.toml ping"),
        "{out:#?}"
    );
    let pid = guard.pid();
    assert!(running(pid));
    for f in [
        "certs/ca.pem",
        "certs/client-admin.key",
        "node-1.toml",
        "client.toml",
        "node-1/ringcached.log",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    ringcache_client::ClientConfig::from_file(&dir.join("client.toml")).expect("client.toml loads");

    // A second `up` on the same directory is refused while the node runs.
    let line = run(cwd, &["local", "up", "--detach", "--dir", "local"]).failed(1);
    assert!(line.contains("already running"), "{line}");

    let c = ["-c", "local/client.toml"];
    let cmd = |args: &[&str]| run(cwd, &[&c[..], args].concat());

    let out = cmd(&["ping"]).ok();
    assert!(out.stdout.starts_with("pong from node-1"), "{out:#?}");

    let set = cmd(&["--json", "set", "greeting", "hello", "--ttl", "30s"])
        .ok()
        .json();
    let version = set["version"].as_u64().expect("version");
    assert_eq!(set["ttl_ms"], 30_000);

    assert_eq!(cmd(&["get", "greeting"]).ok().stdout, "hello\n");
    let got = cmd(&["--json", "get", "greeting"]).ok().json();
    assert_eq!(got["value"], "hello");
    assert_eq!(got["encoding"], "utf8");
    assert_eq!(got["version"].as_u64(), Some(version));
    let ttl = got["ttl_ms"].as_u64().expect("ttl_ms");
    assert!(ttl > 0 && ttl <= 30_000, "{ttl}");

    // Conditions: exit 4 with the current version in the message.
    let line = cmd(&["set", "greeting", "again", "--if-absent"]).failed(4);
    assert!(
        line.contains("already exists") && line.contains(&version.to_string()),
        "{line}"
    );
    let line = cmd(&[
        "set",
        "greeting",
        "x",
        "--if-version",
        &(version + 1).to_string(),
    ])
    .failed(4);
    assert!(line.contains(&format!("not {}", version + 1)), "{line}");

    // Stats, as JSON a program can read.
    let stats = cmd(&["--json", "stats"]).ok().json();
    let default = stats["namespaces"]
        .as_array()
        .and_then(|a| a.iter().find(|n| n["ns"] == "default"))
        .expect("default namespace")
        .clone();
    assert_eq!(default["entries"], 1);
    assert_eq!(default["capacity_bytes"], 16 << 20);
    assert!(default["hits"].as_u64() >= Some(2), "{default}");
    let table = cmd(&["stats"]).ok().stdout;
    assert!(
        table.starts_with("NAMESPACE") && table.contains("HIT RATIO"),
        "{table}"
    );
    // `ns list` and the other namespace commands: tests/ns.rs.

    // Errors: an unknown namespace, a miss.
    let line = cmd(&["--ns", "nope", "get", "greeting"]).failed(1);
    assert!(line.contains("unknown namespace"), "{line}");
    let line = cmd(&["get", "absent"]).failed(3);
    assert!(line.contains("no value"), "{line}");
    let miss = cmd(&["--json", "get", "absent"]);
    assert_eq!(miss.code, Some(3));
    assert_eq!(miss.json()["found"], false);

    // The same node through flags instead of a file.
    let endpoint = std::fs::read_to_string(dir.join("node-1/listen.addr")).expect("addr");
    let certs = dir.join("certs");
    let p = |f: &str| certs.join(f).display().to_string();
    run(
        cwd,
        &[
            "ping",
            "--endpoint",
            endpoint.trim(),
            "--ca",
            &p("ca.pem"),
            "--cert",
            &p("client-admin.pem"),
            "--key",
            &p("client-admin.key"),
        ],
    )
    .ok();

    let del = cmd(&["--json", "del", "greeting"]).ok().json();
    assert_eq!(del["deleted"], true);
    cmd(&["get", "greeting"]).failed(3);
    assert!(
        cmd(&["del", "greeting"])
            .ok()
            .stdout
            .contains("nothing to delete")
    );

    let out = run(cwd, &["local", "down", "--dir", "local"]).ok();
    assert!(
        out.stdout.contains(&format!("stopped node-1 (pid {pid})")),
        "{out:#?}"
    );
    assert!(
        !running(pid),
        "the node is still running after `local down`"
    );
    assert!(!dir.join("node-1/pid").exists());
    let out = run(cwd, &["local", "down", "--dir", "local"]).ok();
    assert!(out.stdout.contains("no local node is running"), "{out:#?}");

    // Up again: the certificates are reused, so old client configs stay valid.
    let ca_before = std::fs::read(dir.join("certs/ca.pem")).expect("ca");
    let up = run(
        cwd,
        &["--json", "local", "up", "--detach", "--dir", "local"],
    )
    .ok()
    .json();
    assert_eq!(
        up["certs_created"].as_array().map(Vec::len),
        Some(0),
        "{up}"
    );
    assert_eq!(
        std::fs::read(dir.join("certs/ca.pem")).expect("ca"),
        ca_before
    );
    cmd(&["ping"]).ok();
    run(cwd, &["local", "down", "--dir", "local"]).ok();
    drop(guard);
}

#[cfg(unix)]
#[test]
fn local_up_in_the_foreground_stops_the_node_on_sigterm() {
    require_ringcached();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    let guard = NodeGuard::new(&cwd.join(".ringcache/local"));

    // The default directory, so plain `ringctl ping` finds the client config.
    let mut up = ringctl(cwd)
        .args(["local", "up"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ringctl local up");
    let stdout = up.stdout.take().expect("piped");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + COMMAND_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("`local up` did not report the node up in time");
        if line.contains("is up at") {
            break;
        }
    }
    let node = guard.pid();
    assert!(run(cwd, &["ping"]).ok().stdout.starts_with("pong"));

    Command::new("kill")
        .args(["-TERM", &up.id().to_string()])
        .status()
        .expect("kill");
    let status = wait_exit(&mut up, COMMAND_LIMIT).expect("ringctl exits after SIGTERM");
    let mut err = String::new();
    up.stderr
        .take()
        .expect("piped")
        .read_to_string(&mut err)
        .ok();
    assert!(status.success(), "{status}: {err}");
    wait_until("the node to exit", COMMAND_LIMIT, || !running(node));
    assert!(!cwd.join(".ringcache/local/node-1/pid").exists());
    let said: Vec<String> = lines.try_iter().collect();
    assert!(said.iter().any(|l| l == "node-1 stopped"), "{said:?}");
}

#[test]
fn a_node_that_cannot_start_is_reported_in_one_line() {
    require_ringcached();
    let tmp = tempfile::tempdir().expect("temp dir");
    let _guard = NodeGuard::new(&tmp.path().join("local"));
    // 1 MiB over 1024 partitions is below the node's minimum per partition.
    let line = run(
        tmp.path(),
        &[
            "local", "up", "--detach", "--dir", "local", "--memory", "1MiB",
        ],
    )
    .failed(1);
    assert!(line.contains("exited") && line.contains("memory"), "{line}");
    assert!(!tmp.path().join("local/node-1/pid").exists());
}

#[test]
fn configuration_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();

    let line = run(cwd, &["-c", "missing/client.toml", "ping"]).failed(1);
    assert!(
        line.contains("missing/client.toml") && line.contains("cannot read"),
        "{line}"
    );

    // Through the environment variable too.
    let mut cmd = ringctl(cwd);
    cmd.env("RINGCACHE_CONFIG", "elsewhere.toml").arg("ping");
    let line = finish(cmd).failed(1);
    assert!(line.contains("elsewhere.toml"), "{line}");

    let line = run(cwd, &["get", "k"]).failed(1);
    assert!(
        line.contains("no client config") && line.contains("ringctl local up"),
        "{line}"
    );

    let line = run(cwd, &["ping", "--endpoint", "127.0.0.1:1"]).failed(1);
    assert!(line.contains("--ca, --cert and --key"), "{line}");

    std::fs::write(cwd.join("bad.toml"), "endpoints = 3\n").expect("write");
    let line = run(cwd, &["-c", "bad.toml", "ping"]).failed(1);
    assert!(line.contains("bad.toml"), "{line}");

    let line = run(cwd, &["local", "up", "--nodes", "0"]).failed(2);
    assert!(line.contains("--nodes"), "{line}");
    let line = run(cwd, &["cluster", "remove", "two"]).failed(2);
    assert!(line.contains("not a node id"), "{line}");
    let line = run(cwd, &["local", "add", "--dir", "nothing-here"]).failed(1);
    assert!(line.contains("no local cluster in nothing-here"), "{line}");

    let line = run(cwd, &["set", "k", "v", "--ttl", "soon"]).failed(2);
    assert!(line.contains("soon"), "{line}");

    // A ringctl with no ringcached beside it or on PATH says how to get one.
    let lonely = cwd.join("bin/ringctl");
    std::fs::create_dir_all(cwd.join("bin")).expect("mkdir");
    std::fs::copy(RINGCTL, &lonely).expect("copy ringctl");
    let mut cmd = Command::new(&lonely);
    cmd.current_dir(cwd)
        .env("PATH", cwd.join("empty"))
        .env_remove("RINGCACHED_BIN")
        .args(["local", "up", "--detach", "--dir", "x"]);
    let line = finish(cmd).failed(1);
    assert!(
        line.contains("cannot find ringcached next to ringctl or on PATH")
            && line.contains("cargo build --release"),
        "{line}"
    );

    let out = run(cwd, &["local", "down", "--dir", "nothing-here"]).ok();
    assert!(out.stdout.contains("no local node is running"), "{out:#?}");
}
