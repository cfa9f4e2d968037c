//! The hot `sock_*` methods: `sock_recv`, `sock_recv_into`, `sock_sendall`.
//!
//! Each checks the socket it is given as the Python method would (and
//! answers `NotImplemented` for an object that is not a socket, which the
//! Python method then serves through its own methods), then tries its
//! system call at once; most of the time that completes it and the result
//! is returned without creating a future. Only when the socket is not ready
//! does it create a future and register a [`SockOp`] that retries when the
//! poller reports readiness, then resolves the future. The Python methods
//! (`async def sock_recv(...)` in `ferroloop.sockets`) await the future when
//! they get one, so they stay coroutines as asyncio's are; checking the
//! socket here rather than in them took a third of the instructions of a
//! send and a receive.
//!
//! A cancelled future unregisters its operation through a done-callback (the
//! `SockOp` itself is that callable), as asyncio's `_sock_read_done` does.

use std::os::fd::RawFd;

use ferroloop_engine::Direction;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};

use crate::errors::os_error;
use crate::ffi::gil_cell::GilCell;
use crate::io::buffers::WritableBuffer;
use crate::io::sys_io::{self, Io};
use crate::io::Watcher;
use crate::loop_core::{LoopCore, RECV_BUFFER_SIZE};

enum Operation {
    /// Only wait for readiness (the Python caller retries its own call).
    Wait,
    SendFile(SendFile),
    Recv {
        max: usize,
    },
    RecvInto {
        buffer: Py<PyAny>,
    },
    SendAll {
        data: Vec<u8>,
        sent: usize,
    },
}

/// `os.sendfile` from a file to the socket until the file (or `count`) is
/// done, as asyncio's `_sock_sendfile_native_impl` does it, natively: no
/// blocking-call checker sees a file call from the loop's Python code, and
/// no Python call per chunk.
struct SendFile {
    file_fd: RawFd,
    /// The file offset of the next byte to send.
    offset: i64,
    /// 0: until the end of the file.
    count: usize,
    /// How much one call asks for when there is no `count` (the file size).
    blocksize: usize,
    total_sent: usize,
    /// No call has been made yet (asyncio normalises ENOTCONN only after one).
    first_call: bool,
}

/// At most this much is sent per loop iteration, so that one large file
/// does not hold the loop while the socket keeps taking data.
const SENDFILE_BYTES_PER_TURN: usize = 8 * 1024 * 1024;

enum SendFileStep {
    Done,
    Pending,
    /// The turn's share is sent and the socket may take more: go on next
    /// iteration (no edge will announce it).
    Again,
    Failed(std::io::Error),
}

impl SendFile {
    fn step(&mut self, sock_fd: RawFd) -> SendFileStep {
        let mut budget = SENDFILE_BYTES_PER_TURN;
        loop {
            let size = if self.count > 0 {
                self.count - self.total_sent
            } else {
                self.blocksize
            };
            if size == 0 {
                return SendFileStep::Done;
            }
            let sent = sys_io::sendfile(sock_fd, self.file_fd, self.offset, size.min(budget));
            let first = std::mem::replace(&mut self.first_call, false);
            match sent {
                Ok(Io::WouldBlock) => return SendFileStep::Pending,
                Ok(Io::Done(0)) => return SendFileStep::Done,
                Ok(Io::Done(n)) => {
                    self.offset += n as i64;
                    self.total_sent += n;
                    budget -= n.min(budget);
                    if budget == 0 {
                        return SendFileStep::Again;
                    }
                }
                Err(err) => {
                    self.first_call = first;
                    return SendFileStep::Failed(err);
                }
            }
        }
    }

    /// The file position after the data sent, as asyncio leaves it.
    fn update_file_position(&self) -> PyResult<()> {
        if self.total_sent > 0 {
            sys_io::seek_to(self.file_fd, self.offset).map_err(os_error)?;
        }
        Ok(())
    }

