"""The server half of a net benchmark: an echo (or tiny HTTP) server on the
event loop under test, in a process of its own so that its CPU time can be
measured apart from the client's.

    python bench/net_server.py LOOP KIND ADDRESS

KIND is one of SERVERS below; ADDRESS is tcp:HOST:PORT, udp:HOST:PORT or
unix:PATH (port 0 picks a free port). It speaks to the harness like the C
baseline server (bench/baseline/echo_epoll.c): prints "ready ADDRESS" once it
listens, serves until its stdin reaches end of file, then prints
{"cpu": SECONDS}, the CPU time of the whole process in between. If the loop
cannot serve (say it raises NotImplementedError) it prints
{"error": "Type: message"} instead and exits.
"""

import asyncio
import functools
import json
import socket
import sys
import threading
import time

from loops import describe, new_event_loop, stop_on_first_error

READ_SIZE = 256 * 1024
DATAGRAM_RECEIVE_BUFFER = 1024 * 1024   # also in baseline/echo_epoll.c
HTTP_BODY = b'Hello'


def parse_address(text):
    """('tcp' | 'udp', (host, port)) or ('unix', path)."""
    kind, _, rest = text.partition(':')
    if kind == 'unix':
        return kind, rest
    host, _, port = rest.rpartition(':')
    return kind, (host, int(port))


def format_address(kind, sockname):
    if kind == 'unix':
        return f'unix:{sockname}'
    host, port = sockname[:2]
    return f'{kind}:{host}:{port}'


def ends_connection(handler):
    """Lets a client that goes away end a connection handler quietly, and
    hands any other exception to the loop's exception handler, which stops the
    run: a failure in a task nobody awaits would otherwise go unnoticed."""
    @functools.wraps(handler)
    async def run(*args):
        try:
            await handler(*args)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # noqa: BLE001  (reported to the loop)
            asyncio.get_running_loop().call_exception_handler(
                {'message': f'{handler.__name__} failed', 'exception': exc})
    return run


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


class DatagramEchoProtocol(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class HttpProtocol(asyncio.Protocol):
    """A small HTTP/1.1 server: reads the request line and headers up to the
    blank line, answers 'Hello' with a Content-Length, and keeps the
    connection open unless the client asks to close it."""

    def connection_made(self, transport):
        self.transport = transport
        self.pending = bytearray()

    def data_received(self, data):
        self.pending += data
        while (end := self.pending.find(b'\r\n\r\n')) >= 0:
            head = self.pending[:end].decode('latin-1')
            del self.pending[:end + 4]
            keep_alive = self.respond(head)
            if not keep_alive:
                self.transport.close()
                return

    def respond(self, head):
        """Answers one request; returns whether to keep the connection."""
        request_line, *header_lines = head.split('\r\n')
        _method, _target, version = request_line.split(' ')
        headers = {}
        for line in header_lines:
            name, _, value = line.partition(':')
            headers[name.strip().lower()] = value.strip().lower()
        connection = headers.get('connection', '')
        keep_alive = (connection != 'close' if version == 'HTTP/1.1'
                      else connection == 'keep-alive')
        self.transport.write(
            b'HTTP/1.1 200 OK\r\n'
            b'Content-Type: text/plain\r\n'
            b'Content-Length: %d\r\n'
            b'Connection: %s\r\n'
            b'\r\n%s' % (len(HTTP_BODY), b'keep-alive' if keep_alive else b'close',
                         HTTP_BODY))
        return keep_alive


async def listen_with_protocol(loop, address, protocol_factory):
    kind, where = parse_address(address)
    if kind == 'unix':
        server = await loop.create_unix_server(protocol_factory, where)
    else:
        server = await loop.create_server(protocol_factory, *where)
    return server, server.sockets[0].getsockname()


async def serve_protocol(loop, address):
    """Protocol echo: data_received() writes the data back."""
    return await listen_with_protocol(loop, address, EchoProtocol)


async def serve_http(loop, address):
    return await listen_with_protocol(loop, address, HttpProtocol)


@ends_connection
async def echo_stream(reader, writer):
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


async def serve_streams(loop, address):
    """Streams echo: asyncio.start_server() with StreamReader/StreamWriter."""
    kind, where = parse_address(address)
    if kind == 'unix':
        server = await asyncio.start_unix_server(echo_stream, where)
    else:
        server = await asyncio.start_server(echo_stream, *where)
    return server, server.sockets[0].getsockname()


@ends_connection
async def echo_socket(loop, connection):
    with connection:
        while data := await loop.sock_recv(connection, READ_SIZE):
            await loop.sock_sendall(connection, data)


@ends_connection
async def accept_sockets(loop, listener):
    handlers = set()   # the loop keeps only weak references to tasks
    while True:
        connection, _ = await loop.sock_accept(listener)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        handler = loop.create_task(echo_socket(loop, connection))
        handlers.add(handler)
        handler.add_done_callback(handlers.discard)


async def serve_sock(loop, address):
    """Echo with the loop's socket methods: sock_accept, sock_recv and
    sock_sendall on plain non-blocking sockets (TCP only)."""
    _, where = parse_address(address)
    listener = socket.create_server(where)
    listener.setblocking(False)
    acceptor = loop.create_task(accept_sockets(loop, listener))
    return (listener, acceptor), listener.getsockname()


async def serve_udp(loop, address):
    """Datagram echo: datagram_received() sends the datagram back. The
    socket's receive buffer is made large enough for ten 10 KiB datagrams
    arriving at once (the default drops some, and the client then waits for
    an answer that never comes); the C baseline server does the same."""
    _, where = parse_address(address)
    transport, _ = await loop.create_datagram_endpoint(
        DatagramEchoProtocol, local_addr=where)
    transport.get_extra_info('socket').setsockopt(
        socket.SOL_SOCKET, socket.SO_RCVBUF, DATAGRAM_RECEIVE_BUFFER)
    return transport, transport.get_extra_info('sockname')


SERVERS = {
    'protocol': serve_protocol,
    'streams': serve_streams,
    'sock': serve_sock,
    'udp': serve_udp,
    'http': serve_http,
}


def stop_at_end_of_stdin(loop):
    """The harness closes our stdin to end the run; a thread waits for that
    (blocked in read(), it costs no CPU) and stops the loop."""
    def wait():
        sys.stdin.buffer.read()
        loop.call_soon_threadsafe(loop.stop)

    threading.Thread(target=wait, daemon=True).start()


def serve(loop_name, kind, address):
    """Runs the server; returns the result to report."""
    loop = new_event_loop(loop_name)
    errors = stop_on_first_error(loop)
    try:
        # ``server`` is not used, only kept alive while serving.
        server, sockname = loop.run_until_complete(SERVERS[kind](loop, address))
    except Exception as exc:  # noqa: BLE001  (reported to the harness)
        return {'error': describe(exc)}
    if errors:  # a task started in set-up failed at once
        return {'error': errors[0]}
    print('ready', format_address(parse_address(address)[0], sockname), flush=True)
    stop_at_end_of_stdin(loop)
    started = time.process_time()
    loop.run_forever()
    cpu = time.process_time() - started
    if errors:
        return {'error': errors[0]}
    return {'cpu': cpu}


def main():
    loop_name, kind, address = sys.argv[1:]
    try:
        result = serve(loop_name, kind, address)
    except Exception as exc:  # noqa: BLE001  (reported to the harness)
        result = {'error': describe(exc)}
    print(json.dumps(result), flush=True)


if __name__ == '__main__':
    main()
