//! The C-API glue: the entry points CPython calls directly, and state
//! guarded by the interpreter lock ([`gil_cell`]).
//!
//! The hottest methods (`call_soon`, `transport.write`, the handles' methods
//! and slots) are written against CPython's calling conventions rather than
//! through PyO3's wrappers, whose argument handling cost as much as the work.
//!
//! # The entry-point contract
//!
//! Every `extern "C"` function of this crate is called by CPython only as
//! the method or slot it was installed as, and so:
//!
//! - with the GIL held by the calling thread (the module declares it needs
//!   the GIL, so this holds on free-threaded builds too);
//! - with `self` a live object of the type the method or slot belongs to
//!   (a method descriptor checks the type before it calls; a slot is only
//!   reached through its own type), so casts to that type's layout hold;
//! - with live, borrowed arguments laid out as the method's flags declare
//!   (`METH_O`: one object; `METH_NOARGS`: NULL; `METH_FASTCALL |
//!   METH_KEYWORDS`: `nargs` positional values then one per name in the
//!   `kwnames` tuple).
//!
//! Each entry point runs its body through [`trampoline`], so that a Rust
//! panic becomes a Python exception instead of an abort, and each `unsafe`
//! block in it says what it relies on beyond this contract.

use std::os::raw::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

pub mod gil_cell;

/// What an entry point returns, and how it signals "an exception is set".
pub trait RawReturn {
    /// Sets `err` as CPython expects and returns the error value.
    fn raise(py: Python<'_>, err: PyErr) -> Self;
}

impl RawReturn for *mut ffi::PyObject {
    fn raise(py: Python<'_>, err: PyErr) -> Self {
        err.restore(py);
        std::ptr::null_mut()
    }
}

impl RawReturn for ffi::Py_hash_t {
    fn raise(py: Python<'_>, err: PyErr) -> Self {
        err.restore(py);
        -1
    }
}

impl RawReturn for c_int {
    fn raise(py: Python<'_>, err: PyErr) -> Self {
        err.restore(py);
        -1
    }
}

/// A slot that cannot fail (`tp_dealloc`): an error is reported as
/// unraisable, as CPython does for errors in finalisers.
impl RawReturn for () {
    fn raise(py: Python<'_>, err: PyErr) -> Self {
        err.write_unraisable(py, None);
    }
}

/// Runs the body of an entry point: a panic becomes a Python exception
/// (PyO3's `PanicException`), an error is set as CPython expects.
///
/// PyO3 is not told the thread is attached (telling it costs a thread-local
/// count per call): a `Py` dropped in the body of an entry point called from
/// outside PyO3's own methods (another thread's `call_soon_threadsafe`, a
/// call before the loop runs) is released later, through PyO3's pool of
/// deferred releases. Bodies drop `Bound`s where that matters.
///
/// # Safety
/// Only for the body of an entry point called under the contract above (the
/// GIL is held by the calling thread).
#[inline(always)]
pub unsafe fn trampoline<R: RawReturn>(body: impl FnOnce(Python<'_>) -> PyResult<R>) -> R {
    // SAFETY: the contract: CPython holds the GIL for the whole call.
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| body(py))) {
        Ok(Ok(value)) => value,
        Ok(Err(err)) => R::raise(py, err),
        Err(payload) => R::raise(py, crate::errors::panic_error(payload)),
    }
}

/// A `METH_O` entry point (one argument), as CPython calls it.
pub type OneArgument =
    unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;

/// The definition of a one-argument raw method, made once and kept for the
/// interpreter's lifetime (a method descriptor points to it).
pub fn one_argument_method(
    name: &'static std::ffi::CStr,
    function: OneArgument,
    doc: &'static std::ffi::CStr,
) -> &'static mut ffi::PyMethodDef {
    Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: function,
        },
        ml_flags: ffi::METH_O,
        ml_doc: doc.as_ptr(),
    }))
}

/// Puts a raw method on a type, as a method descriptor. `def` must describe
/// an entry point whose signature matches its flags.
pub fn install_method(
    py: Python<'_>,
    ty: &Bound<'_, PyType>,
    def: &'static mut ffi::PyMethodDef,
) -> PyResult<()> {
    // SAFETY: `def` is 'static and describes a function matching its flags;
    // `ty` is a live type. The descriptor is a new reference, owned by the
    // Bound.
    let descriptor =
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    // SAFETY: ml_name is a NUL-terminated 'static string.
    let name = unsafe { std::ffi::CStr::from_ptr(def.ml_name) }
        .to_str()
        .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    ty.setattr(name, descriptor)
}
