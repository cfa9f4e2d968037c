//! The timer heap: callbacks scheduled for a moment on the loop's clock.
//!
//! Order: earliest deadline first, and among equal deadlines the order in which
//! they were scheduled (asyncio's own heap compares deadlines only and so
//! shuffles equal ones; programs that schedule two timers for the same instant
//! expect them in order).
//!
//! Cancellation is lazy, like asyncio's: a cancelled timer stays in the heap and
//! is dropped when it reaches the top. Its owner reports the cancellation
//! through a [`CancelledCount`]; once more than half of at least
//! [`PURGE_MIN_ENTRIES`] entries are cancelled the heap is rebuilt without
//! them, so a program that keeps scheduling and cancelling timeouts does not
//! grow without bound.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::Arc;

/// Below this many entries the heap is never purged (asyncio's threshold).
pub const PURGE_MIN_ENTRIES: usize = 100;

/// What the heap needs to know about its items.
pub trait Timer {
    /// True once the timer has been cancelled; it will then never be returned.
    fn is_cancelled(&self) -> bool;
}

/// A shared count of cancelled entries still in the heap. Cloned into each
/// timer's owner so that cancelling needs no access to the heap itself.
#[derive(Debug, Clone, Default)]
pub struct CancelledCount(Arc<AtomicUsize>);

impl CancelledCount {
    /// Records that one timer still in the heap was cancelled.
    pub fn increment(&self) {
        self.0.fetch_add(1, AtomicOrdering::Relaxed);
    }

    fn decrement(&self) {
        // Saturating: a count out of step can only delay a purge, never corrupt.
        let _ = self
            .0
            .fetch_update(AtomicOrdering::Relaxed, AtomicOrdering::Relaxed, |n| {
                Some(n.saturating_sub(1))
            });
    }

    pub fn get(&self) -> usize {
        self.0.load(AtomicOrdering::Relaxed)
    }

    fn reset(&self) {
        self.0.store(0, AtomicOrdering::Relaxed);
    }
}

struct Entry<T> {
    /// Deadline in loop seconds; NaN was mapped to -inf on insertion.
    when: f64,
    seq: u64,
    item: T,
}

impl<T> Entry<T> {
    fn key(&self) -> (f64, u64) {
        (self.when, self.seq)
    }
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    /// Reversed, so that std's max-heap yields the earliest entry first.
    fn cmp(&self, other: &Self) -> Ordering {
        let (a_when, a_seq) = self.key();
        let (b_when, b_seq) = other.key();
        b_when.total_cmp(&a_when).then(b_seq.cmp(&a_seq))
    }
}

/// A min-heap of timers ordered by (deadline, scheduling order).
pub struct TimerHeap<T> {
    heap: BinaryHeap<Entry<T>>,
    next_seq: u64,
    cancelled: CancelledCount,
}

