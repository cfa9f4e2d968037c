//! The Python methods of the observation point (`ferroloop.Loop` wraps
//! them: `stats()`, `detect_blocking()`, tracing and task statistics).

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::{blocking, steps::StepRecorder, Instrument};
use crate::loop_core::LoopCore;

#[pymethods]
impl LoopCore {
    /// What the loop did so far: counters, busy and poll time, the longest
    /// callback.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        self.observation.stats.to_dict(py)
    }

    /// Starts (seconds > 0), retunes, or stops (0) the blocking detector.
    fn _set_blocking_threshold(slf: &Bound<'_, Self>, seconds: f64) -> PyResult<()> {
        blocking::set_threshold(slf, seconds)
    }

    /// Starts recording task steps: with `tracing`, every event is kept
    /// for a timeline; without, only per-task totals.
    fn _record_steps(&self, py: Python<'_>, tracing: bool) -> PyResult<()> {
        let mut slot = self.observation.steps.borrow_mut(py)?;
        match slot.as_mut() {
            Some(recorder) => recorder.also_trace(tracing),
            None => *slot = Some(StepRecorder::new(tracing)),
        }
        self.observation.set(Instrument::Steps, true);
        Ok(())
    }

    /// Stops recording task steps and returns the recording (see
    /// `StepRecorder::to_py`), or None if nothing was recorded.
    fn _stop_recording_steps<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        self.observation.set(Instrument::Steps, false);
        let recorder = self.observation.steps.borrow_mut(py)?.take();
        recorder
            .map(|mut r| {
                r.account(py);
                r.to_py(py)
            })
            .transpose()
    }

    /// The recording so far, without stopping.
    fn _steps_recording<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyDict>>> {
        let mut slot = self.observation.steps.borrow_mut(py)?;
        slot.as_mut()
            .map(|r| {
                r.account(py);
                r.to_py(py)
            })
            .transpose()
    }

    /// Per-task statistics (live tasks first), or None when not recorded.
    fn _task_stats<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let mut slot = self.observation.steps.borrow_mut(py)?;
        slot.as_mut()
            .map(|r| {
                r.account(py);
                r.task_stats(py)
            })
            .transpose()
    }
}
