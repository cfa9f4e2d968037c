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
//!
//! A step's end is accounted for later, after a few more steps or at the
//! end of the loop's batch ([`Observation::account_steps`]): the step only
//! notes its times. What the task waits on cannot change before the task
//! steps again, and that is never in the same batch (a wake-up is queued for
//! the next one; should a task step twice in one, its first step is
//! accounted for before the second begins). Done for a few steps in one go,
//! the await-chain walk stays in the instruction cache, where done between
//! steps, it and the interpreter's own step code kept evicting each other:
//! that eviction, not the instructions, was most of what tracing cost. A
//! few, not a whole batch: the tasks, coroutines and entries of the last
//! few dozen steps are still in the data caches, those of thousands are not
//! (callgrind with a 512 KiB last level, 5,000 tasks: 12 more misses a step
//! past it for batches of 1,024, 3 for 32).

use std::num::NonZeroU32;

use ferroloop_engine::{clock, IntMap};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList, PyTuple, PyType, PyWeakrefMethods, PyWeakrefReference};

use super::attributes::{self, Attributes};
use super::Observation;
use crate::io::Ready;

/// At most this many events are kept ([`Event`]'s size each).
const MAX_EVENTS: usize = 1 << 20;
/// Steps ended and not yet accounted for, at most (see the module docs).
const MAX_PENDING: usize = 32;
/// At most this many finished tasks keep their statistics.
const MAX_FINISHED: usize = 100_000;
/// How deep an await chain is followed.
const MAX_AWAIT_DEPTH: usize = 64;

/// An object the recorder names (a code object, a future's type): its
/// number in the recorder's table of them, which holds a reference to each
/// for as long as the recorder lives ([`StepRecorder::classify`] and
/// [`StepRecorder::known_type`] make them). So the events and the statistics
/// name objects without counting references, step after step, in four bytes.
#[derive(Clone, Copy)]
struct KnownObject(NonZeroU32);

/// The objects [`KnownObject`]s name.
struct KnownObjects(Vec<Py<PyAny>>);

impl KnownObjects {
    fn add(&mut self, object: Py<PyAny>) -> KnownObject {
        self.0.push(object);
        let number = u32::try_from(self.0.len()).ok().and_then(NonZeroU32::new);
        KnownObject(number.expect("fewer known objects than u32::MAX"))
    }

    fn bind<'py>(&self, py: Python<'py>, known: KnownObject) -> &Bound<'py, PyAny> {
        self.0[known.0.get() as usize - 1].bind(py)
    }
}

/// Where a task is suspended: a code object and the offset of the
/// instruction (its line is looked up when the recording is read, as
/// computing it costs more than the rest of a step's bookkeeping), or
/// [`Place::FIRST_LINE`] for a coroutine not started yet.
#[derive(Clone, Copy)]
struct Place {
    code: KnownObject,
    offset: i32,
}

impl Place {
    const FIRST_LINE: i32 = -1;

    fn line(self, py: Python<'_>, known: &KnownObjects) -> PyResult<i32> {
        let code = known.bind(py, self.code);
        if self.offset == Self::FIRST_LINE {
            return code.getattr(pyo3::intern!(py, "co_firstlineno"))?.extract();
        }
        // SAFETY: `code` is a code object (only code objects are kept in a
        // Place, checked when it is made); the call only reads it.
        Ok(unsafe { ffi::PyCode_Addr2Line(code.as_ptr().cast(), self.offset) })
    }

