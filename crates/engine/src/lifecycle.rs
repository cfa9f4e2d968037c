//! The end of a transport's connection: asyncio's close/abort state machine.
//!
//! `close()` stops reading at once but lets buffered data drain, then loses
//! the connection; `abort()` (and a fatal error) drops the buffer and loses
//! it now. A transition that loses the connection answers true, and only
//! one of them can; the write side of a closing transport calls
//! `connection_lost` itself once its buffer drained, as asyncio does.
//!
//! It also counts what asyncio's `_conn_lost` counts (the loss, then each
//! write dropped after it), and whether the descriptor is registered, so
//! that starting and stopping to watch are idempotent.

/// After this many writes to a lost connection, asyncio logs a warning.
const LOG_THRESHOLD_FOR_CONNLOST_WRITES: u32 = 5;

#[derive(Debug, Default)]
pub struct Lifecycle {
    /// `close()` or `abort()` was called.
    closing: bool,
    /// The connection is lost (`connection_lost` is scheduled or ran), plus
    /// the writes dropped after that, as asyncio's `_conn_lost` counts.
    conn_lost: u32,
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
        if self.is_lost() {
            return false;
        }
        self.closing = true;
        self.conn_lost += 1;
        true
    }

    /// True if the transport must register its descriptor now: it has not
    /// yet, and the connection is not already lost.
    pub fn begin_watching(&mut self) -> bool {
        if self.is_lost() || self.registered {
            return false;
        }
        self.registered = true;
        true
    }

    /// True if the transport must remove its descriptor from the registry.
    pub fn stop_watching(&mut self) -> bool {
        std::mem::replace(&mut self.registered, false)
    }

    pub fn is_closing(&self) -> bool {
        self.closing
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_with_nothing_buffered_loses_at_once_and_only_once() {
        let mut life = Lifecycle::default();
        assert!(life.close(true));
        assert!(life.is_closing() && life.is_lost());
        assert!(!life.close(true));
        assert!(!life.force_close());
        assert_eq!(life.writes_lost(), 1);
    }

    #[test]
    fn close_with_data_buffered_leaves_the_loss_to_the_drain() {
        // The write side calls connection_lost itself once drained, as
        // asyncio's `_write_ready` does, without counting a loss.
        let mut life = Lifecycle::default();
        assert!(!life.close(false));
        assert!(life.is_closing() && !life.is_lost());
        assert!(!life.close(true));
    }

    #[test]
    fn abort_while_closing_loses_once() {
        let mut life = Lifecycle::default();
        assert!(!life.close(false));
        assert!(life.force_close());
        assert!(!life.force_close());
        assert_eq!(life.writes_lost(), 1);
    }

    #[test]
    fn watching_is_idempotent_and_never_starts_after_the_loss() {
        let mut life = Lifecycle::default();
        assert!(life.begin_watching());
        assert!(!life.begin_watching());
        assert!(life.stop_watching());
        assert!(!life.stop_watching());
        life.force_close();
        assert!(!life.begin_watching());
    }

    #[test]
    fn writes_after_the_loss_warn_past_asyncios_threshold() {
        let mut life = Lifecycle::default();
        life.force_close();
        let warnings: Vec<bool> = (0..6).map(|_| life.write_after_loss()).collect();
        assert_eq!(warnings, [false, false, false, false, true, true]);
        assert_eq!(life.writes_lost(), 7);
    }

    #[test]
    fn writes_dropped_by_a_closing_pipe_count_before_the_loss() {
        let mut life = Lifecycle::default();
        life.close(false);
        life.write_after_loss();
        life.write_after_loss();
        assert!(!life.is_lost());
        assert_eq!(life.writes_lost(), 2);
        assert!(life.force_close());
        assert_eq!(life.writes_lost(), 3);
    }
}
