"""What real libraries rely on, where stock asyncio's own test suite does not
look: argument handling, descriptors, contexts, exception types and
messages. Every case runs on stock asyncio and on ferroloop and compares."""

import asyncio
import contextvars
import errno
import socket
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_same_on_both, run_program_on_both

TIMEOUT = 10


def outcome(fn, *args):
    """What calling ``fn(*args)`` gives: a repr of the result, or the
    exception's type and message (and errno/strerror for an OSError)."""
    try:
        return ('ok', repr(fn(*args)))
    except OSError as exc:
        return (type(exc).__name__, exc.errno, exc.strerror, str(exc))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


async def async_outcome(coro):
    try:
        return ('ok', repr(await asyncio.wait_for(coro, TIMEOUT)))
    except OSError as exc:
        return (type(exc).__name__, exc.errno, exc.strerror, str(exc))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


def rss_bytes():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096


class FileNo:
    """An object whose fileno() returns (or raises) what it is given."""

    def __init__(self, value):
        self.value = value

    def fileno(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self):
        return f'FileNo({self.value!r})'


# Descriptors of any number.

@pytest.mark.parametrize('fd', [2**31 - 1, 10_000_000, 65_536, 2**40, 2**70, -1,
                                FileNo(2**31 - 1), FileNo(KeyError('boom')),
                                FileNo('x'), FileNo(-5), 3.0, None])
@pytest.mark.parametrize('method', ['add_reader', 'add_writer'])
def test_watching_a_descriptor_of_any_number(method, fd):
    def attempt(loop):
        return outcome(getattr(loop, method), fd, print)
    assert_same_on_both(attempt)


@pytest.mark.parametrize('fd', [2**40, 10_000_000, -1, FileNo(-1), FileNo(KeyError('boom'))])
@pytest.mark.parametrize('method', ['remove_reader', 'remove_writer'])
def test_removing_a_descriptor_of_any_number(method, fd):
    def attempt(loop):
        return outcome(getattr(loop, method), fd)
    assert_same_on_both(attempt)


