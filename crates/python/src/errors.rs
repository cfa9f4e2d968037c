//! Errors as Python sees them: system errors as asyncio's `OSError`s, Rust
//! panics as exceptions, and the test for the exceptions that stop the loop.
//!
//! A leaf module: everything that turns a failure into a Python exception
//! goes through here, so every `OSError` the native layer raises reads and
//! matches like the socket module's (`[Errno 9] Bad file descriptor`, with
//! `errno` and `strerror` set, and the subclass PEP 3151 gives the errno).

use std::io;

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PySystemExit};
use pyo3::{PyErr, Python};

/// `OSError(errno, strerror)`: Python picks the subclass from the errno
/// (ConnectionResetError, BrokenPipeError, ...), exactly as its socket
/// module's own errors do. (PyO3's own `From<io::Error>` words the message
/// differently and leaves `errno` unset: never let `?` convert an
/// `io::Error`.)
pub fn os_error(err: io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(errno) => PyOSError::new_err((errno, strerror(errno))),
        None => PyOSError::new_err(err.to_string()),
    }
}

/// The C library's message for `errno`, as `os.strerror` gives it.
pub fn strerror(errno: i32) -> String {
    // SAFETY: strerror returns a pointer to a NUL-terminated message that
    // stays valid until the next strerror call on this thread; it is copied
    // at once, before any other code runs on this thread.
    unsafe { std::ffi::CStr::from_ptr(libc::strerror(errno)) }
        .to_string_lossy()
        .into_owned()
}

/// `KeyboardInterrupt` and `SystemExit` stop the loop (they propagate out of
/// `run_forever`), where any other exception is reported and the loop goes on.
pub fn is_loop_stopping(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}

/// A Rust panic becomes a Python exception (PyO3's `PanicException`), never
/// an abort of the interpreter.
pub fn panic_error(payload: Box<dyn std::any::Any + Send>) -> PyErr {
    let message = payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic from Rust code".to_string());
    pyo3::panic::PanicException::new_err(message)
}
