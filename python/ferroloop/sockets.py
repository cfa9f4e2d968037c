"""The socket layer of the loop: the ``sock_*`` coroutines, name
resolution, making transports, and accepting connections for servers.

``sock_recv``, ``sock_recv_into`` and ``sock_sendall`` are native (one
system call when the socket is ready, a future only when it is not); the
others wait for readiness natively and make their call through Python's
socket object, which knows every address family.
"""

import concurrent.futures
import contextvars
import errno
import io
import socket
import stat
import sys
from asyncio import constants, exceptions, futures, sslproto, trsock
from asyncio.base_events import BaseEventLoop
from asyncio.selector_events import BaseSelectorEventLoop
from asyncio.log import logger

from . import resolver
from ._ferroloop import accept, accepted_address, stat_mode_and_inode, unlink
from .base_loop import BaseLoop
from .transports import IP_FAMILIES, DatagramTransport, SocketTransport

try:
    import ssl
except ImportError:  # pragma: no cover - ssl is part of these builds
    ssl = None

# From 3.12 making a transport refuses a descriptor another live transport
# holds (asyncio's _ensure_fd_no_transport); 3.11 lets the new one take it.
_TRANSPORTS_CHECK_DESCRIPTOR = sys.version_info >= (3, 12)

_SENDFILE_BLOCKS_CAPPED = sys.version_info >= (3, 13)
_SENDFILE_BLOCK_CAP = sys.maxsize // 2 + 1

_Future = futures.Future

# Lookups one loop runs at the same time; more wait for a free thread.
_RESOLVER_THREADS = 4


def _check_socket(sock):
    """asyncio refuses SSL sockets and blocking sockets in its sock_*
    methods (the latter only in debug mode; we always do, since a blocking
    socket would stall the loop). An object that is no socket at all fails
    later, where asyncio's own checks fail it."""
    if ssl is not None and isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")
    gettimeout = getattr(sock, 'gettimeout', None)
    if gettimeout is not None and gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


def _hold(sock):
    """Holds ``sock`` open while an operation on it is pending: a
    ``close()`` meanwhile only marks it closed, and the descriptor goes when
    the operation ends (the socket's ``_io_refs``, as its makefile() objects
    hold it; ``_decref_socketios()`` lets go). So the operation completes
    normally, as on uvloop, instead of waiting forever on a descriptor that
    is gone. False for objects that are not Python sockets."""
    try:
        sock._io_refs += 1
    except (AttributeError, TypeError):   # TypeError: a Mock standing in
        return False
    return True


async def _wait_holding(sock, future):
    """Awaits ``future`` while holding ``sock`` (see ``_hold``)."""
    held = _hold(sock)
    try:
        return await future
    finally:
        if held:
            sock._decref_socketios()


