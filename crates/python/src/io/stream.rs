//! `StreamCore`: the native engine of a stream socket transport (TCP, Unix).
//!
//! asyncio requires transports to be instances of `asyncio.Transport`, a
//! Python class with `__slots__`, which a native class cannot also inherit.
//! So the transport users see is a small Python class
//! (`ferroloop.transports.SocketTransport`) and this core does the work:
//! reading into the loop's shared buffer and calling `data_received` (or
//! `get_buffer`/`buffer_updated`), sending at once and buffering the rest,
//! flow control, and the close/abort/EOF state machine, with asyncio's
//! semantics and error messages.
//!
//! The descriptor is registered once, for reading and writing, edge-
//! triggered. Readiness nobody needs (writable with nothing to write, readable
//! while paused) is ignored instead of re-registering; so `pause_reading`,
//! `resume_reading` and a full write buffer cost no `epoll_ctl` call. A read
//! that fills the whole buffer is retried next iteration, since the edge
//! that announced it will not come again.
//!
//! Cold paths (error reporting, `connection_lost`, closing the socket) call
//! back into the Python transport.
//!
//! Pipes are streams too: the same core, in a pipe [`StreamKind`], serves
//! `connect_read_pipe` and `connect_write_pipe` (`ferroloop.pipes`).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use ferroloop_engine::FlowControl;
use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};
use pyo3::{PyTraverseError, PyTypeInfo};

use crate::errors::os_error;
use crate::ffi::gil_cell::GilCell;
use crate::io::buffers::{WritableBuffer, WriteData};
use crate::io::protocol_method::ProtocolMethod;
use crate::io::socket_address::{self, ConnectionAddresses, End};
use crate::io::stream_kind::StreamKind;
use crate::io::sys_io::{self, Io};
use crate::io::transport_core::{transport_methods, KindState, NativeTransport, TransportState};
use crate::io::write_buffer::WriteBuffer;
use crate::io::{Ready, Watcher};
use crate::loop_core::LoopCore;

/// A read at least this large makes the next one ask the kernel how much is
/// waiting and read it straight into a `bytes` of that size (`recv_exact`).
const LARGE_READ: usize = 32 * 1024;

/// How the protocol takes data.
pub enum Reader {
    /// `data_received(bytes)`, looked up once.
    Data(ProtocolMethod),
    /// A protocol without a `data_received` (asyncio's `set_protocol` takes
    /// any object): it is looked up at each read, and failing that is the
    /// protocol's error, reported as asyncio reports it.
    Unresolved,
    /// `BufferedProtocol`: `get_buffer(-1)`, then `buffer_updated(n)`.
    Buffered {
        get_buffer: ProtocolMethod,
        buffer_updated: ProtocolMethod,
    },
}

impl Reader {
    pub fn for_protocol(protocol: &Bound<'_, PyAny>) -> PyResult<Reader> {
        let py = protocol.py();
        if protocol.is_instance(buffered_protocol_type(py)?.as_any())? {
            Ok(Reader::Buffered {
                get_buffer: ProtocolMethod::of(protocol, pyo3::intern!(py, "get_buffer"))?,
                buffer_updated: ProtocolMethod::of(protocol, pyo3::intern!(py, "buffer_updated"))?,
            })
        } else {
            Ok(Reader::for_data(protocol))
        }
    }

    /// `data_received`, looked up at each read if the protocol lacks it now.
    fn for_data(protocol: &Bound<'_, PyAny>) -> Reader {
        match ProtocolMethod::of(protocol, pyo3::intern!(protocol.py(), "data_received")) {
            Ok(method) => Reader::Data(method),
            Err(_) => Reader::Unresolved,
        }
    }

    fn clone_ref(&self, py: Python<'_>) -> Reader {
        match self {
            Reader::Data(f) => Reader::Data(f.clone_ref(py)),
            Reader::Unresolved => Reader::Unresolved,
            Reader::Buffered {
                get_buffer,
                buffer_updated,
            } => Reader::Buffered {
                get_buffer: get_buffer.clone_ref(py),
                buffer_updated: buffer_updated.clone_ref(py),
            },
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Reader::Data(f) => f.traverse(visit),
            Reader::Unresolved => Ok(()),
            Reader::Buffered {
                get_buffer,
                buffer_updated,
            } => {
                get_buffer.traverse(visit)?;
                buffer_updated.traverse(visit)
            }
        }
    }
}

