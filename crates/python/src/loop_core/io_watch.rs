//! `add_reader`/`add_writer`/`remove_reader`/`remove_writer`: Python
//! callbacks run when a descriptor is ready, level-triggered as in asyncio
//! (the engine's registry re-arms the descriptor after each report).
//!
//! Arguments are read exactly as asyncio's selector loop reads them, because
//! libraries depend on the details: `selectors._fileobj_to_fd` turns a file
//! object into a number (so a `fileno()` that raises something else than
//! AttributeError/TypeError/ValueError propagates as it is), a number that
//! does not fit a C int fails as `epoll.register` fails (OverflowError), and
//! a registration is found again by the object it was made with when that
//! object's `fileno()` no longer answers: anyio calls `remove_reader(sock)`
//! after closing `sock`, whose `fileno()` is then -1.

use ferroloop_engine::Direction;
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyInt, PyTuple};

use crate::handles::HandleRef;
use crate::io::Watcher;
use crate::loop_core::LoopCore;

/// `selectors._fileobj_to_fd`: an int as it is, or `int(fileobj.fileno())`;
/// negative numbers are refused. The number may be of any size.
fn fileobj_to_number<'py>(fileobj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyInt>> {
    let number = match fileobj.cast::<PyInt>() {
        Ok(number) => number.clone(),
        Err(_) => file_number(fileobj)?,
    };
    if number.lt(0)? {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {number}"
        )));
    }
    Ok(number)
}

/// `int(fileobj.fileno())`, with asyncio's error for objects that have no
/// usable `fileno()`; any other exception from `fileno()` propagates.
fn file_number<'py>(fileobj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyInt>> {
    let py = fileobj.py();
    let converted = fileobj
        .call_method0(pyo3::intern!(py, "fileno"))
        .and_then(|n| py.get_type::<PyInt>().call1((n,)))
        .and_then(|n| Ok(n.cast_into::<PyInt>()?));
    converted.map_err(|err| {
        let invalid = err.is_instance_of::<pyo3::exceptions::PyAttributeError>(py)
            || err.is_instance_of::<pyo3::exceptions::PyTypeError>(py)
            || err.is_instance_of::<PyValueError>(py);
        if invalid {
            let repr = fileobj.repr().map(|r| r.to_string()).unwrap_or_default();
            PyValueError::new_err(format!("Invalid file object: {repr}"))
        } else {
            err
        }
    })
}

/// The descriptor to register for `fileobj`: as `fileobj_to_number`, and a
/// number beyond a C int fails as epoll's own registration does.
pub fn fileobj_to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<i32> {
    fileobj_to_number(fileobj)?
        .extract::<i32>()
        .map_err(|_| PyOverflowError::new_err("Python int too large to convert to C int"))
}

/// The descriptor a registration of `fileobj` for `direction` is under:
/// found by number, or, when the object no longer gives one, by the object
/// itself (asyncio's `_fileobj_lookup`). `None`: nothing can be registered
/// under it (a number beyond any descriptor).
fn registered_fd(
    slf: &Bound<'_, LoopCore>,
    fileobj: &Bound<'_, PyAny>,
    direction: Direction,
) -> PyResult<Option<i32>> {
    let py = slf.py();
    let number = match fileobj_to_number(fileobj) {
        Ok(number) => number,
        Err(err) if err.is_instance_of::<PyValueError>(py) => {
            let found = {
                let st = slf.get().state.borrow(py)?;
                st.io.as_ref().and_then(|io| {
                    io.find(direction, |watcher| {
                        matches!(watcher, Watcher::Callback { fileobj: f, .. } if f.is(fileobj))
                    })
                })
            };
            return match found {
                Some(fd) => Ok(Some(fd)),
                None => Err(err),
            };
        }
        Err(err) => return Err(err),
    };
    Ok(number.extract::<i32>().ok())
}

