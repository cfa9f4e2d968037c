"""Network I/O: the same programs on stock asyncio and on ferroloop, with
their results (and errors) compared. Everything runs on loopback; every wait
has a timeout."""

import asyncio
import contextvars
import errno
import gc
import os
import socket
import ssl
import struct
import sys
import tempfile
import warnings
from unittest import mock

import pytest

from conftest import assert_same_on_both, open_fd_count

TIMEOUT = 10


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


class Recorder(asyncio.Protocol):
    """Records every protocol event, in order."""

    def __init__(self, on_data=None, keep_open_on_eof=False):
        self.events = []
        self.data = bytearray()
        self.on_data = on_data
        self.keep_open_on_eof = keep_open_on_eof
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append('made')

    def data_received(self, data):
        self.data += data
        if 'data' not in self.events:
            self.events.append('data')
        if self.on_data:
            self.on_data(self, data)

    def eof_received(self):
        self.events.append('eof')
        return self.keep_open_on_eof

    def connection_lost(self, exc):
        self.events.append(('lost', type(exc).__name__ if exc else None))
        if not self.lost.done():
            self.lost.set_result(exc)


def echo(proto, data):
    proto.transport.write(data)


async def tcp_echo_exchange(payload):
    loop = asyncio.get_running_loop()
    servers = []
    server = await loop.create_server(lambda: servers.append(Recorder(echo)) or servers[-1],
                                      '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    got = asyncio.get_running_loop().create_future()

    def collect(proto, data):
        if len(proto.data) >= len(payload) and not got.done():
            got.set_result(bytes(proto.data))

    transport, client = await loop.create_connection(lambda: Recorder(collect), '127.0.0.1', port)
    transport.write(payload)
    echoed = await got
    info = (transport.get_extra_info('peername')[1] == port,
            isinstance(transport.get_extra_info('socket'), asyncio.trsock.TransportSocket),
            transport.get_write_buffer_limits(), transport.is_reading(), transport.can_write_eof())
    transport.close()
    await client.lost
    await servers[0].lost
    server.close()
    await server.wait_closed()
    return echoed == payload, info, client.events, servers[0].events


@pytest.mark.parametrize('size', [1, 1024, 300_000, 3_000_000])
def test_tcp_protocol_echo(size):
    payload = os.urandom(size)
    result = assert_same_on_both(lambda loop: run(loop, tcp_echo_exchange(payload)))
    assert result[0] is True
    assert result[1][2] == (16384, 65536)


def test_transports_are_asyncio_transports(new_loop, loop_name):
    if loop_name == 'asyncio' and sys.version_info < (3, 13):
        pytest.skip("asyncio's own datagram transport is a DatagramTransport from 3.13 on")
    loop = new_loop()

    async def main():
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        tr, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol, local_addr=('127.0.0.1', 0))
        kinds = (isinstance(tr, asyncio.Transport), isinstance(udp, asyncio.DatagramTransport))
        tr.close()
        udp.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0)
        return kinds

    assert run(loop, main()) == (True, True)


