"""The blocking detector: one report per callback that holds the loop at
least the threshold, naming the task, coroutine, callback and the blocking
line; nothing for shorter callbacks or for waiting in the poller."""

import asyncio
import inspect
import logging
import os
import threading
import time
from pathlib import Path

import pytest

import ferroloop
from conftest import run_program_on_both

THRESHOLD = 0.05
ROOT_LESSONS = Path(__file__).resolve().parent.parent / 'examples' / 'lessons'


def detect(loop, threshold=THRESHOLD):
    reports = []
    loop.detect_blocking(threshold, reports.append)
    return reports


def line_of(fn, text):
    """The line number of ``text`` in the source of ``fn``."""
    lines, first = inspect.getsourcelines(fn)
    return first + next(i for i, line in enumerate(lines) if text in line)


async def a():
    time.sleep(0.2)  # the blocking line
    return 'a'


def test_a_200ms_block_gives_one_report_with_its_line():
    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)

        async def main():
            return await asyncio.gather(a(), asyncio.sleep(0.01))

        assert loop.run_until_complete(main()) == ['a', None]
    finally:
        loop.close()
    assert len(reports) == 1
    report = reports[0]
    assert report.duration >= 0.2
    assert report.ended - report.started == report.duration
    assert report.coroutine == 'a'
    assert report.task_name.startswith('Task-')
    assert isinstance(report.task, asyncio.Task)
    assert report.filename == __file__
    assert report.lineno == line_of(a, 'time.sleep(0.2)')
    assert report.stack[-1].name == 'a'
    assert 'coroutine a' in report.callback
    assert f'{__file__}:{report.lineno}' in str(report)


def test_a_10ms_callback_gives_none():
    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)

        async def short():
            for _ in range(5):
                time.sleep(0.01)
                await asyncio.sleep(0)

        loop.run_until_complete(short())
    finally:
        loop.close()
    assert reports == []


def test_waiting_in_the_poller_is_not_blocking():
    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)
        loop.run_until_complete(asyncio.sleep(0.3))
        loop.call_later(0.2, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert reports == []


def test_a_plain_callback_and_a_timer_are_named():
    def stall():
        time.sleep(0.15)

    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)
        loop.call_soon(stall)
        loop.call_later(0.01, stall)
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(reports) == 2
    for report in reports:
        assert report.task is None
        assert report.callback.startswith('test_a_plain_callback_and_a_timer_are_named.<locals>.stall()')
        assert report.lineno == line_of(stall, 'time.sleep(0.15)')
        assert report.duration >= 0.15


def test_a_callback_let_go_of_as_it_runs_is_named():
    # The handle lets go of its callback as it runs (here the callback
    # cancels its own handle too), and the callback's last reference is
    # dropped once the item ended, running a finalizer that releases the
    # interpreter: the report still names the callback, and the finalizer
    # is not taken for the item.
    finalized = []

    class Owner:
        def stall(self):
            handle.cancel()
            time.sleep(0.15)

        def __del__(self):
            time.sleep(0.01)
            finalized.append(True)

    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)
        handle = loop.call_soon(Owner().stall)
        loop.call_later(0.05, loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert finalized == [True]
    assert len(reports) == 1
    assert 'Owner.stall()' in reports[0].callback
    assert reports[0].lineno == line_of(Owner.stall, 'time.sleep(0.15)')
    assert 0.15 <= reports[0].duration


class SlowProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        time.sleep(0.15)  # blocks in the protocol callback
        self.transport.write(data)


def test_blocking_in_data_received_names_the_protocol_method():
    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)

        async def main():
            server = await loop.create_server(SlowProtocol, '127.0.0.1', 0)
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection('127.0.0.1', port)
            writer.write(b'ping')
            echoed = await asyncio.wait_for(reader.readexactly(4), 10)
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            return echoed

        assert loop.run_until_complete(main()) == b'ping'
    finally:
        loop.close()
    assert len(reports) == 1
    report = reports[0]
    assert report.callback.startswith('SlowProtocol.data_received()')
    assert report.lineno == line_of(SlowProtocol.data_received, 'time.sleep(0.15)')
    assert report.task is None


def test_computing_without_releasing_the_interpreter_is_caught_mid_loop():
    def spin():
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the computing line
            pass

    loop = ferroloop.new_event_loop()
    try:
        reports = detect(loop)
        loop.call_soon(spin)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert len(reports) == 1
    assert reports[0].duration >= 0.3
    assert reports[0].lineno in (line_of(spin, 'while time.monotonic()'),
                                 line_of(spin, 'pass'))


def test_a_loop_in_another_thread():
    results = {}

    def run():
        loop = ferroloop.new_event_loop()
        try:
            results['reports'] = detect(loop)
            loop.run_until_complete(a())
        finally:
            loop.close()

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(30)
    assert not worker.is_alive()
    [report] = results['reports']
    assert report.coroutine == 'a'
    assert report.lineno == line_of(a, 'time.sleep(0.2)')