def test_huge_descriptor_numbers_neither_crash_nor_keep_memory():
    # In a child process: before the fix this aborted the interpreter
    # ("memory allocation of 85899345920 bytes failed").
    program = textwrap.dedent('''
        import errno, ferroloop
        def rss():
            with open('/proc/self/statm') as f:
                return int(f.read().split()[1]) * 4096
        loop = ferroloop.new_event_loop()
        before = rss()
        for fd in (2**31 - 1, 10_000_000, 1_000_000, 70_000):
            for method in (loop.add_reader, loop.add_writer):
                try:
                    method(fd, print)
                except OSError as exc:
                    assert exc.errno == errno.EBADF, exc
                else:
                    raise AssertionError('no error')
        grown = rss() - before
        loop.close()
        print('grown', grown)
        assert grown < 8 * 1024 * 1024, grown
    ''')
    proc = subprocess.run([sys.executable, '-c', program], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_oserrors_carry_errno_and_strerror(loop_name, loop):
    with pytest.raises(OSError) as info:
        loop.add_reader(10_000_000, print)
    assert info.value.errno == errno.EBADF
    assert info.value.strerror == 'Bad file descriptor'
    assert str(info.value) == '[Errno 9] Bad file descriptor'


# Registrations are found by the object they were made with.

@pytest.mark.parametrize('direction', ['reader', 'writer'])
def test_removing_the_watch_of_a_closed_socket(direction):
    def attempt(loop):
        a, b = socket.socketpair()
        getattr(loop, f'add_{direction}')(a, print)
        a.close()
        removed = getattr(loop, f'remove_{direction}')(a)
        again = outcome(getattr(loop, f'remove_{direction}'), a)
        b.close()
        return removed, again
    assert assert_same_on_both(attempt)[0] is True


def test_a_reused_descriptor_gets_a_new_transport():
    """A transport's socket closed behind its back, its number reused: 3.11
    makes a transport for the new socket, 3.12 refuses while the old
    transport lives (asyncio's _ensure_fd_no_transport in
    _make_socket_transport); either way the new socket's transport, once
    made, owns the descriptor."""
    import os

    def attempt(loop):
        async def main():
            a, b = socket.socketpair()
            old, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            number = a.fileno()
            os.close(number)          # behind the transport's back
            c, d = socket.socketpair()
            new_sock, other = (c, d) if c.fileno() == number else (d, c)
            if new_sock.fileno() != number:
                return 'the kernel did not reuse the number'
            made = await async_outcome(loop.create_connection(asyncio.Protocol, sock=new_sock))
            in_use = None
            if made[0] == 'ok':
                in_use = outcome(loop.add_reader, new_sock, print)[0]
            a.detach()
            old.abort()
            await asyncio.sleep(0)
            new_sock.close()
            other.close()
            b.close()
            return made[0], in_use
        return loop.run_until_complete(main())

    result = assert_same_on_both(attempt)
    if sys.version_info >= (3, 12):
        assert result == ('RuntimeError', None)
    else:
        assert result == ('ok', 'RuntimeError')


# Values asyncio accepts as they are.

@pytest.mark.parametrize('value', [1, 0, None, 'yes', True, False])
def test_set_debug_takes_any_value(value):
    def attempt(loop):
        loop.set_debug(value)
        return loop.get_debug(), bool(loop.get_debug())
    assert_same_on_both(attempt)


def test_runner_with_a_debug_number():
    import ferroloop

    async def main():
        return asyncio.get_running_loop().get_debug()

    with asyncio.Runner(debug=1, loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main()) is True or runner.get_loop().get_debug()


# sock_* arguments, read as Python's socket methods read them.

def _sock_pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def _released():
    view = memoryview(bytearray(4))
    view.release()
    return view


@pytest.mark.parametrize('n', [0, -1, -2**70, 2**63, 2.5, 'x', None])
def test_sock_recv_sizes(n):
    def attempt(loop):
        a, b = _sock_pair()
        try:
            return loop.run_until_complete(async_outcome(loop.sock_recv(a, n)))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


@pytest.mark.parametrize('make_buffer', [
    lambda: bytearray(0), lambda: b'xx', lambda: memoryview(b'xx'),
    lambda: memoryview(bytearray(8))[::2], _released, lambda: 'text', lambda: None,
    lambda: memoryview(bytearray(6)).cast('B', (2, 3)),
], ids=['empty', 'bytes', 'readonly', 'noncontiguous', 'released', 'str', 'none',
        'multidim'])
def test_sock_recv_into_buffers(make_buffer):
    def attempt(loop):
        a, b = _sock_pair()
        b.send(b'abc')
        try:
            return loop.run_until_complete(async_outcome(loop.sock_recv_into(a, make_buffer())))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


@pytest.mark.parametrize('make_data', [
    lambda: 'text', lambda: 5, lambda: None, lambda: memoryview(bytearray(8))[::2],
    _released, lambda: __import__('array').array('b', [1, 2, 3]), lambda: b'',
], ids=['str', 'int', 'none', 'noncontiguous', 'released', 'array', 'empty'])
def test_sock_sendall_data(make_data):
    def attempt(loop):
        a, b = _sock_pair()
        try:
            return loop.run_until_complete(async_outcome(loop.sock_sendall(a, make_data())))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


def test_sock_recv_of_a_huge_size_does_not_abort(loop_name, loop):
    a, b = _sock_pair()
    try:
        result = loop.run_until_complete(async_outcome(loop.sock_recv(a, 2**40)))
    finally:
        a.close()
        b.close()
    assert result[0] == 'MemoryError'


# Protocol callbacks run in the context current when the transport was made
# (for a server's connections: when the server started serving).

request_id = contextvars.ContextVar('request_id', default='unset')
reads = contextvars.ContextVar('reads', default=0)


class ContextRecorder(asyncio.BufferedProtocol):
    """Records, for every callback, the context variables it sees; counts
    its reads in a variable of its own (which persists from one read to the
    next in asyncio: they run in one context)."""

    def __init__(self, log, side, buffered=False, echo=False):
        self.log = log
        self.side = side
        self.buffered = buffered
        self.echo = echo
        self.buf = bytearray(1024)
        self.done = asyncio.get_running_loop().create_future()

    def note(self, event):
        self.log.append((self.side, event, request_id.get(), reads.get()))

    def connection_made(self, transport):
        self.transport = transport
        self.note('connection_made')

    def data_received(self, data):
        reads.set(reads.get() + 1)
        self.note('data_received')
        if self.echo:
            self.transport.write(data)

    def get_buffer(self, sizehint):
        self.note('get_buffer')
        return self.buf

    def buffer_updated(self, nbytes):
        reads.set(reads.get() + 1)
        self.note('buffer_updated')
        if self.echo:
            self.transport.write(bytes(self.buf[:nbytes]))

    def eof_received(self):
        self.note('eof_received')

    def connection_lost(self, exc):
        self.note('connection_lost')
        if not self.done.done():
            self.done.set_result(None)


def _recorder_class(buffered):
    if buffered:
        return ContextRecorder
    return type('DataOnly', (asyncio.Protocol,), {
        k: v for k, v in vars(ContextRecorder).items()
        if k not in ('get_buffer', 'buffer_updated')})


async def _context_exchange(kind, buffered, tls):
    loop = asyncio.get_running_loop()
    log = []
    cls = _recorder_class(buffered)
    servers = []

    def server_factory():
        proto = cls(log, 'server', buffered, echo=True)
        servers.append(proto)
        return proto

    server_ssl = client_ssl = None
    if tls:
        server_ssl, client_ssl = _tls_contexts()
    request_id.set('server-start')
    if kind == 'tcp':
        server = await loop.create_server(server_factory, '127.0.0.1', 0, ssl=server_ssl)
        address = server.sockets[0].getsockname()
    else:
        import tempfile
        tmp = tempfile.mkdtemp()
        address = f'{tmp}/s.sock'
        server = await loop.create_unix_server(server_factory, address, ssl=server_ssl)

    async def client():
        request_id.set('client-task')
        kwargs = dict(ssl=client_ssl)
        if tls:
            kwargs['server_hostname'] = 'localhost'
        if kind == 'tcp':
            transport, proto = await loop.create_connection(
                lambda: cls(log, 'client', buffered), *address, **kwargs)
        else:
            transport, proto = await loop.create_unix_connection(
                lambda: cls(log, 'client', buffered), address, **kwargs)
        request_id.set('client-later')   # the transport keeps its own copy
        for i in range(3):
            transport.write(b'x%d' % i)
            await asyncio.sleep(0.05)
        transport.close()
        await asyncio.wait_for(proto.done, TIMEOUT)
        await asyncio.wait_for(servers[0].done, TIMEOUT)

    await asyncio.get_running_loop().create_task(client())
    server.close()
    await server.wait_closed()
    # The order of events differs between runs only by timing; what matters
    # is which context each callback saw.
    return sorted(set((side, event, rid) for side, event, rid, _ in log)), \
        max(n for *_, n in log)


def _tls_contexts():
    from test.test_asyncio import utils as test_utils
    server = test_utils.simple_server_sslcontext()
    client = test_utils.simple_client_sslcontext()
    return server, client


@pytest.mark.parametrize('tls', [False, True], ids=['plain', 'tls'])
@pytest.mark.parametrize('buffered', [False, True], ids=['data', 'buffered'])
@pytest.mark.parametrize('kind', ['tcp', 'unix'])
def test_protocol_callbacks_run_in_the_transports_context(kind, buffered, tls):
    def attempt(loop):
        return loop.run_until_complete(_context_exchange(kind, buffered, tls))
    seen, most_reads = assert_same_on_both(attempt)
    assert ('client', 'data_received' if not buffered else 'buffer_updated',
            'client-task') in seen
    assert most_reads >= 2


def test_datagram_callbacks_run_in_the_endpoints_context():
    async def main():
        loop = asyncio.get_running_loop()
        log = []

        class Datagrams(asyncio.DatagramProtocol):
            def __init__(self, side):
                self.side = side
                self.got = asyncio.get_running_loop().create_future()

            def connection_made(self, transport):
                log.append((self.side, 'connection_made', request_id.get()))

            def datagram_received(self, data, addr):
                reads.set(reads.get() + 1)
                log.append((self.side, 'datagram_received', request_id.get(), reads.get()))
                if not self.got.done():
                    self.got.set_result(data)

            def error_received(self, exc):
                log.append((self.side, 'error_received', request_id.get()))

            def connection_lost(self, exc):
                log.append((self.side, 'connection_lost', request_id.get()))

        request_id.set('receiver')
        rtr, rproto = await loop.create_datagram_endpoint(
            lambda: Datagrams('receiver'), local_addr=('127.0.0.1', 0))
        request_id.set('sender')
        str_, sproto = await loop.create_datagram_endpoint(
            lambda: Datagrams('sender'), remote_addr=rtr.get_extra_info('sockname'))
        request_id.set('later')
        str_.sendto(b'one')
        await asyncio.wait_for(rproto.got, TIMEOUT)
        rproto.got = loop.create_future()
        str_.sendto(b'two')
        await asyncio.wait_for(rproto.got, TIMEOUT)
        str_.close()
        rtr.close()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return log

    def attempt(loop):
        return loop.run_until_complete(main())
    log = assert_same_on_both(attempt)
    assert ('receiver', 'datagram_received', 'receiver', 2) in log


# A replaced loop.time() is what the loop's timers read.

class FakeClock:
    def __init__(self, start):
        self.now = start

    def __call__(self):
        return self.now


def _timers_on_a_fake_clock(loop):
    clock = FakeClock(loop.time())
    loop.time = clock
    fired = []
    handle = loop.call_later(1000, fired.append, 'later')
    assert handle.when() == clock.now + 1000
    loop.call_at(clock.now + 2000, fired.append, 'at')
    loop.call_soon(loop.stop)
    loop.run_forever()
    before = list(fired)
    clock.now += 1500          # time jumps: the first timer is due
    loop.call_soon(loop.stop)
    loop.run_forever()
    middle = list(fired)
    clock.now += 1000
    loop.call_soon(loop.stop)
    loop.run_forever()
    del loop.time
    return before, middle, fired


def test_timers_read_an_overridden_time():
    before, middle, after = assert_same_on_both(_timers_on_a_fake_clock)
    assert (before, middle, after) == ([], ['later'], ['later', 'at'])


def test_a_subclass_time_is_honoured():
    import ferroloop

    class Shifted(ferroloop.Loop):
        def time(self):
            return super().time() + 10_000

    loop = Shifted()
    try:
        import time
        handle = loop.call_later(0, lambda: None)
        assert handle.when() - time.monotonic() > 9_000
        # The iteration compares deadlines with the shifted clock too: a
        # short sleep ends as usual.
        loop.run_until_complete(asyncio.wait_for(asyncio.sleep(0.01), TIMEOUT))
    finally:
        loop.close()


def test_patched_time_with_mock():
    from unittest import mock

    def attempt(loop):
        with mock.patch.object(loop, 'time', return_value=5000.0):
            handle = loop.call_later(3, lambda: None)
            when = handle.when()
            handle.cancel()
        restored = abs(loop.call_later(0, lambda: None).when() - loop.time()) < 1
        return when, restored
    assert assert_same_on_both(attempt) == (5003.0, True)


# Unix datagram sockets.

def _unix_datagram_exchange(loop, bound):
    import os
    import tempfile

    async def main():
        received = []
        got = loop.create_future()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                received.append((data, addr))
                if len(received) == 3 and not got.done():
                    got.set_result(None)

        if bound:
            tmp = tempfile.mkdtemp()
            a = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            a.bind(os.path.join(tmp, 'a'))
            b = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            b.bind(os.path.join(tmp, 'b'))
            target = os.path.join(tmp, 'a')
        else:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            target = None
        rtr, _ = await loop.create_datagram_endpoint(Receiver, sock=a)
        if bound:
            str_, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=b)
            for data in (b'one', b'two', b'three'):
                str_.sendto(data, target)
        else:
            # asyncio's transport cannot send from an unnamed end (it passes
            # the address None on to sendto()): the peer sends itself.
            str_ = rtr
            for data in (b'one', b'two', b'three'):
                b.send(data)
        await asyncio.wait_for(got, TIMEOUT)
        str_.close()
        rtr.close()
        b.close()
        await asyncio.sleep(0)
        # Bound senders have a path (under a temporary directory that
        # differs between runs); socketpair ends have none.
        return [(data, os.path.basename(addr) if addr else addr) for data, addr in received]

    return loop.run_until_complete(main())


