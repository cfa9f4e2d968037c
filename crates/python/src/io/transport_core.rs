//! The transport core: what every native transport kind shares.
//!
//! A kind (stream sockets and pipes in [`super::stream`], datagram sockets
//! in [`super::datagram`]) is a frozen pyclass that keeps its mutable state
//! in a [`GilCell`]; that state embeds a [`TransportState`]: the Python
//! transport and protocol, the lifecycle and flow control (their arithmetic
//! is the engine's), and the contexts the protocol's callbacks run in. The
//! kind implements [`NativeTransport`] (how it registers its descriptor,
//! what it buffers) and gets the rest from here: closing and aborting with
//! `connection_lost` exactly once, fatal errors, pause/resume notices,
//! starting and stopping to watch, GC traverse/clear of the shared fields,
//! and, through [`transport_methods!`], the `#[pymethods]` every transport
//! has, so each is written once and the kinds cannot drift apart.

use ferroloop_engine::{FlowControl, Lifecycle, WriteFlow};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::{PyClass, PyTraverseError};

use crate::errors::is_loop_stopping;
use crate::ffi::gil_cell::GilCell;
use crate::loop_core::LoopCore;

/// The state every transport kind has.
pub struct TransportState {
    /// The Python `asyncio.Transport` this core works for; `None` once the
    /// connection is over and the core has let go of everything.
    pub transport: Option<Py<PyAny>>,
    pub protocol: Option<Py<PyAny>>,
    pub flow: FlowControl,
    pub life: Lifecycle,
    /// The protocol's read callbacks (`data_received`, `eof_received`, ...)
    /// run in this context: a copy of the one current when the transport
    /// started reading, as asyncio's reader handle copies it (and again at
    /// each `resume_reading()`, which in asyncio adds a new reader).
    pub read_context: Option<Py<PyAny>>,
    /// The write side's callbacks (`resume_writing`, `connection_lost` once
    /// drained) run in a copy of the context current when buffered data made
    /// the transport start watching for writability (asyncio's writer
    /// handle); `None` while nothing is buffered.
    pub write_context: Option<Py<PyAny>>,
}

/// The objects a [`TransportState`] lets go of. They are dropped once no
/// state is borrowed: dropping one may run Python code (`__del__`, a weak
/// reference's callback) that calls back into the transport.
pub type ReleasedObjects = [Option<Py<PyAny>>; 4];

impl TransportState {
    pub fn new(transport: Py<PyAny>, protocol: Option<Py<PyAny>>) -> Self {
        TransportState {
            transport: Some(transport),
            protocol,
            flow: FlowControl::default(),
            life: Lifecycle::default(),
            read_context: None,
            write_context: None,
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.transport)?;
        visit.call(&self.protocol)?;
        visit.call(&self.read_context)?;
        visit.call(&self.write_context)
    }

    fn release(&mut self) -> ReleasedObjects {
        [
            self.transport.take(),
            self.protocol.take(),
            self.read_context.take(),
            self.write_context.take(),
        ]
    }
}

/// A kind's state: the shared part, and what the kind adds to it.
pub trait KindState {
    /// What the kind lets go of, dropped after the borrow (see
    /// [`ReleasedObjects`]).
    type Released;

    fn shared(&self) -> &TransportState;
    fn shared_mut(&mut self) -> &mut TransportState;
    /// What `get_write_buffer_size()` reports.
    fn buffered_size(&self) -> usize;
    /// `abort()`, a fatal error: the data waiting to be sent is dropped.
    fn drop_buffer(&mut self) -> Self::Released;
    /// The connection is over (or the GC clears the transport): everything
    /// the kind holds besides the shared part.
    fn release_own(&mut self) -> Self::Released;
    fn traverse_own(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
}

/// A native transport kind. The provided methods are the shared core.
pub trait NativeTransport: PyClass<Frozen = True> + Sync {
    type State: KindState;

