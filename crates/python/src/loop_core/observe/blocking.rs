//! The blocking detector: a watchdog thread that notices an item holding
//! the loop longer than a threshold, captures the loop thread's Python stack
//! while it is still blocked, and a report when the item ends.
//!
//! Why this way: a callback costs 0.1–0.25 µs here, so reading the clock per
//! item (≈ 40 ns) or calling Python per item would cost far more than the
//! 5 % budget. Instead the loop publishes, per item, a sequence number and a
//! pointer to what it runs ([`Monitor::begin_item`]: three plain atomic
//! stores, no reference taken) and clears the number when the item ends
//! ([`Monitor::end_item`]: one store). It tests nothing there: a claim is
//! signalled in the instruments' flags, which the loop tests per item
//! anyway, so it finds the claim as the next item begins or the batch ends
//! (a test at each item's end cost more than the three stores, measured).
//! Waiting in the poller leaves the number at 0, so waiting is never taken
//! for blocking.
//!
//! The watchdog samples the number every threshold/8 (at least 1 ms apart),
//! without the GIL. An item seen at two samples at least `threshold` apart
//! has run at least that long (no false reports for shorter ones); the
//! watchdog then *claims* it, attaches to the interpreter (at once if the
//! item sleeps without the GIL, within the switch interval if it computes)
//! and, if the item is still the one running, captures the loop thread's
//! stack (`sys._current_frames()`), which shows the blocking line, and takes
//! a reference to what the item runs, which names it in the report. The
//! loop, finding the claim right after the item ended, reads the clock and
//! reports: the end is exact to the loop's own work between two items; the
//! start is the last sample that did not see the item, so the reported
//! duration is never less than the real one and at most one sampling period
//! more.
//!
//! A claim found later (the watchdog's store and the item's end crossing
//! within nanoseconds, so that another item began first) is reported with
//! the watchdog's time after its claim as the end (still an upper bound).

use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ferroloop_engine::clock;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use super::Instrument;
use crate::io::Ready;
use crate::loop_core::LoopCore;

/// The low bit of a published subject: set for a callback object, clear
/// for an item. Neither has it set: a `Ready` holds pointers, and CPython
/// allocates objects at least 8-aligned.
const CALLBACK_TAG: usize = 1;

/// Samples per threshold, and the shortest sampling period.
const SAMPLES_PER_THRESHOLD: i64 = 8;
const MIN_PERIOD_NS: i64 = 1_000_000;

/// What the loop thread and the watchdog share.
pub struct Monitor {
    /// Which instruments are on, as bits of [`Instrument`]: here because
    /// the watchdog sets [`Instrument::ClaimPending`].
    instruments: AtomicU8,
    /// The sequence number of the item running, 0 when none is.
    running: AtomicU64,
    /// The last number handed out (written by the loop thread only).
    last_sequence: AtomicU64,
    /// What the running item runs, as [`Monitor::begin_item`] publishes it:
    /// valid only while `running` holds its number, and only read while
    /// attached to the interpreter. Naming it is left to the watchdog, which
    /// needs it once in a long while; the loop only stores a pointer.
    subject: AtomicPtr<()>,
    /// The item the watchdog claimed (held the loop ≥ threshold), 0 if none.
    claimed: AtomicU64,
    /// The claimed item started after this (ns, CLOCK_MONOTONIC).
    claimed_start_ns: AtomicI64,
    /// The watchdog's clock right after it claimed (bounds a missed end).
    claimed_at_ns: AtomicI64,
    /// What the watchdog captured of the claimed item, if it could.
    captured: Mutex<Option<(u64, Py<PyAny>)>>,
    control: Mutex<Control>,
    wake: Condvar,
}

struct Control {
    threshold_ns: i64,
    shutdown: bool,
    /// Set while the loop runs: when it started, and the thread running it.
    running_since: Option<(i64, u64)>,
    /// Bumped at each start, so the watchdog forgets the previous run.
    generation: u64,
}

/// A claim taken by the loop once the claimed item ended.
pub struct Claim {
    sequence: u64,
    start_ns: i64,
    end_ns: i64,
    captured: Option<Py<PyAny>>,
    /// What the report names: what the claimed item ran, when the loop
    /// still had it as the item ended (see [`Claim::name_if_about`]).
    subject: Option<Py<PyAny>>,
}

