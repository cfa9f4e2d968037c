"""Type stubs of ferroloop's public API."""

import asyncio
import contextlib
import os
import traceback
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ('BlockingReport', 'EventLoopPolicy', 'Loop', 'install', 'new_event_loop',
           'run', 'trace')
__version__: str

_T = TypeVar('_T')
_API = asyncio.AbstractEventLoop

class Loop(asyncio.AbstractEventLoop):
    """ferroloop's event loop: it implements every method of
    ``asyncio.AbstractEventLoop``, with asyncio's signatures (named here, so
    that type checkers know the class is not abstract)."""

    slow_callback_duration: float

    def detect_blocking(self, threshold: float | None,
                        handler: Callable[[BlockingReport], object] | None = None) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def task_stats(self) -> list[dict[str, Any]] | None: ...

    add_reader = _API.add_reader
    add_signal_handler = _API.add_signal_handler
    add_writer = _API.add_writer
    call_at = _API.call_at
    call_exception_handler = _API.call_exception_handler
    call_later = _API.call_later
    call_soon = _API.call_soon
    call_soon_threadsafe = _API.call_soon_threadsafe
    close = _API.close
    connect_read_pipe = _API.connect_read_pipe
    connect_write_pipe = _API.connect_write_pipe
    create_connection = _API.create_connection
    create_datagram_endpoint = _API.create_datagram_endpoint
    create_future = _API.create_future
    create_server = _API.create_server
    create_task = _API.create_task
    default_exception_handler = _API.default_exception_handler
    get_debug = _API.get_debug
    get_exception_handler = _API.get_exception_handler
    get_task_factory = _API.get_task_factory
    getaddrinfo = _API.getaddrinfo
    getnameinfo = _API.getnameinfo
    is_closed = _API.is_closed
    is_running = _API.is_running
    remove_reader = _API.remove_reader
    remove_signal_handler = _API.remove_signal_handler
    remove_writer = _API.remove_writer
    run_forever = _API.run_forever
    run_in_executor = _API.run_in_executor
    run_until_complete = _API.run_until_complete
    sendfile = _API.sendfile
    set_debug = _API.set_debug
    set_default_executor = _API.set_default_executor
    set_exception_handler = _API.set_exception_handler
    set_task_factory = _API.set_task_factory
    shutdown_asyncgens = _API.shutdown_asyncgens
    shutdown_default_executor = _API.shutdown_default_executor
    sock_accept = _API.sock_accept
    sock_connect = _API.sock_connect
    sock_recv = _API.sock_recv
    sock_recv_into = _API.sock_recv_into
    sock_recvfrom = _API.sock_recvfrom
    sock_recvfrom_into = _API.sock_recvfrom_into
    sock_sendall = _API.sock_sendall
    sock_sendfile = _API.sock_sendfile
    sock_sendto = _API.sock_sendto
    start_tls = _API.start_tls
    stop = _API.stop
    subprocess_exec = _API.subprocess_exec
    subprocess_shell = _API.subprocess_shell
    time = _API.time

class BlockingReport:
    """One blocking episode (see ``Loop.detect_blocking``)."""

    duration: float
    started: float
    ended: float
    callback: str
    task: asyncio.Task[Any] | None
    task_name: str | None
    coroutine: str | None
    filename: str | None
    lineno: int | None
    stack: traceback.StackSummary

class trace(contextlib.ContextDecorator):
    """Records the task timeline of every ferroloop loop while open."""

    def __init__(self, path: str | os.PathLike[str] | None = None, *,
                 json: str | os.PathLike[str] | None = None,
                 html: str | os.PathLike[str] | None = None) -> None: ...
    def start(self) -> trace: ...
    def stop(self) -> Any: ...
    def __enter__(self) -> trace: ...
    def __exit__(self, *exc_info: object) -> bool: ...

def new_event_loop() -> Loop: ...

class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> Loop: ...

def install() -> None: ...
def run(
    main: Coroutine[Any, Any, _T],
    *,
    debug: bool | None = None,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = ...,
    detect_blocking: float | None = None,
    task_stats: bool = False,
) -> _T: ...
