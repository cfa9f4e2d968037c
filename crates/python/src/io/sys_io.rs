//! The socket and pipe system calls of the hot paths, non-blocking (sockets
//! whatever their own mode; pipes are set non-blocking when a transport takes
//! them), and their errors as Python exceptions.
//!
//! Python's socket methods raise `BlockingIOError` when a non-blocking call
//! would block, and creating that exception costs more than the call itself.
//! Calling the kernel directly lets "would block" be a plain return value.
//!
//! The calls of the data path (receive, send, read, write) go to the kernel
//! through `syscall(2)` rather than through glibc's wrappers: those are
//! pthread cancellation points, and once the process has a second thread
//! (an executor's worker, the blocking detector's watchdog) each call
//! switches asynchronous cancellation on and off around the system call,
//! about 70 instructions and two atomic read-modify-writes a call. Nothing
//! cancels the loop's thread with `pthread_cancel`, so the switch buys us
//! nothing.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

/// Never block, never raise SIGPIPE (a closed peer gives EPIPE instead).
const SEND_FLAGS: libc::c_int = libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL;

/// The outcome of a non-blocking call: done (with a count), or not now.
pub enum Io {
    Done(usize),
    WouldBlock,
}

fn classify(ret: isize) -> io::Result<Io> {
    if ret >= 0 {
        return Ok(Io::Done(ret as usize));
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EAGAIN) => Ok(Io::WouldBlock),
        _ => Err(err),
    }
}

/// The kernel's calls, as glibc's `syscall(2)` makes them: -1 and `errno`
/// on failure, like the wrappers they replace. Every argument is widened to
/// a `c_long`, the width of the registers the kernel reads.
pub(crate) mod kernel {
    use libc::{c_long, c_void, sockaddr, socklen_t};

    /// # Safety
    /// `buf` must be valid for writes of `len` bytes; `addr`/`addr_len` NULL
    /// or valid for the kernel to write an address of `*addr_len` bytes.
    pub unsafe fn recvfrom(
        fd: i32,
        buf: *mut c_void,
        len: usize,
        flags: i32,
        addr: *mut sockaddr,
        addr_len: *mut socklen_t,
    ) -> isize {
        // SAFETY: the arguments are as recvfrom(2) takes them (this
        // function's contract).
        unsafe {
            libc::syscall(
                libc::SYS_recvfrom,
                fd as c_long,
                buf,
                len as c_long,
                flags as c_long,
                addr,
                addr_len,
            ) as isize
        }
    }

    /// # Safety
    /// `buf` must be valid for reads of `len` bytes; `addr` NULL (with
    /// `addr_len` 0) or valid for reads of `addr_len` bytes.
    pub unsafe fn sendto(
        fd: i32,
        buf: *const c_void,
        len: usize,
        flags: i32,
        addr: *const sockaddr,
        addr_len: socklen_t,
    ) -> isize {
        // SAFETY: the arguments are as sendto(2) takes them (this
        // function's contract).
        unsafe {
            libc::syscall(
                libc::SYS_sendto,
                fd as c_long,
                buf,
                len as c_long,
                flags as c_long,
                addr,
                addr_len as c_long,
            ) as isize
        }
    }

    /// # Safety
    /// `msg` must point to a valid `msghdr` whose buffers are readable.
    pub unsafe fn sendmsg(fd: i32, msg: *const libc::msghdr, flags: i32) -> isize {
        // SAFETY: as sendmsg(2) takes them (this function's contract).
        unsafe { libc::syscall(libc::SYS_sendmsg, fd as c_long, msg, flags as c_long) as isize }
    }

    /// # Safety
    /// `buf` must be valid for writes of `len` bytes.
    pub unsafe fn read(fd: i32, buf: *mut c_void, len: usize) -> isize {
        // SAFETY: as read(2) takes them (this function's contract).
        unsafe { libc::syscall(libc::SYS_read, fd as c_long, buf, len as c_long) as isize }
    }

    /// # Safety
    /// `buf` must be valid for reads of `len` bytes.
    pub unsafe fn write(fd: i32, buf: *const c_void, len: usize) -> isize {
        // SAFETY: as write(2) takes them (this function's contract).
        unsafe { libc::syscall(libc::SYS_write, fd as c_long, buf, len as c_long) as isize }
    }

    /// # Safety
    /// `iov` must point to `count` valid `iovec`s over readable memory.
    pub unsafe fn writev(fd: i32, iov: *const libc::iovec, count: usize) -> isize {
        // SAFETY: as writev(2) takes them (this function's contract).
        unsafe { libc::syscall(libc::SYS_writev, fd as c_long, iov, count as c_long) as isize }
    }
}

