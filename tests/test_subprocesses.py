"""Subprocesses (subprocess_exec/subprocess_shell, create_subprocess_*):
the same programs on stock asyncio and on ferroloop, results and errors
compared. ferroloop's reaping is tested on both of its paths (pidfd and the
polling fallback). Every wait has a timeout."""

import asyncio
import contextvars
import gc
import os
import resource
import signal
import subprocess
import sys
import threading

import pytest

import ferroloop
from conftest import assert_same_on_both, on_both, open_fd_count, run_program_on_both

TIMEOUT = 30
PY = sys.executable
PIPE = asyncio.subprocess.PIPE


@pytest.fixture(params=['pidfd', 'polling'])
def reaping(request, monkeypatch):
    """Runs a test with ferroloop reaping through pidfds, then by polling
    (the path for kernels without them)."""
    monkeypatch.setattr(ferroloop.Loop, '_use_pidfd', request.param == 'pidfd')
    return request.param


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


def both(coro_fn):
    """The result of ``coro_fn()`` on each loop, compared."""
    return assert_same_on_both(lambda loop: run(loop, coro_fn()))


def error_of(exc):
    return (type(exc).__name__, str(exc), getattr(exc, 'errno', None),
            getattr(exc, 'filename', None))


def test_output_exit_code_and_stdin(reaping):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, '-c', 'import sys; d = sys.stdin.buffer.read(); '
                      'sys.stdout.buffer.write(d[::-1]); '
                      'sys.stderr.write("err"); sys.exit(7)',
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await p.communicate(b'hello')
        return out, err, p.returncode, await p.wait()
    assert both(main) == (b'olleh', b'err', 7, 7)


def test_shell_and_stderr_to_stdout(reaping):
    async def main():
        p = await asyncio.create_subprocess_shell(
            'echo out; echo err 1>&2; exit 3', stdout=PIPE,
            stderr=asyncio.subprocess.STDOUT)
        out, err = await p.communicate()
        return sorted(out.split()), err, p.returncode
    assert both(main) == ([b'err', b'out'], None, 3)


def test_stdio_as_devnull_fds_and_files(tmp_path, reaping):
    async def main():
        target = tmp_path / 'out.txt'
        with open(target, 'wb') as f:
            p = await asyncio.create_subprocess_exec(
                'sh', '-c', 'cat; echo to-file; echo to-fd 1>&2',
                stdin=subprocess.DEVNULL, stdout=f, stderr=f.fileno())
            rc = await p.wait()
        data = target.read_bytes()
        target.unlink()
        return rc, sorted(data.split())
    assert both(main) == (0, [b'to-fd', b'to-file'])


def test_children_stdio_are_real_pipes(reaping):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, '-c', 'import os, stat, sys; '
                      'print([stat.S_ISFIFO(os.fstat(i).st_mode) for i in (0, 1, 2)]); '
                      'print(open("/dev/stdin").read())',
            stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, _ = await p.communicate(b'via /dev/stdin')
        return out
    assert both(main) == b'[True, True, True]\nvia /dev/stdin\n'


def test_keywords_cwd_env_umask_session_group(tmp_path, reaping):
    async def main():
        code = ('import os; print(os.getcwd(), os.environ.get("FERRO_X"), '
                'oct(os.umask(0)), os.getsid(0) == os.getpid(), '
                'os.getpgrp() == os.getpid())')
        results = []
        for kwargs in ({'cwd': str(tmp_path), 'env': {'FERRO_X': 'y'}, 'umask': 0o27},
                       {'start_new_session': True},
                       {'process_group': 0}):
            p = await asyncio.create_subprocess_exec(PY, '-c', code, stdout=PIPE,
                                                     **kwargs)
            out, _ = await p.communicate()
            results.append(out.decode().split())
        return results
    results = both(main)
    assert results[0][:3] == [str(tmp_path), 'y', '0o27']
    assert results[1][3] == 'True' and results[2][4] == 'True'


