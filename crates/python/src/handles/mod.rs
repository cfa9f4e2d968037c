//! `Handle` and `TimerHandle`: what `call_soon`, `call_later` and `call_at`
//! return, and what the ready queue and timer heap hold.
//!
//! They behave as asyncio's classes of the same names (cancel, cancelled,
//! when, get_context, the repr, ordering of timer handles, the constructor)
//! but cost as little as a Python object can: a program creates one per
//! callback. So they are written against the C API rather than as PyO3
//! classes: a plain (not garbage-collected) object, allocated from a free
//! list guarded by the GIL, with no per-call wrapper layers.
//!
//! Not being tracked by the cycle collector is safe because a handle lets go
//! of its callback and arguments as soon as it leaves the loop (it ran, was
//! cancelled, or was dropped by a closing loop), so no cycle through a handle
//! outlives its stay in the loop; and a handle made by the loop does not refer
//! to the loop, so pending handles never keep an abandoned loop alive.
//! Handles that run repeatedly (readers, writers, signal handlers) keep their
//! callback until cancelled.
//!
//! A handle runs its callback inside its `contextvars.Context`, entered and
//! left through the C API rather than through `Context.run`, which would add
//! a call and an argument tuple per callback.

use std::cell::UnsafeCell;
use std::ffi::CStr;
use std::os::raw::{c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::time::{Duration, Instant};

use ferroloop_engine::CancelledCount;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyTuple, PyType};

use crate::python_helpers;

/// The layout of a handle object. Fields are read and written only while
/// attached to the interpreter (the GIL serialises every access), and no
/// Rust reference into an object is kept across a call into Python.
#[repr(C)]
struct HandleObject {
    ob_base: ffi::PyObject,
    weakrefs: *mut ffi::PyObject,
    /// Owned references, or NULL once released.
    callback: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    /// Owned, or NULL for an empty context not made yet (see
    /// [`HandleContext::Empty`]; [`settle_context`] makes it).
    context: *mut ffi::PyObject,
    /// Owned or NULL: the stack where the handle was made (debug mode).
    source_traceback: *mut ffi::PyObject,
    /// Owned or NULL: the loop, for handles built by Python code.
    loop_: *mut ffi::PyObject,
    /// Owned or NULL: the repr kept when cancelled in debug mode.
    repr: *mut ffi::PyObject,
    /// Timers only: the heap's count of cancelled entries.
    cancelled_in_heap: Option<CancelledCount>,
    when: f64,
    /// When it was queued (ns, CLOCK_MONOTONIC), stamped only while task
    /// steps are recorded; 0 otherwise.
    queued_ns: i64,
    cancelled: bool,
    /// Runs more than once: keeps its callback after running.
    persistent: bool,
    /// The loop's debug flag when made (for the repr).
    debug: bool,
    /// A timer still in the heap.
    scheduled: bool,
    is_timer: bool,
    /// The context is the handle's own copy, taken out of the cycle
    /// collector's lists while the handle waits (see `HandleRef::new`).
    context_untracked: bool,
}

/// How running a handle ended.
pub enum RunOutcome {
    Done,
    /// The callback raised; the exception is for the loop's exception
    /// handler. The handle still holds its callback for the report; call
    /// [`HandleRef::release`] after reporting.
    Raised(PyErr),
}

/// A new handle's timer part: its deadline and the heap's cancellation count.
pub struct TimerSpec {
    pub when: f64,
    pub cancelled_in_heap: CancelledCount,
}

/// The context a new handle's callback is to run in.
pub enum HandleContext {
    /// Given by the caller (`context=`): others may hold it too.
    Given(Py<PyAny>),
    /// A copy of the caller's context that nobody else holds.
    Copied(Py<PyAny>),
    /// The caller's context was empty: the handle gets an empty context
    /// when something needs it (the callback runs: the spare one, see
    /// [`SpareContext`]; `get_context()`: a new one). A copy taken now would
    /// wait in the queue with the handle; a thread feeding the loop queues
    /// tens of thousands at a time, and their contexts then come from fresh
    /// memory and go back cold. Threads start with an empty context, so
    /// this is the usual case of `call_soon_threadsafe`.
    Empty,
}

impl HandleContext {
    /// What asyncio's `Handle` does without `context=`:
    /// `contextvars.copy_context()`.
    pub fn copy_current(py: Python<'_>) -> PyResult<HandleContext> {
        // A `Bound`, whose drop releases the copy at once: an entry point
        // called from a thread PyO3 does not count as attached would defer a
        // `Py`'s release to PyO3's pool (see `crate::ffi::trampoline`).
        let copy = crate::context::copy_current(py)?.into_bound(py);
        // SAFETY: `copy` is a live, exact Context (PyContext_CopyCurrent
        // made it); the GIL is held (`py`).
        if unsafe { context_is_empty(copy.as_ptr()) } {
            Ok(HandleContext::Empty)
        } else {
            Ok(HandleContext::Copied(copy.unbind()))
        }
    }

    /// `context=` as given (`None`: not given).
    pub fn given_or_copy(
        py: Python<'_>,
        given: Option<Bound<'_, PyAny>>,
    ) -> PyResult<HandleContext> {
        match given {
            Some(context) if !context.is_none() => Ok(HandleContext::Given(context.unbind())),
            _ => HandleContext::copy_current(py),
        }
    }
}

/// An owned reference to a `Handle` (or `TimerHandle`).
pub struct HandleRef(Py<PyAny>);

impl HandleRef {
    fn raw(&self) -> *mut HandleObject {
        self.0.as_ptr().cast()
    }