/// Retries a call interrupted by a signal (Python's own socket methods do
/// the same, PEP 475).
fn retry(mut call: impl FnMut() -> isize) -> io::Result<Io> {
    loop {
        match classify(call()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<Io> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the
    // duration of the call; recv writes at most that many bytes.
    retry(|| unsafe {
        kernel::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    })
}

/// Receives into raw memory (a Python buffer held by the caller).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the whole call.
pub unsafe fn recv_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<Io> {
    // SAFETY: guaranteed by this function's contract.
    retry(|| unsafe {
        kernel::recvfrom(
            fd,
            ptr.cast(),
            len,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        )
    })
}

pub fn send(fd: RawFd, data: &[u8]) -> io::Result<Io> {
    // SAFETY: `data` is a valid readable region of `data.len()` bytes.
    retry(|| unsafe {
        kernel::sendto(
            fd,
            data.as_ptr().cast(),
            data.len(),
            SEND_FLAGS,
            std::ptr::null(),
            0,
        )
    })
}

/// Sends several buffers in one call (`sendmsg` with an iovec).
pub fn send_vectored(fd: RawFd, chunks: &[IoSlice<'_>]) -> io::Result<Io> {
    // SAFETY: a zeroed msghdr is a valid "no address, no control data"
    // header; we then point it at `chunks`, whose layout std guarantees to be
    // that of `struct iovec`, and which outlive the call.
    retry(|| unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = chunks.as_ptr() as *mut libc::iovec;
        msg.msg_iovlen = chunks.len() as _;
        kernel::sendmsg(fd, &msg, SEND_FLAGS)
    })
}

/// `read(2)`, for pipes and character devices (`recv` works on sockets only).
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<Io> {
    // SAFETY: `buf` is a valid writable region of `buf.len()` bytes for the
    // duration of the call; read writes at most that many bytes.
    retry(|| unsafe { kernel::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
}

/// Reads into raw memory (a Python buffer held by the caller).
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes for the whole call.
pub unsafe fn read_raw(fd: RawFd, ptr: *mut u8, len: usize) -> io::Result<Io> {
    // SAFETY: guaranteed by this function's contract.
    retry(|| unsafe { kernel::read(fd, ptr.cast(), len) })
}

/// `write(2)`, for pipes and character devices. A pipe whose reader is gone
/// gives EPIPE (the interpreter ignores SIGPIPE, as asyncio relies on too).
pub fn write(fd: RawFd, data: &[u8]) -> io::Result<Io> {
    // SAFETY: `data` is a valid readable region of `data.len()` bytes.
    retry(|| unsafe { kernel::write(fd, data.as_ptr().cast(), data.len()) })
}

/// Writes several buffers in one call (`writev`).
pub fn write_vectored(fd: RawFd, chunks: &[IoSlice<'_>]) -> io::Result<Io> {
    // SAFETY: std guarantees `IoSlice` has the layout of `struct iovec`; the
    // slices outlive the call, which only reads them.
    retry(|| unsafe { kernel::writev(fd, chunks.as_ptr().cast(), chunks.len()) })
}

/// `accept4(2)`: the next waiting connection of listening socket `fd`, its
/// descriptor non-blocking and close-on-exec (as Python's `accept()` makes
/// it, then asyncio sets it non-blocking), with the peer's raw address
/// (`sockaddr_storage` and its length); `None` when none is waiting.
pub fn accept(fd: RawFd) -> io::Result<Option<(RawFd, libc::sockaddr_storage, usize)>> {
    loop {
        // SAFETY: all-zero is a valid sockaddr_storage; accept4 writes at
        // most `len` bytes of address into it, and takes integers otherwise.
        let (ret, storage, len) = unsafe {
            let mut storage: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            let ret = libc::accept4(
                fd,
                (&mut storage as *mut libc::sockaddr_storage).cast(),
                &mut len,
                libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            );
            (ret, storage, len)
        };
        if ret >= 0 {
            let len = (len as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
            return Ok(Some((ret, storage, len)));
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) => return Ok(None),
            _ => return Err(err),
        }
    }
}

/// Bytes waiting to be read on a stream socket, pipe or terminal (FIONREAD);
/// 0 if unknown.
pub fn bytes_pending(fd: RawFd) -> usize {
    let mut pending: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer we pass, which
    // points to a live local.
    if unsafe { libc::ioctl(fd, libc::FIONREAD, &mut pending) } < 0 {
        return 0;
    }
    pending.max(0) as usize
}

pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown takes only integers; a bad fd is reported as EBADF.
    if unsafe { libc::shutdown(fd, libc::SHUT_WR) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sendfile(2)`: up to `count` bytes of file `in_fd` from `offset`, to
/// socket `out_fd` (non-blocking: "would block" is a value).
pub fn sendfile(out_fd: RawFd, in_fd: RawFd, offset: i64, count: usize) -> io::Result<Io> {
    let mut offset: libc::off_t = offset;
    // SAFETY: sendfile takes descriptors and a pointer to an off_t we own
    // for the duration of the call; bad descriptors are reported as errors.
    retry(|| unsafe { libc::sendfile(out_fd, in_fd, &mut offset, count) })
}

/// The size of the open file `fd` (`os.fstat(fd).st_size`).
pub fn file_size(fd: RawFd) -> io::Result<u64> {
    // SAFETY: a zeroed stat is a valid buffer for fstat to fill; it is read
    // only after fstat reported success.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::fstat(fd, &mut st) < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(st.st_size.max(0) as u64)
    }
}

/// Moves the position of file `fd` to `offset` (`os.lseek(fd, offset, SEEK_SET)`).
pub fn seek_to(fd: RawFd, offset: i64) -> io::Result<()> {
    // SAFETY: lseek takes only integers; a bad descriptor is an error.
    if unsafe { libc::lseek(fd, offset, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
