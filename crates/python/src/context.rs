//! `contextvars` for native code: copying the current context, and running
//! native work inside a given one.
//!
//! asyncio runs every callback in a context: a handle's own, and for a
//! transport's protocol callbacks the context current when the transport
//! registered its reader (or, for the write side, its writer). Native code
//! that calls into the protocol directly enters that context itself, through
//! the C API, which costs a pointer swap rather than a `Context.run` call.

use pyo3::ffi;
use pyo3::prelude::*;

/// `contextvars.copy_context()`.
pub fn copy_current(py: Python<'_>) -> PyResult<Py<PyAny>> {
    // SAFETY: attached (`py`); PyContext_CopyCurrent returns a new reference
    // or NULL with an exception set, which `from_owned_ptr_or_err` handles.
    unsafe { Ok(Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent())?.unbind()) }
}

/// Runs `work` with `context` entered, and leaves it again whatever `work`
/// returns. Entering fails (RuntimeError) if `context` is not a Context or is
/// already entered.
#[inline]
pub fn run_in<T>(context: &Bound<'_, PyAny>, work: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    let py = context.py();
    // SAFETY: `context` is a live object (borrowed for the whole call);
    // PyContext_Enter type-checks it and fails with a Python error if it is
    // not a Context or is already entered; the GIL is held (`py`).
    if unsafe { ffi::PyContext_Enter(context.as_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    let result = work();
    // SAFETY: the same context was entered just above on this thread, and
    // code run by `work` cannot leave it for us (PyContext_Exit of a context
    // that is not on top fails with RuntimeError, reported below), so this
    // exit pairs with our enter.
    if unsafe { ffi::PyContext_Exit(context.as_ptr()) } < 0 {
        let exit_err = PyErr::fetch(py);
        return result.and(Err(exit_err));
    }
    result
}

/// As [`run_in`], or just `work()` when there is no context to enter.
#[inline]
pub fn run_in_if_any<T>(
    py: Python<'_>,
    context: Option<Py<PyAny>>,
    work: impl FnOnce() -> PyResult<T>,
) -> PyResult<T> {
    match context {
        Some(context) => run_in(context.bind(py), work),
        None => work(),
    }
}
