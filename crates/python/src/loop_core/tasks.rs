//! Futures and tasks: `create_future`, `create_task` and the task factory.
//!
//! Every `await` on I/O makes a future and task churn makes tasks, so neither
//! runs Python code of the loop's own: CPython's C `Future` and `Task` are
//! called directly, with asyncio's arguments and debug-mode bookkeeping.
//! Neither type takes vectorcall keywords (CPython would make a new dict of
//! them on every call), so the loop keeps the dicts of the usual calls
//! (`loop=loop`, and a task's `name=None, context=None`) and passes those.
//! `asyncio.futures.Future` and `asyncio.tasks.Task` are looked up on each
//! call, as asyncio does, so patched ones are honoured.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyModule, PyString, PyTuple};

use crate::loop_core::{KeptKeywords, LoopCore};

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

/// Which of the loop's [`KeptKeywords`] a call passes.
#[derive(Clone, Copy)]
enum Made {
    Future,
    Task,
}

impl KeptKeywords {
    fn slot(&mut self, made: Made) -> &mut Option<Py<PyDict>> {
        match made {
            Made::Future => &mut self.future,
            Made::Task => &mut self.task,
        }
    }
}

/// `callable(*positional, **keywords)` with the loop's kept keyword dict for
/// `made`.
///
/// The dict is taken out of the loop state for the call (which runs Python
/// code that may use the state) and put back only if nothing else holds it
/// afterwards: a callee that kept its `kwargs` keeps them to itself. Python
/// functions never see the dict itself (CPython copies `**kwargs`).
fn call_with_kept_keywords<'py>(
    slf: &Bound<'py, LoopCore>,
    callable: &Bound<'py, PyAny>,
    positional: &[&Bound<'py, PyAny>],
    made: Made,
) -> PyResult<Bound<'py, PyAny>> {
    let py = slf.py();
    let kept = slf.get().state.borrow_mut(py)?.kept_keywords.slot(made).take();
    let keywords = match kept {
        Some(keywords) => keywords.into_bound(py),
        None => {
            let keywords = PyDict::new(py);
            keywords.set_item(pyo3::intern!(py, "loop"), slf)?;
            if let Made::Task = made {
                keywords.set_item(pyo3::intern!(py, "name"), py.None())?;
                keywords.set_item(pyo3::intern!(py, "context"), py.None())?;
            }
            keywords
        }
    };
    let args = PyTuple::new(py, positional)?;
    let result = callable.call(args, Some(&keywords));
    // SAFETY: Py_REFCNT only reads the count of a live object.
    if unsafe { ffi::Py_REFCNT(keywords.as_ptr()) } == 1 {
        let previous = slf
            .get()
            .state
            .borrow_mut(py)?
            .kept_keywords
            .slot(made)
            .replace(keywords.unbind());
        drop(previous);
    }
    result
}

/// The most arguments [`call_with_keywords`] passes.
const MAX_CALL_ARGS: usize = 4;

/// `callable(*positional, **dict(zip(names, values)))` as one vectorcall.
fn call_with_keywords<'py>(
    callable: &Bound<'py, PyAny>,
    positional: &[&Bound<'py, PyAny>],
    names: &Bound<'py, PyTuple>,
    values: &[&Bound<'py, PyAny>],
) -> PyResult<Bound<'py, PyAny>> {
    let py = callable.py();
    // On the stack: this makes every task.
    let mut args = [std::ptr::null_mut(); MAX_CALL_ARGS];
    let count = positional.len() + values.len();
    if count > MAX_CALL_ARGS {
        return Err(pyo3::exceptions::PySystemError::new_err(
            "too many arguments",
        ));
    }
    for (slot, arg) in args.iter_mut().zip(positional.iter().chain(values.iter())) {
        *slot = arg.as_ptr();
    }
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

/// asyncio's own `BaseEventLoop.<name>`, for the cases it must do itself.
fn asyncio_method<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || -> PyResult<Py<PyAny>> {
            Ok(py
                .import("asyncio.base_events")?
                .getattr("BaseEventLoop")?
                .getattr(name)?
                .unbind())
        })?
        .bind(py)
        .clone())
}

