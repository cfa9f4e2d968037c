//! The poller: the epoll set the loop blocks in between iterations, and the
//! readiness it reports.
//!
//! The poller only waits; what is registered, and for whom, is the business of
//! the [`IoRegistry`](crate::registry::IoRegistry), which shares the epoll
//! instance through a cloned `mio::Registry`. Keeping the two apart lets the
//! loop hand the poller to a thread-detached wait while other code (another
//! thread calling `add_reader`, say) still registers descriptors.
//!
//! Registration goes through mio; the wait itself is our own system call, so
//! that a timer can end it to the microsecond: `epoll_pwait2` takes its
//! timeout as a `timespec` (Linux 5.11), where `epoll_wait` — and so mio —
//! takes whole milliseconds, which made every timed wake-up up to 1 ms late
//! (rounding down would wake timers early, as uvloop's do). On older kernels
//! the wait falls back to `epoll_wait` with the timeout rounded *up* to the
//! millisecond: late, never early.
//!
//! Readiness follows asyncio's selector semantics: an error or hang-up wakes
//! both the reader and the writer of a descriptor, so each sees the condition
//! on its next system call.

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mio::{Poll, Registry, Token};

/// The token of the loop's cross-thread waker; every other token is an fd.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// asyncio never blocks longer than a day in one poll (MAXIMUM_SELECT_TIMEOUT).
pub const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Readiness reports taken from the kernel per wait.
const EVENTS_PER_WAIT: usize = 1024;

/// Cleared when the kernel answers `epoll_pwait2` with ENOSYS (before 5.11).
static PRECISE_WAIT: AtomicBool = AtomicBool::new(true);

/// What one descriptor is ready for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub fd: RawFd,
    pub readable: bool,
    pub writable: bool,
    /// The peer closed (or the descriptor failed): after any data still
    /// queued, a read will see the end. An edge-triggered reader that stops
    /// at a short read must read once more, as no further edge will come.
    pub hangup: bool,
}

impl Readiness {
    /// mio's reading of the epoll flags (which registered the descriptor).
    fn of(event: &libc::epoll_event) -> Readiness {
        let flags = event.events as libc::c_int;
        let has = |flag: libc::c_int| flags & flag != 0;
        let failed = has(libc::EPOLLERR);
        let read_closed = has(libc::EPOLLHUP) || (has(libc::EPOLLIN) && has(libc::EPOLLRDHUP));
        let write_closed =
            has(libc::EPOLLHUP) || (has(libc::EPOLLOUT) && failed) || flags == libc::EPOLLERR;
        Readiness {
            fd: event.u64 as RawFd,
            readable: has(libc::EPOLLIN) || has(libc::EPOLLPRI) || read_closed || failed,
            writable: has(libc::EPOLLOUT) || write_closed || failed,
            hangup: read_closed || failed,
        }
    }
}

/// The timer slack of a thread running a loop: Linux lets a timed wait of a
/// normal thread end up to 50 µs after its timeout (to batch wake-ups),
/// which alone would make every timer that much late.
const LOOP_TIMER_SLACK_NS: libc::c_ulong = 1_000;

/// While alive, the calling thread waits with a 1 µs timer slack; the
/// thread's own slack comes back when it is dropped (the loop runs on the
/// user's thread, which may have set one).
pub struct TightTimerSlack {
    previous: libc::c_int,
}

impl TightTimerSlack {
    pub fn new() -> TightTimerSlack {
        // SAFETY: PR_GET_TIMERSLACK and PR_SET_TIMERSLACK take integers and
        // change only the calling thread's slack; errors are return values.
        let previous = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        if previous > 0 {
            // SAFETY: as above.
            unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, LOOP_TIMER_SLACK_NS, 0, 0, 0) };
        }
        TightTimerSlack { previous }
    }
}

impl Default for TightTimerSlack {
    fn default() -> Self {
        TightTimerSlack::new()
    }
}

impl Drop for TightTimerSlack {
    fn drop(&mut self) {
        if self.previous > 0 {
            // SAFETY: as in `new`, on the same thread (the guard is not Send).
            unsafe {
                libc::prctl(
                    libc::PR_SET_TIMERSLACK,
                    self.previous as libc::c_ulong,
                    0,
                    0,
                    0,
                )
            };
        }
    }
}

