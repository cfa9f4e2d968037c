"""A fuzz worker: runs Calls on one kind of loop and answers what happened.

    python worker.py asyncio|ferroloop REQUEST_FD RESPONSE_FD

Each request is one pickled Call, length-prefixed; each answer a pickled
dict: what the call returned or raised (or that it was still pending after
PENDING seconds), the protocol events and exception-handler calls that
followed while the loop ran a few iterations more. Every call gets a fresh
loop and fresh fixtures (sockets, transports, files), closed afterwards.
A crash or a hang is the parent's to see (workers.py): this process just
dies or stops answering."""

import array
import asyncio
import concurrent.futures
import contextvars
import gc
import os
import pickle
import re
import socket
import ssl
import struct
import sys
import tempfile
import time
import traceback
from pathlib import Path

# Calls arrive pickled under the parent's module names: fuzz.calls.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from fuzz import no_lookups  # noqa: E402
from fuzz.calls import Make  # noqa: E402

PENDING = 0.5
# Loop iterations run after each call, so that what it scheduled or
# made ready (callbacks, reads on loopback, connection_lost) happens.
SETTLE_ITERATIONS = 4


def describe(exc):
    return [type(exc).__name__, str(exc)]


def summary(value):
    """A returned value as both loops must agree on it: plain values as
    they are, the loop's own objects by their asyncio kind."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return 'float'          # loop.time() and friends: the clocks were read apart
    if isinstance(value, (bytes, bytearray)):
        return bytes(value[:64])
    if isinstance(value, (tuple, list)):
        return [summary(v) for v in value[:8]]
    for kind in (asyncio.AbstractEventLoop, asyncio.Task, asyncio.Future, asyncio.TimerHandle, asyncio.Handle,
                 # Transport first: asyncio's own datagram transports are
                 # Transports and (on 3.11) not DatagramTransports.
                 asyncio.Transport, asyncio.DatagramTransport, asyncio.BaseTransport,
                 asyncio.AbstractServer, asyncio.BaseProtocol, socket.socket,
                 contextvars.Context):
        if isinstance(value, kind):
            return kind.__name__
    return type(value).__name__


class Recording:
    """Protocol methods for every kind of transport: each records the first
    occurrence of its event (how reads split is the kernel's business, not
    the loop's)."""

    def __init__(self, fixtures):
        self.events = fixtures.events
        self.lost = fixtures.loop.create_future()

    def note(self, event):
        if event not in self.events:
            self.events.append(event)

    def connection_made(self, transport):
        self.note('connection_made')

    def data_received(self, data):
        self.note('data_received')

    def eof_received(self):
        self.note('eof_received')

    def connection_lost(self, exc):
        self.note(['connection_lost', None if exc is None else type(exc).__name__])
        if not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self):
        self.note('pause_writing')

    def resume_writing(self):
        self.note('resume_writing')

    def datagram_received(self, data, addr):
        self.note('datagram_received')

    def error_received(self, exc):
        self.note(['error_received', type(exc).__name__])

    def pipe_data_received(self, fd, data):
        self.note('pipe_data_received')

    def pipe_connection_lost(self, fd, exc):
        self.note('pipe_connection_lost')

    def process_exited(self):
        self.note('process_exited')


class StreamRecorder(Recording, asyncio.Protocol):
    pass


class BufferedRecorder(Recording, asyncio.BufferedProtocol):
    def __init__(self, fixtures):
        super().__init__(fixtures)
        self.buffer = bytearray(65536)

    def get_buffer(self, sizehint):
        return self.buffer

    def buffer_updated(self, nbytes):
        self.note('buffer_updated')


class DatagramRecorder(Recording, asyncio.DatagramProtocol):
    pass