    /// Accepts a Python object if it is one of our handles.
    pub fn from_object(obj: &Bound<'_, PyAny>) -> PyResult<HandleRef> {
        let py = obj.py();
        if !obj.is_instance(handle_type(py)?.as_any())? {
            return Err(PyTypeError::new_err("a ferroloop Handle was expected"));
        }
        Ok(HandleRef(obj.clone().unbind()))
    }

    pub fn clone_ref(&self, py: Python<'_>) -> HandleRef {
        HandleRef(self.0.clone_ref(py))
    }

    pub fn object(&self) -> &Py<PyAny> {
        &self.0
    }

    pub fn into_object(self) -> Py<PyAny> {
        self.0
    }

    /// Creates a handle. `timer` makes it a `TimerHandle`.
    ///
    /// A context copied for the handle ([`HandleContext::Copied`]: `call_soon(cb)`
    /// without `context=`) is taken off the
    /// cycle collector's lists while the handle waits in the queue: it cannot
    /// be part of a cycle that outlives the handle, and thousands of queued
    /// callbacks otherwise make every collection traverse thousands of
    /// contexts. It is put back before anything else can see it (the
    /// callback runs in it, `get_context()`) and before the handle lets go
    /// of it, as the context's own deallocator expects a tracked object.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        py: Python<'_>,
        callback: &Bound<'_, PyAny>,
        args: &Bound<'_, PyTuple>,
        context: HandleContext,
        source_traceback: Option<Py<PyAny>>,
        debug: bool,
        persistent: bool,
        timer: Option<TimerSpec>,
    ) -> PyResult<HandleRef> {
        let ty = if timer.is_some() {
            &TIMER_HANDLE_TYPE_PTR
        } else {
            &HANDLE_TYPE_PTR
        };
        let obj = alloc(py, ty.load(Ordering::Relaxed).cast())?;
        // SAFETY: `obj` is a freshly allocated, zero-initialised object of
        // our layout; we own the new references we store.
        unsafe {
            let h = obj.cast::<HandleObject>();
            (*h).callback = callback.clone().into_ptr();
            (*h).args = args.clone().into_any().into_ptr();
            match context {
                HandleContext::Given(context) => (*h).context = context.into_ptr(),
                HandleContext::Copied(context) => {
                    (*h).context = context.into_ptr();
                    if ffi::PyObject_GC_IsTracked((*h).context) != 0 {
                        ffi::PyObject_GC_UnTrack((*h).context.cast());
                        (*h).context_untracked = true;
                    }
                }
                HandleContext::Empty => {}
            }
            (*h).source_traceback = source_traceback.map_or(ptr::null_mut(), |t| t.into_ptr());
            (*h).debug = debug;
            (*h).persistent = persistent;
            if let Some(timer) = timer {
                ptr::write(&mut (*h).cancelled_in_heap, Some(timer.cancelled_in_heap));
                (*h).when = timer.when;
                (*h).scheduled = true;
                (*h).is_timer = true;
            }
            Ok(HandleRef(Bound::from_owned_ptr(py, obj).unbind()))
        }
    }

    #[inline]
    pub fn is_cancelled(&self) -> bool {
        // SAFETY: reading a flag of a live handle; callers hold the GIL.
        unsafe { (*self.raw()).cancelled }
    }

    /// The callback, while the handle holds it.
    pub fn callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        // SAFETY: the GIL is held (`py`); the handle is alive; the field is
        // an owned reference or NULL.
        unsafe {
            let callback = (*self.raw()).callback;
            Bound::from_borrowed_ptr_or_opt(py, callback).map(Bound::unbind)
        }
    }

    /// When the handle was queued, if stamped (see `queued_ns`).
    #[inline]
    pub fn queued_ns(&self) -> i64 {
        // SAFETY: reading a field of a live handle; callers hold the GIL.
        unsafe { (*self.raw()).queued_ns }
    }

    #[inline]
    pub fn set_queued_ns(&self, ns: i64) {
        // SAFETY: writing a field of a live handle; callers hold the GIL.
        unsafe { (*self.raw()).queued_ns = ns };
    }

    /// Called when the heap lets go of a timer handle (fired or discarded).
    pub fn mark_unscheduled(&self) {
        // SAFETY: writing a flag of a live handle; callers hold the GIL.
        unsafe { (*self.raw()).scheduled = false };
    }

    /// Drops the callback and its arguments: the handle has left the loop.
    /// Persistent handles keep theirs until cancelled.
    pub fn release(&self, py: Python<'_>) {
        // SAFETY: the GIL is held (`py`); the handle is alive.
        unsafe { release_callback(py, self.raw()) }
    }

    /// Runs the callback in the handle's context and releases it (unless
    /// `keep`: debug mode still names the callback after it ran). A
    /// cancelled handle does nothing. `SystemExit` and `KeyboardInterrupt`
    /// come back as `Err`: they stop the loop, as in asyncio; any other
    /// exception is handed back as [`RunOutcome::Raised`].
    #[inline]
    pub fn run(&self, py: Python<'_>, keep: bool) -> PyResult<RunOutcome> {
        self.run_then(py, keep, || {})
    }

    /// [`HandleRef::run`], calling `at_end` exactly once: right after the
    /// callback returned, while this run still holds it (a released
    /// handle's callback is dropped only after `at_end`), or at once if the
    /// handle has nothing to run. The blocking detector withdraws its
    /// pointer to the callback there.
    #[inline]
    pub fn run_then(
        &self,
        py: Python<'_>,
        keep: bool,
        at_end: impl FnOnce(),
    ) -> PyResult<RunOutcome> {
        let h = self.raw();
        // SAFETY: the GIL is held; the handle stays alive (we own a
        // reference). The callback and arguments are either borrowed (kept
        // in the handle) or moved out of it before any Python code runs.
        unsafe {
            if (*h).cancelled || (*h).callback.is_null() {
                at_end();
                return Ok(RunOutcome::Done);
            }
            let lent = match lend_context(py, h) {
                Ok(lent) => lent,
                Err(err) => {
                    at_end();
                    return Ok(RunOutcome::Raised(err));
                }
            };
            let keep = keep || (*h).persistent;
            let (callback, args) = if keep {
                (
                    Bound::from_borrowed_ptr(py, (*h).callback),
                    Bound::from_borrowed_ptr(py, (*h).args),
                )
            } else {
                // The handle lets go of them as it runs: moved, not copied.
                let callback = std::mem::replace(&mut (*h).callback, ptr::null_mut());
                let args = std::mem::replace(&mut (*h).args, ptr::null_mut());
                (
                    Bound::from_owned_ptr(py, callback),
                    Bound::from_owned_ptr(py, args),
                )
            };
            let args = args.cast_into_unchecked::<PyTuple>();
            let ran = run_in_context(py, (*h).context, &callback, &args);
            if lent {
                take_back_context(h);
            }
            at_end();
            match ran {
                Ok(()) => Ok(RunOutcome::Done),
                Err(err) => {
                    let stopping = crate::errors::is_loop_stopping(py, &err);
                    if !keep && !stopping && (*h).callback.is_null() && !(*h).cancelled {
                        // Put them back: the error report shows them.
                        (*h).callback = callback.into_ptr();
                        (*h).args = args.into_any().into_ptr();
                    }
                    if stopping {
                        Err(err)
                    } else {
                        Ok(RunOutcome::Raised(err))
                    }
                }
            }
        }
    }

    /// The callback's address, NULL once released; no reference is taken.
    #[inline]
    pub fn callback_ptr(&self) -> *mut ffi::PyObject {
        // SAFETY: reading a field of a live handle; callers hold the GIL.
        unsafe { (*self.raw()).callback }
    }
}

