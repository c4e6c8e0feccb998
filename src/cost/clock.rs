//! CPU clocks of threads (user and system time).

/// The CPU time of the calling thread so far, in nanoseconds (0 where there is no such
/// clock).
pub(super) fn this_thread_cpu_ns() -> u64 {
    #[cfg(unix)]
    {
        read_ns(libc::CLOCK_THREAD_CPUTIME_ID)
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// A clock's time in nanoseconds; 0 when it cannot be read (a thread that has ended).
#[cfg(unix)]
pub(super) fn read_ns(id: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid place to write to; a clock id that is no longer valid makes
    // the call fail, which reads as zero.
    let rc = unsafe { libc::clock_gettime(id, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
