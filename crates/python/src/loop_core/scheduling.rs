//! The loop's hottest entry points as raw C methods: `call_soon`,
//! `call_soon_threadsafe`, `call_later`, `call_at`, `create_task`,
//! `create_future` and `get_debug`.
//!
//! The C `Task` calls `call_soon(step, context=ctx)` for every step, `Future`
//! calls it for every done-callback, and both call `get_debug()` when they
//! are made. Going through PyO3's generic argument handling cost about as
//! much as the rest of the call together, so these are written against the C
//! calling convention directly and installed on `LoopCore` when the module
//! initialises. They accept what asyncio's methods accept:
//! `(…, callback, *args, context=None)`, with the leading arguments also
//! allowed as keywords; `create_task(coro, *, name=None, context=None)`.

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};
use pyo3::PyTypeInfo;

use crate::ffi::{install_method, trampoline};
use crate::handles::{HandleContext, HandleRef};
use crate::io::Ready;
use crate::loop_core::{LoopCore, ScheduledTimer};

/// The arguments of one call, sorted out.
struct Call<'py> {
    /// `delay` or `when`, for the timer methods.
    leading: Option<Bound<'py, PyAny>>,
    callback: Bound<'py, PyAny>,
    args: Bound<'py, PyTuple>,
    context: Option<Bound<'py, PyAny>>,
}

/// Sorts out `(leading?, callback, *args, context=None)` from a vectorcall.
///
/// # Safety
/// `args` must point to `nargs` live objects followed by one per name in
/// `kwnames` (a tuple of strings, or NULL), as CPython passes them.
unsafe fn parse<'py>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    method: &str,
    leading_name: Option<&str>,
) -> PyResult<Call<'py>> {
    // SAFETY: PyVectorcall_NARGS only masks the offset flag off a count.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargs as usize) } as usize;
    // SAFETY: guaranteed by the caller: `nargs` positional arguments.
    let positional = unsafe { std::slice::from_raw_parts(args, nargs) };
    let named: usize = if kwnames.is_null() {
        0
    } else {
        // SAFETY: a non-NULL `kwnames` is a tuple (vectorcall contract).
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    };
    // SAFETY: the keyword values follow the positional ones.
    let keyword_values = unsafe { std::slice::from_raw_parts(args.add(nargs), named) };
    // SAFETY: every pointer CPython passes is a live, borrowed reference.
    let bind = |ptr: *mut ffi::PyObject| unsafe { Bound::from_borrowed_ptr(py, ptr) };

    // The two calls that matter: `call_soon(cb)` and the C Task's
    // `call_soon(step, context=ctx)`, whose keyword is the interned string.
    if leading_name.is_none() && nargs == 1 {
        // SAFETY: `kwnames` holds `named` items.
        let context_only = named == 1
            && unsafe { ffi::PyTuple_GET_ITEM(kwnames, 0) }
                == pyo3::intern!(py, "context").as_ptr();
        if named == 0 || context_only {
            return Ok(Call {
                leading: None,
                callback: bind(positional[0]),
                args: empty_tuple(py),
                context: keyword_values.first().map(|&value| bind(value)),
            });
        }
    }

    let fixed = usize::from(leading_name.is_some()) + 1;
    let mut slots: [Option<Bound<'py, PyAny>>; 2] = [None, None];
    for (slot, &ptr) in slots.iter_mut().zip(positional.iter().take(fixed)) {
        *slot = Some(bind(ptr));
    }
    let mut context = None;
    for (i, &value) in keyword_values.iter().enumerate() {
        // SAFETY: `kwnames` is a tuple of `named` strings.
        let name = bind(unsafe { ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t) });
        let name = name.cast::<PyString>()?.to_str()?;
        let index = match (name, leading_name) {
            ("context", _) => {
                context = Some(bind(value));
                continue;
            }
            (n, Some(lead)) if n == lead => 0,
            ("callback", _) => fixed - 1,
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "{method}() got an unexpected keyword argument '{name}'"
                )))
            }
        };
        if slots[index].is_some() {
            return Err(PyTypeError::new_err(format!(
                "{method}() got multiple values for argument '{name}'"
            )));
        }
        slots[index] = Some(bind(value));
    }
    let extra = positional.get(fixed..).unwrap_or(&[]);
    let args = if extra.is_empty() {
        empty_tuple(py)
    } else {
        PyTuple::new(py, extra.iter().map(|&p| bind(p)))?
    };
    let [first, second] = slots;
    let (leading, callback) = if leading_name.is_some() {
        (first, second)
    } else {
        (None, first)
    };
    let missing = |name: &str| {
        PyTypeError::new_err(format!(
            "{method}() missing 1 required positional argument: '{name}'"
        ))
    };
    if let Some(lead) = leading_name {
        if leading.is_none() {
            return Err(missing(lead));
        }
    }
    let callback = callback.ok_or_else(|| missing("callback"))?;
    Ok(Call {
        leading,
        callback,
        args,
        context,
    })
}

