//! `Handle` and `TimerHandle`: what `call_soon`, `call_later` and `call_at`
//! return, and what the ready queue and timer heap hold.
//!
//! They behave as asyncio's classes of the same names (cancel, cancelled,
//! when, get_context, the repr, ordering of timer handles) but are native, so
//! scheduling a callback costs one small allocation and no Python frame.
//! A handle runs its callback inside its `contextvars.Context`, entered and
//! left through the C API rather than through `Context.run`, which would add
//! a call and an argument tuple per callback.
//!
//! A program creates one handle per callback, so they are kept lean: they
//! come from a free list, and they do not report their references to the
//! cycle collector (traversing every young handle made collections a large
//! part of the cost of `call_soon`). Cycles through a handle cannot outlive
//! it anyway, because a handle lets go of its callback and arguments as soon
//! as it leaves the loop: when it has run, is cancelled, or is dropped by a
//! closing loop. Nor does a handle refer to the loop that made it, so pending
//! handles never keep an abandoned loop alive.

use std::sync::atomic::{AtomicBool, Ordering};

use ferroloop_engine::CancelledCount;
use pyo3::basic::CompareOp;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::gil_cell::GilCell;
use crate::python_helpers;

/// The parts of a handle that it drops when it leaves the loop.
struct Callback {
    callback: Option<Py<PyAny>>,
    args: Option<Py<PyTuple>>,
    /// A cached repr, taken when a handle is cancelled in debug mode (asyncio
    /// keeps it so that slow-callback warnings can still name the callback).
    repr: Option<Py<PyAny>>,
}

/// Timer-only state. Lives in the base so that the heap, which holds plain
/// `Handle`s, can read the deadline without knowing the subclass.
struct TimerState {
    when: f64,
    /// In the heap: cancelling it then must be counted for purging.
    scheduled: AtomicBool,
    cancelled_in_heap: CancelledCount,
}

#[pyclass(module = "ferroloop._ferroloop", name = "Handle", subclass, frozen, weakref, freelist = 1024)]
pub struct Handle {
    callback: GilCell<Callback>,
    context: Py<PyAny>,
    source_traceback: Option<Py<PyAny>>,
    /// The loop, for handles built by Python code (`Handle(cb, args, loop)`,
    /// asyncio's constructor); the loop's own handles do without.
    loop_: Option<Py<PyAny>>,
    /// The loop's debug flag when the handle was made (for its repr).
    debug: bool,
    /// Runs more than once (a reader or writer, a signal handler): keeps its
    /// callback after running, until cancelled.
    persistent: bool,
    cancelled: AtomicBool,
    timer: Option<TimerState>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "TimerHandle", extends = Handle, frozen, freelist = 1024)]
pub struct TimerHandle;

/// How running a handle ended.
pub enum RunOutcome {
    Done,
    /// The callback raised; the exception is for the loop's exception
    /// handler. The handle still holds its callback for the report; call
    /// [`Handle::release`] after reporting.
    Raised(PyErr),
}

/// A new handle's timer part: its deadline and the heap's cancellation count.
pub struct TimerSpec {
    pub when: f64,
    pub cancelled_in_heap: CancelledCount,
}

