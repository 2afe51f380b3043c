//! Configuration: the example file validates; every kind of mistake gets one line
//! naming the field.

use std::path::Path;
use std::time::Duration;

use ringcache_node::config::{NodeConfig, parse_bytes, parse_duration};

const MINIMAL: &str = r#"
node_id = 3
data_dir = "data"
[tls]
ca = "certs/ca.pem"
cert = "certs/node-3.pem"
key = "certs/node-3.key"
"#;

fn validate(text: &str) -> Result<ringcache_node::config::ValidConfig, String> {
    NodeConfig::from_toml(text)?
        .validate(Path::new("/etc/ringcache"))
        .map_err(|e| e.to_string())
}

#[test]
fn the_example_config_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-config/single-node.toml");
    let cfg = NodeConfig::from_file(&path).expect("parses");
    let base = path.parent().expect("has a directory");
    let v = cfg.validate(base).expect("valid");
    assert_eq!(v.partitions, 1024);
    assert_eq!(v.namespaces["default"].memory, 256 << 20);
    assert!(v.tls.ca.is_absolute() && v.tls.ca.ends_with("certs/ca.pem"));
}

#[test]
fn the_strategies_example_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../cluster-config/strategies.toml");
    let cfg = NodeConfig::from_file(&path).expect("parses");
    let v = cfg.validate(path.parent().expect("dir")).expect("valid");
    assert_eq!(v.namespaces.len(), 4);
    assert!(v.namespaces["sessions"].write_behind.wal);
}

#[test]
fn defaults_fill_everything_else() {
    let v = validate(MINIMAL).expect("valid");
    assert_eq!(v.listen.to_string(), "127.0.0.1:7700");
    assert_eq!(v.partitions, 1024);
    assert_eq!(v.namespaces.keys().collect::<Vec<_>>(), vec!["default"]);
    assert_eq!(v.data_dir, Path::new("/etc/ringcache/data"));
    assert_eq!(v.tls.cluster_domain, "ringcache.local");
}

