//! The native I/O kinds, and what the engine's queues hold for them.
//!
//! - [`stream`]: stream socket and pipe transports ([`stream_kind`] says
//!   which), with [`write_buffer`], and [`socket_transport`] (the Python
//!   socket transport class's native `write`);
//! - [`datagram`]: datagram socket transports, with [`datagram_addresses`];
//! - [`sock_ops`]: the pending `sock_*` operations;
//! - [`accept`]: a server's connections accepted natively;
//! - shared by them: [`transport_core`] (what every transport kind has:
//!   lifecycle, flow control, fatal errors, contexts, the common methods),
//!   [`buffers`] (Python buffers given to system calls), [`protocol_method`]
//!   (a protocol's callbacks, kept without bound methods), [`socket_address`]
//!   (IP addresses between the kernel's form and Python's) and [`sys_io`]
//!   (the system calls).
//!
//! The ready queue holds more than callbacks: a transport's readiness is
//! queued as itself (no `Handle`, no bound method allocated per event), in
//! the same FIFO as callbacks, so ordering is exactly asyncio's (I/O found by
//! a poll runs after the callbacks queued before it).

pub mod accept;
pub mod buffers;
pub mod datagram;
pub mod datagram_addresses;
pub mod protocol_method;
pub mod sock_ops;
pub mod socket_address;
pub mod socket_transport;
pub mod stream;
pub mod stream_kind;
pub mod sys_io;
pub mod transport_core;
pub mod write_buffer;

use ferroloop_engine::{Direction, IoRegistry, Readiness, ReadyQueue};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use crate::handles::HandleRef;
use datagram::DatagramCore;
use sock_ops::SockOp;
use stream::StreamCore;
use transport_core::NativeTransport;

/// An entry of the ready queue.
pub enum Ready {
    Callback(HandleRef),
    Stream {
        transport: Py<StreamCore>,
        readable: bool,
        writable: bool,
        hangup: bool,
    },
    Datagram {
        transport: Py<DatagramCore>,
        readable: bool,
        writable: bool,
    },
    SockOp(Py<SockOp>),
}

/// The watcher of one side of a descriptor in the fd registry.
pub enum Watcher {
    /// `add_reader`/`add_writer`: level-triggered, re-armed after each report.
    /// `fileobj` is what the caller passed (a number or an object with
    /// `fileno()`): asyncio's selector finds a registration by it when its
    /// `fileno()` no longer answers (a closed socket's is -1).
    Callback {
        handle: HandleRef,
        fileobj: Py<PyAny>,
    },
    /// A transport owns both sides and reads until the socket is drained.
    Stream(Py<StreamCore>),
    /// A pipe transport owns one side (a pty's reading and writing
    /// transports may share a descriptor), queued per side as `Ready::Stream`.
    Pipe(Py<StreamCore>),
    Datagram(Py<DatagramCore>),
    /// A pending `sock_*` call, removed when it completes.
    SockOp(Py<SockOp>),
}

