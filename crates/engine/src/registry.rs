//! The fd registry: which descriptor is watched for reading or writing, and
//! by whom.
//!
//! Each descriptor has at most one reader and one writer (asyncio's rule:
//! adding a second replaces the first). The registry keeps the epoll
//! registration in step with them: registered on the first watcher,
//! re-registered when the interest changes, deregistered when none is left.
//!
//! mio registers edge-triggered, while asyncio's `add_reader` is level-
//! triggered: a reader that leaves data unread is called again next iteration.
//! [`IoRegistry::rearm`] restores that: re-registering (`EPOLL_CTL_MOD`) makes
//! the kernel check the descriptor again and report it at the next wait if it
//! is still ready (epoll re-polls a queued descriptor before reporting it, so a
//! descriptor drained in the meantime is not reported). Watchers that read
//! until `EAGAIN` themselves (native transports) skip the re-arm.
//!
//! A descriptor closed while watched leaves the epoll set by itself; its
//! number may then come back for a new file. Registration therefore falls back
//! between add and modify when the kernel's view differs from ours.
//!
//! Watches are found by descriptor number in an [`FdTable`]. A descriptor
//! enters the table only once the kernel has accepted its registration, so a
//! number that names no open file (`add_reader(2**31 - 1)`) costs nothing
//! and fails with the kernel's `EBADF`.

use std::io;
use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

use crate::fd_table::FdTable;

/// Which side of a descriptor a watcher is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Read,
    Write,
}

struct Watch<R> {
    reader: Option<R>,
    writer: Option<R>,
    registered: Option<Interest>,
}

impl<R> Default for Watch<R> {
    fn default() -> Self {
        Watch {
            reader: None,
            writer: None,
            registered: None,
        }
    }
}

impl<R> Watch<R> {
    fn slot(&mut self, direction: Direction) -> &mut Option<R> {
        match direction {
            Direction::Read => &mut self.reader,
            Direction::Write => &mut self.writer,
        }
    }

    fn wanted(&self) -> Option<Interest> {
        match (self.reader.is_some(), self.writer.is_some()) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// Watchers of descriptors, kept in step with the poller's epoll set.
pub struct IoRegistry<R> {
    registry: Registry,
    watches: FdTable<Watch<R>>,
}

impl<R> IoRegistry<R> {
    pub fn new(registry: Registry) -> Self {
        IoRegistry {
            registry,
            watches: FdTable::default(),
        }
    }

    /// What `fd` is registered with now, and the interest it needs once a
    /// reader (`reader`) and/or a writer (`writer`) is added to what it has.
    fn interest_with(&self, fd: RawFd, reader: bool, writer: bool) -> (Option<Interest>, Interest) {
        let watch = self.watches.get(fd);
        let registered = watch.and_then(|w| w.registered);
        let has_reader = reader || watch.is_some_and(|w| w.reader.is_some());
        let has_writer = writer || watch.is_some_and(|w| w.writer.is_some());
        let wanted = match (has_reader, has_writer) {
            (true, true) => Interest::READABLE | Interest::WRITABLE,
            (false, true) => Interest::WRITABLE,
            _ => Interest::READABLE,
        };
        (registered, wanted)
    }

    /// Sets the watcher of one side of `fd`, returning the one it replaces.
    /// The kernel is asked first: on a registration error (a closed or
    /// unpollable fd) nothing changes and nothing is stored.
    pub fn insert(&mut self, fd: RawFd, direction: Direction, watcher: R) -> io::Result<Option<R>> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let (registered, wanted) = self.interest_with(
            fd,
            direction == Direction::Read,
            direction == Direction::Write,
        );
        let registered = sync(&self.registry, fd, registered, Some(wanted))?;
        let watch = self.watches.get_or_insert_with(fd, Watch::default);
        watch.registered = registered;
        Ok(watch.slot(direction).replace(watcher))
    }

    /// Sets both watchers of `fd` at once (one registration call), for an
    /// owner that handles both directions itself, like a transport. Returns
    /// the watchers it replaces; on error nothing changes.
    pub fn insert_pair(
        &mut self,
        fd: RawFd,
        reader: R,
        writer: R,
    ) -> io::Result<(Option<R>, Option<R>)> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let (registered, wanted) = self.interest_with(fd, true, true);
        let registered = sync(&self.registry, fd, registered, Some(wanted))?;
        let watch = self.watches.get_or_insert_with(fd, Watch::default);
        watch.registered = registered;
        Ok((watch.reader.replace(reader), watch.writer.replace(writer)))
    }