def half_close_program(keep_open):
    async def main():
        loop = asyncio.get_running_loop()
        server_proto = []

        def factory():
            proto = Recorder(keep_open_on_eof=keep_open)
            server_proto.append(proto)
            return proto

        server = await loop.create_server(factory, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(Recorder, '127.0.0.1', port)
        transport.write(b'request')
        transport.write_eof()
        while not server_proto or 'eof' not in server_proto[0].events:
            await asyncio.sleep(0.001)
        if keep_open:
            # Half-open: the server can still answer after the client's EOF.
            server_proto[0].transport.write(b'reply')
            server_proto[0].transport.close()
        await client.lost
        await server_proto[0].lost
        server.close()
        await server.wait_closed()
        return bytes(client.data), client.events, server_proto[0].events
    return main


async def connection_extra_info(host):
    """The extra info of both ends of one connection, before and after it is
    lost, as relations (ports differ between runs)."""
    loop = asyncio.get_running_loop()
    accepted = []
    server = await loop.create_server(
        lambda: accepted.append(Recorder()) or accepted[-1], host, 0)
    client_tr, client = await loop.create_connection(
        Recorder, *server.sockets[0].getsockname()[:2])
    while not accepted or not hasattr(accepted[0], 'transport'):
        await asyncio.sleep(0)
    server_tr = accepted[0].transport

    def describe(tr):
        sockname, peername = tr.get_extra_info('sockname'), tr.get_extra_info('peername')
        wrapper = tr.get_extra_info('socket')
        return (type(sockname).__name__, len(sockname), sockname[0], type(peername).__name__,
                len(peername), type(wrapper).__name__, wrapper is tr.get_extra_info('socket'),
                tr.get_extra_info('nothing', 'default'), tr.get_extra_info('nothing'))

    before = [describe(server_tr), describe(client_tr),
              server_tr.get_extra_info('peername') == client_tr.get_extra_info('sockname'),
              server_tr.get_extra_info('sockname') == client_tr.get_extra_info('peername'),
              server_tr.get_extra_info('socket').fileno() == server_tr._sock.fileno()]
    names = (server_tr.get_extra_info('sockname'), server_tr.get_extra_info('peername'))
    # The client's addresses are first asked for once its connection is over.
    client_tr.abort()
    await client.lost
    await accepted[0].lost
    after = [describe(server_tr), describe(client_tr),
             names == (server_tr.get_extra_info('sockname'), server_tr.get_extra_info('peername')),
             client_tr.get_extra_info('socket').fileno()]
    server.close()
    await server.wait_closed()
    return before, after


@pytest.mark.parametrize('host', ['127.0.0.1', '::1'])
def test_extra_info_of_connections(host):
    if host == '::1' and not socket.has_ipv6:
        pytest.skip('no IPv6')
    before, after = assert_same_on_both(lambda loop: run(loop, connection_extra_info(host)))
    assert before[2:] == [True, True, True]
    assert after[2:] == [True, -1]


def test_extra_info_of_unix_connections(tmp_path):
    path = str(tmp_path / 'sock')

    async def main():
        loop = asyncio.get_running_loop()
        accepted = []
        server = await loop.create_unix_server(
            lambda: accepted.append(Recorder()) or accepted[-1], path)
        client_tr, client = await loop.create_unix_connection(Recorder, path)
        while not accepted or not hasattr(accepted[0], 'transport'):
            await asyncio.sleep(0)
        info = [(tr.get_extra_info('sockname'), tr.get_extra_info('peername'),
                 type(tr.get_extra_info('socket')).__name__)
                for tr in (accepted[0].transport, client_tr)]
        client_tr.close()
        await accepted[0].lost
        server.close()
        await server.wait_closed()
        return info

    assert assert_same_on_both(lambda loop: run(loop, main())) == [
        (path, '', 'TransportSocket'), ('', path, 'TransportSocket')]


def test_each_accepted_connection_has_a_context_of_its_own():
    """The protocol factory of each accepted connection runs in a context of
    its own (asyncio's task for it copies the server's), which its
    callbacks then see; the server's own context is untouched."""
    var = contextvars.ContextVar('var', default='unset')

    class Tagged(Recorder):
        def __init__(self):
            super().__init__()
            self.seen = [var.get()]
            var.set(f'connection {len(made)}')
            made.append(self)

        def connection_made(self, transport):
            super().connection_made(transport)
            self.seen.append(var.get())

        def data_received(self, data):
            self.seen.append(var.get())
            self.transport.close()

    made = []

    async def main():
        made.clear()
        loop = asyncio.get_running_loop()
        var.set('server')
        server = await loop.create_server(Tagged, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        for _ in range(2):
            tr, client = await loop.create_connection(Recorder, '127.0.0.1', port)
            tr.write(b'x')
            await client.lost
            await made[-1].lost
        server.close()
        await server.wait_closed()
        return [m.seen for m in made], var.get()

    assert assert_same_on_both(lambda loop: run(loop, main())) == (
        [['server', 'connection 0', 'connection 0'],
         ['server', 'connection 1', 'connection 1']], 'server')


@pytest.mark.parametrize('debug', [False, True])
def test_a_failing_protocol_factory_is_reported_in_debug_mode_only(debug):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(debug)
        reported = []
        loop.set_exception_handler(lambda loop, context: reported.append(
            (context['message'], type(context['exception']).__name__)))
        calls = []
        served = loop.create_future()

        def factory():
            calls.append(None)
            if len(calls) == 1:
                raise ValueError('no protocol')
            protocol = Recorder(on_data=echo)
            served.set_result(protocol)
            return protocol

        server = await loop.create_server(factory, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        first, _ = await loop.create_connection(Recorder, '127.0.0.1', port)
        got = loop.create_future()
        second, client = await loop.create_connection(
            lambda: Recorder(on_data=lambda proto, data: got.done() or got.set_result(data)),
            '127.0.0.1', port)
        second.write(b'ping')
        echoed = await got
        first.close()
        second.close()
        await client.lost
        await (await served).lost
        server.close()
        await server.wait_closed()
        gc.collect()
        return echoed, reported

    with warnings.catch_warnings():
        # The refused connection's socket is left to the collector, as in asyncio.
        warnings.simplefilter('ignore', ResourceWarning)
        echoed, reported = assert_same_on_both(lambda loop: run(loop, main()))
    assert echoed == b'ping'
    assert reported == ([('Error on transport creation for incoming connection', 'ValueError')]
                        if debug else [])


def test_a_transports_write_can_be_replaced(loop):
    """Test suites patch transport.write on a live transport."""
    async def main():
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        tr, _ = await loop.create_connection(
            asyncio.Protocol, '127.0.0.1', server.sockets[0].getsockname()[1])
        written = []
        with mock.patch.object(tr, 'write', written.append):
            tr.write(b'one')
            tr.writelines([b'two'])
        tr.write(b'three')
        tr.close()
        server.close()
        await server.wait_closed()
        return written

    result = run(loop, main())
    assert result[0] == b'one'


@pytest.mark.parametrize('keep_open', [False, True])
def test_eof_received_semantics(keep_open):
    result = assert_same_on_both(lambda loop: run(loop, half_close_program(keep_open)()))
    assert result[0] == (b'reply' if keep_open else b'')


def test_refused_connection():
    def program(loop):
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        port = sock.getsockname()[1]
        sock.close()
        try:
            run(loop, loop.create_connection(asyncio.Protocol, '127.0.0.1', port))
        except OSError as exc:
            return type(exc).__name__, exc.errno
    assert assert_same_on_both(program) == ('ConnectionRefusedError', errno.ECONNREFUSED)


def test_reset_by_peer_reports_connection_reset():
    async def main():
        loop = asyncio.get_running_loop()
        listener = socket.create_server(('127.0.0.1', 0))
        listener.setblocking(False)
        port = listener.getsockname()[1]
        transport, client = await loop.create_connection(Recorder, '127.0.0.1', port)
        conn, _ = await loop.sock_accept(listener)
        # Close with linger 0: the peer sends RST instead of FIN.
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        conn.close()
        listener.close()
        transport.write(b'x' * 100)
        exc = await client.lost
        return type(exc).__name__, client.events[-1]

    result = assert_same_on_both(lambda loop: run(loop, main()))
    assert result[0] == 'ConnectionResetError'


def test_write_after_close_and_abort(loop, caplog):
    async def main():
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, client = await loop.create_connection(Recorder, '127.0.0.1', port)
        transport.abort()
        assert transport.is_closing()
        for _ in range(8):
            transport.write(b'after abort')
        exc = await client.lost
        server.close()
        await server.wait_closed()
        return exc, client.events

    with caplog.at_level('WARNING', logger='asyncio'):
        exc, events = run(loop, main())
    assert exc is None and events == ['made', ('lost', None)]
    assert sum('socket.send() raised exception' in r.getMessage() for r in caplog.records) == 4


def test_wrong_argument_types_raise_like_asyncio():
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        errors = []
        for bad in ('text', 42, None):
            try:
                transport.write(bad)
            except TypeError as exc:
                errors.append(str(exc))
        for call in (lambda: transport.set_write_buffer_limits(high=1, low=2),
                     lambda: transport.set_write_buffer_limits(high=-1)):
            try:
                call()
            except ValueError as exc:
                errors.append(str(exc))
        transport.close()
        server.close()
        await server.wait_closed()
        for coro in (loop.create_connection(asyncio.Protocol, '127.0.0.1', port, sock=socket.socket()),
                     loop.create_connection(asyncio.Protocol),
                     loop.create_server(asyncio.Protocol, ssl=True)):
            try:
                await coro
            except (ValueError, TypeError) as exc:
                errors.append((type(exc).__name__, str(exc)))
        return errors

    errors = assert_same_on_both(lambda loop: run(loop, main()))
    assert "data argument must be a bytes-like object, not 'str'" in errors


def test_bad_addresses():
    def program(loop):
        outcomes = []
        for host, port in (('127.0.0.1', 'no-such-service'), ('256.1.1.1', 80)):
            try:
                run(loop, loop.create_connection(asyncio.Protocol, host, port))
            except OSError as exc:
                outcomes.append(type(exc).__name__)
        return outcomes
    assert assert_same_on_both(program)[0] == 'gaierror'


def test_streams_echo_and_unix_sockets():
    async def main(unix_path):
        async def handle(reader, writer):
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        results = []
        for kind in ('tcp', 'unix'):
            if kind == 'tcp':
                server = await asyncio.start_server(handle, '127.0.0.1', 0)
                port = server.sockets[0].getsockname()[1]
                reader, writer = await asyncio.open_connection('127.0.0.1', port)
            else:
                server = await asyncio.start_unix_server(handle, unix_path)
                reader, writer = await asyncio.open_unix_connection(unix_path)
            for word in (b'alpha\n', b'beta\n' * 5000):
                writer.write(word)
                await writer.drain()
                results.append(await reader.readexactly(len(word)) == word.upper())
            writer.write_eof()
            results.append(await reader.read())
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
        return results

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'sock')
        result = assert_same_on_both(lambda loop: run(loop, main(path)))
    assert result == [True, True, b'', True, True, b'']


def test_datagram_echo_and_errors():
    async def main():
        loop = asyncio.get_running_loop()

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                self.transport.sendto(data.upper(), addr)

        class Client(asyncio.DatagramProtocol):
            def __init__(self):
                self.replies = asyncio.Queue()
                self.errors = []

            def datagram_received(self, data, addr):
                self.replies.put_nowait(data)

            def error_received(self, exc):
                self.errors.append(type(exc).__name__)
                self.replies.put_nowait(None)

        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=('127.0.0.1', 0))
        addr = server.get_extra_info('sockname')
        client_tr, client = await loop.create_datagram_endpoint(Client, remote_addr=addr)
        replies = []
        for msg in (b'one', b'two', b'x' * 60000):
            client_tr.sendto(msg)
            replies.append(await client.replies.get())
        try:
            client_tr.sendto(b'x', ('127.0.0.1', 1))
        except ValueError as exc:
            replies.append(str(exc).split(' or ')[0])
        server.close()
        await asyncio.sleep(0.01)
        # The server is gone: the kernel answers with ICMP port unreachable.
        client_tr.sendto(b'anyone?')
        replies.append(await client.replies.get())
        client_tr.close()
        await asyncio.sleep(0)
        return replies, client.errors

    replies, errors = assert_same_on_both(lambda loop: run(loop, main()))
    assert replies[:3] == [b'ONE', b'TWO', b'X' * 60000]
    assert errors == ['ConnectionRefusedError']


def test_datagram_peers_beyond_those_remembered():
    """More peers than a transport keeps the address tuples of, in turns:
    each datagram names its sender, and each reply to that address reaches
    it (IPv4 and IPv6, whose addresses are 4-tuples)."""
    async def main(host):
        loop = asyncio.get_running_loop()
        seen = []

        class Echo(asyncio.DatagramProtocol):
            def connection_made(self, transport):
                self.transport = transport

            def datagram_received(self, data, addr):
                seen.append((data, addr))
                self.transport.sendto(data.upper(), addr)

        class Peer(asyncio.DatagramProtocol):
            def __init__(self):
                self.replies = asyncio.Queue()

            def datagram_received(self, data, addr):
                self.replies.put_nowait(data)

        server, _ = await loop.create_datagram_endpoint(Echo, local_addr=(host, 0))
        address = server.get_extra_info('sockname')
        peers = [await loop.create_datagram_endpoint(Peer, local_addr=(host, 0))
                 for _ in range(20)]
        replies_right = []
        names_right = []
        for turn in range(3):
            for number, (transport, peer) in enumerate(peers):
                message = f'{turn}-{number}'.encode()
                transport.sendto(message, address)
                reply = await asyncio.wait_for(peer.replies.get(), 5)
                replies_right.append(reply == message.upper())
                data, addr = seen[-1]
                names_right.append(data == message
                                   and addr == transport.get_extra_info('sockname')
                                   and type(addr) is tuple)
        for transport, _ in peers:
            transport.close()
        server.close()
        await asyncio.sleep(0)
        return all(replies_right), all(names_right), len(seen), len(address)

    assert assert_same_on_both(lambda loop: run(loop, main('127.0.0.1'))) == (True, True, 60, 2)
    if socket.has_ipv6:
        assert assert_same_on_both(lambda loop: run(loop, main('::1'))) == (True, True, 60, 4)


def test_shared_transport_state_on_every_kind():
    """What every asyncio transport has, read as libraries read it (aiohttp
    reads ``_protocol_paused``, asyncio's sslproto ``_conn_lost``), on a
    TCP and a UDP transport, open, closing and lost."""
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0)
        tcp, _ = await loop.create_connection(asyncio.Protocol, *server.sockets[0].getsockname())
        udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                     local_addr=('127.0.0.1', 0))
        states = []

        def state(transport):
            return (transport.is_closing(), transport._protocol_paused, transport._conn_lost,
                    transport.get_write_buffer_size())

        for transport in (tcp, udp):
            before = state(transport)
            transport.close()
            closing = state(transport)
            await asyncio.sleep(0)
            states.append((before, closing, state(transport)))
        udp.abort()
        server.close()
        await server.wait_closed()
        return states

    states = assert_same_on_both(lambda loop: run(loop, main()))
    assert states[1][0] == (False, False, 0, 0)