/// Makes the handle's context ready to be seen or entered: an empty one
/// made if it has none yet, a private one put back on the collector's lists.
///
/// # Safety
/// GIL held; `h` a live handle.
unsafe fn settle_context(py: Python<'_>, h: *mut HandleObject) -> PyResult<()> {
    // SAFETY: `h` is a live handle (this function's contract); the new
    // reference is the handle's.
    unsafe {
        if (*h).context.is_null() {
            (*h).context = new_empty_context(py)?;
        }
        retrack_context(h);
    }
    Ok(())
}

/// `contextvars.Context()`: a new reference.
fn new_empty_context(py: Python<'_>) -> PyResult<*mut ffi::PyObject> {
    // SAFETY: attached (`py`); PyContext_New returns a new reference or NULL
    // with an exception set.
    let context = unsafe { ffi::PyContext_New() };
    if context.is_null() {
        Err(PyErr::fetch(py))
    } else {
        Ok(context)
    }
}

/// An empty context kept for the next handle whose context is empty
/// ([`HandleContext::Empty`]). Such a handle borrows it for its run and gives
/// it back if it is still empty and nobody took a reference to it (the
/// callback asking its own handle for its context, say): a callback that
/// leaves its context empty, the common case, then costs no context made
/// and freed.
struct SpareContext(UnsafeCell<*mut ffi::PyObject>);

// SAFETY: only touched from `lend_context` and `take_back_context`, which
// run with the GIL held (a handle runs attached), so accesses are serialised.
unsafe impl Sync for SpareContext {}

/// An owned reference to an empty, unentered Context, or NULL.
static SPARE_CONTEXT: SpareContext = SpareContext(UnsafeCell::new(ptr::null_mut()));

/// Gives a handle about to run its context: the spare empty one (or a new
/// one) if it has none yet. Returns whether the context was lent that way.
/// The spare slot stays empty while it is lent, so a run inside this run
/// cannot be lent the same, entered, context.
///
/// # Safety
/// GIL held; `h` a live handle.
unsafe fn lend_context(py: Python<'_>, h: *mut HandleObject) -> PyResult<bool> {
    // SAFETY: `h` is a live handle (this function's contract); the slot is
    // GIL-guarded (see `SpareContext`) and holds an owned reference or NULL,
    // which moves into the handle, as does a new context's reference.
    unsafe {
        if !(*h).context.is_null() {
            retrack_context(h);
            return Ok(false);
        }
        let spare = std::mem::replace(&mut *SPARE_CONTEXT.0.get(), ptr::null_mut());
        (*h).context = if spare.is_null() {
            new_empty_context(py)?
        } else {
            spare
        };
        Ok(true)
    }
}

/// After the run of a handle lent a context: keeps that context as the
/// spare if it can be used again unseen, and the handle makes a new empty
/// one if it is ever asked for its context (the same contents: it ended
/// empty).
///
/// # Safety
/// GIL held; `h` a live handle whose context was lent by `lend_context`.
unsafe fn take_back_context(h: *mut HandleObject) {
    // SAFETY: `h` is a live handle (this function's contract) holding an
    // owned reference to an exact Context (PyContext_New made it), whose
    // length cannot fail; the slot is GIL-guarded. A count of one means the
    // handle's reference is the only one, which moves into the slot.
    unsafe {
        let slot = &mut *SPARE_CONTEXT.0.get();
        let context = (*h).context;
        if slot.is_null() && ffi::Py_REFCNT(context) == 1 && context_is_empty(context) {
            *slot = context;
            (*h).context = ptr::null_mut();
        }
    }
}

