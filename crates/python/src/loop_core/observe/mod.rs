//! Watching what the loop runs: the blocking detector, task steps (for the
//! timeline tracer and per-task statistics), the loop's counters, and the
//! Python-level callback observer, all at one observation point.
//!
//! Every item of the ready queue — a callback, a transport's readiness
//! (where `data_received`, `buffer_updated`, `datagram_received`... run), a
//! pending `sock_*` operation — goes through [`crate::loop_core::run`]'s `run_item`.
//! With every instrument off, that costs one test of [`Observation::active`]
//! per item; with any on, the item runs through [`run_observed`] (or the
//! leaner [`run_detected`] when the detector is the only one), which gives
//! each instrument what it needs and nothing more:
//!
//! - the blocking detector ([`blocking`]): a sequence number and the item,
//!   published in three plain (relaxed or release) atomic stores, and one
//!   more as it ends; no clock read, no test;
//! - task steps ([`steps`]): three clock reads per task step (when it is
//!   queued, as it starts and as it ends), and the task's wait at the end
//!   of the step;
//! - debug mode and `_set_callback_observer`: as before, callbacks only.
//!
//! The counters of `loop.stats()` ([`stats`]) are always on: plain integer
//! increments per item and the clock read per iteration.

mod api;
mod attributes;
pub mod blocking;
pub mod stats;
pub mod steps;

use pyo3::prelude::*;

use crate::ffi::gil_cell::GilCell;
use crate::io::Ready;
use crate::loop_core::LoopCore;

/// The instruments, as bits of [`Observation::active`].
#[derive(Clone, Copy)]
#[repr(u8)]
pub enum Instrument {
    /// asyncio's debug mode (slow-callback warnings, current handle).
    Debug = 1,
    /// `_set_callback_observer` hooks.
    CallbackObserver = 2,
    /// The blocking detector's watchdog.
    Detector = 4,
    /// Task steps: the tracer or per-task statistics.
    Steps = 8,
    /// Not an instrument: set by the blocking detector's watchdog when it
    /// claimed an item, so that the loop, which tests these bits per item,
    /// takes the path that reports it.
    ClaimPending = 16,
}

/// The per-loop observation state. Which instruments are on is kept in the
/// monitor, which the watchdog thread shares.
pub struct Observation {
    pub monitor: std::sync::Arc<blocking::Monitor>,
    pub watchdog: GilCell<Option<blocking::Watchdog>>,
    pub steps: GilCell<Option<steps::StepRecorder>>,
    pub stats: stats::LoopStats,
}

impl Observation {
    pub fn new() -> Self {
        Observation {
            monitor: std::sync::Arc::new(blocking::Monitor::new()),
            watchdog: GilCell::new(None),
            steps: GilCell::new(None),
            stats: stats::LoopStats::new(),
        }
    }

    /// True when any instrument is on: the one test an item costs when all are off.
    #[inline(always)]
    pub fn active(&self) -> bool {
        self.monitor.instruments() != 0
    }

    /// True when `instrument` is the only one on.
    #[inline]
    pub fn only(&self, instrument: Instrument) -> bool {
        self.monitor.instruments() == instrument as u8
    }

    #[inline]
    pub fn is_on(&self, instrument: Instrument) -> bool {
        self.monitor.instruments() & instrument as u8 != 0
    }

    pub fn set(&self, instrument: Instrument, on: bool) {
        self.monitor.set_instrument(instrument, on);
    }
}

/// What an item runs, for naming it: a callback, or a transport (whose
/// protocol method runs), or a socket operation. A strong reference, held
/// until the item ends, so the watchdog may look at it while it runs.
pub fn subject_of(py: Python<'_>, item: &Ready) -> Option<Py<PyAny>> {
    item.subject(py)
}

/// Runs one item with the blocking detector the only instrument on (its
/// common use, and the one with a budget per item): the item's number and
/// what it runs are published around it, and nothing else is done. A
/// callback runs as on the plain path, its handle letting it go: the
/// detector's pointer to it is withdrawn before the run drops it. A claim
/// on the item is found by the next item's test of the instruments' flags,
/// or at the batch's end ([`report_pending_claim`]).
pub fn run_detected(slf: &Bound<'_, LoopCore>, core: &LoopCore, item: Ready) -> PyResult<()> {
    let monitor = &core.observation.monitor;
    monitor.begin_item(&item);
    match &item {
        Ready::Callback(handle) => {
            core.observation.stats.callbacks.add(1);
            crate::loop_core::run::run_handle_then(slf, handle, false, || monitor.end_item())
        }
        io => {
            let result = crate::loop_core::run::run_io(slf, io);
            monitor.end_item();
            result
        }
    }
}

/// Reports the claim the watchdog signalled, if any, with no item running.
/// The report names what the watchdog captured.
#[cold]
#[inline(never)]
pub fn report_pending_claim(slf: &Bound<'_, LoopCore>) {
    if let Some(claim) = slf.get().observation.monitor.take_pending_claim() {
        blocking::report(slf, claim, 0);
    }
}

/// Reports a claim taken at the end of item `sequence`.
#[cold]
fn report_claim(
    slf: &Bound<'_, LoopCore>,
    mut claim: Box<blocking::Claim>,
    sequence: u64,
    item: &Ready,
    task: u32,
) {
    claim.name_if_about(sequence, || subject_of(slf.py(), item));
    blocking::report(slf, claim, task);
}

/// Runs one item with the instruments that are on. The item stays here
/// until the instruments are done with it: the watchdog names what it runs
/// from it ([`blocking::Monitor::begin_item`]).
pub fn run_observed(slf: &Bound<'_, LoopCore>, core: &LoopCore, item: Ready) -> PyResult<()> {
    let py = slf.py();
    let observation = &core.observation;
    if observation.is_on(Instrument::ClaimPending) {
        report_pending_claim(slf);
    }
    let step = if observation.is_on(Instrument::Steps) {
        steps::begin(py, observation, &item)
    } else {
        None
    };
    let (sequence, callback) = if observation.is_on(Instrument::Detector) {
        // A handle lets its callback go once it has run: kept, to name it
        // in a report (a transport or an operation outlives its item).
        let callback = match &item {
            Ready::Callback(handle) => handle.callback(py).map(|c| c.into_bound(py)),
            _ => None,
        };
        (observation.monitor.begin_item(&item), callback)
    } else {
        (0, None)
    };
    let result = crate::loop_core::run::run_item_hooked(slf, core, &item);
    // Tested here, at the item's end, unlike on the detector's own path:
    // the report names the step's task, and this path is not the lean one.
    let claim = if sequence != 0 {
        observation.monitor.end_item();
        if observation.is_on(Instrument::ClaimPending) {
            observation.monitor.take_pending_claim()
        } else {
            None
        }
    } else {
        None
    };
    // The step ends before its blocking report is made (which takes time).
    let task = step.map_or(0, |step| steps::end(py, observation, step));
    if let Some(mut claim) = claim {
        match callback {
            Some(callback) => {
                claim.name_if_about(sequence, || Some(callback.unbind()));
                blocking::report(slf, claim, task);
            }
            None => report_claim(slf, claim, sequence, &item, task),
        }
    }
    drop(item);
    result
}