fn buffered_protocol_type(py: Python<'_>) -> PyResult<Bound<'_, pyo3::types::PyType>> {
    static TYPE: pyo3::sync::PyOnceLock<Py<pyo3::types::PyType>> = pyo3::sync::PyOnceLock::new();
    Ok(TYPE.import(py, "asyncio", "BufferedProtocol")?.clone())
}

pub struct StreamState {
    shared: TransportState,
    reader: Option<Reader>,
    buffer: WriteBuffer,
    reading_paused: bool,
    /// `eof_received()` asked to keep the connection open: nothing more to read.
    read_eof: bool,
    /// `write_eof()` was called.
    eof: bool,
    /// A sendfile in progress waits for the buffer to drain on this future.
    empty_waiter: Option<Py<PyAny>>,
}

impl KindState for StreamState {
    type Released = (Option<Reader>, Vec<Py<PyBytes>>, Option<Py<PyAny>>);

    fn shared(&self) -> &TransportState {
        &self.shared
    }

    fn shared_mut(&mut self) -> &mut TransportState {
        &mut self.shared
    }

    fn buffered_size(&self) -> usize {
        self.buffer.len()
    }

    fn drop_buffer(&mut self) -> Self::Released {
        (None, self.buffer.clear(), None)
    }

    fn release_own(&mut self) -> Self::Released {
        (
            self.reader.take(),
            self.buffer.clear(),
            self.empty_waiter.take(),
        )
    }

    fn traverse_own(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(reader) = &self.reader {
            reader.traverse(visit)?;
        }
        self.buffer.traverse(visit)?;
        visit.call(&self.empty_waiter)
    }
}

#[pyclass(module = "ferroloop._ferroloop", name = "StreamCore", frozen)]
pub struct StreamCore {
    fd: RawFd,
    kind: StreamKind,
    loop_: Py<LoopCore>,
    state: GilCell<StreamState>,
    /// The last read was large: size the next one by what is pending.
    large_reads: AtomicBool,
    /// An IP socket's own address and its peer's, read when the transport
    /// was made (asyncio's `sockname` and `peername`, which stay known once
    /// the socket is closed); made into tuples when asked for (see
    /// [`socket_address`]). Unknown for other kinds, whose addresses the
    /// Python transport keeps.
    addresses: ConnectionAddresses,
}

/// Which method is writing (their messages and rules differ slightly).
#[derive(Clone, Copy, PartialEq, Eq)]
enum WriteCall {
    Write,
    Writelines,
}

/// What to do once the state borrow is released.
enum After {
    Nothing,
    Fatal(PyErr, &'static str),
}

impl StreamCore {
    fn loop_core<'py>(&self, py: Python<'py>) -> &Bound<'py, LoopCore> {
        self.loop_.bind(py)
    }

    fn address_tuple<'py>(
        &self,
        py: Python<'py>,
        end: End,
    ) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.addresses
            .get(end)
            .map(|addr| socket_address::to_python(py, &addr))
            .transpose()
    }

    /// Runs the work an event loop iteration found for this transport.
    /// `hangup`: the poller saw the peer close, so a short read does not
    /// mean the socket is drained (the end-of-file is still to be read).
    pub fn on_ready(
        slf: &Bound<'_, StreamCore>,
        readable: bool,
        writable: bool,
        hangup: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // An edge-triggered registration reports the socket writable with
        // every event: most such reports find nothing buffered.
        if writable && !this.state.borrow(py)?.buffer.is_empty() {
            let wrote = this.in_write_context(py, || StreamCore::write_ready(slf));
            this.resume_after(slf, &wrote, false)?;
            wrote?;
        }
        if readable {
            let read = this.in_read_context(py, || StreamCore::read_ready(slf, hangup));
            this.resume_after(slf, &read, true)?;
            read?;
        }
        Ok(())
    }

    /// A protocol callback stopped the loop (KeyboardInterrupt, SystemExit)
    /// in the middle of a read or write: asyncio's level-triggered reader or
    /// writer would pick up where it was on the next run, so queue the side
    /// again (its edge is gone).
    fn resume_after(
        &self,
        slf: &Bound<'_, StreamCore>,
        outcome: &PyResult<()>,
        read: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        match outcome {
            Err(err) if crate::errors::is_loop_stopping(py, err) => {
                let again = Ready::Stream {
                    transport: slf.clone().unbind(),
                    readable: read,
                    writable: !read,
                    hangup: read,
                };
                self.loop_core(py).get().push_ready(py, again)
            }
            _ => Ok(()),
        }
    }

    fn read_ready(slf: &Bound<'_, StreamCore>, hangup: bool) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if let StreamKind::WritePipe { .. } = this.kind {
            // The write end of a pipe turns readable when the reader closes.
            if this.state.borrow(py)?.shared.life.is_lost() {
                return Ok(());
            }
            return match this.transport_object(py) {
                Some(t) => t
                    .bind(py)
                    .call_method0(pyo3::intern!(py, "_closed_by_peer"))
                    .map(drop),
                None => Ok(()),
            };
        }
        let (reader, protocol) = {
            let st = this.state.borrow(py)?;
            if st.shared.life.is_lost()
                || st.shared.life.is_closing()
                || st.reading_paused
                || st.read_eof
            {
                return Ok(());
            }
            match (&st.reader, &st.shared.protocol) {
                (Some(r), Some(p)) => (r.clone_ref(py), p.clone_ref(py).into_bound(py)),
                _ => return Ok(()),
            }
        };
        match reader {
            Reader::Data(data_received) => this.read_into_bytes(
                slf,
                |data| data_received.call1(&protocol, data.as_any()),
                hangup,
            ),
            Reader::Unresolved => this.read_into_bytes(
                slf,
                |data| protocol.call_method1(pyo3::intern!(py, "data_received"), (data,)),
                hangup,
            ),
            Reader::Buffered {
                get_buffer,
                buffer_updated,
            } => {
                this.read_into_protocol_buffer(slf, &protocol, &get_buffer, &buffer_updated, hangup)
            }
        }
    }

    fn read_into_bytes<'py>(
        &self,
        slf: &Bound<'py, StreamCore>,
        data_received: impl FnOnce(Bound<'py, PyBytes>) -> PyResult<Bound<'py, PyAny>>,
        hangup: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let pending = if self.large_reads.load(Ordering::Relaxed) {
            sys_io::bytes_pending(self.fd)
        } else {
            0
        };
        let (received, data, filled) = if pending > 0 {
            self.recv_exact(py, pending)?
        } else {
            self.recv_shared(py)?
        };
        if let Ok(Io::Done(n)) = received {
            self.large_reads.store(n >= LARGE_READ, Ordering::Relaxed);
        }
        match received {
            Ok(Io::WouldBlock) => Ok(()),
            Ok(Io::Done(0)) => self.eof_received(slf),
            Ok(Io::Done(_)) => {
                if let Err(err) = data_received(data.expect("data of a non-empty read")) {
                    if !self.kind.is_pipe() {
                        return self.fatal_error(
                            py,
                            err,
                            "Fatal error: protocol.data_received() call failed.",
                        );
                    }
                    // A pipe reads on (what is left, or its end, still comes).
                    self.callback_failed(py, err)?;
                }
                if filled || hangup {
                    self.retry_read(slf, hangup)?;
                }
                Ok(())
            }
            Err(err) => self.fatal_error(py, os_error(err), self.kind.read_error()),
        }
    }

    /// Reads into the loop's shared buffer and copies out exactly the data:
    /// the cheapest way for the usual small reads.
    fn recv_shared<'py>(
        &self,
        py: Python<'py>,
    ) -> PyResult<(std::io::Result<Io>, Option<Bound<'py, PyBytes>>, bool)> {
        let core = self.loop_core(py).get();
        let mut buf = core.take_recv_buffer(py)?;
        let received = self.kind.receive(self.fd, &mut buf);
        let data = match &received {
            Ok(Io::Done(n)) if *n > 0 => Some(PyBytes::new(py, &buf[..*n])),
            _ => None,
        };
        let filled = matches!(received, Ok(Io::Done(n)) if n == buf.len());
        core.return_recv_buffer(py, buf)?;
        Ok((received, data, filled))
    }

    /// Reads `pending` bytes (what the kernel holds, at most a full read)
    /// straight into a `bytes` of that size: for large reads this saves
    /// copying them out of the shared buffer. (A `bytes` sized for a full
    /// read and shrunk afterwards does not pay: fresh pages fault in.)
    fn recv_exact<'py>(
        &self,
        py: Python<'py>,
        pending: usize,
    ) -> PyResult<(std::io::Result<Io>, Option<Bound<'py, PyBytes>>, bool)> {
        let size = pending.min(crate::loop_core::RECV_BUFFER_SIZE);
        let kind = self.kind;
        let fd = self.fd;
        let (received, data) = crate::io::buffers::new_bytes_from(py, size, |ptr, len| {
            // SAFETY: new_bytes_from passes memory valid for `len` bytes.
            unsafe { kind.receive_raw(fd, ptr, len) }
        })?;
        let filled = matches!(received, Ok(Io::Done(n)) if n == crate::loop_core::RECV_BUFFER_SIZE);
        Ok((received, data, filled))
    }

    fn read_into_protocol_buffer(
        &self,
        slf: &Bound<'_, StreamCore>,
        protocol: &Bound<'_, PyAny>,
        get_buffer: &ProtocolMethod,
        buffer_updated: &ProtocolMethod,
        hangup: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let target = match get_buffer.call1(protocol, (-1i32).into_pyobject(py)?.as_any()) {
            Ok(target) => target,
            Err(err) => {
                return self.fatal_error(py, err, "Fatal error: protocol.get_buffer() call failed.")
            }
        };
        // asyncio checks len(buf) (a failure is get_buffer()'s), then
        // recv_into(buf) takes it (a refusal is a read error).
        let sized = match target.len() {
            Ok(0) => Err(PyRuntimeError::new_err(
                "get_buffer() returned an empty buffer",
            )),
            Ok(_) => Ok(()),
            Err(err) => Err(err),
        };
        if let Err(err) = sized {
            return self.fatal_error(py, err, "Fatal error: protocol.get_buffer() call failed.");
        }
        let view = match WritableBuffer::get(&target) {
            Ok(view) => view,
            Err(err) => return self.fatal_error(py, err, "Fatal read error on socket transport"),
        };
        // SAFETY: `view` holds the exported buffer for the duration of the
        // call, so its pointer is valid for writes of `view.len()` bytes.
        let received = unsafe { self.kind.receive_raw(self.fd, view.ptr(), view.len()) };
        let capacity = view.len();
        drop(view);
        match received {
            Ok(Io::WouldBlock) => Ok(()),
            Ok(Io::Done(0)) => self.eof_received(slf),
            Ok(Io::Done(n)) => {
                if let Err(err) = buffer_updated.call1(protocol, n.into_pyobject(py)?.as_any()) {
                    return self.fatal_error(
                        py,
                        err,
                        "Fatal error: protocol.buffer_updated() call failed.",
                    );
                }
                if n == capacity || hangup {
                    self.retry_read(slf, hangup)?;
                }
                Ok(())
            }
            Err(err) => self.fatal_error(py, os_error(err), self.kind.read_error()),
        }
    }

    /// The edge that announced the data will not repeat while data (or the
    /// end of the stream) remains: read again next iteration.
    fn retry_read(&self, slf: &Bound<'_, StreamCore>, hangup: bool) -> PyResult<()> {
        let py = slf.py();
        let again = Ready::Stream {
            transport: slf.clone().unbind(),
            readable: true,
            writable: false,
            hangup,
        };
        self.loop_core(py).get().push_ready(py, again)
    }

    fn eof_received(&self, slf: &Bound<'_, StreamCore>) -> PyResult<()> {
        let py = slf.py();
        let (protocol, transport) = {
            let st = self.state.borrow(py)?;
            (
                st.shared.protocol.as_ref().map(|p| p.clone_ref(py)),
                st.shared.transport.as_ref().map(|t| t.clone_ref(py)),
            )
        };
        let (Some(protocol), Some(transport)) = (protocol, transport) else {
            return Ok(());
        };
        if self.kind.is_pipe() {
            // asyncio's pipes schedule `eof_received` (its answer is not
            // asked) and close: a pipe has no half-open state.
            return transport
                .bind(py)
                .call_method0(pyo3::intern!(py, "_eof_from_peer"))
                .map(drop);
        }
        transport
            .bind(py)
            .call_method1(pyo3::intern!(py, "_log_debug"), ("%r received EOF",))?;
        let keep_open = match protocol
            .bind(py)
            .call_method0(pyo3::intern!(py, "eof_received"))
        {
            Ok(result) => result.is_truthy()?,
            Err(err) => {
                return self.fatal_error(
                    py,
                    err,
                    "Fatal error: protocol.eof_received() call failed.",
                )
            }
        };
        if keep_open {
            // Half-open: the protocol may still write, but there is nothing
            // more to read.
            self.state.borrow_mut(py)?.read_eof = true;
            Ok(())
        } else {
            slf.get().close(py)
        }
    }

    /// A pipe's protocol raised: asyncio's pipe transports let the error out
    /// of their reader callback, to the loop's exception handler, and go on.
    fn callback_failed(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        if crate::errors::is_loop_stopping(py, &err) {
            return Err(err);
        }
        if let Some(transport) = self.transport_object(py) {
            transport.bind(py).call_method1(
                pyo3::intern!(py, "_report_read_callback_error"),
                (err.into_value(py),),
            )?;
        }
        Ok(())
    }

    fn write_ready(slf: &Bound<'_, StreamCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let released;
        let outcome = {
            let mut st = this.state.borrow_mut(py)?;
            if st.buffer.is_empty() || st.shared.life.is_lost() {
                return Ok(());
            }
            let sent = {
                let slices = st.buffer.slices(py);
                this.kind.send_vectored(this.fd, &slices)
            };
            match sent {
                Ok(Io::Done(n)) => {
                    released = st.buffer.consume(py, n);
                    After::Nothing
                }
                Ok(Io::WouldBlock) => return Ok(()),
                Err(err)
                    if err.raw_os_error() == Some(libc::EPIPE)
                        && this.kind == (StreamKind::WritePipe { watch_peer: true }) =>
                {
                    // The reader left; asyncio's reader callback sees that
                    // before its writer runs (a writable report queued
                    // before the write lets ours run first): report it so.
                    drop(st);
                    return StreamCore::read_ready(slf, true);
                }
                Err(err) => {
                    released = st.buffer.clear();
                    After::Fatal(os_error(err), this.kind.write_error())
                }
            }
        };
        drop(released);
        if let After::Fatal(err, message) = outcome {
            let waiter = this
                .state
                .borrow(py)?
                .empty_waiter
                .as_ref()
                .map(|w| w.clone_ref(py));
            let exc = err.value(py).clone();
            this.fatal_error(py, err, message)?;
            if let Some(waiter) = waiter {
                waiter
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "set_exception"), (exc,))?;
            }
            return Ok(());
        }
        this.flow_notify(py, FlowControl::after_drain)?;
        let (empty, closing, eof, waiter, writer_context) = {
            let mut st = this.state.borrow_mut(py)?;
            let empty = st.buffer.is_empty();
            let (waiter, writer_context) = if empty {
                // Drained: asyncio removes its writer (and with it the
                // writer's context) here.
                (
                    st.empty_waiter.as_ref().map(|w| w.clone_ref(py)),
                    st.shared.write_context.take(),
                )
            } else {
                (None, None)
            };
            (
                empty,
                st.shared.life.is_closing(),
                st.eof,
                waiter,
                writer_context,
            )
        };
        drop(writer_context);
        if empty {
            if let Some(waiter) = waiter {
                waiter
                    .bind(py)
                    .call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
            }
            if closing {
                this.call_connection_lost_now(py, py.None())?;
            } else if eof {
                let _ = sys_io::shutdown_write(this.fd);
            }
        }
        Ok(())
    }

    /// `transport.write(data)`: send at once what the socket takes, buffer
    /// the rest. Installed as a raw one-argument method (see `install`).
    pub fn write(slf: &Bound<'_, StreamCore>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = match WriteData::extract(data) {
            Ok(data) => data,
            // asyncio's pipes assert the type.
            Err(_) if slf.get().kind.is_pipe() => {
                return Err(pyo3::exceptions::PyAssertionError::new_err(
                    data.repr()?.unbind(),
                ))
            }
            Err(err) => return Err(err),
        };
        StreamCore::write_data(slf, data, WriteCall::Write)
    }

    /// What `write()` and 3.12's `writelines()` share: send at once what the
    /// socket takes, buffer the rest.
    fn write_data(
        slf: &Bound<'_, StreamCore>,
        data: WriteData<'_>,
        call: WriteCall,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let method = match call {
            WriteCall::Write => "write",
            WriteCall::Writelines => "writelines",
        };
        let (failure, buffered, started_buffering) = {
            let mut st = this.state.borrow_mut(py)?;
            if this.kind.is_pipe() && st.shared.life.is_closing() && !data.is_empty() {
                // A closing pipe drops writes, as a lost connection does.
                let warn = st.shared.life.write_after_loss();
                drop(st);
                if warn {
                    crate::python_helpers::log_warning(py, this.kind.lost_write_warning())?;
                }
                return Ok(());
            }
            if st.eof {
                return Err(PyRuntimeError::new_err(format!(
                    "Cannot call {method}() after write_eof()"
                )));
            }
            if st.empty_waiter.is_some() {
                return Err(PyRuntimeError::new_err(format!(
                    "unable to {method}; sendfile is in progress"
                )));
            }
            if data.is_empty() {
                return Ok(());
            }
            if st.shared.life.is_lost() {
                if call == WriteCall::Writelines {
                    // asyncio's writelines() drops it without a word.
                    return Ok(());
                }
                let warn = st.shared.life.write_after_loss();
                drop(st);
                if warn {
                    crate::python_helpers::log_warning(py, this.kind.lost_write_warning())?;
                }
                return Ok(());
            }
            let bytes = match data.bytes(py) {
                Ok(bytes) => bytes,
                Err(err) => {
                    drop(st);
                    return this.fatal_error(py, err, "Fatal write error on socket transport");
                }
            };
            let mut sent = 0;
            let mut failure = None;
            let was_empty = st.buffer.is_empty();
            if was_empty {
                match this.kind.send(this.fd, bytes) {
                    Ok(Io::Done(n)) => sent = n,
                    Ok(Io::WouldBlock) => {}
                    Err(err) => failure = Some(os_error(err)),
                }
            }
            let buffering = failure.is_none() && sent < bytes.len();
            if buffering {
                match &data {
                    WriteData::Shared(b) => st.buffer.push_shared(py, b.clone().unbind(), sent),
                    _ => st.buffer.push_copy(&bytes[sent..]),
                }
            }
            (failure, buffering, was_empty && buffering)
        };
        if let Some(err) = failure {
            return this.fatal_error(py, err, this.kind.write_error());
        }
        if started_buffering {
            // Where asyncio adds its writer, whose handle copies the context.
            let context = crate::context::copy_current(py)?;
            let previous = this
                .state
                .borrow_mut(py)?
                .shared
                .write_context
                .replace(context);
            drop(previous);
        }
        if !buffered {
            // Sent whole: the buffered size did not change.
            return Ok(());
        }
        this.flow_notify(py, FlowControl::after_growth)
    }

    /// Removes the registrations of the sides this pipe end watches, if they
    /// are still its own (`add_reader` may have taken a side over).
    fn unwatch_pipe(slf: &Bound<'_, Self>) -> PyResult<Vec<Watcher>> {
        let py = slf.py();
        let this = slf.get();
        let core = this.loop_core(py).get();
        let mut removed = Vec::new();
        for &direction in this.kind.pipe_directions() {
            let owned = {
                let st = core.state.borrow(py)?;
                matches!(
                    st.io.as_ref().and_then(|io| io.get(this.fd, direction)),
                    Some(Watcher::Pipe(t)) if t.is(slf)
                )
            };
            if owned {
                removed.extend(core.unwatch_fd(py, this.fd, direction)?);
            }
        }
        Ok(removed)
    }
}

