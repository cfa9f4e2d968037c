"""The transports users get: ``asyncio.Transport`` and
``asyncio.DatagramTransport`` instances whose work is done natively.

asyncio's transport base classes use ``__slots__``, so a native class cannot
inherit from them; these thin Python classes do, and hand every operation to
a native core (``StreamCore``, ``DatagramCore``). The hottest calls
(``write``, ``sendto``) are bound straight to the core's methods on the
instance, so a protocol's ``transport.write(data)`` costs no Python frame.

What stays here is cold: construction (extra info, scheduling
``connection_made``), error reporting, ``connection_lost`` and releasing the
socket.
"""

import socket
import sys
import warnings
from asyncio import constants, futures, transports, trsock
from asyncio.log import logger

from ._ferroloop import DatagramCore, StreamCore

_SERVER_TRACKS_TRANSPORTS = sys.version_info >= (3, 13)
# 3.12 gave socket transports a writelines() of their own; before, it was
# the base class's write(b''.join(list_of_data)).
_OWN_WRITELINES = sys.version_info >= (3, 12)


def _set_nodelay(sock):
    # Protocol 0 is TCP too: sockets made with socket.socket() have it, and
    # so do the connections they accept. Stock asyncio leaves those with
    # Nagle's algorithm on (uvicorn --workers binds such a socket: each
    # response then waits 40 ms for a delayed ACK); uvloop does not.
    if (sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
            and sock.proto in (0, socket.IPPROTO_TCP)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _as_float(limit):
    """A water mark as the float the native core compares with: a number
    too large for a float is beyond any buffer size."""
    try:
        return float(limit)
    except OverflowError:
        return float('inf')


class CoreTransport:
    """What every transport over a native core shares (socket, datagram and
    pipe transports): the core's state, the protocol, error reporting, the
    end of the connection."""

    # The attribute holding the socket or pipe object, by asyncio's name for
    # it (code reads it); None once released. Read by __del__, which may run
    # even if __init__ failed early.
    _file_attribute = '_sock'
    _sock = None

    def __del__(self, _warn=warnings.warn):
        file = getattr(self, self._file_attribute)
        if file is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._core._detach()
            file.close()

    def is_closing(self):
        return self._core.is_closing()

    def close(self):
        self._core.close()

    def set_protocol(self, protocol):
        self._core.set_protocol(protocol)

    def get_protocol(self):
        return self._core.get_protocol()

    @property
    def _protocol(self):
        return self._core.get_protocol()

    def _force_close(self, exc):
        self._core._force_close(exc)

    def _fatal_error(self, exc, message='Fatal error on transport'):
        """Report ``exc`` (OSErrors only in debug mode, others to the
        exception handler, as asyncio does) and drop the connection."""
        if self._is_quiet_error(exc):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                'message': message,
                'exception': exc,
                'transport': self,
                'protocol': self._protocol,
            })
        self._core._force_close(exc)

    @staticmethod
    def _is_quiet_error(exc):
        """Whether asyncio reports this fatal error in debug mode only."""
        return isinstance(exc, OSError)

    def _report_protocol_error(self, message, exc):
        self._loop.call_exception_handler({
            'message': message,
            'exception': exc,
            'transport': self,
            'protocol': self._protocol,
        })

    def _log_debug(self, message):
        if self._loop.get_debug():
            logger.debug(message, self)

    def _call_connection_lost(self, exc):
        protocol = self._core.get_protocol()
        try:
            if protocol is not None:
                protocol.connection_lost(exc)
        finally:
            self._core._detach()
            getattr(self, self._file_attribute).close()
            setattr(self, self._file_attribute, None)
            self._loop = None
            self._connection_ended()

    def _connection_ended(self):
        """After ``connection_lost``: what else the transport lets go of."""


