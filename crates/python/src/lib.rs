//! `ferroloop._ferroloop`: the native half of ferroloop's asyncio event loop.
//!
//! A thin layer over the pure-Rust engine (`ferroloop-engine`): it stores
//! Python handles in the engine's queues, runs them, and exposes the hot loop
//! methods to Python. The Python package builds `ferroloop.Loop` on top.
//!
//! - [`loop_core`]: the `LoopCore` class and its state;
//! - [`scheduling`]: `call_soon`/`call_later`/`call_at`, as raw fastcall methods;
//! - [`run`]: one iteration and `run_forever`'s inner loop;
//! - [`io_watch`]: `add_reader`/`add_writer` and their removal;
//! - [`handles`]: `Handle` and `TimerHandle`;
//! - [`queue_items`]: what the ready queue and fd registry hold;
//! - [`stream_transport`], [`datagram_transport`]: the native transports
//!   (pipes are streams of a [`stream_kind`]), with [`write_buffer`],
//!   [`flow_control`], [`lifecycle`] and [`buffers`];
//! - [`sock_ops`]: the `sock_recv`/`sock_sendall` family;
//! - [`spawn`]: starting and reaping child processes;
//! - [`tasks`]: `create_task` and the task factory;
//! - [`sys_io`]: the socket system calls of the hot paths;
//! - [`errors`]: OSErrors as asyncio's, panics as exceptions;
//! - [`fs`]: the file system calls of Unix socket set-up;
//! - [`observe`]: the blocking detector, task steps, `loop.stats()`;
//! - [`gil_cell`]: state guarded by the interpreter lock;
//! - [`context`]: copying and entering `contextvars` contexts;
//! - [`python_helpers`]: the Python functions used on cold paths.

mod buffers;
mod context;
mod datagram_transport;
mod errors;
mod flow_control;
mod fs;
mod gil_cell;
mod handles;
mod io_watch;
mod lifecycle;
mod loop_core;
mod observe;
mod python_helpers;
mod queue_items;
mod run;
mod scheduling;
mod sock_ops;
mod spawn;
mod stream_kind;
mod stream_transport;
mod sys_io;
mod tasks;
mod write_buffer;

use pyo3::prelude::*;

#[pymodule(gil_used = true)]
mod _ferroloop {
    #[pymodule_export]
    use crate::datagram_transport::DatagramCore;
    #[pymodule_export]
    use crate::fs::{stat_mode_and_inode, unlink};
    #[pymodule_export]
    use crate::loop_core::LoopCore;
    #[pymodule_export]
    use crate::sock_ops::SockOp;
    #[pymodule_export]
    use crate::spawn::{reap, spawn};
    #[pymodule_export]
    use crate::stream_transport::StreamCore;

    #[pymodule_init]
    fn init(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
        // The one version: the Cargo workspace's, which maturin also puts in
        // the wheel's metadata.
        pyo3::types::PyModuleMethods::add(m, "__version__", env!("CARGO_PKG_VERSION"))?;
        crate::handles::create_types(m)?;
        crate::scheduling::install(m.py())?;
        crate::stream_transport::install(m.py())
    }
}
