//! Task steps: what the timeline tracer records and per-task statistics
//! add up.
//!
//! A task step is a callback whose callable is bound to an asyncio `Task`
//! (its `__step` wrapper or its `__wakeup` method: `callback.__self__`).
//! For each one the recorder reads the clock at its start and end, takes
//! when it was queued from the handle (stamped by `call_soon` while steps
//! are recorded), and, at its end, what the task now waits on: the future it
//! awaits (another task is named), the innermost coroutine of its await
//! chain (`asyncio.sleep`, `Queue.get`, `StreamReader.read`: the kind of
//! wait) and the innermost frame of user code (file and line).
//!
//! Recording is native and the buffer holds references, not text: Python
//! names and formats everything once, when the trace is read
//! (`ferroloop._trace`). The buffer and the list of finished tasks are
//! bounded; what does not fit is counted, not kept.

use std::collections::HashMap;

use ferroloop_engine::clock;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyWeakrefMethods, PyWeakrefReference};

use super::Observation;
use crate::io::Ready;

/// At most this many events are kept (about 64 bytes each).
const MAX_EVENTS: usize = 1 << 20;
/// At most this many finished tasks keep their statistics.
const MAX_FINISHED: usize = 100_000;
/// How deep an await chain is followed.
const MAX_AWAIT_DEPTH: usize = 64;

/// Where a task is suspended: a code object and the offset of the
/// instruction (its line is looked up when the recording is read, as
/// computing it costs more than the rest of a step's bookkeeping), or
/// [`Place::FIRST_LINE`] for a coroutine not started yet.
struct Place {
    code: Py<PyAny>,
    offset: i32,
}

impl Place {
    const FIRST_LINE: i32 = -1;

    fn clone_ref(&self, py: Python<'_>) -> Place {
        Place {
            code: self.code.clone_ref(py),
            offset: self.offset,
        }
    }

    fn line(&self, py: Python<'_>) -> PyResult<i32> {
        let code = self.code.bind(py);
        if self.offset == Self::FIRST_LINE {
            return code.getattr(pyo3::intern!(py, "co_firstlineno"))?.extract();
        }
        // SAFETY: `code` is a code object (only code objects are kept in a
        // Place, checked when it is made); the call only reads it.
        Ok(unsafe { ffi::PyCode_Addr2Line(code.as_ptr().cast(), self.offset) })
    }

    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                self.code.bind(py).clone(),
                self.line(py)?.into_pyobject(py)?.into_any(),
            ],
        )
    }
}

/// What a task waits on after a step.
struct Wait {
    /// The user code line of the await.
    at: Option<Place>,
    /// The innermost coroutine of the chain, when it is not user code
    /// (`asyncio.sleep`, `Lock.acquire`...).
    inner: Option<Py<PyAny>>,
    /// The awaited future's type, and its task number if it is a task.
    future_type: Option<Py<PyAny>>,
    future_task: u32,
}

enum Event {
    Created {
        task: u32,
        parent: u32,
        at_ns: i64,
    },
    Step {
        task: u32,
        queued_ns: i64,
        start_ns: i64,
        end_ns: i64,
        wait: Option<Wait>,
        done: bool,
    },
    Blocking {
        task: u32,
        start_ns: i64,
        end_ns: i64,
    },
    Poll {
        start_ns: i64,
        end_ns: i64,
    },
}

struct TaskEntry {
    id: u32,
    task: Py<PyWeakrefReference>,
    /// Read from the task when it ends (names are formatted lazily, and
    /// may be set after the task is made).
    name: Option<Py<PyAny>>,
    /// The coroutine's code object (or its type, for other awaitables).
    coroutine: Py<PyAny>,
    /// The coroutine itself, for what it awaits after each step, and its
    /// frame if it is user code; dropped when the task ends.
    coroutine_object: Py<PyAny>,
    frame: Option<Py<PyAny>>,
    /// The coroutine is library code (asyncio's, ferroloop's own tasks).
    library: bool,
    parent: u32,
    created_ns: i64,
    steps: u64,
    busy_ns: i64,
    scheduled_ns: i64,
    idle_ns: i64,
    slowest_ns: i64,
    slowest_at: Option<Place>,
    /// Where the next step resumes (the last suspension point).
    resumes_at: Option<Place>,
    last_end_ns: i64,
    done: bool,
    cancelled: bool,
}

