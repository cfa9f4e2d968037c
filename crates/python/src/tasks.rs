//! Futures and tasks: `create_future`, `create_task` and the task factory.
//!
//! Every `await` on I/O makes a future and task churn makes tasks, so neither
//! runs Python code of the loop's own: CPython's C `Future` and `Task` are
//! called directly, with asyncio's arguments (passed as vectorcall keywords,
//! no dict) and debug-mode bookkeeping. `asyncio.futures.Future` and
//! `asyncio.tasks.Task` are looked up on each call, as asyncio does, so
//! patched ones are honoured.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyModule, PyString, PyTuple};

use crate::loop_core::LoopCore;

fn module<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyModule>>,
    name: &str,
) -> PyResult<&'py Bound<'py, PyModule>> {
    Ok(cell
        .get_or_try_init(py, || py.import(name).map(Bound::unbind))?
        .bind(py))
}

/// A tuple of interned keyword names, made once.
fn keyword_names<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyTuple>>,
    names: &[&str],
) -> PyResult<&'py Bound<'py, PyTuple>> {
    Ok(cell
        .get_or_try_init(py, || {
            PyTuple::new(py, names.iter().map(|n| PyString::intern(py, n))).map(Bound::unbind)
        })?
        .bind(py))
}

/// `callable(*positional, **dict(zip(names, values)))` as one vectorcall.
fn call_with_keywords<'py>(
    callable: &Bound<'py, PyAny>,
    positional: &[&Bound<'py, PyAny>],
    names: &Bound<'py, PyTuple>,
    values: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    let args: Vec<*mut ffi::PyObject> = positional
        .iter()
        .chain(values.iter())
        .map(|a| a.as_ptr())
        .collect();
    // SAFETY: `args` holds `positional.len()` positional arguments followed
    // by one value per name in `names`, all borrowed references kept alive
    // by the caller for the duration of the call; the result is a new
    // reference or NULL with an exception set.
    unsafe {
        let result = ffi::PyObject_Vectorcall(
            callable.as_ptr(),
            args.as_ptr(),
            positional.len(),
            names.as_ptr(),
        );
        Bound::from_owned_ptr_or_err(py, result)
    }
}

/// `loop.create_future()`: `asyncio.futures.Future(loop=loop)`.
pub fn create_future(slf: &Bound<'_, LoopCore>) -> PyResult<Py<PyAny>> {
    static FUTURES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    static NAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = slf.py();
    let future_type =
        module(py, &FUTURES, "asyncio.futures")?.getattr(pyo3::intern!(py, "Future"))?;
    let names = keyword_names(py, &NAMES, &["loop"])?;
    Ok(call_with_keywords(&future_type, &[], names, &[slf.as_any()])?.unbind())
}

/// `loop.create_task(coro, name=name, context=context)`.
pub fn create_task(
    slf: &Bound<'_, LoopCore>,
    coro: &Bound<'_, PyAny>,
    name: Option<Bound<'_, PyAny>>,
    context: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    static TASKS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    static NAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = slf.py();
    let core = slf.get();
    core.check_closed()?;
    let factory = core
        .state
        .borrow(py)?
        .task_factory
        .as_ref()
        .map(|f| f.clone_ref(py));
    let none = py.None().into_bound(py);
    let name = name.filter(|n| !n.is_none());
    let context = context.filter(|c| !c.is_none());
    let task = match factory {
        None => {
            let task_type =
                module(py, &TASKS, "asyncio.tasks")?.getattr(pyo3::intern!(py, "Task"))?;
            let names = keyword_names(py, &NAMES, &["loop", "name", "context"])?;
            let values = [
                slf.as_any(),
                name.as_ref().unwrap_or(&none),
                context.as_ref().unwrap_or(&none),
            ];
            let task = call_with_keywords(&task_type, &[coro], names, &values)?;
            if core.is_debug() {
                // The task recorded where it was made: here. Show our caller.
                crate::python_helpers::trim_task_traceback(&task)?;
            }
            task
        }
        Some(factory) => {
            let factory = factory.bind(py);
            let task = match context {
                // Factories written before 3.11 take no context argument.
                None => factory.call1((slf, coro))?,
                Some(context) => {
                    static CONTEXT_NAME: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
                    let names = keyword_names(py, &CONTEXT_NAME, &["context"])?;
                    call_with_keywords(factory, &[slf.as_any(), coro], names, &[&context])?
                }
            };
            if let Some(name) = name {
                task.call_method1(pyo3::intern!(py, "set_name"), (name,))?;
            }
            task
        }
    };
    core.observation.task_created(py, &task)?;
    Ok(task.unbind())
}

#[pymethods]
impl LoopCore {
    fn set_task_factory(&self, py: Python<'_>, factory: Py<PyAny>) -> PyResult<()> {
        let factory = if factory.is_none(py) {
            None
        } else if factory.bind(py).is_callable() {
            Some(factory)
        } else {
            return Err(PyTypeError::new_err(
                "task factory must be a callable or None",
            ));
        };
        let previous = std::mem::replace(&mut self.state.borrow_mut(py)?.task_factory, factory);
        drop(previous);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .state
            .borrow(py)?
            .task_factory
            .as_ref()
            .map(|f| f.clone_ref(py)))
    }

    /// asyncio's attribute, read by some code that inspects loops.
    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.get_task_factory(py)
    }
}
