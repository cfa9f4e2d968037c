"""A peer that resets the connection while we read or write, and running out
of descriptors while accepting and while connecting (RLIMIT_NOFILE lowered in
the child)."""

from .harness import check_case

RESET_DURING_READ = '''
import asyncio
from case_helpers import Recorder, collect_handler_calls, describe, report, reset

PAYLOAD = 200_000


async def handle(reader, writer):
    writer.write(b'x' * PAYLOAD)
    await writer.drain()
    await reader.readexactly(2)     # the client has read everything
    reset(writer.transport)


class Client(Recorder):
    got = 0

    def data_received(self, data):
        self.got += len(data)
        if self.got == PAYLOAD:
            self.transport.write(b'ok')


async def main():
    loop = asyncio.get_running_loop()
    handler_calls = collect_handler_calls(loop)
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    addr = server.sockets[0].getsockname()
    _, proto = await loop.create_connection(Client, *addr)
    await proto.lost
    # The same through streams: the reset surfaces from read().
    reader, writer = await asyncio.open_connection(*addr)
    await reader.readexactly(PAYLOAD)
    writer.write(b'ok')
    try:
        streams = ['read', await reader.read()]
    except Exception as exc:
        streams = ['read raised', describe(exc)]
    writer.close()
    try:
        await writer.wait_closed()
    except Exception as exc:
        streams.append(['wait_closed raised', type(exc).__name__])
    server.close()
    await server.wait_closed()
    return proto.got, proto.events, streams, handler_calls

report(asyncio.run(asyncio.wait_for(main(), 30)))
'''


def test_peer_reset_during_read():
    check_case('peer reset during read', RESET_DURING_READ)


RESET_DURING_WRITE = '''
import asyncio
from case_helpers import Recorder, collect_handler_calls, describe, report, reset


def kind(exc):
    # Which of the two the kernel reports first depends on timing, on both loops.
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return 'reset or broken pipe'
    return describe(exc)


async def handle(reader, writer):
    await reader.readexactly(100_000)   # the client is in the middle of its write
    reset(writer.transport)


class Client(Recorder):
    def connection_made(self, transport):
        transport.write(b'y' * 20_000_000)
        self.events.append(['buffered', transport.get_write_buffer_size() > 0])

    def pause_writing(self):
        self.events.append('pause')

    def resume_writing(self):
        self.events.append('resume')

    def describe_loss(self, exc):
        return kind(exc)


async def main():
    loop = asyncio.get_running_loop()
    handler_calls = collect_handler_calls(loop)
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    addr = server.sockets[0].getsockname()
    transport, proto = await loop.create_connection(Client, *addr)
    await proto.lost
    after = [transport.is_closing(), transport.get_write_buffer_size()]
    transport.write(b'more')            # after the loss: counted, never sent
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(b'z' * 20_000_000)
    try:
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)
        streams = 'no error'
    except Exception as exc:
        streams = ['drain or read raised', kind(exc)]
    writer.close()
    try:
        await writer.wait_closed()
    except Exception as exc:
        pass
    server.close()
    await server.wait_closed()
    return proto.events, after, streams, handler_calls

report(asyncio.run(asyncio.wait_for(main(), 30)))
'''


def test_peer_reset_during_large_write():
    check_case('peer reset during large write', RESET_DURING_WRITE)


EMFILE_ON_ACCEPT = '''
import asyncio, resource, subprocess, sys
from case_helpers import fd_count, report

CLIENTS = 150


async def main():
    loop = asyncio.get_running_loop()
    messages = set()
    loop.set_exception_handler(lambda lp, ctx: messages.add(ctx['message']))
    accepted = []
    server = await loop.create_server(lambda: accepted.append(1) or asyncio.Protocol(),
                                      '127.0.0.1', 0, backlog=CLIENTS)
    port = server.sockets[0].getsockname()[1]
    start_fds = fd_count()
    # The clients live in a child, started before the limit is lowered; they
    # hold their connections until stdin closes.
    child = await asyncio.create_subprocess_exec(sys.executable, '-c', f"""
import socket, sys
sys.stdin.readline()
socks = [socket.create_connection(('127.0.0.1', {port})) for _ in range({CLIENTS})]
print('connected', flush=True)
sys.stdin.read()
""", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fd_count() + 40, hard))
    child.stdin.write(b'go\\n')
    assert await child.stdout.readline() == b'connected\\n'
    while len(accepted) < 30:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    ran_out = len(accepted) < CLIENTS
    child.stdin.close()
    await child.wait()
    # Once the clients are gone the server frees their descriptors and
    # accepts again (asyncio retries a second after EMFILE).
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    reader, writer = await asyncio.wait_for(asyncio.open_connection('127.0.0.1', port), 10)
    while len(accepted) < CLIENTS + 1:
        await asyncio.sleep(0.01)
    writer.close()
    await writer.wait_closed()
    await asyncio.sleep(0.1)
    descriptors_back = fd_count() == start_fds
    server.close()
    await server.wait_closed()
    return {'ran out': ran_out, 'accepted': len(accepted), 'reported': sorted(messages),
            'descriptors back': descriptors_back}

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_emfile_on_accept():
    check_case('EMFILE on accept', EMFILE_ON_ACCEPT)


EMFILE_ON_CONNECT = '''
import asyncio, resource, subprocess, sys
from case_helpers import describe, fd_count, report


async def main():
    loop = asyncio.get_running_loop()
    start_fds = fd_count()
    # The server lives in a child, so only the client side spends our descriptors.
    child = await asyncio.create_subprocess_exec(sys.executable, '-c', """
import socket, sys, threading
server = socket.create_server(('127.0.0.1', 0), backlog=200)
print(server.getsockname()[1], flush=True)
held = []
threading.Thread(target=lambda: [held.append(server.accept()) for _ in iter(int, 1)], daemon=True).start()
sys.stdin.read()
""", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    port = int(await child.stdout.readline())
    fds = fd_count()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (fds + 20, hard))
    transports, errors = [], []
    for _ in range(40):
        for connect in (lambda: loop.create_connection(asyncio.Protocol, '127.0.0.1', port),
                        lambda: asyncio.open_connection('127.0.0.1', port)):
            try:
                made = await connect()
                transports.append(made[1].transport if isinstance(made[0], asyncio.StreamReader)
                                  else made[0])
            except OSError as exc:
                errors.append(describe(exc) + [exc.errno])
    for transport in transports:
        transport.close()
    await asyncio.sleep(0.1)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    transport, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
    transport.close()
    await asyncio.sleep(0.1)
    child.stdin.close()
    await child.wait()
    return {'connected': len(transports), 'errors': errors[:3], 'error count': len(errors),
            'descriptors back': fd_count() == start_fds}

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_emfile_on_connect():
    check_case('EMFILE on connect', EMFILE_ON_CONNECT)
