//! Every operation through the handler, as a client would see it.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use ringcache_node::config::NamespaceConfig;
use ringcache_node::handler::{Handler, Reply};
use ringcache_node::keyspace::Keyspace;
use ringcache_proto::{
    Epoch, ErrorCode, Limits, NodeId, Op, Request, Response, SetItem, WireError, WriteCondition,
};

fn handler() -> Handler {
    let namespaces = BTreeMap::from([
        (
            "default".to_owned(),
            NamespaceConfig {
                memory: 1 << 20,
                ..NamespaceConfig::default()
            },
        ),
        (
            "short".to_owned(),
            NamespaceConfig {
                memory: 1 << 20,
                default_ttl: Some(std::time::Duration::from_secs(60)),
                ..NamespaceConfig::default()
            },
        ),
    ]);
    Handler::new(
        Arc::new(Keyspace::new(16, &namespaces)),
        Limits {
            max_frame: 1 << 20,
            max_key: 64,
            max_value: 4096,
            max_batch: 8,
        },
        NodeId(1),
        "127.0.0.1:7700".into(),
    )
}

/// Namespaces without a store answer at once: a pending reply here is a bug.
fn call(h: &Handler, op: Op) -> Response {
    match h.handle(Request {
        epoch: Epoch(0),
        op,
    }) {
        Reply::Ready(r) => r,
        Reply::Pending(_) => panic!("a namespace without a store answered later"),
    }
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

fn set(h: &Handler, key: &str, value: &str, condition: WriteCondition) -> Response {
    call(
        h,
        Op::Set {
            ns: "default".into(),
            key: b(key),
            value: b(value),
            ttl_ms: None,
            condition,
        },
    )
}

fn get(h: &Handler, key: &str) -> Response {
    call(
        h,
        Op::Get {
            ns: "default".into(),
            key: b(key),
        },
    )
}

fn error_code(r: &Response) -> Option<ErrorCode> {
    match r {
        Response::Error(WireError { code, .. }) => Some(*code),
        _ => None,
    }
}

#[test]
fn set_get_delete_and_versions() {
    let h = handler();
    assert_eq!(get(&h, "k"), Response::Value(None));
    let Response::Stored { version: v1 } = set(&h, "k", "one", WriteCondition::Always) else {
        panic!("set failed")
    };
    let Response::Value(Some(e)) = get(&h, "k") else {
        panic!("missing")
    };
    assert_eq!((e.value, e.version, e.ttl_ms), (b("one"), v1, None));
    let Response::Stored { version: v2 } = set(&h, "k", "two", WriteCondition::Always) else {
        panic!("set failed")
    };
    assert!(v2 > v1, "versions grow: {v1} then {v2}");
    assert_eq!(
        call(
            &h,
            Op::Exists {
                ns: "default".into(),
                key: b("k")
            }
        ),
        Response::Exists(true)
    );
    assert_eq!(
        call(
            &h,
            Op::Delete {
                ns: "default".into(),
                key: b("k"),
                if_version: None
            }
        ),
        Response::Deleted(true)
    );
    assert_eq!(
        call(
            &h,
            Op::Delete {
                ns: "default".into(),
                key: b("k"),
                if_version: None
            }
        ),
        Response::Deleted(false)
    );
    assert_eq!(get(&h, "k"), Response::Value(None));
}

#[test]
fn compare_and_set_conflicts_report_the_current_version() {
    let h = handler();
    let Response::Stored { version } = set(&h, "k", "a", WriteCondition::IfAbsent) else {
        panic!("first IfAbsent must store")
    };
    let r = set(&h, "k", "b", WriteCondition::IfAbsent);
    assert_eq!(error_code(&r), Some(ErrorCode::ConditionFailed));
    let r = set(&h, "k", "b", WriteCondition::IfVersion(version + 100));
    let Response::Error(e) = r else {
        panic!("stale CAS must fail")
    };
    assert_eq!(
        (e.code, e.hints.current_version),
        (ErrorCode::ConditionFailed, Some(version))
    );
    assert!(matches!(
        set(&h, "k", "c", WriteCondition::IfVersion(version)),
        Response::Stored { .. }
    ));
    let Response::Value(Some(e)) = get(&h, "k") else {
        panic!("missing")
    };
    assert_eq!(e.value, b("c"));
    let r = call(
        &h,
        Op::Delete {
            ns: "default".into(),
            key: b("k"),
            if_version: Some(1),
        },
    );
    assert_eq!(error_code(&r), Some(ErrorCode::ConditionFailed));
}

#[test]
fn batches_touch_increment_purge_stats() {
    let h = handler();
    let items = ["a1", "a2", "b1"]
        .iter()
        .map(|k| SetItem {
            key: b(k),
            value: b("v"),
            ttl_ms: Some(60_000),
        })
        .collect();
    let Response::StoredMany(res) = call(
        &h,
        Op::SetMany {
            ns: "default".into(),
            items,
        },
    ) else {
        panic!("set many")
    };
    assert!(res.iter().all(Result::is_ok));
    let Response::Values(vals) = call(
        &h,
        Op::GetMany {
            ns: "default".into(),
            keys: vec![b("a1"), b("zz"), b("b1")],
        },
    ) else {
        panic!("get many")
    };
    assert_eq!(
        vals.iter().map(Option::is_some).collect::<Vec<_>>(),
        vec![true, false, true]
    );
    assert!(
        vals[0]
            .as_ref()
            .and_then(|e| e.ttl_ms)
            .is_some_and(|t| t <= 60_000)
    );

    assert_eq!(
        call(
            &h,
            Op::Touch {
                ns: "default".into(),
                key: b("a1"),
                ttl_ms: None
            }
        ),
        Response::Touched(true)
    );
    let Response::Value(Some(e)) = get(&h, "a1") else {
        panic!("missing")
    };
    assert_eq!(e.ttl_ms, None, "touch with no ttl removes the expiry");

    let inc = |d| {
        call(
            &h,
            Op::Increment {
                ns: "default".into(),
                key: b("n"),
                delta: d,
                ttl_ms: None,
            },
        )
    };
    assert_eq!(inc(5), Response::Counter(5));
    assert_eq!(inc(-7), Response::Counter(-2));
    let r = call(
        &h,
        Op::Increment {
            ns: "default".into(),
            key: b("a1"),
            delta: 1,
            ttl_ms: None,
        },
    );
    assert_eq!(error_code(&r), Some(ErrorCode::NotANumber));
    assert!(matches!(
        set(&h, "max", &i64::MAX.to_string(), WriteCondition::Always),
        Response::Stored { .. }
    ));
    let r = call(
        &h,
        Op::Increment {
            ns: "default".into(),
            key: b("max"),
            delta: 1,
            ttl_ms: None,
        },
    );
    assert_eq!(
        error_code(&r),
        Some(ErrorCode::NotANumber),
        "overflow is an error, not a wrap"
    );

    assert_eq!(
        call(
            &h,
            Op::Purge {
                ns: "default".into(),
                prefix: b("a")
            }
        ),
        Response::Purged(2)
    );
    assert_eq!(get(&h, "a2"), Response::Value(None));
    assert!(matches!(get(&h, "b1"), Response::Value(Some(_))));

    let Response::Stats(stats) = call(
        &h,
        Op::Stats {
            ns: Some("default".into()),
        },
    ) else {
        panic!("stats")
    };
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].entries, 3, "b1, n and max remain: {:?}", stats[0]);
    assert!(stats[0].hits >= 3 && stats[0].misses >= 1, "{:?}", stats[0]);
    assert_eq!(stats[0].capacity_bytes, 1 << 20);
}

