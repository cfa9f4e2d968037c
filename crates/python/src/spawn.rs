//! Starting a child process: what CPython's `_posixsubprocess.fork_exec`
//! does, without its blocking read of an error pipe on the loop thread.
//!
//! The child is made with `clone(CLONE_VM | CLONE_VFORK)` on a stack of its
//! own, as glibc's `posix_spawn` does: the parent is suspended until the
//! child has called `execve` or exited, so when `spawn` returns the outcome
//! is known, and the child reports a failure by writing the errno and the
//! step that failed into memory it shares with the parent. No error pipe, no
//! wait. With `CLONE_PIDFD` the kernel hands back a pidfd for the child in
//! the same call, so the loop can watch it with no race against the pid
//! being reused.
//!
//! The child shares the parent's memory until it execs, so it runs only
//! async-signal-safe system calls on data prepared here beforehand: no
//! allocation, no lock, no Python. All signals are blocked around the clone
//! (the parent's C signal handlers must not run in the child); the child
//! resets every caught signal to its default before unblocking. It changes
//! ids with raw system calls: glibc's `setuid` family would signal the
//! parent's other threads to change theirs too.
//!
//! The steps and their order are `_posixsubprocess`'s, so every keyword of
//! `subprocess.Popen` means what it means there.

use std::ffi::CString;
use std::os::raw::{c_char, c_int, c_void};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::os_error;

/// Signal numbers are below this on Linux (the kernel's `_NSIG` + 1).
const NSIG: c_int = 65;

/// The child's stack: its frames are a few small functions.
const CHILD_STACK_SIZE: usize = 64 * 1024;

/// Which step of starting the child failed (reported to Python, which words
/// the exception as its version of `subprocess` does).
const FAILED_NOTHING: u8 = 0;
const FAILED_EXEC: u8 = 1;
const FAILED_CHDIR: u8 = 2;
const FAILED_BEFORE_EXEC: u8 = 3;

/// Everything the child needs, prepared by the parent, and the slot where
/// the child reports a failure.
struct ChildPlan {
    executables: Vec<CString>,
    argv: Vec<*const c_char>,
    envp: Option<Vec<*const c_char>>,
    cwd: Option<CString>,
    /// p2cread, p2cwrite, c2pread, c2pwrite, errread, errwrite (-1: none).
    stdio: [c_int; 6],
    /// Sorted; made inheritable, and spared by `close_fds`.
    fds_to_keep: Vec<c_int>,
    close_fds: bool,
    restore_signals: bool,
    start_new_session: bool,
    process_group: c_int,
    gid: Option<libc::gid_t>,
    gids: Option<Vec<libc::gid_t>>,
    uid: Option<libc::uid_t>,
    umask: c_int,
    /// Highest descriptor to close when `close_range` is missing.
    max_fd: c_int,
    /// The parent's signal mask, restored in the child before it execs.
    signal_mask: libc::sigset_t,
    failed_errno: c_int,
    failed_step: u8,
}

fn c_string(bytes: Vec<u8>) -> PyResult<CString> {
    CString::new(bytes).map_err(|_| PyValueError::new_err("embedded null byte"))
}

/// A `str`, `bytes` or path-like object as the bytes `_posixsubprocess`
/// would pass to the kernel (`PyUnicode_FSConverter`: the file system
/// encoding, its TypeError and "embedded null byte" ValueError).
fn fs_path(obj: &Bound<'_, PyAny>) -> PyResult<CString> {
    let py = obj.py();
    let mut converted: *mut pyo3::ffi::PyObject = std::ptr::null_mut();
    // SAFETY: attached (`py`); on success PyUnicode_FSConverter stores a new
    // reference to a bytes object in `converted`, which we own; on failure
    // it returns 0 with an exception set.
    let bytes = unsafe {
        if pyo3::ffi::PyUnicode_FSConverter(
            obj.as_ptr(),
            (&mut converted as *mut *mut pyo3::ffi::PyObject).cast(),
        ) == 0
        {
            return Err(PyErr::fetch(py));
        }
        Bound::from_owned_ptr(py, converted).cast_into_unchecked::<pyo3::types::PyBytes>()
    };
    c_string(bytes.as_bytes().to_vec())
}