/// `()`, kept at hand: most callbacks take no arguments, and asking CPython
/// for its empty tuple each time is a function call.
fn empty_tuple(py: Python<'_>) -> Bound<'_, PyTuple> {
    static EMPTY: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    EMPTY
        .get_or_init(py, || PyTuple::empty(py).unbind())
        .bind(py)
        .clone()
}

/// The shared frame of the scheduling methods: binds `self`, sorts the
/// arguments out and runs `body`, in the [`trampoline`].
///
/// # Safety
/// The arguments of a `METH_FASTCALL | METH_KEYWORDS` method of `LoopCore`,
/// under the entry-point contract of [`crate::ffi`].
unsafe fn entry(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    method: &str,
    leading_name: Option<&str>,
    body: impl FnOnce(&Bound<'_, LoopCore>, Call<'_>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    let run = |py: Python<'_>| {
        // SAFETY: `slf` is a live LoopCore (the descriptor checked its
        // type), borrowed for the call.
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
        // SAFETY: the arguments are laid out as the flags declare.
        let call = unsafe { parse(py, args, nargs, kwnames, method, leading_name)? };
        Ok(body(&slf, call)?.into_ptr())
    };
    // SAFETY: the entry-point contract is this function's own.
    unsafe { trampoline(run) }
}

/// A float deadline or delay, refusing `None` with asyncio's message.
fn seconds(value: Option<Bound<'_, PyAny>>, none_message: &'static str) -> PyResult<f64> {
    match value {
        Some(v) if !v.is_none() => v.extract::<f64>(),
        _ => Err(PyTypeError::new_err(none_message)),
    }
}

fn soon(
    slf: &Bound<'_, LoopCore>,
    call: Call<'_>,
    method: &str,
    threadsafe: bool,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let handle = LoopCore::new_handle(
        slf,
        &call.callback,
        &call.args,
        call.context,
        None,
        method,
        !threadsafe,
        false,
    )?;
    slf.get().observation.stamp_queued(&handle);
    let mut st = slf.get().state.borrow_mut(py)?;
    st.ready.push(Ready::Callback(handle.clone_ref(py)));
    if threadsafe {
        if let Some(waker) = &st.waker {
            waker.wake().map_err(crate::errors::os_error)?;
        }
    }
    drop(st);
    Ok(handle.into_object())
}

fn at(slf: &Bound<'_, LoopCore>, when: f64, call: Call<'_>, method: &str) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let handle = LoopCore::new_handle(
        slf,
        &call.callback,
        &call.args,
        call.context,
        Some(when),
        method,
        true,
        false,
    )?;
    slf.get()
        .state
        .borrow_mut(py)?
        .timers
        .push(when, ScheduledTimer(handle.clone_ref(py)));
    Ok(handle.into_object())
}

/// Defines a raw `METH_FASTCALL | METH_KEYWORDS` method taking
/// `(leading?, callback, *args, context=None)`.
macro_rules! scheduling_method {
    ($fn_name:ident, $method:literal, $leading:expr, |$slf:ident, $call:ident| $body:expr) => {
        /// An entry point, called under the contract of [`crate::ffi`].
        unsafe extern "C" fn $fn_name(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: CPython's vectorcall contract is ours.
            unsafe {
                entry(
                    slf,
                    args,
                    nargs,
                    kwnames,
                    $method,
                    $leading,
                    |$slf, #[allow(unused_mut)] mut $call| $body,
                )
            }
        }
    };
}

