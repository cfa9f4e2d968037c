//! What the engine's queues hold for the Python loop.
//!
//! The ready queue holds more than callbacks: a transport's readiness is
//! queued as itself (no `Handle`, no bound method allocated per event), in
//! the same FIFO as callbacks, so ordering is exactly asyncio's (I/O found by
//! a poll runs after the callbacks queued before it).

use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::PyTraverseError;

use crate::datagram_transport::DatagramCore;
use crate::handles::HandleRef;
use crate::sock_ops::SockOp;
use crate::stream_transport::StreamCore;

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
    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Ready::Callback(h) => visit.call(h.object()),
            Ready::Stream { transport, .. } => visit.call(transport),
            Ready::Datagram { transport, .. } => visit.call(transport),
            Ready::SockOp(op) => visit.call(op),
        }
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
