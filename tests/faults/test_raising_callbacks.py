"""Callbacks and protocol methods that raise: ordinary exceptions go to the
exception handler (with asyncio's message), KeyboardInterrupt and SystemExit
leave run_until_complete and the loop runs on afterwards; MemoryError and a
real RecursionError are ordinary exceptions."""

import pytest

from .harness import check_case

RAISING = '''
import asyncio, os, signal, socket, sys
from case_helpers import describe, handler_message, report


def recurse(depth=0):
    return recurse(depth + 1)


def fail(kind):
    if kind == 'RecursionError':
        recurse()
    raise {'ValueError': ValueError('boom'), 'MemoryError': MemoryError(),
           'KeyboardInterrupt': KeyboardInterrupt(), 'SystemExit': SystemExit(3)}[kind]


KINDS = ['ValueError', 'MemoryError', 'RecursionError', 'KeyboardInterrupt', 'SystemExit']


def run_scenario(scenario, kind):
    """Runs ``scenario(kind, events)`` on a fresh loop; a KeyboardInterrupt or
    SystemExit that leaves the loop is recorded, and the loop is run again
    (twice at most) until the scenario ends."""
    loop = asyncio.new_event_loop()
    events = []
    loop.set_exception_handler(lambda lp, ctx: events.append(
        ['handler', handler_message(ctx.get('message')), describe(ctx.get('exception'))]))
    task = loop.create_task(scenario(kind, events))
    for _ in range(3):
        try:
            loop.run_until_complete(asyncio.wait_for(asyncio.shield(task), 5))
            break
        except BaseException as exc:
            events.append(['run raised', type(exc).__name__])
    task.cancel()
    try:
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
    except BaseException as exc:
        events.append(['cleanup raised', type(exc).__name__])
    loop.close()
    return events
'''

CALLBACKS = RAISING + '''

async def call_soon(kind, events):
    loop = asyncio.get_running_loop()
    loop.call_soon(fail, kind)
    loop.call_soon(events.append, 'next callback ran')
    await asyncio.sleep(0.01)


async def call_later(kind, events):
    loop = asyncio.get_running_loop()
    loop.call_later(0.001, fail, kind)
    await asyncio.sleep(0.05)
    events.append('after the timer')


async def threadsafe(kind, events):
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, loop.call_soon_threadsafe, fail, kind)
    await asyncio.sleep(0.01)
    events.append('after')


async def reader(kind, events):
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()

    def on_readable():
        loop.remove_reader(a)
        fail(kind)

    loop.add_reader(a, on_readable)
    b.send(b'x')
    await asyncio.sleep(0.05)
    events.append(['still registered', loop.remove_reader(a)])
    a.close()
    b.close()


async def done_callback(kind, events):
    fut = asyncio.get_running_loop().create_future()
    fut.add_done_callback(lambda f: fail(kind))
    fut.set_result(1)
    await asyncio.sleep(0.01)
    events.append('after')


async def task_body(kind, events):
    async def body():
        fail(kind)
    task = asyncio.ensure_future(body())
    try:
        await task
    except BaseException as exc:
        events.append(['awaiting raised', type(exc).__name__])
    events.append(['task', task.done(), task.cancelled()])


async def signal_handler(kind, events):
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, fail, kind)
    os.kill(os.getpid(), signal.SIGUSR1)
    await asyncio.sleep(0.05)
    loop.remove_signal_handler(signal.SIGUSR1)
    events.append('after')


got = {}
for scenario in (call_soon, call_later, threadsafe, reader, done_callback, task_body, signal_handler):
    for kind in KINDS:
        got[f'{scenario.__name__} {kind}'] = run_scenario(scenario, kind)
report(got)
'''


def test_callbacks_that_raise():
    check_case('callbacks that raise', CALLBACKS)