scheduling_method!(call_soon_general, "call_soon", None, |slf, call| soon(
    slf,
    call,
    "call_soon",
    false
));
scheduling_method!(
    call_soon_threadsafe_general,
    "call_soon_threadsafe",
    None,
    |slf, call| soon(slf, call, "call_soon_threadsafe", true)
);

/// `call_soon` and `call_soon_threadsafe`: a shortcut for the calls the C
/// `Task` and `Future` make for every step and done-callback, `(cb)`,
/// `(cb, arg)`, and either with `context=ctx`, with `cb` anything callable
/// but a Python function, outside debug mode. It does what the general path
/// does, minus the argument sorting and checks that cannot fail for such
/// calls; everything else takes the general path.
///
/// # Safety
/// CPython's vectorcall contract: `args` holds `nargs` positional arguments
/// then one value per name in `kwnames`; `slf` is a live LoopCore (checked
/// by the method descriptor); the GIL is held; `general` is the general
/// path's entry point, called with the same arguments.
#[inline(always)]
unsafe fn soon_shortcut(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    threadsafe: bool,
    general: unsafe extern "C" fn(
        *mut ffi::PyObject,
        *const *mut ffi::PyObject,
        ffi::Py_ssize_t,
        *mut ffi::PyObject,
    ) -> *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: the entry-point contract is this function's own; the raw
    // reads below are of the arguments it describes.
    unsafe {
        trampoline(|py| {
            let positional = ffi::PyVectorcall_NARGS(nargs as usize);
            if !(1..=2).contains(&positional) {
                return Ok(general(slf, args, nargs, kwnames));
            }
            let context = if kwnames.is_null() {
                None
            } else if is_context_only(py, kwnames) {
                Some(*args.add(positional as usize))
            } else {
                return Ok(general(slf, args, nargs, kwnames));
            };
            let callback = *args;
            let slf_bound = Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>();
            let core = slf_bound.get();
            let plain = !core.is_closed()
                && !core.is_debug()
                && ffi::PyCallable_Check(callback) != 0
                && ffi::PyFunction_Check(callback) == 0;
            if !plain {
                return Ok(general(slf, args, nargs, kwnames));
            }
            let context = match context {
                Some(ctx) if ctx != ffi::Py_None() => {
                    HandleContext::Given(Bound::from_borrowed_ptr(py, ctx).unbind())
                }
                _ => HandleContext::copy_current(py)?,
            };
            let callback = Bound::from_borrowed_ptr(py, callback);
            let call_args = if positional == 2 {
                PyTuple::new(py, [Bound::from_borrowed_ptr(py, *args.add(1))])?
            } else {
                empty_tuple(py)
            };
            let handle =
                HandleRef::new(py, &callback, &call_args, context, None, false, false, None)?;
            core.observation.stamp_queued(&handle);
            let mut st = core.state.borrow_mut(py)?;
            st.ready.push(Ready::Callback(handle.clone_ref(py)));
            if threadsafe {
                if let Some(waker) = &st.waker {
                    waker.wake().map_err(crate::errors::os_error)?;
                }
            }
            drop(st);
            Ok(handle.into_object().into_ptr())
        })
    }
}