impl Claim {
    /// Names what item `sequence` ran in the report, if the claim is about
    /// that item (a claim the loop missed is about an earlier one).
    pub fn name_if_about(&mut self, sequence: u64, subject: impl FnOnce() -> Option<Py<PyAny>>) {
        if self.sequence == sequence {
            self.subject = subject();
        }
    }
}

impl Monitor {
    pub fn new() -> Self {
        Monitor {
            instruments: AtomicU8::new(0),
            running: AtomicU64::new(0),
            last_sequence: AtomicU64::new(0),
            subject: AtomicPtr::new(std::ptr::null_mut()),
            claimed: AtomicU64::new(0),
            claimed_start_ns: AtomicI64::new(0),
            claimed_at_ns: AtomicI64::new(0),
            captured: Mutex::new(None),
            control: Mutex::new(Control {
                threshold_ns: 0,
                shutdown: false,
                running_since: None,
                generation: 0,
            }),
            wake: Condvar::new(),
        }
    }

    /// The loop thread, as an item starts. It publishes the item itself
    /// (on the loop thread's stack; a transport or a socket operation it
    /// names outlives it), or for a callback item the callback, which the
    /// handle lets go of as it runs. `item` must stay where it is, and a
    /// callback item's callback stay alive, until [`Monitor::end_item`].
    #[inline]
    pub fn begin_item(&self, item: &Ready) -> u64 {
        let sequence = self.last_sequence.load(Ordering::Relaxed) + 1;
        self.last_sequence.store(sequence, Ordering::Relaxed);
        let subject = match item {
            Ready::Callback(handle) => handle
                .callback_ptr()
                .cast::<()>()
                .map_addr(|address| address | CALLBACK_TAG),
            item => (item as *const Ready).cast_mut().cast::<()>(),
        };
        self.subject.store(subject, Ordering::Relaxed);
        self.running.store(sequence, Ordering::Release);
        sequence
    }

    /// The instruments' flags (see [`super::Observation`]).
    #[inline(always)]
    pub fn instruments(&self) -> u8 {
        self.instruments.load(Ordering::Relaxed)
    }

    pub fn set_instrument(&self, instrument: Instrument, on: bool) {
        if on {
            self.instruments
                .fetch_or(instrument as u8, Ordering::Relaxed);
        } else {
            self.instruments
                .fetch_and(!(instrument as u8), Ordering::Relaxed);
        }
    }

    /// The loop thread, as the item it began last ends. The item's pointer
    /// is withdrawn: after this the watchdog no longer reads it.
    #[inline(always)]
    pub fn end_item(&self) {
        self.running.store(0, Ordering::Release);
    }

    /// The loop thread, with no item running (as one begins, or the batch
    /// ended): the claim the watchdog signalled, if it is still there.
    #[cold]
    pub fn take_pending_claim(&self) -> Option<Box<Claim>> {
        // The flag first, then the number: a claim stored after the swap
        // sets the flag again, and is found next time.
        self.instruments
            .fetch_and(!(Instrument::ClaimPending as u8), Ordering::Acquire);
        let claimed = self.claimed.swap(0, Ordering::Acquire);
        if claimed == 0 {
            return None;
        }
        // No item has begun since the claimed one: it has just ended.
        let just_ended = claimed == self.last_sequence.load(Ordering::Relaxed);
        Some(self.take_claim(claimed, just_ended))
    }

    /// A claim on item `claimed`, already taken out of `claimed`.
    #[cold]
    fn take_claim(&self, claimed: u64, just_ended: bool) -> Box<Claim> {
        let end_ns = if just_ended {
            clock::monotonic_ns()
        } else {
            self.claimed_at_ns.load(Ordering::Relaxed)
        };
        let captured = lock(&self.captured)
            .take()
            .filter(|(sequence, _)| *sequence == claimed)
            .map(|(_, captured)| captured);
        Box::new(Claim {
            sequence: claimed,
            start_ns: self.claimed_start_ns.load(Ordering::Relaxed),
            end_ns,
            captured,
            subject: None,
        })
    }

    /// The loop starts running (`run_forever`) on thread `ident`.
    pub fn loop_started(&self, ident: u64) {
        let mut control = lock(&self.control);
        control.running_since = Some((clock::monotonic_ns(), ident));
        control.generation += 1;
        self.wake.notify_all();
    }

    /// The loop stopped; a claim still pending is handed back to report.
    pub fn loop_stopped(&self) -> Option<Box<Claim>> {
        lock(&self.control).running_since = None;
        self.take_pending_claim()
    }

