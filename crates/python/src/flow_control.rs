//! Write flow control shared by the transports: asyncio's high and low
//! water marks, and the pause/resume transitions of the protocol.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// asyncio's defaults: pause the protocol above 64 KiB buffered, resume at
/// 16 KiB (uvloop got these wrong: 16 bytes).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

pub struct FlowControl {
    high: usize,
    low: usize,
    paused: bool,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl {
            high: DEFAULT_HIGH_WATER,
            low: DEFAULT_HIGH_WATER / 4,
            paused: false,
        }
    }
}

impl FlowControl {
    /// `set_write_buffer_limits(high=None, low=None)` with asyncio's rules:
    /// a missing high is 4 × low (or 64 KiB), a missing low is high / 4.
    pub fn set_limits(&mut self, high: Option<i64>, low: Option<i64>) -> PyResult<()> {
        let high = match (high, low) {
            (Some(h), _) => h,
            (None, Some(l)) => 4 * l,
            (None, None) => DEFAULT_HIGH_WATER as i64,
        };
        // Python floor division: -1 // 4 is -1, as asyncio reports it.
        let low = low.unwrap_or(high.div_euclid(4));
        if !(high >= low && low >= 0) {
            return Err(PyValueError::new_err(format!(
                "high ({high}) must be >= low ({low}) must be >= 0"
            )));
        }
        self.high = high as usize;
        self.low = low as usize;
        Ok(())
    }

    /// `(low, high)`, as `get_write_buffer_limits()` returns them.
    pub fn limits(&self) -> (usize, usize) {
        (self.low, self.high)
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// `Some("pause_writing")` when a buffer grown to `size` bytes must
    /// pause the protocol now.
    pub fn pause_notice(&mut self, size: usize) -> Option<&'static str> {
        if size > self.high && !self.paused {
            self.paused = true;
            return Some("pause_writing");
        }
        None
    }

    /// `Some("resume_writing")` when a buffer drained to `size` bytes must
    /// resume the protocol now.
    pub fn resume_notice(&mut self, size: usize) -> Option<&'static str> {
        if self.paused && size <= self.low {
            self.paused = false;
            return Some("resume_writing");
        }
        None
    }
}

/// Calls `protocol.pause_writing()` or `resume_writing()`; a failure goes to
/// the loop's exception handler through the transport, as in asyncio.
pub fn notify_protocol(
    transport: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    method: &str,
) -> PyResult<()> {
    let py = transport.py();
    if let Err(err) = protocol.call_method0(method) {
        if crate::errors::is_loop_stopping(py, &err) {
            return Err(err);
        }
        transport.call_method1(
            pyo3::intern!(py, "_report_protocol_error"),
            (format!("protocol.{method}() failed"), err.into_value(py)),
        )?;
    }
    Ok(())
}
