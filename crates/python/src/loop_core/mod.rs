//! `LoopCore`: the native base of `ferroloop.Loop`, holding the engine and
//! implementing the scheduling methods the C `Future` and `Task` call for
//! every step (`call_soon`, `get_debug`) and the rest of the hot surface
//! (`call_later`, `call_at`, `call_soon_threadsafe`, `time`).
//!
//! The Python class `ferroloop.Loop` derives from this and from
//! `asyncio.AbstractEventLoop`; the cold methods (run_until_complete,
//! executors, exception handling, async generators) are written in Python
//! there, on top of the native ones here. The iteration itself is in
//! [`crate::loop_core::run`], descriptor watching in [`crate::loop_core::io_watch`].
//!
//! Flags that every call reads (closed, debug, running thread) are atomics
//! next to the engine rather than inside it, so checking them needs no borrow.
//!
//! Fork: a child made by `fork()` inherits a copy of the loop but shares its
//! epoll instance with the parent (one kernel object). A child that waited on
//! it would take events meant for the parent (edge-triggered: the parent would
//! never see them), and one that deregistered descriptors would deregister the
//! parent's. So the loop remembers which process made it: in a forked child,
//! running it or watching descriptors with it raises `RuntimeError`, and
//! closing it (or its transports) forgets the registrations without touching
//! the epoll set.