impl Handle {
    pub fn new(
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
        debug: bool,
        persistent: bool,
        timer: Option<TimerSpec>,
    ) -> Handle {
        Handle {
            callback: GilCell::new(Callback { callback: Some(callback), args: Some(args), repr: None }),
            context,
            source_traceback,
            loop_: None,
            debug,
            persistent,
            cancelled: AtomicBool::new(false),
            timer: timer.map(|t| TimerState {
                when: t.when,
                scheduled: AtomicBool::new(true),
                cancelled_in_heap: t.cancelled_in_heap,
            }),
        }
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// Called when the heap lets go of a timer handle (fired or discarded).
    pub fn mark_unscheduled(&self) {
        if let Some(timer) = &self.timer {
            timer.scheduled.store(false, Ordering::Relaxed);
        }
    }

    /// Drops the callback and its arguments: the handle has left the loop.
    /// Persistent handles keep theirs (they run again) until cancelled.
    pub fn release(&self, py: Python<'_>) {
        if self.persistent && !self.is_cancelled() {
            return;
        }
        let dropped = self.callback.borrow_mut(py).ok().map(|mut parts| (parts.callback.take(), parts.args.take()));
        drop(dropped);
    }

    /// Runs the callback in the handle's context and releases it (unless
    /// `keep`: debug mode still names the callback after it ran). A
    /// cancelled handle does nothing. `SystemExit` and `KeyboardInterrupt`
    /// come back as `Err`: they stop the loop, as in asyncio; any other
    /// exception is handed back as [`RunOutcome::Raised`].
    #[inline]
    pub fn run(&self, py: Python<'_>, keep: bool) -> PyResult<RunOutcome> {
        if self.is_cancelled() {
            return Ok(RunOutcome::Done);
        }
        let reusable = keep || self.persistent;
        let (callback, args) = {
            let mut parts = self.callback.borrow_mut(py)?;
            let taken = if reusable {
                (parts.callback.as_ref().map(|c| c.clone_ref(py)), parts.args.as_ref().map(|a| a.clone_ref(py)))
            } else {
                (parts.callback.take(), parts.args.take())
            };
            match taken {
                (Some(cb), Some(args)) => (cb, args),
                _ => return Ok(RunOutcome::Done),
            }
        };
        match run_in_context(py, self.context.bind(py), callback.bind(py), args.bind(py)) {
            Ok(()) => Ok(RunOutcome::Done),
            Err(err) => {
                // Put them back: the error report shows them.
                if !reusable {
                    if let Ok(mut parts) = self.callback.borrow_mut(py) {
                        parts.callback = Some(callback);
                        parts.args = Some(args);
                    }
                }
                if is_loop_stopping_exception(py, &err) {
                    if !reusable {
                        self.release(py);
                    }
                    Err(err)
                } else {
                    Ok(RunOutcome::Raised(err))
                }
            }
        }
    }

    fn cancel_impl(slf: &Bound<'_, Handle>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        if this.cancelled.swap(true, Ordering::Relaxed) {
            return Ok(());
        }
        if let Some(timer) = &this.timer {
            if timer.scheduled.load(Ordering::Relaxed) {
                timer.cancelled_in_heap.increment();
            }
        }
        // asyncio keeps the repr in debug mode so a later "Executing <Handle
        // ...> took N seconds" warning can still show the callback.
        let repr = if this.loop_debug(py)? { Some(slf.repr()?.into_any().unbind()) } else { None };
        let dropped = {
            let mut parts = this.callback.borrow_mut(py)?;
            parts.repr = repr;
            (parts.callback.take(), parts.args.take())
        };
        drop(dropped);
        Ok(())
    }

    /// The debug flag that shapes reprs: the live one of the loop if the
    /// handle knows it, else the one it was made with.
    fn loop_debug(&self, py: Python<'_>) -> PyResult<bool> {
        match &self.loop_ {
            Some(loop_obj) => python_helpers::loop_debug(loop_obj.bind(py)),
            None => Ok(self.debug),
        }
    }
}

/// Enters `context`, calls `callback(*args)`, and leaves the context again.
#[inline]
fn run_in_context(
    py: Python<'_>,
    context: &Bound<'_, PyAny>,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    // SAFETY: `context` is a live object for the whole call (borrowed from the
    // handle, which the caller keeps alive). PyContext_Enter type-checks it
    // and fails cleanly with a Python error if it is not a Context or is
    // already entered; we are attached to the interpreter (`py`).
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let called = if args.is_empty() { callback.call0() } else { callback.call1(args) };
    // SAFETY: the same context was entered just above on this thread and the
    // callback cannot leave it on our behalf (PyContext_Exit of a context not
    // on top fails with RuntimeError, reported below), so this exit pairs with
    // our enter.
    let exited = unsafe { ffi::PyContext_Exit(context.as_ptr()) };
    let called = called.map(drop);
    if exited < 0 {
        let exit_err = PyErr::fetch(py);
        return called.and(Err(exit_err));
    }
    called
}

fn is_loop_stopping_exception(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py)
        || err.is_instance_of::<pyo3::exceptions::PySystemExit>(py)
}

#[pymethods]
impl Handle {
    /// `Handle(callback, args, loop, context=None)`, as asyncio's class is
    /// built; the loop schedules it with `_add_callback`.
    #[new]
    #[pyo3(signature = (callback, args, r#loop, context=None))]
    fn py_new(
        py: Python<'_>,
        callback: Py<PyAny>,
        args: Option<Bound<'_, PyAny>>,
        r#loop: Py<PyAny>,
        context: Option<Py<PyAny>>,
    ) -> PyResult<Self> {
        let args = match args {
            Some(a) if !a.is_none() => a.cast_into::<PyTuple>()?.unbind(),
            _ => PyTuple::empty(py).unbind(),
        };
        let context = match context {
            Some(c) if !c.is_none(py) => c,
            _ => python_helpers::copy_context(py)?,
        };
        let debug = python_helpers::loop_debug(r#loop.bind(py))?;
        let source_traceback = if debug { Some(python_helpers::extract_stack(py)?) } else { None };
        // Built by Python code, it may be queued any number of times (a
        // signal handler's handle is): it keeps its callback.
        let mut handle = Handle::new(callback, args, context, source_traceback, debug, true, None);
        handle.loop_ = Some(r#loop);
        Ok(handle)
    }

    /// Runs the callback now, sending an exception to the loop's handler.
    /// Only handles built with a loop can do this.
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(loop_obj) = &this.loop_ else {
            return Err(pyo3::exceptions::PyRuntimeError::new_err("this handle is run by its loop"));
        };
        let (callback, args) = {
            let parts = this.callback.borrow(py)?;
            match (&parts.callback, &parts.args) {
                (Some(cb), Some(args)) => (cb.clone_ref(py), args.clone_ref(py)),
                _ => return Ok(()),
            }
        };
        if this.is_cancelled() {
            return Ok(());
        }
        match run_in_context(py, this.context.bind(py), callback.bind(py), args.bind(py)) {
            Ok(()) => Ok(()),
            Err(err) if is_loop_stopping_exception(py, &err) => Err(err),
            Err(err) => python_helpers::report_callback_error(loop_obj.bind(py), slf.as_any(), err),
        }
    }

    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        Handle::cancel_impl(slf)
    }

