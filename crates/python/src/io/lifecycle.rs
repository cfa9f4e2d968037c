//! The end of a transport's connection, shared by the stream and datagram
//! transports: asyncio's close/abort state machine and the scheduling of
//! `connection_lost`.
//!
//! `close()` stops reading at once but lets buffered data drain, then loses
//! the connection; `abort()` (and a fatal error) drops the buffer and loses
//! it now. Either way `connection_lost` runs exactly once, from the loop, as
//! a callback of its own.

use pyo3::prelude::*;

use crate::loop_core::LoopCore;

/// After this many writes to a lost connection, asyncio logs a warning.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

#[derive(Default)]
pub struct Lifecycle {
    /// `close()` or `abort()` was called.
    pub closing: bool,
    /// `connection_lost` is scheduled (or ran); counts writes after that too,
    /// as asyncio's `_conn_lost` does.
    pub conn_lost: u32,
    /// Writes dropped by a closing pipe before its connection was lost
    /// (asyncio's pipes count them in `_conn_lost` too).
    dropped_writes: u32,
    /// The descriptor is in the loop's registry.
    registered: bool,
}

impl Lifecycle {
    /// `close()`. True if the connection is lost now: nothing was left to
    /// send, so `connection_lost` must be scheduled.
    pub fn close(&mut self, nothing_buffered: bool) -> bool {
        if self.closing {
            return false;
        }
        self.closing = true;
        if nothing_buffered {
            self.conn_lost += 1;
            return true;
        }
        false
    }

    /// `abort()` or a fatal error. True if this call loses the connection
    /// (the caller drops its buffer and schedules `connection_lost`).
    pub fn force_close(&mut self) -> bool {
        if self.conn_lost > 0 {
            return false;
        }
        self.closing = true;
        self.conn_lost += 1;
        true
    }

    /// True if the transport must register its descriptor now: it has not
    /// yet, and the connection is not already lost.
    pub fn begin_watching(&mut self) -> bool {
        if self.conn_lost > 0 || self.registered {
            return false;
        }
        self.registered = true;
        true
    }

    /// True if the transport must remove its descriptor from the registry.
    pub fn stop_watching(&mut self) -> bool {
        std::mem::replace(&mut self.registered, false)
    }

    pub fn is_lost(&self) -> bool {
        self.conn_lost > 0
    }

    /// A write to a lost connection (or to a closing pipe), which is
    /// dropped. True when asyncio would log a warning for it.
    pub fn write_after_loss(&mut self) -> bool {
        if self.is_lost() {
            self.conn_lost += 1;
        } else {
            self.dropped_writes += 1;
        }
        self.writes_lost() > LOG_THRESHOLD_FOR_CONNLOST_WRITES
    }

    /// asyncio's `_conn_lost`: the loss, and the writes dropped.
    pub fn writes_lost(&self) -> u32 {
        self.conn_lost + self.dropped_writes
    }
}

/// Schedules the Python transport's `_call_connection_lost(exc)` as a loop
/// callback.
pub fn schedule_connection_lost(
    loop_: &Bound<'_, LoopCore>,
    transport: Option<Py<PyAny>>,
    exc: Py<PyAny>,
) -> PyResult<()> {
    if let Some(transport) = transport {
        let py = loop_.py();
        let callback = transport
            .bind(py)
            .getattr(pyo3::intern!(py, "_call_connection_lost"))?;
        loop_.call_method1(pyo3::intern!(py, "call_soon"), (callback, exc))?;
    }
    Ok(())
}
