//! The ready queue: callbacks due to run, in the order they became due.
//!
//! asyncio runs callbacks FIFO, and one loop iteration runs exactly the
//! callbacks that were ready when the iteration started: a callback scheduled
//! while the iteration runs waits for the next one, after the next poll. That
//! keeps a callback that reschedules itself from starving I/O.
//!
//! [`ReadyQueue::take_batch`] hands the runner the whole batch at once (a
//! swap, no copying), so running an item does not touch the queue; items
//! queued meanwhile collect in the queue for the next iteration.
//! [`ReadyQueue::return_batch`] puts back what was not run (a callback stopped
//! the loop with an exception) in front of them, and keeps the batch's storage
//! for the next swap.

use std::collections::VecDeque;

/// A FIFO of ready items, run in iteration batches.
#[derive(Debug)]
pub struct ReadyQueue<T> {
    items: VecDeque<T>,
    /// Empty storage to swap in when a batch is taken.
    spare: VecDeque<T>,
}

/// The items of one iteration, in order.
pub type Batch<T> = VecDeque<T>;

impl<T> Default for ReadyQueue<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> ReadyQueue<T> {
    pub fn new() -> Self {
        ReadyQueue {
            items: VecDeque::with_capacity(256),
            spare: VecDeque::with_capacity(256),
        }
    }

    /// Appends an item behind everything already queued.
    #[inline]
    pub fn push(&mut self, item: T) {
        self.items.push_back(item);
    }

    /// Takes everything queued now: the batch of one iteration.
    pub fn take_batch(&mut self) -> Batch<T> {
        let fresh = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.items, fresh)
    }

    /// Gives a taken batch back. Items left in it (not run) go in front of
    /// those queued since it was taken.
    pub fn return_batch(&mut self, mut batch: Batch<T>) {
        if batch.is_empty() {
            self.spare = batch;
        } else {
            std::mem::swap(&mut self.items, &mut batch);
            self.items.append(&mut batch);
            self.spare = batch;
        }
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
        let got: Vec<_> = q.take_batch().into_iter().collect();
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn items_pushed_during_a_batch_wait_for_the_next() {
        let mut q = ReadyQueue::new();
        q.push("a");
        q.push("b");
        let mut batch = q.take_batch();
        let mut ran = Vec::new();
        while let Some(item) = batch.pop_front() {
            ran.push(item);
            q.push("rescheduled");
        }
        q.return_batch(batch);
        assert_eq!(ran, vec!["a", "b"]);
        assert_eq!(q.len(), 2);
    }

    #[test]
    fn unrun_items_go_back_in_front() {
        let mut q = ReadyQueue::new();
        for i in 0..4 {
            q.push(i);
        }
        let mut batch = q.take_batch();
        assert_eq!(batch.pop_front(), Some(0));
        q.push(10);
        // The loop stops here (KeyboardInterrupt in item 0).
        q.return_batch(batch);
        let next: Vec<_> = q.take_batch().into_iter().collect();
        assert_eq!(next, vec![1, 2, 3, 10]);
    }
}
