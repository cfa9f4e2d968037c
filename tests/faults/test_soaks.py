"""Soaks: many of one operation, in rounds; descriptors and resident memory
must stay flat over the second half, and the counts match stock asyncio's.
``make test`` runs them small; ``make soak`` at the issue's full sizes."""

from .harness import check_case

PRELUDE = '''
import asyncio
from case_helpers import raise_nofile_limit, report, size, soak, soak_async
ROUNDS = 8
'''

CALL_SOON = PRELUDE + '''
N = size(200_000, 2_000_000)
loop = asyncio.new_event_loop()
count = [0]

def tick(step):
    count[0] += step

def run_round(i):
    for _ in range(N // ROUNDS):
        loop.call_soon(tick, 1)
    loop.call_soon(loop.stop)
    loop.run_forever()
    return count[0]

soak(ROUNDS, run_round)
loop.close()
report({'called': count[0]})
'''


def test_call_soon_soak():
    check_case('soak: call_soon', CALL_SOON, timeout=120)


CALL_LATER_CANCEL = PRELUDE + '''
N = size(100_000, 1_000_000)
loop = asyncio.new_event_loop()
fired = [0]

def fire():
    fired[0] += 1

def run_round(i):
    handles = [loop.call_later(1000 + j % 97, fire) for j in range(N // ROUNDS)]
    for handle in handles:
        handle.cancel()
    for j in range(10):
        loop.call_later(0, fire)
    done = loop.create_future()
    loop.call_later(0.001, done.set_result, None)
    loop.run_until_complete(done)
    return fired[0]

soak(ROUNDS, run_round)
loop.close()
report({'fired': fired[0]})
'''


def test_call_later_cancel_soak():
    check_case('soak: call_later+cancel', CALL_LATER_CANCEL, timeout=120)


TASKS = PRELUDE + '''
N = size(20_000, 200_000)

async def work(j):
    await asyncio.sleep(0)
    return j

async def round_of_tasks():
    total = 0
    for start in range(0, N // ROUNDS, 1000):
        total += sum(await asyncio.gather(*(asyncio.create_task(work(j)) for j in range(1000))))
    return total

loop = asyncio.new_event_loop()
totals = soak(ROUNDS, lambda i: loop.run_until_complete(round_of_tasks()))
loop.close()
report({'totals': totals})
'''


def test_tasks_soak():
    check_case('soak: tasks', TASKS, timeout=120)


TCP_CONNECT_CLOSE = PRELUDE + '''
N = size(3_000, 50_000)
counts = {'server made': 0, 'server lost': 0, 'client lost': 0}


class Server(asyncio.Protocol):
    def connection_made(self, transport):
        counts['server made'] += 1

    def connection_lost(self, exc):
        counts['server lost'] += 1


class Client(asyncio.Protocol):
    def connection_lost(self, exc):
        counts['client lost'] += 1


async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Server, '127.0.0.1', 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]

    async def one_round(i):
        for _ in range(N // ROUNDS):
            transport, _ = await loop.create_connection(Client, '127.0.0.1', port)
            transport.close()
        while counts['server lost'] < counts['client lost'] or counts['client lost'] < N // ROUNDS * (i + 2):
            await asyncio.sleep(0.01)

    await soak_async(ROUNDS, one_round)
    server.close()
    await server.wait_closed()

asyncio.run(asyncio.wait_for(main(), 600))
report(counts)
'''


def test_tcp_connect_close_soak():
    check_case('soak: TCP connect/close', TCP_CONNECT_CLOSE, timeout=300)


CONCURRENT_CONNECTIONS = PRELUDE + '''
N = size(1_000, 5_000)
raise_nofile_limit(2 * N + 200)
ROUNDS = 4


async def handle(reader, writer):
    writer.write(await reader.readexactly(4))
    await writer.drain()
    writer.close()
    await writer.wait_closed()


async def main():
    server = await asyncio.start_server(handle, '127.0.0.1', 0, backlog=N)
    port = server.sockets[0].getsockname()[1]

    async def client(j):
        reader, writer = await asyncio.open_connection('127.0.0.1', port)
        writer.write(j.to_bytes(4, 'big'))
        reply = await reader.read()
        writer.close()
        await writer.wait_closed()
        return int.from_bytes(reply, 'big') == j

    async def one_round(i):
        # Every connection is open at once before any is answered.
        return sum(await asyncio.gather(*(client(j) for j in range(N))))

    rounds = await soak_async(ROUNDS, one_round)
    server.close()
    await server.wait_closed()
    return rounds

report({'echoed per round': asyncio.run(asyncio.wait_for(main(), 600))})
'''


def test_concurrent_connections_soak():
    check_case('soak: concurrent connections', CONCURRENT_CONNECTIONS, timeout=300)


DATAGRAMS = PRELUDE + '''
N = size(10_000, 100_000)
WINDOW = 50


class Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.transport.sendto(data, addr)


class Client(asyncio.DatagramProtocol):
    def __init__(self):
        self.got = 0
        self.window_done = None

    def datagram_received(self, data, addr):
        self.got += 1
        if self.got % WINDOW == 0 and self.window_done and not self.window_done.done():
            self.window_done.set_result(None)


async def main():
    loop = asyncio.get_running_loop()
    server, _ = await loop.create_datagram_endpoint(Echo, local_addr=('127.0.0.1', 0))
    client, proto = await loop.create_datagram_endpoint(
        Client, remote_addr=server.get_extra_info('sockname'))

    async def one_round(i):
        for _ in range(N // ROUNDS // WINDOW):
            proto.window_done = loop.create_future()
            for j in range(WINDOW):
                client.sendto(b'x' * (j + 1))
            await asyncio.wait_for(proto.window_done, 10)
        return proto.got

    rounds = await soak_async(ROUNDS, one_round)
    client.close()
    server.close()
    await asyncio.sleep(0)
    return rounds

report({'echoed': asyncio.run(asyncio.wait_for(main(), 600))})
'''


def test_datagrams_soak():
    check_case('soak: datagrams', DATAGRAMS, timeout=300)


LOOPS = PRELUDE + '''
N = size(200, 1_000)


async def exchange():
    loop = asyncio.get_running_loop()
    server = await asyncio.start_server(lambda r, w: w.close(), '127.0.0.1', 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    await loop.run_in_executor(None, sum, [1, 2])
    loop.call_later(3600, print)
    return data


def run_round(i):
    for _ in range(N // ROUNDS):
        assert asyncio.run(exchange()) == b''
        loop = asyncio.new_event_loop()
        loop.close()
    return i

soak(ROUNDS, run_round)
report({'loops': N})
'''


def test_many_loops_soak():
    check_case('soak: loops', LOOPS, timeout=300)