impl TaskEntry {
    /// Takes the task's current name, while it is alive.
    fn refresh_name(&mut self, py: Python<'_>) {
        if let Some(task) = self.task.bind(py).upgrade() {
            if let Ok(name) = task.call_method0(pyo3::intern!(py, "get_name")) {
                self.name = Some(name.unbind());
            }
        }
    }
}

pub struct StepRecorder {
    tracing: bool,
    events: Vec<Event>,
    dropped_events: u64,
    tasks: HashMap<usize, TaskEntry>,
    finished: Vec<TaskEntry>,
    dropped_tasks: u64,
    next_id: u32,
    /// The task whose step runs now, 0 if none.
    running: u32,
    started_ns: i64,
    /// Code object → is it user code (not the standard library, not ferroloop)?
    user_code: HashMap<usize, (Py<PyAny>, bool)>,
}

/// A step in progress.
pub struct Step {
    task: Py<PyAny>,
    key: usize,
    queued_ns: i64,
    start_ns: i64,
}

impl StepRecorder {
    pub fn new(tracing: bool) -> Self {
        StepRecorder {
            tracing,
            events: Vec::new(),
            dropped_events: 0,
            tasks: HashMap::new(),
            finished: Vec::new(),
            dropped_tasks: 0,
            next_id: 1,
            running: 0,
            started_ns: clock::monotonic_ns(),
            user_code: HashMap::new(),
        }
    }

    /// Keeps every event from now on too (the tracer joins task statistics).
    pub fn also_trace(&mut self, tracing: bool) {
        self.tracing |= tracing;
    }

    fn push(&mut self, event: Event) {
        if !self.tracing {
            return;
        }
        if self.events.len() < MAX_EVENTS {
            self.events.push(event);
        } else {
            self.dropped_events += 1;
        }
    }

    /// The entry of `task`, made on first sight. A dead entry under the same
    /// address (the task was collected and the memory reused) is retired.
    fn entry(
        &mut self,
        py: Python<'_>,
        task: &Bound<'_, PyAny>,
        at_ns: i64,
    ) -> PyResult<&mut TaskEntry> {
        let key = task.as_ptr() as usize;
        let stale = self
            .tasks
            .get(&key)
            .is_some_and(|entry| !entry.task.bind(py).upgrade().is_some_and(|t| t.is(task)));
        if stale {
            if let Some(old) = self.tasks.remove(&key) {
                self.retire(old);
            }
        }
        if !self.tasks.contains_key(&key) {
            let id = self.next_id;
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let coroutine_object = task.call_method0(pyo3::intern!(py, "get_coro"))?;
            let (coroutine, code) = coroutine_of(py, &coroutine_object)?;
            let library = match &code {
                Some(code) => !self.is_user_code(py, code)?,
                None => false,
            };
            // The first step starts at the top of the coroutine.
            let resumes_at = code.as_ref().map(|code| Place {
                code: code.clone().unbind(),
                offset: Place::FIRST_LINE,
            });
            // Its frame, kept: every step looks at it.
            let frame = match (&code, library) {
                (Some(_), false) => {
                    let frame = coroutine_object.getattr(pyo3::intern!(py, "cr_frame"))?;
                    is_frame(&frame).then(|| frame.unbind())
                }
                _ => None,
            };
            let parent = self.running;
            let entry = TaskEntry {
                id,
                task: PyWeakrefReference::new(task)?.unbind(),
                name: None,
                coroutine,
                coroutine_object: coroutine_object.unbind(),
                frame,
                library,
                parent,
                created_ns: at_ns,
                steps: 0,
                busy_ns: 0,
                scheduled_ns: 0,
                idle_ns: 0,
                slowest_ns: -1,
                slowest_at: None,
                resumes_at,
                last_end_ns: at_ns,
                done: false,
                cancelled: false,
            };
            self.tasks.insert(key, entry);
            self.push(Event::Created {
                task: id,
                parent,
                at_ns,
            });
        }
        Ok(self.tasks.get_mut(&key).expect("inserted above"))
    }