@pytest.mark.parametrize('bound', [False, True], ids=['socketpair', 'bound'])
def test_unix_datagram_endpoints_exchange_datagrams(bound):
    result = assert_same_on_both(_unix_datagram_exchange, bound)
    assert [data for data, _ in result] == [b'one', b'two', b'three']


def test_datagram_sendto_none_on_an_unconnected_socket():
    async def main(loop):
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(
            (context['message'], type(context.get('exception')).__name__)))
        lost = loop.create_future()

        class Endpoint(asyncio.DatagramProtocol):
            def connection_lost(self, exc):
                lost.set_result(type(exc).__name__)

        tr, _ = await loop.create_datagram_endpoint(Endpoint, local_addr=('127.0.0.1', 0))
        tr.sendto(b'x')
        return await asyncio.wait_for(lost, TIMEOUT), errors

    assert_same_on_both(lambda loop: loop.run_until_complete(main(loop)))


# Debug mode records where tasks, futures and handles were made.

DESTROYED_PENDING = textwrap.dedent('''
    import asyncio, gc; gc.disable()  # collected below only: finalizers in creation order

    def make(loop, coro):
        return loop.create_task(coro)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        fut = loop.create_future()

        async def waiter():
            await fut

        task = make(loop, waiter())
        other = asyncio.ensure_future(waiter())
        await asyncio.sleep(0)
        print(repr(fut))
        del task, other, fut
        gc.collect()
        await asyncio.sleep(0)

    asyncio.run(main())
''')


