//! `ferroloop._ferroloop`: the native half of ferroloop's asyncio event loop.
//!
//! A thin layer over the pure-Rust engine (`ferroloop-engine`): it stores
//! Python handles in the engine's queues, runs them, and exposes the hot loop
//! methods to Python. The Python package builds `ferroloop.Loop` on top.
//!
//! The crate is layered, each folder using only those below it (and the loop
//! core and the I/O kinds each other: the loop runs the kinds' work, the
//! kinds queue theirs on the loop):
//!
//! - [`loop_core`]: the `LoopCore` class, the iteration, scheduling, tasks,
//!   `add_reader`/`add_writer`, and the observation point (blocking
//!   detector, task steps, `loop.stats()`);
//! - [`io`]: the native I/O kinds (stream and datagram transports, pipes as
//!   streams of another kind, the `sock_*` operations) and what the ready
//!   queue and fd registry hold for them;
//! - [`handles`]: `Handle` and `TimerHandle`;
//! - leaves: [`spawn`] (starting and reaping children), [`fs`] (the file
//!   system calls of Unix socket set-up), [`python_helpers`] (the Python
//!   functions of cold paths), [`context`] (`contextvars` for native code),
//!   [`errors`] (OSErrors as asyncio's, panics as exceptions) and [`ffi`]
//!   (the C-API glue: the interpreter-lock contract, raw entry points).

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod context;
mod errors;
mod ffi;
mod fs;
mod handles;
mod io;
mod loop_core;
mod python_helpers;
mod spawn;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
mod _ferroloop {
    #[pymodule_export]
    use crate::fs::{stat_mode_and_inode, unlink};
    #[pymodule_export]
    use crate::io::accept::{accept, accepted_address};
    #[pymodule_export]
    use crate::io::datagram::DatagramCore;
    #[pymodule_export]
    use crate::io::sock_ops::SockOp;
    #[pymodule_export]
    use crate::io::socket_transport::install_transport_methods;
    #[pymodule_export]
    use crate::io::stream::StreamCore;
    #[pymodule_export]
    use crate::loop_core::LoopCore;
    #[pymodule_export]
    use crate::spawn::{reap, spawn};

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        // The one version: the Cargo workspace's, which maturin also puts in
        // the wheel's metadata.
        pyo3::types::PyModuleMethods::add(m, "__version__", env!("CARGO_PKG_VERSION"))?;
        crate::handles::create_types(m)?;
        crate::loop_core::scheduling::install(m.py())?;
        crate::io::stream::install(m.py())
    }
}