/// Whether a call's keyword names are just `context`.
///
/// Python code passes the interned string. The C `Task` and `Future` pass a
/// tuple of their module's own (made once, not interned), recognised by its
/// address once its text matched: a reference to it is kept, so the address
/// cannot be reused by another tuple.
///
/// # Safety
/// `kwnames` is a live tuple of strings (the vectorcall contract); GIL held.
#[inline(always)]
unsafe fn is_context_only(py: Python<'_>, kwnames: *mut ffi::PyObject) -> bool {
    static C_MODULE_NAMES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    // SAFETY: reads of a live tuple's size and item (this function's
    // contract).
    unsafe {
        if ffi::PyTuple_GET_SIZE(kwnames) != 1 {
            return false;
        }
        let name = ffi::PyTuple_GET_ITEM(kwnames, 0);
        if name == pyo3::intern!(py, "context").as_ptr() {
            return true;
        }
        if C_MODULE_NAMES
            .get(py)
            .is_some_and(|known| known.as_ptr() == kwnames)
        {
            return true;
        }
        let matches = ffi::PyUnicode_Check(name) != 0
            && ffi::PyUnicode_CompareWithASCIIString(name, c"context".as_ptr()) == 0;
        if matches && C_MODULE_NAMES.get(py).is_none() {
            let tuple = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
            let _ = C_MODULE_NAMES.set(py, tuple.unbind());
        }
        matches
    }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's vectorcall contract is ours.
    unsafe { soon_shortcut(slf, args, nargs, kwnames, false, call_soon_general) }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn call_soon_threadsafe(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's vectorcall contract is ours.
    unsafe {
        soon_shortcut(
            slf,
            args,
            nargs,
            kwnames,
            true,
            call_soon_threadsafe_general,
        )
    }
}

scheduling_method!(call_later, "call_later", Some("delay"), |slf, call| {
    let delay = seconds(call.leading.take(), "delay must not be None")?;
    // asyncio implements call_later with call_at and names that in errors.
    at(slf, slf.get().time(slf)? + delay, call, "call_at")
});
scheduling_method!(call_at, "call_at", Some("when"), |slf, call| {
    let when = seconds(call.leading.take(), "when cannot be None")?;
    at(slf, when, call, "call_at")
});

/// `create_task(coro, *, name=None, context=None)`, an entry point called
/// under the contract of [`crate::ffi`].
unsafe extern "C" fn create_task(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython's vectorcall contract is ours.
    unsafe {
        raw_entry(slf, |slf| {
            let py = slf.py();
            if crate::loop_core::tasks::create_task_needs_asyncio(slf)? {
                // CPython's vectorcall contract, forwarded (this whole
                // function's body is under its SAFETY comment).
                return made_task(
                    slf,
                    crate::loop_core::tasks::create_task_through_asyncio(slf, args, nargs, kwnames),
                );
            }
            let [coro, name, context] = keyword_arguments(
                py,
                args,
                nargs,
                kwnames,
                "create_task",
                &["coro", "name", "context"],
                1,
            )?;
            let coro = coro.ok_or_else(|| {
                PyTypeError::new_err("create_task() missing 1 required positional argument: 'coro'")
            })?;
            made_task(
                slf,
                crate::loop_core::tasks::create_task(slf, &coro, name, context),
            )
        })
    }
}

/// A task `create_task` made, shown to the step recorder (its parent is
/// the task running now).
fn made_task(slf: &Bound<'_, LoopCore>, task: PyResult<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    let task = task?;
    slf.get()
        .observation
        .task_created(slf.py(), task.bind(slf.py()))?;
    Ok(task)
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn create_future(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held and a live `self`.
    unsafe { raw_entry(slf, crate::loop_core::tasks::create_future) }
}

/// An entry point, called under the contract of [`crate::ffi`].
unsafe extern "C" fn get_debug(
    slf: *mut ffi::PyObject,
    _: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls methods with the GIL held and a live `self`.
    unsafe {
        raw_entry(slf, |slf| {
            let py = slf.py();
            if let Some(value) = &slf.get().state.borrow(py)?.debug_value {
                return Ok(value.clone_ref(py));
            }
            Ok(pyo3::types::PyBool::new(py, slf.get().is_debug())
                .to_owned()
                .into_any()
                .unbind())
        })
    }
}

/// Sorts out arguments of which the first `positional` may be positional
/// and all may be keywords, by `names`.
///
/// # Safety
/// As for [`parse`].
unsafe fn keyword_arguments<'py, const N: usize>(
    py: Python<'py>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    method: &str,
    names: &[&str; N],
    positional: usize,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    // SAFETY: PyVectorcall_NARGS only masks the offset flag off a count.
    let nargs = unsafe { ffi::PyVectorcall_NARGS(nargs as usize) } as usize;
    if nargs > positional {
        return Err(PyTypeError::new_err(format!(
            "{method}() takes {} positional arguments but {} were given",
            positional + 1,
            nargs + 1
        )));
    }
    let named: usize = if kwnames.is_null() {
        0
    } else {
        // SAFETY: a non-NULL `kwnames` is a tuple (vectorcall contract).
        unsafe { ffi::PyTuple_GET_SIZE(kwnames) as usize }
    };
    let mut values: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    // SAFETY: CPython passes `nargs + named` live borrowed references.
    let all = unsafe { std::slice::from_raw_parts(args, nargs + named) };
    // SAFETY: every pointer CPython passes in a vectorcall is a live, borrowed reference.
    let bind = |ptr: *mut ffi::PyObject| unsafe { Bound::from_borrowed_ptr(py, ptr) };
    for (slot, &ptr) in values.iter_mut().zip(&all[..nargs]) {
        *slot = Some(bind(ptr));
    }
    for (i, &value) in all[nargs..].iter().enumerate() {
        // SAFETY: `kwnames` is a tuple of `named` strings.
        let name = bind(unsafe { ffi::PyTuple_GET_ITEM(kwnames, i as ffi::Py_ssize_t) });
        let name = name.cast::<PyString>()?.to_str()?;
        let index = names.iter().position(|n| *n == name).ok_or_else(|| {
            PyTypeError::new_err(format!(
                "{method}() got an unexpected keyword argument '{name}'"
            ))
        })?;
        if values[index].replace(bind(value)).is_some() {
            return Err(PyTypeError::new_err(format!(
                "{method}() got multiple values for argument '{name}'"
            )));
        }
    }
    Ok(values)
}

/// Binds `self` and runs `body`, in the [`trampoline`].
///
/// # Safety
/// `slf` as a method of `LoopCore` receives it, under the entry-point
/// contract of [`crate::ffi`].
unsafe fn raw_entry(
    slf: *mut ffi::PyObject,
    body: impl FnOnce(&Bound<'_, LoopCore>) -> PyResult<Py<PyAny>>,
) -> *mut ffi::PyObject {
    let run = |py: Python<'_>| {
        // SAFETY: `slf` is a live LoopCore (the descriptor checked its
        // type), borrowed for the call.
        let slf = unsafe { Bound::from_borrowed_ptr(py, slf).cast_into_unchecked::<LoopCore>() };
        Ok(body(&slf)?.into_ptr())
    };
    // SAFETY: the entry-point contract is this function's own.
    unsafe { trampoline(run) }
}

const FASTCALL: std::os::raw::c_int = ffi::METH_FASTCALL | ffi::METH_KEYWORDS;

fn method_def(
    name: &'static std::ffi::CStr,
    function: ffi::PyCFunctionFastWithKeywords,
    doc: &'static std::ffi::CStr,
) -> ffi::PyMethodDef {
    ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: function,
        },
        ml_flags: FASTCALL,
        ml_doc: doc.as_ptr(),
    }
}

