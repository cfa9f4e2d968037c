//! Python buffers handed to socket calls: data to write (bytes-like, as
//! asyncio accepts it), memory to receive into, and `bytes` received into
//! directly.
//!
//! The errors are those of Python's socket methods, since asyncio's
//! `sock_*` methods and transports call those: `send()` takes any
//! C-contiguous buffer, `recv_into()` any writable one, each with its own
//! TypeError for what it refuses.

use std::os::fd::RawFd;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

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
    /// The memory of `obj`, or the TypeError `socket.recv_into(obj)` raises
    /// for an object that is not a writable, contiguous buffer.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<WritableBuffer> {
        ExportedBuffer::export(obj, ffi::PyBUF_WRITABLE)
            .map(WritableBuffer)
            .map_err(|_| {
                let name = if obj.is_none() {
                    "None".to_string()
                } else {
                    obj.get_type()
                        .name()
                        .map(|n| n.to_string())
                        .unwrap_or_default()
                };
                PyTypeError::new_err(format!(
                    "recv_into() argument 1 must be read-write bytes-like object, not {name}"
                ))
            })
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
    /// A memoryview the socket cannot take (not contiguous, released), of
    /// `len()` items: asyncio accepts it, and the send then fails with this
    /// error, which is a fatal write error of the transport.
    Unsendable(PyErr, usize),
}

impl<'py> WriteData<'py> {
    pub fn extract(data: &Bound<'py, PyAny>) -> PyResult<WriteData<'py>> {
        if let Ok(bytes) = data.cast::<PyBytes>() {
            return Ok(WriteData::Shared(bytes.clone()));
        }
        if data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>() {
            return match ExportedBuffer::export(data, ffi::PyBUF_SIMPLE) {
                Ok(buffer) => Ok(WriteData::Copied(buffer.bytes().to_vec())),
                Err(err) => Ok(WriteData::Unsendable(err, data.len().unwrap_or(0))),
            };
        }
        Err(PyTypeError::new_err(format!(
            "data argument must be a bytes-like object, not {}",
            data.get_type().name()?.repr()?
        )))
    }

    /// Nothing to send (`not data` in asyncio).
    pub fn is_empty(&self) -> bool {
        match self {
            WriteData::Shared(b) => b.as_bytes().is_empty(),
            WriteData::Copied(v) => v.is_empty(),
            WriteData::Unsendable(_, len) => *len == 0,
        }
    }

    /// The bytes, or the error sending them gives.
    pub fn bytes(&self, py: Python<'_>) -> Result<&[u8], PyErr> {
        match self {
            WriteData::Shared(b) => Ok(b.as_bytes()),
            WriteData::Copied(v) => Ok(v),
            WriteData::Unsendable(err, _) => Err(err.clone_ref(py)),
        }
    }
}

/// The bytes of any C-contiguous buffer, as `socket.send(data)` takes them:
/// an object without the buffer protocol gets send()'s TypeError, a buffer
/// that cannot be exported (non-contiguous, released) its own error.
pub fn send_data(data: &Bound<'_, PyAny>) -> PyResult<ExportedBuffer> {
    // SAFETY: PyObject_CheckBuffer only inspects the type of a live object.
    if unsafe { ffi::PyObject_CheckBuffer(data.as_ptr()) } == 0 {
        return Err(PyTypeError::new_err(format!(
            "a bytes-like object is required, not {}",
            data.get_type().name()?.repr()?
        )));
    }
    ExportedBuffer::export(data, ffi::PyBUF_SIMPLE)
}

extern "C" {
    /// CPython's in-place resize of a `bytes` object with one reference; not
    /// exported by pyo3-ffi.
    fn _PyBytes_Resize(
        bytes: *mut *mut ffi::PyObject,
        new_size: ffi::Py_ssize_t,
    ) -> std::os::raw::c_int;
}

/// Receives at most `size` bytes from `fd` straight into a new `bytes` of
/// that size, shrunk to what arrived: no copy, and a size that cannot be
/// allocated fails with MemoryError, as Python's own `recv(size)` does,
/// instead of aborting. `None` unless some data arrived.
pub fn recv_new_bytes(
    py: Python<'_>,
    fd: RawFd,
    size: usize,
) -> PyResult<(
    std::io::Result<crate::io::sys_io::Io>,
    Option<Bound<'_, PyBytes>>,
)> {
    new_bytes_from(py, size, |ptr, len| {
        // SAFETY: new_bytes_from passes memory valid for writes of `len` bytes.
        unsafe { crate::io::sys_io::recv_raw(fd, ptr, len) }
    })
}

/// As [`recv_new_bytes`], with the reading call given: `receive(ptr, len)`
/// gets memory valid for writes of `len` bytes and returns what it wrote.
pub fn new_bytes_from(
    py: Python<'_>,
    size: usize,
    receive: impl FnOnce(*mut u8, usize) -> std::io::Result<crate::io::sys_io::Io>,
) -> PyResult<(
    std::io::Result<crate::io::sys_io::Io>,
    Option<Bound<'_, PyBytes>>,
)> {
    use crate::io::sys_io::Io;
    let Ok(length) = ffi::Py_ssize_t::try_from(size) else {
        return Err(pyo3::exceptions::PyMemoryError::new_err(()));
    };
    // SAFETY: PyBytes_FromStringAndSize(NULL, n) makes a bytes object of n
    // uninitialised bytes that nothing else can see until it is handed out;
    // `receive` writes at most `size` bytes into it. If fewer arrive,
    // _PyBytes_Resize shrinks our only reference in place, or fails, freeing
    // it and setting an exception; otherwise the reference is ours to own.
    unsafe {
        let mut obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), length);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let received = receive(ffi::PyBytes_AsString(obj).cast(), size);
        match received {
            Ok(Io::Done(n)) if n > 0 => {
                if n < size && _PyBytes_Resize(&mut obj, n as ffi::Py_ssize_t) != 0 {
                    return Err(PyErr::fetch(py));
                }
                let data = Bound::from_owned_ptr(py, obj).cast_into_unchecked::<PyBytes>();
                Ok((received, Some(data)))
            }
            _ => {
                ffi::Py_DECREF(obj);
                Ok((received, None))
            }
        }
    }
}