    fn state(&self) -> &GilCell<Self::State>;
    fn event_loop(&self) -> &Py<LoopCore>;
    /// Objects the kind holds outside its state (GC traversal).
    fn traverse_fixed(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError>;
    /// Registers the descriptor with the loop (the lifecycle said it is not
    /// registered yet).
    fn watch(slf: &Bound<'_, Self>) -> PyResult<()>;
    /// Removes the registrations that are still this transport's.
    fn unwatch(slf: &Bound<'_, Self>) -> PyResult<()>;
    /// `set_protocol()`: the new protocol, and what the kind derives from
    /// it (its bound read callbacks), looked up before the state is
    /// borrowed (a lookup may run Python code).
    fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()>;

    fn transport_object(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        let st = self.state().borrow(py).ok()?;
        st.shared().transport.as_ref().map(|t| t.clone_ref(py))
    }

    fn protocol_object(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let st = self.state().borrow(py)?;
        Ok(st.shared().protocol.as_ref().map(|p| p.clone_ref(py)))
    }

    /// Runs `work` in the context the read callbacks run in.
    fn in_read_context<T>(
        &self,
        py: Python<'_>,
        work: impl FnOnce() -> PyResult<T>,
    ) -> PyResult<T> {
        let context = self
            .state()
            .borrow(py)?
            .shared()
            .read_context
            .as_ref()
            .map(|c| c.clone_ref(py));
        crate::context::run_in_if_any(py, context, work)
    }

    /// Runs `work` in the context the write side's callbacks run in.
    fn in_write_context<T>(
        &self,
        py: Python<'_>,
        work: impl FnOnce() -> PyResult<T>,
    ) -> PyResult<T> {
        let context = self
            .state()
            .borrow(py)?
            .shared()
            .write_context
            .as_ref()
            .map(|c| c.clone_ref(py));
        crate::context::run_in_if_any(py, context, work)
    }

    /// `_start()`: watches the descriptor and copies the context the read
    /// callbacks will run in (asyncio's `add_reader` copies it there).
    fn start(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if !this
            .state()
            .borrow_mut(py)?
            .shared_mut()
            .life
            .begin_watching()
        {
            return Ok(());
        }
        let context = crate::context::copy_current(py)?;
        let previous = this
            .state()
            .borrow_mut(py)?
            .shared_mut()
            .read_context
            .replace(context);
        drop(previous);
        Self::watch(slf)
    }

    /// `_detach()`: the connection is over; stops watching and lets go of
    /// every Python object.
    fn detach(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this
            .state()
            .borrow_mut(py)?
            .shared_mut()
            .life
            .stop_watching()
        {
            Self::unwatch(slf)?;
        }
        let released = this.release_all(py)?;
        drop(released);
        Ok(())
    }

    /// Stops watching for a while (`_suspend`); `start` watches again.
    fn suspend(slf: &Bound<'_, Self>) -> PyResult<()> {
        if slf
            .get()
            .state()
            .borrow_mut(slf.py())?
            .shared_mut()
            .life
            .stop_watching()
        {
            Self::unwatch(slf)?;
        }
        Ok(())
    }

    fn release_all(
        &self,
        py: Python<'_>,
    ) -> PyResult<(ReleasedObjects, <Self::State as KindState>::Released)> {
        let mut st = self.state().borrow_mut(py)?;
        Ok((st.shared_mut().release(), st.release_own()))
    }

    /// `close()`: stops reading; the connection is lost once the buffer
    /// drained (now, if nothing is buffered).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let lost_now = {
            let mut st = self.state().borrow_mut(py)?;
            let nothing_buffered = st.buffered_size() == 0;
            st.shared_mut().life.close(nothing_buffered)
        };
        if lost_now {
            self.schedule_connection_lost(py, py.None())?;
        }
        Ok(())
    }

    /// asyncio's `_force_close(exc)` (and `abort()`): drops what is
    /// buffered and loses the connection, once.
    fn force_close(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        let released = {
            let mut st = self.state().borrow_mut(py)?;
            if !st.shared_mut().life.force_close() {
                return Ok(());
            }
            st.drop_buffer()
        };
        drop(released);
        self.schedule_connection_lost(py, exc)
    }

    /// Schedules the Python transport's `_call_connection_lost(exc)` as a
    /// loop callback.
    fn schedule_connection_lost(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        if let Some(transport) = self.transport_object(py) {
            let callback = transport
                .bind(py)
                .getattr(pyo3::intern!(py, "_call_connection_lost"))?;
            self.event_loop()
                .bind(py)
                .call_method1(pyo3::intern!(py, "call_soon"), (callback, exc))?;
        }
        Ok(())
    }

    /// The buffer of a closing transport drained: `connection_lost` runs
    /// now, from the write callback, as asyncio's `_write_ready` calls it.
    fn call_connection_lost_now(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
        if let Some(transport) = self.transport_object(py) {
            transport
                .bind(py)
                .call_method1(pyo3::intern!(py, "_call_connection_lost"), (exc,))?;
        }
        Ok(())
    }

    /// asyncio's `_fatal_error(exc, message)`: the Python transport reports
    /// (or not, for the errors asyncio does not log) and forces the
    /// connection closed. KeyboardInterrupt and SystemExit are not the
    /// transport's errors: they propagate to stop the loop, as asyncio lets
    /// them out of its callbacks.
    fn fatal_error(&self, py: Python<'_>, err: PyErr, message: &'static str) -> PyResult<()> {
        if is_loop_stopping(py, &err) {
            return Err(err);
        }
        if let Some(transport) = self.transport_object(py) {
            transport.bind(py).call_method1(
                pyo3::intern!(py, "_fatal_error"),
                (err.into_value(py), message),
            )?;
        }
        Ok(())
    }

    /// Pauses or resumes the protocol if `notice` (`FlowControl::after_growth`
    /// or `after_drain`) says the buffered size calls for it. A failure of
    /// the protocol's method goes to the loop's exception handler through
    /// the transport, as in asyncio.
    fn flow_notify(
        &self,
        py: Python<'_>,
        notice: fn(&mut FlowControl, usize) -> Option<WriteFlow>,
    ) -> PyResult<()> {
        let (change, transport, protocol) = {
            let mut st = self.state().borrow_mut(py)?;
            let size = st.buffered_size();
            let shared = st.shared_mut();
            let Some(change) = notice(&mut shared.flow, size) else {
                return Ok(());
            };
            (
                change,
                shared.transport.as_ref().map(|t| t.clone_ref(py)),
                shared.protocol.as_ref().map(|p| p.clone_ref(py)),
            )
        };
        let (Some(transport), Some(protocol)) = (transport, protocol) else {
            return Ok(());
        };
        let method = match change {
            WriteFlow::Pause => pyo3::intern!(py, "pause_writing"),
            WriteFlow::Resume => pyo3::intern!(py, "resume_writing"),
        };
        if let Err(err) = protocol.bind(py).call_method0(method) {
            if is_loop_stopping(py, &err) {
                return Err(err);
            }
            transport.bind(py).call_method1(
                pyo3::intern!(py, "_report_protocol_error"),
                (format!("protocol.{method}() failed"), err.into_value(py)),
            )?;
        }
        Ok(())
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(self.event_loop())?;
        self.traverse_fixed(visit)?;
        if let Some(st) = self.state().borrow_in_traverse(visit) {
            st.shared().traverse(visit)?;
            st.traverse_own(visit)?;
        }
        Ok(())
    }

    fn clear(&self) {
        Python::attach(|py| {
            let released = self.release_all(py).ok();
            drop(released);
        });
    }
}

/// The `#[pymethods]` every transport kind has, for a type implementing
/// [`NativeTransport`] (the crate enables PyO3's `multiple-pymethods`, so a
/// kind adds its own in a block of its own).
macro_rules! transport_methods {
    ($kind:ty) => {
        #[pyo3::pymethods]
        impl $kind {
            /// Starts watching the descriptor (scheduled right after
            /// `connection_made`).
            fn _start(slf: &Bound<'_, Self>) -> PyResult<()> {
                <Self as $crate::io::transport_core::NativeTransport>::start(slf)
            }

            /// Stops watching: the connection is over.
            fn _detach(slf: &Bound<'_, Self>) -> PyResult<()> {
                <Self as $crate::io::transport_core::NativeTransport>::detach(slf)
            }

            fn close(&self, py: Python<'_>) -> PyResult<()> {
                <Self as $crate::io::transport_core::NativeTransport>::close(self, py)
            }

            fn abort(&self, py: Python<'_>) -> PyResult<()> {
                <Self as $crate::io::transport_core::NativeTransport>::force_close(
                    self,
                    py,
                    py.None(),
                )
            }

            /// asyncio's `_force_close(exc)`: drop buffered data, lose the
            /// connection.
            fn _force_close(&self, py: Python<'_>, exc: Py<PyAny>) -> PyResult<()> {
                <Self as $crate::io::transport_core::NativeTransport>::force_close(self, py, exc)
            }

            fn is_closing(&self, py: Python<'_>) -> PyResult<bool> {
                use $crate::io::transport_core::{KindState, NativeTransport};
                Ok(self.state().borrow(py)?.shared().life.is_closing())
            }

            fn get_write_buffer_size(&self, py: Python<'_>) -> PyResult<usize> {
                use $crate::io::transport_core::{KindState, NativeTransport};
                Ok(self.state().borrow(py)?.buffered_size())
            }

            /// New water marks (`high`, `low`): `set_write_buffer_limits` of
            /// the Python transport does asyncio's arithmetic and checks, and
            /// keeps the values it was given for `get_write_buffer_limits`.
            fn _set_write_buffer_limits(
                &self,
                py: Python<'_>,
                high: f64,
                low: f64,
            ) -> PyResult<()> {
                use $crate::io::transport_core::{KindState, NativeTransport};
                self.state()
                    .borrow_mut(py)?
                    .shared_mut()
                    .flow
                    .set_limits(high, low);
                self.flow_notify(py, ferroloop_engine::FlowControl::after_growth)
            }

            fn set_protocol(&self, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
                <Self as $crate::io::transport_core::NativeTransport>::set_protocol(self, protocol)
            }

            fn get_protocol(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
                <Self as $crate::io::transport_core::NativeTransport>::protocol_object(self, py)
            }

            /// Whether `pause_writing()` was called without
            /// `resume_writing()` yet.
            #[getter]
            fn _protocol_paused(&self, py: Python<'_>) -> PyResult<bool> {
                use $crate::io::transport_core::{KindState, NativeTransport};
                Ok(self.state().borrow(py)?.shared().flow.is_paused())
            }

            /// asyncio's `_conn_lost`: the loss, and the writes attempted
            /// after it.
            #[getter]
            fn _conn_lost(&self, py: Python<'_>) -> PyResult<u32> {
                use $crate::io::transport_core::{KindState, NativeTransport};
                Ok(self.state().borrow(py)?.shared().life.writes_lost())
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                <Self as $crate::io::transport_core::NativeTransport>::traverse(self, &visit)
            }

            fn __clear__(&self) {
                <Self as $crate::io::transport_core::NativeTransport>::clear(self)
            }
        }
    };
}

pub(crate) use transport_methods;
