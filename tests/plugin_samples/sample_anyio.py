"""anyio tests on its asyncio backend."""

import anyio
import pytest

from loop_kind import EXPECTED, running_loop_kind

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return 'asyncio'


async def test_runs_on_the_expected_loop():
    assert running_loop_kind() == EXPECTED


async def test_task_group_and_tcp_stream():
    async def serve(stream):
        async with stream:
            await stream.send(await stream.receive())

    listener = await anyio.create_tcp_listener(local_host='127.0.0.1')
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as group:
        group.start_soon(listener.serve, serve)
        with anyio.fail_after(10):
            async with await anyio.connect_tcp('127.0.0.1', port) as client:
                await client.send(b'anyio')
                assert await client.receive() == b'anyio'
        group.cancel_scope.cancel()
    assert running_loop_kind() == EXPECTED