    /// asyncio's errors: before anything was sent the native way is "not
    /// available" (the caller may fall back); a connection lost in the
    /// middle is a ConnectionError.
    fn error(&self, py: Python<'_>, err: std::io::Error) -> PyResult<PyErr> {
        let exceptions = py.import(pyo3::intern!(py, "asyncio.exceptions"))?;
        if self.total_sent == 0 {
            let kind = exceptions.getattr(pyo3::intern!(py, "SendfileNotAvailableError"))?;
            return Ok(PyErr::from_value(kind.call1(("os.sendfile call failed",))?));
        }
        let is_enotconn = err.raw_os_error() == Some(libc::ENOTCONN);
        let cause = os_error(err);
        if !self.first_call && is_enotconn {
            let normalised = pyo3::exceptions::PyConnectionError::new_err((
                "socket is not connected",
                libc::ENOTCONN,
            ));
            normalised.set_cause(py, Some(cause));
            return Ok(normalised);
        }
        Ok(cause)
    }
}

/// The descriptor of `sock` if it is a Python socket, after asyncio's
/// checks of one (`ferroloop.sockets._check_socket`: not an `SSLSocket`,
/// non-blocking); `None` for any other object, which the Python method
/// serves through its own methods.
fn socket_descriptor(sock: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
    static SOCKET: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    static SSL_SOCKET: PyOnceLock<Option<Py<PyType>>> = PyOnceLock::new();
    let py = sock.py();
    let socket_type = SOCKET.import(py, "socket", "socket")?;
    if !sock.get_type().is(socket_type) {
        if !sock.is_instance(socket_type)? {
            return Ok(None);
        }
        // A subclass: it may be ssl's (where the ssl module exists).
        let ssl_socket = SSL_SOCKET.get_or_init(py, || {
            py.import("ssl")
                .and_then(|ssl| ssl.getattr("SSLSocket"))
                .and_then(|t| t.cast_into::<PyType>().map_err(PyErr::from))
                .map(Bound::unbind)
                .ok()
        });
        if let Some(ssl_socket) = ssl_socket {
            if sock.is_instance(ssl_socket.bind(py))? {
                return Err(PyTypeError::new_err("Socket cannot be of type SSLSocket"));
            }
        }
    }
    let timeout = sock.call_method0(pyo3::intern!(py, "gettimeout"))?;
    if timeout.is_none() || timeout.extract::<f64>()? != 0.0 {
        return Err(PyValueError::new_err("the socket must be non-blocking"));
    }
    Ok(Some(
        sock.call_method0(pyo3::intern!(py, "fileno"))?.extract()?,
    ))
}

/// A C `Py_ssize_t` argument read as Python's argument parsing reads one:
/// an index, with Python's own OverflowError message.
fn ssize_argument(value: &Bound<'_, PyAny>) -> PyResult<isize> {
    let py = value.py();
    // SAFETY: `value` is a live object; PyNumber_Index returns a new
    // reference or NULL with an exception set, which the Bound takes.
    let index = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(value.as_ptr()))? };
    // SAFETY: `index` is a live int; PyLong_AsSsize_t sets an exception
    // exactly when it fails, which -1 alone cannot tell.
    let n = unsafe { ffi::PyLong_AsSsize_t(index.as_ptr()) };
    if n == -1 {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    Ok(n)
}

/// A C `long` argument (an `off_t` here), read the same way.
fn long_argument(value: &Bound<'_, PyAny>) -> PyResult<i64> {
    let py = value.py();
    // SAFETY: as in `ssize_argument`.
    let index = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(value.as_ptr()))? };
    // SAFETY: `index` is a live int; PyLong_AsLong sets an exception exactly
    // when it fails.
    let n = unsafe { ffi::PyLong_AsLong(index.as_ptr()) };
    if n == -1 {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    Ok(n as i64)
}

/// The result of one attempt.
enum Attempt {
    Complete(Py<PyAny>),
    Pending,
    /// Not done, but not waiting for readiness either: try again on the
    /// next iteration.
    Again,
    Failed(PyErr),
}

