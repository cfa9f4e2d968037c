//! `loop.stats()`: what the loop did, counted as it runs.
//!
//! Always on, so the cost per item is kept to plain integer increments
//! (relaxed loads and stores of atomics only the loop thread writes: the
//! same instructions as a plain field). Time is read per iteration, not per
//! item: once around a wait in the poller that may block, and at chunk
//! boundaries of the ready batch ([`BatchClock`]).
//!
//! The longest callback needs items timed alone, but a clock read (≈ 40 ns)
//! per 0.1 µs callback is too dear. So a batch is timed in chunks of 1, 1,
//! 2, 4 … 64 items, back to 1 after a slow chunk (≥ 1 ms): the first items
//! of every iteration and everything after a slow item are timed alone,
//! while a long run of quick items costs one read per 64. A slow callback
//! deep inside a run of quick ones is counted in the loop's busy time but
//! not named as the longest; the blocking detector names every one.
//!
//! "Busy" time is everything but waiting in the poller: callbacks, protocol
//! methods and the loop's own work between them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use ferroloop_engine::clock;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::ffi::gil_cell::GilCell;

/// A count only the loop thread changes.
#[derive(Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline(always)]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

const SLOW_CHUNK_NS: i64 = 1_000_000;
const LONGEST_CHUNK: u32 = 64;

pub struct LoopStats {
    pub iterations: Counter,
    pub callbacks: Counter,
    pub io_events: Counter,
    pub timers_fired: Counter,
    pub timers_cancelled: Counter,
    pub poll_waits: Counter,
    poll_ns: Counter,
    busy_ns: Counter,
    /// The loop thread's last clock reading, valid while nothing waited
    /// since (0: none).
    last_reading_ns: AtomicI64,
    longest_ns: AtomicI64,
    longest: GilCell<Option<Py<PyAny>>>,
}

impl LoopStats {
    pub fn new() -> Self {
        LoopStats {
            iterations: Counter::default(),
            callbacks: Counter::default(),
            io_events: Counter::default(),
            timers_fired: Counter::default(),
            timers_cancelled: Counter::default(),
            poll_waits: Counter::default(),
            poll_ns: Counter::default(),
            busy_ns: Counter::default(),
            last_reading_ns: AtomicI64::new(0),
            longest_ns: AtomicI64::new(0),
            longest: GilCell::new(None),
        }
    }

    /// Around a wait in the poller that may block: the time before it.
    #[inline]
    pub fn wait_starts(&self) -> i64 {
        clock::monotonic_ns()
    }

    /// After that wait: the time after it.
    #[inline]
    pub fn wait_ended(&self, started_ns: i64) -> i64 {
        let now = clock::monotonic_ns();
        self.poll_waits.add(1);
        self.poll_ns.add((now - started_ns).max(0) as u64);
        self.last_reading_ns.store(now, Ordering::Relaxed);
        now
    }

    /// Starts timing a non-empty batch; reuses the last reading if nothing
    /// waited since (the loop's own work in between is busy time too).
    #[inline]
    pub fn batch_clock(&self) -> BatchClock {
        self.iterations.add(1);
        let last = self.last_reading_ns.load(Ordering::Relaxed);
        let start = if last != 0 {
            last
        } else {
            clock::monotonic_ns()
        };
        BatchClock {
            batch_start_ns: start,
            chunk_start_ns: start,
            chunk_len: 1,
            in_chunk: 0,
        }
    }

    /// Ends a batch timed by `clock`.
    #[inline]
    pub fn batch_ended(&self, clock: &BatchClock) {
        let end = if clock.in_chunk == 0 {
            clock.chunk_start_ns
        } else {
            clock::monotonic_ns()
        };
        self.busy_ns.add((end - clock.batch_start_ns).max(0) as u64);
        self.last_reading_ns.store(end, Ordering::Relaxed);
    }

    /// The loop waits or stops: the next batch reads the clock afresh.
    #[inline]
    pub fn forget_reading(&self) {
        self.last_reading_ns.store(0, Ordering::Relaxed);
    }

    /// An item timed alone took `ns`: the longest so far?
    #[inline]
    pub fn is_record(&self, ns: i64) -> bool {
        ns > self.longest_ns.load(Ordering::Relaxed)
    }

    /// Keeps `description` as the longest callback (`ns` long).
    pub fn set_longest(&self, py: Python<'_>, ns: i64, description: Py<PyAny>) -> PyResult<()> {
        self.longest_ns.store(ns, Ordering::Relaxed);
        let previous = self.longest.borrow_mut(py)?.replace(description);
        drop(previous);
        Ok(())
    }

    /// The counters as `loop.stats()` returns them.
    pub fn to_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let dict = PyDict::new(py);
        dict.set_item("iterations", self.iterations.get())?;
        dict.set_item("callbacks", self.callbacks.get())?;
        dict.set_item("io_events", self.io_events.get())?;
        dict.set_item("timers_fired", self.timers_fired.get())?;
        dict.set_item("timers_cancelled", self.timers_cancelled.get())?;
        dict.set_item("poll_waits", self.poll_waits.get())?;
        dict.set_item("poll_time", self.poll_ns.get() as f64 / 1e9)?;
        dict.set_item("busy_time", self.busy_ns.get() as f64 / 1e9)?;
        let longest = self.longest.borrow(py)?;
        match longest.as_ref() {
            Some(description) => {
                let entry = PyDict::new(py);
                entry.set_item(
                    "duration",
                    self.longest_ns.load(Ordering::Relaxed) as f64 / 1e9,
                )?;
                entry.set_item("callback", description.bind(py))?;
                dict.set_item("longest_callback", entry)?;
            }
            None => dict.set_item("longest_callback", py.None())?,
        }
        Ok(dict)
    }
}

/// Names `subject` (what an item timed alone ran, `took` ns long) as the
/// longest callback. Rare: only when a record is broken.
#[cold]
pub fn record_longest(py: Python<'_>, stats: &LoopStats, took: i64, subject: Option<Py<PyAny>>) {
    static DESCRIBE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let described = DESCRIBE
        .import(py, "ferroloop._blocking", "describe_subject")
        .and_then(|describe| describe.call1((subject,)))
        .and_then(|description| stats.set_longest(py, took, description.unbind()));
    if let Err(err) = described {
        err.write_unraisable(py, None);
    }
}

/// Times one batch in chunks (see the module docs).
pub struct BatchClock {
    batch_start_ns: i64,
    chunk_start_ns: i64,
    chunk_len: u32,
    in_chunk: u32,
}

impl BatchClock {
    /// Whether the next item is timed alone (a chunk of one).
    #[inline(always)]
    pub fn next_is_alone(&self) -> bool {
        self.chunk_len == 1
    }

    /// After an item: `Some(ns)` if it was timed alone and took `ns`.
    #[inline(always)]
    pub fn item_ended(&mut self) -> Option<i64> {
        self.in_chunk += 1;
        if self.in_chunk < self.chunk_len {
            return None;
        }
        let now = clock::monotonic_ns();
        let took = now - self.chunk_start_ns;
        let alone = self.chunk_len == 1;
        self.chunk_len = if took >= SLOW_CHUNK_NS {
            1
        } else {
            (self.chunk_len * 2).min(LONGEST_CHUNK)
        };
        self.chunk_start_ns = now;
        self.in_chunk = 0;
        alone.then_some(took)
    }
}
