//! The file system calls of the loop's cold paths (Unix socket files),
//! made natively.
//!
//! asyncio makes them from its own modules, which blocking-call checkers
//! such as blockbuster allow; made from the loop's Python code they would be
//! flagged as blocking calls on the loop thread. They are quick metadata
//! calls on a local path, so making them in place is what asyncio does too.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;

use crate::errors::strerror;

/// `path` as the C string the kernel takes (`os.fsencode`), or Python's
/// ValueError for an embedded NUL.
fn c_path(path: &Path) -> PyResult<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| PyValueError::new_err("embedded null byte"))
}

/// The OSError `os.stat(path)` and friends raise: errno, strerror, filename.
fn path_error(path: &Bound<'_, PyAny>) -> PyErr {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    PyOSError::new_err((errno, strerror(errno), path.clone().unbind()))
}

/// `(st_mode, st_ino)` of `path`, as `os.stat(path)` gives them.
#[pyfunction]
pub fn stat_mode_and_inode(path: &Bound<'_, PyAny>) -> PyResult<(u32, u64)> {
    let c = c_path(&path.extract::<PathBuf>()?)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call; a zeroed
    // stat is a valid buffer for stat(2) to fill, read only on success.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        if libc::stat(c.as_ptr(), &mut st) < 0 {
            return Err(path_error(path));
        }
        Ok((st.st_mode, st.st_ino))
    }
}

/// `os.unlink(path)`.
#[pyfunction]
pub fn unlink(path: &Bound<'_, PyAny>) -> PyResult<()> {
    let c = c_path(&path.extract::<PathBuf>()?)?;
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    if unsafe { libc::unlink(c.as_ptr()) } < 0 {
        return Err(path_error(path));
    }
    Ok(())
}
