"""Shared fixtures: every behaviour test runs on stock asyncio and on
ferroloop, and most compare the two directly."""

import asyncio
import gc
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import ferroloop

ROOT = Path(__file__).resolve().parent.parent

# A parent that ignores SIGINT (a shell's background job does) passes the
# ignoring on through exec to every child, where Ctrl-C and send_signal(SIGINT)
# would then do nothing; the tests that interrupt children need the default.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
# Sample suites that tests/test_pytest_plugin.py runs in pytests of their own.
collect_ignore = ['plugin_samples']
LOOP_FACTORIES = {
    'asyncio': asyncio.new_event_loop,
    'ferroloop': ferroloop.new_event_loop,
}


@pytest.fixture(params=sorted(LOOP_FACTORIES))
def loop_name(request):
    return request.param


@pytest.fixture
def new_loop(loop_name):
    """A factory of loops of the kind under test; every loop it makes is
    closed at the end of the test."""
    made = []

    def make():
        loop = LOOP_FACTORIES[loop_name]()
        made.append(loop)
        return loop

    yield make
    for loop in made:
        if not loop.is_closed():
            loop.close()


@pytest.fixture
def loop(new_loop):
    return new_loop()


def on_both(fn, *args):
    """Runs ``fn(loop, *args)`` with a fresh loop of each kind and returns
    {'asyncio': result, 'ferroloop': result}."""
    results = {}
    for name, factory in LOOP_FACTORIES.items():
        loop = factory()
        try:
            results[name] = fn(loop, *args)
        finally:
            loop.close()
    return results


def assert_same_on_both(fn, *args):
    results = on_both(fn, *args)
    assert results['ferroloop'] == results['asyncio']
    return results['ferroloop']


class ProgramRun:
    def __init__(self, proc, took, tmpdir):
        # The program's directory differs between runs; hide it.
        self.stdout = proc.stdout.replace(tmpdir, '<dir>')
        self.stderr = proc.stderr.replace(tmpdir, '<dir>')
        self.returncode = proc.returncode
        self.took = took


def run_program(source, loop, timeout=60, name='program.py', env=None):
    """Runs a whole program in a fresh interpreter on the given loop.
    The program file has the same name on both loops, so warnings and
    tracebacks that mention it compare equal."""
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / name
        program.write_text(source)
        timing = Path(tmp) / 'timing'
        env = dict(os.environ, FERROLOOP_TIMING_FILE=str(timing),
                   PYTHONDONTWRITEBYTECODE='1', **(env or {}))
        proc = subprocess.run(
            [sys.executable, str(ROOT / 'examples' / 'run_with.py'), loop, str(program)],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
        took = float(timing.read_text()) if timing.exists() else float('nan')
        return ProgramRun(proc, took, tmp)


def run_program_on_both(source, **kwargs):
    return {name: run_program(source, name, **kwargs) for name in LOOP_FACTORIES}


def open_fd_count():
    return len(os.listdir('/proc/self/fd'))


def wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError('condition not reached in time')
        gc.collect()
        time.sleep(0.01)


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def wait_for_port(port, proc, timeout):
    """Waits until something accepts on ``port``, while server process
    ``proc`` (a Popen with stderr piped) is alive."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f'server exited: {proc.stderr.read()}')
        try:
            socket.create_connection(('127.0.0.1', port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError('server did not start')
