//! `write` and `writelines` as native methods of the Python
//! `SocketTransport` class itself.
//!
//! A protocol's `transport.write(data)` is the hottest call of a
//! connection, so it must run no Python code. Binding the core's method on
//! each transport instance did that, but cost a bound method object per
//! transport and method (72 bytes each, for every idle connection). Instead
//! these methods are method descriptors on the class, as a C type's would
//! be: `self` is the Python transport, and the core is read from the class's
//! `_core` slot, at the offset its member descriptor gives.

use std::sync::OnceLock;

use pyo3::exceptions::{PyAttributeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

use crate::ffi::{install_method, one_argument_method, trampoline};
use crate::io::stream::{StreamCore, WRITE_DOC};

/// The offset of the `_core` slot in instances of the class the methods
/// were installed on (and its subclasses, which keep their bases' layout).
static CORE_OFFSET: OnceLock<usize> = OnceLock::new();

/// The `StreamCore` in `transport`'s `_core` slot.
///
/// # Safety
/// `transport` is a live instance of the class the methods were installed
/// on (the method descriptor checked its type), so `CORE_OFFSET` is the
/// offset of an object pointer slot within it; the GIL is held.
unsafe fn core_of<'py>(
    py: Python<'py>,
    transport: *mut ffi::PyObject,
) -> PyResult<Bound<'py, StreamCore>> {
    // Always set: the methods are installed only once it is.
    let Some(&offset) = CORE_OFFSET.get() else {
        return Err(PyTypeError::new_err(
            "the transport methods are not installed",
        ));
    };
    // SAFETY: by this function's contract the slot lies within the object,
    // holds a pointer-sized value, and is read with the GIL held (no one
    // writes it meanwhile).
    let core = unsafe {
        *(transport
            .cast::<u8>()
            .add(offset)
            .cast::<*mut ffi::PyObject>())
    };
    if core.is_null() {
        return Err(PyAttributeError::new_err("_core"));
    }
    // SAFETY: a non-NULL slot holds a strong reference to a live object.
    let core = unsafe { Bound::from_borrowed_ptr(py, core) };
    core.cast_into::<StreamCore>()
        .map_err(|_| PyTypeError::new_err("the transport's _core is not a StreamCore"))
}

/// `SocketTransport.write(data)`, a `METH_O` entry point (see [`crate::ffi`]).
unsafe extern "C" fn write(
    slf: *mut ffi::PyObject,
    data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live instance of the
    // class the descriptor belongs to, `data` a live borrowed argument.
    unsafe {
        trampoline(|py| {
            let core = core_of(py, slf)?;
            StreamCore::write(&core, &Bound::from_borrowed_ptr(py, data))?;
            Ok(py.None().into_ptr())
        })
    }
}

/// `SocketTransport.writelines(list_of_data)` (3.12's own; 3.11's is the
/// base class's, which calls `write`), a `METH_O` entry point.
unsafe extern "C" fn writelines(
    slf: *mut ffi::PyObject,
    list_of_data: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: as for `write`.
    unsafe {
        trampoline(|py| {
            let core = core_of(py, slf)?;
            StreamCore::writelines(&core, &Bound::from_borrowed_ptr(py, list_of_data))?;
            Ok(py.None().into_ptr())
        })
    }
}

/// `install_transport_methods(cls, writelines)`: puts the native `write`
/// (and, if asked, `writelines`) on `cls`, a class with a `_core` slot.
/// Done once, for one class.
#[pyfunction]
pub fn install_transport_methods(cls: &Bound<'_, PyType>, with_writelines: bool) -> PyResult<()> {
    let py = cls.py();
    let descriptor = cls.getattr("_core")?;
    let member_type = std::ptr::addr_of_mut!(ffi::PyMemberDescr_Type);
    if descriptor.get_type().as_type_ptr() != member_type {
        return Err(PyTypeError::new_err("_core must be a slot of the class"));
    }
    // SAFETY: the object is a member descriptor (checked above), whose
    // layout PyMemberDescrObject describes; its PyMemberDef is the class's
    // and lives as long as the class, which outlives this call.
    let (offset, type_code) = unsafe {
        let member = (*descriptor.as_ptr().cast::<ffi::PyMemberDescrObject>()).d_member;
        ((*member).offset, (*member).type_code)
    };
    if type_code != ffi::Py_T_OBJECT_EX || offset <= 0 {
        return Err(PyTypeError::new_err("_core must be an object slot"));
    }
    let offset = offset as usize;
    if *CORE_OFFSET.get_or_init(|| offset) != offset {
        return Err(PyTypeError::new_err(
            "the transport methods are installed on another class",
        ));
    }
    install_method(py, cls, one_argument_method(c"write", write, WRITE_DOC))?;
    if with_writelines {
        let doc = c"writelines(list_of_data)\n--\n\nSend the buffers in order, as one write.";
        install_method(py, cls, one_argument_method(c"writelines", writelines, doc))?;
    }
    Ok(())
}
