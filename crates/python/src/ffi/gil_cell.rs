//! `GilCell`: loop and handle state shared by Python callers, guarded by the
//! interpreter lock instead of a mutex.
//!
//! Everything Python can reach is only touched while attached to the
//! interpreter, and the module declares that it needs the GIL, so at most one
//! thread is attached at a time (a free-threaded interpreter re-enables the GIL
//! on import). A `RefCell` under that lock is enough, and costs one
//! non-atomic flag per access instead of a lock.
//!
//! The `RefCell` still matters: Python code can run in the middle of a Rust
//! method (a `__del__` during an allocation, a signal handler), and may call
//! back into the loop. Borrows are therefore kept short and never held across
//! anything that may run Python code; if one is ever found still taken, the
//! caller gets a Python `RuntimeError` instead of a panic.

use std::cell::{Ref, RefCell, RefMut};

use pyo3::exceptions::PyRuntimeError;
use pyo3::gc::PyVisit;
use pyo3::{PyResult, Python};

pub struct GilCell<T>(RefCell<T>);

// SAFETY: every access goes through `borrow`/`borrow_mut`, which take a
// `Python` token (proof of attachment), or through `borrow_in_traverse`,
// which takes a `PyVisit` (the collector runs attached). The module is
// `gil_used`, so attached threads are serialised by the GIL: no two threads
// ever touch the RefCell (flag or contents) at the same time.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub fn new(value: T) -> Self {
        GilCell(RefCell::new(value))
    }

    #[inline]
    pub fn borrow<'a>(&'a self, _py: Python<'a>) -> PyResult<Ref<'a, T>> {
        self.0.try_borrow().map_err(|_| reentered())
    }

    #[inline]
    pub fn borrow_mut<'a>(&'a self, _py: Python<'a>) -> PyResult<RefMut<'a, T>> {
        self.0.try_borrow_mut().map_err(|_| reentered())
    }

    /// For `__traverse__`: `None` while the state is being changed (the
    /// collector ran in the middle of an update); the objects are then simply
    /// not reported this time, which only delays their collection.
    pub fn borrow_in_traverse<'a>(&'a self, _visit: &PyVisit<'a>) -> Option<Ref<'a, T>> {
        self.0.try_borrow().ok()
    }
}

fn reentered() -> pyo3::PyErr {
    PyRuntimeError::new_err("ferroloop: loop state accessed re-entrantly")
}