/// The paths to try for `executable`, as `Popen` lists them for
/// `_posixsubprocess`: itself if it names a directory, otherwise itself
/// joined to each directory of the search path (`os.path.join`'s rule).
fn candidate_paths(executable: &[u8], search_path: Option<Vec<CString>>) -> PyResult<Vec<CString>> {
    let Some(directories) = search_path.filter(|_| !executable.contains(&b'/')) else {
        return Ok(vec![c_string(executable.to_vec())?]);
    };
    directories
        .into_iter()
        .map(|dir| {
            let mut path = dir.into_bytes();
            if !path.is_empty() && !path.ends_with(b"/") {
                path.push(b'/');
            }
            path.extend_from_slice(executable);
            c_string(path)
        })
        .collect()
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}

/// A stack for the child, with a guard page below it; unmapped on drop.
struct ChildStack {
    base: *mut c_void,
    size: usize,
}

impl ChildStack {
    fn new() -> std::io::Result<ChildStack> {
        // SAFETY: sysconf only reads a configuration value.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as usize;
        let size = CHILD_STACK_SIZE + page;
        // SAFETY: an anonymous private mapping of `size` bytes that nothing
        // else refers to; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let stack = ChildStack { base, size };
        // SAFETY: the lowest page lies inside the mapping just made; making
        // it inaccessible turns a stack overflow into a fault, not a write
        // into the parent's memory.
        if unsafe { libc::mprotect(base, page, libc::PROT_NONE) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(stack)
    }

    /// The top of the stack (stacks grow down), 16-byte aligned.
    fn top(&self) -> *mut c_void {
        // SAFETY: one past the end of the mapping, which is where a
        // downward-growing stack starts; never dereferenced as such.
        unsafe { self.base.cast::<u8>().add(self.size).cast() }
    }
}

impl Drop for ChildStack {
    fn drop(&mut self) {
        // SAFETY: the mapping was made by `new` with this size; it is dropped
        // with its thread, whose children have all exec'd or exited
        // (CLONE_VFORK), so nothing runs on it any more.
        unsafe { libc::munmap(self.base, self.size) };
    }
}

fn errno() -> c_int {
    // SAFETY: __errno_location returns the calling thread's errno slot,
    // always valid.
    unsafe { *libc::__errno_location() }
}

/// Clears close-on-exec on `fd`.
///
/// # Safety
/// Only system calls on integers; safe in the vfork child.
unsafe fn set_inheritable(fd: c_int) -> bool {
    // SAFETY: fcntl on an integer descriptor; a bad one gives EBADF.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        flags >= 0
            && (flags & libc::FD_CLOEXEC == 0
                || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) == 0)
    }
}

/// Closes every descriptor from 3 up that is not in `keep` (sorted).
///
/// # Safety
/// Only system calls on integers; safe in the vfork child.
unsafe fn close_open_fds(keep: &[c_int], max_fd: c_int) {
    let mut first: c_int = 3;
    for &kept in keep {
        if kept < first {
            continue;
        }
        // SAFETY: passed on from this function's contract.
        unsafe { close_fd_range(first, kept - 1, max_fd) };
        first = kept + 1;
    }
    // SAFETY: as above.
    unsafe { close_fd_range(first, c_int::MAX, max_fd) };
}

/// # Safety
/// Only system calls on integers; safe in the vfork child.
unsafe fn close_fd_range(first: c_int, last: c_int, max_fd: c_int) {
    if first > last {
        return;
    }
    // SAFETY: close_range takes integers only; it fails with ENOSYS on
    // kernels before 5.9, where the range is closed one by one.
    let closed = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            last as libc::c_uint,
            0,
        )
    } == 0;
    if !closed {
        for fd in first..=last.min(max_fd) {
            // SAFETY: closing a descriptor number; EBADF if it is unused.
            unsafe { libc::close(fd) };
        }
    }
}

