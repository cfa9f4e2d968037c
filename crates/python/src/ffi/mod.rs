//! The C-API glue: state guarded by the interpreter lock, and the entry
//! points CPython calls directly.

pub mod gil_cell;