def test_pass_fds_close_fds_and_executable(reaping):
    async def main():
        r, w = os.pipe()
        try:
            code = 'import os, sys; os.write(int(sys.argv[1]), b"through pass_fds")'
            p = await asyncio.create_subprocess_exec(PY, '-c', code, str(w), pass_fds=[w])
            rc1 = await p.wait()
            p = await asyncio.create_subprocess_exec(
                'not-this-name', '-c', 'import sys; print(sys.argv[0])',
                executable=PY, stdout=PIPE)
            out, _ = await p.communicate()
            p = await asyncio.create_subprocess_exec(
                PY, '-c', f'import os; os.fstat({w})', close_fds=False,
                stderr=subprocess.DEVNULL)
            rc3 = await p.wait()
            p = await asyncio.create_subprocess_exec(
                PY, '-c', f'import os; os.fstat({w})', stderr=subprocess.DEVNULL)
            rc4 = await p.wait()
            return rc1, os.read(r, 100), out, rc3, rc4
        finally:
            os.close(r)
            os.close(w)
    # Without pass_fds, an inheritable-less descriptor is closed in the
    # child either way (Python's descriptors are close-on-exec).
    assert both(main) == (0, b'through pass_fds', b'-c\n', 1, 1)


def test_restore_signals_and_user_group(reaping):
    async def main():
        outs = []
        for restore in (True, False):
            # The ignored signals of a child that changes none itself.
            p = await asyncio.create_subprocess_exec(
                'grep', 'SigIgn', '/proc/self/status', stdout=PIPE,
                restore_signals=restore)
            mask = int((await p.communicate())[0].split()[1], 16)
            outs.append(bool(mask & (1 << (signal.SIGPIPE - 1))))
        p = await asyncio.create_subprocess_exec(
            PY, '-c', 'import os; print(os.getuid(), os.getgid(), os.getgroups())',
            stdout=PIPE, user=os.getuid(), group=os.getgid(),
            extra_groups=[os.getgid()])
        outs.append((await p.communicate())[0])
        return outs
    assert both(main)[:2] == [False, True]


def test_preexec_fn_runs_in_the_child(reaping):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, '-c', 'import os; print(os.environ["SET_IN_CHILD"])',
            stdout=PIPE, preexec_fn=lambda: os.environ.__setitem__('SET_IN_CHILD', 'yes'))
        out, _ = await p.communicate()
        return out, p.returncode
    assert both(main) == (b'yes\n', 0)


@pytest.mark.parametrize('case', [
    'missing program', 'missing in a path', 'not executable', 'bad cwd',
    'preexec raises', 'preexec and missing program', 'bad user',
    'embedded null', 'illegal env name', 'text mode', 'bufsize',
    'shell with exec', 'no shell with shell', 'cmd not a string',
    'universal_newlines', 'path-like with shell',
])
def test_errors_are_asyncio_s(case, reaping, tmp_path):
    script = tmp_path / 'script'
    script.write_text('#!/bin/sh\n')
    calls = {
        'missing program': lambda: asyncio.create_subprocess_exec('ferroloop-no-such-program'),
        'missing in a path': lambda: asyncio.create_subprocess_exec('/no/such/dir/prog'),
        'not executable': lambda: asyncio.create_subprocess_exec(str(script)),
        'bad cwd': lambda: asyncio.create_subprocess_exec('true', cwd='/no/such/dir'),
        'preexec raises': lambda: asyncio.create_subprocess_exec(
            'true', preexec_fn=lambda: 1 / 0),
        'preexec and missing program': lambda: asyncio.create_subprocess_exec(
            'ferroloop-no-such-program', preexec_fn=lambda: None),
        'bad user': lambda: asyncio.create_subprocess_exec(
            'true', user='ferroloop-no-such-user'),
        'embedded null': lambda: asyncio.create_subprocess_exec('true', 'a\0b'),
        'illegal env name': lambda: asyncio.create_subprocess_exec(
            'true', env={'A=B': 'c'}),
        'text mode': lambda: asyncio.create_subprocess_exec('true', text=True),
        'bufsize': lambda: asyncio.get_running_loop().subprocess_exec(
            asyncio.SubprocessProtocol, 'true', bufsize=1),
        'shell with exec': lambda: asyncio.get_running_loop().subprocess_exec(
            asyncio.SubprocessProtocol, 'true', shell=True),
        'no shell with shell': lambda: asyncio.get_running_loop().subprocess_shell(
            asyncio.SubprocessProtocol, 'true', shell=False),
        'cmd not a string': lambda: asyncio.get_running_loop().subprocess_shell(
            asyncio.SubprocessProtocol, ['true']),
        'universal_newlines': lambda: asyncio.create_subprocess_shell(
            'true', universal_newlines=True),
        'path-like with shell': lambda: asyncio.get_running_loop().subprocess_shell(
            asyncio.SubprocessProtocol, tmp_path),
    }

    async def main():
        before = open_fd_count()
        try:
            await calls[case]()
        except BaseException as exc:
            error = error_of(exc)
        else:
            error = None
        await asyncio.sleep(0.05)
        return error, open_fd_count() == before
    error, no_leak = both(main)
    assert error is not None and no_leak