pub mod io_watch;
pub mod observe;
pub mod run;
pub mod scheduling;
pub mod tasks;

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ferroloop_engine::{
    clock, CancelledCount, IoRegistry, Poller, ReadyQueue, Timer, TimerHeap, Waker,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::gc::PyVisit;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use pyo3::{ffi, PyTraverseError};

use crate::errors::os_error;
use crate::ffi::gil_cell::GilCell;
use crate::handles::{HandleContext, HandleRef, TimerSpec};
use crate::io::{Ready, Watcher};
use crate::loop_core::observe::{Instrument, Observation};
use crate::python_helpers;

/// A timer handle in the heap.
pub struct ScheduledTimer(pub HandleRef);

impl Timer for ScheduledTimer {
    fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// What the loop holds, borrowed briefly and never across Python code.
pub struct LoopState {
    pub ready: ReadyQueue<Ready>,
    pub timers: TimerHeap<ScheduledTimer>,
    /// `None` once the loop is closed: the epoll registrations are gone.
    pub io: Option<IoRegistry<Watcher>>,
    /// One receive buffer for all transports: only one read runs at a time,
    /// and the data is copied out into an exact-size `bytes` anyway.
    pub recv_buffer: Vec<u8>,
    /// Descriptors whose last `sock_recv` was large: the next one asks the
    /// kernel how much is waiting and receives straight into a `bytes` of
    /// that size, saving the copy out of `recv_buffer`.
    pub large_sock_readers: ferroloop_engine::IntSet<RawFd>,
    pub waker: Option<Arc<Waker>>,
    /// The handle running now, kept in debug mode for the exception handler.
    pub current_handle: Option<Py<PyAny>>,
    /// Called before and after each callback, when set.
    pub observer: Option<(Py<PyAny>, Py<PyAny>)>,
    /// `set_task_factory()`'s factory.
    pub task_factory: Option<Py<PyAny>>,
    /// What `set_debug()` was given when it was not a bool: asyncio stores
    /// any value and `get_debug()` returns it as given.
    pub debug_value: Option<Py<PyAny>>,
    /// The last code object checked for being a coroutine function, and the
    /// answer: a loop schedules the same few functions over and over.
    coroutine_check_cache: Option<(Py<PyAny>, bool)>,
    /// The keyword dicts futures and tasks are made with (see
    /// `tasks::call_with_kept_keywords`).
    pub kept_keywords: KeptKeywords,
}

/// The keywords asyncio passes to `Future` and (without a name or a
/// context) to `Task`, made once: `None` until first used and while a call
/// has them.
#[derive(Default)]
pub struct KeptKeywords {
    /// `{"loop": loop}`.
    pub future: Option<Py<PyDict>>,
    /// `{"loop": loop, "name": None, "context": None}`.
    pub task: Option<Py<PyDict>>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "LoopCore", subclass, frozen)]
pub struct LoopCore {
    pub(crate) state: GilCell<LoopState>,
    /// The epoll wait; `None` once closed. Borrowed (without the GIL) only by
    /// the loop's own thread while it waits.
    pub(crate) poller: GilCell<Option<Poller>>,
    pub(crate) cancelled_timers: CancelledCount,
    closed: AtomicBool,
    debug: AtomicBool,
    pub(crate) stopping: AtomicBool,
    /// `threading.get_ident()` of the thread running the loop, 0 if none.
    thread_id: AtomicU64,
    pub(crate) observed: AtomicBool,
    /// The blocking detector, task steps and the loop's counters.
    pub(crate) observation: Observation,
    /// `time` is overridden (by a subclass, or on the instance, as test
    /// tools that fake the clock do): the loop's own reads of the clock call
    /// it, as asyncio's do.
    time_overridden: AtomicBool,
    /// [`FORKS`] when the loop was made, and the process that made it.
    forks_at_creation: u64,
    creator_pid: u32,
}

/// Forks this process descends through: incremented in every child `fork()`
/// makes (the `pthread_atfork` child handler), so a loop made before a fork
/// sees a different count in the child.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    // An atomic add is async-signal-safe, as a fork handler must be.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Installs the fork counter once per process (children inherit it).
fn count_forks() -> std::io::Result<()> {
    static INSTALLED: OnceLock<i32> = OnceLock::new();
    // SAFETY: pthread_atfork stores a function pointer to a `'static`
    // function that only increments an atomic.
    let status = *INSTALLED
        .get_or_init(|| unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) });
    match status {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

pub fn current_thread_ident() -> u64 {
    // SAFETY: PyThread_get_thread_ident only reads the calling thread's id.
    unsafe { ffi::PyThread_get_thread_ident() as u64 }
}

fn closed_error() -> PyErr {
    PyRuntimeError::new_err("Event loop is closed")
}

impl LoopCore {
    /// The loop's time: `time.monotonic()`, unless `time` is overridden.
    #[inline]
    pub(crate) fn time(&self, slf: &Bound<'_, LoopCore>) -> PyResult<f64> {
        if self.time_overridden.load(Ordering::Relaxed) {
            return slf.call_method0(pyo3::intern!(slf.py(), "time"))?.extract();
        }
        Ok(clock::monotonic())
    }

    pub fn debug(&self, _py: Python<'_>) -> PyResult<bool> {
        Ok(self.debug.load(Ordering::Relaxed))
    }

    pub(crate) fn is_debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    pub(crate) fn check_closed(&self) -> PyResult<()> {
        if self.closed.load(Ordering::Relaxed) {
            Err(closed_error())
        } else {
            Ok(())
        }
    }

    /// Whether this process is a `fork()` child of the one that made the loop.
    pub(crate) fn in_forked_child(&self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.forks_at_creation
    }

    /// Refuses what would touch the epoll instance a forked child shares
    /// with its parent.
    pub(crate) fn check_process(&self) -> PyResult<()> {
        if self.in_forked_child() {
            return Err(PyRuntimeError::new_err(format!(
                "this event loop belongs to process {}, not to this child forked from it; \
                 create a new event loop in the child",
                self.creator_pid
            )));
        }
        Ok(())
    }

    /// In a forked child: drops the inherited watchers without `epoll_ctl`
    /// (the registrations are the parent's), so that closing the loop or a
    /// transport in the child leaves the parent's loop intact.
    fn forget_inherited_registrations(&self, py: Python<'_>) -> PyResult<()> {
        let forgotten = self
            .state
            .borrow_mut(py)?
            .io
            .take()
            .map(|mut io| io.forget_all());
        if let Some(watchers) = &forgotten {
            release_handles(py, &[], &[], watchers);
        }
        drop(forgotten);
        Ok(())
    }

    pub(crate) fn set_thread(&self, ident: u64) {
        self.thread_id.store(ident, Ordering::Relaxed);
    }

    /// The thread running the loop, if it runs.
    pub(crate) fn running_thread(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            ident => Some(ident),
        }
    }

    /// asyncio's debug-mode `_check_thread`.
    fn check_thread(&self) -> PyResult<()> {
        let owner = self.thread_id.load(Ordering::Relaxed);
        if owner != 0 && owner != current_thread_ident() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Rejects what can never be a callback. Always on (it is cheap): a
    /// non-callable, a coroutine object, a plain coroutine function. Debug mode
    /// adds asyncio's full check (wrapped coroutine functions too).
    fn check_callback(&self, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        let py = callback.py();
        if self.is_debug() {
            return python_helpers::check_callback_fully(callback, method);
        }
        if !callback.is_callable() {
            // Always an error; the helper words it as asyncio does (a
            // coroutine object gets the coroutine message).
            return python_helpers::check_callback_fully(callback, method);
        }
        // SAFETY: PyFunction_Check only inspects the type of a live object.
        if unsafe { ffi::PyFunction_Check(callback.as_ptr()) } == 0 {
            return Ok(());
        }
        // SAFETY: `callback` is a function (checked above), for which
        // PyFunction_GetCode returns a borrowed, non-NULL code object that
        // lives as long as the function does.
        let code =
            unsafe { Bound::from_borrowed_ptr(py, ffi::PyFunction_GetCode(callback.as_ptr())) };
        let cached = {
            let st = self.state.borrow(py)?;
            st.coroutine_check_cache
                .as_ref()
                .filter(|(c, _)| c.is(&code))
                .map(|(_, is_coro)| *is_coro)
        };
        let is_coroutine = match cached {
            Some(answer) => answer,
            None => {
                let flags: i64 = code.getattr(pyo3::intern!(py, "co_flags"))?.extract()?;
                let answer = flags & i64::from(ffi::CO_COROUTINE) != 0;
                let previous = self
                    .state
                    .borrow_mut(py)?
                    .coroutine_check_cache
                    .replace((code.unbind(), answer));
                drop(previous);
                answer
            }
        };
        if is_coroutine {
            return Err(PyTypeError::new_err(format!(
                "coroutines cannot be used with {method}()"
            )));
        }
        Ok(())
    }

    /// Builds the handle for a `call_*` method after the checks asyncio makes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new_handle(
        slf: &Bound<'_, LoopCore>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        when: Option<f64>,
        method: &str,
        check_thread: bool,
        persistent: bool,
    ) -> PyResult<HandleRef> {
        let py = slf.py();
        let core = slf.get();
        core.check_closed()?;
        if check_thread && core.is_debug() {
            core.check_thread()?;
        }
        core.check_callback(callback, method)?;
        let context = HandleContext::given_or_copy(py, context)?;
        let debug = core.is_debug();
        let source_traceback = if debug {
            Some(python_helpers::extract_stack(py)?)
        } else {
            None
        };
        let timer = when.map(|when| TimerSpec {
            when,
            cancelled_in_heap: core.cancelled_timers.clone(),
        });
        HandleRef::new(
            py,
            callback,
            args,
            context,
            source_traceback,
            debug,
            persistent,
            timer,
        )
    }
}