    /// Removes both watchers of `fd` and its registration.
    pub fn remove_pair(&mut self, fd: RawFd) -> (Option<R>, Option<R>) {
        let Some(mut watch) = self.watches.remove(fd) else {
            return (None, None);
        };
        if watch.registered.is_some() {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
        (watch.reader.take(), watch.writer.take())
    }

    /// Removes the watcher of one side of `fd` and returns it.
    pub fn remove(&mut self, fd: RawFd, direction: Direction) -> Option<R> {
        let watch = self.watches.get_mut(fd)?;
        let removed = watch.slot(direction).take()?;
        let wanted = watch.wanted();
        // Deregistering a descriptor that was closed behind our back fails;
        // the kernel already dropped it, which is all removal has to achieve.
        match sync(&self.registry, fd, watch.registered, wanted) {
            Ok(registered) => watch.registered = registered,
            Err(_) if wanted.is_none() => watch.registered = None,
            Err(_) => {}
        }
        if wanted.is_none() {
            self.watches.remove(fd);
        }
        Some(removed)
    }

    /// The watcher of one side of `fd`, if any.
    pub fn get(&self, fd: RawFd, direction: Direction) -> Option<&R> {
        let watch = self.watches.get(fd)?;
        match direction {
            Direction::Read => watch.reader.as_ref(),
            Direction::Write => watch.writer.as_ref(),
        }
    }

    /// Asks the kernel to report `fd` again at the next wait if it is still
    /// ready: level-triggered behaviour on an edge-triggered registration.
    pub fn rearm(&self, fd: RawFd) {
        if let Some(interest) = self.watches.get(fd).and_then(|w| w.registered) {
            let _ = self
                .registry
                .reregister(&mut SourceFd(&fd), Token(fd as usize), interest);
        }
    }

    /// Number of watched descriptors.
    pub fn len(&self) -> usize {
        self.watches.len()
    }

    pub fn is_empty(&self) -> bool {
        self.watches.is_empty()
    }

    /// Removes every watcher (a closing loop) and returns them.
    pub fn drain(&mut self) -> Vec<R> {
        let mut out = Vec::new();
        for (fd, mut watch) in self.watches.drain() {
            if watch.registered.is_some() {
                let _ = self.registry.deregister(&mut SourceFd(&fd));
            }
            out.extend(watch.reader.take());
            out.extend(watch.writer.take());
        }
        out
    }

    /// The descriptor whose `direction` watcher satisfies `matches`: a scan,
    /// for the rare lookups by something other than the number.
    pub fn find(&self, direction: Direction, matches: impl Fn(&R) -> bool) -> Option<RawFd> {
        self.watches.iter().find_map(|(fd, watch)| {
            let watcher = match direction {
                Direction::Read => watch.reader.as_ref(),
                Direction::Write => watch.writer.as_ref(),
            }?;
            matches(watcher).then_some(fd)
        })
    }

    /// Removes every watcher and leaves the epoll set as it is: for a process
    /// that inherited the set through `fork()`, whose parent still uses it
    /// (the set is one kernel object, shared, not copied).
    pub fn forget_all(&mut self) -> Vec<R> {
        self.watches
            .drain()
            .into_iter()
            .flat_map(|(_, watch)| watch.reader.into_iter().chain(watch.writer))
            .collect()
    }

    /// Visits every watcher.
    pub fn iter(&self) -> impl Iterator<Item = &R> {
        self.watches
            .values()
            .flat_map(|w| w.reader.iter().chain(w.writer.iter()))
    }
}

/// Brings the epoll registration of `fd` from `registered` to `wanted` and
/// returns the new state; on error the registration is as it was.
fn sync(
    registry: &Registry,
    fd: RawFd,
    registered: Option<Interest>,
    wanted: Option<Interest>,
) -> io::Result<Option<Interest>> {
    let token = Token(fd as usize);
    let source = &mut SourceFd(&fd);
    match (registered, wanted) {
        (None, None) => {}
        (Some(_), None) => registry.deregister(source)?,
        (None, Some(interest)) => match registry.register(source, token, interest) {
            // Still in the epoll set from a registration we dropped
            // without deregistering (the fd was closed and reused).
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                registry.reregister(source, token, interest)?
            }
            other => other?,
        },
        (Some(_), Some(interest)) => match registry.reregister(source, token, interest) {
            // The old file was closed, which removed it from the epoll set.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                registry.register(source, token, interest)?
            }
            other => other?,
        },
    }
    Ok(wanted)
}