def _without_loop_frames(text):
    """A report with the frames of the loop's own run machinery left out:
    stock asyncio runs callbacks through Python frames of base_events.py and
    events.py, ferroloop through native code and one frame of its own."""
    import re
    own = re.compile(r'  File "[^"]*(/asyncio/base_events\.py|/asyncio/events\.py|/ferroloop/[^"]*)"')
    # Whether the cycle collector finalised the coroutine before the task
    # (its repr then says "done, defined at" instead of "running at") is an
    # order of the collector's, not the loop's.
    text = re.sub(r'coro=<(\S+) (running at|done, defined at) \S*?:\d+>', r'coro=<\1 ...>', text)
    lines = text.splitlines()
    kept = []
    skip_code_line = False
    for line in lines:
        if skip_code_line and line.startswith('    '):
            skip_code_line = False
            continue
        skip_code_line = False
        if own.match(line):
            skip_code_line = True
            continue
        kept.append(line)
    return kept


def test_destroyed_pending_tasks_name_where_they_were_made():
    runs = run_program_on_both(DESTROYED_PENDING, timeout=60)
    assert runs['ferroloop'].returncode == runs['asyncio'].returncode == 0
    assert 'Task was destroyed but it is pending!' in runs['asyncio'].stderr
    assert 'program.py:5' in runs['asyncio'].stderr
    assert runs['ferroloop'].stdout == runs['asyncio'].stdout
    assert (_without_loop_frames(runs['ferroloop'].stderr)
            == _without_loop_frames(runs['asyncio'].stderr))