#[pymethods]
impl StreamCore {
    /// `StreamCore(loop, fd, protocol, transport)` for a socket;
    /// `pipe='read'` or `pipe='write'` (with `watch_peer`) for a pipe end.
    ///
    /// `ip_addresses`: the socket is an IP one, whose addresses the core
    /// reads and keeps; `accepted_from` is then the peer's raw address as
    /// [`accept`](crate::io::accept) returned it (else the socket is asked).
    #[new]
    #[pyo3(signature = (
        r#loop, fd, protocol, transport, pipe=None, watch_peer=false,
        ip_addresses=false, accepted_from=None,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn py_new(
        r#loop: &Bound<'_, PyAny>,
        fd: RawFd,
        protocol: &Bound<'_, PyAny>,
        transport: Py<PyAny>,
        pipe: Option<&str>,
        watch_peer: bool,
        ip_addresses: bool,
        accepted_from: Option<&[u8]>,
    ) -> PyResult<Self> {
        let kind = match pipe {
            None => StreamKind::Socket,
            Some("read") => StreamKind::ReadPipe,
            Some("write") => StreamKind::WritePipe { watch_peer },
            Some(other) => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "pipe must be 'read' or 'write', not {other:?}"
                )))
            }
        };
        let addresses = if ip_addresses {
            ConnectionAddresses::read(fd, accepted_from)
        } else {
            ConnectionAddresses::Unknown
        };
        let core = StreamCore {
            fd,
            kind,
            large_reads: AtomicBool::new(false),
            addresses,
            loop_: r#loop.cast::<LoopCore>()?.clone().unbind(),
            state: GilCell::new(StreamState {
                shared: TransportState::new(transport, None),
                reader: None,
                buffer: WriteBuffer::default(),
                reading_paused: false,
                read_eof: false,
                eof: false,
                empty_waiter: None,
            }),
        };
        NativeTransport::set_protocol(&core, protocol)?;
        Ok(core)
    }

    /// 3.12's `writelines()`: its own checks and messages, any falsy
    /// argument is nothing to write, and every item is taken as a
    /// `memoryview` (so its errors are memoryview's). (3.11's is the base
    /// class's `write(b''.join(list_of_data))`.)
    pub fn writelines(slf: &Bound<'_, Self>, list_of_data: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        {
            let st = slf.get().state.borrow(py)?;
            if st.eof {
                return Err(PyRuntimeError::new_err(
                    "Cannot call writelines() after write_eof()",
                ));
            }
            if st.empty_waiter.is_some() {
                return Err(PyRuntimeError::new_err(
                    "unable to writelines; sendfile is in progress",
                ));
            }
        }
        if !list_of_data.is_truthy()? {
            return Ok(());
        }
        let mut views = Vec::new();
        for item in list_of_data.try_iter()? {
            views.push(pyo3::types::PyMemoryView::from(&item?)?);
        }
        let mut joined = Vec::new();
        for view in &views {
            match crate::io::buffers::send_data(view.as_any()) {
                Ok(buffer) => joined.extend_from_slice(buffer.bytes()),
                // asyncio queues the views and fails when sendmsg() takes
                // them (a non-contiguous one): a fatal write error.
                Err(err) => {
                    return slf
                        .get()
                        .fatal_error(py, err, "Fatal write error on socket transport")
                }
            }
        }
        StreamCore::write_data(slf, WriteData::Copied(joined), WriteCall::Writelines)
    }

    fn write_eof(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.kind.is_pipe() {
            // A pipe cannot be half-closed: its end of file is its close.
            return slf.get().close(py);
        }
        let mut st = this.state.borrow_mut(py)?;
        if st.shared.life.is_closing() || st.eof {
            return Ok(());
        }
        st.eof = true;
        if st.buffer.is_empty() {
            sys_io::shutdown_write(this.fd).map_err(os_error)?;
        }
        Ok(())
    }

    fn can_write_eof(&self) -> bool {
        true
    }

    /// An IP socket's address, as `getsockname()` gave it when the
    /// transport was made; `None` if it failed.
    fn _sockname<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.address_tuple(py, End::Local)
    }

    /// An IP socket's peer, as `accept()` or `getpeername()` gave it when
    /// the transport was made; `None` if unknown.
    fn _peername<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyTuple>>> {
        self.address_tuple(py, End::Peer)
    }

    /// The descriptor (the transport's `_sock_fd`).
    #[getter]
    fn _fd(&self) -> RawFd {
        self.fd
    }

    fn is_reading(&self, py: Python<'_>) -> PyResult<bool> {
        let st = self.state.borrow(py)?;
        Ok(!st.reading_paused && !st.shared.life.is_closing())
    }

    /// True if reading was paused by this call.
    fn pause_reading(&self, py: Python<'_>) -> PyResult<bool> {
        let mut st = self.state.borrow_mut(py)?;
        if st.reading_paused || st.shared.life.is_closing() {
            return Ok(false);
        }
        st.reading_paused = true;
        Ok(true)
    }

    /// True if reading was resumed by this call.
    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = this.state.borrow_mut(py)?;
            if st.shared.life.is_closing() || !st.reading_paused {
                return Ok(false);
            }
            st.reading_paused = false;
        }
        // asyncio adds a new reader here, whose handle copies the context of
        // the caller.
        let context = crate::context::copy_current(py)?;
        let previous = this
            .state
            .borrow_mut(py)?
            .shared
            .read_context
            .replace(context);
        drop(previous);
        // Data (or the end) may have arrived while paused, and its edge is
        // gone: look, until a read comes back empty-handed.
        this.retry_read(slf, true)?;
        Ok(true)
    }

    /// Stops watching the socket for a while (sendfile writes to it
    /// directly); `_resume` starts again.
    fn _suspend(slf: &Bound<'_, Self>) -> PyResult<()> {
        StreamCore::suspend(slf)
    }

    fn _resume(slf: &Bound<'_, Self>) -> PyResult<()> {
        StreamCore::start(slf)
    }

    /// For sendfile: a future set when the write buffer is empty; writes are
    /// refused until then.
    fn _make_empty_waiter(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        if self.state.borrow(py)?.empty_waiter.is_some() {
            return Err(PyRuntimeError::new_err("Empty waiter is already set"));
        }
        let waiter = self
            .loop_
            .bind(py)
            .call_method0(pyo3::intern!(py, "create_future"))?;
        let drained = {
            let mut st = self.state.borrow_mut(py)?;
            // Kept even when already drained: writes are refused while the
            // sendfile that asked for it runs.
            st.empty_waiter = Some(waiter.clone().unbind());
            st.buffer.is_empty()
        };
        if drained {
            waiter.call_method1(pyo3::intern!(py, "set_result"), (py.None(),))?;
        }
        Ok(waiter.unbind())
    }

    fn _reset_empty_waiter(&self, py: Python<'_>) -> PyResult<()> {
        let waiter = self.state.borrow_mut(py)?.empty_waiter.take();
        drop(waiter);
        Ok(())
    }
}