/// Whether a Context holds no variables: its type's length slot, called
/// directly (`len()` goes through two generic layers first, which cost as
/// much as the copy it tells about).
///
/// # Safety
/// GIL held; `context` a live, exact `contextvars.Context`.
#[inline]
unsafe fn context_is_empty(context: *mut ffi::PyObject) -> bool {
    // SAFETY: this function's contract: the object is an exact Context,
    // whose static type has a mapping length slot that cannot fail (it reads
    // the variables' count).
    unsafe {
        let mapping = (*ffi::Py_TYPE(context)).tp_as_mapping;
        match (!mapping.is_null()).then(|| (*mapping).mp_length).flatten() {
            Some(length) => length(context) == 0,
            None => ffi::PyObject_Length(context) == 0,
        }
    }
}

/// Puts a handle's private context back on the collector's lists.
///
/// # Safety
/// GIL held; `h` a live handle.
#[inline]
unsafe fn retrack_context(h: *mut HandleObject) {
    // SAFETY: `h` is a live handle (this function's contract) whose context
    // field is an owned reference; re-tracking is only done for a context this
    // handle untracked itself.
    unsafe {
        if (*h).context_untracked {
            (*h).context_untracked = false;
            ffi::PyObject_GC_Track((*h).context.cast());
        }
    }
}

/// # Safety
/// GIL held; `h` a live handle.
unsafe fn release_callback(py: Python<'_>, h: *mut HandleObject) {
    // SAFETY: `h` is a live handle (this function's contract); the fields taken
    // are owned references or NULL, dropped after the handle stops pointing
    // to them.
    unsafe {
        if (*h).persistent && !(*h).cancelled {
            return;
        }
        let callback = std::mem::replace(&mut (*h).callback, ptr::null_mut());
        let args = std::mem::replace(&mut (*h).args, ptr::null_mut());
        // Dropping after the fields are cleared: a __del__ that runs here
        // sees a released handle.
        drop(Bound::from_owned_ptr_or_opt(py, callback));
        drop(Bound::from_owned_ptr_or_opt(py, args));
    }
}

/// Calls `callback(*args)` in `context`.
///
/// # Safety
/// `context` must stay alive for the whole call (the handle owning it is
/// kept alive by the caller).
#[inline]
unsafe fn run_in_context(
    py: Python<'_>,
    context: *mut ffi::PyObject,
    callback: &Bound<'_, PyAny>,
    args: &Bound<'_, PyTuple>,
) -> PyResult<()> {
    // SAFETY: `context` is alive for the whole call (this function's
    // contract); the borrowed Bound takes no reference of its own.
    let context = unsafe { Bound::from_borrowed_ptr(py, context) };
    // SAFETY: PyContext_CheckExact only reads the type of a live object.
    if unsafe { ffi::PyContext_CheckExact(context.as_ptr()) } == 0 {
        // asyncio calls `context.run(callback, *args)` on whatever it was
        // given as a context: do the same for what is not a real one.
        let mut call = vec![callback.clone()];
        call.extend(args.iter());
        return context
            .call_method1(pyo3::intern!(py, "run"), PyTuple::new(py, call)?)
            .map(drop);
    }
    crate::context::run_in(&context, || {
        if args.is_empty() {
            callback.call0().map(drop)
        } else {
            callback.call1(args).map(drop)
        }
    })
}

// ---------------------------------------------------------------------------
// Allocation: a free list of handle-sized blocks.

/// Blocks of exact `Handle`/`TimerHandle` objects (both have the same size)
/// kept for reuse, so that a handle costs no trip through the allocator.
///
/// The list holds up to [`FREE_LIST_CAPACITY`] blocks: a thread that feeds
/// the loop with `call_soon_threadsafe` queues tens of thousands of handles
/// in one switch interval, which the loop frees a moment later. Without the
/// blocks of the last burst at hand, each burst takes fresh pages from the
/// allocator (whose arenas are given back as soon as they are empty), and the
/// page faults cost more than the handles themselves. Such a loop sleeps
/// between bursts too, so the blocks above [`FREE_LIST_KEPT_WHILE_IDLE`] are
/// given back only [`SPARE_BLOCKS_KEPT_FOR`] after a sleeping loop first saw
/// them ([`release_spare_blocks`]): an idle program keeps no burst's memory
/// for longer than that.
struct FreeList(UnsafeCell<FreeBlocks>);

struct FreeBlocks {
    blocks: Vec<*mut ffi::PyObject>,
    /// When a loop about to sleep first saw spare blocks (`None`: there
    /// were none at the last look).
    spare_since: Option<Instant>,
}

// SAFETY: only touched from `alloc`, `dealloc` and `release_spare_blocks`,
// which run with the GIL held (CPython calls the first two with it; the last
// takes the token), so accesses are serialised.
unsafe impl Sync for FreeList {}

static FREE_LIST: FreeList = FreeList(UnsafeCell::new(FreeBlocks {
    blocks: Vec::new(),
    spare_since: None,
}));
/// At most about 7 MiB of handles.
const FREE_LIST_CAPACITY: usize = 65536;
/// What an idle loop keeps: enough for the handles of ordinary iterations.
const FREE_LIST_KEPT_WHILE_IDLE: usize = 1024;
const SPARE_BLOCKS_KEPT_FOR: Duration = Duration::from_secs(1);

