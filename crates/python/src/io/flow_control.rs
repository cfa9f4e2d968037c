//! Write flow control shared by the transports: asyncio's high and low
//! water marks, and the pause/resume transitions of the protocol.

use pyo3::prelude::*;

/// asyncio's defaults: pause the protocol above 64 KiB buffered, resume at
/// 16 KiB (uvloop got these wrong: 16 bytes).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

pub struct FlowControl {
    /// The water marks, as floats: asyncio takes any numbers (`high=1.5`,
    /// `inf`, huge ints) and compares the buffered size with them.
    high: f64,
    low: f64,
    paused: bool,
}

impl Default for FlowControl {
    fn default() -> Self {
        FlowControl {
            high: DEFAULT_HIGH_WATER as f64,
            low: (DEFAULT_HIGH_WATER / 4) as f64,
            paused: false,
        }
    }
}

impl FlowControl {
    /// New water marks, already checked by the caller with asyncio's rules
    /// (`high >= low >= 0`, defaults derived from each other).
    pub fn set_limits(&mut self, high: f64, low: f64) {
        self.high = high;
        self.low = low;
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// `Some("pause_writing")` when a buffer grown to `size` bytes must
    /// pause the protocol now.
    pub fn pause_notice(&mut self, size: usize) -> Option<&'static str> {
        if size as f64 > self.high && !self.paused {
            self.paused = true;
            return Some("pause_writing");
        }
        None
    }

    /// `Some("resume_writing")` when a buffer drained to `size` bytes must
    /// resume the protocol now.
    pub fn resume_notice(&mut self, size: usize) -> Option<&'static str> {
        if self.paused && size as f64 <= self.low {
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