#[test]
fn namespace_default_ttl_applies_when_a_write_names_none() {
    let h = handler();
    call(
        &h,
        Op::Set {
            ns: "short".into(),
            key: b("k"),
            value: b("v"),
            ttl_ms: None,
            condition: WriteCondition::Always,
        },
    );
    let Response::Value(Some(e)) = call(
        &h,
        Op::Get {
            ns: "short".into(),
            key: b("k"),
        },
    ) else {
        panic!("missing")
    };
    assert!(
        e.ttl_ms.is_some_and(|t| t > 50_000 && t <= 60_000),
        "{:?}",
        e.ttl_ms
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let h = handler();
    let r = call(
        &h,
        Op::Get {
            ns: "nope".into(),
            key: b("k"),
        },
    );
    let Response::Error(e) = r else {
        panic!("unknown namespace must fail")
    };
    assert_eq!(e.code, ErrorCode::UnknownNamespace);
    assert!(e.message.contains("nope"), "{}", e.message);
    let r = call(
        &h,
        Op::Get {
            ns: "default".into(),
            key: Bytes::from(vec![b'k'; 65]),
        },
    );
    assert_eq!(error_code(&r), Some(ErrorCode::KeyTooLarge));
    let r = set(&h, "k", &"v".repeat(4097), WriteCondition::Always);
    assert_eq!(error_code(&r), Some(ErrorCode::ValueTooLarge));
    let r = call(
        &h,
        Op::GetMany {
            ns: "default".into(),
            keys: vec![b("k"); 9],
        },
    );
    assert_eq!(error_code(&r), Some(ErrorCode::Malformed));
    // The node keeps serving after every one of them.
    assert!(matches!(
        set(&h, "k", "v", WriteCondition::Always),
        Response::Stored { .. }
    ));
}

#[test]
fn ping_and_cluster_info_describe_a_one_node_cluster() {
    let h = handler();
    assert_eq!(call(&h, Op::Ping), Response::Pong { node: NodeId(1) });
    let Response::ClusterInfo(info) = call(&h, Op::ClusterInfo) else {
        panic!("info")
    };
    assert_eq!(info.partitions, 16);
    assert_eq!(info.owners.len(), 16);
    assert!(info.owners.iter().all(|&o| o == NodeId(1)));
    assert_eq!(info.members[0].addr, "127.0.0.1:7700");
}
