//! The ready queue: callbacks due to run, in the order they became due.
//!
//! asyncio runs callbacks FIFO, and one loop iteration runs exactly the
//! callbacks that were ready when the iteration started: a callback scheduled
//! while the iteration runs waits for the next one, after the next poll. That
//! keeps a callback that reschedules itself from starving I/O. The queue marks
//! the batch with [`ReadyQueue::start_batch`]; the caller pops that many.

use std::collections::VecDeque;

/// A FIFO of ready items with iteration batches.
#[derive(Debug)]
pub struct ReadyQueue<T> {
    items: VecDeque<T>,
}

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ReadyQueue<T> {
    pub fn new() -> Self {
        ReadyQueue { items: VecDeque::with_capacity(256) }
    }

    /// Appends an item behind everything already queued.
    #[inline]
    pub fn push(&mut self, item: T) {
        self.items.push_back(item);
    }

    /// The number of items this iteration runs: those queued right now.
    #[inline]
    pub fn start_batch(&self) -> usize {
        self.items.len()
    }

    /// Takes the oldest item.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        self.items.pop_front()
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.items.len()
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Drops every queued item and returns them (a closing loop releases them).
    pub fn drain(&mut self) -> Vec<T> {
        self.items.drain(..).collect()
    }

    /// Visits the queued items in order without taking them.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_order() {
        let mut q = ReadyQueue::new();
        for i in 0..5 {
            q.push(i);
        }
        let got: Vec<_> = std::iter::from_fn(|| q.pop()).collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn items_pushed_during_a_batch_wait_for_the_next() {
        let mut q = ReadyQueue::new();
        q.push("a");
        q.push("b");
        let n = q.start_batch();
        let mut ran = Vec::new();
        for _ in 0..n {
            let item = q.pop().unwrap();
            ran.push(item);
            q.push("rescheduled");
        }
        assert_eq!(ran, vec!["a", "b"]);
        assert_eq!(q.len(), 2);
    }
}
