//! Write flow control: asyncio's high and low water marks, and when the
//! protocol must be paused or resumed.
//!
//! The marks are floats because asyncio takes any numbers (`high=1.5`,
//! `inf`, huge ints) and compares the buffered size with them. The protocol
//! is told once per transition: paused when the buffer grows above the high
//! mark, resumed when it drains to the low mark or below.

/// asyncio's defaults: pause the protocol above 64 KiB buffered, resume at
/// 16 KiB (uvloop got these wrong: 16 bytes).
const DEFAULT_HIGH_WATER: usize = 64 * 1024;

/// What the protocol must be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteFlow {
    Pause,
    Resume,
}

#[derive(Debug)]
pub struct FlowControl {
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

    /// The buffer grew (or the marks changed) to `size` bytes: `Pause` when
    /// the protocol must be paused now.
    pub fn after_growth(&mut self, size: usize) -> Option<WriteFlow> {
        if size as f64 > self.high && !self.paused {
            self.paused = true;
            return Some(WriteFlow::Pause);
        }
        None
    }

    /// The buffer drained to `size` bytes: `Resume` when the protocol must
    /// be resumed now.
    pub fn after_drain(&mut self, size: usize) -> Option<WriteFlow> {
        if self.paused && size as f64 <= self.low {
            self.paused = false;
            return Some(WriteFlow::Resume);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_above_the_high_mark_once() {
        let mut flow = FlowControl::default();
        assert_eq!(flow.after_growth(64 * 1024), None);
        assert_eq!(flow.after_growth(64 * 1024 + 1), Some(WriteFlow::Pause));
        assert_eq!(flow.after_growth(1 << 20), None);
        assert!(flow.is_paused());
    }

    #[test]
    fn resumes_at_the_low_mark_once() {
        let mut flow = FlowControl::default();
        flow.after_growth(100_000);
        assert_eq!(flow.after_drain(16 * 1024 + 1), None);
        assert_eq!(flow.after_drain(16 * 1024), Some(WriteFlow::Resume));
        assert_eq!(flow.after_drain(0), None);
        assert!(!flow.is_paused());
    }

    #[test]
    fn never_resumes_what_was_not_paused() {
        let mut flow = FlowControl::default();
        assert_eq!(flow.after_drain(0), None);
    }

    #[test]
    fn zero_marks_pause_on_any_byte_and_resume_when_empty() {
        let mut flow = FlowControl::default();
        flow.set_limits(0.0, 0.0);
        assert_eq!(flow.after_growth(0), None);
        assert_eq!(flow.after_growth(1), Some(WriteFlow::Pause));
        assert_eq!(flow.after_drain(1), None);
        assert_eq!(flow.after_drain(0), Some(WriteFlow::Resume));
    }

    #[test]
    fn fractional_and_infinite_marks_compare_as_asyncio_does() {
        let mut flow = FlowControl::default();
        flow.set_limits(1.5, 0.5);
        assert_eq!(flow.after_growth(1), None);
        assert_eq!(flow.after_growth(2), Some(WriteFlow::Pause));
        assert_eq!(flow.after_drain(1), None);
        assert_eq!(flow.after_drain(0), Some(WriteFlow::Resume));
        flow.set_limits(f64::INFINITY, 0.0);
        assert_eq!(flow.after_growth(usize::MAX), None);
    }
}
