//! The attributes a task step reads, read through their descriptors.
//!
//! At the end of every task step the recorder reads a few attributes of the
//! task (`_fut_waiter`, `_state`) and of each coroutine or generator of its
//! await chain (`cr_await`, `gi_frame`..., and the code object, read from
//! the object itself: [`Awaitable::code`]). Read by name, each
//! costs a lookup through the type's dictionaries and the generic attribute
//! machinery, together most of a step's bookkeeping. They are data
//! descriptors (getsets and members) of types that cannot change (C types,
//! immutable), and a data descriptor takes precedence over anything an
//! instance holds, so calling its `__get__` directly gives exactly what the
//! lookup would, in a call. An object of another type (a subclass, asyncio's
//! pure-Python `_PyTask`) is read by name.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};

/// One attribute of one exact type, read through its data descriptor.
pub struct DataAttribute {
    owner: Py<PyType>,
    name: Py<PyString>,
    /// The descriptor and its `__get__`, if `name` is a data descriptor of
    /// `owner` (read by name otherwise).
    descriptor: Option<(Py<PyAny>, ffi::descrgetfunc)>,
}

impl DataAttribute {
    pub fn find(owner: &Bound<'_, PyType>, name: &str) -> PyResult<DataAttribute> {
        let py = owner.py();
        let name = PyString::intern(py, name);
        let found = owner.getattr(&name)?;
        // SAFETY: reads the slots of the type of a live object.
        let slots = unsafe {
            let ty = ffi::Py_TYPE(found.as_ptr());
            ((*ty).tp_descr_get, (*ty).tp_descr_set.is_some())
        };
        let descriptor = match slots {
            (Some(get), true) => Some((found.unbind(), get)),
            _ => None,
        };
        Ok(DataAttribute {
            owner: owner.clone().unbind(),
            name: name.unbind(),
            descriptor,
        })
    }

    /// `obj.<name>`.
    #[inline]
    pub fn read<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        if let Some((descriptor, get)) = &self.descriptor {
            if is_exactly(obj, self.owner.bind(py)) {
                // SAFETY: `get` is the `tp_descr_get` of `descriptor`'s type,
                // called as the lookup would call it: the descriptor, the
                // instance (of exactly the type it was found on) and that
                // type, all alive; it returns a new reference or NULL with an
                // exception set.
                return unsafe {
                    Bound::from_owned_ptr_or_err(
                        py,
                        get(descriptor.as_ptr(), obj.as_ptr(), self.owner.as_ptr()),
                    )
                };
            }
        }
        obj.getattr(self.name.bind(py))
    }
}

#[inline]
fn is_exactly(obj: &Bound<'_, PyAny>, ty: &Bound<'_, PyType>) -> bool {
    // SAFETY: reads the type pointer of a live object.
    unsafe { ffi::Py_TYPE(obj.as_ptr()) == ty.as_ptr().cast() }
}

/// A coroutine's or a generator's code, frame, and what it awaits.
pub struct Awaitable {
    pub frame: DataAttribute,
    pub awaits: DataAttribute,
}

impl Awaitable {
    fn find(ty: &Bound<'_, PyType>, names: [&str; 2]) -> PyResult<Awaitable> {
        Ok(Awaitable {
            frame: DataAttribute::find(ty, names[0])?,
            awaits: DataAttribute::find(ty, names[1])?,
        })
    }

    /// The code object of `obj`, a coroutine or generator (of the exact
    /// type [`Attributes::awaitable`] found this for). Read from the object
    /// itself, as the C API lets a C extension: the `cr_code` attribute
    /// raises an audit event (`object.__getattr__`) on every read, which
    /// cost more than the rest of the read, each step.
    #[inline]
    pub fn code<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        #[cfg(not(Py_3_12))]
        {
            // SAFETY: up to 3.11 a coroutine or generator (what `obj` is)
            // begins with the PyGenObject header, whose `gi_code` is its
            // code object, never NULL, alive as long as `obj` is.
            Ok(unsafe {
                Bound::from_borrowed_ptr(py, (*obj.as_ptr().cast::<ffi::PyGenObject>()).gi_code)
            })
        }
        #[cfg(all(Py_3_12, not(py_sys_config = "Py_DEBUG")))]
        {
            // SAFETY: PyGen_GetCode reads the code of a generator, and a
            // coroutine's the same way (they share the header it reads; only
            // a debug build asserts that the object is a generator): `obj`
            // is one of the two, alive. It returns a new reference.
            Ok(unsafe { Bound::from_owned_ptr(py, PyGen_GetCode(obj.as_ptr()).cast()) })
        }
        #[cfg(all(Py_3_12, py_sys_config = "Py_DEBUG"))]
        {
            // SAFETY: the check only inspects the type of a live object.
            let coroutine = unsafe { ffi::PyCoro_CheckExact(obj.as_ptr()) } != 0;
            obj.getattr(if coroutine {
                pyo3::intern!(py, "cr_code")
            } else {
                pyo3::intern!(py, "gi_code")
            })
        }
    }
}

