"""Run inside a clean virtual environment that has only the ferroloop wheel
installed (tests/wheels/check_wheels.py): the package imports from there,
its version is the wheel's, the pytest plugin is registered, and a TCP and
a UDP echo server answer on a ferroloop loop."""

import asyncio
import importlib.metadata
import sys
from pathlib import Path

import ferroloop


class UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class UdpClient(asyncio.DatagramProtocol):
    def __init__(self):
        self.reply = asyncio.get_running_loop().create_future()

    def datagram_received(self, data, addr):
        self.reply.set_result(data)


async def handle(reader, writer):
    while data := await reader.read(65536):
        writer.write(data.upper())
        await writer.drain()
    writer.close()


async def echo_servers():
    assert isinstance(asyncio.get_running_loop(), ferroloop.Loop)
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    replies = []
    for data in (b'hello', b'x' * 300_000):
        writer.write(data)
        replies.append(await reader.readexactly(len(data)) == data.upper())
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()

    loop = asyncio.get_running_loop()
    udp_server, _ = await loop.create_datagram_endpoint(UdpEcho, local_addr=('127.0.0.1', 0))
    udp_client, client = await loop.create_datagram_endpoint(
        UdpClient, remote_addr=udp_server.get_extra_info('sockname'))
    udp_client.sendto(b'datagram')
    replies.append(await client.reply == b'datagram')
    udp_client.close()
    udp_server.close()
    return replies


def main():
    prefix = Path(sys.prefix).resolve()
    native = Path(ferroloop._ferroloop.__file__).resolve()
    assert prefix in native.parents, f'{native} is not from {prefix}'
    assert ferroloop.__version__ == importlib.metadata.version('ferroloop')
    plugins = importlib.metadata.entry_points(group='pytest11')
    assert [ep.value for ep in plugins if ep.name == 'ferroloop'] == ['ferroloop.pytest_plugin']
    replies = asyncio.wait_for(echo_servers(), 30)
    assert ferroloop.run(replies) == [True, True, True]
    print(f'ferroloop {ferroloop.__version__} from {native.name}: TCP and UDP echo ok')


if __name__ == '__main__':
    main()
