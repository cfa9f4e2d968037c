"""One listening port served by several processes, each with its own ferroloop
loop: gunicorn with ferroloop's uvicorn workers, ``uvicorn --workers``, and
``create_server(reuse_port=True)`` in two processes. Requests come from this
process; the answers name the process that served them."""

import collections
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from conftest import free_port, wait_for_port

TIMEOUT = 30
WORKERS = 2
# Connections go to whichever process accepts first, and a worker may still
# be starting when the port already accepts (the parent listens first): so
# requests go on until every worker answered, within these bounds.
MAX_REQUESTS = 5000
CONCURRENCY = 8

PID_APP = '''
import asyncio
import os


async def app(scope, receive, send):
    if scope['type'] != 'http':
        return
    loop = type(asyncio.get_running_loop())
    body = f'{os.getpid()} {loop.__module__}.{loop.__name__}'.encode()
    await send({'type': 'http.response.start', 'status': 200,
                'headers': [(b'content-type', b'text/plain'), (b'connection', b'close')]})
    await send({'type': 'http.response.body', 'body': body})
'''


def fetch(url):
    with urllib.request.urlopen(url, timeout=TIMEOUT) as resp:
        return resp.read().decode()


def answers_until_all_seen(url, expected):
    """Sends requests, a few at a time, until ``expected`` different answers
    came (or MAX_REQUESTS were sent, or TIMEOUT passed); returns how often
    each came."""
    seen = collections.Counter()
    deadline = time.monotonic() + TIMEOUT
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for _ in range(MAX_REQUESTS // CONCURRENCY):
            seen.update(pool.map(fetch, [url] * CONCURRENCY))
            if len(seen) >= expected or time.monotonic() > deadline:
                break
    return seen


def parent_pid(pid):
    # /proc/PID/stat: "pid (comm) state ppid ..."; comm may contain spaces.
    stat = Path(f'/proc/{pid}/stat').read_text()
    return int(stat.rsplit(')', 1)[1].split()[1])


def serve(command, cwd, port):
    proc = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for_port(port, proc, TIMEOUT)
        answers = answers_until_all_seen(f'http://127.0.0.1:{port}/', WORKERS)
        workers = {int(answer.split()[0]): answer.split()[1] for answer in answers}
        parents = {pid: parent_pid(pid) for pid in workers}
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=TIMEOUT)
    return proc, workers, parents, stderr


def test_gunicorn_with_two_ferroloop_workers(tmp_path):
    (tmp_path / 'pid_app.py').write_text(textwrap.dedent(PID_APP))
    port = free_port()
    proc, workers, parents, stderr = serve(
        [sys.executable, '-m', 'gunicorn', 'pid_app:app', '--bind', f'127.0.0.1:{port}',
         '--workers', str(WORKERS), '--worker-class', 'ferroloop.workers.UvicornWorker',
         '--graceful-timeout', '10'],
        tmp_path, port)
    assert sorted(workers.values()) == ['ferroloop.loop.Loop'] * WORKERS, stderr
    assert set(parents.values()) == {proc.pid}
    assert proc.returncode == 0, stderr
    assert stderr.count('Application startup complete') == WORKERS, stderr


def test_uvicorn_with_two_workers_on_ferroloop(tmp_path):
    (tmp_path / 'pid_app.py').write_text(textwrap.dedent(PID_APP))
    port = free_port()
    proc, workers, parents, stderr = serve(
        [sys.executable, '-m', 'uvicorn', 'pid_app:app', '--host', '127.0.0.1',
         '--port', str(port), '--workers', str(WORKERS),
         '--loop', 'ferroloop:new_event_loop', '--no-access-log'],
        tmp_path, port)
    assert sorted(workers.values()) == ['ferroloop.loop.Loop'] * WORKERS, stderr
    assert set(parents.values()) == {proc.pid}
    assert proc.returncode == 0, stderr
    assert stderr.count('Finished server process') == WORKERS, stderr


REUSE_PORT_SERVER = '''
import asyncio
import os
import sys

import ferroloop


class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        transport.write(str(os.getpid()).encode())
        transport.close()


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Answer, '127.0.0.1', port, reuse_port=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until stdin closes.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()
    await server.wait_closed()


ferroloop.run(main(int(sys.argv[1])))
'''


def read_answer(port):
    with socket.create_connection(('127.0.0.1', port), timeout=TIMEOUT) as sock:
        chunks = []
        while chunk := sock.recv(64):
            chunks.append(chunk)
    return b''.join(chunks).decode()


def test_create_server_reuse_port_in_two_processes():
    def start(port):
        return subprocess.Popen([sys.executable, '-c', REUSE_PORT_SERVER, str(port)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    first = start(0)
    servers = [first]
    try:
        port = int(first.stdout.readline())
        second = start(port)
        servers.append(second)
        assert int(second.stdout.readline()) == port
        seen = collections.Counter()
        deadline = time.monotonic() + TIMEOUT
        for _ in range(MAX_REQUESTS):
            seen[read_answer(port)] += 1
            if len(seen) == 2 or time.monotonic() > deadline:
                break
    finally:
        outcomes = [server.communicate(input='', timeout=TIMEOUT) for server in servers]
    assert set(seen) == {str(first.pid), str(second.pid)}
    for server, (_, stderr) in zip(servers, outcomes):
        assert server.returncode == 0, stderr