def test_signals_terminate_kill_and_lookup_errors(reaping):
    async def main():
        results = []
        for action in ('send_signal', 'terminate', 'kill'):
            p = await asyncio.create_subprocess_exec('sleep', '30')
            if action == 'send_signal':
                p.send_signal(signal.SIGINT)
            else:
                getattr(p, action)()
            results.append(await p.wait())
        # After the child is gone: asyncio's rules for each version.
        try:
            p.kill()
            results.append('no error')
        except ProcessLookupError:
            results.append('ProcessLookupError')
        return results
    assert both(main)[:3] == [-signal.SIGINT, -signal.SIGTERM, -signal.SIGKILL]


class OrderRecorder(asyncio.SubprocessProtocol):
    """Records the callbacks a subprocess transport makes, in order, and
    calls ``after_each(protocol)`` after each one, so that a test can make
    the child's next step depend on a callback. Then the order compared is
    caused, not a race: asyncio documents that process_exited() may come
    before or after the pipes' callbacks, and for a child that exits as it
    closes its stdout, which comes first is timing on either loop."""

    def __init__(self, loop, events, after_each):
        self.done = loop.create_future()
        self.events = events
        self.data = b''
        self.after_each = after_each

    def record(self, event):
        self.events.append(event)
        self.after_each(self)

    def connection_made(self, transport):
        self.transport = transport
        self.record('made')

    def pipe_data_received(self, fd, data):
        self.data += data
        if ('data', fd) not in self.events:
            self.record(('data', fd))
        else:
            self.after_each(self)

    def pipe_connection_lost(self, fd, exc):
        self.record(('pipe lost', fd, exc))

    def process_exited(self):
        self.record('exited')

    def connection_lost(self, exc):
        self.events.append(('lost', exc))
        self.done.set_result(None)


def run_recorded(loop, child_code, after_each):
    """Runs ``child_code`` under an OrderRecorder; returns its events, the
    output, and the transport's state once connection_lost has run."""
    events = []

    async def main():
        transport, protocol = await loop.subprocess_exec(
            lambda: OrderRecorder(loop, events, after_each),
            PY, '-c', child_code, stdin=None, stderr=None)
        await protocol.done
        info = (transport.get_returncode(), transport.get_pipe_transport(0),
                type(transport.get_pipe_transport(1)).__name__.replace('_Unix', ''),
                isinstance(transport.get_extra_info('subprocess'), subprocess.Popen),
                transport.is_closing())
        transport.close()
        return events, protocol.data, info
    return run(loop, main())


def test_callback_order_when_the_pipe_closes_before_the_exit(reaping):
    # The child closes its stdout, then waits to be terminated; the
    # terminate() comes from pipe_connection_lost.
    child = f'import os, time\nprint("x", flush=True)\nos.close(1)\ntime.sleep({TIMEOUT})'

    def program(loop):
        terminated = []

        def terminate_once_stdout_is_lost(protocol):
            if ('pipe lost', 1, None) in protocol.events and not terminated:
                terminated.append(True)
                protocol.transport.terminate()
        return run_recorded(loop, child, terminate_once_stdout_is_lost)

    assert assert_same_on_both(program) == (
        ['made', ('data', 1), ('pipe lost', 1, None), 'exited', ('lost', None)],
        b'x\n', (-signal.SIGTERM, None, 'ReadPipeTransport', True, False))