class Lying:
    """An object whose fileno() raises, lies or changes."""

    def __init__(self, kind, fixtures):
        self.kind, self.fixtures, self.calls = kind, fixtures, 0

    def fileno(self):
        self.calls += 1
        kind = self.kind
        if kind == 'raises ValueError':
            raise ValueError('fileno() failed')
        if kind == 'raises OSError':
            raise OSError(9, 'fileno() failed')
        if kind == 'returns str':
            return '5'
        if kind == 'returns float':
            return 5.0
        if kind == 'returns None':
            return None
        if kind == 'returns a closed number':
            return self.fixtures.closed_number()
        if kind == 'returns a live socket':
            return self.fixtures.make(Make('socket', 'connected')).fileno()
        if kind == 'changes between calls':
            return self.fixtures.make(Make('socket', 'connected')).fileno() if self.calls == 1 else -1
        return kind             # an int: the number it lies with


class Fixtures:
    """Everything a call's arguments and target refer to, made on demand
    and closed afterwards."""

    def __init__(self, loop):
        self.loop = loop
        self.events = []
        self.handler_calls = []
        self.closers = []
        self.made = {}
        self.sockets = []
        self.ports = set()
        loop.set_exception_handler(self.on_handler_call)

    def on_handler_call(self, loop, context):
        # Each kind once: how often a failing callback is retried is timing.
        exc = context.get('exception')
        kind = None if exc is None else type(exc).__name__
        if kind not in self.handler_calls:
            self.handler_calls.append(kind)

    def later(self, closer):
        self.closers.append(closer)
        if isinstance(getattr(closer, '__self__', None), socket.socket):
            self.sockets.append(closer.__self__)

    def note_ports(self, sock):
        """Remembers the socket's port numbers (they differ between the two
        workers), for anonymise()."""
        for name in ('getsockname', 'getpeername'):
            try:
                address = getattr(sock, name)()
            except OSError:
                continue
            if isinstance(address, tuple) and len(address) >= 2 and address[1]:
                self.ports.add(address[1])

    def anonymise(self, value):
        """The answer with the fixtures' port numbers and descriptor numbers
        replaced, wherever they appear."""
        for sock in self.sockets:
            self.note_ports(sock)
        return self._anonymise(value)

    def _anonymise(self, value):
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in self.ports:
            return '<port>'
        if isinstance(value, str):
            for port in self.ports:
                value = re.sub(rf'\b{port}\b', '<port>', value)
            value = value.replace(no_lookups.ABSTRACT_PREFIX, '')
            return re.sub(r'\bfd=\d+', 'fd=?', value)
        if isinstance(value, list):
            return [self._anonymise(v) for v in value]
        if isinstance(value, dict):
            return {k: self._anonymise(v) for k, v in value.items()}
        return value

    def close(self):
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:
                pass

    def build(self, value):
        if isinstance(value, Make):
            return self.make(value)
        if isinstance(value, tuple):
            return tuple(self.build(v) for v in value)
        if isinstance(value, list):
            return [self.build(v) for v in value]
        if isinstance(value, dict):
            return {k: self.build(v) for k, v in value.items()}
        return value

    def socket_pair(self, family=socket.AF_UNIX, type=socket.SOCK_STREAM, blocking=False):
        a, b = socket.socketpair(family, type)
        for s in (a, b):
            s.setblocking(blocking)
            self.later(s.close)
        return a, b

    def closed_number(self):
        a, b = socket.socketpair()
        number = a.fileno()
        a.close()
        b.close()
        return number

    def run(self, coro):
        return self.loop.run_until_complete(asyncio.wait_for(coro, 5))

    def make(self, spec):
        # Each recipe is made once per call: two references share it.
        if spec not in self.made:
            self.made[spec] = self._make(spec.recipe, spec.detail)
        return self.made[spec]

    def _make(self, recipe, detail):
        maker = getattr(self, 'make_' + recipe.replace(' ', '_'))
        return maker(detail)

    def make_memoryview(self, kind):
        if kind == 'bytes':
            return memoryview(b'data')
        if kind == 'bytearray':
            return memoryview(bytearray(b'data'))
        if kind == 'empty':
            return memoryview(bytearray())
        if kind == 'read-only':
            return memoryview(bytearray(b'data')).toreadonly()
        if kind == 'non-contiguous':
            return memoryview(bytearray(b'abcdefgh'))[::2]
        if kind == 'read-only non-contiguous':
            return memoryview(b'abcdefgh')[::2]
        if kind == 'released':
            view = memoryview(bytearray(b'data'))
            view.release()
            return view
        if kind == 'multi-dimensional':
            return memoryview(bytearray(12)).cast('B', [3, 4])
        if kind == 'format I':
            return memoryview(bytearray(16)).cast('I')
        if kind == 'format d':
            return memoryview(array.array('d', [1.5, 2.5]))
        if kind == 'large':
            return memoryview(bytearray(1_000_000))
        raise ValueError(kind)

    def make_fileno(self, kind):
        return Lying(kind, self)

    def make_socket(self, kind):
        if kind == 'connected':
            a, b = self.socket_pair()
            b.send(b'data')
            return a
        if kind == 'blocking':
            a, b = self.socket_pair(blocking=True)
            b.send(b'data')
            return a
        if kind == 'listening':
            server = socket.create_server(('127.0.0.1', 0))
            server.setblocking(False)
            self.later(server.close)
            client = socket.create_connection(server.getsockname())
            self.later(client.close)
            return server
        if kind in ('udp', 'udp connected'):
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.setblocking(False)
            self.later(sock.close)
            sock.bind(('127.0.0.1', 0))
            peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.later(peer.close)
            peer.bind(('127.0.0.1', 0))
            peer.sendto(b'datagram', sock.getsockname())
            if kind == 'udp connected':
                sock.connect(peer.getsockname())
            return sock
        if kind == 'unix datagram pair':
            a, b = self.socket_pair(type=socket.SOCK_DGRAM)
            b.send(b'datagram')
            return a
        if kind == 'unix stream pair':
            return self.socket_pair()[0]
        if kind == 'fresh tcp':
            sock = socket.socket()
            sock.setblocking(False)
            self.later(sock.close)
            return sock
        if kind == 'closed':
            sock = socket.socket()
            sock.close()
            return sock
        if kind == 'shut down':
            a, b = self.socket_pair()
            b.close()
            a.shutdown(socket.SHUT_RDWR)
            return a
        raise ValueError(kind)

    def make_callable(self, kind):
        if kind == 'noop':
            return lambda *args, **kwargs: None
        if kind == 'raises':
            def raises(*args, **kwargs):
                raise ValueError('callback raised')
            return raises
        if kind == 'coroutine function':
            async def coroutine_function(*args, **kwargs):
                pass
            return coroutine_function
        if kind == 'protocol':
            return asyncio.Protocol
        if kind == 'recorder':
            return lambda: StreamRecorder(self)
        if kind == 'buffered recorder':
            return lambda: BufferedRecorder(self)
        if kind == 'datagram recorder':
            return lambda: DatagramRecorder(self)
        if kind == 'print':
            return len              # a builtin, silent
        if kind == 'class':
            return object
        # Only for the harness's own test (never generated): a crash, a hang.
        if kind == 'aborts':
            return lambda *args: os.abort()
        if kind == 'blocks':
            return lambda *args: time.sleep(3600)
        raise ValueError(kind)

    def make_protocol(self, _):
        return StreamRecorder(self)

    def make_object(self, _):
        return object()

    def make_context(self, _):
        return contextvars.copy_context()

    def make_done_future(self, _):
        future = self.loop.create_future()
        future.set_result('done')
        return future

    def make_coroutine(self, _):
        async def short():
            await asyncio.sleep(0)
            return 'coroutine done'
        coro = short()
        self.later(coro.close)
        return coro

    def make_ssl_client_context(self, _):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context

    def make_ssl_server_context(self, _):
        from test.test_asyncio import utils as test_utils
        return test_utils.simple_server_sslcontext()

    def make_executor(self, _):
        executor = concurrent.futures.ThreadPoolExecutor(1)
        self.later(lambda: executor.shutdown(wait=True))
        return executor

    def make_binary_file(self, _):
        f = open(self.data_path(), 'rb')
        self.later(f.close)
        return f

    def make_text_file(self, _):
        f = open(self.data_path(), 'r')
        self.later(f.close)
        return f

    def make_closed_file(self, _):
        f = open(self.data_path(), 'rb')
        f.close()
        return f

    def data_path(self):
        path = Path('data.bin')
        if not path.exists():
            path.write_bytes(bytes(range(256)) * 64)
        return path

    def make_read_pipe(self, _):
        r, w = os.pipe()
        os.write(w, b'pipe data')
        reader = open(r, 'rb', buffering=0)
        self.later(reader.close)
        self.later(lambda: os.close(w))
        return reader

    def make_write_pipe(self, _):
        r, w = os.pipe()
        writer = open(w, 'wb', buffering=0)
        self.later(writer.close)
        self.later(lambda: os.close(r))
        return writer

    def make_tcp_transport(self, _):
        sock = self.make(Make('socket', 'connected'))
        transport, _ = self.run(self.loop.create_connection(lambda: StreamRecorder(self),
                                                            sock=sock))
        self.later(transport.abort)
        return transport

    def make_udp_transport(self, connected):
        sock = self.make(Make('socket', 'udp connected' if connected else 'udp'))
        transport, _ = self.run(self.loop.create_datagram_endpoint(
            lambda: DatagramRecorder(self), sock=sock))
        self.later(transport.abort)
        return transport

    def make_server(self, _):
        server = self.run(self.loop.create_server(lambda: StreamRecorder(self),
                                                  '127.0.0.1', 0))
        self.later(server.close)
        return server

    def make_write_pipe_transport(self, _):
        transport, _ = self.run(self.loop.connect_write_pipe(
            lambda: StreamRecorder(self), self.make(Make('write pipe'))))
        self.later(transport.abort)
        return transport

    def make_port(self, _):
        return self.make(Make('socket', 'listening')).getsockname()[1]

    def make_unix_path(self, _):
        return 'fuzz.sock'

    def make_array(self, _):
        return array.array('i', [1, 2, 3])

    def make_read_pipe_transport(self, _):
        transport, _ = self.run(self.loop.connect_read_pipe(
            lambda: StreamRecorder(self), self.make(Make('read pipe'))))
        self.later(transport.close)
        return transport

    def target(self, name):
        if name == 'loop':
            return self.loop
        if name == 'closed loop':
            self.loop.close()
            return self.loop
        return {
            'tcp transport': lambda: self.make(Make('tcp transport')),
            'udp transport': lambda: self.make_udp_transport(False),
            'connected udp transport': lambda: self.make_udp_transport(True),
            'server': lambda: self.make(Make('server')),
            'write pipe transport': lambda: self.make(Make('write pipe transport')),
            'read pipe transport': lambda: self.make(Make('read pipe transport')),
            'handle': lambda: self.loop.call_soon(len, ()),
            'timer handle': lambda: self.loop.call_later(3600, len, ()),
        }[name]()


