//! A protocol's method as a transport keeps it: without a bound method
//! object where it can.
//!
//! A transport looks its protocol's read callbacks (`data_received`, or
//! `get_buffer` and `buffer_updated`) up once and calls them for every
//! read. Keeping the bound method the lookup returns costs 64 bytes for
//! every connection, idle or not. When the lookup gives an ordinary bound
//! method of the protocol itself (a method defined in its class, the usual
//! case), the transport keeps the method's function instead, which every
//! instance of the class shares, and calls it with the protocol first:
//! exactly what the bound method would do.

use pyo3::ffi;
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::PyString;
use pyo3::PyTraverseError;

// CPython's bound method type and its accessors (exported by the
// interpreter; pyo3-ffi does not declare them).
// SAFETY: the declarations match Include/cpython/classobject.h on 3.11-3.13:
// a static PyTypeObject, and two functions taking and returning a PyObject
// pointer (borrowed references).
unsafe extern "C" {
    static mut PyMethod_Type: ffi::PyTypeObject;
    fn PyMethod_Function(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
    fn PyMethod_Self(method: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

pub enum ProtocolMethod {
    /// The function of a method bound to the protocol: called as
    /// `function(protocol, ...)`.
    Function(Py<PyAny>),
    /// Whatever else the attribute was (a callable set on the instance, a
    /// builtin's method, ...): called as it is.
    Object(Py<PyAny>),
}

impl ProtocolMethod {
    /// `protocol.<name>`, looked up now.
    pub fn of(protocol: &Bound<'_, PyAny>, name: &Bound<'_, PyString>) -> PyResult<ProtocolMethod> {
        let attribute = protocol.getattr(name)?;
        let method_type = std::ptr::addr_of_mut!(PyMethod_Type);
        if attribute.get_type().as_type_ptr() == method_type {
            // SAFETY: the object is a bound method (its type was checked);
            // both accessors return borrowed references to its fields,
            // which it keeps alive while we hold it.
            let (function, receiver) = unsafe {
                (
                    PyMethod_Function(attribute.as_ptr()),
                    PyMethod_Self(attribute.as_ptr()),
                )
            };
            if receiver == protocol.as_ptr() && !function.is_null() {
                // SAFETY: a live object, borrowed from the bound method we
                // hold; the new reference is ours.
                let function = unsafe { Bound::from_borrowed_ptr(protocol.py(), function) };
                return Ok(ProtocolMethod::Function(function.unbind()));
            }
        }
        Ok(ProtocolMethod::Object(attribute.unbind()))
    }

    /// Calls the method of `protocol` (the one it was looked up on) with
    /// one argument.
    pub fn call1<'py>(
        &self,
        protocol: &Bound<'py, PyAny>,
        arg: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = protocol.py();
        match self {
            ProtocolMethod::Function(function) => {
                // One slot before the arguments is ours to use
                // (PY_VECTORCALL_ARGUMENTS_OFFSET), as a bound method's call
                // would use it.
                let mut args = [std::ptr::null_mut(), protocol.as_ptr(), arg.as_ptr()];
                // SAFETY: `args[1..]` holds two live borrowed references,
                // and `args[0]` may be written by the callee, as the offset
                // flag allows; the result is a new reference or NULL with an
                // exception set.
                unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        ffi::PyObject_Vectorcall(
                            function.as_ptr(),
                            args.as_mut_ptr().add(1).cast_const(),
                            2 | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
                            std::ptr::null_mut(),
                        ),
                    )
                }
            }
            ProtocolMethod::Object(callable) => callable.bind(py).call1((arg,)),
        }
    }

    pub fn clone_ref(&self, py: Python<'_>) -> ProtocolMethod {
        match self {
            ProtocolMethod::Function(f) => ProtocolMethod::Function(f.clone_ref(py)),
            ProtocolMethod::Object(o) => ProtocolMethod::Object(o.clone_ref(py)),
        }
    }

    pub fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            ProtocolMethod::Function(f) | ProtocolMethod::Object(f) => visit.call(f),
        }
    }
}