/// Resets every caught signal to its default action (the parent's handlers
/// are not the child's business), except those that stay blocked across the
/// exec, whose disposition the kernel resets anyway.
///
/// # Safety
/// Only system calls; safe in the vfork child, whose signal table is a copy
/// of the parent's (no CLONE_SIGHAND).
unsafe fn reset_signal_handlers(mask: &libc::sigset_t) {
    for sig in 1..NSIG {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: all pointers are to live locals; sigaction refuses (EINVAL)
        // the signals the C library keeps for itself, which we skip.
        unsafe {
            if libc::sigismember(mask, sig) == 1 {
                continue;
            }
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut current) != 0 {
                continue;
            }
            if current.sa_sigaction == libc::SIG_IGN || current.sa_sigaction == libc::SIG_DFL {
                continue;
            }
            let mut default: libc::sigaction = std::mem::zeroed();
            default.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(sig, &default, std::ptr::null_mut());
        }
    }
}

/// The child's steps, in `_posixsubprocess`'s order. Returns only on
/// failure, with the errno and the step.
///
/// # Safety
/// Runs in the vfork child: `plan` is the parent's, shared, and read only
/// (the result is written by the caller).
unsafe fn run_child(plan: &ChildPlan) -> (c_int, u8) {
    // SAFETY: every call below is a system call on integers or on pointers
    // into `plan`, which the parent keeps alive and unchanged while it is
    // suspended; nothing allocates or takes a lock.
    unsafe {
        reset_signal_handlers(&plan.signal_mask);
        libc::sigprocmask(libc::SIG_SETMASK, &plan.signal_mask, std::ptr::null_mut());

        for &fd in &plan.fds_to_keep {
            if !set_inheritable(fd) {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        let [p2cread, p2cwrite, c2pread, mut c2pwrite, errread, mut errwrite] = plan.stdio;
        for fd in [p2cwrite, c2pread, errread] {
            if fd != -1 {
                libc::close(fd);
            }
        }
        // Keep the child's ends from being overwritten by the dup2s below
        // (the copies are close-on-exec: only their dup2 targets survive).
        if c2pwrite == 0 {
            c2pwrite = libc::fcntl(c2pwrite, libc::F_DUPFD_CLOEXEC, 0);
            if c2pwrite < 0 {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        while errwrite == 0 || errwrite == 1 {
            errwrite = libc::fcntl(errwrite, libc::F_DUPFD_CLOEXEC, 0);
            if errwrite < 0 {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        for (fd, target) in [(p2cread, 0), (c2pwrite, 1), (errwrite, 2)] {
            if fd == target {
                if !set_inheritable(fd) {
                    return (errno(), FAILED_BEFORE_EXEC);
                }
            } else if fd != -1 && libc::dup2(fd, target) < 0 {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        if let Some(cwd) = &plan.cwd {
            if libc::chdir(cwd.as_ptr()) != 0 {
                return (errno(), FAILED_CHDIR);
            }
        }
        if plan.umask >= 0 {
            libc::umask(plan.umask as libc::mode_t);
        }
        if plan.restore_signals {
            // What the interpreter ignores at start-up (`_Py_RestoreSignals`).
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
        }
        if plan.start_new_session && libc::setsid() < 0 {
            return (errno(), FAILED_BEFORE_EXEC);
        }
        if plan.process_group >= 0 && libc::setpgid(0, plan.process_group) < 0 {
            return (errno(), FAILED_BEFORE_EXEC);
        }
        if let Some(gids) = &plan.gids {
            if libc::syscall(libc::SYS_setgroups, gids.len(), gids.as_ptr()) < 0 {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        if let Some(gid) = plan.gid {
            if libc::syscall(libc::SYS_setregid, gid, gid) < 0 {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        if let Some(uid) = plan.uid {
            if libc::syscall(libc::SYS_setreuid, uid, uid) < 0 {
                return (errno(), FAILED_BEFORE_EXEC);
            }
        }
        if plan.close_fds {
            close_open_fds(&plan.fds_to_keep, plan.max_fd);
        }
        // The first error that is not "no such file here" is the one to
        // report (as os.execvpe and _posixsubprocess do).
        let mut reported = 0;
        for executable in &plan.executables {
            match &plan.envp {
                Some(envp) => libc::execve(executable.as_ptr(), plan.argv.as_ptr(), envp.as_ptr()),
                None => libc::execv(executable.as_ptr(), plan.argv.as_ptr()),
            };
            let err = errno();
            if err != libc::ENOENT && err != libc::ENOTDIR && reported == 0 {
                reported = err;
            }
        }
        (if reported != 0 { reported } else { errno() }, FAILED_EXEC)
    }
}

extern "C" fn child_main(plan: *mut c_void) -> c_int {
    // SAFETY: `plan` is the `ChildPlan` the parent passed to clone; it is
    // alive (the parent is suspended until we exec or exit) and only this
    // child writes the result fields, which the parent reads after resuming.
    unsafe {
        let plan = plan.cast::<ChildPlan>();
        let (err, step) = run_child(&*plan);
        std::ptr::write_volatile(&mut (*plan).failed_errno, err);
        std::ptr::write_volatile(&mut (*plan).failed_step, step);
        libc::_exit(255)
    }
}

/// The plan, handed to the thread-detached clone (the parent is suspended
/// while the child execs: other Python threads may run meanwhile).
struct SendablePlan<'a>(&'a mut ChildPlan);

// SAFETY: the plan's raw pointers point into CStrings the plan owns (or the
// caller keeps alive), and only the one thread that holds this wrapper (and
// the child it suspends itself for) touches them.
unsafe impl Send for SendablePlan<'_> {}

impl SendablePlan<'_> {
    fn get(&mut self) -> &mut ChildPlan {
        self.0
    }
}

/// What `spawn` did: the child's pid, its pidfd (-1 without one), and, if
/// starting it failed, the errno and the step (the child then exits 255 and
/// still has to be reaped).
type Spawned = (i32, i32, i32, u8);

/// Starts the child; see the module docs. Only the pidfd request falls back
/// (a kernel before 5.2 refuses CLONE_PIDFD with EINVAL).
fn clone_child(plan: &mut ChildPlan, want_pidfd: bool) -> std::io::Result<(i32, i32)> {
    thread_local! {
        /// One stack per thread, kept: a thread is suspended while its
        /// child uses the stack, and mapping a fresh one per child costs
        /// more than the rest of the parent's work.
        static STACK: std::cell::RefCell<Option<ChildStack>> = const { std::cell::RefCell::new(None) };
    }
    STACK.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(ChildStack::new()?);
        }
        let stack = slot.as_ref().expect("just made");
        clone_on(stack, plan, want_pidfd)
    })
}

fn clone_on(
    stack: &ChildStack,
    plan: &mut ChildPlan,
    want_pidfd: bool,
) -> std::io::Result<(i32, i32)> {
    let mut pidfd: c_int = -1;
    let mut flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    if want_pidfd {
        flags |= libc::CLONE_PIDFD;
    }
    // SAFETY: the signal sets are live locals; blocking every signal keeps
    // the parent's handlers from running in the child, which shares its
    // memory; the mask is restored right after the clone.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above: live local sets, the calling thread's own mask.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut plan.signal_mask);
    }
    // SAFETY: `child_main` only reads `plan` and writes its result fields;
    // the stack is ours and outlives the child's use of it (CLONE_VFORK
    // returns once the child has exec'd or exited); `pidfd` is where the
    // kernel writes the pidfd (the parent_tid argument, with CLONE_PIDFD).
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            flags,
            (plan as *mut ChildPlan).cast(),
            &mut pidfd as *mut c_int,
        )
    };
    let clone_error = std::io::Error::last_os_error();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &plan.signal_mask, std::ptr::null_mut()) };
    if pid < 0 {
        if want_pidfd && clone_error.raw_os_error() == Some(libc::EINVAL) {
            return clone_on(stack, plan, false);
        }
        return Err(clone_error);
    }
    Ok((pid, if want_pidfd { pidfd } else { -1 }))
}

/// `spawn(executable, search_path, argv, env, cwd, stdio, fds_to_keep,
/// close_fds, restore_signals, start_new_session, process_group, gid, gids,
/// uid, umask, want_pidfd)`, with the arguments `Popen._execute_child`
/// prepares for `_posixsubprocess.fork_exec` (`search_path`: the
/// directories of `os.get_exec_path(env)`, tried in turn when `executable`
/// names none; bytes environment entries; `-1` for "not set"). Returns
/// `(pid, pidfd, failed_errno, failed_step)`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn spawn(
    py: Python<'_>,
    executable: Bound<'_, PyAny>,
    search_path: Option<Vec<Bound<'_, PyAny>>>,
    argv: Vec<Bound<'_, PyAny>>,
    env: Option<Vec<Vec<u8>>>,
    cwd: Option<Bound<'_, PyAny>>,
    stdio: [c_int; 6],
    fds_to_keep: Vec<c_int>,
    close_fds: bool,
    restore_signals: bool,
    start_new_session: bool,
    process_group: c_int,
    gid: Option<libc::gid_t>,
    gids: Option<Vec<libc::gid_t>>,
    uid: Option<libc::uid_t>,
    umask: c_int,
    want_pidfd: bool,
) -> PyResult<Spawned> {
    let argv: Vec<CString> = argv.iter().map(fs_path).collect::<PyResult<_>>()?;
    let search_path = search_path
        .map(|dirs| dirs.iter().map(fs_path).collect::<PyResult<Vec<_>>>())
        .transpose()?;
    let executables = candidate_paths(fs_path(&executable)?.as_bytes(), search_path)?;
    let env: Option<Vec<CString>> = env
        .map(|env| env.into_iter().map(c_string).collect::<PyResult<_>>())
        .transpose()?;
    let mut fds_to_keep = fds_to_keep;
    fds_to_keep.sort_unstable();
    // SAFETY: sysconf only reads a configuration value.
    let max_fd = unsafe { libc::sysconf(libc::_SC_OPEN_MAX) };
    let mut plan = ChildPlan {
        executables,
        argv: null_terminated(&argv),
        envp: env.as_deref().map(null_terminated),
        cwd: cwd.as_ref().map(fs_path).transpose()?,
        stdio,
        fds_to_keep,
        close_fds,
        restore_signals,
        start_new_session,
        process_group,
        gid,
        gids,
        uid,
        umask,
        max_fd: if max_fd > 0 {
            max_fd.min(c_int::MAX as libc::c_long) as c_int
        } else {
            256
        },
        // SAFETY: a zeroed sigset_t is a valid (empty) set, filled in by
        // pthread_sigmask before use.
        signal_mask: unsafe { std::mem::zeroed() },
        failed_errno: 0,
        failed_step: FAILED_NOTHING,
    };
    let sendable = SendablePlan(&mut plan);
    let (pid, pidfd) = py
        .detach(move || {
            let mut sendable = sendable;
            clone_child(sendable.get(), want_pidfd)
        })
        .map_err(os_error)?;
    // SAFETY: the child has exec'd or exited (CLONE_VFORK), so its writes to
    // the result fields are complete; read them as the volatile writes they
    // were.
    let (failed_errno, failed_step) = unsafe {
        (
            std::ptr::read_volatile(&plan.failed_errno),
            std::ptr::read_volatile(&plan.failed_step),
        )
    };
    drop((argv, env));
    Ok((pid, pidfd, failed_errno, failed_step))
}

/// `reap(pid, pidfd)`: the child's exit status if it has ended
/// (`waitid` with `WNOHANG`; by pidfd when there is one), as
/// `os.waitstatus_to_exitcode` gives it (negative: killed by that signal);
/// `None` while it runs. ChildProcessError if someone else reaped it.
#[pyfunction]
pub fn reap(pid: i32, pidfd: i32) -> PyResult<Option<i32>> {
    // SAFETY: a zeroed siginfo_t is the documented way to tell "no child
    // changed state" (si_pid stays 0) under WNOHANG; waitid fills it in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let (idtype, id) = if pidfd >= 0 {
        (libc::P_PIDFD, pidfd as libc::id_t)
    } else {
        (libc::P_PID, pid as libc::id_t)
    };
    loop {
        // SAFETY: `info` is a live local the kernel writes into.
        let ret = unsafe { libc::waitid(idtype, id, &mut info, libc::WEXITED | libc::WNOHANG) };
        if ret == 0 {
            break;
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(os_error(err));
        }
    }
    // SAFETY: waitid succeeded, so `info` holds either nothing (si_pid 0) or
    // a child's exit, whose si_status field the accessor reads.
    unsafe {
        if info.si_pid() == 0 {
            return Ok(None);
        }
        let status = info.si_status();
        Ok(Some(match info.si_code {
            libc::CLD_EXITED => status,
            _ => -status,
        }))
    }
}
