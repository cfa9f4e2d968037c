"""What the samples check: which loop runs them, against the loop the
outer test expects (EXPECTED_LOOP: 'ferroloop' or 'asyncio')."""

import asyncio
import os

EXPECTED = os.environ['EXPECTED_LOOP']


def running_loop_kind():
    return type(asyncio.get_running_loop()).__module__.split('.')[0]


async def handle(reader, writer):
    writer.write(await reader.readline())
    await writer.drain()
    writer.close()


async def echo_through_server(line):
    """A server and a client on the running loop."""
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(line)
    reply = await reader.readline()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return reply
