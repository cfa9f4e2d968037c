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
use pyo3::types::{PyDict, PyList, PyTuple, PyWeakrefMethods, PyWeakrefReference};

use super::Observation;
use crate::queue_items::Ready;

/// At most this many events are kept (about 64 bytes each).
const MAX_EVENTS: usize = 1 << 20;
/// At most this many finished tasks keep their statistics.
const MAX_FINISHED: usize = 100_000;
/// How deep an await chain is followed.
const MAX_AWAIT_DEPTH: usize = 64;

/// Where a task is suspended: a code object and a line.
struct Place {
    code: Py<PyAny>,
    line: i32,
}

impl Place {
    fn to_py<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, [self.code.bind(py).clone(), self.line.into_pyobject(py)?.into_any()])
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
    Created { task: u32, parent: u32, at_ns: i64 },
    Step { task: u32, queued_ns: i64, start_ns: i64, end_ns: i64, wait: Option<Wait>, done: bool },
    Blocking { task: u32, start_ns: i64, end_ns: i64 },
    Poll { start_ns: i64, end_ns: i64 },
}

struct TaskEntry {
    id: u32,
    task: Py<PyWeakrefReference>,
    name: Py<PyAny>,
    coroutine: Py<PyAny>,
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
                self.name = name.unbind();
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
    fn entry(&mut self, py: Python<'_>, task: &Bound<'_, PyAny>, at_ns: i64) -> PyResult<&mut TaskEntry> {
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
            let name = task.call_method0(pyo3::intern!(py, "get_name"))?.unbind();
            let (coroutine, code) = coroutine_name(py, task)?;
            let library = match &code {
                Some(code) => !self.is_user_code(py, code)?,
                None => false,
            };
            // The first step starts at the top of the coroutine.
            let resumes_at = match code {
                Some(code) => {
                    let line = code.getattr(pyo3::intern!(py, "co_firstlineno"))?.extract()?;
                    Some(Place { code: code.unbind(), line })
                }
                None => None,
            };
            let parent = self.running;
            let entry = TaskEntry {
                id,
                task: PyWeakrefReference::new(task)?.unbind(),
                name,
                coroutine,
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
            self.push(Event::Created { task: id, parent, at_ns });
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
        let user = helper(py, &IS_USER_CODE, "is_user_code")?
            .call1((code,))?
            .is_truthy()?;
        self.user_code.insert(key, (code.clone().unbind(), user));
        Ok(user)
    }
}

fn helper<'py>(
    py: Python<'py>,
    cell: &'static PyOnceLock<Py<PyAny>>,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    Ok(cell
        .get_or_try_init(py, || py.import("ferroloop._trace")?.getattr(name).map(Bound::unbind))?
        .bind(py)
        .clone())
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

/// The qualified name of a task's coroutine, and its code object.
fn coroutine_name<'py>(
    py: Python<'py>,
    task: &Bound<'py, PyAny>,
) -> PyResult<(Py<PyAny>, Option<Bound<'py, PyAny>>)> {
    let coro = task.call_method0(pyo3::intern!(py, "get_coro"))?;
    let name = match coro.getattr(pyo3::intern!(py, "__qualname__")) {
        Ok(name) => name.unbind(),
        Err(_) => coro.get_type().name()?.into_any().unbind(),
    };
    Ok((name, code_and_frame(py, &coro)?.map(|(code, _)| code)))
}