transport_methods!(StreamCore);

impl NativeTransport for StreamCore {
    type State = StreamState;

    fn state(&self) -> &GilCell<StreamState> {
        &self.state
    }

    fn event_loop(&self) -> &Py<LoopCore> {
        &self.loop_
    }

    fn traverse_fixed(&self, _visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        Ok(())
    }

    /// Sockets: both sides, edge-triggered, as one registration. Pipes: the
    /// sides this end watches, each as its own (a pty's reading and writing
    /// transports may share a descriptor).
    fn watch(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this.kind.is_pipe() {
            return Self::watch_socket(slf, this.fd, Watcher::Stream);
        }
        let core = this.loop_core(py).get();
        for &direction in this.kind.pipe_directions() {
            let watcher = Watcher::Pipe(slf.clone().unbind());
            let replaced = core.watch_fd(py, this.fd, direction, watcher)?;
            drop(replaced);
        }
        Ok(())
    }

    fn unwatch(slf: &Bound<'_, Self>) -> PyResult<()> {
        if !slf.get().kind.is_pipe() {
            return Self::unwatch_socket(
                slf,
                slf.get().fd,
                |w| matches!(w, Watcher::Stream(t) if t.is(slf)),
            );
        }
        let removed = StreamCore::unwatch_pipe(slf)?;
        drop(removed);
        Ok(())
    }

    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = protocol.py();
        let reader = match self.kind {
            StreamKind::Socket => Some(Reader::for_protocol(protocol)?),
            // asyncio's read pipes call `data_received` whatever the protocol.
            StreamKind::ReadPipe => Some(Reader::for_data(protocol)),
            StreamKind::WritePipe { .. } => None,
        };
        let previous = {
            let mut st = self.state.borrow_mut(py)?;
            (
                st.shared.protocol.replace(protocol.clone().unbind()),
                std::mem::replace(&mut st.reader, reader),
            )
        };
        drop(previous);
        Ok(())
    }
}

/// The docstring of every native `write` (the core's and the transport's).
pub const WRITE_DOC: &std::ffi::CStr =
    c"write(data)\n--\n\nSend data, buffering what the socket cannot take now.";

/// `StreamCore.write(data)`, a `METH_O` entry point (see [`crate::ffi`]).
unsafe extern "C" fn raw_write(
    slf: *mut ffi::PyObject,
    data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live StreamCore (the
    // descriptor checked its type) and `data` a live argument, both borrowed
    // for the call.
    unsafe {
        crate::ffi::trampoline(|py| {
            let slf = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<StreamCore>();
            StreamCore::write(&slf, &Bound::from_borrowed_ptr(py, data))?;
            Ok(py.None().into_ptr())
        })
    }
}

/// Installs `StreamCore.write` as a raw one-argument method: the protocol's
/// `transport.write(data)` is the hottest call of a connection, and PyO3's
/// argument handling cost as much as the send itself.
pub fn install(py: Python<'_>) -> PyResult<()> {
    let def = crate::ffi::one_argument_method(c"write", raw_write, WRITE_DOC);
    crate::ffi::install_method(py, &StreamCore::type_object(py), def)
}