#[pyclass(module = "ferroloop._ferroloop", name = "SockOp", frozen)]
pub struct SockOp {
    fd: RawFd,
    direction: Direction,
    loop_: Py<LoopCore>,
    future: Py<PyAny>,
    operation: GilCell<Operation>,
}

/// A `sock_recv` at least this large makes the next one on the descriptor
/// size its `bytes` by what the kernel holds (as the stream transports do).
const LARGE_READ: usize = 32 * 1024;

fn recv_bytes(
    py: Python<'_>,
    core: &LoopCore,
    fd: RawFd,
    max: usize,
) -> PyResult<Option<Py<PyAny>>> {
    let pending = if max >= LARGE_READ && core.state.borrow(py)?.large_sock_readers.contains(&fd) {
        sys_io::bytes_pending(fd)
    } else {
        0
    };
    let (received, data) = if max > RECV_BUFFER_SIZE {
        // As Python's recv(max): a bytes of that size, received into.
        crate::io::buffers::recv_new_bytes(py, fd, max)?
    } else if pending > 0 {
        crate::io::buffers::recv_new_bytes(py, fd, pending.min(max))?
    } else {
        let mut buf = core.take_recv_buffer(py)?;
        let received = sys_io::recv(fd, &mut buf[..max]);
        let data = match &received {
            Ok(Io::Done(n)) if *n > 0 => Some(PyBytes::new(py, &buf[..*n])),
            _ => None,
        };
        core.return_recv_buffer(py, buf)?;
        (received, data)
    };
    // Only a change of the hint touches the loop state: small reads of a
    // descriptor without one (the common case) cost nothing here.
    if let Ok(Io::Done(n)) = received {
        if n >= LARGE_READ {
            core.state.borrow_mut(py)?.large_sock_readers.insert(fd);
        } else if pending > 0 {
            core.state.borrow_mut(py)?.large_sock_readers.remove(&fd);
        }
    }
    match received {
        Ok(Io::Done(_)) => Ok(Some(
            data.unwrap_or_else(|| PyBytes::new(py, b""))
                .into_any()
                .unbind(),
        )),
        Ok(Io::WouldBlock) => Ok(None),
        Err(err) => Err(os_error(err)),
    }
}

fn recv_into(py: Python<'_>, fd: RawFd, buffer: &Bound<'_, PyAny>) -> PyResult<Option<Py<PyAny>>> {
    let view = WritableBuffer::get(buffer)?;
    // SAFETY: the buffer stays exported (`view`) for the whole call, and a
    // writable, exported buffer is valid for writes of `len()` bytes.
    let received = unsafe { sys_io::recv_raw(fd, view.ptr(), view.len()) };
    match received {
        Ok(Io::Done(n)) => Ok(Some(n.into_pyobject(py)?.into_any().unbind())),
        Ok(Io::WouldBlock) => Ok(None),
        Err(err) => Err(os_error(err)),
    }
}

impl SockOp {
    fn attempt(&self, py: Python<'_>) -> PyResult<Attempt> {
        let core = self.loop_.bind(py).get();
        let mut op = self.operation.borrow_mut(py)?;
        let result = match &mut *op {
            Operation::Wait => Ok(Some(py.None())),
            Operation::SendFile(job) => {
                let step = job.step(self.fd);
                let outcome = match step {
                    SendFileStep::Pending => return Ok(Attempt::Pending),
                    SendFileStep::Again => return Ok(Attempt::Again),
                    SendFileStep::Done => Ok(job.total_sent),
                    SendFileStep::Failed(err) => Err(err),
                };
                job.update_file_position()?;
                return Ok(match outcome {
                    Ok(total) => Attempt::Complete(total.into_pyobject(py)?.into_any().unbind()),
                    Err(err) => Attempt::Failed(job.error(py, err)?),
                });
            }
            Operation::Recv { max } => {
                let max = *max;
                drop(op);
                recv_bytes(py, core, self.fd, max)
            }
            Operation::RecvInto { buffer } => {
                let buffer = buffer.clone_ref(py);
                drop(op);
                recv_into(py, self.fd, buffer.bind(py))
            }
            Operation::SendAll { data, sent } => match sys_io::send(self.fd, &data[*sent..]) {
                Ok(Io::Done(n)) => {
                    *sent += n;
                    Ok(if *sent == data.len() {
                        Some(py.None())
                    } else {
                        None
                    })
                }
                Ok(Io::WouldBlock) => Ok(None),
                Err(err) => Err(os_error(err)),
            },
        };
        Ok(match result {
            Ok(Some(value)) => Attempt::Complete(value),
            Ok(None) => Attempt::Pending,
            Err(err) => Attempt::Failed(err),
        })
    }