def _creation_sites(loop):
    async def coro():
        await asyncio.sleep(10)

    def make():
        return loop.create_task(coro())

    loop.set_debug(True)
    made = [make(), loop.create_future(), loop.call_soon(print),
            loop.call_later(1, print), asyncio.ensure_future(coro(), loop=loop),
            loop.call_at(loop.time() + 1, print)]
    sites = [(frame.filename.rsplit('/', 1)[-1], frame.lineno, frame.name)
             for frame in (thing._source_traceback[-1] for thing in made)]
    for thing in made:
        thing.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    return sites


def test_debug_mode_creation_sites():
    assert_same_on_both(_creation_sites)


def test_task_factory_calling_conventions():
    def attempt(loop):
        calls = []

        def factory(loop, coro, **kwargs):
            calls.append(sorted(kwargs))
            return asyncio.Task(coro, loop=loop, **kwargs)

        loop.set_task_factory(factory)

        async def nothing():
            return 1

        tasks = [loop.create_task(nothing()), loop.create_task(nothing(), name='named'),
                 loop.create_task(nothing(), context=contextvars.copy_context())]
        results = loop.run_until_complete(asyncio.gather(*tasks))
        names = [t.get_name() if t.get_name().startswith(('named', 'None')) else 'auto'
                 for t in tasks]
        coro = nothing()
        bogus = outcome(lambda: loop.create_task(coro, bogus=1))
        coro.close()
        return calls, results, names, bogus
    assert_same_on_both(attempt)


# A failed create_connection keeps no exception alive.

def _closed_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.mark.parametrize('happy_eyeballs', [None, 0.25])
def test_failed_create_connection_keeps_no_cycle(loop, happy_eyeballs, loop_name):
    import gc

    if happy_eyeballs and loop_name == 'asyncio':
        pytest.skip("stock asyncio's staggered race keeps one (its functools.partial "
                    "and tuple unpacking, fixed in later CPython releases)")

    def attempt(loop):
        port = _closed_port()

        async def main():
            try:
                await loop.create_connection(asyncio.Protocol, '127.0.0.1', port,
                                             happy_eyeballs_delay=happy_eyeballs)
            except OSError as exc:
                return exc

        exc = loop.run_until_complete(main())
        # Lists and frames other than ours that still hold the exception.
        holders = [type(r).__name__ for r in gc.get_referrers(exc)
                   if isinstance(r, (list, tuple, dict))]
        return type(exc).__name__, exc.errno, holders
    assert attempt(loop) == ('ConnectionRefusedError', errno.ECONNREFUSED, [])


