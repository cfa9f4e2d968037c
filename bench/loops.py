"""The event loops under comparison, made by name in benchmark processes.

Only the module of the loop under test is imported, so a process measuring
one loop carries nothing of the others. Every loop but ferroloop is a peer;
each peer module's ``new_event_loop()`` makes its loop (uvloop's, rloop's
and rsloop's documented factory). rloop and rsloop are installed by
bench/peers.py; a peer that is not installed is left out of the run.
"""

import asyncio
import importlib
import importlib.util
import json
import traceback

LOOP_NAMES = ('asyncio', 'uvloop', 'rloop', 'rsloop', 'ferroloop')
# ferroloop with its blocking detector on (bench/overhead.py compares them).
DETECTOR_THRESHOLD = 0.05
DETECTOR_LOOP = 'ferroloop+detector'


def new_event_loop(name):
    """A new event loop of the named kind (one of LOOP_NAMES, or
    DETECTOR_LOOP)."""
    if name == 'asyncio':
        return asyncio.new_event_loop()
    if name == DETECTOR_LOOP:
        loop = importlib.import_module('ferroloop').new_event_loop()
        loop.detect_blocking(DETECTOR_THRESHOLD)
        return loop
    if name not in LOOP_NAMES:
        raise ValueError(f'unknown loop {name!r}')
    return importlib.import_module(name).new_event_loop()


def installed_loops():
    """The loops of LOOP_NAMES whose module this interpreter can import
    (found without importing it: rsloop patches asyncio at import)."""
    return tuple(name for name in LOOP_NAMES
                 if name == 'asyncio' or importlib.util.find_spec(name) is not None)


def stop_on_first_error(loop):
    """Makes errors that the loop would only log (an exception in a callback
    or a protocol method) stop the loop, so a benchmark fails fast instead of
    hanging. Returns the list the errors are described in."""
    errors = []

    def handler(loop, context):
        exc = context.get('exception')
        errors.append(describe(exc) if exc else context['message'])
        loop.stop()

    loop.set_exception_handler(handler)
    return errors


def describe(exc):
    """One line naming an exception, as benchmark processes report it. An
    exception without a message (the NotImplementedError of an abstract loop
    method) is named by the function that raised it."""
    message = str(exc)
    if not message and exc.__traceback__:
        message = f'raised in {traceback.extract_tb(exc.__traceback__)[-1].name}()'
    return f'{type(exc).__name__}: {message}'


def run_on_new_loop(loop_name, work, key):
    """``{key: work(loop)}`` on a new loop of the named kind, closed
    afterwards, or ``{"error": ...}`` naming the first error the loop logged
    (see stop_on_first_error)."""
    loop = new_event_loop(loop_name)
    errors = stop_on_first_error(loop)
    try:
        value = work(loop)
    finally:
        loop.close()
    return {'error': errors[0]} if errors else {key: value}


def print_report(measure):
    """Prints the one JSON line a measuring process reports: the dict that
    ``measure()`` returns, or ``{"error": ...}`` naming what it raised."""
    try:
        result = measure()
    except Exception as exc:  # noqa: BLE001  (the harness shows the cell as failed)
        result = {'error': describe(exc)}
    print(json.dumps(result), flush=True)
