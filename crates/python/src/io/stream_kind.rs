//! What a stream transport's descriptor is: a socket, or one end of a pipe
//! (a pipe, FIFO, pty or character device, as `connect_read_pipe` and
//! `connect_write_pipe` take them).
//!
//! A pipe is a stream without sockets: one `StreamCore` serves both, and
//! this kind picks what differs. The system calls (`read`/`write` instead of
//! `recv`/`send`, which refuse non-sockets), which sides of the descriptor
//! the transport watches, the wording of its errors, and asyncio's rules
//! that differ between `_SelectorSocketTransport` and the
//! `_UnixReadPipeTransport`/`_UnixWritePipeTransport` pair: a pipe has no
//! half-close, so `write_eof()` closes it; its end of file always closes the
//! transport; writes after closing are dropped, not refused.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use ferroloop_engine::Direction;

use crate::io::sys_io::{self, Io};

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    Socket,
    /// The read end of a pipe.
    ReadPipe,
    /// The write end of a pipe. `watch_peer`: also watch it for reading,
    /// which reports the reader closing (FIFOs and sockets; asyncio does not
    /// for character devices, which may be readable with data of their own).
    WritePipe {
        watch_peer: bool,
    },
}

impl StreamKind {
    pub fn is_pipe(self) -> bool {
        self != StreamKind::Socket
    }

    /// The sides of the descriptor a pipe transport watches on its own (a
    /// socket transport registers both at once). A pty's two transports may
    /// share one descriptor, one side each.
    pub fn pipe_directions(self) -> &'static [Direction] {
        match self {
            StreamKind::Socket => &[],
            StreamKind::ReadPipe => &[Direction::Read],
            StreamKind::WritePipe { watch_peer: true } => &[Direction::Write, Direction::Read],
            StreamKind::WritePipe { watch_peer: false } => &[Direction::Write],
        }
    }

    pub fn receive(self, fd: RawFd, buf: &mut [u8]) -> io::Result<Io> {
        if self.is_pipe() {
            sys_io::read(fd, buf)
        } else {
            sys_io::recv(fd, buf)
        }
    }

    /// # Safety
    /// `ptr` must be valid for writes of `len` bytes for the whole call.
    pub unsafe fn receive_raw(self, fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<Io> {
        // SAFETY: the caller's guarantee, passed on.
        unsafe {
            if self.is_pipe() {
                sys_io::read_raw(fd, ptr, len)
            } else {
                sys_io::recv_raw(fd, ptr, len)
            }
        }
    }

    pub fn send(self, fd: RawFd, data: &[u8]) -> io::Result<Io> {
        if self.is_pipe() {
            sys_io::write(fd, data)
        } else {
            sys_io::send(fd, data)
        }
    }

    pub fn send_vectored(self, fd: RawFd, chunks: &[IoSlice<'_>]) -> io::Result<Io> {
        if self.is_pipe() {
            sys_io::write_vectored(fd, chunks)
        } else {
            sys_io::send_vectored(fd, chunks)
        }
    }

    pub fn read_error(self) -> &'static str {
        if self.is_pipe() {
            "Fatal read error on pipe transport"
        } else {
            "Fatal read error on socket transport"
        }
    }

    pub fn write_error(self) -> &'static str {
        if self.is_pipe() {
            "Fatal write error on pipe transport"
        } else {
            "Fatal write error on socket transport"
        }
    }

    /// What asyncio logs for the sixth write to a lost connection.
    pub fn lost_write_warning(self) -> &'static str {
        if self.is_pipe() {
            "pipe closed by peer or os.write(pipe, data) raised exception."
        } else {
            "socket.send() raised exception."
        }
    }
}