    /// The poller reported the socket ready: try again.
    pub fn on_ready(slf: &Bound<'_, SockOp>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let future = this.future.bind(py);
        if future
            .call_method0(pyo3::intern!(py, "done"))?
            .is_truthy()?
        {
            return this.unregister(slf);
        }
        match this.attempt(py)? {
            Attempt::Pending => Ok(()),
            Attempt::Again => this.again(slf),
            Attempt::Complete(value) => {
                this.unregister(slf)?;
                future.call_method1(pyo3::intern!(py, "set_result"), (value,))?;
                Ok(())
            }
            Attempt::Failed(err) => {
                this.unregister(slf)?;
                future.call_method1(pyo3::intern!(py, "set_exception"), (err.into_value(py),))?;
                Ok(())
            }
        }
    }

    /// Queues another attempt for the next iteration.
    fn again(&self, slf: &Bound<'_, SockOp>) -> PyResult<()> {
        let py = slf.py();
        self.loop_
            .bind(py)
            .get()
            .push_ready(py, crate::io::Ready::SockOp(slf.clone().unbind()))
    }

    /// Removes this operation from the registry if it is still the watcher.
    fn unregister(&self, slf: &Bound<'_, SockOp>) -> PyResult<()> {
        let py = slf.py();
        let core = self.loop_.bind(py).get();
        let is_current = {
            let st = core.state.borrow(py)?;
            matches!(st.io.as_ref().and_then(|io| io.get(self.fd, self.direction)), Some(Watcher::SockOp(op)) if op.is(slf))
        };
        if is_current {
            let removed = core.unwatch_fd(py, self.fd, self.direction)?;
            drop(removed);
        }
        Ok(())
    }

    /// Tries `operation` now (unless the caller just did); if the socket is
    /// not ready, returns a future and leaves the operation waiting for
    /// readiness (unless a transport owns the socket: asyncio's
    /// `_ensure_fd_no_transport`).
    fn start(
        slf: &Bound<'_, LoopCore>,
        fd: RawFd,
        direction: Direction,
        operation: Operation,
        try_now: bool,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let op = SockOp {
            fd,
            direction,
            loop_: slf.clone().unbind(),
            future: py.None(),
            operation: GilCell::new(operation),
        };
        let mut again = false;
        if try_now {
            match op.attempt(py)? {
                Attempt::Complete(value) => return Ok(value),
                Attempt::Failed(err) => return Err(err),
                Attempt::Pending => {}
                Attempt::Again => again = true,
            }
        }
        crate::loop_core::io_watch::ensure_no_transport(slf, fd.into_pyobject(py)?.as_any())?;
        let future = slf.call_method0(pyo3::intern!(py, "create_future"))?;
        let op = Bound::new(
            py,
            SockOp {
                future: future.clone().unbind(),
                ..op
            },
        )?;
        let replaced =
            slf.get()
                .watch_fd(py, fd, direction, Watcher::SockOp(op.clone().unbind()))?;
        if let Some(Watcher::Callback { handle, .. }) = replaced {
            handle
                .object()
                .bind(py)
                .call_method0(pyo3::intern!(py, "cancel"))?;
        }
        if again {
            op.get().again(&op)?;
        }
        future.call_method1(pyo3::intern!(py, "add_done_callback"), (op,))?;
        Ok(future.unbind())
    }
}

