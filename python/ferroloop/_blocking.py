"""The blocking detector's Python half: what the watchdog captures, and the
report made when the blocking item ends.

The native half (crates/python/src/observe/blocking.rs) decides *when*: a
watchdog thread notices an item that has held the loop longer than the
threshold and calls :func:`capture` while the item still runs, then the
loop calls :func:`report` when the item ends. Both run rarely, so they are
written in Python. :func:`capture` runs on the watchdog thread and reads
the source lines there too, so that the report, made on the loop thread,
reads no file.
"""

import asyncio
import logging
import os
import sys
import sysconfig
import traceback
from asyncio import format_helpers
from dataclasses import dataclass, field

logger = logging.getLogger('ferroloop')

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _library_dirs():
    """The standard library, installed packages and ferroloop, each as
    given and with symbolic links resolved (code objects name files by the
    path they were imported from). Resolved once, here: at run time paths
    are only compared, with no file system call on the loop thread."""
    paths = {sysconfig.get_paths()[key] for key in ('stdlib', 'platstdlib', 'purelib', 'platlib')}
    paths.add(_PACKAGE_DIR)
    dirs = set()
    for path in filter(None, paths):
        dirs.add(os.path.join(os.path.abspath(path), ''))
        dirs.add(os.path.join(os.path.realpath(path), ''))
    return tuple(sorted(dirs))


_LIBRARY_DIRS = _library_dirs()
_RUN_FOREVER = os.path.join(_PACKAGE_DIR, 'base_loop.py')


def is_library_file(filename):
    """True for the standard library, installed packages and ferroloop."""
    if filename.startswith('<'):
        return filename.startswith('<frozen ')
    return os.path.abspath(filename).startswith(_LIBRARY_DIRS)


@dataclass(frozen=True)
class BlockingReport:
    """One blocking episode: an item of the loop held it ``duration``
    seconds (an upper bound, within the watchdog's sampling period).

    ``callback`` names what ran (a task step, a protocol method, a plain
    callback or a timer); ``filename`` and ``lineno`` point at the innermost
    line of user code on the stack while it was blocked; ``stack`` holds the
    frames of the callback, outermost first, as captured then (empty if the
    item held the interpreter so long that the stack could not be seen
    before it ended). ``started`` and ``ended`` are ``loop.time()`` values.
    """

    duration: float
    started: float
    ended: float
    callback: str
    task: object = None
    task_name: str = None
    coroutine: str = None
    filename: str = None
    lineno: int = None
    stack: traceback.StackSummary = field(default_factory=traceback.StackSummary)

    def __str__(self):
        where = (f' at {self.filename}:{self.lineno}'
                 if self.filename is not None else '')
        lines = [f'The event loop was blocked for {self.duration:.3f} s '
                 f'by {self.callback}{where}']
        if self.stack:
            lines.append('Stack while blocked (most recent call last):')
            lines.append(''.join(self.stack.format()).rstrip('\n'))
        return '\n'.join(lines)


def capture(subject, thread_id):
    """On the watchdog thread, while the item still runs: ``(subject,
    frames)`` of the loop thread, or None if that thread has no frame."""
    frame = sys._current_frames().get(thread_id)
    if frame is None:
        return None
    frames = traceback.StackSummary.extract(traceback.walk_stack(frame))
    frames.reverse()
    return subject, frames


def _callback_frames(frames):
    """The frames of the running callback: those after the loop's own
    ``run_forever``."""
    for index in range(len(frames) - 1, -1, -1):
        if frames[index].filename == _RUN_FOREVER and frames[index].name == 'run_forever':
            return traceback.StackSummary.from_list(frames[index + 1:])
    return traceback.StackSummary.from_list(frames)


def _user_frame(frames):
    """The innermost frame of user code, or the innermost frame."""
    for frame in reversed(frames):
        if not is_library_file(frame.filename):
            return frame
    return frames[-1] if frames else None


def task_of(subject):
    """The task a callback steps (``callback.__self__``), or None."""
    owner = getattr(subject, '__self__', None)
    return owner if isinstance(owner, asyncio.Task) else None


def describe_subject(subject, entry=None):
    """What an item ran, in words: a task, a protocol method (``entry``:
    the first frame of the callback, which names it), or a callback."""
    if subject is None:
        return 'a callback'
    task = task_of(subject)
    if task is not None:
        return (f'task {task.get_name()!r} '
                f'(coroutine {_coroutine_name(task)})')
    if isinstance(subject, asyncio.BaseTransport):
        protocol = subject.get_protocol()
        owner = type(protocol).__qualname__
        if entry is not None:
            return f'{owner}.{entry.name}() of {type(subject).__name__}'
        return f'an I/O callback of {owner} on {type(subject).__name__}'
    if type(subject).__name__ == 'SockOp':
        return 'a sock_* operation'
    return format_helpers._format_callback_source(subject, ())


def _coroutine_name(task):
    coro = task.get_coro()
    return getattr(coro, '__qualname__', type(coro).__name__)


def make_report(subject, captured, started, ended):
    """The :class:`BlockingReport` of an episode."""
    if captured is not None:
        subject = captured[0] if subject is None else subject
        frames = _callback_frames(captured[1])
    else:
        frames = traceback.StackSummary()
    task = task_of(subject)
    user = _user_frame(frames)
    return BlockingReport(
        duration=ended - started,
        started=started,
        ended=ended,
        callback=describe_subject(subject, frames[0] if frames else None),
        task=task,
        task_name=task.get_name() if task is not None else None,
        coroutine=_coroutine_name(task) if task is not None else None,
        filename=user.filename if user is not None else None,
        lineno=user.lineno if user is not None else None,
        stack=frames,
    )


def log_report(report):
    """The default handler: a warning on the ``ferroloop`` logger."""
    logger.warning('%s', report)


def report(loop, subject, captured, started, ended):
    """Called by the loop when a blocking item ended."""
    episode = make_report(subject, captured, started, ended)
    handler = getattr(loop, '_blocking_handler', None) or log_report
    try:
        handler(episode)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException:
        logger.exception('Exception in the blocking report handler %r', handler)