PROTOCOLS = RAISING + '''

class Failing:
    """Raises ``kind`` in the first call of ``method``; records the events
    it sees."""

    def __init__(self, method, kind, events):
        self.method, self.kind, self.events = method, kind, events
        self.buffer = bytearray(1024)

    def maybe_fail(self, method):
        self.events.append(method)
        if method == self.method:
            self.method = None
            fail(self.kind)

    def connection_made(self, transport):
        self.transport = transport
        self.maybe_fail('connection_made')

    def eof_received(self):
        self.maybe_fail('eof_received')

    def connection_lost(self, exc):
        self.events.append(['lost', describe(exc)])
        self.maybe_fail('connection_lost')


class FailingStream(Failing, asyncio.Protocol):
    def data_received(self, data):
        self.maybe_fail('data_received')


class FailingBuffered(Failing, asyncio.BufferedProtocol):
    def get_buffer(self, sizehint):
        self.maybe_fail('get_buffer')
        return self.buffer

    def buffer_updated(self, nbytes):
        self.maybe_fail('buffer_updated')


def stream_scenario(method, buffered):
    async def scenario(kind, events):
        loop = asyncio.get_running_loop()
        factory = FailingBuffered if buffered else FailingStream
        server = await loop.create_server(lambda: factory(method, kind, events), '127.0.0.1', 0)
        reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
        writer.write(b'hello')
        writer.write_eof()
        try:
            events.append(['client read', await asyncio.wait_for(reader.read(), 1)])
        except BaseException as exc:
            events.append(['client read raised', type(exc).__name__])
        writer.close()
        server.close()
        await asyncio.sleep(0.05)
    scenario.__name__ = f"{'buffered' if buffered else 'stream'} {method}"
    return scenario


class FailingDatagram(asyncio.DatagramProtocol):
    def __init__(self, method, kind, events):
        self.method, self.kind, self.events = method, kind, events

    def datagram_received(self, data, addr):
        self.events.append(['datagram', data])
        if self.method == 'datagram_received':
            fail(self.kind)

    def error_received(self, exc):
        self.events.append(['error', describe(exc)])
        if self.method == 'error_received':
            fail(self.kind)


def datagram_scenario(method):
    async def scenario(kind, events):
        loop = asyncio.get_running_loop()
        server, _ = await loop.create_datagram_endpoint(
            lambda: FailingDatagram(method, kind, events), local_addr=('127.0.0.1', 0))
        addr = server.get_extra_info('sockname')
        if method == 'error_received':
            # A connected socket to a closed port gets ECONNREFUSED back.
            server.close()
            client, _ = await loop.create_datagram_endpoint(
                lambda: FailingDatagram(method, kind, events), remote_addr=addr)
            client.sendto(b'to nobody')
            await asyncio.sleep(0.05)
            client.sendto(b'again')
        else:
            client, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                            remote_addr=addr)
            client.sendto(b'one')
            await asyncio.sleep(0.05)
            client.sendto(b'two')
        await asyncio.sleep(0.05)
        events.append(['closing', client.is_closing(), server.is_closing()])
        client.close()
        server.close()
        await asyncio.sleep(0.01)
    scenario.__name__ = f'datagram {method}'
    return scenario


scenarios = [stream_scenario(m, False) for m in ('connection_made', 'data_received',
                                                  'eof_received', 'connection_lost')]
scenarios += [stream_scenario(m, True) for m in ('get_buffer', 'buffer_updated')]
scenarios += [datagram_scenario(m) for m in ('datagram_received', 'error_received')]
SCENARIOS = {f'stream {m}': stream_scenario(m, False)
             for m in ('connection_made', 'data_received', 'eof_received', 'connection_lost')}
SCENARIOS.update({f'buffered {m}': stream_scenario(m, True) for m in ('get_buffer', 'buffer_updated')})
SCENARIOS.update({f'datagram {m}': datagram_scenario(m) for m in ('datagram_received', 'error_received')})
report({f'{name} {kind}': run_scenario(SCENARIOS[name], kind) for name in NAMES for kind in RAISED})
'''

ORDINARY = ['ValueError', 'MemoryError', 'RecursionError']
INTERRUPTS = ['KeyboardInterrupt', 'SystemExit']
READS = ['stream data_received', 'stream eof_received', 'buffered get_buffer', 'buffered buffer_updated']
GROUPS = [
    ('stream protocol methods raise Exception', READS + ['stream connection_made', 'stream connection_lost'],
     ORDINARY, None),
    ('connection_made/lost raise KeyboardInterrupt', ['stream connection_made', 'stream connection_lost'],
     INTERRUPTS, None),
    ('reading protocol methods raise KeyboardInterrupt', READS, INTERRUPTS, None),
    ('datagram_received raises Exception', ['datagram datagram_received'], ORDINARY, None),
    ('datagram_received raises KeyboardInterrupt', ['datagram datagram_received'], INTERRUPTS, None),
    ('error_received raises', ['datagram error_received'], ORDINARY + INTERRUPTS, None),
]


@pytest.mark.parametrize('label, names, raised, known', [
    pytest.param(*group, id=group[0], marks=[pytest.mark.xfail(strict=True, reason=group[3])]
                 if group[3] else []) for group in GROUPS])
def test_protocol_methods_that_raise(label, names, raised, known):
    check_case(label, f'NAMES = {names!r}\nRAISED = {raised!r}\n' + PROTOCOLS)