def test_turned_on_while_running_and_off_again():
    loop = ferroloop.new_event_loop()
    reports = []
    try:
        async def main():
            loop.detect_blocking(THRESHOLD, reports.append)
            await asyncio.sleep(0)
            time.sleep(0.15)
            loop.detect_blocking(0)
            await asyncio.sleep(0)
            time.sleep(0.15)

        loop.run_until_complete(main())
        loop.detect_blocking(None)
    finally:
        loop.close()
    assert len(reports) == 0  # the first block ended after the detector was turned off

    loop = ferroloop.new_event_loop()
    reports = []
    try:
        async def main2():
            loop.detect_blocking(THRESHOLD, reports.append)
            await asyncio.sleep(0)
            time.sleep(0.15)

        loop.run_until_complete(main2())
    finally:
        loop.close()
    assert len(reports) == 1


def test_default_handler_logs_a_warning(caplog):
    loop = ferroloop.new_event_loop()
    try:
        loop.detect_blocking(THRESHOLD)
        with caplog.at_level(logging.WARNING, logger='ferroloop'):
            loop.run_until_complete(a())
    finally:
        loop.close()
    [record] = [r for r in caplog.records if r.name == 'ferroloop']
    assert record.levelno == logging.WARNING
    assert 'coroutine a' in record.getMessage()
    assert f'{__file__}:{line_of(a, "time.sleep(0.2)")}' in record.getMessage()


def test_a_failing_handler_is_logged_and_the_loop_goes_on(caplog):
    def handler(report):
        raise RuntimeError('handler failed')

    loop = ferroloop.new_event_loop()
    try:
        loop.detect_blocking(THRESHOLD, handler)
        with caplog.at_level(logging.ERROR, logger='ferroloop'):
            assert loop.run_until_complete(a()) == 'a'
    finally:
        loop.close()
    assert any('handler failed' in r.exc_text for r in caplog.records if r.exc_text)


@pytest.mark.parametrize('threshold, error', [
    (-1, ValueError), ('0.1', TypeError), (True, TypeError), (float('nan'), ValueError),
])
def test_bad_thresholds_are_refused(threshold, error):
    loop = ferroloop.new_event_loop()
    try:
        with pytest.raises(error):
            loop.detect_blocking(threshold)
    finally:
        loop.close()


def test_bad_handler_is_refused():
    loop = ferroloop.new_event_loop()
    try:
        with pytest.raises(TypeError):
            loop.detect_blocking(0.1, handler=42)
    finally:
        loop.close()


def test_no_watchdog_thread_is_left_behind():
    def threads():
        return len(os.listdir('/proc/self/task'))

    before = threads()
    for _ in range(5):
        loop = ferroloop.new_event_loop()
        loop.detect_blocking(THRESHOLD)
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    # close() joins the watchdog; the kernel removes a joined thread from
    # /proc a moment after the join returns (the join wakes as the thread
    # lets go of its memory, before its exit is complete).
    deadline = time.monotonic() + 5
    while threads() != before and time.monotonic() < deadline:
        time.sleep(0.001)
    assert threads() == before


PROGRAM = '''
import asyncio
import time

async def work(name, delay):
    print(name, 'started')
    time.sleep(delay)
    print(name, 'finished')
    return name

async def main():
    print(await asyncio.gather(work('a', 0.2), work('b', 0.01)))

asyncio.run(main())
'''


def test_a_program_prints_the_same_with_the_detector_on():
    runs = run_program_on_both(PROGRAM, env={'FERROLOOP_DETECT_BLOCKING': '0.05'})
    stock, ours = runs['asyncio'], runs['ferroloop']
    assert ours.returncode == stock.returncode == 0
    assert ours.stdout == stock.stdout
    assert stock.stderr == ''
    # The one report: a (0.2 s), not b (0.01 s).
    assert ours.stderr.count('The event loop was blocked') == 1
    assert "coroutine work) at <dir>/program.py:7" in ours.stderr


def test_the_detector_changes_nothing_for_a_program_that_does_not_block():
    source = (ROOT_LESSONS / '03_gather.py').read_text()
    runs = run_program_on_both(source, env={'FERROLOOP_DETECT_BLOCKING': '0.05'})
    assert runs['ferroloop'].stdout == runs['asyncio'].stdout
    assert runs['ferroloop'].stderr == runs['asyncio'].stderr == ''


def test_a_bad_environment_threshold_is_named_and_ignored():
    runs = run_program_on_both('import asyncio\nasyncio.run(asyncio.sleep(0))\nprint("ok")\n',
                               env={'FERROLOOP_DETECT_BLOCKING': 'soon'})
    assert runs['ferroloop'].stdout == 'ok\n'
    assert runs['ferroloop'].stderr == (
        "ferroloop: ignoring FERROLOOP_DETECT_BLOCKING: 'soon' is not a number of seconds\n")