class CoreWriting:
    """The writing side of a transport over a native core: buffer sizes,
    limits, flow control state, abort."""

    # (low, high), as set_write_buffer_limits() was given them.
    _write_buffer_limits = (16 * 1024, 64 * 1024)

    def abort(self):
        self._core.abort()

    def get_write_buffer_size(self):
        return self._core.get_write_buffer_size()

    def get_write_buffer_limits(self):
        return self._write_buffer_limits

    def set_write_buffer_limits(self, high=None, low=None):
        """asyncio's arithmetic and check, on whatever numbers it is given
        (floats, huge ints, inf); the native core compares sizes with them."""
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(
                f'high ({high!r}) must be >= low ({low!r}) must be >= 0')
        self._write_buffer_limits = (low, high)
        self._core._set_write_buffer_limits(_as_float(high), _as_float(low))

    @property
    def _protocol_paused(self):
        return self._core._protocol_paused

    @property
    def _conn_lost(self):
        return self._core._conn_lost


class CoreReading:
    """The reading side of a stream transport over a native core."""

    def is_reading(self):
        return self._core.is_reading()

    def pause_reading(self):
        if self._core.pause_reading():
            self._log_debug("%r pauses reading")

    def resume_reading(self):
        if self._core.resume_reading():
            self._log_debug("%r resumes reading")


class _TransportBase(CoreTransport, CoreWriting):
    """What stream and datagram transports share: the socket, extra info
    and the server link."""

    def _setup(self, loop, sock, server):
        self._extra['socket'] = trsock.TransportSocket(sock)
        try:
            self._extra['sockname'] = sock.getsockname()
        except OSError:
            self._extra['sockname'] = None
        if 'peername' not in self._extra:
            try:
                self._extra['peername'] = sock.getpeername()
            except OSError:
                self._extra['peername'] = None
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._server = server
        if server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                server._attach(self)
            else:
                server._attach()

    def __repr__(self):
        info = [self.__class__.__name__]
        if self._sock is None:
            info.append('closed')
        elif self.is_closing():
            info.append('closing')
        info.append(f'fd={self._sock_fd}')
        if self._sock is not None:
            info.append(f'bufsize={self.get_write_buffer_size()}')
        return '<{}>'.format(' '.join(info))

    def _connection_ended(self):
        server = self._server
        if server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                server._detach(self)
            else:
                server._detach()
            self._server = None


class SocketTransport(_TransportBase, CoreReading, transports.Transport):
    """A TCP or Unix stream socket transport."""

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None,
                 server=None):
        super().__init__(extra)
        self._setup(loop, sock, server)
        _set_nodelay(sock)
        self._core = StreamCore(loop, self._sock_fd, protocol, self)
        # The hot path: protocol and stream code call these directly on the
        # core, with no Python frame of ours in between.
        self.write = self._core.write
        if _OWN_WRITELINES:
            self.writelines = self._core.writelines
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._core._start)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def write(self, data):
        self._core.write(data)

    if _OWN_WRITELINES:
        def writelines(self, list_of_data):
            self._core.writelines(list_of_data)

    def write_eof(self):
        self._core.write_eof()

    def can_write_eof(self):
        return True

    def _make_empty_waiter(self):
        return self._core._make_empty_waiter()

    def _reset_empty_waiter(self):
        self._core._reset_empty_waiter()


class DatagramTransport(_TransportBase, transports.Transport,
                        transports.DatagramTransport):
    """A UDP or Unix datagram socket transport (an ``asyncio.Transport``
    too, as asyncio's own datagram transport is)."""

    def __init__(self, loop, sock, protocol, address=None, waiter=None,
                 extra=None):
        super().__init__(extra)
        self._setup(loop, sock, None)
        self._address = address
        newer = sys.version_info >= (3, 13)
        self._core = DatagramCore(loop, sock, protocol, self, address,
                                  bool(self._extra['peername']), newer,
                                  8 if newer else 0)
        self.sendto = self._core.sendto
        loop.call_soon(protocol.connection_made, self)
        loop.call_soon(self._core._start)
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def sendto(self, data, addr=None):
        self._core.sendto(data, addr)
