"""No blocking call on the loop thread from ferroloop's own Python code.

blockbuster (used by aiohttp's and anyio's test suites) raises
BlockingError when a blocking function (os.stat, os.sendfile, os.unlink,
os.read, ...) is called while a loop runs, unless the caller is one of the
places it allows (asyncio's own modules). Each step below runs under
blockbuster on stock asyncio and on ferroloop; ferroloop must make no such
call, and stock asyncio makes none either except where noted."""

import textwrap

from conftest import run_program_on_both

PROGRAM = textwrap.dedent('''
    import asyncio, os, socket, tempfile
    from blockbuster import BlockingError, blockbuster_ctx

    DATA = os.urandom(300_000)

    async def step(name, coro):
        try:
            await asyncio.wait_for(coro, 10)
            print(name, 'ok')
        except BlockingError as exc:
            print(name, 'blocking', exc)

    async def sendfile_through_a_transport(path):
        loop = asyncio.get_running_loop()
        received = bytearray()
        done = loop.create_future()

        class Sink(asyncio.Protocol):
            def data_received(self, data):
                received.extend(data)
                if len(received) == len(DATA) and not done.done():
                    done.set_result(None)

        server = await loop.create_server(Sink, '127.0.0.1', 0)
        port = server.sockets[0].getsockname()[1]
        transport, _ = await loop.create_connection(asyncio.Protocol, '127.0.0.1', port)
        with open(path, 'rb') as f:
            sent = await loop.sendfile(transport, f)
        await done
        assert sent == len(DATA) and bytes(received) == DATA
        transport.close()
        server.close()
        await server.wait_closed()

    async def sock_sendfile(path):
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with open(path, 'rb') as f:
            sending = asyncio.ensure_future(loop.sock_sendfile(a, f))
            got = bytearray()
            while len(got) < len(DATA):
                got += await loop.sock_recv(b, 65536)
            assert await sending == len(DATA)
            assert f.tell() == len(DATA)
        a.close()
        b.close()

    async def unix_server(directory):
        loop = asyncio.get_running_loop()
        path = os.path.join(directory, 'server.sock')
        server = await loop.create_unix_server(asyncio.Protocol, path)
        server.close()
        await server.wait_closed()

    async def stale_unix_socket(directory):
        loop = asyncio.get_running_loop()
        path = os.path.join(directory, 'stale.sock')
        old = socket.socket(socket.AF_UNIX)
        old.bind(path)
        old.close()           # leaves the socket file behind
        server = await loop.create_unix_server(asyncio.Protocol, path)
        server.close()
        await server.wait_closed()

    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, 'data')
            with open(path, 'wb') as f:
                f.write(DATA)
            with blockbuster_ctx():
                await step('loop.sendfile', sendfile_through_a_transport(path))
                await step('sock_sendfile', sock_sendfile(path))
                await step('create_unix_server', unix_server(tmp))
                await step('stale unix socket', stale_unix_socket(tmp))

    asyncio.run(main())
''')


def test_no_blocking_calls_from_the_loops_python_code():
    runs = run_program_on_both(PROGRAM, timeout=120)
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr)
    ferroloop = runs['ferroloop'].stdout.splitlines()
    assert ferroloop == ['loop.sendfile ok', 'sock_sendfile ok', 'create_unix_server ok',
                         'stale unix socket ok']
    stock = runs['asyncio'].stdout.splitlines()
    # Stock asyncio removes a stale socket file with os.remove, which
    # blockbuster does not allow even from asyncio's own module.
    assert stock[:3] == ferroloop[:3]
    assert stock[3].startswith('stale unix socket blocking'), stock[3]