    fn to_py<'py>(self, py: Python<'py>, known: &KnownObjects) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(
            py,
            [
                known.bind(py, self.code).clone(),
                self.line(py, known)?.into_pyobject(py)?.into_any(),
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
    inner: Option<KnownObject>,
    /// The awaited future's type, and its task number if it is a task.
    future_type: Option<KnownObject>,
    future_task: u32,
}

// Events are most of what tracing writes to memory: kept small.
const _: () = assert!(std::mem::size_of::<Event>() <= 56);

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
    /// The same code object, if it is one.
    code: Option<KnownObject>,
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
    /// A step of this task ended and is not accounted for yet.
    pending: bool,
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
    /// The live tasks' entries, by task address: a number in `entries`,
    /// which steps carry from their start to their accounting, so that the
    /// address is looked up once a step.
    tasks: IntMap<usize, u32>,
    entries: Vec<Option<TaskEntry>>,
    /// Unused numbers in `entries`.
    free_entries: Vec<u32>,
    finished: Vec<TaskEntry>,
    dropped_tasks: u64,
    next_id: u32,
    /// The task whose step runs now, 0 if none.
    running: u32,
    /// Steps ended, in order, waiting to be accounted for.
    pending: Vec<Ended>,
    started_ns: i64,
    /// The objects named so far by address: code objects, with whether
    /// they are user code (not the standard library, not ferroloop), and
    /// future types.
    known_addresses: IntMap<usize, (KnownObject, bool)>,
    /// The code object classified last, by address (the await chains of a
    /// batch of steps tend to end in the same library coroutine).
    last_classified: Option<(usize, (KnownObject, bool))>,
    known: KnownObjects,
}

/// A step in progress.
pub struct Step<'py> {
    task: Bound<'py, PyAny>,
    /// Its number in [`StepRecorder::entries`].
    entry: u32,
    id: u32,
    queued_ns: i64,
    start_ns: i64,
}

/// A step that ended, not yet accounted for.
struct Ended {
    task: Py<PyAny>,
    entry: u32,
    queued_ns: i64,
    start_ns: i64,
    end_ns: i64,
}

