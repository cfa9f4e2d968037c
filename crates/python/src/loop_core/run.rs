//! One loop iteration, and running iterations until `stop()`.
//!
//! An iteration, as in asyncio's `_run_once`:
//! 1. decide how long to wait: not at all if callbacks are ready or the loop
//!    is stopping, until the earliest timer otherwise, or indefinitely;
//! 2. wait in the poller, with the interpreter released if the wait may block;
//! 3. queue the callbacks of ready descriptors, then of due timers;
//! 4. run exactly the callbacks that were queued when step 4 began.
//!
//! When nothing is watched and callbacks are ready, step 2 is skipped: the
//! zero-timeout poll could only report the waker, which a running loop does
//! not need (work queued by other threads is already in the ready queue).

use std::sync::atomic::Ordering;
use std::time::Duration;

use ferroloop_engine::clock;
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use crate::handles::{HandleRef, RunOutcome};
use crate::io::{Ready, Watcher};
use crate::loop_core::observe::{self, Instrument};
use crate::loop_core::{current_thread_ident, LoopCore, ScheduledTimer};
use crate::python_helpers;

#[pymethods]
impl LoopCore {
    /// The inner loop of `run_forever`: iterations until `stop()`. The Python
    /// side does the set-up around it (running-loop registration, hooks).
    fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
        run_until_stopped(slf)
    }

    /// One iteration (asyncio's `_run_once`).
    fn _run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        run_once(slf)
    }
}

/// Runs iterations until `stop()` is called or a callback raises
/// `KeyboardInterrupt`/`SystemExit` (or the exception handler raises).
fn run_until_stopped(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
    let core = slf.get();
    let ident = current_thread_ident();
    core.set_thread(ident);
    let _slack = ferroloop_engine::TightTimerSlack::new();
    let observation = &core.observation;
    observation.stats.forget_reading();
    let detecting = observation.is_on(Instrument::Detector);
    if detecting {
        observation.monitor.loop_started(ident);
    }
    let result = loop {
        if let Err(err) = run_once(slf) {
            break Err(err);
        }
        if core.stopping.load(Ordering::Relaxed) {
            break Ok(());
        }
    };
    if detecting {
        if let Some(claim) = observation.monitor.loop_stopped() {
            observe::blocking::report(slf, claim, 0);
        }
    }
    core.stopping.store(false, Ordering::Relaxed);
    core.set_thread(0);
    result
}

/// One iteration.
fn run_once(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
    // A forked child polling its parent's epoll would steal the parent's events.
    slf.get().check_process()?;
    let timeout = wait_timeout(slf)?;
    wait_and_collect(slf, timeout)?;
    run_ready_batch(slf)
}

/// How long step 2 may block (`None`: until something happens), and whether
/// there is anything for the poller to report at all.
fn wait_timeout(slf: &Bound<'_, LoopCore>) -> PyResult<Wait> {
    let py = slf.py();
    let core = slf.get();
    let mut discarded = Vec::new();
    let wait = {
        let mut st = core.state.borrow_mut(py)?;
        let watching = st.io.as_ref().is_some_and(|io| !io.is_empty());
        // Announce the sleep before looking for work (see the waker's docs):
        // a thread that queues work after this look will write the eventfd.
        if let Some(waker) = &st.waker {
            waker.prepare_to_sleep();
        }
        if !st.ready.is_empty() || core.stopping.load(Ordering::Relaxed) {
            if watching {
                Wait::Poll(Some(Duration::ZERO))
            } else {
                Wait::Skip
            }
        } else {
            match st.timers.next_deadline(&mut discarded) {
                Some(when) => Wait::Until(when),
                None => Wait::Poll(None),
            }
        }
    };
    core.observation
        .stats
        .timers_cancelled
        .add(discarded.len() as u64);
    release_timers(discarded);
    Ok(match wait {
        Wait::Until(when) => Wait::Poll(Some(duration_until(when, core.time(slf)?))),
        other => other,
    })
}

enum Wait {
    Skip,
    Poll(Option<Duration>),
    /// Until this loop time (turned into a `Poll` once the borrow is over:
    /// reading an overridden `loop.time()` runs Python code).
    Until(f64),
}

