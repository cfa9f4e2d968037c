"""What a loop on Unix adds: signal handlers.

A handler is installed the way asyncio installs it: Python's own signal
handler for the signal becomes a no-op, and ``signal.set_wakeup_fd`` makes
the C-level handler write the signal number to a socket the loop watches.
The loop reads the numbers and queues the registered callbacks, so they run
as ordinary loop callbacks, never inside the signal handler.
"""

import errno
import signal
import socket
import sys
import warnings
from asyncio import coroutines
from asyncio.log import logger

from ._ferroloop import Handle
from .base_loop import BaseLoop


def _ignore_signal(signum, frame):
    """The Python-level handler of a signal the loop handles: the real work
    happens when the loop reads the wakeup socket."""


class UnixLoop(BaseLoop):

    def __init__(self):
        super().__init__()
        self._signal_handlers = {}
        # (read end, write end) of the wakeup socket, made on first use.
        self._signal_wakeup = None

    def close(self):
        super().close()
        if not sys.is_finalizing():
            for sig in list(self._signal_handlers):
                self.remove_signal_handler(sig)
        elif self._signal_handlers:
            warnings.warn(f"Closing the loop {self!r} on interpreter shutdown "
                          f"stage, skipping signal handlers removal",
                          ResourceWarning, source=self)
            self._signal_handlers.clear()
        if self._signal_wakeup is not None:
            for sock in self._signal_wakeup:
                sock.close()
            self._signal_wakeup = None

    def _wakeup_socket(self):
        if self._signal_wakeup is None:
            rsock, wsock = socket.socketpair()
            rsock.setblocking(False)
            wsock.setblocking(False)
            self._signal_wakeup = (rsock, wsock)
            self._add_reader(rsock.fileno(), self._read_signal_numbers)
        return self._signal_wakeup[1]

    def _read_signal_numbers(self):
        rsock = self._signal_wakeup[0]
        while True:
            try:
                data = rsock.recv(4096)
            except InterruptedError:
                continue
            except BlockingIOError:
                return
            if not data:
                return
            for signum in data:
                if signum:
                    self._handle_signal(signum)

    def _handle_signal(self, sig):
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return  # Removed while the number was in flight.
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    def _check_signal(self, sig):
        if not isinstance(sig, int):
            raise TypeError(f'sig must be an int, not {sig!r}')
        if sig not in signal.valid_signals():
            raise ValueError(f'invalid signal number {sig}')

    def add_signal_handler(self, sig, callback, *args):
        """Run ``callback(*args)`` on the loop whenever signal ``sig``
        arrives. Main thread only; SIGKILL and SIGSTOP cannot be caught."""
        if (coroutines.iscoroutine(callback) or
                coroutines.iscoroutinefunction(callback)):
            raise TypeError("coroutines cannot be used "
                            "with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        try:
            # Raises ValueError outside the main thread: a loop running in
            # another thread cannot take over signals.
            signal.set_wakeup_fd(self._wakeup_socket().fileno())
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc))

        self._signal_handlers[sig] = Handle(callback, args, self, None)
        try:
            signal.signal(sig, _ignore_signal)
            # Restart interrupted system calls in other threads' code.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._clear_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f'sig {sig} cannot be caught')
            raise

    def remove_signal_handler(self, sig):
        """Restore the default handling of ``sig``; True if a handler was
        removed."""
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, default)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f'sig {sig} cannot be caught')
            raise
        if not self._signal_handlers:
            self._clear_wakeup_fd()
        return True

    @staticmethod
    def _clear_wakeup_fd():
        try:
            signal.set_wakeup_fd(-1)
        except (ValueError, OSError) as exc:
            logger.info('set_wakeup_fd(-1) failed: %s', exc)
