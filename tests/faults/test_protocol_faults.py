"""Protocols that hand the loop bad buffers, and transports over sockets of
the less travelled kinds (AF_UNIX datagrams), where a loop can hang."""

from .harness import check_case

BAD_BUFFERS = '''
import asyncio, socket
from case_helpers import collect_handler_calls, describe, report


def bad_buffer(kind):
    if kind == 'read-only':
        return memoryview(b'x' * 100)
    if kind == 'non-contiguous':
        return memoryview(bytearray(200))[::2]
    if kind == 'empty':
        return bytearray()
    if kind == 'released':
        view = memoryview(bytearray(100))
        view.release()
        return view
    if kind == 'not a buffer':
        return 'str'
    return memoryview(bytearray(24)).cast('B', [4, 6])   # multi-dimensional


class Handing(asyncio.BufferedProtocol):
    def __init__(self, kind, events):
        self.kind, self.events = kind, events
        self.lost = asyncio.get_running_loop().create_future()

    def get_buffer(self, sizehint):
        return bad_buffer(self.kind)

    def buffer_updated(self, nbytes):
        self.events.append(['updated', nbytes])

    def connection_lost(self, exc):
        self.events.append(['lost', describe(exc)])
        self.lost.set_result(None)


async def main():
    loop = asyncio.get_running_loop()
    handler_calls = collect_handler_calls(loop)
    got = {}
    for kind in ('read-only', 'non-contiguous', 'empty', 'released', 'not a buffer',
                 'multi-dimensional'):
        events = []
        a, b = socket.socketpair()
        transport, proto = await loop.create_connection(lambda: Handing(kind, events), sock=a)
        b.send(b'data')
        try:
            await asyncio.wait_for(asyncio.shield(proto.lost), 2)
        except asyncio.TimeoutError:
            events.append('still open')
            transport.close()
            await proto.lost
        b.close()
        got[kind] = events
    got['handler'] = handler_calls
    return got

report(asyncio.run(asyncio.wait_for(main(), 30)))
'''


def test_get_buffer_returns_bad_buffers():
    check_case('get_buffer() returns bad buffers', BAD_BUFFERS)


UNIX_DATAGRAMS = '''
import asyncio, os, socket, tempfile
from case_helpers import report


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data.upper(), addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.got = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        if not self.got.done():
            self.got.set_result(data)


async def exchange(server_sock, client_sock, addr):
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(Echo, sock=server_sock)
    client, proto = await loop.create_datagram_endpoint(Client, sock=client_sock)
    client.sendto(b'ping', addr)
    try:
        got = await asyncio.wait_for(proto.got, 5)
    except asyncio.TimeoutError:
        got = 'no answer'
    client.close()
    server.close()
    return got


async def main():
    loop = asyncio.get_running_loop()
    results = {}
    # One end of a socketpair: what the other end sends arrives.
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    transport, proto = await loop.create_datagram_endpoint(Client, sock=a)
    b.send(b'over the pair')
    try:
        results['socketpair'] = await asyncio.wait_for(proto.got, 5)
    except asyncio.TimeoutError:
        results['socketpair'] = 'nothing arrived'
    transport.close()
    b.close()
    with tempfile.TemporaryDirectory() as tmp:
        server_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        server_sock.bind(os.path.join(tmp, 'server'))
        client_sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        client_sock.bind(os.path.join(tmp, 'client'))
        results['bound paths'] = await exchange(server_sock, client_sock,
                                                os.path.join(tmp, 'server'))
    c, d = socket.socketpair()
    c.setblocking(False)
    results['sock_recv(sock, 0)'] = await asyncio.wait_for(loop.sock_recv(c, 0), 5)
    results['sock_recv_into(sock, empty)'] = await asyncio.wait_for(
        loop.sock_recv_into(c, bytearray()), 5)
    c.close()
    d.close()
    return results

report(asyncio.run(asyncio.wait_for(main(), 30)))
'''


def test_unix_datagrams_and_empty_receives():
    check_case('AF_UNIX datagrams, empty receives', UNIX_DATAGRAMS)
