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
//! Watches are found by descriptor number in a table indexed by it (the
//! kernel hands out the lowest free numbers, so the table stays dense): every
//! readiness report looks one up, and an index is cheaper than a hash.

use std::io;
use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};

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

/// A map from descriptor numbers to values, stored by index.
struct FdTable<T> {
    slots: Vec<Option<T>>,
    count: usize,
}

impl<T> FdTable<T> {
    fn new() -> Self {
        FdTable {
            slots: Vec::new(),
            count: 0,
        }
    }

    fn get(&self, fd: &RawFd) -> Option<&T> {
        self.slots.get(usize::try_from(*fd).ok()?)?.as_ref()
    }

    fn get_mut(&mut self, fd: &RawFd) -> Option<&mut T> {
        self.slots.get_mut(usize::try_from(*fd).ok()?)?.as_mut()
    }

    /// The value of `fd`, made with `make` if absent. Descriptors are never
    /// negative (callers check), so the index is valid.
    fn get_or_insert_with(&mut self, fd: RawFd, make: impl FnOnce() -> T) -> &mut T {
        let index = fd as usize;
        if index >= self.slots.len() {
            self.slots.resize_with(index + 1, || None);
        }
        let slot = &mut self.slots[index];
        if slot.is_none() {
            self.count += 1;
        }
        slot.get_or_insert_with(make)
    }

    fn remove(&mut self, fd: &RawFd) -> Option<T> {
        let removed = self.slots.get_mut(usize::try_from(*fd).ok()?)?.take();
        if removed.is_some() {
            self.count -= 1;
        }
        removed
    }

    fn len(&self) -> usize {
        self.count
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn drain(&mut self) -> impl Iterator<Item = (RawFd, T)> + '_ {
        self.count = 0;
        self.slots
            .drain(..)
            .enumerate()
            .filter_map(|(fd, slot)| slot.map(|v| (fd as RawFd, v)))
    }

    fn values(&self) -> impl Iterator<Item = &T> {
        self.slots.iter().flatten()
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
            watches: FdTable::new(),
        }
    }

    /// Sets the watcher of one side of `fd`, returning the one it replaces.
    /// On a registration error (a closed or unpollable fd) nothing changes.
    pub fn insert(&mut self, fd: RawFd, direction: Direction, watcher: R) -> io::Result<Option<R>> {
        if fd < 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        let watch = self.watches.get_or_insert_with(fd, || Watch {
            reader: None,
            writer: None,
            registered: None,
        });
        let previous = watch.slot(direction).replace(watcher);
        let wanted = watch.wanted();
        if let Err(err) = apply(&self.registry, fd, watch, wanted) {
            let watch = self.watches.get_mut(&fd).expect("entry was just used");
            let _new = std::mem::replace(watch.slot(direction), previous);
            if watch.wanted().is_none() {
                self.watches.remove(&fd);
            }
            return Err(err);
        }
        Ok(previous)
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
        let watch = self.watches.get_or_insert_with(fd, || Watch {
            reader: None,
            writer: None,
            registered: None,
        });
        let previous = (watch.reader.replace(reader), watch.writer.replace(writer));
        let wanted = watch.wanted();
        if let Err(err) = apply(&self.registry, fd, watch, wanted) {
            let watch = self.watches.get_mut(&fd).expect("entry was just used");
            watch.reader = previous.0;
            watch.writer = previous.1;
            if watch.wanted().is_none() {
                self.watches.remove(&fd);
            }
            return Err(err);
        }
        Ok(previous)
    }

    /// Removes both watchers of `fd` and its registration.
    pub fn remove_pair(&mut self, fd: RawFd) -> (Option<R>, Option<R>) {
        let Some(mut watch) = self.watches.remove(&fd) else {
            return (None, None);
        };
        if watch.registered.is_some() {
            let _ = self.registry.deregister(&mut SourceFd(&fd));
        }
        (watch.reader.take(), watch.writer.take())
    }

    /// Removes the watcher of one side of `fd` and returns it.
    pub fn remove(&mut self, fd: RawFd, direction: Direction) -> Option<R> {
        let watch = self.watches.get_mut(&fd)?;
        let removed = watch.slot(direction).take()?;
        let wanted = watch.wanted();
        // Deregistering a descriptor that was closed behind our back fails;
        // the kernel already dropped it, which is all removal has to achieve.
        let _ = apply(&self.registry, fd, watch, wanted);
        if wanted.is_none() {
            self.watches.remove(&fd);
        }
        Some(removed)
    }

    /// The watcher of one side of `fd`, if any.
    pub fn get(&self, fd: RawFd, direction: Direction) -> Option<&R> {
        let watch = self.watches.get(&fd)?;
        match direction {
            Direction::Read => watch.reader.as_ref(),
            Direction::Write => watch.writer.as_ref(),
        }
    }

    /// Asks the kernel to report `fd` again at the next wait if it is still
    /// ready: level-triggered behaviour on an edge-triggered registration.
    pub fn rearm(&self, fd: RawFd) {
        if let Some(interest) = self.watches.get(&fd).and_then(|w| w.registered) {
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

    /// Removes every watcher and leaves the epoll set as it is: for a process
    /// that inherited the set through `fork()`, whose parent still uses it
    /// (the set is one kernel object, shared, not copied).
    pub fn forget_all(&mut self) -> Vec<R> {
        self.watches
            .drain()
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

/// Brings the epoll registration of `fd` to `wanted`.
fn apply<R>(
    registry: &Registry,
    fd: RawFd,
    watch: &mut Watch<R>,
    wanted: Option<Interest>,
) -> io::Result<()> {
    let token = Token(fd as usize);
    let source = &mut SourceFd(&fd);
    match (watch.registered, wanted) {
        (None, None) => Ok(()),
        (Some(_), None) => {
            watch.registered = None;
            registry.deregister(source)
        }
        (None, Some(interest)) => {
            match registry.register(source, token, interest) {
                // Still in the epoll set from a registration we dropped
                // without deregistering (the fd was closed and reused).
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                    registry.reregister(source, token, interest)?
                }
                other => other?,
            }
            watch.registered = Some(interest);
            Ok(())
        }
        (Some(_), Some(interest)) => {
            match registry.reregister(source, token, interest) {
                // The old file was closed, which removed it from the epoll set.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    registry.register(source, token, interest)?
                }
                other => other?,
            }
            watch.registered = Some(interest);
            Ok(())
        }
    }
}