impl Ready {
    /// Drops the item as the loop thread, which is attached to the
    /// interpreter: dropping the `Py` itself would first ask PyO3's
    /// thread-local whether this thread is (about 30 instructions a callback
    /// on `call_soon`'s path).
    pub fn release(self, py: Python<'_>) {
        let object = match self {
            Ready::Callback(handle) => handle.into_object(),
            Ready::Stream { transport, .. } => transport.into_any(),
            Ready::Datagram { transport, .. } => transport.into_any(),
            Ready::SockOp(op) => op.into_any(),
        };
        drop(object.into_bound(py));
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Callback(h) => visit.call(h.object()),
            Ready::Stream { transport, .. } => visit.call(transport),
            Ready::Datagram { transport, .. } => visit.call(transport),
            Ready::SockOp(op) => visit.call(op),
        }
    }

    /// Does the work of an I/O item (a callback is the loop's to run).
    #[inline]
    pub fn run_io(&self, py: Python<'_>) -> PyResult<()> {
        match self {
            Ready::Callback(_) => Ok(()),
            Ready::Stream {
                transport,
                readable,
                writable,
                hangup,
            } => StreamCore::on_ready(transport.bind(py), *readable, *writable, *hangup),
            Ready::Datagram {
                transport,
                readable,
                writable,
            } => DatagramCore::on_ready(transport.bind(py), *readable, *writable),
            Ready::SockOp(op) => SockOp::on_ready(op.bind(py)),
        }
    }

    /// What an item runs, for naming it: the callback, or the transport
    /// (whose protocol method runs), or the socket operation.
    pub fn subject(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self {
            Ready::Callback(handle) => handle.callback(py),
            Ready::SockOp(op) => Some(op.clone_ref(py).into_any()),
            io => io.transport(py),
        }
    }

    /// The Python transport whose work an I/O item is, if any.
    pub fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self {
            Ready::Stream { transport, .. } => transport.get().transport_object(py),
            Ready::Datagram { transport, .. } => transport.get().transport_object(py),
            Ready::Callback(_) | Ready::SockOp(_) => None,
        }
    }
}

/// Queues what one ready descriptor's watchers must do. A transport owns
/// both sides and is queued once with both readinesses; callbacks, pipes and
/// socket operations are queued per side. Descriptors with callback
/// watchers are re-armed, which makes their readiness level-triggered.
pub fn queue_readiness(
    py: Python<'_>,
    io: &mut IoRegistry<Watcher>,
    ready: &mut ReadyQueue<Ready>,
    readiness: Readiness,
    discarded: &mut Vec<Watcher>,
) {
    let fd = readiness.fd;
    match io.get(fd, Direction::Read) {
        Some(Watcher::Stream(transport)) => {
            ready.push(Ready::Stream {
                transport: transport.clone_ref(py),
                readable: readiness.readable,
                writable: readiness.writable,
                hangup: readiness.hangup,
            });
            return;
        }
        Some(Watcher::Datagram(transport)) => {
            ready.push(Ready::Datagram {
                transport: transport.clone_ref(py),
                readable: readiness.readable,
                writable: readiness.writable,
            });
            return;
        }
        _ => {}
    }
    let mut level_triggered = false;
    for (is_ready, direction) in [
        (readiness.readable, Direction::Read),
        (readiness.writable, Direction::Write),
    ] {
        if !is_ready {
            continue;
        }
        match io.get(fd, direction) {
            Some(Watcher::Callback { handle, .. }) => {
                level_triggered = true;
                if handle.is_cancelled() {
                    discarded.extend(io.remove(fd, direction));
                } else {
                    ready.push(Ready::Callback(handle.clone_ref(py)));
                }
            }
            Some(Watcher::SockOp(op)) => ready.push(Ready::SockOp(op.clone_ref(py))),
            Some(Watcher::Pipe(transport)) => ready.push(Ready::Stream {
                transport: transport.clone_ref(py),
                readable: direction == Direction::Read,
                writable: direction == Direction::Write,
                hangup: readiness.hangup,
            }),
            _ => {}
        }
    }
    if level_triggered {
        io.rearm(fd);
    }
}

impl Watcher {
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Watcher::Callback { handle, fileobj } => {
                visit.call(handle.object())?;
                visit.call(fileobj)
            }
            Watcher::Stream(t) | Watcher::Pipe(t) => visit.call(t),
            Watcher::Datagram(t) => visit.call(t),
            Watcher::SockOp(op) => visit.call(op),
        }
    }

    /// The transport owning the descriptor, if a socket transport does
    /// (asyncio does not guard the descriptors of pipe transports).
    pub fn transport(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match self {
            Watcher::Stream(t) => t.get().transport_object(py),
            Watcher::Datagram(t) => t.get().transport_object(py),
            _ => None,
        }
    }
}
