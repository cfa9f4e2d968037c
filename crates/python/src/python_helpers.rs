//! The Python-level helpers the native code calls on cold paths: formatting
//! a handle, reporting a callback's exception, debug-mode checks.
//!
//! They live in `ferroloop/_callbacks.py`, because they format and log
//! exactly as asyncio does and are easiest to keep identical there. Each is
//! imported once and cached.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

fn helper<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyAny>> {
    cell.import(py, "ferroloop._callbacks", name)
}

macro_rules! helper_fn {
    ($py:expr, $name:literal) => {{
        static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        helper($py, &CELL, $name)
    }};
}

/// `loop.get_debug()` (for handles built by Python code with a loop: a
/// cold path, and the loop need not be ours).
pub fn loop_debug(loop_obj: &Bound<'_, PyAny>) -> PyResult<bool> {
    loop_obj
        .call_method0(pyo3::intern!(loop_obj.py(), "get_debug"))?
        .is_truthy()
}

/// asyncio's `repr(handle)`.
pub fn handle_repr(handle: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    Ok(helper_fn!(handle.py(), "handle_repr")?
        .call1((handle,))?
        .unbind())
}

/// Sends a callback's exception to the loop's exception handler, with the
/// context asyncio builds ("Exception in callback ...").
pub fn report_callback_error(
    loop_obj: &Bound<'_, PyAny>,
    handle: &Bound<'_, PyAny>,
    err: PyErr,
) -> PyResult<()> {
    let py = loop_obj.py();
    let exc = err.into_value(py);
    helper_fn!(py, "report_callback_error")?.call1((loop_obj, handle, exc))?;
    Ok(())
}

/// Sends an exception raised by a transport's (or socket operation's) work
/// to the loop's exception handler, as asyncio reports one from its
/// reader/writer handles.
pub fn report_io_error(
    loop_obj: &Bound<'_, PyAny>,
    transport: Option<Py<PyAny>>,
    err: PyErr,
) -> PyResult<()> {
    let py = loop_obj.py();
    let exc = err.into_value(py);
    helper_fn!(py, "report_io_error")?.call1((loop_obj, transport, exc))?;
    Ok(())
}

/// asyncio's debug-mode `_check_callback`: rejects coroutines and
/// coroutine functions (including wrapped ones) with its messages.
pub fn check_callback_fully(callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
    helper_fn!(callback.py(), "check_callback")?.call1((callback, method))?;
    Ok(())
}

/// The creation stack a handle records in debug mode.
pub fn extract_stack(py: Python<'_>) -> PyResult<Py<PyAny>> {
    Ok(helper_fn!(py, "extract_stack")?.call0()?.unbind())
}

/// asyncio's slow-callback warning ("Executing <...> took 0.123 seconds").
pub fn warn_slow_callback(handle: &Bound<'_, PyAny>, seconds: f64) -> PyResult<()> {
    helper_fn!(handle.py(), "warn_slow_callback")?.call1((handle, seconds))?;
    Ok(())
}

/// `asyncio.log.logger.warning(message)`.
pub fn log_warning(py: Python<'_>, message: &str) -> PyResult<()> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .import(py, "asyncio.log", "logger")?
        .call_method1(pyo3::intern!(py, "warning"), (message,))?;
    Ok(())
}