    fn retire(&mut self, mut entry: TaskEntry) {
        // A name set after creation (asyncio.create_task's `name=` on 3.11
        // is set after the task is made) is taken now.
        Python::attach(|py| entry.refresh_name(py));
        if self.finished.len() < MAX_FINISHED {
            self.finished.push(entry);
        } else {
            self.dropped_tasks += 1;
        }
    }

    fn is_user_code(&mut self, py: Python<'_>, code: &Bound<'_, PyAny>) -> PyResult<bool> {
        let key = code.as_ptr() as usize;
        if let Some((_, user)) = self.user_code.get(&key) {
            return Ok(*user);
        }
        let user = IS_USER_CODE
            .import(py, "ferroloop._trace", "is_user_code")?
            .call1((code,))?
            .is_truthy()?;
        self.user_code.insert(key, (code.clone().unbind(), user));
        Ok(user)
    }
}

static IS_USER_CODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static TASK_TYPES: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();

/// `asyncio.Task` and the pure-Python `_PyTask`.
fn task_types(py: Python<'_>) -> PyResult<&Bound<'_, PyTuple>> {
    Ok(TASK_TYPES
        .get_or_try_init(py, || {
            let tasks = py.import("asyncio.tasks")?;
            let mut types = vec![tasks.getattr("Task")?];
            if let Ok(py_task) = tasks.getattr("_PyTask") {
                types.push(py_task);
            }
            PyTuple::new(py, types).map(Bound::unbind)
        })?
        .bind(py))
}

/// What names a task's coroutine (its code object, or its type), and the
/// code object if it has one.
fn coroutine_of<'py>(
    py: Python<'py>,
    coro: &Bound<'py, PyAny>,
) -> PyResult<(Py<PyAny>, Option<Bound<'py, PyAny>>)> {
    Ok(match awaitable_names(py, coro) {
        Some([code, _, _]) => {
            let code = coro.getattr(code)?;
            (code.clone().unbind(), Some(code))
        }
        None => (coro.get_type().into_any().unbind(), None),
    })
}

/// The qualified name of what [`coroutine_of`] kept.
fn coroutine_name<'py>(
    py: Python<'py>,
    coroutine: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    match coroutine.getattr(pyo3::intern!(py, "co_qualname")) {
        Ok(name) => Ok(name),
        Err(_) => coroutine.getattr(pyo3::intern!(py, "__qualname__")),
    }
}

/// The task a callback steps, if it is a task step: the C `Task`
/// schedules its `__wakeup` (a builtin method) and `TaskStepMethWrapper`
/// objects. Types are checked before any attribute is looked up: a failed
/// lookup costs an exception.
fn task_of<'py>(py: Python<'py>, callback: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: PyCFunction_Check only inspects the type; for a builtin
    // method PyCFunction_GET_SELF returns its borrowed `self` (or NULL);
    // the tp_name of a live object's type is a valid C string.
    let owner = unsafe {
        let ptr = callback.as_ptr();
        if ffi::PyCFunction_Check(ptr) != 0 {
            let owner = ffi::PyCFunction_GET_SELF(ptr);
            if owner.is_null() {
                return None;
            }
            Bound::from_borrowed_ptr(py, owner)
        } else if std::ffi::CStr::from_ptr((*ffi::Py_TYPE(ptr)).tp_name)
            .to_bytes()
            .ends_with(b"TaskStepMethWrapper")
        {
            callback.getattr(pyo3::intern!(py, "__self__")).ok()?
        } else {
            return None;
        }
    };
    let types = task_types(py).ok()?;
    owner.is_instance(types.as_any()).ok()?.then_some(owner)
}

/// At the start of an item: a [`Step`] if it is a task step.
pub fn begin(
    py: Python<'_>,
    observation: &Observation,
    item: &Ready,
) -> Option<Step> {
    let Ready::Callback(handle) = item else {
        return None;
    };
    let task = task_of(py, handle.callback(py)?.bind(py))?;
    let start_ns = clock::monotonic_ns();
    let mut slot = observation.steps.borrow_mut(py).ok()?;
    let recorder = slot.as_mut()?;
    let id = match recorder.entry(py, &task, start_ns) {
        Ok(entry) => entry.id,
        Err(err) => {
            err.write_unraisable(py, None);
            return None;
        }
    };
    recorder.running = id;
    Some(Step {
        key: task.as_ptr() as usize,
        task: task.unbind(),
        queued_ns: handle.queued_ns(),
        start_ns,
    })
}