/// asyncio's `_ensure_fd_no_transport`: a descriptor owned by a transport
/// that is not closing cannot get a reader or writer of its own. Only the
/// number is read here (no range check: asyncio looks it up in a dict).
pub fn ensure_no_transport(slf: &Bound<'_, LoopCore>, fileobj: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = slf.py();
    let number = match fileobj.cast::<PyInt>() {
        Ok(number) => number.clone(),
        Err(_) => file_number(fileobj)?,
    };
    let Ok(fd) = number.extract::<i32>() else {
        return Ok(());
    };
    let transport = {
        let st = slf.get().state.borrow(py)?;
        st.io
            .as_ref()
            .and_then(|io| io.get(fd, Direction::Read))
            .and_then(|w| w.transport(py))
    };
    if let Some(transport) = transport {
        let transport = transport.bind(py);
        if !transport
            .call_method0(pyo3::intern!(py, "is_closing"))?
            .is_truthy()?
        {
            return Err(PyRuntimeError::new_err(format!(
                "File descriptor {} is used by transport {}",
                fileobj.repr()?,
                transport.repr()?
            )));
        }
    }
    Ok(())
}

fn cancel_replaced(py: Python<'_>, replaced: Option<Watcher>) -> PyResult<()> {
    if let Some(Watcher::Callback { handle, .. }) = replaced {
        handle
            .object()
            .bind(py)
            .call_method0(pyo3::intern!(py, "cancel"))?;
    }
    Ok(())
}

fn method_name(direction: Direction) -> &'static str {
    match direction {
        Direction::Read => "add_reader",
        Direction::Write => "add_writer",
    }
}

impl LoopCore {
    /// asyncio's `_add_reader`/`_add_writer`: the closed check, the handle,
    /// then the registration (whose errors are the kernel's).
    fn watch(
        slf: &Bound<'_, LoopCore>,
        fileobj: &Bound<'_, PyAny>,
        direction: Direction,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<HandleRef> {
        let py = slf.py();
        slf.get().check_closed()?;
        let handle = LoopCore::new_handle(
            slf,
            callback,
            args,
            None,
            None,
            method_name(direction),
            false,
            true,
        )?;
        let fd = fileobj_to_fd(fileobj)?;
        let watcher = Watcher::Callback {
            handle: handle.clone_ref(py),
            fileobj: fileobj.clone().unbind(),
        };
        let replaced = slf.get().watch_fd(py, fd, direction, watcher)?;
        cancel_replaced(py, replaced)?;
        Ok(handle)
    }

    /// asyncio's `_remove_reader`/`_remove_writer`: True if a callback was
    /// watching and is now cancelled.
    fn unwatch(
        slf: &Bound<'_, LoopCore>,
        fileobj: &Bound<'_, PyAny>,
        direction: Direction,
    ) -> PyResult<bool> {
        let py = slf.py();
        if slf.get().is_closed() {
            return Ok(false);
        }
        let Some(fd) = registered_fd(slf, fileobj, direction)? else {
            return Ok(false);
        };
        let is_callback = {
            let st = slf.get().state.borrow(py)?;
            matches!(
                st.io.as_ref().and_then(|io| io.get(fd, direction)),
                Some(Watcher::Callback { .. })
            )
        };
        if !is_callback {
            return Ok(false);
        }
        match slf.get().unwatch_fd(py, fd, direction)? {
            Some(Watcher::Callback { handle, .. }) => {
                handle
                    .object()
                    .bind(py)
                    .call_method0(pyo3::intern!(py, "cancel"))?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

#[pymethods]
impl LoopCore {
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        ensure_no_transport(slf, fd)?;
        LoopCore::watch(slf, fd, Direction::Read, callback, args).map(drop)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        ensure_no_transport(slf, fd)?;
        LoopCore::watch(slf, fd, Direction::Write, callback, args).map(drop)
    }

    /// As `add_reader`, returning the handle (asyncio's private variant).
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        LoopCore::watch(slf, fd, Direction::Read, callback, args).map(HandleRef::into_object)
    }

    /// As `add_writer`, returning the handle (asyncio's private variant).
    #[pyo3(signature = (fd, callback, *args))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<Py<PyAny>> {
        LoopCore::watch(slf, fd, Direction::Write, callback, args).map(HandleRef::into_object)
    }

    fn remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        ensure_no_transport(slf, fd)?;
        LoopCore::unwatch(slf, fd, Direction::Read)
    }

    fn remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        ensure_no_transport(slf, fd)?;
        LoopCore::unwatch(slf, fd, Direction::Write)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        LoopCore::unwatch(slf, fd, Direction::Read)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        LoopCore::unwatch(slf, fd, Direction::Write)
    }

    /// asyncio's `_ensure_fd_no_transport`, for the Python layer.
    fn _ensure_fd_no_transport(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<()> {
        ensure_no_transport(slf, fd)
    }
}
