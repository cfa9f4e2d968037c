"""``python -m ferroloop``: run and trace give a program exactly what
``python script.py`` gives it; every mistake is one line and a non-zero
exit."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

FERROLOOP = [sys.executable, '-m', 'ferroloop']


def run(command, cwd, env=None, timeout=60):
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1', **(env or {})))


def write(directory, name, source):
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


INTROSPECT = '''
    import asyncio, os, sys
    print(sys.argv)
    print(__name__, __file__, __spec__, type(__loader__).__name__, __package__, __cached__)
    print(sorted(globals()))
    print(sys.path[0] == os.path.dirname(os.path.realpath(__file__)))
    print(sys.modules['__main__'] is sys.modules[__name__])

    async def main():
        await asyncio.sleep(0.01)
        return 'done'

    print(asyncio.run(main()))
    if sys.argv[1:] == ['raise']:
        def inner():
            raise ValueError('boom')
        inner()
    if sys.argv[1:] == ['exit']:
        sys.exit(3)
    if sys.argv[1:] == ['exit-text']:
        sys.exit('a message')
    if sys.argv[1:] == ['interrupt']:
        raise KeyboardInterrupt
'''


@pytest.mark.parametrize('args', [[], ['a', '--b', 'c d'], ['raise'], ['exit'], ['exit-text'],
                                  ['interrupt']])
def test_run_is_python_script_py(tmp_path, args):
    write(tmp_path, 'prog.py', INTROSPECT)
    python = run([sys.executable, 'prog.py', *args], tmp_path)
    ours = run([*FERROLOOP, 'run', 'prog.py', *args], tmp_path)
    assert (ours.stdout, ours.stderr, ours.returncode) == (
        python.stdout, python.stderr, python.returncode)


def test_run_of_a_script_elsewhere_and_a_syntax_error(tmp_path):
    write(tmp_path, 'sub/prog.py', INTROSPECT)
    write(tmp_path, 'bad.py', 'def broken(:\n    pass\n')
    for args in (['sub/prog.py', 'x'], ['bad.py']):
        python = run([sys.executable, *args], tmp_path)
        ours = run([*FERROLOOP, 'run', *args], tmp_path)
        assert (ours.stdout, ours.stderr, ours.returncode) == (
            python.stdout, python.stderr, python.returncode)


def test_run_m_is_python_m(tmp_path):
    write(tmp_path, 'pkg/__init__.py', '')
    write(tmp_path, 'pkg/tool.py', INTROSPECT.replace('__file__, __spec__', '__file__, __spec__.name'))
    for args in ([], ['raise'], ['exit']):
        python = run([sys.executable, '-m', 'pkg.tool', *args], tmp_path)
        ours = run([*FERROLOOP, 'run', '-m', 'pkg.tool', *args], tmp_path)
        assert (ours.stdout, ours.stderr, ours.returncode) == (
            python.stdout, python.stderr, python.returncode)


def test_every_way_of_running_asyncio_uses_ferroloop(tmp_path):
    write(tmp_path, 'prog.py', '''
        import asyncio, warnings
        warnings.simplefilter('ignore', DeprecationWarning)

        async def which():
            return type(asyncio.get_running_loop()).__module__

        print(asyncio.get_event_loop().run_until_complete(which()))
        print(asyncio.run(which()))
        with asyncio.Runner() as runner:
            print(runner.run(which()))
        loop = asyncio.new_event_loop()
        print(loop.run_until_complete(which()))
        loop.close()
    ''')
    ours = run([*FERROLOOP, 'run', 'prog.py'], tmp_path)
    assert ours.stdout.splitlines() == ['ferroloop.loop'] * 4, ours.stderr
    assert ours.returncode == 0


LESSON = '''
    import asyncio, time

    async def work(name, delay):
        time.sleep(delay)
        return name

    async def main():
        print(await asyncio.gather(work('a', 0.2), work('b', 0.01)))

    asyncio.run(main())
'''


def test_run_detect_blocking_and_stats(tmp_path):
    write(tmp_path, 'prog.py', LESSON)
    ours = run([*FERROLOOP, 'run', '--detect-blocking', '0.05', '--stats', 'prog.py'], tmp_path)
    assert ours.returncode == 0
    assert ours.stdout == "['a', 'b']\n"
    assert ours.stderr.count('The event loop was blocked') == 1
    assert f"(coroutine work) at {tmp_path / 'prog.py'}:5" in ours.stderr
    table = ours.stderr[ours.stderr.index('ferroloop task statistics'):].splitlines()
    assert table[1].split()[:6] == ['task', 'coroutine', 'steps', 'busy', 'scheduled', 'idle']
    rows = [line.split() for line in table[2:]]
    assert rows[0][1] == 'work'  # the 0.2 s task is busiest
    assert {row[1] for row in rows} >= {'work', 'main'}


def test_environment_task_stats(tmp_path):
    write(tmp_path, 'prog.py', LESSON)
    ours = run([sys.executable, 'prog.py'], tmp_path, env={'FERROLOOP_TASK_STATS': '1'})
    assert 'ferroloop task statistics' not in ours.stderr  # stock asyncio: nothing
    runner = write(tmp_path, 'on_ferroloop.py', '''
        import runpy, sys, ferroloop
        ferroloop.install()
        runpy.run_path(sys.argv[1], run_name='__main__')
    ''')
    ours = run([sys.executable, str(runner), 'prog.py'], tmp_path,
               env={'FERROLOOP_TASK_STATS': '1'})
    assert ours.stdout == "['a', 'b']\n"
    assert 'ferroloop task statistics' in ours.stderr


def test_trace_writes_the_timeline(tmp_path):
    write(tmp_path, 'prog.py', LESSON)
    ours = run([*FERROLOOP, 'trace', '-o', 'lesson.html', '--json', 'lesson.json', 'prog.py'],
               tmp_path)
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == "['a', 'b']\n"
    assert ours.stderr == 'ferroloop: timeline written to lesson.html and lesson.json\n'
    assert (tmp_path / 'lesson.html').read_text().startswith('<!DOCTYPE html>')
    trace = json.loads((tmp_path / 'lesson.json').read_text())
    assert sum(1 for e in trace['traceEvents'] if e['name'] == 'thread_name') == 4


def test_trace_writes_even_when_the_program_fails(tmp_path):
    write(tmp_path, 'prog.py', 'import asyncio\nasyncio.run(asyncio.sleep(0))\nraise SystemExit(5)\n')
    ours = run([*FERROLOOP, 'trace', 'prog.py'], tmp_path)
    assert ours.returncode == 5
    assert (tmp_path / 'timeline.html').exists()


@pytest.mark.parametrize('args, message, status', [
    ([], 'python -m ferroloop: error: the following arguments are required: {run,trace,ps}', 2),
    (['nonsense'], "python -m ferroloop: error: argument {run,trace,ps}: invalid choice: "
     "'nonsense' (choose from 'run', 'trace', 'ps')", 2),
    (['run'], 'python -m ferroloop run: error: a script (or -m module) to run is required', 2),
    (['trace'], 'python -m ferroloop trace: error: a script (or -m module) to run is required', 2),
    (['run', 'missing.py'], "python -m ferroloop run: can't open file '{dir}/missing.py': "
     "[Errno 2] No such file or directory", 2),
    (['run', '--detect-blocking', 'soon', 'x.py'], "python -m ferroloop run: error: argument "
     "--detect-blocking: 'soon' is not a number of seconds", 2),
    (['run', '--detect-blocking', '-1', 'x.py'], "python -m ferroloop run: error: argument "
     "--detect-blocking: '-1' is not a positive number of seconds", 2),
    (['run', '--detect-blocking', '0', 'x.py'], "python -m ferroloop run: error: argument "
     "--detect-blocking: '0': the threshold must be more than 0", 2),
    (['run', '--frobnicate', 'x.py'], 'python -m ferroloop: error: unrecognized arguments: '
     '--frobnicate', 2),
    (['run', '-m', 'no_such_module_here'], '{python}: No module named no_such_module_here', 1),
    (['ps'], 'python -m ferroloop ps: error: the following arguments are required: PID', 2),
    (['ps', 'abc'], "python -m ferroloop ps: error: argument PID: 'abc' is not a process id", 2),
    (['ps', '0'], "python -m ferroloop ps: error: argument PID: '0' is not a process id", 2),
    (['ps', '999999999'], 'python -m ferroloop ps: no process 999999999', 1),
    (['ps', '{self}'], 'python -m ferroloop ps: process {self} serves no console '
     '(start it with FERROLOOP_CONSOLE=1)', 1),
])
def test_mistakes_are_one_line(tmp_path, args, message, status):
    args = [a.replace('{self}', str(os.getpid())) for a in args]
    ours = run([*FERROLOOP, *args], tmp_path)
    expected = (message.replace('{dir}', str(tmp_path)).replace('{python}', sys.executable)
                .replace('{self}', str(os.getpid())))
    assert (ours.stderr, ours.returncode) == (expected + '\n', status)
    assert ours.stdout == ''


@pytest.mark.parametrize('args', [[], ['run'], ['trace'], ['ps']])
def test_help(tmp_path, args):
    ours = run([*FERROLOOP, *args, '--help'], tmp_path)
    assert ours.returncode == 0
    assert ours.stdout.startswith('usage: python -m ferroloop')
    assert ours.stderr == ''