def test_callback_order_when_the_exit_comes_before_the_pipe_closes(reaping):
    # The child leaves a grandchild holding its stdout, prints the
    # grandchild's pid and exits. The grandchild is killed once both the
    # exit and that pid have arrived; only then does stdout reach its end.
    child = ('import subprocess, sys\n'
             'g = subprocess.Popen([sys.executable, "-c", "import time; '
             f'time.sleep({TIMEOUT})"], stdin=subprocess.DEVNULL)\n'
             'print(g.pid, flush=True)')

    def program(loop):
        killed = []

        def kill_grandchild_once_ready(protocol):
            if ('exited' in protocol.events and protocol.data.endswith(b'\n')
                    and not killed):
                killed.append(True)
                os.kill(int(protocol.data), signal.SIGKILL)
        events, data, info = run_recorded(loop, child, kill_grandchild_once_ready)
        # Whether the pid arrives before or after the exit is timing.
        return [e for e in events if e != ('data', 1)], data.strip().isdigit(), info

    assert assert_same_on_both(program) == (
        ['made', 'exited', ('pipe lost', 1, None), ('lost', None)],
        True, (0, None, 'ReadPipeTransport', True, False))


def test_callbacks_run_in_the_context_the_transport_was_made_in(reaping):
    var = contextvars.ContextVar('var', default='outside')

    def program(loop):
        seen = []

        class P(asyncio.SubprocessProtocol):
            def __init__(self):
                self.done = loop.create_future()

            def pipe_data_received(self, fd, data):
                seen.append(('data', var.get()))

            def process_exited(self):
                seen.append(('exited', var.get()))

            def connection_lost(self, exc):
                seen.append(('lost', var.get()))
                self.done.set_result(None)

        async def start():
            var.set('inside')
            return await loop.subprocess_exec(P, 'echo', 'x', stdin=None, stderr=None)

        async def main():
            transport, protocol = await loop.create_task(start())
            await protocol.done
            transport.close()
            return sorted(set(seen))
        return run(loop, main())
    results = on_both(program)
    inside = [('data', 'inside'), ('exited', 'inside'), ('lost', 'inside')]
    assert results['ferroloop'] == inside
    if sys.version_info >= (3, 12):
        # 3.11's default watcher reports the exit from a thread of its own,
        # outside the context; from 3.12 on asyncio watches a pidfd too.
        assert results['asyncio'] == inside


