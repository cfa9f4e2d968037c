"""What ferroloop can show about a running program, switched on per loop or
for every loop of the process: the blocking detector, per-task statistics,
the timeline tracer and the console served to ``python -m ferroloop ps``.

Process-wide settings come from the environment (read when a loop is made)
or from the command line (``python -m ferroloop run/trace``):

- ``FERROLOOP_DETECT_BLOCKING=0.05``: the detector, with that threshold in
  seconds, on every ferroloop loop;
- ``FERROLOOP_TASK_STATS=1``: per-task statistics, printed as a table to
  stderr when each loop closes;
- ``FERROLOOP_CONSOLE=1``: the console (see :mod:`ferroloop.console`).

A *session* (a trace, a statistics table) gathers the task steps of every
loop that runs while it is open: loops made before it starts are found in
the registry of live loops; loops closed before it ends hand their
recording over as they close.
"""

import os
import sys
import weakref

_loops = weakref.WeakSet()
_sessions = []


class Settings:
    """Instruments applied to every new loop."""

    def __init__(self):
        self.detect_blocking = None
        self.blocking_handler = None
        self.task_stats = False

    @classmethod
    def from_environment(cls, environ=os.environ):
        settings = cls()
        threshold = environ.get('FERROLOOP_DETECT_BLOCKING', '').strip()
        if threshold:
            try:
                settings.detect_blocking = parse_threshold(threshold)
            except ValueError as exc:
                print(f'ferroloop: ignoring FERROLOOP_DETECT_BLOCKING: {exc}',
                      file=sys.stderr)
        settings.task_stats = environ.get('FERROLOOP_TASK_STATS', '') not in ('', '0')
        return settings


def parse_threshold(text):
    """A threshold in seconds: a positive number (or 0 for off)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f'{text!r} is not a number of seconds') from None
    if not value >= 0 or value == float('inf'):
        raise ValueError(f'{text!r} is not a positive number of seconds')
    return value or None


settings = None


def current_settings():
    global settings
    if settings is None:
        settings = Settings.from_environment()
    return settings


def attach(loop):
    """A new loop: register it and switch on what is asked for."""
    _loops.add(loop)
    current = current_settings()
    if current.detect_blocking:
        loop.detect_blocking(current.detect_blocking, current.blocking_handler)
    if current.task_stats:
        open_session(TaskStatsTable(sys.stderr, per_loop=True), loops=(loop,))
    for session in _sessions:
        if session.per_loop is False:
            loop._record_steps(session.traces)
    if os.environ.get('FERROLOOP_CONSOLE', '') not in ('', '0'):
        from . import console
        loop._record_steps(False)  # steps and busy time for `ps`
        console.serve(live_loops)


def live_loops():
    return [loop for loop in list(_loops) if not loop.is_closed()]


class Session:
    """Gathers the recordings of the loops it watches. ``per_loop``: it
    watches the given loops only, and finishes when they close."""

    traces = False

    def __init__(self, per_loop=False):
        self.per_loop = per_loop
        self.loops = weakref.WeakSet()
        self.recordings = []

    def absorb(self, recording):
        if recording is not None:
            self.recordings.append(recording)

    def finish(self):
        """Called once, with every recording absorbed."""


def open_session(session, loops=None):
    """Starts ``session`` on ``loops`` (default: every live loop and every
    loop made while it is open)."""
    from . import _trace  # noqa: F401  (imported now, not during the first step)
    targets = live_loops() if loops is None else loops
    for loop in targets:
        session.loops.add(loop)
        loop._record_steps(session.traces)
    _sessions.append(session)
    return session


def close_session(session):
    """Ends ``session``: takes the recordings of its loops still open."""
    if session not in _sessions:
        return
    _sessions.remove(session)
    for loop in live_loops():
        if loop in session.loops or not session.per_loop:
            session.absorb(_take_recording(loop, session))
    session.finish()


def _take_recording(loop, leaving):
    """A loop's recording; recording goes on if other sessions still watch it."""
    others = [s for s in _sessions if s is not leaving and _watches(s, loop)]
    if others:
        return loop._steps_recording()
    return loop._stop_recording_steps()


def _watches(session, loop):
    return loop in session.loops or not session.per_loop


def loop_closing(loop):
    """A loop closes: every session watching it gets its recording; a
    session of that loop alone finishes."""
    watching = [s for s in _sessions if _watches(s, loop)]
    if not watching:
        return
    recording = loop._stop_recording_steps()
    for session in watching:
        session.absorb(recording)
        if session.per_loop:
            _sessions.remove(session)
            session.finish()


class TaskStatsTable(Session):
    """Per-task statistics, printed as a table when finished."""

    def __init__(self, stream, per_loop=False):
        super().__init__(per_loop)
        self.stream = stream

    def finish(self):
        from ._trace import task_stats_table
        tasks = [task for recording in self.recordings for task in recording['tasks']]
        if tasks:
            print(task_stats_table(tasks), file=self.stream, flush=True)
