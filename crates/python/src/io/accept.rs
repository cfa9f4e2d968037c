//! Accepting a server's connections natively.
//!
//! asyncio's accept reader calls `sock.accept()`, which makes the peer's
//! address tuple at once, and the transport keeps that tuple as its
//! `peername` for as long as the connection lives. Here the accept call
//! hands back the kernel's raw address (a small `bytes` object, gone once
//! the transport's core has decoded it), so an idle IP connection keeps no
//! Python object for its addresses (see [`super::socket_address`]).

use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple};

use crate::errors::os_error;
use crate::io::socket_address;
use crate::io::sys_io;

/// `accept(fd)`: the next connection waiting on listening socket `fd`, as
/// `(descriptor, raw peer address)`, the descriptor non-blocking and
/// close-on-exec; `None` when none is waiting. Errors are `OSError`s, as
/// `socket.accept()` raises them.
#[pyfunction]
pub fn accept(py: Python<'_>, fd: RawFd) -> PyResult<Option<(RawFd, Bound<'_, PyBytes>)>> {
    let accepted = sys_io::accept(fd).map_err(os_error)?;
    Ok(accepted.map(|(conn, storage, len)| {
        // SAFETY: `storage` is a live local of at least `len` bytes (the
        // length is capped to its size).
        let raw = unsafe {
            std::slice::from_raw_parts(
                (&storage as *const libc::sockaddr_storage).cast::<u8>(),
                len,
            )
        };
        (conn, PyBytes::new(py, raw))
    }))
}

/// The address tuple for a raw IP address `accept` returned (what
/// `socket.accept()` would have given); `None` for another family.
#[pyfunction]
pub fn accepted_address<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Option<Bound<'py, PyTuple>>> {
    socket_address::decode_raw(raw)
        .map(|addr| socket_address::to_python(py, &addr))
        .transpose()
}