def test_sock_methods():
    async def main():
        loop = asyncio.get_running_loop()
        listener = socket.create_server(('127.0.0.1', 0))
        listener.setblocking(False)
        client = socket.socket()
        client.setblocking(False)
        accept = asyncio.ensure_future(loop.sock_accept(listener))
        await loop.sock_connect(client, listener.getsockname())
        conn, _ = await accept
        big = os.urandom(2_000_000)
        send = asyncio.ensure_future(loop.sock_sendall(client, big))
        received = bytearray()
        while len(received) < len(big):
            received += await loop.sock_recv(conn, 65536)
        await send
        buf = bytearray(10)
        await loop.sock_sendall(conn, b'0123456789')
        n = await loop.sock_recv_into(client, buf)
        for sock in (listener, client, conn):
            sock.close()
        udp_a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp_b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for s in (udp_a, udp_b):
            s.setblocking(False)
            s.bind(('127.0.0.1', 0))
        await loop.sock_sendto(udp_a, b'datagram', udp_b.getsockname())
        data, addr = await loop.sock_recvfrom(udp_b, 100)
        udp_a.close()
        udp_b.close()
        blocking = socket.socket()
        loop.set_debug(True)  # stock asyncio checks blocking sockets in debug mode only
        try:
            await loop.sock_recv(blocking, 1)
        except ValueError as exc:
            error = str(exc)
        blocking.close()
        return bytes(received) == big, n, bytes(buf), data, error

    result = assert_same_on_both(lambda loop: run(loop, main()))
    assert result == (True, 10, b'0123456789', b'datagram', 'the socket must be non-blocking')


