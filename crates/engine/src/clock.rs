//! The loop's clock: the same `CLOCK_MONOTONIC` reading that Python's
//! `time.monotonic()` returns, converted to seconds the way CPython does.
//!
//! asyncio programs compare `loop.time()` with `time.monotonic()` and expect
//! `await asyncio.sleep(d)` never to return before `start + d` as read by either.
//! Reading the same clock and rounding the same way makes that hold exactly,
//! not merely to within a millisecond (the error uvloop makes by keeping whole
//! milliseconds).

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists
    // on Linux, so the call cannot fail and fills `ts` completely.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Converts nanoseconds to float seconds exactly as CPython's
/// `_PyTime_AsSecondsDouble` does, so `loop.time()` and `time.monotonic()`
/// taken at the same nanosecond are the same float.
pub fn ns_to_secs(ns: i64) -> f64 {
    if ns % 1_000_000_000 == 0 {
        (ns / 1_000_000_000) as f64
    } else {
        ns as f64 / 1e9
    }
}

/// `time.monotonic()` as a float.
pub fn monotonic() -> f64 {
    ns_to_secs(monotonic_ns())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversion_matches_cpython_rounding() {
        assert_eq!(ns_to_secs(3_000_000_000), 3.0);
        assert_eq!(ns_to_secs(1_500_000_000), 1.5);
        assert_eq!(ns_to_secs(123_456_789_012), 123_456_789_012f64 / 1e9);
    }

    #[test]
    fn clock_never_goes_back() {
        let mut last = monotonic_ns();
        for _ in 0..10_000 {
            let now = monotonic_ns();
            assert!(now >= last);
            last = now;
        }
    }
}