    fn cancelled(&self) -> bool {
        self.is_cancelled()
    }

    fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    #[getter]
    fn _callback(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.callback.borrow(py)?.callback.as_ref().map(|c| c.clone_ref(py)))
    }

    #[getter]
    fn _args(&self, py: Python<'_>) -> PyResult<Option<Py<PyTuple>>> {
        Ok(self.callback.borrow(py)?.args.as_ref().map(|a| a.clone_ref(py)))
    }

    #[getter]
    fn _context(&self, py: Python<'_>) -> Py<PyAny> {
        self.context.clone_ref(py)
    }

    #[getter]
    fn _loop(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.loop_.as_ref().map(|l| l.clone_ref(py))
    }

    /// The debug flag its repr follows (asyncio formats arguments only in
    /// debug mode from 3.13 on).
    #[getter]
    fn _debug(&self, py: Python<'_>) -> PyResult<bool> {
        self.loop_debug(py)
    }

    #[getter]
    fn _cancelled(&self) -> bool {
        self.is_cancelled()
    }

    #[getter]
    fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.source_traceback.as_ref().map(|t| t.clone_ref(py))
    }

    #[getter]
    fn _repr(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.callback.borrow(py)?.repr.as_ref().map(|r| r.clone_ref(py)))
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if let Some(cached) = slf.get().callback.borrow(py)?.repr.as_ref() {
            return Ok(cached.clone_ref(py));
        }
        python_helpers::handle_repr(slf.as_any())
    }
}

#[pymethods]
impl TimerHandle {
    fn when(slf: &Bound<'_, Self>) -> f64 {
        timer_when(slf)
    }

    #[getter]
    fn _when(slf: &Bound<'_, Self>) -> f64 {
        timer_when(slf)
    }

    #[getter]
    fn _scheduled(slf: &Bound<'_, Self>) -> bool {
        slf.as_super().get().timer.as_ref().is_some_and(|t| t.scheduled.load(Ordering::Relaxed))
    }

    fn __hash__(slf: &Bound<'_, Self>) -> PyResult<isize> {
        pyo3::types::PyFloat::new(slf.py(), timer_when(slf)).hash()
    }

    fn __richcmp__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (timer_when(slf), timer_when(other));
        let equal = || -> PyResult<bool> {
            if a != b || slf.as_super().get().is_cancelled() != other.as_super().get().is_cancelled() {
                return Ok(false);
            }
            let parts = |h: &Bound<'_, TimerHandle>| -> PyResult<(Option<Py<PyAny>>, Option<Py<PyTuple>>)> {
                let p = h.as_super().get().callback.borrow(py)?;
                Ok((p.callback.as_ref().map(|c| c.clone_ref(py)), p.args.as_ref().map(|c| c.clone_ref(py))))
            };
            let ((cb_a, args_a), (cb_b, args_b)) = (parts(slf)?, parts(other)?);
            Ok(cb_a.into_pyobject(py)?.eq(cb_b)? && args_a.into_pyobject(py)?.eq(args_b)?)
        };
        let result = match op {
            CompareOp::Lt => a < b,
            CompareOp::Gt => a > b,
            CompareOp::Le => a < b || equal()?,
            CompareOp::Ge => a > b || equal()?,
            CompareOp::Eq => equal()?,
            CompareOp::Ne => !equal()?,
        };
        Ok(pyo3::types::PyBool::new(py, result).to_owned().into_any().unbind())
    }
}

fn timer_when(slf: &Bound<'_, TimerHandle>) -> f64 {
    slf.as_super().get().timer.as_ref().map_or(f64::NAN, |t| t.when)
}