def close_returned(value):
    """Closes transports, servers and sockets a call returned."""
    if isinstance(value, (tuple, list)):
        for item in value:
            close_returned(item)
    elif isinstance(value, (asyncio.BaseTransport, asyncio.AbstractServer, socket.socket)):
        try:
            value.close()
        except Exception:
            pass


def invoke(fixtures, target, method, args, kwargs):
    loop = fixtures.loop
    try:
        result = getattr(target, method)(*args, **kwargs)
    except BaseException as exc:
        return ['raised'] + describe(exc)
    if not (asyncio.iscoroutine(result) or asyncio.isfuture(result)):
        if isinstance(result, asyncio.Handle):
            fixtures.later(result.cancel)
        return ['returned', summary(result)]
    try:
        task = asyncio.ensure_future(result, loop=loop)
        done, _ = loop.run_until_complete(asyncio.wait([task], timeout=PENDING))
        if not done:
            task.cancel()
            loop.run_until_complete(asyncio.wait([task], timeout=5))
            return ['pending']
    except BaseException as exc:
        return ['running it raised'] + describe(exc)
    if task.cancelled():
        return ['cancelled']
    exc = task.exception()
    if exc is not None:
        return ['raised'] + describe(exc)
    result = task.result()
    wait_for_process(loop, result)
    close_returned(result)
    wait_for_process(loop, result)
    return ['returned', summary(result)]


