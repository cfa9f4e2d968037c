//! Python buffers handed to socket calls: data to write (bytes-like, as
//! asyncio accepts it) and memory to receive into.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::PyTypeInfo;

/// A contiguous buffer exported by a Python object, released on drop.
pub struct ExportedBuffer {
    view: Box<ffi::Py_buffer>,
}

impl ExportedBuffer {
    fn export(obj: &Bound<'_, PyAny>, flags: std::os::raw::c_int) -> PyResult<ExportedBuffer> {
        // SAFETY: a zeroed Py_buffer is the documented initial state;
        // PyObject_GetBuffer either fills it (released in Drop) or fails with
        // an exception set and leaves nothing to release. The flags ask for a
        // contiguous buffer, so `buf`/`len` describe all of it.
        unsafe {
            let mut view: Box<ffi::Py_buffer> = Box::new(std::mem::zeroed());
            if ffi::PyObject_GetBuffer(obj.as_ptr(), &mut *view, flags) != 0 {
                return Err(PyErr::fetch(obj.py()));
            }
            Ok(ExportedBuffer { view })
        }
    }

    pub fn len(&self) -> usize {
        self.view.len as usize
    }

    pub fn bytes(&self) -> &[u8] {
        if self.len() == 0 {
            return &[];
        }
        // SAFETY: an exported contiguous buffer is valid for reads of `len`
        // bytes while it stays exported, which `self` guarantees.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast(), self.len()) }
    }
}

impl Drop for ExportedBuffer {
    fn drop(&mut self) {
        // SAFETY: the view was filled by a successful PyObject_GetBuffer and
        // is released exactly once, here; these buffers live only within
        // calls made while attached to the interpreter.
        unsafe { ffi::PyBuffer_Release(&mut *self.view) };
    }
}

/// Memory a socket call may write into (`recv_into`, `get_buffer()`).
pub struct WritableBuffer(ExportedBuffer);

impl WritableBuffer {
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<WritableBuffer> {
        ExportedBuffer::export(obj, ffi::PyBUF_WRITABLE).map(WritableBuffer)
    }

    pub fn ptr(&self) -> *mut u8 {
        self.0.view.buf.cast()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// The bytes of a `bytes`/`bytearray`/`memoryview` given to a write, or
/// asyncio's TypeError for anything else. `bytes` are shared (immutable);
/// the others are copied, as they may change after the call returns.
pub enum WriteData<'py> {
    Shared(Bound<'py, PyBytes>),
    Copied(Vec<u8>),
}

impl<'py> WriteData<'py> {
    pub fn extract(data: &Bound<'py, PyAny>) -> PyResult<WriteData<'py>> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            return Ok(WriteData::Shared(bytes.clone()));
        }
        if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            return match ExportedBuffer::export(data, ffi::PyBUF_SIMPLE) {
                Ok(buffer) => Ok(WriteData::Copied(buffer.bytes().to_vec())),
                // A non-contiguous memoryview: let Python flatten it.
                Err(_) => Ok(WriteData::Shared(
                    PyBytes::type_object(data.py())
                        .call1((data,))?
                        .cast_into()?,
                )),
            };
        }
        Err(PyTypeError::new_err(format!(
            "data argument must be a bytes-like object, not {}",
            data.get_type().name()?.repr()?
        )))
    }

    pub fn as_slice(&self) -> &[u8] {
        match self {
            WriteData::Shared(b) => b.as_bytes(),
            WriteData::Copied(v) => v,
        }
    }
}
