"""Runs one module of CPython's test.test_asyncio with a chosen event loop,
recording each test's outcome as a JSON line. Started by run_suite.py, one
process per module, so a crash or hang loses nothing but the test it hit.

The loop is swapped in the way a user would: ferroloop's policy becomes the
default policy (so ``asyncio.run``, ``Runner``, ``new_event_loop`` and
``IsolatedAsyncioTestCase`` use it, even after a test resets the policy),
and the test classes that build ``asyncio.SelectorEventLoop()`` themselves
in ``create_event_loop()`` are pointed at ferroloop. Those classes come in
families that differ only in the selector (epoll, poll, select); one member
per family is kept so each test runs once.
"""

import argparse
import asyncio
import faulthandler
import importlib
import json
import os
import sys
import traceback
import unittest

SELECTOR_FAMILY_PREFIXES = ('Poll', 'Select', 'Kqueue')


def install_loop(kind):
    if kind == 'asyncio':
        return None
    import ferroloop
    asyncio.DefaultEventLoopPolicy = ferroloop.EventLoopPolicy
    if hasattr(asyncio, 'unix_events'):
        asyncio.unix_events.DefaultEventLoopPolicy = ferroloop.EventLoopPolicy
    asyncio.set_event_loop_policy(ferroloop.EventLoopPolicy())
    return ferroloop.new_event_loop


def point_test_classes_at(module, loop_factory):
    """Keep one class per selector family; make classes that create their
    own loop create ours."""
    classes = {name: obj for name, obj in vars(module).items()
               if isinstance(obj, type) and issubclass(obj, unittest.TestCase)}
    has_epoll = any(name.startswith('EPoll') for name in classes)
    for name, cls in classes.items():
        if has_epoll and name.startswith(SELECTOR_FAMILY_PREFIXES):
            delattr(module, name)
            continue
        if loop_factory is not None and callable(
                getattr(cls, 'create_event_loop', None)):
            cls.create_event_loop = lambda self: loop_factory()


def flatten(suite):
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flatten(item)
        else:
            yield item


class RecordingResult(unittest.TestResult):
    """Writes one JSON line when a test starts and one with its outcome,
    and arms a watchdog that kills the process if a test hangs."""

    def __init__(self, out, timeout):
        super().__init__()
        self.out = out
        self.timeout = timeout
        self.outcome = None
        self.detail = ''

    def write(self, **record):
        self.out.write(json.dumps(record) + '\n')
        self.out.flush()

    def startTest(self, test):
        super().startTest(test)
        self.outcome, self.detail = 'passed', ''
        self.write(event='start', test=test.id())
        faulthandler.dump_traceback_later(self.timeout, exit=True)

    def stopTest(self, test):
        faulthandler.cancel_dump_traceback_later()
        self.write(event='end', test=test.id(), outcome=self.outcome,
                   detail=self.detail[-6000:])
        super().stopTest(test)

    def _failed(self, test, err):
        self.outcome = 'failed'
        self.detail += ''.join(traceback.format_exception(*err))

    def addError(self, test, err):
        if not hasattr(test, '_testMethodName'):
            # A fixture (setUpClass, setUpModule...) failed: no start/stop.
            self.write(event='end', test=test.id(), outcome='failed',
                       detail=''.join(traceback.format_exception(*err))[-6000:])
            return
        self._failed(test, err)

    def addFailure(self, test, err):
        self._failed(test, err)

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._failed(test, err)

    def addSkip(self, test, reason):
        if not hasattr(test, '_testMethodName'):
            self.write(event='end', test=test.id(), outcome='skipped',
                       detail=reason)
            return
        self.outcome, self.detail = 'skipped', reason

    def addUnexpectedSuccess(self, test):
        self.outcome, self.detail = 'failed', 'unexpected success'


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('--loop', choices=('ferroloop', 'asyncio'), required=True)
    parser.add_argument('--module', required=True)
    parser.add_argument('--results', required=True)
    parser.add_argument('--skip', help='file listing test ids already done')
    parser.add_argument('--timeout', type=float, default=60)
    args = parser.parse_args()

    done = set()
    if args.skip:
        with open(args.skip) as f:
            done = {line.strip() for line in f if line.strip()}

    loop_factory = install_loop(args.loop)
    module = importlib.import_module(f'test.test_asyncio.{args.module}')
    point_test_classes_at(module, loop_factory)
    loaded = unittest.defaultTestLoader.loadTestsFromModule(module)
    remaining = [t for t in flatten(loaded) if t.id() not in done]
    with open(args.results, 'a') as out:
        result = RecordingResult(out, args.timeout)
        unittest.TestSuite(remaining).run(result)
    sys.stdout.flush()
    # Skip interpreter teardown: a leaked thread or loop must not hang the
    # exit after every result is already written.
    sys.stderr.flush()
    os._exit(0)


if __name__ == '__main__':
    main()