/// Puts the raw methods on `LoopCore`. Called once, at module import.
pub fn install(py: Python<'_>) -> PyResult<()> {
    // The definitions must outlive the type: they are leaked on purpose
    // (seven small structs, once per process).
    let defs: &'static mut [ffi::PyMethodDef; 7] = Box::leak(Box::new([
        method_def(c"call_soon", call_soon, c"call_soon(callback, *args, context=None)\n--\n\nRun callback(*args) on the next iteration."),
        method_def(
            c"call_soon_threadsafe",
            call_soon_threadsafe,
            c"call_soon_threadsafe(callback, *args, context=None)\n--\n\nLike call_soon(), from any thread; wakes the loop.",
        ),
        method_def(c"call_later", call_later, c"call_later(delay, callback, *args, context=None)\n--\n\nRun callback(*args) after delay seconds."),
        method_def(c"call_at", call_at, c"call_at(when, callback, *args, context=None)\n--\n\nRun callback(*args) at loop time when."),
        method_def(c"create_task", create_task, c"create_task(coro, *, name=None, context=None)\n--\n\nSchedule a coroutine as a Task."),
        ffi::PyMethodDef {
            ml_name: c"create_future".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: create_future },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"A new asyncio.Future attached to the loop.".as_ptr(),
        },
        ffi::PyMethodDef {
            ml_name: c"get_debug".as_ptr(),
            ml_meth: ffi::PyMethodDefPointer { PyCFunction: get_debug },
            ml_flags: ffi::METH_NOARGS,
            ml_doc: c"True in debug mode.".as_ptr(),
        },
    ]));
    let ty: Bound<'_, PyType> = LoopCore::type_object(py);
    for def in defs.iter_mut() {
        install_method(py, &ty, def)?;
    }
    Ok(())
}
