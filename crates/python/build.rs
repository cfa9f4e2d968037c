//! Tells the crate which Python it is built for: the `Py_3_12`-style cfgs
//! PyO3 itself uses, for the few layouts and functions that differ between
//! the versions ferroloop supports.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
