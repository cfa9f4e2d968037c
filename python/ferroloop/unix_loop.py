"""What a loop on Unix adds: signal handlers, Unix domain sockets, pipes
and subprocesses.

A signal handler is installed the way asyncio installs it: Python's own
handler for the signal becomes a no-op, and ``signal.set_wakeup_fd`` makes
the C-level handler write the signal number to a socket the loop watches.
The loop reads the numbers and queues the registered callbacks, so they run
as ordinary loop callbacks, never inside the signal handler.

Unix sockets use the same native transports as TCP, and pipes the same
native stream core (``pipes``). Children are started natively and reaped by
the loop itself, with no child watcher and no thread (``processes``); a child
watcher that code written for 3.11 sets is left alone, and this loop reaps its
own children before a SIGCHLD handler of such a watcher could.
"""

import errno
import os
import signal
import socket
import subprocess
import sys
import warnings
from asyncio import base_events, coroutines, tasks, unix_events
from asyncio.log import logger

from ._ferroloop import Handle, stat_mode_and_inode, unlink
from .network import NetworkLoop
from .pipes import ReadPipeTransport, WritePipeTransport
from .processes import ChildReaper, SubprocessTransport
from .sockets import remove_stale_unix_socket, wait_for_transport

_CLEANS_UP_UNIX_SOCKETS = sys.version_info >= (3, 13)


def _ignore_signal(signum, frame):
    """The Python-level handler of a signal the loop handles: the real work
    happens when the loop reads the wakeup socket."""


def _check_popen_options(bufsize, text, encoding, errors):
    """asyncio's subprocesses are byte streams without buffering."""
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")


