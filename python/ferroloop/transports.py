"""The transports users get: ``asyncio.Transport`` and
``asyncio.DatagramTransport`` instances whose work is done natively.

asyncio's transport base classes use ``__slots__``, so a native class cannot
inherit from them; these thin Python classes do, and hand every operation to
a native core (``StreamCore``, ``DatagramCore``). The hottest calls run no
Python frame of ours: a socket transport's ``write`` and ``writelines`` are
native methods of its class, which find the core in its ``_core`` slot, and a
datagram transport's ``sendto`` is bound to its core's on the instance.

What stays here is cold: construction (extra info, scheduling
``connection_made``), error reporting, ``connection_lost`` and releasing the
socket.

A server may hold many idle connections, so a socket transport keeps little:
no bound method per transport, and its extra info ``socket``, ``sockname``
and ``peername`` made when first asked for (an IP socket's addresses are kept
natively meanwhile, read when the transport was made, as asyncio reads them).
"""

import socket
import sys
import warnings
from asyncio import constants, futures, transports, trsock
from asyncio.log import logger

from ._ferroloop import DatagramCore, StreamCore, install_transport_methods

_SERVER_TRACKS_TRANSPORTS = sys.version_info >= (3, 13)
# 3.12 gave socket transports a writelines() of their own; before, it was
# the base class's write(b''.join(list_of_data)).
_OWN_WRITELINES = sys.version_info >= (3, 12)
IP_FAMILIES = (socket.AF_INET, socket.AF_INET6)


def _set_nodelay(sock):
    """asyncio's ``_set_nodelay``, which turns Nagle's algorithm off only for
    sockets of protocol IPPROTO_TCP: protocol 0 is TCP too, and sockets made
    with socket.socket() have it, as do the connections they accept (uvicorn
    --workers binds such a socket, and each response would then wait 40 ms
    for a delayed ACK); uvloop sets TCP_NODELAY on those as well."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
            and sock.proto in (0, socket.IPPROTO_TCP)):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _address(call):
    """A socket's address (``getsockname``, ``getpeername``) as asyncio
    records it: None if the call fails."""
    try:
        return call()
    except OSError:
        return None


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
    # even if __init__ failed early (before it was set).
    _file_attribute = '_sock'

    def __del__(self, _warn=warnings.warn):
        file = getattr(self, self._file_attribute, None)
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
        """asyncio's ``_SelectorTransport._fatal_error``, with the errors it
        keeps quiet asked of ``_is_quiet_error`` (a read pipe's are EIO only,
        as in ``_UnixReadPipeTransport``). Reports ``exc`` (quiet ones only
        in debug mode, others to the exception handler) and drops the
        connection."""
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
        self._loop = loop
        self._sock = sock
        self._server = server
        if server is not None:
            if _SERVER_TRACKS_TRANSPORTS:
                server._attach(self)
            else:
                server._attach()

    def _record_extra_info(self, sock):
        """asyncio's extra info of a socket, as it records it when the
        transport is made: the socket's wrapper, its address, and its peer's
        unless given."""
        self._extra['socket'] = trsock.TransportSocket(sock)
        self._extra['sockname'] = _address(sock.getsockname)
        if 'peername' not in self._extra:
            self._extra['peername'] = _address(sock.getpeername)

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
    """A TCP or Unix stream socket transport.

    ``accepted_from``: the peer's raw address, as ``_ferroloop.accept``
    returned it for a connection accepted on an IP socket."""

    # The core (where the native write() and writelines() find it) and what
    # the transport keeps of its own, in slots: an instance dict holding
    # them costs from 30 bytes (3.11) to 300 (3.13, which makes room for
    # many attributes in the instance). The dict is still there (the mixins
    # have no __slots__), for attributes others set on a transport.
    __slots__ = ('_core', '_loop', '_sock', '_server')

    _start_tls_compatible = True
    _sendfile_compatible = constants._SendfileMode.TRY_NATIVE

    def __init__(self, loop, sock, protocol, waiter=None, extra=None,
                 server=None, *, accepted_from=None):
        super().__init__(extra)
        self._setup(loop, sock, server)
        ip = sock.family in IP_FAMILIES
        if ip:
            # Made when asked for (get_extra_info); asyncio replaces any
            # value given for these two.
            self._extra.pop('socket', None)
            self._extra.pop('sockname', None)
        else:
            self._record_extra_info(sock)
        _set_nodelay(sock)
        self._core = StreamCore(loop, sock.fileno(), protocol, self,
                                ip_addresses=ip, accepted_from=accepted_from)
        loop.call_soon(protocol.connection_made, self)
        # asyncio adds its reader in a callback queued after this one. The
        # core watches from now on, in a copy of the context current now
        # (which is what asyncio's reader ends up with): the poll that can
        # report data runs after connection_made() either way, and reading
        # honours what connection_made() did (pause_reading, close). A
        # callback less per connection, and no short-lived objects left
        # scattered among the connection's long-lived ones.
        self._core._start()
        if waiter is not None:
            loop.call_soon(futures._set_result_unless_cancelled, waiter, None)

    def get_extra_info(self, name, default=None):
        extra = self._extra
        if name in extra:
            return extra[name]
        if name == 'socket':
            value = trsock.TransportSocket(self._sock)
        elif name == 'sockname':
            value = self._core._sockname()
        elif name == 'peername':
            value = self._core._peername()
        else:
            return default
        extra[name] = value
        return value

    @property
    def _sock_fd(self):
        return self._core._fd

    def _call_connection_lost(self, exc):
        # The socket is let go of here; asyncio's extra info keeps it.
        if 'socket' not in self._extra:
            self._extra['socket'] = trsock.TransportSocket(self._sock)
        super()._call_connection_lost(exc)

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
        self._record_extra_info(sock)
        self._sock_fd = sock.fileno()
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


install_transport_methods(SocketTransport, _OWN_WRITELINES)