def test_sock_methods_check_what_they_are_given():
    """Socket subclasses are served as sockets; an SSLSocket and a blocking
    socket are refused (stock asyncio: the latter in debug mode only); other
    objects go through their own methods."""
    class Subclass(socket.socket):
        pass

    class NotASocket:
        def __init__(self, sock):
            self.sock = sock

        def gettimeout(self):
            return 0.0

        def recv(self, n):
            return self.sock.recv(n)

        def fileno(self):
            return self.sock.fileno()

    async def outcome(awaitable):
        try:
            return ('ok', await awaitable)
        except Exception as exc:  # noqa: BLE001  (compared)
            return ('raised', type(exc).__name__, str(exc))

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        a, b = socket.socketpair()
        sub = Subclass(fileno=a.detach())
        for s in (sub, b):
            s.setblocking(False)
        results = [await outcome(loop.sock_sendall(sub, b'ping')),
                   await outcome(loop.sock_recv(b, 10)),
                   await outcome(loop.sock_sendall(b, b'pong')),
                   await outcome(loop.sock_recv(NotASocket(sub), 10))]
        blocking = socket.socket()
        results.append(await outcome(loop.sock_recv(blocking, 1)))
        results.append(await outcome(loop.sock_sendall(blocking, b'x')))
        results.append(await outcome(loop.sock_recv_into(blocking, bytearray(1))))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        wrapped = context.wrap_socket(blocking, do_handshake_on_connect=False)
        wrapped.setblocking(False)
        results.append(await outcome(loop.sock_recv(wrapped, 1)))
        for s in (sub, b, wrapped):
            s.close()
        return results

    assert assert_same_on_both(lambda loop: run(loop, main())) == [
        ('ok', None), ('ok', b'ping'), ('ok', None), ('ok', b'pong'),
        ('raised', 'ValueError', 'the socket must be non-blocking'),
        ('raised', 'ValueError', 'the socket must be non-blocking'),
        ('raised', 'ValueError', 'the socket must be non-blocking'),
        ('raised', 'TypeError', 'Socket cannot be of type SSLSocket')]


