"""The ways users reach the loop: a factory, a policy, and ``run()``."""

import asyncio
import sys
from asyncio import events

from . import instruments
from .loop import Loop


def new_event_loop():
    """A new ferroloop event loop (for ``loop_factory=`` arguments)."""
    return Loop()


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An asyncio policy whose ``new_event_loop()`` makes ferroloop loops.

    It derives from asyncio's default Unix policy, so the child-watcher API
    that code written for Python < 3.12 calls is still there.

    ``asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())`` makes
    ``asyncio.run()``, ``asyncio.Runner()`` and ``asyncio.new_event_loop()``
    use ferroloop.
    """

    def _loop_factory(self):
        return new_event_loop()


def install():
    """Make ferroloop the loop of ``asyncio.run()`` and friends."""
    asyncio.set_event_loop_policy(EventLoopPolicy())


def run(main, *, debug=None, loop_factory=new_event_loop, detect_blocking=None,
        task_stats=False, **runner_kwargs):
    """Run coroutine ``main`` on a new ferroloop loop and return its result:
    ``asyncio.run()`` with ferroloop's loop, on every supported Python.

    ``detect_blocking=0.05`` reports every callback that holds the loop
    0.05 s or more (see ``Loop.detect_blocking``); ``task_stats=True``
    records per-task statistics and prints their table to stderr when the
    loop closes."""
    if detect_blocking or task_stats:
        loop_factory = _instrumented(loop_factory, detect_blocking, task_stats)
    if sys.version_info >= (3, 12):
        return asyncio.run(main, debug=debug, loop_factory=loop_factory,
                           **runner_kwargs)
    if events._get_running_loop() is not None:
        raise RuntimeError(
            "asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=loop_factory,
                        **runner_kwargs) as runner:
        return runner.run(main)


def _instrumented(loop_factory, detect_blocking, task_stats):
    def make():
        loop = loop_factory()
        if detect_blocking:
            loop.detect_blocking(detect_blocking)
        if task_stats:
            instruments.open_session(instruments.TaskStatsTable(sys.stderr, per_loop=True),
                                     loops=(loop,))
        return loop
    return make
