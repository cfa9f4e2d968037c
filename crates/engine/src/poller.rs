//! The poller: one `mio::Poll` (epoll on Linux) the loop blocks in between
//! iterations, and the readiness it reports.
//!
//! The poller only waits; what is registered, and for whom, is the business of
//! the [`IoRegistry`](crate::registry::IoRegistry), which shares the epoll
//! instance through a cloned `mio::Registry`. Keeping the two apart lets the
//! loop hand the poller to a thread-detached wait while other code (another
//! thread calling `add_reader`, say) still registers descriptors.
//!
//! Readiness follows asyncio's selector semantics: an error or hang-up wakes
//! both the reader and the writer of a descriptor, so each sees the condition
//! on its next system call.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use mio::{Events, Poll, Registry, Token};

/// The token of the loop's cross-thread waker; every other token is an fd.
pub const WAKER_TOKEN: Token = Token(usize::MAX);

/// asyncio never blocks longer than a day in one poll (MAXIMUM_SELECT_TIMEOUT).
pub const MAX_POLL_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

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

/// The epoll instance and its event buffer.
pub struct Poller {
    poll: Poll,
    events: Events,
}

impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
        })
    }

    /// A handle for registering descriptors with this poller.
    pub fn registry(&self) -> io::Result<Registry> {
        self.poll.registry().try_clone()
    }

    /// Waits until something is ready or `timeout` passes (`None`: no limit).
    /// Timeouts are rounded *up* to the next millisecond, so a wait for a timer
    /// never ends before the timer is due. `EINTR` is returned to the caller,
    /// who must give signal handlers their turn.
    pub fn poll(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        let timeout = timeout.map(|t| t.min(MAX_POLL_TIMEOUT));
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.events.clear();
                Err(e)
            }
        }
    }

    /// Whether the last poll saw the waker fire.
    pub fn woken(&self) -> bool {
        self.events.iter().any(|e| e.token() == WAKER_TOKEN)
    }

    /// Descriptors the last poll found ready, waker excluded.
    pub fn ready(&self) -> impl Iterator<Item = Readiness> + '_ {
        self.events
            .iter()
            .filter(|e| e.token() != WAKER_TOKEN)
            .map(|e| {
                let failed = e.is_error();
                Readiness {
                    fd: e.token().0 as RawFd,
                    readable: e.is_readable() || e.is_read_closed() || failed,
                    writable: e.is_writable() || e.is_write_closed() || failed,
                    hangup: e.is_read_closed() || failed,
                }
            })
    }
}
