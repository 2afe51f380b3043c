//! Limits and error codes.

use bytes::Bytes;
use ringcache_proto::{ErrorCode, Limits, Op, SetItem, WriteCondition, valid_namespace};

fn set(key: usize, value: usize) -> Op {
    Op::Set {
        ns: "users".into(),
        key: Bytes::from(vec![b'k'; key]),
        value: Bytes::from(vec![b'v'; value]),
        ttl_ms: None,
        condition: WriteCondition::Always,
    }
}

#[test]
fn sizes_at_the_limit_pass_and_one_over_fails_with_the_right_code() {
    let l = Limits {
        max_frame: 1 << 20,
        max_key: 10,
        max_value: 100,
        max_batch: 2,
    };
    assert!(l.check(&set(10, 100)).is_ok());
    let e = l.check(&set(11, 1)).expect_err("key too large");
    assert_eq!(e.code, ErrorCode::KeyTooLarge);
    assert!(e.message.contains("max_key = 10"), "{}", e.message);
    let e = l.check(&set(1, 101)).expect_err("value too large");
    assert_eq!(e.code, ErrorCode::ValueTooLarge);
    let many = Op::SetMany {
        ns: "users".into(),
        items: vec![
            SetItem {
                key: Bytes::new(),
                value: Bytes::new(),
                ttl_ms: None
            };
            3
        ],
    };
    assert_eq!(
        l.check(&many).expect_err("batch").code,
        ErrorCode::Malformed
    );
    let bad_item = Op::GetMany {
        ns: "users".into(),
        keys: vec![Bytes::from(vec![0u8; 11])],
    };
    assert_eq!(
        l.check(&bad_item).expect_err("key in batch").code,
        ErrorCode::KeyTooLarge
    );
}

#[test]
fn namespaces_are_short_plain_names() {
    for ok in ["a", "users", "sessions.v2", "a-b_c", &"x".repeat(64)] {
        assert!(valid_namespace(ok), "{ok}");
    }
    for bad in ["", "has space", "ünïcode", "slash/y", &"x".repeat(65)] {
        assert!(!valid_namespace(bad), "{bad}");
        let op = Op::Get {
            ns: bad.to_owned(),
            key: Bytes::new(),
        };
        assert_eq!(
            Limits::default().check(&op).expect_err("bad ns").code,
            ErrorCode::Malformed
        );
    }
}

#[test]
fn error_codes_are_stable_numbers_and_unknown_ones_degrade_to_internal() {
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_wire(code as u16), code);
    }
    assert_eq!(ErrorCode::NotOwner as u16, 20, "wire numbers never change");
    assert_eq!(ErrorCode::from_wire(12345), ErrorCode::Internal);
    assert!(ErrorCode::NotOwner.is_retryable());
    assert!(!ErrorCode::ConditionFailed.is_retryable());
    assert!(
        !ErrorCode::Timeout.is_retryable(),
        "a timed-out write may have applied"
    );
}