    fn set_threshold(&self, threshold_ns: i64) {
        lock(&self.control).threshold_ns = threshold_ns;
        self.wake.notify_all();
    }

    fn shut_down(&self) {
        lock(&self.control).shutdown = true;
        self.wake.notify_all();
    }
}

/// A poisoned lock only means a panic elsewhere; the data is plain values.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The watchdog thread of one loop.
pub struct Watchdog {
    monitor: Arc<Monitor>,
    thread: Option<JoinHandle<()>>,
}

impl Watchdog {
    pub fn start(monitor: &Arc<Monitor>, threshold: Duration) -> std::io::Result<Watchdog> {
        let threshold_ns = i64::try_from(threshold.as_nanos()).unwrap_or(i64::MAX);
        {
            let mut control = lock(&monitor.control);
            control.shutdown = false;
            control.threshold_ns = threshold_ns;
        }
        let shared = Arc::clone(monitor);
        let thread = std::thread::Builder::new()
            .name("ferroloop-watchdog".into())
            .spawn(move || watch(&shared))?;
        Ok(Watchdog {
            monitor: Arc::clone(monitor),
            thread: Some(thread),
        })
    }

    pub fn set_threshold(&self, threshold: Duration) {
        self.monitor
            .set_threshold(i64::try_from(threshold.as_nanos()).unwrap_or(i64::MAX));
    }

    /// Stops the thread and waits for it, with the interpreter released
    /// (the watchdog may be waiting to attach).
    pub fn stop(mut self, py: Python<'_>) {
        self.monitor.shut_down();
        if let Some(thread) = self.thread.take() {
            py.detach(|| drop(thread.join()));
        }
    }
}

impl Drop for Watchdog {
    /// Without an interpreter token the thread is only told to stop; it ends
    /// on its own (it holds its own reference to the monitor).
    fn drop(&mut self) {
        self.monitor.shut_down();
    }
}

/// What the watchdog remembers between samples.
struct Sampling {
    generation: u64,
    previous_sample_ns: i64,
    seen: u64,
    seen_first_ns: i64,
    seen_after_ns: i64,
    claimed: u64,
}

fn watch(monitor: &Monitor) {
    let mut sampling = Sampling {
        generation: 0,
        previous_sample_ns: 0,
        seen: 0,
        seen_first_ns: 0,
        seen_after_ns: 0,
        claimed: 0,
    };
    let mut control = lock(&monitor.control);
    loop {
        if control.shutdown {
            return;
        }
        let Some((started_ns, thread_ident)) = control.running_since else {
            control = monitor
                .wake
                .wait(control)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            continue;
        };
        if sampling.generation != control.generation {
            sampling = Sampling {
                generation: control.generation,
                previous_sample_ns: started_ns,
                seen: 0,
                seen_first_ns: 0,
                seen_after_ns: 0,
                claimed: 0,
            };
        }
        let threshold_ns = control.threshold_ns.max(1);
        let period_ns = (threshold_ns / SAMPLES_PER_THRESHOLD).max(MIN_PERIOD_NS);
        let claim = sample(monitor, &mut sampling, threshold_ns);
        if let Some(sequence) = claim {
            drop(control);
            capture(monitor, sequence, thread_ident);
            control = lock(&monitor.control);
            continue;
        }
        control = monitor
            .wake
            .wait_timeout(control, Duration::from_nanos(period_ns as u64))
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .0;
    }
}

/// One sample: the number of an item to claim, if one has now held the
/// loop for at least the threshold.
fn sample(monitor: &Monitor, sampling: &mut Sampling, threshold_ns: i64) -> Option<u64> {
    let now = clock::monotonic_ns();
    let running = monitor.running.load(Ordering::Acquire);
    let mut claim = None;
    if running == 0 {
        sampling.seen = 0;
    } else if running != sampling.seen {
        sampling.seen = running;
        sampling.seen_first_ns = now;
        // It started after the previous sample, which did not see it.
        sampling.seen_after_ns = sampling.previous_sample_ns;
    } else if running != sampling.claimed && now - sampling.seen_first_ns >= threshold_ns {
        sampling.claimed = running;
        monitor
            .claimed_start_ns
            .store(sampling.seen_after_ns, Ordering::Relaxed);
        monitor
            .claimed_at_ns
            .store(clock::monotonic_ns(), Ordering::Relaxed);
        monitor.claimed.store(running, Ordering::Release);
        // Signalled after the number is stored (see take_pending_claim).
        monitor
            .instruments
            .fetch_or(Instrument::ClaimPending as u8, Ordering::Release);
        claim = Some(running);
    }
    sampling.previous_sample_ns = now;
    claim
}