def test_sendfile():
    async def main(path, size):
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        received = bytearray()

        class Sink(asyncio.Protocol):
            def data_received(self, data):
                received.extend(data)
                if len(received) == size:
                    done.set_result(None)

        server = await loop.create_server(Sink, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        with open(path, 'rb') as f:
            sent = await loop.sendfile(transport, f)
            position = f.tell()
        await done
        transport.close()
        server.close()
        await server.wait_closed()
        return sent, position, hashlib_sha(received)

    def hashlib_sha(data):
        import hashlib
        return hashlib.sha256(data).hexdigest()

    with tempfile.NamedTemporaryFile() as f:
        f.write(os.urandom(1_500_000))
        f.flush()
        result = assert_same_on_both(lambda loop: run(loop, main(f.name, 1_500_000)))
    assert result[:2] == (1_500_000, 1_500_000)


def tls_contexts():
    from test.test_asyncio import utils as test_utils
    return test_utils.simple_server_sslcontext(), test_utils.simple_client_sslcontext()


def test_tls_echo_and_certificate_errors():
    async def main():
        server_ctx, client_ctx = tls_contexts()

        async def handle(reader, writer):
            writer.write((await reader.readline()).upper())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port, ssl=client_ctx)
        info = [writer.get_extra_info(k) is not None for k in ('ssl_object', 'sslcontext', 'cipher', 'peercert')]
        writer.write(b'secret\n')
        reply = await reader.readline()
        writer.close()
        try:
            await writer.wait_closed()
        except (ssl.SSLError, ConnectionError):
            pass
        verifying = ssl.create_default_context()
        try:
            await asyncio.open_connection('127.0.0.1', port, ssl=verifying, server_hostname='localhost')
        except ssl.SSLCertVerificationError as exc:
            verify = exc.reason
        server.close()
        await server.wait_closed()
        return reply, info, verify

    result = assert_same_on_both(lambda loop: run(loop, main()))
    assert result[0] == b'SECRET\n' and result[2] == 'CERTIFICATE_VERIFY_FAILED'


