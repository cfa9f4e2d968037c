"""Memory per idle TCP connection and per sleeping task, on each loop.

    python bench/memory.py LOOP idle_tcp_connection N
    python bench/memory.py LOOP sleeping_task N

is the measuring process (bench/run.py starts one per round); it prints
{"bytes": B}, the growth of its anonymous resident memory (RssAnon of
/proc/self/status: heap and anonymous mappings, every allocator's, Python's
and the loop's native code's alike; not code pages, not kernel memory) from
before to after making N of the thing, divided by N. The garbage collector
runs before both readings.

idle_tcp_connection  the loop serves create_server() with a Protocol that keeps its
             transport; a client process (this file, mode 'clients') opens N
             plain blocking TCP connections to it and holds them, idle. When
             the N-th connection_made() has run, the server reads its memory.
             So the number counts what the server keeps per accepted
             connection: transport, protocol, socket object, the loop's
             registration. The client's sockets live in the other process and
             are not counted; the kernel's socket buffers are not either.
sleeping_task  N tasks are created with loop.create_task(), each awaiting
             asyncio.sleep(3600); once every one has started sleeping the
             memory is read. It counts per task: the Task, its coroutine and
             frame, the Future sleep() waits on and the loop's timer handle.

Targets (issue 11): per connection at most the smallest peer's, per sleeping
task at most uvloop's.
"""

import asyncio
import gc
import resource
import socket
import statistics
import subprocess
import sys
from dataclasses import dataclass

from loops import print_report, run_on_new_loop
from measure import Failure, Target, run_child, spread

CHILD = __file__
SLEEP = 3600
LISTEN_BACKLOG = 4096
WARM_UP = 100   # things made and dropped before the first reading
CONNECT_TIMEOUT = 60


@dataclass(frozen=True)
class MemoryBenchmark:
    name: str            # a mode of this module
    size: int
    quick_size: int
    unit: int            # bytes of the unit the table shows
    target: Target


BENCHMARKS = [
    MemoryBenchmark('idle_tcp_connection', 10_000, 2_000, 1024, Target('best-peer', 1.0)),
    MemoryBenchmark('sleeping_task', 50_000, 10_000, 1, Target('uvloop', 1.0)),
]


# ---- the measuring process ------------------------------------------------

def anonymous_memory():
    """Bytes of anonymous resident memory of this process."""
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('RssAnon:'):
                return int(line.split()[1]) * 1024
    raise OSError('no RssAnon in /proc/self/status')


def settled_memory():
    gc.collect()
    return anonymous_memory()


def allow_descriptors(count):
    """Raises this process's descriptor limit to fit ``count`` sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = count + 100
    if hard != resource.RLIM_INFINITY and wanted > hard:
        raise OSError(f'{count} connections need {wanted} descriptors; the limit is {hard}')
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def per_connection(loop, count):
    allow_descriptors(count + WARM_UP)
    accepted = []
    all_made = loop.create_future()

    class Idle(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport
            accepted.append(self)
            if len(accepted) == wanted and not all_made.done():
                all_made.set_result(None)

    async def serve():
        return await loop.create_server(Idle, '127.0.0.1', 0, backlog=LISTEN_BACKLOG)

    server = loop.run_until_complete(serve())
    port = server.sockets[0].getsockname()[1]

    def connect(n):
        """Starts a client holding n connections; returns it once they are all
        accepted."""
        client = subprocess.Popen(
            [sys.executable, CHILD, 'clients', str(port), str(n)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        loop.run_until_complete(asyncio.wait_for(all_made, CONNECT_TIMEOUT))
        return client

    # A first batch makes whatever the loop makes once (caches, its accept
    # machinery), then goes away.
    wanted = WARM_UP
    finish_client(connect(WARM_UP))
    for protocol in accepted:
        protocol.transport.close()
    accepted.clear()
    loop.run_until_complete(asyncio.sleep(0.05))
    all_made = loop.create_future()
    wanted = count

    before = settled_memory()
    client = connect(count)
    after = settled_memory()
    finish_client(client)
    server.close()
    for protocol in accepted:
        protocol.transport.close()
    loop.run_until_complete(asyncio.sleep(0.05))
    return (after - before) / count


def finish_client(client):
    client.stdin.close()
    client.wait(timeout=CONNECT_TIMEOUT)


def per_sleeping_task(loop, count):
    sleeping = 0

    async def sleeper():
        nonlocal sleeping
        sleeping += 1
        await asyncio.sleep(SLEEP)

    def start(n):
        tasks = [loop.create_task(sleeper()) for _ in range(n)]
        # Tasks take their first step in the order they were made, before the
        # step of this one: after it, every one is sleeping.
        loop.run_until_complete(asyncio.sleep(0))
        return tasks

    def stop(tasks):
        for task in tasks:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

    stop(start(WARM_UP))
    sleeping = 0
    before = settled_memory()
    tasks = start(count)
    after = settled_memory()
    if sleeping != count:
        raise AssertionError(f'{sleeping} tasks sleeping, expected {count}')
    stop(tasks)
    return (after - before) / count


MODES = {'idle_tcp_connection': per_connection, 'sleeping_task': per_sleeping_task}


def hold_connections(port, count):
    """The client: opens ``count`` connections and holds them until its stdin
    closes."""
    allow_descriptors(count)
    connections = [socket.create_connection(('127.0.0.1', port), timeout=CONNECT_TIMEOUT)
                   for _ in range(count)]
    sys.stdin.buffer.read()
    for connection in connections:
        connection.close()


def child_main():
    if sys.argv[1] == 'clients':
        hold_connections(int(sys.argv[2]), int(sys.argv[3]))
        return
    loop_name, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print_report(lambda: run_on_new_loop(loop_name, lambda loop: MODES[mode](loop, count),
                                         'bytes'))


# ---- the harness side -----------------------------------------------------

@dataclass(frozen=True)
class Amount:
    """The median over rounds of memory per thing, in the benchmark's unit,
    with its spread (see measure.spread) and how many things were made."""
    ops: int
    per_thing: float
    spread: float


def measure(benchmark, loop_name, quick):
    """One round: (things made, memory per thing in the benchmark's unit), or
    a Failure."""
    size = benchmark.quick_size if quick else benchmark.size
    outcome = run_child([sys.executable, CHILD, loop_name, benchmark.name, str(size)],
                        timeout=180)
    if isinstance(outcome, Failure):
        return outcome
    return size, outcome['bytes'] / benchmark.unit


def summarise(rounds):
    for outcome in rounds:
        if isinstance(outcome, Failure):
            return outcome
    amounts = [amount for _, amount in rounds]
    return Amount(ops=rounds[0][0], per_thing=statistics.median(amounts),
                  spread=spread(amounts))


if __name__ == '__main__':
    child_main()