/// Captures the stack of the loop thread if item `sequence` still runs.
fn capture(monitor: &Monitor, sequence: u64, thread_ident: u64) {
    // try_attach refuses while the interpreter finalizes.
    Python::try_attach(|py| {
        // Attached, the loop thread cannot end the item (ending it needs the
        // interpreter), so `running` and `subject` are stable here.
        if monitor.running.load(Ordering::Acquire) != sequence
            || monitor.claimed.load(Ordering::Acquire) != sequence
        {
            return;
        }
        let published = monitor.subject.load(Ordering::Relaxed);
        let subject = if published.addr() & CALLBACK_TAG != 0 {
            let callback = published
                .map_addr(|address| address & !CALLBACK_TAG)
                .cast::<pyo3::ffi::PyObject>();
            // SAFETY: `begin_item` published this callback (or NULL) for the
            // item numbered `running`, which is still `sequence`: the loop
            // thread keeps the callback alive until it reaches `end_item`
            // (begin_item's contract), where it stores 0 while attached, and
            // it cannot get there while we are attached.
            unsafe { Bound::from_borrowed_ptr_or_opt(py, callback) }.map(Bound::unbind)
        } else {
            // SAFETY: as above, the item published for `sequence` is alive
            // and unmoved until `end_item`, which cannot run while we are
            // attached. What `subject` reads is guarded by the interpreter
            // (`GilCell`s, owned references), which we hold.
            unsafe { (*published.cast::<Ready>()).subject(py) }
        };
        let subject = match subject {
            Some(subject) => subject.into_bound(py),
            None => py.None().into_bound(py),
        };
        let captured = CAPTURE
            .import(py, "ferroloop._blocking", "capture")
            .and_then(|capture| capture.call1((subject, thread_ident)));
        match captured {
            Ok(captured) => *lock(&monitor.captured) = Some((sequence, captured.unbind())),
            Err(err) => err.write_unraisable(py, None),
        }
    });
}

static CAPTURE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static REPORT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// Hands a claim to `ferroloop._blocking.report` (on the loop thread, after
/// the item ended). `task` is the number the step recorder gave the item's
/// task (0: none). Errors are reported as unraisable: a detector must not
/// break the loop.
pub fn report(slf: &Bound<'_, LoopCore>, claim: Box<Claim>, task: u32) {
    let py = slf.py();
    let started = clock::ns_to_secs(claim.start_ns);
    let ended = clock::ns_to_secs(claim.end_ns);
    slf.get()
        .observation
        .record_blocking(py, task, claim.start_ns, claim.end_ns);
    let result = REPORT
        .import(py, "ferroloop._blocking", "report")
        .and_then(|report| report.call1((slf, claim.subject, claim.captured, started, ended)));
    if let Err(err) = result {
        err.write_unraisable(py, Some(slf.as_any()));
    }
}

/// `loop._set_blocking_threshold(seconds)`: starts, retunes or (0) stops
/// the watchdog.
pub fn set_threshold(slf: &Bound<'_, LoopCore>, seconds: f64) -> PyResult<()> {
    let py = slf.py();
    let core = slf.get();
    let observation = &core.observation;
    let threshold = if seconds > 0.0 {
        Some(Duration::try_from_secs_f64(seconds).map_err(|_| {
            pyo3::exceptions::PyValueError::new_err("the threshold is out of range")
        })?)
    } else if seconds == 0.0 {
        None
    } else {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "the threshold must be a positive number of seconds, or 0 to turn the detector off",
        ));
    };
    let mut slot = observation.watchdog.borrow_mut(py)?;
    match threshold {
        Some(threshold) => {
            if let Some(watchdog) = slot.as_ref() {
                watchdog.set_threshold(threshold);
                return Ok(());
            }
            *slot = Some(Watchdog::start(&observation.monitor, threshold)?);
            observation.set(Instrument::Detector, true);
            if let Some(ident) = core.running_thread() {
                // Turned on from inside a running loop.
                observation.monitor.loop_started(ident);
            }
        }
        None => {
            observation.set(Instrument::Detector, false);
            let stopped = slot.take();
            drop(slot);
            if let Some(watchdog) = stopped {
                watchdog.stop(py);
            }
        }
    }
    Ok(())
}
