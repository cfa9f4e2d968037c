//! `Handle` and `TimerHandle`: what `call_soon`, `call_later` and `call_at`
//! return, and what the ready queue and timer heap hold.
//!
//! They behave as asyncio's classes of the same names (cancel, cancelled,
//! when, get_context, the repr, ordering of timer handles) but are native, so
//! scheduling a callback costs one small allocation and no Python frame.
//! A handle runs its callback inside its `contextvars.Context`, entered and
//! left through the C API rather than through `Context.run`, which would add
//! a call and an argument tuple per callback.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::basic::CompareOp;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{ffi, PyTraverseError};

use crate::gil_cell::GilCell;
use crate::python_helpers;

/// The parts of a handle that `cancel()` drops.
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
}

#[pyclass(module = "ferroloop._ferroloop", name = "Handle", subclass, frozen, weakref)]
pub struct Handle {
    callback: GilCell<Callback>,
    context: Py<PyAny>,
    loop_: Py<PyAny>,
    source_traceback: Option<Py<PyAny>>,
    cancelled: AtomicBool,
    timer: Option<TimerState>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "TimerHandle", extends = Handle, frozen)]
pub struct TimerHandle;

/// How running a handle ended.
pub enum RunOutcome {
    Done,
    /// The callback raised; the exception is for the loop's exception handler.
    Raised(PyErr),
}

impl Handle {
    pub fn new(
        callback: Py<PyAny>,
        args: Py<PyTuple>,
        context: Py<PyAny>,
        loop_: Py<PyAny>,
        source_traceback: Option<Py<PyAny>>,
        when: Option<f64>,
    ) -> Handle {
        Handle {
            callback: GilCell::new(Callback { callback: Some(callback), args: Some(args), repr: None }),
            context,
            loop_,
            source_traceback,
            cancelled: AtomicBool::new(false),
            timer: when.map(|when| TimerState { when, scheduled: AtomicBool::new(true) }),
        }
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The deadline of a timer handle, `None` for a plain handle.
    pub fn deadline(&self) -> Option<f64> {
        self.timer.as_ref().map(|t| t.when)
    }

    /// Called when the heap lets go of a timer handle (fired or discarded).
    pub fn mark_unscheduled(&self) {
        if let Some(timer) = &self.timer {
            timer.scheduled.store(false, Ordering::Relaxed);
        }
    }

    pub fn loop_object(&self) -> &Py<PyAny> {
        &self.loop_
    }

    /// Runs the callback in the handle's context. A cancelled handle does
    /// nothing. `SystemExit` and `KeyboardInterrupt` come back as `Err`: they
    /// stop the loop, as in asyncio; any other exception is handed back as
    /// [`RunOutcome::Raised`] for the exception handler.
    pub fn run(&self, py: Python<'_>) -> PyResult<RunOutcome> {
        if self.is_cancelled() {
            return Ok(RunOutcome::Done);
        }
        let (callback, args) = {
            let parts = self.callback.borrow(py)?;
            match (&parts.callback, &parts.args) {
                (Some(cb), Some(args)) => (cb.clone_ref(py), args.clone_ref(py)),
                _ => return Ok(RunOutcome::Done),
            }
        };
        let result = run_in_context(py, self.context.bind(py), callback.bind(py), args.bind(py));
        match result {
            Ok(()) => Ok(RunOutcome::Done),
            Err(err) if is_loop_stopping_exception(py, &err) => Err(err),
            Err(err) => Ok(RunOutcome::Raised(err)),
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
                crate::loop_core::note_timer_cancelled(this.loop_.bind(py));
            }
        }
        // asyncio keeps the repr in debug mode so a later "Executing <Handle
        // ...> took N seconds" warning can still show the callback.
        let repr = if python_helpers::loop_debug(this.loop_.bind(py))? {
            Some(slf.repr()?.into_any().unbind())
        } else {
            None
        };
        let dropped = {
            let mut parts = this.callback.borrow_mut(py)?;
            parts.repr = repr;
            (parts.callback.take(), parts.args.take())
        };
        drop(dropped);
        Ok(())
    }
}

/// Enters `context`, calls `callback(*args)`, and leaves the context again.
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
        let source_traceback =
            if python_helpers::loop_debug(r#loop.bind(py))? { Some(python_helpers::extract_stack(py)?) } else { None };
        Ok(Handle::new(callback, args, context, r#loop, source_traceback, None))
    }

    /// Runs the callback now, sending an exception to the loop's handler.
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        match slf.get().run(py)? {
            RunOutcome::Done => Ok(()),
            RunOutcome::Raised(err) => {
                python_helpers::report_callback_error(slf.get().loop_.bind(py), slf.as_any(), err)
            }
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
    fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
        self.loop_.clone_ref(py)
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

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.context)?;
        visit.call(&self.loop_)?;
        visit.call(&self.source_traceback)?;
        if let Some(parts) = self.callback.borrow_in_traverse(&visit) {
            visit.call(&parts.callback)?;
            visit.call(&parts.args)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let dropped = self.callback.borrow_mut(py).ok().map(|mut parts| (parts.callback.take(), parts.args.take()));
            drop(dropped);
        });
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
            let (pa, pb) = (slf.as_super().get().callback.borrow(py)?, other.as_super().get().callback.borrow(py)?);
            let (cb_a, cb_b) = (pa.callback.as_ref().map(|c| c.clone_ref(py)), pb.callback.as_ref().map(|c| c.clone_ref(py)));
            let (args_a, args_b) = (pa.args.as_ref().map(|c| c.clone_ref(py)), pb.args.as_ref().map(|c| c.clone_ref(py)));
            drop((pa, pb));
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
    slf.as_super().get().deadline().unwrap_or(f64::NAN)
}