#[pymethods]
impl SockOp {
    /// The future's done-callback: a cancelled (or otherwise finished)
    /// operation stops watching the socket.
    fn __call__(slf: &Bound<'_, Self>, _future: &Bound<'_, PyAny>) -> PyResult<()> {
        slf.get().unregister(slf)
    }

    fn __traverse__(&self, visit: pyo3::gc::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.future)?;
        if let Some(op) = self.operation.borrow_in_traverse(&visit) {
            if let Operation::RecvInto { buffer } = &*op {
                visit.call(buffer)?;
            }
        }
        Ok(())
    }
}

#[pymethods]
impl LoopCore {
    /// A future set (to None) when `fd` is ready for reading, or for writing
    /// if `writable`: for the `sock_*` methods written in Python.
    fn _wait_fd(slf: &Bound<'_, Self>, fd: RawFd, writable: bool) -> PyResult<Py<PyAny>> {
        let direction = if writable {
            Direction::Write
        } else {
            Direction::Read
        };
        SockOp::start(slf, fd, direction, Operation::Wait, false)
    }

    /// `recv(n)` on socket `sock`: the bytes, or a future of them;
    /// `NotImplemented` if `sock` is no Python socket. `n` is read as
    /// Python's `socket.recv` reads it.
    fn _sock_recv(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        n: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Some(fd) = socket_descriptor(sock)? else {
            return Ok(py.NotImplemented());
        };
        let n = ssize_argument(n)?;
        let max = usize::try_from(n)
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("negative buffersize in recv"))?;
        if max == 0 {
            return Ok(PyBytes::new(py, b"").into_any().unbind());
        }
        SockOp::start(slf, fd, Direction::Read, Operation::Recv { max }, true)
    }

    /// `recv_into(buffer)` on socket `sock`: the byte count, or a future of
    /// it; `NotImplemented` if `sock` is no Python socket.
    fn _sock_recv_into(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        buffer: Py<PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Some(fd) = socket_descriptor(sock)? else {
            return Ok(py.NotImplemented());
        };
        if WritableBuffer::get(buffer.bind(py))?.len() == 0 {
            return Ok(0_i32.into_pyobject(py)?.into_any().unbind());
        }
        SockOp::start(
            slf,
            fd,
            Direction::Read,
            Operation::RecvInto { buffer },
            true,
        )
    }

    /// `os.sendfile` of file `file_fd` to socket `fd` from `offset`, `count`
    /// bytes (0: to the end), `blocksize` at a time without a count: the
    /// total sent, or a future of it (asyncio's `_sock_sendfile_native_impl`).
    fn _sock_sendfile(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        file_fd: RawFd,
        offset: &Bound<'_, PyAny>,
        count: &Bound<'_, PyAny>,
        blocksize: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let count = usize::try_from(ssize_argument(count)?).unwrap_or(0);
        let blocksize = usize::try_from(ssize_argument(blocksize)?).unwrap_or(0);
        let job = SendFile {
            file_fd,
            offset: long_argument(offset)?,
            count,
            blocksize,
            total_sent: 0,
            first_call: true,
        };
        SockOp::start(slf, fd, Direction::Write, Operation::SendFile(job), true)
    }

    /// `os.fstat(fd).st_size`, or None when the descriptor has none to give.
    fn _file_size(&self, fd: RawFd) -> Option<u64> {
        sys_io::file_size(fd).ok()
    }

    /// Sends all of `data`: None when done at once, else a future.
    fn _sock_sendall(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let Some(fd) = socket_descriptor(sock)? else {
            return Ok(slf.py().NotImplemented());
        };
        let data = crate::io::buffers::send_data(data)?;
        let bytes = data.bytes();
        let sent = match sys_io::send(fd, bytes).map_err(os_error)? {
            Io::Done(n) => n,
            Io::WouldBlock => 0,
        };
        if sent == bytes.len() {
            return Ok(slf.py().None());
        }
        let rest = Operation::SendAll {
            data: bytes[sent..].to_vec(),
            sent: 0,
        };
        SockOp::start(slf, fd, Direction::Write, rest, false)
    }
}