@pytest.mark.skipif(sys.version_info >= (3, 12), reason='all_errors exists from 3.12')
def test_all_errors_is_refused_before_312():
    def attempt(loop):
        try:
            loop.run_until_complete(
                loop.create_connection(asyncio.Protocol, '127.0.0.1', 1, all_errors=True))
        except TypeError as exc:
            return 'TypeError', str(exc).split('create_connection()')[1]
    assert assert_same_on_both(attempt)[0] == 'TypeError'


# Same exception types, same messages (issue 7, part 3).

class _Buffered(asyncio.BufferedProtocol):
    def __init__(self, make_buffer, lost):
        self.make_buffer = make_buffer
        self.lost = lost

    def get_buffer(self, sizehint):
        return self.make_buffer()

    def buffer_updated(self, nbytes):
        pass

    def connection_lost(self, exc):
        self.lost.set_result(None if exc is None else (type(exc).__name__, str(exc)))


@pytest.mark.parametrize('make_buffer', [
    lambda: b'read-only', lambda: memoryview(bytearray(16))[::2], lambda: bytearray(0),
    lambda: 5, _released,
], ids=['readonly', 'noncontiguous', 'empty', 'int', 'released'])
def test_get_buffer_returning_an_unusable_buffer(make_buffer):
    def attempt(loop):
        async def main():
            reports = []
            loop.set_exception_handler(lambda loop, context: reports.append(
                (context['message'], type(context.get('exception')).__name__)))
            a, b = socket.socketpair()
            lost = loop.create_future()
            await loop.connect_accepted_socket(lambda: _Buffered(make_buffer, lost), a)
            b.send(b'hello')
            result = await asyncio.wait_for(lost, TIMEOUT)
            b.close()
            return result, reports
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


@pytest.mark.parametrize('limits', [
    dict(high=1.5), dict(high=2**100), dict(high=float('inf')), dict(low=3.5),
    dict(high=10, low=20), dict(high=-1), dict(high='x'), dict(high=None, low=None),
    dict(high=0), dict(low=float('inf')), dict(high=float('nan')),
])
@pytest.mark.parametrize('kind', ['stream', 'datagram'])
def test_write_buffer_limits_take_what_asyncio_takes(kind, limits):
    def attempt(loop):
        async def main():
            if kind == 'stream':
                a, b = socket.socketpair()
                tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            else:
                b = None
                tr, _ = await loop.create_datagram_endpoint(
                    asyncio.DatagramProtocol, local_addr=('127.0.0.1', 0))
            result = (outcome(lambda: tr.set_write_buffer_limits(**limits)),
                      tr.get_write_buffer_limits())
            tr.close()
            if b is not None:
                b.close()
            await asyncio.sleep(0)
            return result
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


def test_set_protocol_takes_any_object():
    def attempt(loop):
        async def main():
            import re
            reports = []
            # The transport's class is named in asyncio's report.
            loop.set_exception_handler(lambda loop, context: reports.append(
                (re.sub(r'callback \w+\.', 'callback <transport>.', context['message']),
                 type(context.get('exception')).__name__)))
            a, b = socket.socketpair()
            tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            stand_in = object()
            tr.set_protocol(stand_in)
            same = tr.get_protocol() is stand_in
            b.send(b'data')
            for _ in range(20):
                await asyncio.sleep(0.01)
                if tr.is_closing():
                    break
            tr.abort()
            b.close()
            await asyncio.sleep(0)
            return same, reports
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


@pytest.mark.parametrize('lines', [[], (), None, 0, [b'a', bytearray(b'b'), memoryview(b'c')],
                                   [b'a', 'text'], [5], 'abc', [memoryview(bytearray(8))[::2]]],
                         ids=['list', 'tuple', 'none', 'zero', 'mixed', 'text-item', 'int-item',
                              'str', 'noncontiguous'])
def test_writelines_arguments(lines):
    def attempt(loop):
        async def main():
            a, b = socket.socketpair()
            b.setblocking(False)
            tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            result = outcome(tr.writelines, lines)
            await asyncio.sleep(0.01)
            try:
                received = b.recv(100)
            except BlockingIOError:
                received = None
            tr.close()
            b.close()
            await asyncio.sleep(0)
            return result, received
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


def test_writelines_after_write_eof():
    def attempt(loop):
        async def main():
            a, b = socket.socketpair()
            tr, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            tr.write_eof()
            result = outcome(tr.writelines, [b'x'])
            tr.close()
            b.close()
            await asyncio.sleep(0)
            return result
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


