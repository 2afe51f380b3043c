//! A short frame whose body claims a huge byte string must not make the decoder
//! allocate it. This binary counts allocations with its own global allocator, so the
//! assertion fails if the size-tiered bincode limit in the codec is removed.

// The counting allocator must implement `GlobalAlloc`, an unsafe trait; it only
// forwards to `System` and records the largest request.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bytes::{BufMut, Bytes, BytesMut};
use ringcache_proto::{
    DEFAULT_MAX_FRAME, Epoch, FrameError, HEADER_LEN, Op, PROTOCOL_VERSION, Request, RequestId,
    decode, encode,
};

struct Counting;

static TRACKING: AtomicBool = AtomicBool::new(false);
static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same layout as requested of us.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        }
        // SAFETY: same layout as requested of us.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if TRACKING.load(Ordering::Relaxed) {
            LARGEST.fetch_max(new_size, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

#[test]
fn a_hostile_length_inside_the_body_is_refused_without_allocating_it() {
    let mut real = BytesMut::new();
    let req = Request {
        epoch: Epoch(0),
        op: Op::Get {
            ns: "n".into(),
            key: Bytes::from_static(b"k"),
        },
    };
    encode(RequestId(11), &req, DEFAULT_MAX_FRAME, &mut real).expect("encodes");
    // The body ends with the key: its varint length (1) and the byte.
    let body = &real[HEADER_LEN..];
    let key_len_at = body.len() - 2;
    assert_eq!(&body[key_len_at..], &[1, b'k']);
    let mut new_body = body[..key_len_at].to_vec();
    // bincode varint for a u32: 0xFC then 4 bytes LE. Claim 1 GiB.
    new_body.push(0xFC);
    new_body.extend_from_slice(&(1u32 << 30).to_le_bytes());
    let mut hostile = BytesMut::new();
    hostile.put_u32_le(10 + u32::try_from(new_body.len()).expect("small"));
    hostile.put_u16_le(PROTOCOL_VERSION);
    hostile.put_u64_le(11);
    hostile.put_slice(&new_body);

    TRACKING.store(true, Ordering::SeqCst);
    let got = decode::<Request>(&mut hostile, DEFAULT_MAX_FRAME);
    TRACKING.store(false, Ordering::SeqCst);

    assert_eq!(
        got,
        Err(FrameError::Malformed {
            request_id: RequestId(11)
        })
    );
    let largest = LARGEST.load(Ordering::SeqCst);
    assert!(
        largest < 1 << 20,
        "decoder allocated {largest} bytes for a {}-byte frame",
        new_body.len() + 14
    );
}