/// Gives the free list's blocks above [`FREE_LIST_KEPT_WHILE_IDLE`] back to
/// the allocator once they have been there for [`SPARE_BLOCKS_KEPT_FOR`].
/// A loop calls it before it sleeps; the answer is how long it may sleep
/// before it should call again (`None`: no spare blocks to give back).
pub fn release_spare_blocks(_py: Python<'_>) -> Option<Duration> {
    // SAFETY: the GIL is held (the token says so), which serialises every
    // access to the list; its blocks are zeroed handle-sized blocks that no
    // object uses, allocated by `PyType_GenericAlloc` (the handle types'
    // `tp_alloc`) from `PyObject_Malloc`, so `PyObject_Free` releases them.
    unsafe {
        let list = &mut *FREE_LIST.0.get();
        if list.blocks.len() <= FREE_LIST_KEPT_WHILE_IDLE {
            list.spare_since = None;
            return None;
        }
        let now = Instant::now();
        let kept = now.duration_since(*list.spare_since.get_or_insert(now));
        if kept < SPARE_BLOCKS_KEPT_FOR {
            return Some(SPARE_BLOCKS_KEPT_FOR - kept);
        }
        for block in list.blocks.drain(FREE_LIST_KEPT_WHILE_IDLE..) {
            ffi::PyObject_Free(block.cast());
        }
        list.blocks.shrink_to(FREE_LIST_KEPT_WHILE_IDLE);
        list.spare_since = None;
        None
    }
}

fn alloc(py: Python<'_>, ty: *mut ffi::PyTypeObject) -> PyResult<*mut ffi::PyObject> {
    if ty.is_null() {
        return Err(PyRuntimeError::new_err(
            "ferroloop handle types not initialised",
        ));
    }
    // SAFETY: GIL held, see FreeList; `ty` is one of our (immortal, module-
    // owned) handle types. A block from the list has exactly our basic size
    // and was zeroed when it was put there; PyObject_Init sets its type
    // (taking a reference to it) and its reference count.
    unsafe {
        let list = &mut (*FREE_LIST.0.get()).blocks;
        if let Some(obj) = list.pop() {
            ffi::PyObject_Init(obj, ty);
            return Ok(obj);
        }
        let obj = ffi::PyType_GenericAlloc(ty, 0);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        Ok(obj)
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn dealloc(obj: *mut ffi::PyObject) {
    // SAFETY: a `tp_dealloc` slot under the entry-point contract: called
    // once, for an object of our layout (or a Python subclass of it) whose
    // count is 0, so its fields are ours to release and its memory to reuse.
    unsafe {
        crate::ffi::trampoline(|_| {
            release_object(obj);
            Ok(())
        })
    }
}

/// What `dealloc` does.
///
/// # Safety
/// As `dealloc`: `obj` a handle whose count is 0, GIL held.
unsafe fn release_object(obj: *mut ffi::PyObject) {
    // SAFETY: this function's contract.
    unsafe {
        let h = obj.cast::<HandleObject>();
        let ty = ffi::Py_TYPE(obj);
        if !(*h).weakrefs.is_null() {
            ffi::PyObject_ClearWeakRefs(obj);
        }
        retrack_context(h);
        for field in [
            &mut (*h).callback,
            &mut (*h).args,
            &mut (*h).context,
            &mut (*h).source_traceback,
            &mut (*h).loop_,
            &mut (*h).repr,
        ] {
            if !field.is_null() {
                ffi::Py_DECREF(std::mem::replace(field, ptr::null_mut()));
            }
        }
        drop((*h).cancelled_in_heap.take());
        let exact = is_exact_handle_type(ty);
        let list = &mut (*FREE_LIST.0.get()).blocks;
        if exact && list.len() < FREE_LIST_CAPACITY {
            // Zero our fields so the next user starts from a clean object.
            let fields = (obj as *mut u8).add(std::mem::size_of::<ffi::PyObject>());
            ptr::write_bytes(
                fields,
                0,
                std::mem::size_of::<HandleObject>() - std::mem::size_of::<ffi::PyObject>(),
            );
            list.push(obj);
        } else if let Some(free) = (*ty).tp_free {
            free(obj.cast());
        }
        // Instances of heap types own a reference to their type.
        ffi::Py_DECREF(ty.cast());
    }
}

fn is_exact_handle_type(ty: *mut ffi::PyTypeObject) -> bool {
    let ty = ty.cast::<ffi::PyObject>();
    ptr::eq(HANDLE_TYPE_PTR.load(Ordering::Relaxed), ty)
        || ptr::eq(TIMER_HANDLE_TYPE_PTR.load(Ordering::Relaxed), ty)
}

// ---------------------------------------------------------------------------
// The Python-visible methods.

/// # Safety
/// `obj` must be a live handle; GIL held.
unsafe fn handle_of<'a>(obj: *mut ffi::PyObject) -> &'a mut HandleObject {
    // SAFETY: `obj` points to a live object of our layout (this function's
    // contract); callers keep the reference only for the call, under the GIL.
    unsafe { &mut *obj.cast::<HandleObject>() }
}

/// Runs a method body with `self` bound, in the [`crate::ffi::trampoline`].
///
/// # Safety
/// `slf` as a method or slot of a handle type receives it, under the
/// entry-point contract of [`crate::ffi`].
unsafe fn method(
    slf: *mut ffi::PyObject,
    body: impl FnOnce(Python<'_>, &Bound<'_, PyAny>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    let run = |py: Python<'_>| {
        // SAFETY: `slf` is the live object the method was called on,
        // borrowed for the call.
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
        Ok(body(py, &slf)?.into_ptr())
    };
    // SAFETY: the entry-point contract is this function's own.
    unsafe { crate::ffi::trampoline(run) }
}

fn borrowed_or_none(py: Python<'_>, field: *mut ffi::PyObject) -> Py<PyAny> {
    if field.is_null() {
        py.None()
    } else {
        // SAFETY: a non-NULL field is an owned, live reference.
        unsafe { Bound::from_borrowed_ptr(py, field).unbind() }
    }
}

fn loop_debug(py: Python<'_>, h: &HandleObject) -> PyResult<bool> {
    if h.loop_.is_null() {
        return Ok(h.debug);
    }
    // SAFETY: a non-NULL loop field is an owned, live reference.
    python_helpers::loop_debug(unsafe { &Bound::from_borrowed_ptr(py, h.loop_) })
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn cancel(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            let h = handle_of(slf.as_ptr());
            if h.cancelled {
                return Ok(py.None());
            }
            h.cancelled = true;
            if h.scheduled {
                if let Some(count) = &h.cancelled_in_heap {
                    count.increment();
                }
            }
            // asyncio keeps the repr in debug mode, so that a later
            // "Executing <Handle ...> took N seconds" still names the callback.
            if loop_debug(py, h)? {
                let repr = slf.repr()?.into_any().into_ptr();
                let h = handle_of(slf.as_ptr());
                let old = std::mem::replace(&mut h.repr, repr);
                drop(Bound::from_owned_ptr_or_opt(py, old));
            }
            release_callback(py, slf.as_ptr().cast());
            Ok(py.None())
        })
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn cancelled(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            Ok(
                pyo3::types::PyBool::new(py, handle_of(slf.as_ptr()).cancelled)
                    .to_owned()
                    .into_any()
                    .unbind(),
            )
        })
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn get_context(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            settle_context(py, slf.as_ptr().cast())?;
            Ok(borrowed_or_none(py, handle_of(slf.as_ptr()).context))
        })
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn when(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            Ok(handle_of(slf.as_ptr())
                .when
                .into_pyobject(py)?
                .into_any()
                .unbind())
        })
    }
}