@pytest.mark.parametrize('sock_type', [socket.SOCK_STREAM, socket.SOCK_SEQPACKET])
def test_datagram_endpoint_refuses_other_sockets(sock_type):
    def attempt(loop):
        sock = socket.socket(socket.AF_UNIX, sock_type)
        try:
            result = loop.run_until_complete(async_outcome(
                loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)))
        finally:
            sock.close()
        if result[0] == 'ok':
            return 'accepted'
        return result[0], result[1].split(', got')[0]
    assert_same_on_both(attempt)


@pytest.mark.parametrize('count', [2**64, 2**63, -1, 0, 1.5])
def test_sock_sendfile_counts(count, tmp_path):
    path = tmp_path / 'data'
    path.write_bytes(b'x' * 1000)

    def attempt(loop):
        a, b = _sock_pair()
        try:
            with open(path, 'rb') as f:
                return loop.run_until_complete(async_outcome(loop.sock_sendfile(a, f, 0, count)))
        finally:
            a.close()
            b.close()
    assert_same_on_both(attempt)


def test_exceptions_in_datagram_received_are_reported_not_fatal():
    def attempt(loop):
        async def main():
            reports = []
            loop.set_exception_handler(lambda loop, context: reports.append(
                type(context.get('exception')).__name__))
            got = []
            done = loop.create_future()

            class Fragile(asyncio.DatagramProtocol):
                def datagram_received(self, data, addr):
                    got.append(data)
                    if len(got) == 3:
                        done.set_result(None)
                    if data == b'bad':
                        raise ValueError('bad datagram')

            tr, _ = await loop.create_datagram_endpoint(Fragile, local_addr=('127.0.0.1', 0))
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            for data in (b'one', b'bad', b'three'):
                sender.sendto(data, tr.get_extra_info('sockname'))
            await asyncio.wait_for(done, TIMEOUT)
            closing = tr.is_closing()
            tr.close()
            sender.close()
            await asyncio.sleep(0)
            return got, reports, closing
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


# A socket closed while an operation on it is pending.

@pytest.mark.parametrize('operation', ['recv', 'recv_into', 'accept', 'sendall'])
def test_closing_a_socket_with_a_pending_operation(operation, loop_name, loop):
    """The descriptor stays open until the operation ends, which then
    completes normally (uvloop's behaviour; stock asyncio's waits forever)."""
    if loop_name == 'asyncio':
        pytest.skip('stock asyncio leaves the operation waiting forever')

    async def main():
        if operation == 'accept':
            listener = socket.socket()
            listener.bind(('127.0.0.1', 0))
            listener.listen()
            listener.setblocking(False)
            pending = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0)
            listener_address = listener.getsockname()
            listener.close()
            client = socket.create_connection(listener_address)
            conn, _ = await asyncio.wait_for(pending, TIMEOUT)
            conn.close()
            client.close()
            return listener.fileno()
        a, b = _sock_pair()
        if operation == 'sendall':
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            data = b'x' * 2_000_000
            pending = asyncio.ensure_future(loop.sock_sendall(a, data))
        elif operation == 'recv':
            pending = asyncio.ensure_future(loop.sock_recv(a, 100))
        else:
            pending = asyncio.ensure_future(loop.sock_recv_into(a, bytearray(100)))
        await asyncio.sleep(0)
        a.close()
        assert '[closed]' in repr(a)    # as far as Python is concerned
        if operation == 'sendall':
            got = 0
            while got < len(data):
                try:
                    got += len(b.recv(1 << 20))
                except BlockingIOError:
                    await asyncio.sleep(0.001)
        else:
            b.send(b'hello')
        result = await asyncio.wait_for(pending, TIMEOUT)
        b.close()
        return result

    import os
    before = len(os.listdir('/proc/self/fd'))
    result = loop.run_until_complete(main())
    assert result in (b'hello', 5, None, -1)   # -1: the listener, closed at last
    assert len(os.listdir('/proc/self/fd')) <= before