impl<T: Timer> Default for TimerHeap<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Timer> TimerHeap<T> {
    pub fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            next_seq: 0,
            cancelled: CancelledCount::default(),
        }
    }

    /// The counter that owners of timers in this heap bump on cancellation.
    pub fn cancelled_count(&self) -> &CancelledCount {
        &self.cancelled
    }

    /// Schedules `item` for `when` (loop seconds). A NaN deadline is due at
    /// once, as it is in asyncio (NaN compares as not-later than any time).
    pub fn push(&mut self, when: f64, item: T) {
        let when = if when.is_nan() {
            f64::NEG_INFINITY
        } else {
            when
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Entry { when, seq, item });
    }

    /// The deadline of the earliest live timer. Cancelled timers found on top
    /// on the way are moved to `discarded`.
    ///
    /// Removed items are handed back rather than dropped here, because the
    /// owner may need to release them outside its own critical section (a
    /// dropped Python object can run arbitrary code).
    pub fn next_deadline(&mut self, discarded: &mut Vec<T>) -> Option<f64> {
        while self.heap.peek().is_some_and(|e| e.item.is_cancelled()) {
            discarded.push(self.heap.pop().expect("peeked entry exists").item);
            self.cancelled.decrement();
        }
        self.heap.peek().map(|e| e.when)
    }

    /// Passes to `on_due`, in order, every live timer due at `now`, that is
    /// whose deadline is not later than `now`. Cancelled timers removed on
    /// the way, or by a purge, are moved to `discarded`.
    pub fn pop_due(&mut self, now: f64, mut on_due: impl FnMut(T), discarded: &mut Vec<T>) {
        self.purge_if_mostly_cancelled(discarded);
        while let Some(top) = self.heap.peek() {
            if top.when > now {
                break;
            }
            let entry = self.heap.pop().expect("peeked entry exists");
            if entry.item.is_cancelled() {
                self.cancelled.decrement();
                discarded.push(entry.item);
            } else {
                on_due(entry.item);
            }
        }
    }

    /// Entries in the heap, cancelled ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Removes every entry (a closing loop releases them).
    pub fn drain(&mut self) -> Vec<T> {
        self.cancelled.reset();
        std::mem::take(&mut self.heap)
            .into_iter()
            .map(|e| e.item)
            .collect()
    }

    /// Visits every entry, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.heap.iter().map(|e| &e.item)
    }

    fn purge_if_mostly_cancelled(&mut self, discarded: &mut Vec<T>) {
        let total = self.heap.len();
        if total > PURGE_MIN_ENTRIES && self.cancelled.get() * 2 > total {
            let (dead, live): (Vec<_>, Vec<_>) = std::mem::take(&mut self.heap)
                .into_vec()
                .into_iter()
                .partition(|e| e.item.is_cancelled());
            self.heap = live.into();
            discarded.extend(dead.into_iter().map(|e| e.item));
            self.cancelled.reset();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Clone)]
    struct TestTimer {
        id: u32,
        cancelled: Rc<Cell<bool>>,
    }

    impl TestTimer {
        fn new(id: u32) -> Self {
            TestTimer {
                id,
                cancelled: Rc::new(Cell::new(false)),
            }
        }
    }

    impl Timer for TestTimer {
        fn is_cancelled(&self) -> bool {
            self.cancelled.get()
        }
    }

    fn due(heap: &mut TimerHeap<TestTimer>, now: f64) -> Vec<u32> {
        let mut out = Vec::new();
        heap.pop_due(now, |t| out.push(t.id), &mut Vec::new());
        out
    }

    #[test]
    fn earliest_first_and_equal_deadlines_in_scheduling_order() {
        let mut heap = TimerHeap::new();
        heap.push(2.0, TestTimer::new(1));
        heap.push(1.0, TestTimer::new(2));
        for id in 3..20 {
            heap.push(1.5, TestTimer::new(id));
        }
        heap.push(1.0, TestTimer::new(20));
        let mut expected = vec![2, 20];
        expected.extend(3..20);
        expected.push(1);
        assert_eq!(due(&mut heap, 10.0), expected);
    }

    #[test]
    fn nothing_fires_before_its_deadline() {
        let mut heap = TimerHeap::new();
        heap.push(5.0, TestTimer::new(1));
        assert!(due(&mut heap, 4.999_999_999).is_empty());
        assert_eq!(heap.next_deadline(&mut Vec::new()), Some(5.0));
        assert_eq!(due(&mut heap, 5.0), vec![1]);
    }

    #[test]
    fn nan_is_due_at_once_and_infinity_never() {
        let mut heap = TimerHeap::new();
        heap.push(f64::INFINITY, TestTimer::new(1));
        heap.push(f64::NAN, TestTimer::new(2));
        assert_eq!(due(&mut heap, 0.0), vec![2]);
        assert!(due(&mut heap, 1e300).is_empty());
        assert_eq!(heap.next_deadline(&mut Vec::new()), Some(f64::INFINITY));
    }

    #[test]
    fn cancelled_timers_are_skipped() {
        let mut heap = TimerHeap::new();
        let a = TestTimer::new(1);
        heap.push(1.0, a.clone());
        heap.push(2.0, TestTimer::new(2));
        a.cancelled.set(true);
        heap.cancelled_count().increment();
        let mut discarded = Vec::new();
        assert_eq!(heap.next_deadline(&mut discarded), Some(2.0));
        assert_eq!(discarded.len(), 1);
        assert_eq!(heap.cancelled_count().get(), 0);
        assert_eq!(due(&mut heap, 3.0), vec![2]);
    }

    #[test]
    fn mostly_cancelled_heap_is_purged() {
        let mut heap = TimerHeap::new();
        let mut timers = Vec::new();
        for id in 0..1000 {
            let t = TestTimer::new(id);
            heap.push(100.0 + id as f64, t.clone());
            timers.push(t);
        }
        for t in timers.iter().take(600) {
            t.cancelled.set(true);
            heap.cancelled_count().increment();
        }
        let mut discarded = Vec::new();
        heap.pop_due(0.0, |_| panic!("nothing is due"), &mut discarded);
        assert_eq!(discarded.len(), 600);
        assert_eq!(heap.len(), 400);
        assert_eq!(heap.cancelled_count().get(), 0);
        assert_eq!(due(&mut heap, 1e9), (600..1000).collect::<Vec<_>>());
    }

    #[test]
    fn small_heaps_are_not_purged() {
        let mut heap = TimerHeap::new();
        let mut timers = Vec::new();
        for id in 0..50 {
            let t = TestTimer::new(id);
            heap.push(100.0, t.clone());
            timers.push(t);
        }
        for t in &timers {
            t.cancelled.set(true);
            heap.cancelled_count().increment();
        }
        assert!(due(&mut heap, 0.0).is_empty());
        assert_eq!(heap.len(), 50);
    }
}