/// `_run()`: runs the callback now, sending an exception to the loop's
/// exception handler. Only handles built with a loop can.
/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn run_now(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            let h = handle_of(slf.as_ptr());
            if h.loop_.is_null() {
                return Err(PyRuntimeError::new_err("this handle is run by its loop"));
            }
            let loop_obj = Bound::from_borrowed_ptr(py, h.loop_);
            let handle = HandleRef(slf.clone().unbind());
            match handle.run(py, true)? {
                RunOutcome::Done => {}
                RunOutcome::Raised(err) => {
                    python_helpers::report_callback_error(&loop_obj, slf, err)?
                }
            }
            Ok(py.None())
        })
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn repr(slf: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            let h = handle_of(slf.as_ptr());
            if !h.repr.is_null() {
                return Ok(borrowed_or_none(py, h.repr));
            }
            python_helpers::handle_repr(slf)
        })
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn hash(slf: *mut ffi::PyObject) -> ffi::Py_hash_t {
    let run = |py: Python<'_>| {
        // SAFETY: `slf` is a live timer handle (the slot's type).
        let when = unsafe { handle_of(slf) }.when;
        pyo3::types::PyFloat::new(py, when).hash()
    };
    // SAFETY: a `tp_hash` slot under the entry-point contract.
    unsafe { crate::ffi::trampoline(run) }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn richcompare(
    slf: *mut ffi::PyObject,
    other: *mut ffi::PyObject,
    op: c_int,
) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract: `slf` is a live handle (the
    // descriptor checked its type), which `handle_of` may cast to our layout;
    // `method` runs the body in the trampoline.
    unsafe {
        method(slf, |py, slf| {
            let other = Bound::from_borrowed_ptr(py, other);
            if !other.is_instance(timer_handle_type(py)?.as_any())? {
                return Ok(py.NotImplemented());
            }
            let (a, b) = (handle_of(slf.as_ptr()), handle_of(other.as_ptr()));
            let equal = || -> PyResult<bool> {
                if a.when != b.when || a.cancelled != b.cancelled {
                    return Ok(false);
                }
                let (cb_a, cb_b) = (
                    borrowed_or_none(py, a.callback),
                    borrowed_or_none(py, b.callback),
                );
                let (args_a, args_b) = (borrowed_or_none(py, a.args), borrowed_or_none(py, b.args));
                Ok(cb_a.bind(py).eq(cb_b)? && args_a.bind(py).eq(args_b)?)
            };
            let result = match op {
                ffi::Py_LT => a.when < b.when,
                ffi::Py_GT => a.when > b.when,
                ffi::Py_LE => a.when < b.when || equal()?,
                ffi::Py_GE => a.when > b.when || equal()?,
                ffi::Py_EQ => equal()?,
                _ => !equal()?,
            };
            Ok(pyo3::types::PyBool::new(py, result)
                .to_owned()
                .into_any()
                .unbind())
        })
    }
}

