//! Black-box: `ringctl ns ...` and `ringctl writebehind ...` against the real
//! `ringcached` (`cargo build --workspace` builds both). Every command and wait is
//! bounded.
//!
//! The tests that need a node are ignored until the node's namespace operations land
//! (it answers `unsupported` to them until then); the ones about the command line run
//! without a node.

use std::path::{Path, PathBuf};

use tempfile::TempDir;

mod common;
use common::*;

/// A detached local node in a temp dir, killed on drop if a test fails.
struct Node {
    // Dropped first: the node goes before its directory.
    _guard: NodeGuard,
    tmp: TempDir,
}

impl Node {
    fn start() -> Self {
        require_ringcached();
        let tmp = tempfile::tempdir().expect("temp dir");
        let guard = NodeGuard::new(&tmp.path().join("local"));
        run(
            tmp.path(),
            &[
                "local", "up", "--detach", "--dir", "local", "--memory", "16MiB",
            ],
        )
        .ok();
        Self { _guard: guard, tmp }
    }

    fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// `ringctl -c local/client.toml args...`
    #[track_caller]
    fn ctl(&self, args: &[&str]) -> Output {
        run(
            self.dir(),
            &[&["-c", "local/client.toml"][..], args].concat(),
        )
    }

    fn db(&self, name: &str) -> PathBuf {
        self.dir().join(name)
    }

    fn stop(self) {
        run(self.dir(), &["local", "down", "--dir", "local"]).ok();
    }
}

/// The namespace `ns` of a `{"namespaces": [...]}` answer.
#[track_caller]
fn find<'a>(json: &'a serde_json::Value, ns: &str) -> Option<&'a serde_json::Value> {
    json["namespaces"]
        .as_array()
        .unwrap_or_else(|| panic!("no namespaces array: {json}"))
        .iter()
        .find(|n| n["ns"] == ns)
}

#[track_caller]
fn toml_of(text: &str) -> toml::Table {
    text.parse()
        .unwrap_or_else(|e| panic!("not TOML ({e}):\n{text}"))
}

#[test]
fn ns_create_show_alter_and_list() {
    let node = Node::start();
    let db = node.db("users.db");
    let path = format!("store.path={}", db.display());

    let created = node
        .ctl(&[
            "--json",
            "ns",
            "create",
            "users",
            "--read",
            "read-through",
            "--policy",
            "lfu",
            "--memory",
            "16MiB",
            "--default-ttl",
            "10m",
            "--set",
            "store.kind=sqlite",
            "--set",
            &path,
            "--set",
            "store.create_table=true",
        ])
        .ok()
        .json();
    assert_eq!(created["ns"], "users", "{created}");
    let config = &created["config"];
    assert_eq!(config["read"], "read-through", "{created}");
    assert_eq!(config["policy"], "lfu", "{created}");
    assert_eq!(config["store"]["kind"], "sqlite", "{created}");
    assert_eq!(
        config["store"]["path"],
        db.display().to_string(),
        "{created}"
    );
    assert!(
        !config["memory"].is_null() && !config["default_ttl"].is_null(),
        "{created}"
    );

    // Human `show`: the node's TOML as is.
    let shown = toml_of(&node.ctl(&["ns", "show", "users"]).ok().stdout);
    assert_eq!(shown["read"].as_str(), Some("read-through"));
    assert_eq!(shown["store"]["kind"].as_str(), Some("sqlite"));
    let shown_json = node.ctl(&["--json", "ns", "show", "users"]).ok().json();
    assert_eq!(shown_json, created);

    // Alter changes what it names and keeps the rest; the output is still TOML.
    let out = node.ctl(&["ns", "alter", "users", "--policy", "lru"]).ok();
    assert!(
        out.stdout.starts_with("# altered namespace users\n"),
        "{out:#?}"
    );
    let altered = toml_of(&out.stdout);
    assert_eq!(altered["policy"].as_str(), Some("lru"));
    assert_eq!(altered["read"].as_str(), Some("read-through"));
    assert_eq!(
        altered["store"]["path"].as_str(),
        Some(&*db.display().to_string())
    );

    let list = node.ctl(&["--json", "ns", "list"]).ok().json();
    assert!(find(&list, "default").is_some(), "{list}");
    let users = find(&list, "users").expect("users listed");
    assert_eq!(users["config"]["policy"], "lru", "{list}");
    let only = node
        .ctl(&["--json", "--ns", "users", "ns", "list"])
        .ok()
        .json();
    assert_eq!(
        only["namespaces"].as_array().map(Vec::len),
        Some(1),
        "{only}"
    );

    let table = node.ctl(&["ns", "list"]).ok().stdout;
    assert!(table.starts_with("NAMESPACE"), "{table}");
    let row = table
        .lines()
        .find(|l| l.starts_with("users "))
        .unwrap_or_else(|| panic!("no users row: {table}"));
    assert!(row.contains("lru") && row.contains("read-through"), "{row}");

    // The namespace serves data, and its counters include the store's.
    node.ctl(&["--ns", "users", "get", "nobody"]).failed(3);
    let stats = node.ctl(&["--json", "--ns", "users", "stats"]).ok().json();
    let s = find(&stats, "users").expect("users stats");
    for field in [
        "store_loads",
        "store_errors",
        "refreshes",
        "coalesced_loads",
    ] {
        assert!(s[field].is_u64(), "{field}: {s}");
    }
    let table = node.ctl(&["stats"]).ok().stdout;
    assert!(table.contains("STORE ERRORS"), "{table}");

    // Creating it again is refused.
    let line = node
        .ctl(&["ns", "create", "users", "--policy", "lru"])
        .failed(1);
    assert!(
        line.contains("already_exists") && line.contains("users"),
        "{line}"
    );
    node.stop();
}