class SocketLoop(BaseLoop):

    def __init__(self):
        super().__init__()
        self._resolver_pool = None

    def close(self):
        super().close()
        pool, self._resolver_pool = self._resolver_pool, None
        if pool is not None:
            pool.shutdown(wait=False)

    # Name resolution.

    async def getaddrinfo(self, host, port, *, family=0, type=0, proto=0,
                          flags=0):
        if resolver.is_numeric(host, port):
            # Nothing to look up: answer without a thread.
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        return await self._resolve_in_thread(
            socket.getaddrinfo, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr, flags=0):
        return await self._resolve_in_thread(socket.getnameinfo, sockaddr,
                                             flags)

    def _resolve_in_thread(self, func, *args):
        """Lookups run on the loop's own small pool, so a slow DNS server
        never occupies the user's default executor."""
        self._check_closed()
        if self._resolver_pool is None:
            self._resolver_pool = concurrent.futures.ThreadPoolExecutor(
                _RESOLVER_THREADS, thread_name_prefix='ferroloop-resolver')
        return futures.wrap_future(self._resolver_pool.submit(func, *args),
                                   loop=self)

    _ensure_resolved = BaseEventLoop._ensure_resolved

    # sock_* coroutines.

    # The native sock_recv, sock_recv_into and sock_sendall take Python
    # sockets (and check them as _check_socket does); for anything else they
    # return NotImplemented, and the object's own methods serve the call,
    # the methods asyncio calls, so it fails (or works) as it does there.

    async def sock_recv(self, sock, n):
        result = self._sock_recv(sock, n)
        if result is NotImplemented:
            _check_socket(sock)
            return await self._retry_when_ready(sock, False, 'recv', n)
        if isinstance(result, _Future):
            # The hot path: _wait_holding inlined.
            held = _hold(sock)
            try:
                return await result
            finally:
                if held:
                    sock._decref_socketios()
        return result

    async def sock_recv_into(self, sock, buf):
        result = self._sock_recv_into(sock, buf)
        if result is NotImplemented:
            _check_socket(sock)
            return await self._retry_when_ready(sock, False, 'recv_into', buf)
        if isinstance(result, _Future):
            # The hot path: _wait_holding inlined.
            held = _hold(sock)
            try:
                return await result
            finally:
                if held:
                    sock._decref_socketios()
        return result

    async def sock_sendall(self, sock, data):
        result = self._sock_sendall(sock, data)
        if result is NotImplemented:
            _check_socket(sock)
            return await self._sock_sendall_through_methods(sock, data)
        if isinstance(result, _Future):
            # The hot path: _wait_holding inlined.
            held = _hold(sock)
            try:
                return await result
            finally:
                if held:
                    sock._decref_socketios()
        return result

    async def _sock_sendall_through_methods(self, sock, data):
        """sock_sendall with the object's own send(), as asyncio does it."""
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        if sent == len(data):
            return
        view = memoryview(data)
        fd = sock.fileno()
        while sent < len(view):
            await self._wait_fd(fd, True)
            try:
                sent += sock.send(view[sent:])
            except (BlockingIOError, InterruptedError):
                pass

    async def _retry_when_ready(self, sock, writable, method, *args):
        """``sock.<method>(*args)`` until it stops raising BlockingIOError,
        waiting for the socket between attempts. The method is looked up
        for each attempt, as asyncio does (tests swap it on the fly)."""
        held = False
        try:
            while True:
                try:
                    return getattr(sock, method)(*args)
                except (BlockingIOError, InterruptedError):
                    pass
                # Held from the first wait to the last attempt (see _hold).
                held = held or _hold(sock)
                await self._wait_fd(sock.fileno(), writable)
        finally:
            if held:
                sock._decref_socketios()

    async def sock_recvfrom(self, sock, bufsize):
        _check_socket(sock)
        return await self._retry_when_ready(sock, False, 'recvfrom', bufsize)

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        _check_socket(sock)
        if not nbytes:
            nbytes = len(buf)
        return await self._retry_when_ready(sock, False, 'recvfrom_into',
                                            buf, nbytes)

    async def sock_sendto(self, sock, data, address):
        _check_socket(sock)
        return await self._retry_when_ready(sock, True, 'sendto', data,
                                            address)

    async def sock_accept(self, sock):
        _check_socket(sock)
        sock.fileno()   # asyncio reads it before it accepts (and so fails)
        conn, address = await self._retry_when_ready(sock, False, 'accept')
        conn.setblocking(False)
        return conn, address

    async def sock_connect(self, sock, address):
        _check_socket(sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type,
                proto=sock.proto, loop=self)
            address = resolved[0][4]
        try:
            sock.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        fd = sock.fileno()
        held = _hold(sock)
        try:
            while True:
                await self._wait_fd(fd, True)
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err == 0:
                    return
                if err not in (errno.EINPROGRESS, errno.EALREADY):
                    raise OSError(err, f'Connect call failed {address}')
        finally:
            if held:
                sock._decref_socketios()

    # sendfile on a socket.

    async def sock_sendfile(self, sock, file, offset=0, count=None, *,
                            fallback=True):
        _check_socket(sock)
        self._check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except exceptions.SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock, file, offset, count):
        """Zero-copy ``sendfile(2)`` from a regular file to the socket, made
        natively (the loop's Python code makes no file system call)."""
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise exceptions.SendfileNotAvailableError("not a regular file")
        fsize = self._file_size(fileno)
        if fsize is None:
            raise exceptions.SendfileNotAvailableError("not a regular file")
        blocksize = count if count else fsize
        if not blocksize:
            return 0  # An empty file.
        if _SENDFILE_BLOCKS_CAPPED:
            # 3.13 caps each call's size (so a count beyond any file is
            # no OverflowError); earlier versions pass it to sendfile().
            count = min(count or 0, _SENDFILE_BLOCK_CAP)
            blocksize = min(blocksize, _SENDFILE_BLOCK_CAP)
        result = self._sock_sendfile(sock.fileno(), fileno, offset, count or 0,
                                     blocksize)
        if isinstance(result, futures.Future):
            return await _wait_holding(sock, result)
        return result

    _check_sendfile_params = BaseEventLoop._check_sendfile_params
    _sock_sendfile_fallback = BaseEventLoop._sock_sendfile_fallback

    # Transports.

    def _make_socket_transport(self, sock, protocol, waiter=None, *,
                               extra=None, server=None, accepted_from=None):
        if _TRANSPORTS_CHECK_DESCRIPTOR:
            self._ensure_fd_no_transport(sock)
        return SocketTransport(self, sock, protocol, waiter, extra, server,
                               accepted_from=accepted_from)

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None,
                            *, server_side=False, server_hostname=None,
                            extra=None, server=None,
                            ssl_handshake_timeout=constants.SSL_HANDSHAKE_TIMEOUT,
                            ssl_shutdown_timeout=constants.SSL_SHUTDOWN_TIMEOUT,
                            accepted_from=None):
        """TLS is CPython's own ``sslproto`` over a native transport."""
        if _TRANSPORTS_CHECK_DESCRIPTOR:
            self._ensure_fd_no_transport(rawsock)
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        SocketTransport(self, rawsock, ssl_protocol, extra=extra,
                        server=server, accepted_from=accepted_from)
        return ssl_protocol._app_transport

    def _make_datagram_transport(self, sock, protocol, address=None,
                                 waiter=None, extra=None):
        if _TRANSPORTS_CHECK_DESCRIPTOR:
            self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    # Serving: asyncio.Server calls these for each listening socket.

    _start_serving = BaseSelectorEventLoop._start_serving
    _stop_serving = BaseSelectorEventLoop._stop_serving

    def _accept_connection(self, protocol_factory, sock, sslcontext, server,
                           backlog, ssl_handshake_timeout,
                           ssl_shutdown_timeout):
        """asyncio's selector loop's ``_accept_connection`` (the reader
        ``_start_serving`` registers). Accepts up to ``backlog`` waiting
        connections (one readiness report may stand for many).

        Where asyncio's differs: an IP socket's connections are accepted
        natively, their peer's address kept by the transport's core rather
        than as a tuple (see ``transports``); and a plain (not TLS)
        connection is served at once, in a copy of the context, as the task
        asyncio makes for it would (uvloop does the same): that task only
        waits for ``connection_made``, and costs a task and a coroutine per
        connection."""
        ip = sock.family in IP_FAMILIES
        for _ in range(backlog):
            try:
                if ip:
                    accepted = accept(sock.fileno())
                    if accepted is None:
                        return
                    fd, peer = accepted
                    conn = socket.socket(sock.family, sock.type, sock.proto,
                                         fileno=fd)
                else:
                    conn, peer = sock.accept()
                if self.get_debug():
                    logger.debug("%r got a new connection from %r: %r",
                                 server,
                                 accepted_address(peer) if ip else peer, conn)
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in (errno.EMFILE, errno.ENFILE,
                                     errno.ENOBUFS, errno.ENOMEM):
                    raise  # The loop reports it and goes on.
                # Out of descriptors or memory: the listening socket stays
                # readable, so stop watching it for a while instead of
                # spinning, and retry later.
                self.call_exception_handler({
                    'message': 'socket.accept() out of system resource',
                    'exception': exc,
                    'socket': trsock.TransportSocket(sock),
                })
                self._remove_reader(sock.fileno())
                self.call_later(constants.ACCEPT_RETRY_DELAY,
                                self._start_serving, protocol_factory, sock,
                                sslcontext, server, backlog,
                                ssl_handshake_timeout, ssl_shutdown_timeout)
                return
            else:
                # The peer's address: raw for the core, or asyncio's tuple.
                if ip:
                    extra, accepted_from = None, peer
                else:
                    extra, accepted_from = {'peername': peer}, None
                if sslcontext:
                    self.create_task(self._connect_accepted_tls(
                        protocol_factory, conn, extra, accepted_from,
                        sslcontext, server, ssl_handshake_timeout,
                        ssl_shutdown_timeout))
                else:
                    contextvars.copy_context().run(
                        self._connect_accepted, protocol_factory, conn, extra,
                        accepted_from, server)

    def _connect_accepted(self, protocol_factory, conn, extra, accepted_from,
                          server):
        """What asyncio's ``_accept_connection2`` does for a plain
        connection, without its task (see ``_accept_connection``)."""
        protocol = transport = None
        try:
            protocol = protocol_factory()
            transport = self._make_socket_transport(
                conn, protocol, extra=extra, server=server,
                accepted_from=accepted_from)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report_accepted_failure(exc, protocol, transport)

    async def _connect_accepted_tls(self, protocol_factory, conn, extra,
                                    accepted_from, sslcontext, server,
                                    ssl_handshake_timeout,
                                    ssl_shutdown_timeout):
        """asyncio's ``_accept_connection2`` for a TLS connection: its task
        waits for the handshake."""
        protocol = transport = None
        try:
            protocol = protocol_factory()
            waiter = self.create_future()
            transport = self._make_ssl_transport(
                conn, protocol, sslcontext, waiter=waiter,
                server_side=True, extra=extra, server=server,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                accepted_from=accepted_from)
            await wait_for_transport(waiter, transport)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report_accepted_failure(exc, protocol, transport)

    def _report_accepted_failure(self, exc, protocol, transport):
        """asyncio reports a failure to set up an accepted connection in
        debug mode only."""
        if self.get_debug():
            context = {
                'message': 'Error on transport creation for incoming '
                           'connection',
                'exception': exc,
            }
            if protocol is not None:
                context['protocol'] = protocol
            if transport is not None:
                context['transport'] = transport
            self.call_exception_handler(context)


async def wait_for_transport(waiter, transport):
    """Waits until a new transport is connected (``waiter`` done); on any
    failure or cancellation closes it before passing the error on."""
    try:
        await waiter
    except BaseException:
        transport.close()
        raise


def remove_stale_unix_socket(path):
    """A socket file left by an earlier server is removed before binding;
    abstract names (leading NUL) have no file. (Native calls: see
    ``_ferroloop.stat_mode_and_inode``.)"""
    if path[0] in (0, '\x00'):
        return
    try:
        mode, _ = stat_mode_and_inode(path)
        if stat.S_ISSOCK(mode):
            unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error('Unable to check or remove stale UNIX socket %r: %r',
                     path, err)