fn duration_until(when: f64, now: f64) -> Duration {
    let secs = when - now;
    if secs > 0.0 {
        Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

/// Steps 2 and 3.
fn wait_and_collect(slf: &Bound<'_, LoopCore>, wait: Wait) -> PyResult<()> {
    let py = slf.py();
    let core = slf.get();
    let mut poller_slot = core.poller.borrow_mut(py)?;
    let Some(poller) = poller_slot.as_mut() else {
        return Err(PyRuntimeError::new_err("Event loop is closed"));
    };
    let stats = &core.observation.stats;
    let polled = match wait {
        Wait::Skip | Wait::Until(_) => None,
        Wait::Poll(Some(Duration::ZERO)) => Some(poller.poll(Some(Duration::ZERO))),
        Wait::Poll(timeout) => {
            // Woken in time to give the spare handle blocks back.
            let timeout = match crate::handles::release_spare_blocks(py) {
                Some(release_due) => Some(timeout.map_or(release_due, |t| t.min(release_due))),
                None => timeout,
            };
            let started = stats.wait_starts();
            let polled = py.detach(|| poller.poll(timeout));
            let ended = stats.wait_ended(started);
            core.observation.record_poll(py, started, ended);
            Some(polled)
        }
    };
    if let Some(waker) = &core.state.borrow(py)?.waker {
        waker.finish_sleep();
    }
    let mut discarded: Vec<Watcher> = Vec::new();
    let mut discarded_timers = Vec::new();
    match polled {
        Some(Err(err)) if err.kind() == std::io::ErrorKind::Interrupted => {
            // A signal arrived: let its Python handler run now (Ctrl-C raises
            // KeyboardInterrupt here, as it does in asyncio's select()).
            drop(poller_slot);
            py.check_signals()?;
        }
        Some(Err(err)) => return Err(crate::errors::os_error(err)),
        Some(Ok(())) => {
            let mut st = core.state.borrow_mut(py)?;
            let st = &mut *st;
            if let Some(io) = st.io.as_mut() {
                for readiness in poller.ready() {
                    stats.io_events.add(1);
                    crate::io::queue_readiness(py, io, &mut st.ready, readiness, &mut discarded);
                }
            }
            drop(poller_slot);
        }
        None => drop(poller_slot),
    }
    if core.state.borrow(py)?.timers.is_empty() {
        // No clock read needed (it is a measurable part of a busy
        // iteration without timers).
        drop(discarded);
        return Ok(());
    }
    let now = core.time(slf)?;
    {
        let mut st = core.state.borrow_mut(py)?;
        let st = &mut *st;
        let ready = &mut st.ready;
        st.timers.pop_due(
            now,
            |timer| {
                stats.timers_fired.add(1);
                timer.0.mark_unscheduled();
                ready.push(Ready::Callback(timer.0));
            },
            &mut discarded_timers,
        );
    }
    drop(discarded);
    stats.timers_cancelled.add(discarded_timers.len() as u64);
    release_timers(discarded_timers);
    Ok(())
}

/// Drops timers the heap let go of, outside any borrow (dropping a handle can
/// run arbitrary `__del__` code).
fn release_timers(timers: Vec<ScheduledTimer>) {
    for timer in &timers {
        timer.0.mark_unscheduled();
    }
    drop(timers);
}

/// Step 4. The batch is taken out of the queue whole, so running an item
/// costs no access to the loop state; if a callback stops the loop with an
/// exception, the items not yet run go back in front.
fn run_ready_batch(slf: &Bound<'_, LoopCore>) -> PyResult<()> {
    let py = slf.py();
    let core = slf.get();
    let mut batch = core.state.borrow_mut(py)?.ready.take_batch();
    let mut outcome = Ok(());
    let stats = &core.observation.stats;
    let mut clock = (!batch.is_empty()).then(|| stats.batch_clock());
    while let Some(item) = batch.pop_front() {
        let Some(clock) = clock.as_mut() else { break };
        // Items timed alone are named if they take the longest yet. (A
        // `Bound`, as the item's release: see `Ready::release`.)
        let subject = if clock.next_is_alone() {
            observe::subject_of(py, &item).map(|subject| subject.into_bound(py))
        } else {
            None
        };
        let ran = run_item(slf, core, item);
        if let Some(took) = clock.item_ended() {
            if stats.is_record(took) {
                observe::stats::record_longest(py, stats, took, subject.map(Bound::unbind));
            }
        }
        if let Err(err) = ran {
            outcome = Err(err);
            break;
        }
    }
    if let Some(clock) = &clock {
        stats.batch_ended(clock);
    }
    if core.observation.is_on(Instrument::ClaimPending) {
        // The blocking item was the batch's last.
        observe::report_pending_claim(slf);
    }
    core.state.borrow_mut(py)?.ready.return_batch(batch);
    core.observation.account_steps(py);
    outcome
}

/// Runs one item: with every instrument off, at the cost of one flag test.
#[inline]
fn run_item(slf: &Bound<'_, LoopCore>, core: &LoopCore, item: Ready) -> PyResult<()> {
    if core.observation.active() {
        if core.observation.only(Instrument::Detector) {
            return observe::run_detected(slf, core, item);
        }
        return observe::run_observed(slf, core, item);
    }
    let ran = match &item {
        Ready::Callback(handle) => {
            core.observation.stats.callbacks.add(1);
            run_handle(slf, handle, false)
        }
        io => run_io(slf, io),
    };
    item.release(slf.py());
    ran
}

/// Runs one item with debug mode's bookkeeping and the callback observer,
/// when they are on (the observed path, [`observe::run_observed`]).
pub(crate) fn run_item_hooked(
    slf: &Bound<'_, LoopCore>,
    core: &LoopCore,
    item: &Ready,
) -> PyResult<()> {
    match item {
        Ready::Callback(handle) => {
            core.observation.stats.callbacks.add(1);
            if core.is_debug() || core.observed.load(Ordering::Relaxed) {
                run_instrumented(slf, handle)
            } else {
                run_handle(slf, handle, false)
            }
        }
        io => run_io(slf, io),
    }
}

/// A transport's readiness or a socket operation: the I/O kinds' work. An
/// exception that escapes it (a protocol's `datagram_received` or
/// `error_received` that raises, say) is what asyncio's reader or writer
/// handle would have raised: the loop reports it and goes on. Only
/// `KeyboardInterrupt`/`SystemExit` stop it.
#[inline]
pub(crate) fn run_io(slf: &Bound<'_, LoopCore>, item: &Ready) -> PyResult<()> {
    let py = slf.py();
    match item {
        Ready::Callback(handle) => run_handle(slf, handle, false),
        io => match io.run_io(py) {
            Err(err) if !crate::errors::is_loop_stopping(py, &err) => {
                python_helpers::report_io_error(slf.as_any(), io.transport(py), err)
            }
            other => other,
        },
    }
}

#[inline]
pub(crate) fn run_handle(
    slf: &Bound<'_, LoopCore>,
    handle: &HandleRef,
    keep: bool,
) -> PyResult<()> {
    run_handle_then(slf, handle, keep, || {})
}

/// [`run_handle`], with `at_end` called as [`HandleRef::run_then`] calls it:
/// before an exception the callback raised is reported.
#[inline]
pub(crate) fn run_handle_then(
    slf: &Bound<'_, LoopCore>,
    handle: &HandleRef,
    keep: bool,
    at_end: impl FnOnce(),
) -> PyResult<()> {
    let py = slf.py();
    match handle.run_then(py, keep, at_end)? {
        RunOutcome::Done => Ok(()),
        RunOutcome::Raised(err) => {
            let reported =
                python_helpers::report_callback_error(slf.as_any(), handle.object().bind(py), err);
            handle.release(py);
            reported
        }
    }
}

/// The slow path: debug bookkeeping (current handle, slow-callback warning)
/// and the observer hook around the callback.
fn run_instrumented(slf: &Bound<'_, LoopCore>, handle: &HandleRef) -> PyResult<()> {
    let py = slf.py();
    let core = slf.get();
    if handle.is_cancelled() {
        return Ok(());
    }
    let observer = core
        .state
        .borrow(py)?
        .observer
        .as_ref()
        .map(|(b, e)| (b.clone_ref(py), e.clone_ref(py)));
    if let Some((begin, _)) = &observer {
        notify_observer(begin.bind(py), handle);
    }
    let result = if core.is_debug() {
        let previous = core
            .state
            .borrow_mut(py)?
            .current_handle
            .replace(handle.object().clone_ref(py));
        drop(previous);
        let started = clock::monotonic();
        let result = run_handle(slf, handle, true);
        let took = clock::monotonic() - started;
        let current = core.state.borrow_mut(py)?.current_handle.take();
        drop(current);
        let slow_after: f64 = slf
            .getattr(pyo3::intern!(py, "slow_callback_duration"))?
            .extract()?;
        let warned = if took >= slow_after {
            python_helpers::warn_slow_callback(handle.object().bind(py), took)
        } else {
            Ok(())
        };
        handle.release(py);
        result.and(warned)
    } else {
        run_handle(slf, handle, false)
    };
    if let Some((_, end)) = &observer {
        notify_observer(end.bind(py), handle);
    }
    result
}

/// An observer must not break the loop: its errors are reported as
/// unraisable and the loop goes on.
fn notify_observer(hook: &Bound<'_, PyAny>, handle: &HandleRef) {
    if hook.is_none() {
        return;
    }
    if let Err(err) = hook.call1((handle.object().bind(hook.py()),)) {
        err.write_unraisable(hook.py(), Some(hook));
    }
}