/// `loop.create_future()`: `asyncio.futures.Future(loop=loop)`. In debug
/// mode asyncio's own method makes it, so that the creation stack the future
/// records is the one stock asyncio records (it ends in that method).
pub fn create_future(slf: &Bound<'_, LoopCore>) -> PyResult<Py<PyAny>> {
    static FUTURES: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    static CREATE_FUTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = slf.py();
    if slf.get().is_debug() {
        return Ok(asyncio_method(py, &CREATE_FUTURE, "create_future")?
            .call1((slf,))?
            .unbind());
    }
    let future_type =
        module(py, &FUTURES, "asyncio.futures")?.getattr(pyo3::intern!(py, "Future"))?;
    Ok(call_with_kept_keywords(slf, &future_type, &[], Made::Future)?.unbind())
}

/// Whether `create_task` must go through asyncio's own method: in debug
/// mode (the creation stack a task records must end where stock asyncio's
/// does), and with a task factory (whose calling convention and naming rules
/// change between Python versions, and whose cost dwarfs the detour).
pub fn create_task_needs_asyncio(slf: &Bound<'_, LoopCore>) -> PyResult<bool> {
    let core = slf.get();
    Ok(core.is_debug() || core.state.borrow(slf.py())?.task_factory.is_some())
}

/// asyncio's `BaseEventLoop.create_task(loop, *args, **kwargs)`, called with
/// the arguments exactly as given, so that its checks and errors are asyncio's.
///
/// # Safety
/// `args` must point to `nargs` live objects followed by one per name in
/// `kwnames` (a tuple of strings, or NULL), as CPython passes them.
pub unsafe fn create_task_through_asyncio(
    slf: &Bound<'_, LoopCore>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<Py<PyAny>> {
    static CREATE_TASK: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let py = slf.py();
    let method = asyncio_method(py, &CREATE_TASK, "create_task")?;
    // SAFETY: PyVectorcall_NARGS only masks the offset flag off a count.
    let positional = unsafe { ffi::PyVectorcall_NARGS(nargs as usize) } as usize;
    let named = if kwnames.is_null() {
        0
    } else {
        // SAFETY: a non-NULL `kwnames` is a tuple (vectorcall contract).
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    };
    let mut forwarded = Vec::with_capacity(1 + positional + named);
    forwarded.push(slf.as_ptr());
    // SAFETY: the caller passes `positional + named` live borrowed
    // references at `args`.
    forwarded.extend_from_slice(unsafe { std::slice::from_raw_parts(args, positional + named) });
    // SAFETY: `forwarded` holds the loop, the positional arguments and the
    // keyword values, all borrowed references alive for the call; `kwnames`
    // names the last `named` of them. The result is a new reference or NULL
    // with an exception set.
    unsafe {
        let result =
            ffi::PyObject_Vectorcall(method.as_ptr(), forwarded.as_ptr(), 1 + positional, kwnames);
        Ok(Bound::from_owned_ptr_or_err(py, result)?.unbind())
    }
}

/// `loop.create_task(coro, name=name, context=context)` without a task
/// factory, outside debug mode: the C `Task`, made directly.
pub fn create_task(
    slf: &Bound<'_, LoopCore>,
    coro: &Bound<'_, PyAny>,
    name: Option<Bound<'_, PyAny>>,
    context: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    static TASKS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    static ALL_NAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = slf.py();
    slf.get().check_closed()?;
    let task_type = module(py, &TASKS, "asyncio.tasks")?.getattr(pyo3::intern!(py, "Task"))?;
    let name = name.filter(|n| !n.is_none());
    let context = context.filter(|c| !c.is_none());
    let task = if name.is_none() && context.is_none() {
        call_with_kept_keywords(slf, &task_type, &[coro], Made::Task)?
    } else {
        let none = py.None().into_bound(py);
        let names = keyword_names(py, &ALL_NAMES, &["loop", "name", "context"])?;
        let values = [
            slf.as_any(),
            name.as_ref().unwrap_or(&none),
            context.as_ref().unwrap_or(&none),
        ];
        call_with_keywords(&task_type, &[coro], names, &values)?
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
