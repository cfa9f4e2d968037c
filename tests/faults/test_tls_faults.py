"""TLS against hostile or broken peers: garbage instead of a handshake, a
disconnect in the middle of one, a handshake that never finishes, and a
peer that never answers close_notify or closes without one."""

from .harness import check_case

TLS_PRELUDE = '''
import asyncio, socket, ssl, threading
from test.test_asyncio import utils as test_utils
from case_helpers import Growth, collect_handler_calls, describe, report, reset

SERVER_CTX = test_utils.simple_server_sslcontext()
CLIENT_CTX = test_utils.simple_client_sslcontext()


async def tls_echo_works(addr):
    reader, writer = await asyncio.open_connection(*addr, ssl=CLIENT_CTX)
    writer.write(b'ping\\n')
    reply = await reader.readline()
    writer.close()
    try:
        await writer.wait_closed()
    except (ssl.SSLError, ConnectionError):
        pass
    return reply == b'PING\\n'


async def handle(reader, writer):
    writer.write((await reader.readline()).upper())
    await writer.drain()
    writer.close()


def client_hello():
    """The first flight of a real TLS handshake, as bytes."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = CLIENT_CTX.wrap_bio(incoming, outgoing, server_hostname='localhost')
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    return outgoing.read()
'''

SERVER_GETS_GARBAGE = TLS_PRELUDE + '''

async def raw_exchange(addr, send, shut_write):
    reader, writer = await asyncio.open_connection(*addr)
    writer.write(send)
    if shut_write:
        writer.write_eof()
    try:
        got = await asyncio.wait_for(reader.read(), 5)
        result = ['read', len(got) > 0]
    except Exception as exc:
        result = ['read raised', type(exc).__name__]
    writer.close()
    return result


async def main():
    loop = asyncio.get_running_loop()
    handler_calls = collect_handler_calls(loop)
    server = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=SERVER_CTX)
    addr = server.sockets[0].getsockname()
    growth = Growth()
    results = {}
    hello = client_hello()
    for i in range(2):
        if i == 1:
            growth.mark()
        results['http instead of tls'] = await raw_exchange(addr, b'GET / HTTP/1.0\\r\\n\\r\\n', False)
        results['random bytes'] = await raw_exchange(addr, bytes(range(256)) * 8, False)
        results['half a client hello, then EOF'] = await raw_exchange(addr, hello[:len(hello) // 2], True)
        results['client hello then close'] = await raw_exchange(addr, hello, True)
        results['nothing, then EOF'] = await raw_exchange(addr, b'', True)
        await asyncio.sleep(0.1)
        results['tls still served'] = await tls_echo_works(addr)
    growth.mark()
    growth.report()
    server.close()
    await server.wait_closed()
    results['handler'] = sorted({call[0] for call in handler_calls})
    return results

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_tls_server_gets_garbage_and_broken_handshakes():
    check_case('TLS server: garbage, disconnect mid-handshake', SERVER_GETS_GARBAGE)


CLIENT_MEETS_BROKEN_SERVERS = TLS_PRELUDE + '''

async def tls_connect(port, **kwargs):
    try:
        reader, writer = await asyncio.open_connection('127.0.0.1', port, ssl=CLIENT_CTX, **kwargs)
    except Exception as exc:
        return describe(exc)
    writer.close()
    return 'connected'


async def main():
    loop = asyncio.get_running_loop()
    handler_calls = collect_handler_calls(loop)
    hello = client_hello()
    behaviours = {
        'closes at once': lambda r, w: w.close(),
        'answers garbage': lambda r, w: w.write(b'HTTP/1.0 400 Bad Request\\r\\n\\r\\n' * 10),
        'resets': lambda r, w: reset(w.transport),
        'never answers': lambda r, w: None,
    }
    results = {}
    held = []
    for name, behaviour in behaviours.items():
        async def serve(reader, writer, behaviour=behaviour):
            held.append(writer)
            behaviour(reader, writer)
        server = await asyncio.start_server(serve, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        results[name] = await tls_connect(port, ssl_handshake_timeout=0.5)
        server.close()
        for writer in held:
            writer.transport.abort()
        await server.wait_closed()
    results['handler'] = sorted({call[0] for call in handler_calls})
    return results

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_tls_client_meets_broken_servers():
    check_case('TLS client: broken servers, handshake timeout', CLIENT_MEETS_BROKEN_SERVERS)


SERVER_HANDSHAKE_TIMEOUT = TLS_PRELUDE + '''

async def main():
    loop = asyncio.get_running_loop()
    handler_calls = collect_handler_calls(loop)
    server = await asyncio.start_server(handle, '127.0.0.1', 0, ssl=SERVER_CTX,
                                        ssl_handshake_timeout=1.0)
    addr = server.sockets[0].getsockname()
    reader, writer = await asyncio.open_connection(*addr)   # and never speaks
    try:
        got = ['read', await asyncio.wait_for(reader.read(), 5)]
    except Exception as exc:
        got = ['read raised', type(exc).__name__]
    writer.close()
    served = await tls_echo_works(addr)
    server.close()
    await server.wait_closed()
    return {'silent client': got, 'served after': served,
            'handler': sorted({call[0] for call in handler_calls})}

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_tls_server_handshake_timeout():
    check_case('TLS server: handshake timeout', SERVER_HANDSHAKE_TIMEOUT)


NO_CLOSE_NOTIFY = TLS_PRELUDE + '''

def blocking_tls_peer(listener, behaviour, done):
    """A TLS peer outside the loop: handshakes, then either closes the TCP
    connection without close_notify or never answers the client's."""
    conn, _ = listener.accept()
    tls = SERVER_CTX.wrap_socket(conn, server_side=True)
    tls.sendall(b'hello\\n')
    if behaviour == 'drops without close_notify':
        socket.socket(fileno=tls.detach()).close()
    else:
        done.wait(10)               # holds the connection, silent
        tls.close()


async def run_peer(behaviour, client):
    listener = socket.create_server(('127.0.0.1', 0))
    done = threading.Event()
    peer = threading.Thread(target=blocking_tls_peer, args=(listener, behaviour, done))
    peer.start()
    try:
        reader, writer = await asyncio.open_connection(
            *listener.getsockname(), ssl=CLIENT_CTX, ssl_shutdown_timeout=0.5)
        return await client(reader, writer)
    finally:
        done.set()
        await asyncio.get_running_loop().run_in_executor(None, peer.join)
        listener.close()


async def read_to_the_end(reader, writer):
    first = await reader.readline()
    try:
        rest = ['rest', await asyncio.wait_for(reader.read(), 5)]
    except Exception as exc:
        rest = ['read raised', describe(exc)]
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
        closed = 'closed'
    except Exception as exc:
        closed = ['wait_closed raised', describe(exc)]
    return [first, rest, closed]


async def close_unanswered(reader, writer):
    await reader.readline()
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 5)
        return ['closed', writer.transport.is_closing()]
    except Exception as exc:
        return ['wait_closed raised', describe(exc)]


async def main():
    handler_calls = collect_handler_calls(asyncio.get_running_loop())
    return {'peer drops without close_notify':
            await run_peer('drops without close_notify', read_to_the_end),
            'peer never answers close_notify': await run_peer('silent', close_unanswered),
            'handler': sorted({call[0] for call in handler_calls})}

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_tls_without_close_notify():
    check_case('TLS: no close_notify', NO_CLOSE_NOTIFY)
