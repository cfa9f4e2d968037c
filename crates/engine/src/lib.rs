//! The engine of ferroloop: everything an event loop needs that has nothing to
//! do with Python.
//!
//! - [`ready`]: the FIFO of callbacks due to run, in iteration batches;
//! - [`timers`]: the heap of scheduled callbacks, earliest and then oldest first;
//! - [`poller`]: the epoll wait, with microsecond timeouts where the kernel
//!   has `epoll_pwait2` (milliseconds, rounded up, elsewhere);
//! - [`registry`]: which descriptor is watched by whom, level-triggered;
//! - [`fd_table`]: values found by descriptor number, in memory bounded by
//!   the descriptors held;
//! - [`int_hash`]: maps keyed by addresses and descriptor numbers, hashed
//!   in a few instructions;
//! - [`waker`]: how another thread wakes a sleeping loop without lost wake-ups;
//! - [`clock`]: `CLOCK_MONOTONIC`, read and rounded as `time.monotonic()` is;
//! - [`lifecycle`] and [`flow_control`]: a transport's close/abort state
//!   machine and its write water marks, the arithmetic of asyncio's
//!   transports without their Python objects.
//!
//! The pieces are generic over what they hold, so the Python layer stores its
//! handles in them and the tests here store plain values. They are separate
//! because they are borrowed separately: the loop blocks in the poller with
//! the interpreter released while other threads may still queue callbacks or
//! register descriptors.

#![deny(unsafe_op_in_unsafe_fn)]
#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

pub mod clock;
pub mod fd_table;
pub mod flow_control;
pub mod int_hash;
pub mod lifecycle;
pub mod poller;
pub mod ready;
pub mod registry;
pub mod timers;
pub mod waker;

pub use flow_control::{FlowControl, WriteFlow};
pub use int_hash::{IntMap, IntSet};
pub use lifecycle::Lifecycle;
pub use poller::{Poller, Readiness, TightTimerSlack};
pub use ready::ReadyQueue;
pub use registry::{Direction, IoRegistry};
pub use timers::{CancelledCount, Timer, TimerHeap};
pub use waker::Waker;