/// `Handle(callback, args, loop, context=None)` and
/// `TimerHandle(when, callback, args, loop, context=None)`, asyncio's
/// constructors. Handles built this way keep their loop and may be queued
/// any number of times (as a signal handler's handle is).
/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn new(
    subtype: *mut ffi::PyTypeObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: a `tp_new` slot under the entry-point contract: `subtype` is
    // a handle type (or a subclass), `args` a tuple and `kwargs` a dict or
    // NULL, all live; the object allocated is of our layout and filled with
    // owned references before anything else sees it.
    unsafe {
        crate::ffi::trampoline(|py| {
            let args = Bound::from_borrowed_ptr(py, args).cast_into::<PyTuple>()?;
            let kwargs = Bound::from_borrowed_ptr_or_opt(py, kwargs);
            let ty = Bound::from_borrowed_ptr(py, subtype.cast()).cast_into::<PyType>()?;
            let is_timer = ty.is_subclass(timer_handle_type(py)?.as_any())?;
            let names: &[&str] = if is_timer {
                &["when", "callback", "args", "loop", "context"]
            } else {
                &["callback", "args", "loop", "context"]
            };
            let mut values: Vec<Option<Bound<'_, PyAny>>> = vec![None; names.len()];
            for (i, value) in args.iter().enumerate() {
                *values
                    .get_mut(i)
                    .ok_or_else(|| PyTypeError::new_err("too many arguments"))? = Some(value);
            }
            if let Some(kwargs) = kwargs {
                for (key, value) in kwargs.cast_into::<pyo3::types::PyDict>()?.iter() {
                    let key: String = key.extract()?;
                    let i = names.iter().position(|n| *n == key).ok_or_else(|| {
                        PyTypeError::new_err(format!("unexpected keyword argument '{key}'"))
                    })?;
                    values[i] = Some(value);
                }
            }
            let mut take =
                |name: &str| values[names.iter().position(|n| *n == name).unwrap()].take();
            let when = if is_timer {
                take("when").map(|w| w.extract::<f64>()).transpose()?
            } else {
                None
            };
            let callback = take("callback")
                .ok_or_else(|| PyTypeError::new_err("missing argument 'callback'"))?;
            let call_args = match take("args") {
                Some(a) if !a.is_none() => a.cast_into::<PyTuple>()?,
                _ => PyTuple::empty(py),
            };
            let loop_obj =
                take("loop").ok_or_else(|| PyTypeError::new_err("missing argument 'loop'"))?;
            let context = match take("context") {
                Some(c) if !c.is_none() => c.unbind(),
                _ => crate::context::copy_current(py)?,
            };
            let debug = python_helpers::loop_debug(&loop_obj)?;
            let source_traceback = if debug {
                Some(python_helpers::extract_stack(py)?)
            } else {
                None
            };
            let obj = ffi::PyType_GenericAlloc(subtype, 0);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            let h = obj.cast::<HandleObject>();
            (*h).callback = callback.into_ptr();
            (*h).args = call_args.into_any().into_ptr();
            (*h).context = context.into_ptr();
            (*h).source_traceback = source_traceback.map_or(ptr::null_mut(), |t| t.into_ptr());
            (*h).loop_ = loop_obj.into_ptr();
            (*h).debug = debug;
            (*h).persistent = true;
            if let Some(when) = when {
                (*h).when = when;
                (*h).is_timer = true;
            }
            Ok(obj)
        })
    }
}

macro_rules! getter {
    ($name:ident, |$py:ident, $h:ident| $body:expr) => {
        /// An entry point, called under the contract of [`crate::ffi`].
        unsafe extern "C" fn $name(
            slf: *mut ffi::PyObject,
            _closure: *mut c_void,
        ) -> *mut ffi::PyObject {
            // SAFETY: the entry-point contract (a getter of a handle type): `slf`
            // is a live handle, which `handle_of` may cast to our layout.
            unsafe {
                method(slf, |$py, slf| {
                    let $h = handle_of(slf.as_ptr());
                    $body
                })
            }
        }
    };
}

getter!(get_callback, |py, h| Ok(borrowed_or_none(py, h.callback)));
getter!(get_args, |py, h| Ok(borrowed_or_none(py, h.args)));
getter!(get_context_attr, |py, h| {
    settle_context(py, h)?;
    Ok(borrowed_or_none(py, h.context))
});
getter!(get_loop, |py, h| Ok(borrowed_or_none(py, h.loop_)));
getter!(get_source_traceback, |py, h| Ok(borrowed_or_none(
    py,
    h.source_traceback
)));
getter!(get_repr, |py, h| Ok(borrowed_or_none(py, h.repr)));
getter!(get_cancelled, |py, h| Ok(pyo3::types::PyBool::new(
    py,
    h.cancelled
)
.to_owned()
.into_any()
.unbind()));
getter!(get_debug, |py, h| Ok(pyo3::types::PyBool::new(
    py,
    loop_debug(py, h)?
)
.to_owned()
.into_any()
.unbind()));
getter!(get_when, |py, h| Ok(h
    .when
    .into_pyobject(py)?
    .into_any()
    .unbind()));
getter!(get_scheduled, |py, h| Ok(pyo3::types::PyBool::new(
    py,
    h.scheduled
)
.to_owned()
.into_any()
.unbind()));

// ---------------------------------------------------------------------------
// The type objects.

static HANDLE_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
static TIMER_HANDLE_TYPE: PyOnceLock<Py<PyType>> = PyOnceLock::new();
/// The same two types as bare pointers, for the allocation paths.
static HANDLE_TYPE_PTR: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());
static TIMER_HANDLE_TYPE_PTR: AtomicPtr<ffi::PyObject> = AtomicPtr::new(ptr::null_mut());

fn handle_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    HANDLE_TYPE
        .get(py)
        .map(|t| t.bind(py))
        .ok_or_else(|| PyRuntimeError::new_err("ferroloop handle types not initialised"))
}

fn timer_handle_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    TIMER_HANDLE_TYPE
        .get(py)
        .map(|t| t.bind(py))
        .ok_or_else(|| PyRuntimeError::new_err("ferroloop handle types not initialised"))
}

/// A `METH_NOARGS` entry point (see [`crate::ffi`]).
type NoArgs = unsafe extern "C" fn(*mut ffi::PyObject, *mut ffi::PyObject) -> *mut ffi::PyObject;
/// A getter's entry point (see [`crate::ffi`]).
type Getter = unsafe extern "C" fn(*mut ffi::PyObject, *mut c_void) -> *mut ffi::PyObject;

fn no_args(name: &'static CStr, function: NoArgs, doc: &'static CStr) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunction: function,
        },
        ml_flags: ffi::METH_NOARGS,
        ml_doc: doc.as_ptr(),
    }
}

fn getset(name: &'static CStr, get: Getter) -> ffi::PyGetSetDef {
    ffi::PyGetSetDef {
        name: name.as_ptr(),
        get: Some(get),
        set: None,
        doc: ptr::null(),
        closure: ptr::null_mut(),
    }
}