def wait_for_process(loop, result):
    """A subprocess the call started runs to its end (on its own, or once
    closing its transport killed it): when its exit is noticed is the child
    watcher's timing, not a behaviour to compare."""
    if (isinstance(result, tuple) and len(result) == 2
            and isinstance(result[0], asyncio.SubprocessTransport)
            and isinstance(result[1], Recording)):
        loop.run_until_complete(asyncio.wait([result[1].lost], timeout=5))


async def iterations(n):
    for _ in range(n):
        await asyncio.sleep(0)


def settle(loop):
    loop.run_until_complete(iterations(SETTLE_ITERATIONS))


def close_loop(loop):
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=5))
    loop.close()


def fd_count():
    return len(os.listdir('/proc/self/fd'))


def run(new_loop, call):
    """The answer to one call; 'fds' is how many descriptors the call left
    open once its fixtures and its loop were closed."""
    fds = fd_count()
    answer = run_on_fresh_loop(new_loop, call)
    left = fd_count() - fds
    if left > 0:
        # A reference cycle (an exception's traceback) may hold them: only
        # what survives a collection is left open. Collecting now also
        # keeps them out of the next call's count.
        gc.collect()
        left = fd_count() - fds
    answer['fds'] = left
    return answer


def run_on_fresh_loop(new_loop, call):
    loop = new_loop()
    fixtures = Fixtures(loop)
    try:
        try:
            args, kwargs = fixtures.build(call.args), fixtures.build(call.kwargs)
            target = fixtures.target(call.target)
        except Exception:
            return {'worker error': traceback.format_exc()}
        outcome = invoke(fixtures, target, call.method, args, kwargs)
        try:
            settle(loop)
        except Exception as exc:
            outcome.append(['settling raised'] + describe(exc))
        return fixtures.anonymise({'outcome': outcome, 'events': fixtures.events,
                                   'handler': fixtures.handler_calls})
    finally:
        fixtures.close()
        close_loop(loop)


def read_exactly(fd, n):
    data = b''
    while len(data) < n:
        chunk = os.read(fd, n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def out_of_reach(fd, number):
    """Moves a descriptor to a number no fuzzed fileno() lies with."""
    os.dup2(fd, number, inheritable=False)
    os.close(fd)
    return number


def main():
    loop_name = sys.argv[1]
    request_fd = out_of_reach(int(sys.argv[2]), 900)
    response_fd = out_of_reach(int(sys.argv[3]), 901)
    no_lookups.install()
    if loop_name == 'ferroloop':
        import ferroloop
        new_loop = ferroloop.new_event_loop
    else:
        new_loop = asyncio.new_event_loop
    with tempfile.TemporaryDirectory(prefix='fuzz-worker-') as workdir:
        os.chdir(workdir)       # unix socket paths and data files land here
        while True:
            header = read_exactly(request_fd, 4)
            if header is None:
                return
            call = pickle.loads(read_exactly(request_fd, struct.unpack('!I', header)[0]))
            answer = pickle.dumps(run(new_loop, call))
            with open(response_fd, 'wb', closefd=False) as out:
                out.write(struct.pack('!I', len(answer)) + answer)


if __name__ == '__main__':
    main()