impl StepRecorder {
    pub fn new(tracing: bool) -> Self {
        StepRecorder {
            tracing,
            events: Vec::new(),
            dropped_events: 0,
            tasks: IntMap::default(),
            entries: Vec::new(),
            free_entries: Vec::new(),
            finished: Vec::new(),
            dropped_tasks: 0,
            next_id: 1,
            running: 0,
            pending: Vec::new(),
            started_ns: clock::monotonic_ns(),
            known_addresses: IntMap::default(),
            last_classified: None,
            known: KnownObjects(Vec::new()),
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

    /// The number of `task`'s entry, made on first sight. A dead entry under
    /// the same address (the task was collected and the memory reused) is
    /// retired.
    fn entry(&mut self, py: Python<'_>, task: &Bound<'_, PyAny>, at_ns: i64) -> PyResult<u32> {
        let key = task.as_ptr() as usize;
        if let Some(&number) = self.tasks.get(&key) {
            if self
                .entry_mut(number)
                .is_some_and(|entry| refers_to(&entry.task, task))
            {
                return Ok(number);
            }
            self.tasks.remove(&key);
            self.retire(py, number);
        }
        self.insert_entry(py, task, key, at_ns)
    }

    fn entry_mut(&mut self, number: u32) -> Option<&mut TaskEntry> {
        self.entries.get_mut(number as usize)?.as_mut()
    }

    /// Makes the entry of a task seen for the first time (out of line: the
    /// hot path of [`StepRecorder::entry`] is a lookup).
    #[inline(never)]
    fn insert_entry(
        &mut self,
        py: Python<'_>,
        task: &Bound<'_, PyAny>,
        key: usize,
        at_ns: i64,
    ) -> PyResult<u32> {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let coroutine_object = Attributes::get(py)?.coro.read(task)?;
        let (coroutine, code) = coroutine_of(py, &coroutine_object)?;
        let (code, library) = match &code {
            Some(code) => {
                let (known, user) = self.classify(py, code)?;
                (Some(known), !user)
            }
            None => (None, false),
        };
        // The first step starts at the top of the coroutine.
        let resumes_at = code.map(|code| Place {
            code,
            offset: Place::FIRST_LINE,
        });
        // Its frame, kept: every step looks at it.
        let frame = match (Attributes::get(py)?.awaitable(&coroutine_object), library) {
            (Some(awaitable), false) => {
                let frame = awaitable.frame.read(&coroutine_object)?;
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
            code,
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
            pending: false,
        };
        let number = match self.free_entries.pop() {
            Some(number) => {
                self.entries[number as usize] = Some(entry);
                number
            }
            None => {
                self.entries.push(Some(entry));
                u32::try_from(self.entries.len() - 1).expect("fewer live tasks than u32::MAX")
            }
        };
        self.tasks.insert(key, number);
        self.push(Event::Created {
            task: id,
            parent,
            at_ns,
        });
        Ok(number)
    }

    /// Moves entry `number` (its task's address is no longer in `tasks`)
    /// to the finished ones.
    #[inline(never)]
    fn retire(&mut self, py: Python<'_>, number: u32) {
        let Some(mut entry) = self.entries.get_mut(number as usize).and_then(Option::take) else {
            return;
        };
        self.free_entries.push(number);
        // A name set after creation (asyncio.create_task's `name=` on 3.11
        // is set after the task is made) is taken now.
        entry.refresh_name(py);
        if self.finished.len() < MAX_FINISHED {
            self.finished.push(entry);
        } else {
            self.dropped_tasks += 1;
        }
    }

    /// Whether code object `code` is user code, and the `KnownObject` that
    /// names it from now on.
    fn classify(
        &mut self,
        py: Python<'_>,
        code: &Bound<'_, PyAny>,
    ) -> PyResult<(KnownObject, bool)> {
        let key = code.as_ptr() as usize;
        if let Some((last, known)) = self.last_classified {
            if last == key {
                return Ok(known);
            }
        }
        if let Some(&known) = self.known_addresses.get(&key) {
            self.last_classified = Some((key, known));
            return Ok(known);
        }
        let user = IS_USER_CODE
            .import(py, "ferroloop._trace", "is_user_code")?
            .call1((code,))?
            .is_truthy()?;
        let known = (self.known.add(code.clone().unbind()), user);
        self.known_addresses.insert(key, known);
        Ok(known)
    }

    /// The `KnownObject` that names type `ty`.
    fn known_type(&mut self, ty: &Bound<'_, PyType>) -> KnownObject {
        let key = ty.as_ptr() as usize;
        if let Some(&(known, _)) = self.known_addresses.get(&key) {
            return known;
        }
        let known = self.known.add(ty.clone().into_any().unbind());
        self.known_addresses.insert(key, (known, false));
        known
    }
}

/// Whether `weak` refers to `obj`: a live object's address is its own
/// (a dead referent's memory may hold another object).
fn refers_to(weak: &Py<PyWeakrefReference>, obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `weak` is a live weak reference object, whose `wr_object` is
    // its referent while that lives and `None` from its death on (CPython's
    // weakrefobject.h); the pointer is compared, not followed.
    unsafe { (*weak.as_ptr().cast::<ffi::PyWeakReference>()).wr_object == obj.as_ptr() }
}

static IS_USER_CODE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// What names a task's coroutine (its code object, or its type), and the
/// code object if it has one.
fn coroutine_of<'py>(
    py: Python<'py>,
    coro: &Bound<'py, PyAny>,
) -> PyResult<(Py<PyAny>, Option<Bound<'py, PyAny>>)> {
    Ok(match Attributes::get(py)?.awaitable(coro) {
        Some(awaitable) => {
            let code = awaitable.code(coro)?;
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
    // The step wrapper's test comes first: an exact type test, where the
    // builtin-method test of anything else is a subtype walk.
    // SAFETY: PyCFunction_Check only inspects the type; for a builtin
    // method PyCFunction_GET_SELF returns its borrowed `self` (or NULL);
    // the tp_name of a live object's type is a valid C string.
    let owner = unsafe {
        let ptr = callback.as_ptr();
        if let Some(owner) = attributes::known_step_owner(callback) {
            owner.ok()?
        } else if ffi::PyCFunction_Check(ptr) != 0 {
            let owner = ffi::PyCFunction_GET_SELF(ptr);
            if owner.is_null() {
                return None;
            }
            Bound::from_borrowed_ptr(py, owner)
        } else if std::ffi::CStr::from_ptr((*ffi::Py_TYPE(ptr)).tp_name)
            .to_bytes()
            .ends_with(b"TaskStepMethWrapper")
        {
            attributes::step_owner(callback).ok()?
        } else {
            return None;
        }
    };
    Attributes::get(py).ok()?.is_task(&owner).then_some(owner)
}

/// At the start of an item: a [`Step`] if it is a task step.
pub fn begin<'py>(py: Python<'py>, observation: &Observation, item: &Ready) -> Option<Step<'py>> {
    let Ready::Callback(handle) = item else {
        return None;
    };
    let task = task_of(py, &handle.callback(py)?.into_bound(py))?;
    let start_ns = clock::monotonic_ns();
    let mut slot = observation.steps.borrow_mut(py).ok()?;
    let recorder = slot.as_mut()?;
    let number = match recorder.entry(py, &task, start_ns) {
        Ok(number) => number,
        Err(err) => {
            err.write_unraisable(py, None);
            return None;
        }
    };
    let entry = recorder.entry_mut(number)?;
    let (id, pending) = (entry.id, entry.pending);
    if pending {
        // Its previous step ended in this batch: accounted for first.
        recorder.account(py);
    }
    recorder.running = id;
    Some(Step {
        task,
        entry: number,
        id,
        queued_ns: handle.queued_ns(),
        start_ns,
    })
}

/// At the end of a task step: its times, noted to be accounted for at the
/// end of the batch. Returns the task's number.
pub fn end(py: Python<'_>, observation: &Observation, step: Step<'_>) -> u32 {
    let end_ns = clock::monotonic_ns();
    let Ok(mut slot) = observation.steps.borrow_mut(py) else {
        return step.id;
    };
    let Some(recorder) = slot.as_mut() else {
        return step.id;
    };
    recorder.running = 0;
    if let Some(entry) = recorder.entry_mut(step.entry) {
        entry.pending = true;
    }
    recorder.pending.push(Ended {
        task: step.task.unbind(),
        entry: step.entry,
        queued_ns: step.queued_ns,
        start_ns: step.start_ns,
        end_ns,
    });
    if recorder.pending.len() >= MAX_PENDING {
        recorder.account(py);
    }
    step.id
}

impl StepRecorder {
    /// Accounts for the steps that ended since the last time.
    pub fn account(&mut self, py: Python<'_>) {
        if self.pending.is_empty() {
            return;
        }
        let Ok(attributes) = Attributes::get(py) else {
            self.pending.clear();
            return;
        };
        let mut pending = std::mem::take(&mut self.pending);
        for ended in pending.drain(..) {
            account_step(py, attributes, self, ended);
        }
        // The (empty) vector is kept for its room.
        if self.pending.is_empty() {
            self.pending = pending;
        }
    }
}

/// A step's duration, and what the task waits on since.
fn account_step(py: Python<'_>, attributes: &Attributes, recorder: &mut StepRecorder, step: Ended) {
    let end_ns = step.end_ns;
    let task = step.task.into_bound(py);
    let task = &task;
    let future = attributes
        .fut_waiter
        .read(task)
        .unwrap_or_else(|_| py.None().into_bound(py));
    // A task awaiting a future is not done.
    let (done, cancelled) = if future.is_none() {
        attributes.outcome(task)
    } else {
        (false, false)
    };
    let Some(entry) = recorder
        .entry_mut(step.entry)
        .filter(|entry| refers_to(&entry.task, task))
    else {
        return;
    };
    let coroutine = Top {
        coroutine: entry.coroutine_object.bind(py).clone(),
        code: entry.code.map(|code| (code, !entry.library)),
        frame: entry.frame.as_ref().map(|f| f.bind(py).clone()),
    };
    let wait = if done {
        None
    } else {
        match waits_on(py, attributes, recorder, &future, coroutine) {
            Ok(wait) => Some(wait),
            Err(err) => {
                err.write_unraisable(py, Some(task));
                None
            }
        }
    };
    let Some(entry) = recorder.entry_mut(step.entry) else {
        return;
    };
    entry.pending = false;
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
            .or_else(|| wait.as_ref().and_then(|w| w.at));
    }
    entry.last_end_ns = end_ns;
    entry.resumes_at = wait.as_ref().and_then(|w| w.at);
    if done {
        entry.done = true;
        entry.cancelled = cancelled;
        entry.coroutine_object = py.None();
        entry.frame = None;
        recorder.tasks.remove(&(task.as_ptr() as usize));
        recorder.retire(py, step.entry);
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

/// A task's own coroutine, with what its entry keeps of it.
struct Top<'py> {
    coroutine: Bound<'py, PyAny>,
    /// Its code, and whether that is user code, if it is a coroutine.
    code: Option<(KnownObject, bool)>,
    frame: Option<Bound<'py, PyAny>>,
}

/// What a suspended task waits on (see the module docs). The chain is
/// followed through user code down to the first library coroutine (what is
/// below that is the library's own business).
fn waits_on(
    py: Python<'_>,
    attributes: &Attributes,
    recorder: &mut StepRecorder,
    future: &Bound<'_, PyAny>,
    top: Top<'_>,
) -> PyResult<Wait> {
    let future_type = (!future.is_none()).then(|| recorder.known_type(&future.get_type()));
    let future_task = if future_type.is_some() && attributes.is_task(future) {
        let number = recorder.entry(py, future, clock::monotonic_ns())?;
        recorder.entry_mut(number).map_or(0, |entry| entry.id)
    } else {
        0
    };
    let mut at = None;
    let mut inner = None;
    let mut awaiting = top.coroutine;
    // The task's own coroutine is known from its entry.
    let mut known = top.code.map(|code| (code, top.frame));
    for _ in 0..MAX_AWAIT_DEPTH {
        let Some(attribute) = attributes.awaitable(&awaiting) else {
            break;
        };
        let ((code, user), frame) = match known.take() {
            Some((code, frame)) => (code, frame),
            None => (recorder.classify(py, &attribute.code(&awaiting)?)?, None),
        };
        if !user {
            inner = Some(code);
            break;
        }
        let frame = match frame {
            Some(frame) => frame,
            None => attribute.frame.read(&awaiting)?,
        };
        if let Some(offset) = frame_offset(&frame) {
            at = Some(Place { code, offset });
        }
        let next = attribute.awaits.read(&awaiting)?;
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

impl Observation {
    /// Stamps a queued callback with the time, while steps are recorded
    /// (for the time a task step waited for the loop).
    #[inline]
    pub fn stamp_queued(&self, handle: &crate::handles::HandleRef) {
        if self.is_on(super::Instrument::Steps) {
            handle.set_queued_ns(clock::monotonic_ns());
        }
    }

    /// Accounts for the task steps that ended in the batch just run.
    pub fn account_steps(&self, py: Python<'_>) {
        if !self.is_on(super::Instrument::Steps) {
            return;
        }
        if let Ok(mut slot) = self.steps.borrow_mut(py) {
            if let Some(recorder) = slot.as_mut() {
                recorder.account(py);
            }
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

fn entry_to_py<'py>(
    py: Python<'py>,
    known: &KnownObjects,
    entry: &TaskEntry,
) -> PyResult<Bound<'py, PyDict>> {
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
        entry.slowest_at.map(|p| p.to_py(py, known)).transpose()?,
    )?;
    dict.set_item("done", entry.done)?;
    dict.set_item("cancelled", entry.cancelled)?;
    Ok(dict)
}

impl StepRecorder {
    /// Per-task statistics: live tasks, then finished ones.
    pub fn task_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for entry in self.entries.iter().flatten().chain(self.finished.iter()) {
            list.append(entry_to_py(py, &self.known, entry)?)?;
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
                            w.at.map(|p| p.to_py(py, &self.known)).transpose()?,
                            w.inner.map(|c| self.known.bind(py, c)),
                            w.future_type.map(|t| self.known.bind(py, t)),
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