/// At the end of a task step: its duration, and what the task waits on.
/// Returns the task's number (0 if it is no longer known).
pub fn end(py: Python<'_>, observation: &Observation, step: Step) -> u32 {
    let end_ns = clock::monotonic_ns();
    let task = step.task.bind(py);
    // A task awaiting a future is not done: done() is asked only otherwise.
    let future = task
        .getattr(pyo3::intern!(py, "_fut_waiter"))
        .unwrap_or_else(|_| py.None().into_bound(py));
    let done = future.is_none()
        && task
            .call_method0(pyo3::intern!(py, "done"))
            .and_then(|d| d.is_truthy())
            .unwrap_or(true);
    let Ok(mut slot) = observation.steps.borrow_mut(py) else {
        return 0;
    };
    let Some(recorder) = slot.as_mut() else {
        return 0;
    };
    recorder.running = 0;
    let coroutine = recorder.tasks.get(&step.key).map(|e| Top {
        coroutine: e.coroutine_object.clone_ref(py),
        code: e.coroutine.clone_ref(py),
        frame: e.frame.as_ref().map(|f| f.clone_ref(py)),
    });
    let wait = if done {
        None
    } else {
        match waits_on(py, recorder, &future, coroutine) {
            Ok(wait) => Some(wait),
            Err(err) => {
                err.write_unraisable(py, Some(task));
                None
            }
        }
    };
    let cancelled = done
        && task
            .call_method0(pyo3::intern!(py, "cancelled"))
            .and_then(|c| c.is_truthy())
            .unwrap_or(false);
    let Some(entry) = recorder.tasks.get_mut(&step.key) else {
        return 0;
    };
    let id = entry.id;
    let busy = end_ns - step.start_ns;
    entry.steps += 1;
    entry.busy_ns += busy;
    let queued_ns = if step.queued_ns > 0 && step.queued_ns <= step.start_ns {
        step.queued_ns
    } else {
        step.start_ns
    };
    entry.scheduled_ns += step.start_ns - queued_ns;
    entry.idle_ns += (queued_ns - entry.last_end_ns).max(0);
    if busy > entry.slowest_ns {
        entry.slowest_ns = busy;
        entry.slowest_at = entry
            .resumes_at
            .as_ref()
            .or_else(|| wait.as_ref().and_then(|w| w.at.as_ref()))
            .map(|p| p.clone_ref(py));
    }
    entry.last_end_ns = end_ns;
    entry.resumes_at = wait
        .as_ref()
        .and_then(|w| w.at.as_ref())
        .map(|p| p.clone_ref(py));
    if done {
        entry.done = true;
        entry.cancelled = cancelled;
        entry.coroutine_object = py.None();
        entry.frame = None;
        if let Some(entry) = recorder.tasks.remove(&step.key) {
            recorder.retire(entry);
        }
    }
    recorder.push(Event::Step {
        task: id,
        queued_ns,
        start_ns: step.start_ns,
        end_ns,
        wait,
        done,
    });
    id
}

/// A task's own coroutine, with what its entry keeps of it.
struct Top {
    coroutine: Py<PyAny>,
    code: Py<PyAny>,
    frame: Option<Py<PyAny>>,
}

