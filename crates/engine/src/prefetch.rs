//! Software prefetch: asking the CPU to start loading a cache line that will be read
//! soon, so that several lookups' memory misses overlap instead of following each
//! other (see [`crate::Engine::prefetch_entry`]).

/// Starts loading the cache line holding `p` into every cache level. A hint only: it
/// reads nothing the program can see, and does nothing on targets without the
/// instruction.
#[inline(always)]
pub(crate) fn line<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 never faults and has no architectural effect, whatever the
    // address (x86-64 always has SSE, which the intrinsic needs). No memory is read
    // through `p`; an address that is no longer valid only wastes the hint.
    #[allow(unsafe_code)]
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Cache lines prefetched at most for one value (a value's first 256 bytes): enough for
/// the small values a cache mostly holds; a large value's copy streams anyway.
pub(crate) const VALUE_LINES: usize = 4;

/// Prefetches the lines holding the first bytes of `bytes`, at most [`VALUE_LINES`]
/// lines.
#[inline(always)]
pub(crate) fn bytes(bytes: &[u8]) {
    let n = bytes.len().min(VALUE_LINES * 64);
    if n == 0 {
        return;
    }
    let skew = bytes.as_ptr() as usize % 64;
    let first = bytes.as_ptr().wrapping_sub(skew);
    for k in 0..=(skew + n - 1) / 64 {
        line(first.wrapping_add(k * 64));
    }
}