def test_five_megabytes_each_way_do_not_deadlock(reaping):
    async def main():
        payload = os.urandom(5 * 1024 * 1024)
        p = await asyncio.create_subprocess_exec(
            'cat', stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, err = await p.communicate(payload)
        return out == payload, err, p.returncode
    assert both(main) == (True, b'', 0)


def test_child_that_exits_without_reading_its_stdin(reaping):
    async def main():
        p = await asyncio.create_subprocess_exec('true', stdin=PIPE)
        out = await p.communicate(b'x' * (4 * 1024 * 1024))
        return out, p.returncode
    assert both(main) == ((None, None), 0)


def test_communicate_cancelled_then_kill(reaping):
    async def main():
        p = await asyncio.create_subprocess_exec('sleep', '30', stdout=PIPE)
        task = asyncio.ensure_future(p.communicate())
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
            cancelled = False
        except asyncio.CancelledError:
            cancelled = True
        p.kill()
        return cancelled, await p.wait()
    assert both(main) == (True, -signal.SIGKILL)


def test_wait_for_an_exit_while_output_is_still_unread(reaping):
    async def main():
        p = await asyncio.create_subprocess_exec(
            PY, '-c', 'print("x" * 100000)', stdout=PIPE)
        rc = await p.wait()
        rest = await p.stdout.read()
        return rc, len(rest)
    assert both(main) == (0, 100001)


def test_a_thousand_concurrent_children(reaping):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        pytest.skip(f'needs 4096 descriptors, has {soft}')

    def program(loop):
        async def one(i):
            p = await asyncio.create_subprocess_exec(
                'sh', '-c', f'read x; echo "$x {i}"', stdin=PIPE, stdout=PIPE)
            out, _ = await p.communicate(b'child')
            return out

        async def main():
            threads = threading.active_count()
            peak = threads

            def sample():
                nonlocal peak, sampler
                peak = max(peak, threading.active_count())
                sampler = loop.call_later(0.001, sample)
            sampler = loop.call_later(0, sample)
            before = open_fd_count()
            outs = await asyncio.gather(*[one(i) for i in range(1000)])
            sampler.cancel()
            await asyncio.sleep(0.05)
            gc.collect()
            return (outs == [f'child {i}\n'.encode() for i in range(1000)],
                    open_fd_count() - before, peak - threads)
        return run(loop, main())
    results = on_both(program)
    # All outputs right, no descriptor left, and no thread ever started
    # (stock 3.11's watcher starts one per child).
    assert results['ferroloop'] == (True, 0, 0)
    assert results['asyncio'][:2] == (True, 0)


def test_no_zombie_and_no_descriptor_left(reaping):
    def program(loop):
        async def main():
            before = open_fd_count()
            pids = []
            for _ in range(50):
                p = await asyncio.create_subprocess_exec('true', stdout=PIPE)
                await p.communicate()
                pids.append(p.pid)
            gc.collect()
            zombies = []
            for pid in pids:
                try:
                    with open(f'/proc/{pid}/stat') as f:
                        if f.read().split()[2] == 'Z':
                            zombies.append(pid)
                except FileNotFoundError:
                    pass
            return zombies, open_fd_count() - before
        return run(loop, main())
    assert assert_same_on_both(program) == ([], 0)


def test_closing_the_transport_kills_a_running_child(reaping):
    async def main():
        loop = asyncio.get_running_loop()
        transport, _ = await loop.subprocess_exec(
            asyncio.SubprocessProtocol, 'sleep', '30')
        transport.close()
        return await asyncio.wait_for(transport._wait(), TIMEOUT)
    assert both(main) == -signal.SIGKILL


def test_a_child_watcher_set_by_3_11_code_still_works():
    if sys.version_info >= (3, 12):
        pytest.skip('child watchers are deprecated from 3.12 on')
    results = {}
    for watcher_class in (asyncio.SafeChildWatcher, asyncio.FastChildWatcher,
                          asyncio.ThreadedChildWatcher):
        async def main():
            p = await asyncio.create_subprocess_exec('sh', '-c', 'exit 5')
            return await p.wait()
        policy = ferroloop.EventLoopPolicy()
        asyncio.set_event_loop_policy(policy)
        try:
            loop = policy.new_event_loop()
            asyncio.set_event_loop(loop)
            watcher = watcher_class()
            watcher.attach_loop(loop)
            policy.set_child_watcher(watcher)
            results[watcher_class.__name__] = run(loop, main())
            policy.set_child_watcher(None)
            watcher.attach_loop(None)
            watcher.close()
            loop.close()
        finally:
            asyncio.set_event_loop(None)
            asyncio.set_event_loop_policy(None)
    assert results == {'SafeChildWatcher': 5, 'FastChildWatcher': 5,
                       'ThreadedChildWatcher': 5}


def test_subprocess_in_a_loop_of_another_thread(reaping):
    def in_thread():
        loop = ferroloop.new_event_loop()

        async def main():
            p = await asyncio.create_subprocess_exec('sh', '-c', 'exit 4')
            return await p.wait()
        try:
            result.append(run(loop, main()))
        finally:
            loop.close()
    result = []
    t = threading.Thread(target=in_thread)
    t.start()
    t.join(TIMEOUT)
    assert result == [4]


def test_starting_and_talking_to_a_child_makes_no_blocking_call(reaping):
    blockbuster = pytest.importorskip('blockbuster')
    loop = ferroloop.new_event_loop()

    async def main():
        p = await asyncio.create_subprocess_exec(
            'cat', stdin=PIPE, stdout=PIPE, stderr=PIPE)
        out, _ = await p.communicate(b'x' * 100_000)
        p = await asyncio.create_subprocess_shell('exit 2')
        rc = await p.wait()
        try:
            await asyncio.create_subprocess_exec('ferroloop-no-such-program')
        except FileNotFoundError:
            pass
        p = await asyncio.create_subprocess_exec('true', preexec_fn=lambda: None)
        await p.wait()
        return len(out), rc
    detector = blockbuster.BlockBuster(scanned_modules=['ferroloop'])
    detector.activate()
    try:
        assert run(loop, main()) == (100_000, 2)
    finally:
        detector.deactivate()
        loop.close()


def test_a_parent_without_standard_descriptors():
    # The child's pipes then get descriptors 0-2 themselves: the child must
    # not overwrite one with another while putting them in place.
    source = '''
import asyncio, os, sys
out = os.dup(1)
for fd in (0, 1, 2):
    os.close(fd)

async def main():
    p = await asyncio.create_subprocess_exec(
        'sh', '-c', 'cat; echo err >&2', stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    return await p.communicate(b'in')

os.write(out, repr(asyncio.run(main())).encode())
'''
    runs = run_program_on_both(source)
    assert runs['ferroloop'].stdout == runs['asyncio'].stdout == "(b'in', b'err\\n')"