#[test]
fn writebehind_status_and_flush() {
    let node = Node::start();
    let db = node.db("orders.db");
    let path = format!("store.path={}", db.display());
    let file = node.dir().join("orders.toml");
    // The batch waits long enough that the writes are still queued when asked for.
    std::fs::write(
        &file,
        "write = \"write-behind\"\n[write_behind]\nbatch_size = 1000\nbatch_delay = \"1m\"\n",
    )
    .expect("write the settings file");
    let created = node
        .ctl(&[
            "--json",
            "ns",
            "create",
            "orders",
            "--file",
            &file.display().to_string(),
            "--set",
            "store.kind=sqlite",
            "--set",
            &path,
            "--set",
            "store.create_table=true",
        ])
        .ok()
        .json();
    assert_eq!(created["config"]["write"], "write-behind", "{created}");
    assert_eq!(
        created["config"]["write_behind"]["batch_size"], 1000,
        "{created}"
    );

    for i in 0..3 {
        node.ctl(&["--ns", "orders", "set", &format!("order:{i}"), "paid"])
            .ok();
    }
    let status = node
        .ctl(&["--json", "writebehind", "status", "orders"])
        .ok()
        .json();
    let orders = find(&status, "orders").unwrap_or_else(|| panic!("{status}"));
    assert_eq!(orders["enqueued"], 3, "{status}");
    assert!(orders["capacity"].as_u64() > Some(0), "{status}");
    let depth = orders["depth"].as_u64().expect("depth");
    assert!(depth <= 3, "{status}");
    assert_eq!(orders["dead_letter_count"], 0, "{status}");

    // Every write-behind namespace, and only those.
    let all = node.ctl(&["--json", "writebehind", "status"]).ok().json();
    assert!(find(&all, "orders").is_some(), "{all}");
    assert!(find(&all, "default").is_none(), "{all}");

    let flushed = node
        .ctl(&["--json", "writebehind", "flush", "orders"])
        .ok()
        .json();
    let orders = find(&flushed, "orders").unwrap_or_else(|| panic!("{flushed}"));
    assert_eq!(orders["depth"], 0, "{flushed}");
    assert_eq!(orders["flushed"], 3, "{flushed}");
    assert!(orders["oldest_ms"].is_null(), "{flushed}");
    assert!(flushed["elapsed_ms"].is_u64(), "{flushed}");
    assert!(db.is_file(), "the store holds the flushed writes");

    let out = node.ctl(&["writebehind", "flush"]).ok();
    assert!(out.stdout.starts_with("flush finished in"), "{out:#?}");
    let table = node.ctl(&["writebehind", "status"]).ok().stdout;
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("NAMESPACE") && lines[0].contains("DEAD LETTERS"),
        "{table}"
    );
    let row: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("orders "))
        .unwrap_or_else(|| panic!("no orders row: {table}"))
        .split_whitespace()
        .collect();
    // namespace, depth, capacity, oldest, enqueued, flushed, ...
    assert_eq!(
        (row[1], row[3], row[4], row[5]),
        ("0", "-", "3", "3"),
        "{table}"
    );
    node.stop();
}