/// The epoll instance and the reports of the last wait.
pub struct Poller {
    poll: Poll,
    events: Vec<libc::epoll_event>,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            poll: Poll::new()?,
            events: Vec::with_capacity(EVENTS_PER_WAIT),
        })
    }

    /// A handle for registering descriptors with this poller.
    pub fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }

    /// Waits until something is ready or `timeout` passes (`None`: no limit).
    /// The wait never ends before the timeout, so a timer is never woken
    /// early. `EINTR` is returned to the caller, who must give signal
    /// handlers their turn.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = timeout.map(|t| t.min(MAX_POLL_TIMEOUT));
        self.events.clear();
        let reported = wait(self.poll.as_raw_fd(), &mut self.events, timeout)?;
        // SAFETY: the kernel wrote `reported` (at most the capacity) entries
        // at the start of the buffer, which are initialised `epoll_event`s.
        unsafe { self.events.set_len(reported) };
        Ok(())
    }

    /// Whether the last poll saw the waker fire.
    pub fn woken(&self) -> bool {
        self.events.iter().any(|e| e.u64 as usize == WAKER_TOKEN.0)
    }

    /// Descriptors the last poll found ready, waker excluded.
    pub fn ready(&self) -> impl Iterator<Item = Readiness> + '_ {
        self.events
            .iter()
            .filter(|e| e.u64 as usize != WAKER_TOKEN.0)
            .map(Readiness::of)
    }
}

/// One wait on `epfd` into `events`' spare room; the number of reports.
fn wait(
    epfd: RawFd,
    events: &mut Vec<libc::epoll_event>,
    timeout: Option<Duration>,
) -> io::Result<usize> {
    let room = events.capacity() as libc::c_int;
    let buffer = events.as_mut_ptr();
    if PRECISE_WAIT.load(Ordering::Relaxed) {
        let spec = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let spec_ptr = spec
            .as_ref()
            .map_or(std::ptr::null(), |s| s as *const libc::timespec);
        // SAFETY: `buffer` has room for `room` events; `spec_ptr` is NULL
        // (no limit) or points to a timespec that outlives the call; the
        // signal mask is NULL (none changed), so its size is not read.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_epoll_pwait2,
                epfd,
                buffer,
                room,
                spec_ptr,
                std::ptr::null::<libc::sigset_t>(),
                0usize,
            )
        };
        if ret >= 0 {
            return Ok(ret as usize);
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ENOSYS) {
            return Err(err);
        }
        PRECISE_WAIT.store(false, Ordering::Relaxed);
    }
    // Whole milliseconds, rounded up: late rather than early.
    let millis = timeout.map_or(-1, |t| {
        t.checked_add(Duration::from_nanos(999_999))
            .unwrap_or(t)
            .as_millis()
            .min(libc::c_int::MAX as u128) as libc::c_int
    });
    // The kernel's call, not glibc's wrapper: that is a pthread cancellation
    // point, two atomic operations a call once the process has threads, and
    // nothing cancels the loop's thread.
    // SAFETY: `buffer` has room for `room` events.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_epoll_wait,
            epfd as libc::c_long,
            buffer,
            room as libc::c_long,
            millis as libc::c_long,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ret as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_timed_wait_ends_on_time_and_never_early() {
        let mut poller = Poller::new().unwrap();
        for micros in [200u64, 1_300, 2_700] {
            let timeout = Duration::from_micros(micros);
            let started = Instant::now();
            poller.poll(Some(timeout)).unwrap();
            let waited = started.elapsed();
            assert!(waited >= timeout, "woke after {waited:?} for {timeout:?}");
        }
    }

    #[test]
    fn the_flags_read_as_mio_reads_them() {
        let event = |flags: libc::c_int| libc::epoll_event {
            events: flags as u32,
            u64: 7,
        };
        let r = Readiness::of(&event(libc::EPOLLIN));
        assert_eq!(
            (r.fd, r.readable, r.writable, r.hangup),
            (7, true, false, false)
        );
        let r = Readiness::of(&event(libc::EPOLLIN | libc::EPOLLRDHUP));
        assert!(r.readable && r.hangup && !r.writable);
        let r = Readiness::of(&event(libc::EPOLLHUP));
        assert!(r.readable && r.writable && r.hangup);
        let r = Readiness::of(&event(libc::EPOLLERR));
        assert!(r.readable && r.writable && r.hangup);
        let r = Readiness::of(&event(libc::EPOLLOUT));
        assert!(r.writable && !r.readable && !r.hangup);
    }
}