/// What a suspended task waits on (see the module docs). The chain is
/// followed through user code down to the first library coroutine (what is
/// below that is the library's own business).
fn waits_on(
    py: Python<'_>,
    recorder: &mut StepRecorder,
    future: &Bound<'_, PyAny>,
    top: Option<Top>,
) -> PyResult<Wait> {
    let (future_type, future_task) = if future.is_none() {
        (None, 0)
    } else if future.is_instance(task_types(py)?.as_any())? {
        let id = recorder.entry(py, future, clock::monotonic_ns())?.id;
        (Some(future.get_type().into_any().unbind()), id)
    } else {
        (Some(future.get_type().into_any().unbind()), 0)
    };
    let mut at = None;
    let mut inner = None;
    let Some(top) = top else {
        return Ok(Wait {
            at,
            inner,
            future_type,
            future_task,
        });
    };
    let mut awaiting = top.coroutine.into_bound(py);
    let mut known = Some((top.code.into_bound(py), top.frame));
    for _ in 0..MAX_AWAIT_DEPTH {
        let Some([code_name, frame_name, awaits]) = awaitable_names(py, &awaiting) else {
            break;
        };
        let (code, frame) = match known.take() {
            Some((code, frame)) => (code, frame.map(|f| f.into_bound(py))),
            None => (awaiting.getattr(code_name)?, None),
        };
        if !recorder.is_user_code(py, &code)? {
            inner = Some(code.unbind());
            break;
        }
        let frame = match frame {
            Some(frame) => frame,
            None => awaiting.getattr(frame_name)?,
        };
        if let Some(offset) = frame_offset(&frame) {
            at = Some(Place {
                code: code.unbind(),
                offset,
            });
        }
        let next = awaiting.getattr(awaits)?;
        if next.is_none() {
            break;
        }
        awaiting = next;
    }
    Ok(Wait {
        at,
        inner,
        future_type,
        future_task,
    })
}

fn is_frame(frame: &Bound<'_, PyAny>) -> bool {
    // SAFETY: PyFrame_Check inspects the type of a live object only.
    unsafe { ffi::PyFrame_Check(frame.as_ptr()) != 0 }
}

/// The instruction offset a frame object is at (None for anything else,
/// such as the `None` of a finished coroutine).
fn frame_offset(frame: &Bound<'_, PyAny>) -> Option<i32> {
    // SAFETY: PyFrame_GetLasti reads a live frame object (checked to be
    // one, and kept alive by `frame`).
    is_frame(frame).then(|| unsafe { ffi::PyFrame_GetLasti(frame.as_ptr().cast()) })
}

/// The attribute names of a coroutine or a generator (code, frame, what
/// it awaits), interned once.
type AwaitableNames<'py> = [&'py Bound<'py, PyString>; 3];

/// Which kind of awaitable this is, by its type (None for anything else,
/// such as a future's iterator): a failed attribute lookup would cost an
/// exception.
fn awaitable_names<'py>(
    py: Python<'py>,
    awaitable: &Bound<'py, PyAny>,
) -> Option<AwaitableNames<'py>> {
    // SAFETY: the checks only inspect the type of a live object.
    unsafe {
        if ffi::PyCoro_CheckExact(awaitable.as_ptr()) != 0 {
            Some([
                pyo3::intern!(py, "cr_code"),
                pyo3::intern!(py, "cr_frame"),
                pyo3::intern!(py, "cr_await"),
            ])
        } else if ffi::PyGen_Check(awaitable.as_ptr()) != 0 {
            Some([
                pyo3::intern!(py, "gi_code"),
                pyo3::intern!(py, "gi_frame"),
                pyo3::intern!(py, "gi_yieldfrom"),
            ])
        } else {
            None
        }
    }
}

impl Observation {
    /// Stamps a queued callback with the time, while steps are recorded
    /// (for the time a task step waited for the loop).
    #[inline]
    pub fn stamp_queued(&self, handle: &crate::handles::HandleRef) {
        if self.is_on(super::Instrument::Steps) {
            handle.set_queued_ns(clock::monotonic_ns());
        }
    }

    /// A task was made (by `create_task`) while steps are recorded.
    pub fn task_created(&self, py: Python<'_>, task: &Bound<'_, PyAny>) -> PyResult<()> {
        if !self.is_on(super::Instrument::Steps) {
            return Ok(());
        }
        let mut slot = self.steps.borrow_mut(py)?;
        if let Some(recorder) = slot.as_mut() {
            recorder.entry(py, task, clock::monotonic_ns())?;
        }
        Ok(())
    }

    /// A blocking episode (of task step `task`, 0 if not one), for the
    /// timeline.
    pub fn record_blocking(&self, py: Python<'_>, task: u32, start_ns: i64, end_ns: i64) {
        if !self.is_on(super::Instrument::Steps) {
            return;
        }
        if let Ok(mut slot) = self.steps.borrow_mut(py) {
            if let Some(recorder) = slot.as_mut() {
                recorder.push(Event::Blocking {
                    task,
                    start_ns,
                    end_ns,
                });
            }
        }
    }