fn slot(slot: c_int, pfunc: *mut c_void) -> ffi::PyType_Slot {
    ffi::PyType_Slot { slot, pfunc }
}

/// Creates `Handle` and `TimerHandle` and adds them to the module. The
/// method, attribute and slot tables are leaked on purpose: CPython keeps
/// pointers to them for the life of the types.
pub fn create_types(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let handle_methods = Box::leak(Box::new([
        no_args(c"cancel", cancel, c"Cancel the callback; it will not run."),
        no_args(c"cancelled", cancelled, c"True once cancelled."),
        no_args(
            c"get_context",
            get_context,
            c"The contextvars.Context the callback runs in.",
        ),
        no_args(
            c"_run",
            run_now,
            c"Run the callback now (handles built with a loop).",
        ),
        ffi::PyMethodDef::zeroed(),
    ]));
    let handle_getset = Box::leak(Box::new([
        getset(c"_callback", get_callback),
        getset(c"_args", get_args),
        getset(c"_context", get_context_attr),
        getset(c"_loop", get_loop),
        getset(c"_source_traceback", get_source_traceback),
        getset(c"_repr", get_repr),
        getset(c"_cancelled", get_cancelled),
        getset(c"_debug", get_debug),
        ffi::PyGetSetDef::default(),
    ]));
    let weakref_offset = std::mem::offset_of!(HandleObject, weakrefs) as ffi::Py_ssize_t;
    let members = Box::leak(Box::new([
        ffi::PyMemberDef {
            name: c"__weaklistoffset__".as_ptr(),
            type_code: ffi::Py_T_PYSSIZET,
            offset: weakref_offset,
            flags: ffi::Py_READONLY,
            doc: ptr::null(),
        },
        ffi::PyMemberDef::default(),
    ]));
    let handle_slots = Box::leak(Box::new([
        slot(ffi::Py_tp_dealloc, dealloc as *mut c_void),
        slot(ffi::Py_tp_repr, repr as *mut c_void),
        slot(ffi::Py_tp_new, new as *mut c_void),
        slot(ffi::Py_tp_methods, handle_methods.as_mut_ptr().cast()),
        slot(ffi::Py_tp_getset, handle_getset.as_mut_ptr().cast()),
        slot(ffi::Py_tp_members, members.as_mut_ptr().cast()),
        slot(
            ffi::Py_tp_doc,
            c"Handle of a scheduled callback (asyncio.Handle's interface).".as_ptr() as *mut c_void,
        ),
        ffi::PyType_Slot::default(),
    ]));
    let flags = (ffi::Py_TPFLAGS_DEFAULT | ffi::Py_TPFLAGS_BASETYPE) as std::os::raw::c_uint;
    let basicsize = std::mem::size_of::<HandleObject>() as c_int;
    let handle_spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"ferroloop._ferroloop.Handle".as_ptr(),
        basicsize,
        itemsize: 0,
        flags,
        slots: handle_slots.as_mut_ptr(),
    }));
    // SAFETY: the spec and everything it points to are 'static; the result
    // is a new reference or NULL with an exception set.
    let handle_ty = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpec(handle_spec))? }
        .cast_into::<PyType>()?;
    if py.version_info() < (3, 12) {
        // Handle.get_context() came with Python 3.12.
        handle_ty.delattr("get_context")?;
    }

    let timer_methods = Box::leak(Box::new([
        no_args(
            c"when",
            when,
            c"The loop time the callback is scheduled for.",
        ),
        ffi::PyMethodDef::zeroed(),
    ]));
    let timer_getset = Box::leak(Box::new([
        getset(c"_when", get_when),
        getset(c"_scheduled", get_scheduled),
        ffi::PyGetSetDef::default(),
    ]));
    let timer_slots = Box::leak(Box::new([
        slot(ffi::Py_tp_methods, timer_methods.as_mut_ptr().cast()),
        slot(ffi::Py_tp_getset, timer_getset.as_mut_ptr().cast()),
        slot(ffi::Py_tp_hash, hash as *mut c_void),
        slot(ffi::Py_tp_richcompare, richcompare as *mut c_void),
        slot(
            ffi::Py_tp_doc,
            c"Handle of a timed callback (asyncio.TimerHandle's interface).".as_ptr()
                as *mut c_void,
        ),
        ffi::PyType_Slot::default(),
    ]));
    let timer_spec = Box::leak(Box::new(ffi::PyType_Spec {
        name: c"ferroloop._ferroloop.TimerHandle".as_ptr(),
        basicsize,
        itemsize: 0,
        flags,
        slots: timer_slots.as_mut_ptr(),
    }));
    let bases = PyTuple::new(py, [handle_ty.as_any()])?;
    // SAFETY: as above; `bases` is a live tuple holding the Handle type.
    let timer_ty =
        // SAFETY: the spec is 'static; `bases` is a live tuple holding the Handle type; the result is a new reference or NULL with an exception set.
        unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyType_FromSpecWithBases(timer_spec, bases.as_ptr()))? }.cast_into::<PyType>()?;

    module.add("Handle", &handle_ty)?;
    module.add("TimerHandle", &timer_ty)?;
    HANDLE_TYPE_PTR.store(handle_ty.as_ptr(), Ordering::Relaxed);
    TIMER_HANDLE_TYPE_PTR.store(timer_ty.as_ptr(), Ordering::Relaxed);
    let _ = HANDLE_TYPE.set(py, handle_ty.unbind());
    let _ = TIMER_HANDLE_TYPE.set(py, timer_ty.unbind());
    Ok(())
}
