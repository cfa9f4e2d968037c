//! `add_reader`/`add_writer`/`remove_reader`/`remove_writer`: Python
//! callbacks run when a descriptor is ready, level-triggered as in asyncio
//! (the engine's registry re-arms the descriptor after each report).

use ferroloop_engine::Direction;
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::handles::HandleRef;
use crate::loop_core::LoopCore;
use crate::queue_items::Watcher;

/// asyncio's (selectors') `_fileobj_to_fd`: an int, or an object whose
/// `fileno()` gives one; negative numbers are refused.
pub fn fileobj_to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<i32> {
    let fd: i64 = if let Ok(fd) = fileobj.extract::<i64>() {
        fd
    } else {
        fileobj
            .call_method0(pyo3::intern!(fileobj.py(), "fileno"))
            .and_then(|n| n.extract::<i64>())
            .map_err(|_| {
                PyValueError::new_err(format!(
                    "Invalid file object: {}",
                    fileobj.repr().map(|r| r.to_string()).unwrap_or_default()
                ))
            })?
    };
    if fd < 0 {
        return Err(PyValueError::new_err(format!(
            "Invalid file descriptor: {fd}"
        )));
    }
    i32::try_from(fd).map_err(|_| PyValueError::new_err(format!("Invalid file descriptor: {fd}")))
}

/// asyncio's `_ensure_fd_no_transport`: a descriptor owned by a transport
/// that is not closing cannot get a reader or writer of its own.
fn ensure_no_transport(slf: &Bound<'_, LoopCore>, fd: i32) -> PyResult<()> {
    let py = slf.py();
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
                "File descriptor {fd} is used by transport {}",
                transport.repr()?
            )));
        }
    }
    Ok(())
}

fn cancel_replaced(py: Python<'_>, replaced: Option<Watcher>) -> PyResult<()> {
    if let Some(Watcher::Callback(old)) = replaced {
        old.object()
            .bind(py)
            .call_method0(pyo3::intern!(py, "cancel"))?;
    }
    Ok(())
}

impl LoopCore {
    fn watch(
        slf: &Bound<'_, LoopCore>,
        fileobj: &Bound<'_, PyAny>,
        direction: Direction,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<HandleRef> {
        let py = slf.py();
        let fd = fileobj_to_fd(fileobj)?;
        let method = match direction {
            Direction::Read => "add_reader",
            Direction::Write => "add_writer",
        };
        let handle = LoopCore::new_handle(slf, callback, args, None, None, method, false, true)?;
        let replaced =
            slf.get()
                .watch_fd(py, fd, direction, Watcher::Callback(handle.clone_ref(py)))?;
        cancel_replaced(py, replaced)?;
        Ok(handle)
    }

    fn unwatch(
        slf: &Bound<'_, LoopCore>,
        fileobj: &Bound<'_, PyAny>,
        direction: Direction,
    ) -> PyResult<bool> {
        let py = slf.py();
        let fd = fileobj_to_fd(fileobj)?;
        if slf.get().is_closed() {
            return Ok(false);
        }
        let is_callback = {
            let st = slf.get().state.borrow(py)?;
            matches!(
                st.io.as_ref().and_then(|io| io.get(fd, direction)),
                Some(Watcher::Callback(_))
            )
        };
        if !is_callback {
            return Ok(false);
        }
        match slf.get().unwatch_fd(py, fd, direction)? {
            Some(Watcher::Callback(handle)) => {
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
        ensure_no_transport(slf, fileobj_to_fd(fd)?)?;
        LoopCore::watch(slf, fd, Direction::Read, callback, args).map(drop)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: &Bound<'_, PyAny>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        ensure_no_transport(slf, fileobj_to_fd(fd)?)?;
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
        ensure_no_transport(slf, fileobj_to_fd(fd)?)?;
        LoopCore::unwatch(slf, fd, Direction::Read)
    }

    fn remove_writer(slf: &Bound<'_, Self>, fd: &Bound<'_, PyAny>) -> PyResult<bool> {
        ensure_no_transport(slf, fileobj_to_fd(fd)?)?;
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
        ensure_no_transport(slf, fileobj_to_fd(fd)?)
    }
}
