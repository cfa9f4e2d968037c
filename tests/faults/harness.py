"""Runs a fault case: one small program, in its own process (and process
group) on stock asyncio and on ferroloop at once, each with a hard timeout.
(At once: so the suite takes half the time; the run times in the table are
each taken while the other loop runs.)

A case fails when ferroloop's run crashes (a signal, a Rust panic, a fatal
Python error), hangs, exits with an error, grows descriptors or memory over
the second half of a soak, warns of more unclosed resources
(ResourceWarning) than stock asyncio, or reports a result other than stock asyncio's
(or than the case's ``expected`` where stock asyncio itself misbehaves).
Every run is also recorded in FAULT_TABLE, which conftest.py prints at the
end of the session."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RUN_WITH = ROOT / 'examples' / 'run_with.py'
LOOPS = ('asyncio', 'ferroloop')

# (case, asyncio outcome, ferroloop outcome), in the order the cases ran.
FAULT_TABLE = []

# Growth allowed over the second half of a soak: the allocator keeps arenas
# and the interpreter caches a few objects; a leak per operation shows far
# above this at the soak sizes.
RSS_GROWTH_LIMIT_KIB = 8 * 1024


@dataclass
class Outcome:
    status: str                 # 'ok', 'hang', 'crash SIGSEGV', 'panic', 'exit 1', 'no result'
    result: object = None       # what the program reported
    resources: dict = field(default_factory=dict)
    stderr: str = ''
    took: float = None          # the program's run time, without interpreter start-up

    def cell(self):
        text = self.status
        if self.took is not None:
            text += f' {self.took:.1f}s'
        if self.resources:
            text += ' fd%+d rss%+dK' % (self.resources['fd_growth'],
                                        self.resources['rss_growth_kib'])
        return text


def _normalise(text, tmpdir):
    text = text.replace(tmpdir, '<dir>')
    return re.sub(r'0x[0-9a-fA-F]+', '0x?', text)


def _status(returncode, stderr, timed_out):
    if timed_out:
        return 'hang'
    if returncode < 0:
        return 'crash ' + signal.Signals(-returncode).name
    if returncode == 134:
        return 'crash SIGABRT'
    if 'panicked at' in stderr:
        return 'panic'
    if 'Fatal Python error' in stderr:
        return 'fatal python error'
    if returncode:
        return f'exit {returncode}'
    return 'ok'


def _outcome(proc, stdout, stderr, timed_out, tmpdir, took):
    stdout, stderr = _normalise(stdout, tmpdir), _normalise(stderr, tmpdir)
    status = _status(proc.returncode, stderr, timed_out)
    result, resources = None, {}
    for line in stdout.splitlines():
        if line.startswith('RESULT '):
            result = json.loads(line[len('RESULT '):])
        elif line.startswith('RESOURCES '):
            resources = json.loads(line[len('RESOURCES '):])
    if status == 'ok' and result is None:
        status = 'no result'
    return Outcome(status, result, resources, stderr, took)


def run_on_both(source, timeout):
    """Starts the program on both loops at once; returns {loop: Outcome}."""
    with tempfile.TemporaryDirectory() as tmp:
        program = Path(tmp) / 'case.py'
        program.write_text(source)
        child_env = dict(os.environ, PYTHONDONTWRITEBYTECODE='1', PYTHONFAULTHANDLER='1',
                         PYTHONWARNINGS='always::ResourceWarning',
                         PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get('PYTHONPATH', '')]))
        started = time.monotonic()
        procs = {}
        for loop in LOOPS:
            procs[loop] = subprocess.Popen(
                [sys.executable, str(RUN_WITH), loop, str(program)], cwd=tmp,
                env=dict(child_env, FERROLOOP_TIMING_FILE=str(Path(tmp) / f'took-{loop}')),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                stdin=subprocess.DEVNULL, start_new_session=True)
        outcomes = {}
        for loop, proc in procs.items():
            left = max(0.1, started + timeout - time.monotonic())
            try:
                stdout, stderr = proc.communicate(timeout=left)
                timed_out = False
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
                timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # whatever the case forked and left
            except ProcessLookupError:
                pass
            took = Path(tmp) / f'took-{loop}'
            outcomes[loop] = _outcome(proc, stdout, stderr, timed_out, tmp,
                                      float(took.read_text()) if took.exists() else None)
        return outcomes


def check_case(name, source, timeout=60, expected=None):
    """Runs the case on both loops, records it in the fault table and fails
    on any fault of ferroloop's. ``expected`` replaces stock asyncio's result
    where asyncio's own behaviour is the bug (the case says which)."""
    outcomes = run_on_both(source, timeout)
    stock, ours = outcomes['asyncio'], outcomes['ferroloop']
    want = stock.result if expected is None else expected
    problems = []
    if ours.status != 'ok':
        problems.append(f'ferroloop: {ours.status}')
    elif ours.result != want:
        problems.append('result differs')
    if ours.resources:
        if ours.resources['fd_growth'] > 0:
            problems.append(f"descriptors grew by {ours.resources['fd_growth']}")
        if ours.resources['rss_growth_kib'] > RSS_GROWTH_LIMIT_KIB:
            problems.append(f"RSS grew by {ours.resources['rss_growth_kib']} KiB")
    leaks = ours.stderr.count('ResourceWarning') - stock.stderr.count('ResourceWarning')
    if leaks > 0:
        problems.append(f'{leaks} ResourceWarnings more than stock asyncio')
    if expected is None and stock.status != 'ok':
        problems.append(f'stock asyncio: {stock.status} (the case itself is broken)')
    if not problems:
        ours_cell = ours.cell() + ' same'
    else:
        ours_cell = ours.cell() + (' DIFFERS' if ours.status == 'ok' else '')
    stock_cell = stock.cell()
    if expected is not None and stock.result != expected:
        stock_cell += ' (not the expected result)'
    FAULT_TABLE.append((name, stock_cell, ours_cell))
    assert not problems, '; '.join(problems) + '\n' + _explain(want, stock, ours)


def _explain(want, stock, ours):
    return (f'expected: {want!r}\nferroloop reported: {ours.result!r}\n'
            f'--- asyncio stderr (tail) ---\n{stock.stderr[-2000:]}\n'
            f'--- ferroloop stderr (tail) ---\n{ours.stderr[-4000:]}')