/// Handles dropped by a closing loop let go of their callbacks (which may
/// refer back to them; handles are not tracked by the cycle collector).
fn release_handles(
    py: Python<'_>,
    ready: &[Ready],
    timers: &[ScheduledTimer],
    watchers: &[Watcher],
) {
    for timer in timers {
        timer.0.mark_unscheduled();
        timer.0.release(py);
    }
    for item in ready {
        if let Ready::Callback(handle) = item {
            handle.release(py);
        }
    }
    for watcher in watchers {
        if let Watcher::Callback { handle, .. } = watcher {
            handle.release(py);
        }
    }
}

/// Access to the engine for transports and socket operations.
impl LoopCore {
    pub(crate) fn push_ready(&self, py: Python<'_>, item: Ready) -> PyResult<()> {
        self.state.borrow_mut(py)?.ready.push(item);
        Ok(())
    }

    /// Watches `fd` for `direction`; returns the watcher replaced.
    pub(crate) fn watch_fd(
        &self,
        py: Python<'_>,
        fd: i32,
        direction: ferroloop_engine::Direction,
        watcher: Watcher,
    ) -> PyResult<Option<Watcher>> {
        self.check_process()?;
        let mut st = self.state.borrow_mut(py)?;
        let io = st.io.as_mut().ok_or_else(closed_error)?;
        io.insert(fd, direction, watcher).map_err(os_error)
    }

    pub(crate) fn unwatch_fd(
        &self,
        py: Python<'_>,
        fd: i32,
        direction: ferroloop_engine::Direction,
    ) -> PyResult<Option<Watcher>> {
        if self.in_forked_child() {
            self.forget_inherited_registrations(py)?;
        }
        Ok(self
            .state
            .borrow_mut(py)?
            .io
            .as_mut()
            .and_then(|io| io.remove(fd, direction)))
    }

    /// Registers a transport for both directions of its descriptor.
    pub(crate) fn watch_fd_both(
        &self,
        py: Python<'_>,
        fd: i32,
        reader: Watcher,
        writer: Watcher,
    ) -> PyResult<(Option<Watcher>, Option<Watcher>)> {
        self.check_process()?;
        let mut st = self.state.borrow_mut(py)?;
        let io = st.io.as_mut().ok_or_else(closed_error)?;
        io.insert_pair(fd, reader, writer).map_err(os_error)
    }

