//! Tasks: `create_task` and the task factory.
//!
//! Task churn (`await loop.create_task(coro())`) is common enough that
//! creating the task should not run Python code of the loop's own: the C
//! `Task` is called directly, with asyncio's arguments and debug-mode
//! bookkeeping. CPython's own `asyncio.tasks.Task` is looked up on each call,
//! as asyncio does, so a patched one is honoured.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule};

use crate::loop_core::LoopCore;

fn tasks_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    Ok(MODULE.get_or_try_init(py, || py.import("asyncio.tasks").map(Bound::unbind))?.bind(py))
}

/// `loop.create_task(coro, name=name, context=context)`.
pub fn create_task(
    slf: &Bound<'_, LoopCore>,
    coro: &Bound<'_, PyAny>,
    name: Option<Bound<'_, PyAny>>,
    context: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let core = slf.get();
    core.check_closed()?;
    let factory = core.state.borrow(py)?.task_factory.as_ref().map(|f| f.clone_ref(py));
    let name = name.filter(|n| !n.is_none());
    let context = context.filter(|c| !c.is_none());
    let task = match factory {
        None => {
            let kwargs = PyDict::new(py);
            kwargs.set_item(pyo3::intern!(py, "loop"), slf)?;
            kwargs.set_item(pyo3::intern!(py, "name"), &name)?;
            kwargs.set_item(pyo3::intern!(py, "context"), &context)?;
            let task = tasks_module(py)?.getattr(pyo3::intern!(py, "Task"))?.call((coro,), Some(&kwargs))?;
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
                    let kwargs = PyDict::new(py);
                    kwargs.set_item(pyo3::intern!(py, "context"), context)?;
                    factory.call((slf, coro), Some(&kwargs))?
                }
            };
            if let Some(name) = name {
                task.call_method1(pyo3::intern!(py, "set_name"), (name,))?;
            }
            task
        }
    };
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
            return Err(PyTypeError::new_err("task factory must be a callable or None"));
        };
        let previous = std::mem::replace(&mut self.state.borrow_mut(py)?.task_factory, factory);
        drop(previous);
        Ok(())
    }

    fn get_task_factory(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self.state.borrow(py)?.task_factory.as_ref().map(|f| f.clone_ref(py)))
    }

    /// asyncio's attribute, read by some code that inspects loops.
    #[getter]
    fn _task_factory(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        self.get_task_factory(py)
    }
}
