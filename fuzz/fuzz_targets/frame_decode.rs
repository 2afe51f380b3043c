//! Feeds arbitrary bytes to the frame decoders the way the two ends of a stream read
//! them: the node (`peek_request` for a GET or SET read in place, else
//! `decode_request`) and the client (`decode_response`), decoding until "need more" or
//! a fatal error. It must never panic, never loop without consuming, never allocate
//! beyond what libFuzzer allows (`-rss_limit_mb`), and the in-place reading must agree
//! with `decode_request` on every frame it reads.
#![no_main]

use bytes::{Buf, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringcache_proto::{Request, decode_request, decode_response, peek_request};

/// The node's stream loop.
fn drain_requests(data: &[u8], max: u32) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        if let Some((id, req, len)) = peek_request(&buf, max) {
            let owned = Request {
                epoch: req.epoch,
                op: req.op.to_op(),
            };
            let mut copy = buf.clone();
            assert_eq!(
                decode_request(&mut copy, max),
                Ok(Some((id, owned))),
                "peek_request and decode_request disagree"
            );
            assert_eq!(copy.len(), before - len, "different frame lengths");
            assert!(len > 0 && len <= before);
            buf.advance(len);
            continue;
        }
        match decode_request(&mut buf, max) {
            Ok(Some(_)) => assert!(buf.len() < before),
            Ok(None) => break,
            Err(e) if e.is_fatal() => break,
            Err(_) => assert!(buf.len() < before, "non-fatal error without progress"),
        }
    }
}

/// The client's reader.
fn drain_responses(data: &[u8], max: u32) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match decode_response(&mut buf, max) {
            Ok(Some(_)) => assert!(buf.len() < before),
            Ok(None) => break,
            Err(e) if e.is_fatal() => break,
            Err(_) => assert!(buf.len() < before, "non-fatal error without progress"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the frame limit, so tiny and default limits both get tried.
    let (max, rest) = match data.split_first() {
        Some((&b, rest)) if b < 128 => (u32::from(b) * 64 + 10, rest),
        Some((_, rest)) => (ringcache_proto::DEFAULT_MAX_FRAME, rest),
        None => return,
    };
    drain_requests(rest, max);
    drain_responses(rest, max);
});
