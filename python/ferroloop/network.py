"""Connections and servers: ``create_connection`` (with Happy Eyeballs),
``create_server``, ``connect_accepted_socket``,
``create_datagram_endpoint``, ``start_tls`` and ``sendfile``.

These resolve addresses, create and configure sockets, and wrap them in
the native transports of :mod:`ferroloop.sockets`. They are cold paths,
written to give asyncio's results and errors (same messages) on each
supported Python version. The server object is asyncio's own
``asyncio.Server``, so ``close``, ``wait_closed``, ``serve_forever`` and
3.13's ``close_clients`` behave exactly as there.
"""

import collections.abc
import errno
import socket
import sys
from asyncio import base_events, staggered, tasks
from asyncio.base_events import (BaseEventLoop, _check_ssl_socket,
                                 _interleave_addrinfos, _set_reuseport)
from asyncio.log import logger

from .sockets import SocketLoop, remove_stale_unix_socket, wait_for_transport

_HAS_KEEP_ALIVE = sys.version_info >= (3, 13)
_HAS_ALL_ERRORS = sys.version_info >= (3, 12)
# Stands for an argument that was not passed.
_UNSET = object()


def _bind_error_text(err):
    # 3.13 words bind errors from str(err); earlier versions from strerror.
    if sys.version_info >= (3, 13):
        return str(err).lower()
    return err.strerror.lower()


class _SendfileFallback:
    """asyncio's ``_SendfileFallbackProtocol``, which refuses a transport
    that is not a ``_FlowControlMixin`` (ours are not); its ``restore`` is a
    coroutine, this one's a plain method. It stands in for the protocol
    while ``loop.sendfile`` writes a file through a transport the slow way,
    to get its flow control."""

    def __init__(self, transport):
        self._transport = transport
        self._protocol = transport.get_protocol()
        self._resume_reading = transport.is_reading()
        self._paused_before = transport._protocol_paused
        transport.pause_reading()
        transport.set_protocol(self)
        loop = transport._loop
        self._write_ready = loop.create_future() if self._paused_before else None

    async def drain(self):
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        if self._write_ready is not None:
            await self._write_ready

    def connection_made(self, transport):
        raise RuntimeError("Invalid state: "
                           "connection should have been established already.")

    def connection_lost(self, exc):
        if self._write_ready is not None:
            self._write_ready.set_exception(
                exc if exc is not None else ConnectionError("Connection is closed by peer"))
        self._protocol.connection_lost(exc)

    def pause_writing(self):
        if self._write_ready is None:
            self._write_ready = self._transport._loop.create_future()

    def resume_writing(self):
        if self._write_ready is not None:
            self._write_ready.set_result(False)
            self._write_ready = None

    def data_received(self, data):
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self):
        raise RuntimeError("Invalid state: reading should be paused")

    def restore(self):
        self._transport.set_protocol(self._protocol)
        if self._resume_reading:
            self._transport.resume_reading()
        if self._write_ready is not None:
            self._write_ready.cancel()
        if self._paused_before:
            self._protocol.resume_writing()


