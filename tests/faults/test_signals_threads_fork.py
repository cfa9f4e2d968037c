"""Signal storms, call_soon_threadsafe from many threads, and fork while the
loop runs."""

from .harness import check_case

SIGNAL_STORM = '''
import asyncio, os, signal, socket, sys
from case_helpers import report, size

N = size(2_000, 10_000)


async def main():
    loop = asyncio.get_running_loop()
    seen = {'usr1': 0}
    done = loop.create_future()
    loop.add_signal_handler(signal.SIGUSR1, lambda: seen.__setitem__('usr1', seen['usr1'] + 1))
    loop.add_signal_handler(signal.SIGUSR2, lambda: done.done() or done.set_result(None))
    # The storm comes from another process while this one moves data
    # through sock_* calls that the signals interrupt.
    # The end of the storm is told by SIGUSR2, again and again until heard:
    # a signal that finds the wakeup socket full is lost (on both loops).
    storm = await asyncio.create_subprocess_exec(sys.executable, '-c', f"""
import os, signal, sys, threading, time
for _ in range({N}):
    os.kill({os.getpid()}, signal.SIGUSR1)
heard = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), heard.set()), daemon=True).start()
while not heard.wait(0.01):
    os.kill({os.getpid()}, signal.SIGUSR2)
""", stdin=asyncio.subprocess.PIPE)
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    payload = os.urandom(4_000_000)

    async def receive():
        got = bytearray()
        while len(got) < len(payload):
            got += await loop.sock_recv(b, 65536)
        return bytes(got)

    sent, got = await asyncio.gather(loop.sock_sendall(a, payload), receive())
    await done
    storm.stdin.close()
    await storm.wait()
    # Signals coalesce: some arrive as one, never more than were sent.
    result = {'exchange intact': got == payload, 'usr1 handled': 0 < seen['usr1'] <= N,
              'storm exit': storm.returncode,
              'removed': [loop.remove_signal_handler(signal.SIGUSR1),
                          loop.remove_signal_handler(signal.SIGUSR2)]}
    a.close()
    b.close()
    return result

report(asyncio.run(asyncio.wait_for(main(), 120)))
'''


def test_signal_storm():
    check_case('signal storm (SIGUSR1)', SIGNAL_STORM, timeout=180)


THREADSAFE = '''
import asyncio, threading
from case_helpers import report, size

THREADS = 8
N = size(20_000, 250_000)


async def main():
    loop = asyncio.get_running_loop()
    received = [[] for _ in range(THREADS)]
    all_in = loop.create_future()
    count = [0]

    def record(thread, i):
        received[thread].append(i)
        count[0] += 1
        if count[0] == THREADS * N:
            all_in.set_result(None)

    def produce(thread):
        for i in range(N):
            loop.call_soon_threadsafe(record, thread, i)

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(THREADS)]
    for t in threads:
        t.start()
    await all_in
    for t in threads:
        t.join()
    return {'total': count[0],
            'in order, none lost': [got == list(range(N)) for got in received]}

report(asyncio.run(asyncio.wait_for(main(), 300)))
'''


def test_call_soon_threadsafe_from_eight_threads():
    check_case('call_soon_threadsafe x 8 threads', THREADSAFE, timeout=300)


FORK = '''
import asyncio, json, os, socket, sys, threading
from case_helpers import describe, report


async def child_work():
    server = await asyncio.start_server(lambda r, w: w.close(), '127.0.0.1', 0)
    reader, writer = await asyncio.open_connection(*server.sockets[0].getsockname())
    data = await reader.read()
    writer.close()
    server.close()
    await server.wait_closed()
    await asyncio.sleep(0.01)
    return ['child loop ran', data]


def in_child(inherited, to_parent):
    """What a forked child sees of the loop it inherited, and whether it can
    run a loop of its own: in the main thread and in a new thread."""
    seen = {'running loop inherited': asyncio.events._get_running_loop() is inherited,
            'inherited is_running': inherited.is_running()}
    try:
        seen['asyncio.run in main thread'] = asyncio.run(child_work())
    except BaseException as exc:
        seen['asyncio.run in main thread'] = describe(exc)
    in_thread = []
    thread = threading.Thread(target=lambda: in_thread.append(asyncio.run(child_work())))
    thread.start()
    thread.join(20)
    seen['asyncio.run in a thread'] = in_thread
    try:
        inherited.close()
        seen['close inherited'] = 'closed'
    except BaseException as exc:
        seen['close inherited'] = describe(exc)
    to_parent.sendall(json.dumps(seen, default=repr).encode())
    to_parent.close()


async def main():
    loop = asyncio.get_running_loop()
    await loop.getaddrinfo('localhost', 80)      # the resolver's threads exist now
    server = await asyncio.start_server(lambda r, w: w.close(), '127.0.0.1', 0)
    addr = server.sockets[0].getsockname()
    loop.call_later(3600, print)
    parent_end, child_end = socket.socketpair()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            parent_end.close()
            in_child(loop, child_end)
            code = 0
        finally:
            os._exit(code)
    child_end.close()
    parent_end.setblocking(False)
    got = bytearray()
    while chunk := await loop.sock_recv(parent_end, 65536):
        got += chunk
    parent_end.close()
    _, status = await loop.run_in_executor(None, os.waitpid, pid, 0)
    # The parent's loop must be untouched by whatever the child did.
    reader, writer = await asyncio.wait_for(asyncio.open_connection(*addr), 5)
    after = await reader.read()
    writer.close()
    server.close()
    await server.wait_closed()
    return {'child': json.loads(got), 'child status': status, 'parent serves after': after}

report(asyncio.run(asyncio.wait_for(main(), 60)))
'''


def test_fork_with_a_running_loop():
    check_case('fork with a running loop', FORK)