    /// A wait in the poller that may have blocked, for the timeline.
    pub fn record_poll(&self, py: Python<'_>, start_ns: i64, end_ns: i64) {
        if !self.is_on(super::Instrument::Steps) {
            return;
        }
        if let Ok(mut slot) = self.steps.borrow_mut(py) {
            if let Some(recorder) = slot.as_mut() {
                recorder.push(Event::Poll { start_ns, end_ns });
            }
        }
    }
}

fn secs(ns: i64) -> f64 {
    clock::ns_to_secs(ns)
}

fn entry_to_py<'py>(py: Python<'py>, entry: &TaskEntry) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    let task = entry.task.bind(py).upgrade();
    let name = match (&task, &entry.name) {
        (Some(task), _) => task.call_method0(pyo3::intern!(py, "get_name"))?,
        (None, Some(name)) => name.bind(py).clone(),
        (None, None) => format!("task {}", entry.id).into_pyobject(py)?.into_any(),
    };
    dict.set_item("id", entry.id)?;
    dict.set_item("task", task)?;
    dict.set_item("name", name)?;
    dict.set_item("coroutine", coroutine_name(py, entry.coroutine.bind(py))?)?;
    dict.set_item("library", entry.library)?;
    dict.set_item("parent", entry.parent)?;
    dict.set_item("created", secs(entry.created_ns))?;
    dict.set_item("steps", entry.steps)?;
    dict.set_item("busy", entry.busy_ns as f64 / 1e9)?;
    dict.set_item("scheduled", entry.scheduled_ns as f64 / 1e9)?;
    dict.set_item("idle", entry.idle_ns as f64 / 1e9)?;
    dict.set_item("slowest_step", (entry.slowest_ns.max(0)) as f64 / 1e9)?;
    dict.set_item(
        "slowest_at",
        entry.slowest_at.as_ref().map(|p| p.to_py(py)).transpose()?,
    )?;
    dict.set_item("done", entry.done)?;
    dict.set_item("cancelled", entry.cancelled)?;
    Ok(dict)
}

impl StepRecorder {
    /// Per-task statistics: live tasks, then finished ones.
    pub fn task_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for entry in self.tasks.values().chain(self.finished.iter()) {
            list.append(entry_to_py(py, entry)?)?;
        }
        Ok(list)
    }

    /// The recording, for `ferroloop._trace` to format: a dict with the
    /// tasks and the events as tuples (times in `loop.time()` seconds).
    pub fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let result = PyDict::new(py);
        result.set_item("started", secs(self.started_ns))?;
        result.set_item("ended", secs(clock::monotonic_ns()))?;
        result.set_item("tasks", self.task_stats(py)?)?;
        let events = PyList::empty(py);
        for event in &self.events {
            let item = match event {
                Event::Created {
                    task,
                    parent,
                    at_ns,
                } => ("created", *task, secs(*at_ns), *parent)
                    .into_pyobject(py)?
                    .into_any(),
                Event::Step {
                    task,
                    queued_ns,
                    start_ns,
                    end_ns,
                    wait,
                    done,
                } => {
                    let wait = match wait {
                        None => py.None().into_bound(py),
                        Some(w) => (
                            w.at.as_ref().map(|p| p.to_py(py)).transpose()?,
                            w.inner.as_ref().map(|c| c.bind(py).clone()),
                            w.future_type.as_ref().map(|t| t.bind(py).clone()),
                            w.future_task,
                        )
                            .into_pyobject(py)?
                            .into_any(),
                    };
                    (
                        "step",
                        *task,
                        secs(*queued_ns),
                        secs(*start_ns),
                        secs(*end_ns),
                        wait,
                        *done,
                    )
                        .into_pyobject(py)?
                        .into_any()
                }
                Event::Blocking {
                    task,
                    start_ns,
                    end_ns,
                } => ("blocking", *task, secs(*start_ns), secs(*end_ns))
                    .into_pyobject(py)?
                    .into_any(),
                Event::Poll { start_ns, end_ns } => ("poll", 0u32, secs(*start_ns), secs(*end_ns))
                    .into_pyobject(py)?
                    .into_any(),
            };
            events.append(item)?;
        }
        result.set_item("events", events)?;
        result.set_item("dropped_events", self.dropped_events)?;
        result.set_item("dropped_tasks", self.dropped_tasks)?;
        Ok(result)
    }
}