class NetworkLoop(SocketLoop):

    # Connecting.

    async def _connect_sock(self, exceptions_, addr_info, local_addr_infos=None):
        """Creates, binds and connects one socket for ``addr_info``; errors
        are collected in a new list appended to ``exceptions_``."""
        mine = []
        exceptions_.append(mine)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = socket.socket(family=family, type=type_, proto=proto)
            sock.setblocking(False)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        mine.append(OSError(
                            exc.errno, f'error while attempting to bind on '
                                       f'address {laddr!r}: {_bind_error_text(exc)}'))
                else:
                    if mine:
                        raise mine.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            mine.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions_ = mine = None

    async def create_connection(self, protocol_factory, host=None, port=None,
                                *, ssl=None, family=0, proto=0, flags=0,
                                sock=None, local_addr=None,
                                server_hostname=None,
                                ssl_handshake_timeout=None,
                                ssl_shutdown_timeout=None,
                                happy_eyeballs_delay=None, interleave=None,
                                all_errors=_UNSET):
        if all_errors is _UNSET:
            all_errors = False
        elif not _HAS_ALL_ERRORS:
            raise TypeError("create_connection() got an unexpected keyword "
                            "argument 'all_errors'")
        if server_hostname is not None and not ssl:
            raise ValueError('server_hostname is only meaningful with ssl')
        if server_hostname is None and ssl:
            if not host:
                raise ValueError('You must set server_hostname '
                                 'when using ssl without a host')
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')
        if sock is not None:
            _check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    'host/port and sock can not be specified at the same time')
            infos = await self._ensure_resolved(
                (host, port), family=family, type=socket.SOCK_STREAM,
                proto=proto, flags=flags, loop=self)
            if not infos:
                raise OSError('getaddrinfo() returned empty list')
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(
                    local_addr, family=family, type=socket.SOCK_STREAM,
                    proto=proto, flags=flags, loop=self)
                if not laddr_infos:
                    raise OSError('getaddrinfo() returned empty list')
            if interleave:
                infos = _interleave_addrinfos(infos, interleave)

            # As in asyncio, nothing may keep the per-attempt exceptions
            # alive once they are raised: each is raised here, in this frame,
            # and the lists are dropped in `finally` (a helper's frame, a
            # functools.partial or a tuple unpacking would keep a cycle
            # through them).
            exceptions = []
            if happy_eyeballs_delay is None:
                for addr_info in infos:
                    try:
                        sock = await self._connect_sock(exceptions, addr_info,
                                                        laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                race = await staggered.staggered_race(
                    (lambda addr_info=addr_info: self._connect_sock(
                        exceptions, addr_info, laddr_infos)
                     for addr_info in infos),
                    happy_eyeballs_delay, loop=self)
                sock = race[0]
                # staggered_race's own list of the attempts' exceptions stays
                # reachable from their tracebacks (through its coroutines'
                # frames): empty it; each exception is in ours as well.
                race[2].clear()
                race = None
            if sock is None:
                exceptions = [exc for sub in exceptions for exc in sub]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed",
                                             exceptions)
                    if len(exceptions) == 1:
                        raise exceptions[0]
                    # If they all have the same str(), raise one.
                    model = str(exceptions[0])
                    if all(str(exc) == model for exc in exceptions):
                        raise exceptions[0]
                    raise OSError('Multiple exceptions: {}'.format(
                        ', '.join(str(exc) for exc in exceptions)))
                finally:
                    exceptions = None
        else:
            if sock is None:
                raise ValueError(
                    'host and port was not specified and no sock specified')
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f'A Stream Socket was expected, got {sock!r}')

        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self.get_debug():
            logger.debug("%r connected to %s:%r: (%r, %r)",
                         transport.get_extra_info('socket'), host, port,
                         transport, protocol)
        return transport, protocol

    _create_connection_transport = BaseEventLoop._create_connection_transport

    async def connect_accepted_socket(self, protocol_factory, sock, *,
                                      ssl=None, ssl_handshake_timeout=None,
                                      ssl_shutdown_timeout=None):
        """asyncio's, which reads ``self._debug``, a flag this loop keeps
        natively."""
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f'A Stream Socket was expected, got {sock!r}')
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')
        _check_ssl_socket(sock)
        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, '', server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self.get_debug():
            logger.debug("%r handled: (%r, %r)",
                         transport.get_extra_info('socket'), transport,
                         protocol)
        return transport, protocol

    # Serving.

    _create_server_getaddrinfo = BaseEventLoop._create_server_getaddrinfo

    async def create_server(self, protocol_factory, host=None, port=None, *,
                            family=socket.AF_UNSPEC, flags=socket.AI_PASSIVE,
                            sock=None, backlog=100, ssl=None,
                            reuse_address=None, reuse_port=None,
                            keep_alive=None, ssl_handshake_timeout=None,
                            ssl_shutdown_timeout=None, start_serving=True):
        if keep_alive is not None and not _HAS_KEEP_ALIVE:
            raise TypeError("create_server() got an unexpected keyword "
                            "argument 'keep_alive'")
        if isinstance(ssl, bool):
            raise TypeError('ssl argument must be an SSLContext or None')
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')
        if sock is not None:
            _check_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    'host/port and sock can not be specified at the same time')
            if reuse_address is None:
                reuse_address = True
            if host == '':
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            infos = await tasks.gather(*[
                self._create_server_getaddrinfo(h, port, family, flags)
                for h in hosts])
            infos = set(info for group in infos for info in group)
            sockets = self._bind_server_sockets(infos, reuse_address,
                                                reuse_port, keep_alive)
        else:
            if sock is None:
                raise ValueError('Neither host/port nor sock were specified')
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f'A Stream Socket was expected, got {sock!r}')
            sockets = [sock]

        for listener in sockets:
            listener.setblocking(False)
        server = base_events.Server(self, sockets, protocol_factory, ssl,
                                    backlog, ssl_handshake_timeout,
                                    ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            # One iteration, so that the readers are in place on return.
            await tasks.sleep(0)
        if self.get_debug():
            logger.info("%r is serving", server)
        return server

    def _bind_server_sockets(self, infos, reuse_address, reuse_port,
                             keep_alive):
        sockets = []
        completed = False
        try:
            for af, socktype, proto, _, sa in infos:
                try:
                    sock = socket.socket(af, socktype, proto)
                except OSError:
                    if self.get_debug():
                        logger.warning('create_server() failed to create '
                                       'socket.socket(%r, %r, %r)',
                                       af, socktype, proto, exc_info=True)
                    continue
                sockets.append(sock)
                if reuse_address:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                if reuse_port:
                    _set_reuseport(sock)
                if keep_alive:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                if af == socket.AF_INET6:
                    # One socket per family: no dual-stack listening.
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                try:
                    sock.bind(sa)
                except OSError as err:
                    msg = ('error while attempting to bind on address %r: %s'
                           % (sa, _bind_error_text(err)))
                    if err.errno == errno.EADDRNOTAVAIL and sys.version_info >= (3, 13):
                        # The family is not enabled here (bpo-30945).
                        sockets.pop()
                        sock.close()
                        if self.get_debug():
                            logger.warning(msg)
                        continue
                    raise OSError(err.errno, msg) from None
            if not sockets and sys.version_info >= (3, 13):
                raise OSError('could not bind on any address out of %r'
                              % ([info[4] for info in infos],))
            completed = True
        finally:
            if not completed:
                for sock in sockets:
                    sock.close()
        return sockets

    # Datagrams.

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None,
                                       remote_addr=None, *, family=0, proto=0,
                                       flags=0, reuse_port=None,
                                       allow_broadcast=None, sock=None):
        if sock is not None:
            if sys.version_info >= (3, 13):
                if sock.type == socket.SOCK_STREAM:
                    raise ValueError(
                        f'A datagram socket was expected, got {sock!r}')
            elif sock.type != socket.SOCK_DGRAM:
                raise ValueError(f'A UDP Socket was expected, got {sock!r}')
            if (local_addr or remote_addr or family or proto or flags
                    or reuse_port or allow_broadcast):
                opts = dict(local_addr=local_addr, remote_addr=remote_addr,
                            family=family, proto=proto, flags=flags,
                            reuse_port=reuse_port,
                            allow_broadcast=allow_broadcast)
                problems = ', '.join(f'{k}={v}' for k, v in opts.items() if v)
                raise ValueError(
                    f'socket modifier keyword arguments can not be used '
                    f'when sock is specified. ({problems})')
            sock.setblocking(False)
            r_addr = None
        else:
            pairs = await self._datagram_address_pairs(
                local_addr, remote_addr, family, proto, flags)
            sock, r_addr = await self._open_datagram_socket(
                pairs, local_addr, remote_addr, reuse_port, allow_broadcast)

        protocol = protocol_factory()
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr,
                                                  waiter)
        if self.get_debug():
            if local_addr:
                logger.info("Datagram endpoint local_addr=%r remote_addr=%r "
                            "created: (%r, %r)",
                            local_addr, remote_addr, transport, protocol)
            else:
                logger.debug("Datagram endpoint remote_addr=%r created: "
                             "(%r, %r)", remote_addr, transport, protocol)
        await wait_for_transport(waiter, transport)
        return transport, protocol

    async def _datagram_address_pairs(self, local_addr, remote_addr, family,
                                      proto, flags):
        """[((family, proto), (local address, remote address)), ...] to try."""
        if not (local_addr or remote_addr):
            if family == 0:
                raise ValueError('unexpected address family')
            return [((family, proto), (None, None))]
        if family == socket.AF_UNIX:
            for addr in (local_addr, remote_addr):
                if addr is not None and not isinstance(addr, str):
                    raise TypeError('string is expected')
            if local_addr:
                remove_stale_unix_socket(local_addr)
            return [((family, proto), (local_addr, remote_addr))]
        by_key = {}
        for index, addr in ((0, local_addr), (1, remote_addr)):
            if addr is None:
                continue
            if not (isinstance(addr, tuple) and len(addr) == 2):
                raise TypeError('2-tuple is expected')
            infos = await self._ensure_resolved(
                addr, family=family, type=socket.SOCK_DGRAM, proto=proto,
                flags=flags, loop=self)
            if not infos:
                raise OSError('getaddrinfo() returned empty list')
            for fam, _, pro, _, address in infos:
                by_key.setdefault((fam, pro), [None, None])[index] = address
        pairs = [(key, pair) for key, pair in by_key.items()
                 if not ((local_addr and pair[0] is None)
                         or (remote_addr and pair[1] is None))]
        if not pairs:
            raise ValueError('can not get address information')
        return pairs

    async def _open_datagram_socket(self, pairs, local_addr, remote_addr,
                                    reuse_port, allow_broadcast):
        errors = []
        for (family, proto), (local_address, remote_address) in pairs:
            sock = None
            try:
                sock = socket.socket(family=family, type=socket.SOCK_DGRAM,
                                     proto=proto)
                if reuse_port:
                    _set_reuseport(sock)
                if allow_broadcast:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                sock.setblocking(False)
                if local_addr:
                    sock.bind(local_address)
                r_addr = None
                if remote_addr:
                    if not allow_broadcast:
                        await self.sock_connect(sock, remote_address)
                    r_addr = remote_address
                return sock, r_addr
            except OSError as exc:
                if sock is not None:
                    sock.close()
                errors.append(exc)
            except BaseException:
                if sock is not None:
                    sock.close()
                raise
        raise errors[0]

    # TLS upgrade and sendfile on transports.

    start_tls = BaseEventLoop.start_tls

    sendfile = BaseEventLoop.sendfile

    async def _sendfile_native(self, transport, file, offset, count):
        """os.sendfile straight to the transport's socket, once everything
        written before has left its buffer."""
        resume_reading = transport.is_reading()
        transport.pause_reading()
        await transport._make_empty_waiter()
        transport._core._suspend()
        try:
            return await self.sock_sendfile(transport._sock, file, offset,
                                            count, fallback=False)
        finally:
            transport._core._resume()
            transport._reset_empty_waiter()
            if resume_reading:
                transport.resume_reading()

    async def _sendfile_fallback(self, transport, file, offset, count):
        """asyncio's, with ``_SendfileFallback`` as the stand-in protocol
        (see there why it is not asyncio's)."""
        if offset:
            file.seek(offset)
        blocksize = min(count, 16384) if count else 16384
        buf = bytearray(blocksize)
        total_sent = 0
        stand_in = _SendfileFallback(transport)
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        return total_sent
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total_sent
                await stand_in.drain()
                transport.write(view[:read])
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, 'seek'):
                file.seek(offset + total_sent)
            stand_in.restore()