#[test]
fn unknown_keys_are_refused_with_the_line_and_the_name() {
    let err = validate(&format!("{MINIMAL}\n[limits]\nmax_kye = 10\n")).expect_err("typo");
    assert!(err.contains("max_kye") && err.contains("line"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    let err = validate(&format!("colour = 1\n{MINIMAL}")).expect_err("unknown top-level key");
    assert!(err.contains("colour"), "{err}");
}

#[test]
fn bad_values_name_their_field() {
    let cases = [
        (MINIMAL.replace("node_id = 3", "node_id = 0"), "node_id"),
        (
            format!("{MINIMAL}\n[namespaces.cache]\nmemory = \"1KiB\"\n"),
            "namespaces.cache.memory",
        ),
        (
            format!("{MINIMAL}\n[namespaces.cache]\nmemory = \"12 parsecs\"\n"),
            "parsecs",
        ),
        (
            format!("{MINIMAL}\n[namespaces.cache]\ndefault_ttl = \"soon\"\n"),
            "soon",
        ),
        (
            format!("{MINIMAL}\n[namespaces.cache]\npolicy = \"mru\"\n"),
            "mru",
        ),
        (
            format!("{MINIMAL}\n[namespaces.\"bad name\"]\n"),
            "namespaces.bad name",
        ),
        (
            format!("{MINIMAL}\n[limits]\nmax_value = \"32MiB\"\n"),
            "limits.max_value",
        ),
        (
            format!("{MINIMAL}\n[cluster]\ndown_after = \"3s\"\nfence_after = \"3s\"\n"),
            "cluster.fence_after",
        ),
        (
            format!("{MINIMAL}\n[cluster]\ndown_after = \"1s\"\n"),
            "cluster.down_after",
        ),
        (
            MINIMAL.replace("node_id = 3", "node_id = 3\npartitions = 0"),
            "partitions",
        ),
        (
            MINIMAL.replace("node_id = 3", "node_id = 3\nlisten = \"nowhere\""),
            "listen",
        ),
        (
            format!("{MINIMAL}\n[namespaces.users]\nread = \"read-through\"\n"),
            "namespaces.users.store",
        ),
        (
            format!("{MINIMAL}\n[namespaces.users]\nwrite = \"write-sideways\"\n"),
            "write-sideways",
        ),
        (
            format!("{MINIMAL}\n[namespaces.users]\nnegative_ttl = \"1s\"\n"),
            "namespaces.users.negative_ttl",
        ),
        (
            format!(
                "{MINIMAL}\n[namespaces.users]\nread = \"read-through\"\ndefault_ttl = \"1m\"\nrefresh_ahead_factor = 1.5\n[namespaces.users.store]\npath = \"u.db\"\n"
            ),
            "namespaces.users.refresh_ahead_factor",
        ),
        (
            format!(
                "{MINIMAL}\n[namespaces.users]\nread = \"read-through\"\nstale_while_revalidate = \"1m\"\n[namespaces.users.store]\npath = \"u.db\"\n"
            ),
            "namespaces.users.stale_while_revalidate",
        ),
        (
            format!(
                "{MINIMAL}\n[namespaces.users]\nwrite = \"write-behind\"\n[namespaces.users.store]\npath = \"u.db\"\n[namespaces.users.write_behind]\nbatch_size = 0\n"
            ),
            "namespaces.users.write_behind.batch_size",
        ),
        (
            format!(
                "{MINIMAL}\n[namespaces.users]\nwrite = \"write-through\"\n[namespaces.users.store]\nkind = \"postgres\"\n"
            ),
            "namespaces.users.store",
        ),
        (
            format!(
                "{MINIMAL}\n[namespaces.users]\nwrite = \"write-behind\"\n[namespaces.users.store]\npath = \"u.db\"\n[namespaces.users.write_behind]\nfsync = \"sometimes\"\n"
            ),
            "sometimes",
        ),
    ];
    for (text, needle) in cases {
        let err = validate(&text).expect_err(needle);
        assert!(err.contains(needle), "expected {needle:?} in: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
}

#[test]
fn sizes_and_durations_parse_with_units() {
    assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
    assert_eq!(parse_bytes("512k"), Ok(512 << 10));
    assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
    assert!(parse_bytes("-1").is_err());
    assert!(
        parse_bytes("99999999999TiB").is_err(),
        "overflow is an error"
    );
    assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
    assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
    assert!(parse_duration("2 fortnights").is_err());
}

#[test]
fn strategy_settings_parse_and_round_trip() {
    let text = format!(
        "{MINIMAL}\n[namespaces.users]\nread = \"read-through\"\nwrite = \"write-behind\"\ndefault_ttl = \"10m\"\nnegative_ttl = \"30s\"\nrefresh_ahead_factor = 0.8\nstale_while_revalidate = \"1m\"\n[namespaces.users.store]\npath = \"users.db\"\n[namespaces.users.write_behind]\nbatch_size = 100\nwal = true\nfsync = \"interval\"\n"
    );
    let v = validate(&text).expect("valid");
    let ns = &v.namespaces["users"];
    assert_eq!(ns.write_behind.batch_size, 100);
    assert_eq!(ns.refresh_ahead_factor, Some(0.8));
    assert_eq!(ns.stale_while_revalidate, Some(Duration::from_secs(60)));
    // The rendered settings parse back to the same ones (what `ns show` and `ns alter` rely on).
    let again =
        ringcache_node::config::NamespaceConfig::from_toml(&ns.to_toml(false)).expect("round trip");
    assert_eq!(again.to_toml(false), ns.to_toml(false));
    assert_eq!(again.default_ttl, Some(Duration::from_secs(600)));
    let patched = ns
        .patched("write_behind.batch_size = 7\npolicy = \"lfu\"")
        .expect("patch");
    assert_eq!(patched.write_behind.batch_size, 7);
    assert!(
        patched.write_behind.wal,
        "fields the patch does not name are kept"
    );
    assert!(ns.patched("write_behind = 3").is_err());
}

#[test]
fn fence_after_defaults_to_half_of_down_after() {
    let v = validate(&format!("{MINIMAL}\n[cluster]\ndown_after = \"4s\"\n")).expect("valid");
    let c = v.cluster.expect("cluster section");
    assert_eq!(c.fence_after(), Duration::from_secs(2));
    let v = validate(&format!(
        "{MINIMAL}\n[cluster]\ndown_after = \"4s\"\nfence_after = \"1500ms\"\n"
    ))
    .expect("valid");
    assert_eq!(
        v.cluster.expect("cluster").fence_after(),
        Duration::from_millis(1500)
    );
}
