"""Signals (handlers and Ctrl-C) and resource hygiene: no descriptors,
threads or memory left behind by loops that were created, run and closed."""

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import ferroloop
from conftest import LOOP_FACTORIES, ROOT, open_fd_count


def test_signal_handler_runs_as_a_callback(loop):
    got = []

    def on_signal(*args):
        got.append(args)
        loop.stop()

    loop.add_signal_handler(signal.SIGUSR1, on_signal, 'arg')
    loop.call_soon(os.kill, os.getpid(), signal.SIGUSR1)
    loop.call_later(10, loop.stop)
    loop.run_forever()
    assert got == [('arg',)]
    assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_arriving_while_the_loop_sleeps(loop):
    got = []
    loop.add_signal_handler(signal.SIGALRM, lambda: (got.append('alarm'), loop.stop()))
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    loop.call_later(10, loop.stop)
    loop.run_forever()
    loop.remove_signal_handler(signal.SIGALRM)
    assert got == ['alarm']


def test_signal_handler_errors_match_asyncio(loop):
    with pytest.raises(RuntimeError, match='sig 9 cannot be caught'):
        loop.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises(RuntimeError, match='sig 19 cannot be caught'):
        loop.add_signal_handler(signal.SIGSTOP, print)
    with pytest.raises(ValueError, match='invalid signal number'):
        loop.add_signal_handler(1000, print)
    with pytest.raises(TypeError, match='sig must be an int'):
        loop.add_signal_handler('SIGINT', print)

    async def coro():
        pass
    with pytest.raises(TypeError, match='coroutines cannot be used with add_signal_handler'):
        loop.add_signal_handler(signal.SIGUSR2, coro)


def test_signal_handlers_need_the_main_thread(loop):
    errors = []

    def in_thread():
        try:
            loop.add_signal_handler(signal.SIGUSR2, print)
        except RuntimeError as exc:
            errors.append(exc)

    t = threading.Thread(target=in_thread)
    t.start()
    t.join(10)
    assert len(errors) == 1


INTERRUPTIBLE = '''
import asyncio, sys

async def main():
    print('ready', flush=True)
    if sys.argv[1] == 'idle':
        await asyncio.sleep(60)
    else:
        while True:
            await asyncio.sleep(0)

asyncio.run(main())
'''


@pytest.mark.parametrize('mode', ['idle', 'busy'])
def test_ctrl_c_interrupts_promptly(tmp_path, mode):
    program = tmp_path / 'interruptible.py'
    program.write_text(INTERRUPTIBLE)
    outcomes = {}
    for loop in LOOP_FACTORIES:
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / 'examples' / 'run_with.py'), loop, str(program), mode],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == 'ready\n'
        time.sleep(0.2)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=10)
        finally:
            proc.kill()
        outcomes[loop] = (proc.returncode, stderr.strip().splitlines()[-1])
        assert time.monotonic() - sent < 5
    assert outcomes['ferroloop'] == outcomes['asyncio']
    assert outcomes['ferroloop'][1] == 'KeyboardInterrupt'


def _thread_names():
    return sorted(t.name for t in threading.enumerate())


def _rss_kib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') // 1024


def _use_a_loop(loop):
    async def main():
        fut = loop.create_future()
        loop.call_later(0.0001, fut.set_result, 1)
        await fut
        await asyncio.gather(*(asyncio.sleep(0) for _ in range(5)))
        loop.call_later(100, print)
        loop.call_soon_threadsafe(len, '')
        return await fut

    loop.run_until_complete(main())


def test_a_thousand_loops_leave_nothing_behind():
    def cycle(n):
        for _ in range(n):
            loop = ferroloop.new_event_loop()
            _use_a_loop(loop)
            loop.close()
        gc.collect()

    cycle(50)
    fds, threads, rss = open_fd_count(), _thread_names(), _rss_kib()
    cycle(1000)
    assert open_fd_count() == fds
    assert _thread_names() == threads
    # Generous: a leak of one small object per loop would already show as
    # far less than this; a leaked loop (epoll fd, buffers) far more.
    assert _rss_kib() - rss < 8 * 1024


def test_unclosed_loop_warns_and_releases_its_descriptors():
    gc.collect()
    fds = open_fd_count()
    loop = ferroloop.new_event_loop()
    assert open_fd_count() > fds
    with pytest.warns(ResourceWarning, match='unclosed event loop'):
        del loop
        gc.collect()
    assert open_fd_count() == fds


def test_closed_loop_releases_callbacks_it_held():
    import weakref

    class Payload:
        pass

    loop = ferroloop.new_event_loop()
    payload = Payload()
    ref = weakref.ref(payload)
    loop.call_soon(print, payload)
    loop.call_later(100, print, payload)
    del payload
    loop.close()
    gc.collect()
    assert ref() is None