def test_start_tls_upgrade():
    async def main():
        server_ctx, client_ctx = tls_contexts()

        async def handle(reader, writer):
            assert await reader.readline() == b'STARTTLS\n'
            writer.write(b'GO\n')
            await writer.drain()
            await writer.start_tls(server_ctx)
            writer.write(await reader.readline())
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(b'STARTTLS\n')
        assert await reader.readline() == b'GO\n'
        await writer.start_tls(client_ctx, server_hostname='localhost')
        writer.write(b'over tls\n')
        reply = await reader.readline()
        writer.close()
        server.close()
        await server.wait_closed()
        return reply

    assert assert_same_on_both(lambda loop: run(loop, main())) == b'over tls\n'


def test_getaddrinfo_and_getnameinfo(loop):
    async def main():
        numeric = await loop.getaddrinfo('127.0.0.1', 80, type=socket.SOCK_STREAM)
        local = await loop.getaddrinfo('localhost', 'http', type=socket.SOCK_STREAM)
        name = await loop.getnameinfo(('127.0.0.1', 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        try:
            await loop.getaddrinfo('no-such-host.invalid', 80)
        except socket.gaierror:
            failed = True
        return numeric, bool(local), name, failed

    numeric, local, name, failed = run(loop, main())
    assert numeric == socket.getaddrinfo('127.0.0.1', 80, type=socket.SOCK_STREAM)
    assert local and failed and name == ('127.0.0.1', '80')


def test_many_connections_leave_no_descriptors(new_loop, loop_name):
    loop = new_loop()

    async def main():
        async def handle(reader, writer):
            writer.write(await reader.read(5))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(handle, '127.0.0.1', 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]

        async def client():
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(b'hello')
            data = await reader.read()
            writer.close()
            await writer.wait_closed()
            return data

        concurrent = await asyncio.gather(*[client() for _ in range(1000)])
        for _ in range(2000):
            tr, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
            tr.close()
        server.close()
        await server.wait_closed()
        await asyncio.sleep(0.05)
        return set(concurrent)

    gc.collect()
    fds = open_fd_count()
    assert loop.run_until_complete(asyncio.wait_for(main(), 120)) == {b'hello'}
    gc.collect()
    assert open_fd_count() <= fds + 2  # the loop's own epoll and waker


EMFILE_PROGRAM = r'''
import asyncio, resource, socket, sys, time
import ferroloop

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))

async def main():
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda lp, ctx: errors.append(ctx['message']))
    accepted = []
    server = await loop.create_server(lambda: accepted.append(1) or asyncio.Protocol(), '127.0.0.1', 0, backlog=200)
    port = server.sockets[0].getsockname()[1]
    clients = []
    # Clients come from a child process that has descriptors to spare.
    import subprocess
    child = subprocess.Popen([sys.executable, '-c', f"""
import socket, time
socks = [socket.create_connection(('127.0.0.1', {port})) for _ in range(150)]
time.sleep(2)
"""])
    started = time.process_time()
    await asyncio.sleep(1.0)
    busy = time.process_time() - started
    child.wait(timeout=20)
    await asyncio.sleep(0.5)
    server.close()
    print('out of resources reported:', any('out of system resource' in e for e in errors))
    print('spun:', busy > 0.5)
    print('accepted some:', 0 < len(accepted) < 150)

errors = []
asyncio.run(main())
'''


def test_emfile_while_accepting_neither_spins_nor_crashes(tmp_path):
    from conftest import run_program_on_both
    runs = run_program_on_both(EMFILE_PROGRAM, timeout=60)
    assert runs['ferroloop'].returncode == 0, runs['ferroloop'].stderr
    assert runs['ferroloop'].stdout == runs['asyncio'].stdout
    assert 'spun: False' in runs['ferroloop'].stdout


def test_a_hundred_thousand_connections_leave_nothing_behind():
    """100,000 sequential connect/close cycles against one server: no
    descriptors left, memory flat."""
    import resource
    loop = __import__('ferroloop').new_event_loop()

    async def main(cycles):
        server = await loop.create_server(asyncio.Protocol, '127.0.0.1', 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        for _ in range(cycles):
            transport, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
            transport.close()
        await asyncio.sleep(0.05)
        server.close()
        await server.wait_closed()

    def rss_kib():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    try:
        loop.run_until_complete(asyncio.wait_for(main(2_000), 60))
        gc.collect()
        fds, rss = open_fd_count(), rss_kib()
        loop.run_until_complete(asyncio.wait_for(main(100_000), 600))
        gc.collect()
        assert open_fd_count() == fds
        assert rss_kib() - rss < 16 * 1024
    finally:
        loop.close()


GARBAGE_PROGRAM = r'''
import asyncio, itertools, socket
import ferroloop

loop = ferroloop.new_event_loop()
garbage = [None, -1, 2**70, float('nan'), float('inf'), '', 'x' * 10000, b'\x00', object(),
           (), [], {}, lambda *a, **k: None, socket.socket(), 1.5, True]
sync_methods = ['call_soon', 'call_later', 'call_at', 'call_soon_threadsafe', 'add_reader',
                'add_writer', 'remove_reader', 'remove_writer', 'set_exception_handler',
                'set_task_factory', 'set_default_executor', 'set_debug', '_add_callback',
                'run_in_executor', 'create_task']
async_methods = ['sock_recv', 'sock_recv_into', 'sock_sendall', 'sock_connect', 'sock_accept',
                 'sock_sendto', 'sock_recvfrom', 'getaddrinfo', 'getnameinfo',
                 'create_connection', 'create_server', 'create_datagram_endpoint',
                 'create_unix_connection', 'create_unix_server', 'connect_accepted_socket',
                 'sendfile', 'sock_sendfile', 'start_tls']
calls = 0
for name in sync_methods + async_methods:
    method = getattr(loop, name)
    for args in itertools.chain(((g,) for g in garbage), itertools.product(garbage[:8], repeat=2)):
        calls += 1
        result = None
        try:
            result = method(*args)
            if asyncio.iscoroutine(result):
                loop.run_until_complete(asyncio.wait_for(result, 2))
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException:
            pass  # Any Python exception is fine: only a crash is not.
        if hasattr(result, 'cancel'):
            result.cancel()
loop.set_exception_handler(None)
loop.set_task_factory(None)
loop.set_debug(False)
loop.call_soon(loop.stop)
loop.run_forever()
loop.close()
print('survived', calls)
'''


def test_garbage_arguments_raise_instead_of_crashing(tmp_path):
    program = tmp_path / 'garbage.py'
    program.write_text(GARBAGE_PROGRAM)
    import subprocess
    proc = subprocess.run([sys.executable, str(program)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.startswith('survived')
