//! The cross-thread waker: how another thread gets a sleeping loop to look at
//! the work it just queued.
//!
//! A write to an eventfd costs a system call on the waking side and an epoll
//! wake-up on the loop's side. Most wake requests need neither: the loop is
//! busy running callbacks and will see the new work anyway, or another thread
//! already woke it. The waker therefore tracks whether the loop is (about to
//! be) blocked and writes only on the transition from sleeping to woken.
//!
//! The protocol that makes this free of lost wake-ups:
//! 1. the loop calls [`Waker::prepare_to_sleep`], *then* checks its queues
//!    for work (under the lock that guards them), and polls with a zero
//!    timeout if there is any;
//! 2. a producer queues its work (under that same lock), *then* calls
//!    [`Waker::wake`].
//!
//! If the producer's push came after the loop's check, the lock orders the
//! loop's "sleeping" before the producer's look at the state, so the producer
//! sees it and writes the eventfd, which makes the poll return at once (the
//! kernel queues the event when the write happens, so a write that lands
//! before the poll starts is not missed either). If the push came first, the
//! loop's check finds it. For ferroloop the lock is the interpreter's GIL.
//!
//! A producer first merely reads the state: while the loop is running, which
//! is most of the time under load, a wake costs a plain load rather than an
//! atomic read-modify-write on a cache line the loop thread also writes.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use mio::Registry;

use crate::poller::WAKER_TOKEN;

const RUNNING: u8 = 0;
const SLEEPING: u8 = 1;
const WOKEN: u8 = 2;

/// Shared between the loop and every thread that may wake it.
#[derive(Debug)]
pub struct Waker {
    eventfd: mio::Waker,
    state: AtomicU8,
}

impl Waker {
    /// Creates the waker and registers its eventfd with the loop's poller.
    pub fn new(registry: &Registry) -> io::Result<Arc<Waker>> {
        Ok(Arc::new(Waker {
            eventfd: mio::Waker::new(registry, WAKER_TOKEN)?,
            state: AtomicU8::new(RUNNING),
        }))
    }

    /// Called by the loop before it checks for work and blocks.
    pub fn prepare_to_sleep(&self) {
        self.state.store(SLEEPING, Ordering::SeqCst);
    }

    /// Called by the loop after the poll returns; true if a producer woke it.
    pub fn finish_sleep(&self) -> bool {
        self.state.swap(RUNNING, Ordering::SeqCst) == WOKEN
    }

    /// Called by a producer after queueing work: wakes the loop if it sleeps.
    pub fn wake(&self) -> io::Result<()> {
        if self.state.load(Ordering::SeqCst) != SLEEPING {
            return Ok(());
        }
        if self
            .state
            .compare_exchange(SLEEPING, WOKEN, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.eventfd.wake()
        } else {
            Ok(())
        }
    }
}
