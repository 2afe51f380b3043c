//! Feeds arbitrary bytes to the frame decoder, as requests and as responses, the way a
//! connection reader does: decode until "need more" or a fatal error. It must never
//! panic, never loop without consuming, and never allocate beyond what libFuzzer allows
//! (`-rss_limit_mb`).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use ringcache_proto::{Request, Response, decode};

fn drain<T: serde_like::Decode>(data: &[u8], max: u32) {
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.len();
        match T::decode(&mut buf, max) {
            Ok(true) => assert!(buf.len() < before),
            Ok(false) => break,
            Err(fatal) if fatal => break,
            Err(_) => assert!(buf.len() < before, "non-fatal error without progress"),
        }
    }
}

mod serde_like {
    use bytes::BytesMut;

    /// Decode one frame: Ok(true) decoded, Ok(false) needs more, Err(fatal?).
    pub trait Decode {
        fn decode(buf: &mut BytesMut, max: u32) -> Result<bool, bool>;
    }

    impl Decode for super::Request {
        fn decode(buf: &mut BytesMut, max: u32) -> Result<bool, bool> {
            super::decode::<super::Request>(buf, max)
                .map(|o| o.is_some())
                .map_err(|e| e.is_fatal())
        }
    }

    impl Decode for super::Response {
        fn decode(buf: &mut BytesMut, max: u32) -> Result<bool, bool> {
            super::decode::<super::Response>(buf, max)
                .map(|o| o.is_some())
                .map_err(|e| e.is_fatal())
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
    drain::<Request>(rest, max);
    drain::<Response>(rest, max);
});