    /// Removes the registration of a transport's descriptor, if it is still
    /// that transport's (`owns` says whether a watcher is it): a descriptor
    /// closed behind a transport's back may have been reused, and registered
    /// by a newer transport, before the old one lets go.
    pub(crate) fn unwatch_fd_both(
        &self,
        py: Python<'_>,
        fd: i32,
        owns: impl Fn(&Watcher) -> bool,
    ) -> PyResult<(Option<Watcher>, Option<Watcher>)> {
        if self.in_forked_child() {
            self.forget_inherited_registrations(py)?;
        }
        let mut st = self.state.borrow_mut(py)?;
        let Some(io) = st.io.as_mut() else {
            return Ok((None, None));
        };
        if !io
            .get(fd, ferroloop_engine::Direction::Read)
            .is_some_and(owns)
        {
            return Ok((None, None));
        }
        Ok(io.remove_pair(fd))
    }

    /// The shared receive buffer (256 KiB, asyncio's read size); give it back
    /// with [`LoopCore::return_recv_buffer`].
    pub(crate) fn take_recv_buffer(&self, py: Python<'_>) -> PyResult<Vec<u8>> {
        let buf = std::mem::take(&mut self.state.borrow_mut(py)?.recv_buffer);
        Ok(if buf.is_empty() {
            vec![0; RECV_BUFFER_SIZE]
        } else {
            buf
        })
    }

    pub(crate) fn return_recv_buffer(&self, py: Python<'_>, buf: Vec<u8>) -> PyResult<()> {
        self.state.borrow_mut(py)?.recv_buffer = buf;
        Ok(())
    }
}

/// asyncio's `max_size` for one read from a socket.
pub const RECV_BUFFER_SIZE: usize = 256 * 1024;

#[pymethods]
impl LoopCore {
    #[new]
    #[pyo3(signature = (*_args, **_kwargs))]
    fn py_new(_args: &Bound<'_, PyTuple>, _kwargs: Option<&Bound<'_, PyDict>>) -> PyResult<Self> {
        count_forks().map_err(os_error)?;
        let poller = Poller::new().map_err(os_error)?;
        let registry = poller.registry().map_err(os_error)?;
        let waker = Waker::new(&registry).map_err(os_error)?;
        let timers = TimerHeap::new();
        let cancelled_timers = timers.cancelled_count().clone();
        Ok(LoopCore {
            state: GilCell::new(LoopState {
                ready: ReadyQueue::new(),
                timers,
                io: Some(IoRegistry::new(registry)),
                recv_buffer: Vec::new(),
                large_sock_readers: Default::default(),
                waker: Some(waker),
                current_handle: None,
                observer: None,
                task_factory: None,
                debug_value: None,
                coroutine_check_cache: None,
                kept_keywords: KeptKeywords::default(),
            }),
            poller: GilCell::new(Some(poller)),
            cancelled_timers,
            closed: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            observed: AtomicBool::new(false),
            observation: Observation::new(),
            time_overridden: AtomicBool::new(false),
            forks_at_creation: FORKS.load(Ordering::Relaxed),
            creator_pid: std::process::id(),
        })
    }

    /// `time.monotonic()`, the loop's clock.
    #[pyo3(name = "time")]
    fn py_time(&self) -> f64 {
        clock::monotonic()
    }

    /// Whether `time` is overridden; `BaseLoop` keeps it up to date.
    fn _set_time_overridden(&self, overridden: bool) {
        self.time_overridden.store(overridden, Ordering::Relaxed);
    }

    /// Queues an existing handle (asyncio's `_add_callback`); a cancelled
    /// one is dropped. Wakes the loop, so it is safe from other threads and
    /// from signal handlers.
    fn _add_callback(&self, handle: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = handle.py();
        let handle = HandleRef::from_object(handle)?;
        if handle.is_cancelled() {
            return Ok(());
        }
        let mut st = self.state.borrow_mut(py)?;
        st.ready.push(Ready::Callback(handle));
        if let Some(waker) = &st.waker {
            waker.wake().map_err(os_error)?;
        }
        Ok(())
    }

    /// Sets the flag (and keeps a value that is not a bool, for
    /// `get_debug()`); `Loop.set_debug` adds coroutine origin tracking.
    fn _set_debug_flag(&self, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = enabled.py();
        let flag = enabled.is_truthy()?;
        let value =
            (!enabled.is_instance_of::<pyo3::types::PyBool>()).then(|| enabled.clone().unbind());
        let previous = std::mem::replace(&mut self.state.borrow_mut(py)?.debug_value, value);
        self.debug.store(flag, Ordering::Relaxed);
        self.observation.set(Instrument::Debug, flag);
        drop(previous);
        Ok(())
    }

