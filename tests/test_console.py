"""The console of a process started with FERROLOOP_CONSOLE=1: what
``python -m ferroloop ps PID`` shows, and that only the process's own user
can ask (mode 0700 directory, 0600 socket, SO_PEERCRED)."""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

SERVED = textwrap.dedent('''
    import asyncio, sys

    async def worker(n):
        while True:
            await asyncio.sleep(0.01 * n)  # worker waits here

    async def main():
        tasks = [asyncio.create_task(worker(n), name=f'worker-{n}') for n in (1, 2)]
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
        print('ready', flush=True)
        await done  # main waits here
        for task in tasks:
            task.cancel()

    asyncio.run(main())
''')
NOBODY = 65534


@pytest.fixture
def served(tmp_path):
    """A process serving its console; ends when the test does. The
    console's directory is in one that other users may pass through (as
    /tmp is), so that only the console's own modes keep them out."""
    program = tmp_path / 'served.py'
    program.write_text(SERVED)
    parent = Path(tempfile.mkdtemp(prefix='ferroloop-console-test-'))
    os.chmod(parent, 0o711)
    console_dir = parent / 'console'
    env = dict(os.environ, FERROLOOP_CONSOLE='1', FERROLOOP_CONSOLE_DIR=str(console_dir))
    proc = subprocess.Popen([sys.executable, '-m', 'ferroloop', 'run', str(program)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline() == 'ready\n'
        yield proc, console_dir, program
    finally:
        proc.stdin.close()
        proc.wait(30)
        proc.stdout.close()
        shutil.rmtree(parent)


def ps(pid, console_dir):
    return subprocess.run([sys.executable, '-m', 'ferroloop', 'ps', str(pid)],
                          capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, FERROLOOP_CONSOLE_DIR=str(console_dir)))


def test_ps_lists_the_tasks_and_where_they_wait(served):
    proc, console_dir, program = served
    shown = ps(proc.pid, console_dir)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f'process {proc.pid}: {program}'
    assert lines[1] == '3 task(s)'
    assert lines[2].split() == ['loop', 'task', 'coroutine', 'state', 'waits', 'at', 'steps',
                                'busy']
    rows = {line.split()[1]: line.split() for line in lines[3:]}
    source = SERVED.splitlines()
    worker_line = next(i for i, l in enumerate(source, 1) if 'worker waits here' in l)
    main_line = next(i for i, l in enumerate(source, 1) if 'main waits here' in l)
    assert rows['worker-1'][2:5] == ['worker', 'waiting', f'{program}:{worker_line}']
    assert rows['worker-2'][2:5] == ['worker', 'waiting', f'{program}:{worker_line}']
    assert rows['Task-1'][2:5] == ['main', 'waiting', f'{program}:{main_line}']
    assert int(rows['worker-1'][5]) >= 1


def test_the_socket_is_private(served):
    proc, console_dir, _ = served
    assert stat.S_IMODE(os.stat(console_dir).st_mode) == 0o700
    sock = console_dir / f'{proc.pid}.sock'
    info = os.stat(sock)
    assert stat.S_ISSOCK(info.st_mode)
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.getuid()


def connect_as(uid, path):
    """Connects to ``path`` as user ``uid`` (in a forked child) and returns
    what it got: the answer, or the name of the error."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover  (the child reports through the pipe)
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                    client.settimeout(10)
                    client.connect(path)
                    try:
                        client.sendall(b'{"command": "ps"}\n')
                    except BrokenPipeError:
                        pass  # a refusal can come before the request is read
                    result = client.recv(65536).decode()
            except OSError as exc:
                result = type(exc).__name__
            os.write(write_end, result.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        result = pipe.read()
    os.waitpid(child, 0)
    return result


needs_root = pytest.mark.skipif(os.getuid() != 0, reason='switching users needs root')


@needs_root
def test_another_user_cannot_connect(served):
    proc, console_dir, _ = served
    assert connect_as(NOBODY, str(console_dir / f'{proc.pid}.sock')) == 'PermissionError'


@needs_root
def test_another_user_is_refused_even_if_the_modes_are_opened(served):
    proc, console_dir, _ = served
    sock = console_dir / f'{proc.pid}.sock'
    os.chmod(console_dir, 0o755)
    os.chmod(sock, 0o666)
    answer = json.loads(connect_as(NOBODY, str(sock)))
    assert answer == {'ok': False, 'error': 'refused: another user'}
    # The owner is still answered.
    os.chmod(console_dir, 0o700)
    assert ps(proc.pid, console_dir).returncode == 0


def test_a_directory_open_to_others_is_not_served(tmp_path):
    console_dir = tmp_path / 'open'
    console_dir.mkdir(mode=0o755)
    os.chmod(console_dir, 0o755)
    program = tmp_path / 'p.py'
    program.write_text('import asyncio\nasyncio.run(asyncio.sleep(0))\nprint("ran")\n')
    done = subprocess.run([sys.executable, '-m', 'ferroloop', 'run', str(program)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, FERROLOOP_CONSOLE='1',
                                   FERROLOOP_CONSOLE_DIR=str(console_dir)))
    assert done.stdout == 'ran\n'
    assert done.stderr == (f'ferroloop: console not served: {console_dir} is open to other '
                           'users (mode 755)\n')
    assert list(console_dir.iterdir()) == []


def test_nothing_is_served_without_the_variable(tmp_path):
    program = tmp_path / 'p.py'
    program.write_text('import asyncio, threading\nasyncio.run(asyncio.sleep(0))\n'
                       'print(sorted(t.name for t in threading.enumerate()))\n')
    console_dir = tmp_path / 'console'
    env = {k: v for k, v in os.environ.items() if k != 'FERROLOOP_CONSOLE'}
    env['FERROLOOP_CONSOLE_DIR'] = str(console_dir)
    done = subprocess.run([sys.executable, '-m', 'ferroloop', 'run', str(program)],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.stdout == "['MainThread']\n"
    assert not console_dir.exists()


def test_the_socket_is_removed_at_exit(tmp_path):
    program = tmp_path / 'p.py'
    program.write_text('import asyncio\nasyncio.run(asyncio.sleep(0))\n')
    console_dir = tmp_path / 'console'
    done = subprocess.run([sys.executable, '-m', 'ferroloop', 'run', str(program)],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, FERROLOOP_CONSOLE='1',
                                   FERROLOOP_CONSOLE_DIR=str(console_dir)))
    assert done.returncode == 0, done.stderr
    assert list(console_dir.iterdir()) == []