#[test]
fn unknown_namespaces_fail_with_exit_1() {
    let node = Node::start();
    for args in [
        &["ns", "show", "nope"][..],
        &["ns", "alter", "nope", "--policy", "lru"],
        &["--ns", "nope", "ns", "list"],
        &["writebehind", "status", "nope"],
        &["writebehind", "flush", "nope"],
    ] {
        let line = node.ctl(args).failed(1);
        assert!(
            line.contains("unknown_namespace") && line.contains("nope"),
            "{args:?}: {line}"
        );
    }
    node.stop();
}

#[test]
fn invalid_settings_are_refused_naming_the_field() {
    let node = Node::start();
    for (args, field) in [
        (
            &["ns", "create", "bad", "--set", "refresh_ahead_factor=2"][..],
            "refresh_ahead_factor",
        ),
        (&["ns", "create", "bad", "--policy", "sometimes"], "policy"),
        (
            &["ns", "create", "bad", "--set", "store.kind=oracle"],
            "kind",
        ),
        (
            &["ns", "alter", "default", "--set", "refresh_ahead_factor=2"],
            "refresh_ahead_factor",
        ),
    ] {
        let line = node.ctl(args).failed(1);
        assert!(
            line.contains("invalid_config") && line.contains(field),
            "{args:?}: {line}"
        );
    }
    let list = node.ctl(&["--json", "ns", "list"]).ok().json();
    assert!(find(&list, "bad").is_none(), "{list}");
    node.stop();
}

/// Settings mistakes are reported before connecting: these run where no client
/// configuration exists, so reaching the connection would say "no client config".
#[test]
fn settings_mistakes_are_one_line_before_any_connection() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cwd = tmp.path();
    for (args, code, says) in [
        (
            &["ns", "create", "x", "--set", "a..b=1"][..],
            2,
            "empty part",
        ),
        (&["ns", "create", "x", "--set", "=x"], 2, "no key"),
        (&["ns", "create", "x", "--set", "novalue"], 2, "KEY=VALUE"),
        (&["ns", "create", "x", "--memory", "lots"], 2, "lots"),
        (&["ns", "alter", "x", "--default-ttl", "soon"], 2, "soon"),
        (&["writebehind", "flush", "--wait", "soon"], 2, "soon"),
        (
            &[
                "ns",
                "create",
                "x",
                "--set",
                "store=1",
                "--set",
                "store.kind=x",
            ],
            1,
            "cannot set store.kind: store is already 1",
        ),
        (
            &[
                "ns",
                "create",
                "x",
                "--policy",
                "lru",
                "--set",
                "policy=lfu",
            ],
            1,
            "policy is given twice",
        ),
        (
            &["ns", "create", "x", "--file", "missing.toml"],
            1,
            "cannot read --file missing.toml",
        ),
        (&["ns", "alter", "x"], 1, "nothing to change"),
    ] {
        let line = run(cwd, args).failed(code);
        assert!(line.contains(says), "{args:?}: {line}");
        assert!(!line.contains("no client config"), "{args:?}: {line}");
    }

    // A good command line gets as far as the connection.
    std::fs::write(cwd.join("ns.toml"), "policy = \"lru\"\n").expect("write");
    let line = run(
        cwd,
        &[
            "ns",
            "create",
            "x",
            "--file",
            "ns.toml",
            "--set",
            "store.kind=sqlite",
        ],
    )
    .failed(1);
    assert!(line.contains("no client config"), "{line}");
}
