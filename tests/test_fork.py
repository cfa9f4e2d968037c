"""fork() with a ferroloop loop in the process.

A forked child inherits the loop as a copy but shares its epoll instance with
the parent. The child can make and run loops of its own; the parent's loop
refuses to run or watch descriptors there (RuntimeError, never a hang), and
closing it, or its server, in the child leaves the parent's loop serving.

Each case is a whole program in a fresh interpreter: forking the pytest
process (which has threads) would be unsafe.
"""

import subprocess
import sys
import textwrap

TIMEOUT = 60

COMMON = '''
import asyncio
import os
import sys

import ferroloop


async def handle(reader, writer):
    writer.write(await reader.readexactly(4))
    await writer.drain()
    writer.close()


async def echo(port, data):
    reader, writer = await asyncio.open_connection('127.0.0.1', port)
    writer.write(data)
    reply = await reader.readexactly(len(data))
    writer.close()
    await writer.wait_closed()
    return reply


async def serve_and_echo(data):
    """A server and a client on whatever loop runs this."""
    server = await asyncio.start_server(handle, '127.0.0.1', 0)
    try:
        return await echo(server.sockets[0].getsockname()[1], data)
    finally:
        server.close()
        await server.wait_closed()


def refused(call):
    try:
        call()
    except RuntimeError as exc:
        return f'RuntimeError: {exc}'.replace(str(os.getppid()), '<parent>')
    return 'no error'


def report_child(pid):
    _, status = os.waitpid(pid, 0)
    print('child exit code', os.waitstatus_to_exitcode(status), flush=True)
'''


def run(program):
    source = textwrap.dedent(COMMON) + textwrap.dedent(program)
    return subprocess.run([sys.executable, '-c', source], capture_output=True,
                          text=True, timeout=TIMEOUT)


REFUSAL = ('RuntimeError: this event loop belongs to process <parent>, not to '
           'this child forked from it; create a new event loop in the child')


def test_child_of_a_process_with_an_idle_loop():
    proc = run('''
        loop = ferroloop.new_event_loop()
        server = loop.run_until_complete(asyncio.start_server(handle, '127.0.0.1', 0))
        port = server.sockets[0].getsockname()[1]
        loop.call_later(3600, print, 'never')
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            print('child, new loop:', ferroloop.run(serve_and_echo(b'kid1')), flush=True)
            print('child, old loop run:', refused(lambda: loop.run_until_complete(asyncio.sleep(0))))
            print('child, old loop add_reader:', refused(lambda: loop.add_reader(0, print)))
            print('child, old loop stays open:', not loop.is_closed())
            server.close()
            loop.close()
            print('child closed the old loop', flush=True)
            os._exit(0)
        report_child(pid)
        print('parent:', loop.run_until_complete(echo(port, b'dad1')))
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()
    ''')
    assert proc.stdout.splitlines() == [
        "child, new loop: b'kid1'",
        f'child, old loop run: {REFUSAL}',
        f'child, old loop add_reader: {REFUSAL}',
        'child, old loop stays open: True',
        'child closed the old loop',
        'child exit code 0',
        "parent: b'dad1'",
    ], proc.stderr
    assert proc.returncode == 0, proc.stderr


def test_child_forked_by_a_running_loop():
    # The child starts inside the parent's callback. It may run a loop of its
    # own right there; when it returns into the parent's loop, that loop
    # raises instead of polling the shared epoll instance.
    proc = run('''
        async def main():
            server = await asyncio.start_server(handle, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                print('child, new loop:', ferroloop.run(serve_and_echo(b'kid2')), flush=True)
                await asyncio.sleep(0)
                print('child: not reached', flush=True)
                os._exit(3)
            report_child(pid)
            print('parent:', await echo(port, b'dad2'))
            server.close()
            await server.wait_closed()

        ferroloop.run(main())
    ''')
    assert proc.stdout.splitlines() == [
        "child, new loop: b'kid2'",
        'child exit code 1',
        "parent: b'dad2'",
    ], proc.stderr
    assert proc.returncode == 0, proc.stderr
    # The child's error: the refusal, raised out of the parent's loop.
    assert 'RuntimeError: this event loop belongs to process ' in proc.stderr


def test_children_of_multiprocessing_fork_run_their_own_loops():
    proc = run('''
        import multiprocessing

        def child(queue):
            queue.put(ferroloop.run(serve_and_echo(b'mp42')))

        async def main():
            ctx = multiprocessing.get_context('fork')
            queue = ctx.Queue()
            workers = [ctx.Process(target=child, args=(queue,)) for _ in range(2)]
            for w in workers:
                w.start()
            replies = [await asyncio.to_thread(queue.get, timeout=30) for _ in workers]
            for w in workers:
                await asyncio.to_thread(w.join, 30)
            print(replies, [w.exitcode for w in workers])
            print('parent:', await serve_and_echo(b'main'))

        ferroloop.run(main())
    ''')
    assert proc.stdout.splitlines() == [
        "[b'mp42', b'mp42'] [0, 0]",
        "parent: b'main'",
    ], proc.stderr
    assert proc.returncode == 0, proc.stderr