@pytest.mark.parametrize('operation', ['recv', 'recv_into', 'sendall', 'accept'])
def test_cancelled_operations_leave_no_registration(operation, loop):
    async def main():
        a, b = _sock_pair()
        if operation == 'accept':
            a.close()
            a = socket.socket()
            a.bind(('127.0.0.1', 0))
            a.listen()
            a.setblocking(False)
            coro = loop.sock_accept(a)
        elif operation == 'recv_into':
            coro = loop.sock_recv_into(a, bytearray(10))
        elif operation == 'sendall':
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            coro = loop.sock_sendall(a, b'x' * 2_000_000)
        else:
            coro = loop.sock_recv(a, 100)
        task = asyncio.ensure_future(coro)
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        fd = a.fileno()
        a.close()
        b.close()
        # Nothing is registered for the old number any more: watching a new
        # descriptor that reuses it works, and removing it finds nothing.
        return fd, loop.remove_reader(fd), loop.remove_writer(fd)

    fd, removed_reader, removed_writer = loop.run_until_complete(main())
    assert (removed_reader, removed_writer) == (False, False)


# Found by the fuzz suite.

class _DuckContext:
    def run(self, callback, *args):
        return callback(*args)


@pytest.mark.parametrize('context', [0, 'text', _DuckContext()], ids=['int', 'str', 'duck'])
def test_call_soon_with_a_context_that_is_not_one(context):
    def attempt(loop):
        reports, ran = [], []
        loop.set_exception_handler(lambda loop, c: reports.append(type(c.get('exception')).__name__))
        loop.call_soon(ran.append, 1, context=context)
        loop.run_until_complete(asyncio.sleep(0))
        return ran, reports
    assert_same_on_both(attempt)


def test_what_came_with_312():
    def attempt(loop):
        handle = loop.call_soon(print)
        handle.cancel()
        try:
            coro = loop.shutdown_default_executor(1)
        except TypeError:
            result = 'TypeError'
        else:
            result = loop.run_until_complete(async_outcome(coro))
        return hasattr(handle, 'get_context'), result
    assert_same_on_both(attempt)


class _NoSocket:
    def fileno(self):
        raise ValueError('not a socket')


@pytest.mark.parametrize('method,args', [
    ('sock_accept', ()), ('sock_recv', (10,)), ('sock_recv_into', (bytearray(4),)),
    ('sock_sendall', (b'x',)), ('sock_connect', (('127.0.0.1', 1),)),
    ('sock_recvfrom', (10,)), ('sock_sendto', (b'x', ('127.0.0.1', 1))),
])
def test_sock_methods_given_no_socket(method, args):
    def attempt(loop):
        result = loop.run_until_complete(async_outcome(getattr(loop, method)(_NoSocket(), *args)))
        return result[0]
    assert_same_on_both(attempt)


def test_create_server_with_no_hosts():
    def attempt(loop):
        async def main():
            server = await loop.create_server(asyncio.Protocol, [], 0)
            sockets = len(server.sockets)
            server.close()
            await server.wait_closed()
            return sockets
        return loop.run_until_complete(async_outcome(main()))
    assert_same_on_both(attempt)


@pytest.mark.parametrize('kind', ['stream', 'datagram'])
def test_writing_a_noncontiguous_view_fails_the_transport(kind):
    def attempt(loop):
        async def main():
            lost = loop.create_future()

            class Watch(asyncio.Protocol, asyncio.DatagramProtocol):
                def connection_lost(self, exc):
                    lost.set_result(type(exc).__name__ if exc else None)

            reports = []
            loop.set_exception_handler(lambda loop, c: reports.append(c['message']))
            view = memoryview(bytearray(16))[::2]
            if kind == 'stream':
                a, b = socket.socketpair()
                tr, _ = await loop.connect_accepted_socket(Watch, a)
                tr.write(view)
            else:
                b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                b.bind(('127.0.0.1', 0))
                tr, _ = await loop.create_datagram_endpoint(
                    Watch, remote_addr=b.getsockname())
                tr.sendto(view)
            result = await asyncio.wait_for(lost, TIMEOUT)
            b.close()
            return result, reports
        return loop.run_until_complete(main())
    assert_same_on_both(attempt)


def test_sendto_on_a_connected_socket_ignores_the_address():
    def attempt(loop):
        async def main():
            receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            receiver.bind(('127.0.0.1', 0))
            receiver.setblocking(False)
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.connect(receiver.getsockname())
            tr, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, sock=sock)
            tr.sendto(b'x', ('127.0.0.1', 1, 2, 3))
            for _ in range(100):
                try:
                    got = receiver.recv(10)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.01)
            else:
                got = None
            closing = tr.is_closing()
            tr.close()
            receiver.close()
            await asyncio.sleep(0)
            return got, closing
        return loop.run_until_complete(main())
    assert assert_same_on_both(attempt) == (b'x', False)