/// The task a callback steps, if it is a task step.
fn task_of<'py>(py: Python<'py>, callback: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: PyCFunction_Check only inspects the type; for a builtin
    // method PyCFunction_GET_SELF returns its borrowed `self` (or NULL).
    let owner = unsafe {
        if ffi::PyCFunction_Check(callback.as_ptr()) != 0 {
            let owner = ffi::PyCFunction_GET_SELF(callback.as_ptr());
            if owner.is_null() {
                return None;
            }
            Bound::from_borrowed_ptr(py, owner)
        } else {
            callback.getattr(pyo3::intern!(py, "__self__")).ok()?
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
    subject: Option<&Py<PyAny>>,
) -> Option<Step> {
    let Ready::Callback(handle) = item else {
        return None;
    };
    let task = task_of(py, subject?.bind(py))?;
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
pub fn end(py: Python<'_>, observation: &Observation, step: Step) {
    let end_ns = clock::monotonic_ns();
    let task = step.task.bind(py);
    let done = task
        .call_method0(pyo3::intern!(py, "done"))
        .and_then(|d| d.is_truthy())
        .unwrap_or(true);
    let Ok(mut slot) = observation.steps.borrow_mut(py) else {
        return;
    };
    let Some(recorder) = slot.as_mut() else {
        return;
    };
    recorder.running = 0;
    let wait = if done {
        None
    } else {
        match waits_on(py, recorder, task) {
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
        return;
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
        entry.slowest_at = entry.resumes_at.as_ref().map(|p| Place {
            code: p.code.clone_ref(py),
            line: p.line,
        });
        if entry.slowest_at.is_none() {
            entry.slowest_at = wait.as_ref().and_then(|w| w.at.as_ref()).map(|p| Place {
                code: p.code.clone_ref(py),
                line: p.line,
            });
        }
    }
    entry.last_end_ns = end_ns;
    entry.resumes_at = wait.as_ref().and_then(|w| w.at.as_ref()).map(|p| Place {
        code: p.code.clone_ref(py),
        line: p.line,
    });
    if done {
        entry.done = true;
        entry.cancelled = cancelled;
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
}

/// What a suspended task waits on (see the module docs).
fn waits_on(py: Python<'_>, recorder: &mut StepRecorder, task: &Bound<'_, PyAny>) -> PyResult<Wait> {
    let future = task.getattr(pyo3::intern!(py, "_fut_waiter"))?;
    let (future_type, future_task) = if future.is_none() {
        (None, 0)
    } else if future.is_instance(task_types(py)?.as_any())? {
        let id = recorder.entry(py, &future, clock::monotonic_ns())?.id;
        (Some(future.get_type().into_any().unbind()), id)
    } else {
        (Some(future.get_type().into_any().unbind()), 0)
    };
    let mut awaiting = task.call_method0(pyo3::intern!(py, "get_coro"))?;
    let mut at = None;
    let mut inner = None;
    for _ in 0..MAX_AWAIT_DEPTH {
        let Some((code, frame)) = code_and_frame(py, &awaiting)? else {
            break;
        };
        if recorder.is_user_code(py, &code)? {
            if !frame.is_none() {
                let line: i32 = frame.getattr(pyo3::intern!(py, "f_lineno"))?.extract().unwrap_or(0);
                at = Some(Place { code: code.clone().unbind(), line });
            }
            inner = None;
        } else if inner.is_none() {
            inner = Some(code.clone().unbind());
        }
        let next = match awaiting.getattr(pyo3::intern!(py, "cr_await")) {
            Ok(next) => next,
            Err(_) => match awaiting.getattr(pyo3::intern!(py, "gi_yieldfrom")) {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        if next.is_none() {
            break;
        }
        awaiting = next;
    }
    Ok(Wait { at, inner, future_type, future_task })
}

/// The code object and frame of a coroutine or generator (None for
/// anything else, such as a future's iterator).
fn code_and_frame<'py>(
    py: Python<'py>,
    awaitable: &Bound<'py, PyAny>,
) -> PyResult<Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>> {
    if let Ok(code) = awaitable.getattr(pyo3::intern!(py, "cr_code")) {
        return Ok(Some((code, awaitable.getattr(pyo3::intern!(py, "cr_frame"))?)));
    }
    if let Ok(code) = awaitable.getattr(pyo3::intern!(py, "gi_code")) {
        return Ok(Some((code, awaitable.getattr(pyo3::intern!(py, "gi_frame"))?)));
    }
    Ok(None)
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

    /// A blocking episode, for the timeline.
    pub fn record_blocking(&self, py: Python<'_>, start_ns: i64, end_ns: i64) {
        if !self.is_on(super::Instrument::Steps) {
            return;
        }
        if let Ok(mut slot) = self.steps.borrow_mut(py) {
            if let Some(recorder) = slot.as_mut() {
                let task = recorder.running;
                recorder.push(Event::Blocking { task, start_ns, end_ns });
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
    let name = match &task {
        Some(task) => task.call_method0(pyo3::intern!(py, "get_name"))?,
        None => entry.name.bind(py).clone(),
    };
    dict.set_item("id", entry.id)?;
    dict.set_item("task", task)?;
    dict.set_item("name", name)?;
    dict.set_item("coroutine", entry.coroutine.bind(py))?;
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
                Event::Created { task, parent, at_ns } => {
                    ("created", *task, secs(*at_ns), *parent).into_pyobject(py)?.into_any()
                }
                Event::Step { task, queued_ns, start_ns, end_ns, wait, done } => {
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
                Event::Blocking { task, start_ns, end_ns } => {
                    ("blocking", *task, secs(*start_ns), secs(*end_ns)).into_pyobject(py)?.into_any()
                }
                Event::Poll { start_ns, end_ns } => {
                    ("poll", 0u32, secs(*start_ns), secs(*end_ns)).into_pyobject(py)?.into_any()
                }
            };
            events.append(item)?;
        }
        result.set_item("events", events)?;
        result.set_item("dropped_events", self.dropped_events)?;
        result.set_item("dropped_tasks", self.dropped_tasks)?;
        Ok(result)
    }
}
