"""The transports of ``connect_read_pipe`` and ``connect_write_pipe``:
``asyncio.ReadTransport`` and ``asyncio.WriteTransport`` instances over the
native stream core in a pipe mode (``StreamCore(..., pipe='read')``).

They follow asyncio's ``_UnixReadPipeTransport`` and
``_UnixWritePipeTransport`` (the same on 3.11 to 3.13): which files they
take, end of file, a pty's EIO, a reader that goes away, flow control,
``get_extra_info('pipe')``. Reading and writing are native; what stays here
is cold: construction, reprs, error reports and the end of the connection.
"""

import errno
import os
import stat
import sys
from asyncio import futures, transports
from asyncio.log import logger

from ._ferroloop import StreamCore
from .transports import CoreReading, CoreTransport, CoreWriting


class _PipeTransport(CoreTransport):
    """What both ends share: the pipe object, the file checks, the repr."""

    _file_attribute = '_pipe'
    _pipe = None

    def _setup(self, loop, pipe, kind_error):
        """Checks and takes ``pipe``; returns its file mode."""
        self._extra['pipe'] = pipe
        self._loop = loop
        fileno = pipe.fileno()
        mode = os.fstat(fileno).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)
                or stat.S_ISCHR(mode)):
            raise ValueError(kind_error)
        os.set_blocking(fileno, False)
        self._fileno = fileno
        return mode

    def _start(self, protocol, waiter):
        loop = self._loop
        loop.call_soon(protocol.connection_made, self)
        # Watch only once connection_made() has run, as asyncio does.
        loop.call_soon(self._core._start)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._pipe is None:
            info.append('closed')
        elif self.is_closing():
            info.append('closing')
        info.append(f'fd={self._fileno}')
        if self._pipe is not None and not self._loop.is_closed():
            info.extend(self._state_info())
        elif self._pipe is not None:
            info.append('open')
        else:
            info.append('closed')
        return '<{}>'.format(' '.join(info))


class ReadPipeTransport(_PipeTransport, CoreReading, transports.ReadTransport):
    """The read end of a pipe, FIFO, socket, pty or character device."""

    max_size = 256 * 1024  # asyncio's largest read; the core reads as much

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        self._setup(loop, pipe, "Pipe transport is for pipes/sockets only.")
        self._core = StreamCore(loop, self._fileno, protocol, self,
                                pipe='read')
        self._pipe = pipe
        self._start(protocol, waiter)

    def _state_info(self):
        return ['polling' if self.is_reading() else 'idle']

    @staticmethod
    def _is_quiet_error(exc):
        # A pty's master reads EIO once the other side is closed: that is
        # its end of file. Other read errors go to the exception handler.
        return isinstance(exc, OSError) and exc.errno == errno.EIO

    def _eof_from_peer(self):
        """The writer closed: tell the protocol and close, as asyncio does
        (``eof_received`` is scheduled and its answer not asked)."""
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._loop.call_soon(self._core.get_protocol().eof_received)
        self._core.close()

    def _report_read_callback_error(self, exc):
        """The protocol raised in ``data_received``: asyncio's reader
        callback lets it out to the exception handler, and reading goes on."""
        self._loop.call_exception_handler({
            'message': f'Exception in callback '
                       f'{type(self).__name__}._read_ready()',
            'exception': exc,
            'transport': self,
            'protocol': self._protocol,
        })


class WritePipeTransport(_PipeTransport, CoreWriting,
                         transports.WriteTransport):
    """The write end of a pipe, FIFO, socket, pty or character device."""

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        mode = self._setup(loop, pipe, "Pipe transport is only for "
                           "pipes, sockets and character devices")
        # The write end of a FIFO or socket turns readable when the reader
        # goes away; asyncio watches for that except on character devices
        # (and on AIX, where only sockets report it).
        watch_peer = stat.S_ISSOCK(mode) or (
            stat.S_ISFIFO(mode) and not sys.platform.startswith('aix'))
        self._core = StreamCore(loop, self._fileno, protocol, self,
                                pipe='write', watch_peer=watch_peer)
        self._pipe = pipe
        self.write = self._core.write
        self._start(protocol, waiter)

    def _state_info(self):
        bufsize = self.get_write_buffer_size()
        return ['polling' if bufsize else 'idle', f'bufsize={bufsize}']

    def write(self, data):
        self._core.write(data)

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    def _closed_by_peer(self):
        """The reader went away: what was still buffered is lost."""
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        lost = BrokenPipeError() if self.get_write_buffer_size() else None
        self._core._force_close(lost)