class UnixLoop(NetworkLoop):

    # Private switch: False reaps children by polling instead of by pidfd
    # (the path for kernels without pidfds), for the tests of that path.
    _use_pidfd = True

    def __init__(self):
        super().__init__()
        self._signal_handlers = {}
        # (read end, write end) of the wakeup socket, made on first use.
        self._signal_wakeup = None
        # Listening Unix sockets to unlink on close: socket -> inode.
        self._unix_server_sockets = {}
        # Made on the first subprocess.
        self._reaper = None

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
        if self._reaper is not None:
            self._reaper.close()
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
        if sig == signal.SIGCHLD and self._reaper is not None:
            # A SIGCHLD handler (a 3.11 child watcher's) may reap every
            # child with waitpid(-1): take this loop's own statuses first.
            self._reaper.reap_ended()
        if handle.cancelled():
            self.remove_signal_handler(sig)
        else:
            self._add_callback(handle)

    _check_signal = unix_events._UnixSelectorEventLoop._check_signal

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

    # Unix domain sockets.

    async def create_unix_connection(self, protocol_factory, path=None, *,
                                     ssl=None, sock=None, server_hostname=None,
                                     ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        if ssl:
            if server_hostname is None:
                raise ValueError(
                    'you have to pass server_hostname when using ssl')
        else:
            if server_hostname is not None:
                raise ValueError('server_hostname is only meaningful with ssl')
            if ssl_handshake_timeout is not None:
                raise ValueError(
                    'ssl_handshake_timeout is only meaningful with ssl')
            if ssl_shutdown_timeout is not None:
                raise ValueError(
                    'ssl_shutdown_timeout is only meaningful with ssl')
        if path is not None:
            if sock is not None:
                raise ValueError(
                    'path and sock can not be specified at the same time')
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError('no path and sock were specified')
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    f'A UNIX Domain Stream Socket was expected, got {sock!r}')
            sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def create_unix_server(self, protocol_factory, path=None, *,
                                 sock=None, backlog=100, ssl=None,
                                 ssl_handshake_timeout=None,
                                 ssl_shutdown_timeout=None,
                                 start_serving=True, cleanup_socket=None):
        if cleanup_socket is None:
            cleanup_socket = _CLEANS_UP_UNIX_SOCKETS
        elif not _CLEANS_UP_UNIX_SOCKETS:
            raise TypeError("create_unix_server() got an unexpected keyword "
                            "argument 'cleanup_socket'")
        if isinstance(ssl, bool):
            raise TypeError('ssl argument must be an SSLContext or None')
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError('ssl_handshake_timeout is only meaningful with ssl')
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError('ssl_shutdown_timeout is only meaningful with ssl')
        if path is not None:
            if sock is not None:
                raise ValueError(
                    'path and sock can not be specified at the same time')
            sock = self._bind_unix_socket(os.fspath(path))
        else:
            if sock is None:
                raise ValueError('path was not specified, and no sock specified')
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    f'A UNIX Domain Stream Socket was expected, got {sock!r}')
        if cleanup_socket:
            name = sock.getsockname()
            if name and name[0] not in (0, '\x00'):
                try:
                    self._unix_server_sockets[sock] = stat_mode_and_inode(name)[1]
                except FileNotFoundError:
                    pass
        sock.setblocking(False)
        server = base_events.Server(self, [sock], protocol_factory, ssl,
                                    backlog, ssl_handshake_timeout,
                                    ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await tasks.sleep(0)
        return server

    @staticmethod
    def _bind_unix_socket(path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        remove_stale_unix_socket(path)
        try:
            sock.bind(path)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                raise OSError(errno.EADDRINUSE,
                              f'Address {path!r} is already in use') from None
            raise
        except BaseException:
            sock.close()
            raise
        return sock

    def _stop_serving(self, sock):
        inode = self._unix_server_sockets.pop(sock, None)
        path = sock.getsockname() if inode is not None else None
        super()._stop_serving(sock)
        if path is None:
            return
        try:
            if stat_mode_and_inode(path)[1] == inode:
                unlink(path)
        except FileNotFoundError:
            pass
        except OSError as err:
            logger.warning('Unable to clean up listening UNIX socket %r: %r',
                           path, err)

    # Pipes.

    async def connect_read_pipe(self, protocol_factory, pipe):
        return await self._connect_pipe(protocol_factory, pipe,
                                        ReadPipeTransport, 'Read')

    async def connect_write_pipe(self, protocol_factory, pipe):
        return await self._connect_pipe(protocol_factory, pipe,
                                        WritePipeTransport, 'Write')

    async def _connect_pipe(self, protocol_factory, pipe, transport_class,
                            kind):
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = transport_class(self, pipe, protocol, waiter, None)
        await wait_for_transport(waiter, transport)
        if self.get_debug():
            logger.debug('%s pipe %r connected: (%r, %r)',
                         kind, pipe.fileno(), transport, protocol)
        return transport, protocol

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None,
                                  extra=None):
        return ReadPipeTransport(self, pipe, protocol, waiter, extra)

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None,
                                   extra=None):
        return WritePipeTransport(self, pipe, protocol, waiter, extra)

    # Subprocesses.

    async def subprocess_shell(self, protocol_factory, cmd, *,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               universal_newlines=False, shell=True,
                               bufsize=0, encoding=None, errors=None,
                               text=None, **kwargs):
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        _check_popen_options(bufsize, text, encoding, errors)
        protocol = protocol_factory()
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs)
        return transport, protocol

    async def subprocess_exec(self, protocol_factory, program, *args,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE,
                              universal_newlines=False, shell=False,
                              bufsize=0, encoding=None, errors=None,
                              text=None, **kwargs):
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        _check_popen_options(bufsize, text, encoding, errors)
        protocol = protocol_factory()
        transport = await self._make_subprocess_transport(
            protocol, (program,) + args, False, stdin, stdout, stderr,
            bufsize, **kwargs)
        return transport, protocol

    def _child_reaper(self):
        if self._reaper is None:
            self._reaper = ChildReaper(self, self._use_pidfd)
        return self._reaper

    async def _make_subprocess_transport(self, protocol, args, shell, stdin,
                                         stdout, stderr, bufsize, extra=None,
                                         **kwargs):
        self._check_closed()
        waiter = self.create_future()
        transport = SubprocessTransport(self, protocol, args, shell, stdin,
                                        stdout, stderr, bufsize,
                                        waiter=waiter, extra=extra, **kwargs)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transport.close()
            await transport._wait()
            raise
        return transport