    fn is_running(&self) -> bool {
        self.thread_id.load(Ordering::Relaxed) != 0
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// `threading.get_ident()` of the running thread, or None.
    #[getter]
    fn _thread_id(&self) -> Option<u64> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => None,
            ident => Some(ident),
        }
    }

    /// The handle being run, in debug mode (asyncio's `_current_handle`).
    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        Ok(self
            .state
            .borrow(py)?
            .current_handle
            .as_ref()
            .map(|h| h.clone_ref(py)))
    }

    /// Callbacks queued to run.
    fn _ready_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.borrow(py)?.ready.len())
    }

    /// Timer handles in the heap, cancelled ones not yet purged included.
    fn _timer_count(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.state.borrow(py)?.timers.len())
    }

    /// Installs `begin(handle)` and `end(handle)`, called around every
    /// callback the loop runs; `None` removes them. The hook for tracers
    /// and blocking detectors: when unset it costs one flag test per callback.
    #[pyo3(signature = (begin, end))]
    fn _set_callback_observer(
        &self,
        py: Python<'_>,
        begin: Py<PyAny>,
        end: Py<PyAny>,
    ) -> PyResult<()> {
        let observer = if begin.is_none(py) && end.is_none(py) {
            None
        } else {
            Some((begin, end))
        };
        self.observed.store(observer.is_some(), Ordering::Relaxed);
        self.observation
            .set(Instrument::CallbackObserver, observer.is_some());
        let previous = std::mem::replace(&mut self.state.borrow_mut(py)?.observer, observer);
        drop(previous);
        Ok(())
    }

    /// Marks the loop closed and releases everything it holds: queued
    /// callbacks, timers, watched descriptors, the epoll and waker fds.
    /// `Loop.close` does the checks and the executor shutdown around it.
    fn _close_core(&self, py: Python<'_>) -> PyResult<()> {
        self.closed.store(true, Ordering::Relaxed);
        if self.in_forked_child() {
            self.forget_inherited_registrations(py)?;
        }
        let released = {
            let mut st = self.state.borrow_mut(py)?;
            let ready = st.ready.drain();
            let timers = st.timers.drain();
            let watchers = st.io.take().map(|mut io| io.drain());
            let waker = st.waker.take();
            // It refers to the loop: dropped here, a closed loop is freed
            // without waiting for the garbage collector.
            let kept_keywords = std::mem::take(&mut st.kept_keywords);
            (ready, timers, watchers, waker, kept_keywords)
        };
        let poller = self.poller.borrow_mut(py)?.take();
        let watchdog = self.observation.watchdog.borrow_mut(py)?.take();
        if let Some(watchdog) = watchdog {
            self.observation.set(Instrument::Detector, false);
            watchdog.stop(py);
        }
        release_handles(
            py,
            &released.0,
            &released.1,
            released.2.as_deref().unwrap_or(&[]),
        );
        drop((released, poller));
        Ok(())
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(st) = self.state.borrow_in_traverse(&visit) else {
            return Ok(());
        };
        for item in st.ready.iter() {
            item.traverse(&visit)?;
        }
        for timer in st.timers.iter() {
            visit.call(timer.0.object())?;
        }
        if let Some(io) = &st.io {
            for watcher in io.iter() {
                watcher.traverse(&visit)?;
            }
        }
        visit.call(&st.current_handle)?;
        visit.call(&st.task_factory)?;
        visit.call(&st.debug_value)?;
        visit.call(&st.kept_keywords.future)?;
        visit.call(&st.kept_keywords.task)?;
        if let Some((begin, end)) = &st.observer {
            visit.call(begin)?;
            visit.call(end)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let released = self.state.borrow_mut(py).ok().map(|mut st| {
                let ready = st.ready.drain();
                let timers = st.timers.drain();
                let forked = self.in_forked_child();
                let watchers =
                    st.io
                        .as_mut()
                        .map(|io| if forked { io.forget_all() } else { io.drain() });
                (
                    ready,
                    timers,
                    watchers,
                    st.current_handle.take(),
                    st.observer.take(),
                    st.task_factory.take(),
                    st.debug_value.take(),
                    std::mem::take(&mut st.kept_keywords),
                )
            });
            if let Some((ready, timers, watchers, ..)) = &released {
                release_handles(py, ready, timers, watchers.as_deref().unwrap_or(&[]));
            }
            drop(released);
        });
    }
}