#[cfg(Py_3_12)]
extern "C" {
    /// CPython's `PyCodeObject *PyGen_GetCode(PyGenObject *gen)` (3.12 on).
    fn PyGen_GetCode(generator: *mut ffi::PyObject) -> *mut ffi::PyObject;
}

/// What the recorder reads, found once per interpreter.
pub struct Attributes {
    pub coroutine: Awaitable,
    pub generator: Awaitable,
    /// `asyncio.Task` (the C one), and every task type (with `_PyTask`).
    task: Py<PyType>,
    task_types: Py<PyTuple>,
    pub fut_waiter: DataAttribute,
    pub coro: DataAttribute,
    state: DataAttribute,
    pending: Py<PyString>,
    cancelled: Py<PyString>,
}

static ATTRIBUTES: PyOnceLock<Attributes> = PyOnceLock::new();
static STEP_OWNER: PyOnceLock<DataAttribute> = PyOnceLock::new();

impl Attributes {
    pub fn get(py: Python<'_>) -> PyResult<&Attributes> {
        ATTRIBUTES.get_or_try_init(py, || {
            let types = py.import("types")?;
            let tasks = py.import("asyncio.tasks")?;
            let task = tasks.getattr("Task")?.cast_into::<PyType>()?;
            let mut task_types = vec![task.clone().into_any()];
            if let Ok(py_task) = tasks.getattr("_PyTask") {
                task_types.push(py_task);
            }
            Ok(Attributes {
                coroutine: Awaitable::find(
                    &types.getattr("CoroutineType")?.cast_into()?,
                    ["cr_frame", "cr_await"],
                )?,
                generator: Awaitable::find(
                    &types.getattr("GeneratorType")?.cast_into()?,
                    ["gi_frame", "gi_yieldfrom"],
                )?,
                fut_waiter: DataAttribute::find(&task, "_fut_waiter")?,
                coro: DataAttribute::find(&task, "_coro")?,
                state: DataAttribute::find(&task, "_state")?,
                task_types: PyTuple::new(py, task_types)?.unbind(),
                task: task.unbind(),
                pending: PyString::intern(py, "PENDING").unbind(),
                cancelled: PyString::intern(py, "CANCELLED").unbind(),
            })
        })
    }

    /// Is `obj` an asyncio task?
    #[inline]
    pub fn is_task(&self, obj: &Bound<'_, PyAny>) -> bool {
        let py = obj.py();
        is_exactly(obj, self.task.bind(py))
            || obj
                .is_instance(self.task_types.bind(py).as_any())
                .unwrap_or(false)
    }

    /// The coroutine's or generator's attributes, by its exact type
    /// (`None` for other awaitables, such as a future's iterator).
    #[inline]
    pub fn awaitable(&self, obj: &Bound<'_, PyAny>) -> Option<&Awaitable> {
        // SAFETY: the checks only inspect the type of a live object.
        unsafe {
            if ffi::PyCoro_CheckExact(obj.as_ptr()) != 0 {
                Some(&self.coroutine)
            } else if ffi::PyGen_Check(obj.as_ptr()) != 0 {
                Some(&self.generator)
            } else {
                None
            }
        }
    }

    /// Whether `task` is done and whether it was cancelled, from its
    /// `_state` (what `done()` and `cancelled()` read); a task whose state
    /// cannot be read counts as done.
    pub fn outcome(&self, task: &Bound<'_, PyAny>) -> (bool, bool) {
        let py = task.py();
        let Ok(state) = self.state.read(task) else {
            return (true, false);
        };
        let is = |constant: &Py<PyString>| {
            state.is(constant.bind(py)) || state.eq(constant.bind(py)).unwrap_or(false)
        };
        if is(&self.pending) {
            (false, false)
        } else {
            (true, is(&self.cancelled))
        }
    }
}

/// The task `obj` steps, if it is of the `TaskStepMethWrapper` type seen
/// before (found by [`step_owner`]): a type test, where finding the type by
/// its name reads the name.
#[inline]
pub fn known_step_owner<'py>(obj: &Bound<'py, PyAny>) -> Option<PyResult<Bound<'py, PyAny>>> {
    let owner = STEP_OWNER.get(obj.py())?;
    is_exactly(obj, owner.owner.bind(obj.py())).then(|| owner.read(obj))
}

/// The task a `TaskStepMethWrapper` steps (its `__self__`): the wrapper's
/// type is not importable, so its descriptor is found on the first one seen.
pub fn step_owner<'py>(wrapper: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    STEP_OWNER
        .get_or_try_init(wrapper.py(), || {
            DataAttribute::find(&wrapper.get_type(), "__self__")
        })?
        .read(wrapper)
}
