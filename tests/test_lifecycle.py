"""Running, stopping and closing; the errors asyncio raises for misuse;
tasks, futures, executors, async generators and the ways users reach the
loop. Each test runs on stock asyncio and on ferroloop."""

import asyncio
import sys
import threading
import unittest

import pytest

import ferroloop
from conftest import assert_same_on_both


def test_run_until_complete_returns_and_raises(loop):
    async def value():
        await asyncio.sleep(0)
        return 42

    async def fail():
        raise ZeroDivisionError

    assert loop.run_until_complete(value()) == 42
    fut = loop.create_future()
    loop.call_soon(fut.set_result, 'done')
    assert loop.run_until_complete(fut) == 'done'
    with pytest.raises(ZeroDivisionError):
        loop.run_until_complete(fail())


def test_stopped_before_future_completed(loop):
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match='Event loop stopped before Future completed.'):
        loop.run_until_complete(fut)


def test_reentrancy_errors(loop, new_loop):
    async def nested():
        coro = asyncio.sleep(0)
        try:
            loop.run_until_complete(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match='This event loop is already running'):
        loop.run_until_complete(nested())

    other = new_loop()

    async def run_other():
        coro = asyncio.sleep(0)
        try:
            other.run_until_complete(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match='Cannot run the event loop while another loop is running'):
        loop.run_until_complete(run_other())

    async def close_running():
        loop.close()

    with pytest.raises(RuntimeError, match='Cannot close a running event loop'):
        loop.run_until_complete(close_running())


def test_closed_loop_refuses_work(loop):
    loop.close()
    loop.close()
    assert loop.is_closed()
    coro = asyncio.sleep(0)
    for call in (lambda: loop.call_soon(print),
                 lambda: loop.call_later(1, print),
                 lambda: loop.call_at(1, print),
                 lambda: loop.call_soon_threadsafe(print),
                 lambda: loop.run_forever(),
                 lambda: loop.create_task(coro),
                 lambda: loop.run_until_complete(coro),
                 lambda: loop.run_in_executor(None, print)):
        with pytest.raises(RuntimeError, match='Event loop is closed'):
            call()
    coro.close()


def test_is_running_and_repr(loop):
    seen = []

    def check():
        seen.append(loop.is_running())
        loop.stop()

    loop.call_soon(check)
    assert not loop.is_running()
    loop.run_forever()
    assert seen == [True]
    assert 'running=False closed=False debug=False' in repr(loop)


@pytest.mark.parametrize('bad', [1, None, 'text'])
def test_non_callables_are_refused(loop, loop_name, bad):
    if loop_name == 'asyncio':
        loop.set_debug(True)  # stock asyncio checks only in debug mode
    with pytest.raises(TypeError, match='a callable object was expected by call_soon'):
        loop.call_soon(bad)
    with pytest.raises(TypeError, match=r'expected by call_at\(\)'):
        loop.call_later(1, bad)


def test_coroutines_are_refused_as_callbacks(loop, loop_name):
    if loop_name == 'asyncio':
        loop.set_debug(True)  # stock asyncio checks only in debug mode

    async def coro_fn():
        pass

    coro = coro_fn()
    for cb in (coro_fn, coro):
        with pytest.raises(TypeError, match=r'coroutines cannot be used with call_soon\(\)'):
            loop.call_soon(cb)
        with pytest.raises(TypeError, match=r'coroutines cannot be used with call_at\(\)'):
            loop.call_at(1, cb)
        with pytest.raises(TypeError, match=r'coroutines cannot be used with call_soon_threadsafe\(\)'):
            loop.call_soon_threadsafe(cb)
    coro.close()


def test_callback_exception_goes_to_the_handler_and_the_loop_goes_on():
    def program(loop):
        contexts = []
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

        def boom():
            raise ValueError('boom')

        calls = []
        loop.call_soon(boom)
        loop.call_soon(calls.append, 'after')
        loop.call_soon(loop.stop)
        loop.run_forever()
        (ctx,) = contexts
        return (calls, sorted(ctx), ctx['message'].split(' at ')[0],
                type(ctx['exception']).__name__, ctx['handle'].cancelled())

    result = assert_same_on_both(program)
    assert result[2] == 'Exception in callback test_callback_exception_goes_to_the_handler_and_the_loop_goes_on.<locals>.program.<locals>.boom()'


def test_default_exception_handler_logs_like_asyncio(caplog):
    def program(loop):
        caplog.clear()

        def boom():
            raise KeyError('k')

        with caplog.at_level('ERROR', logger='asyncio'):
            loop.call_soon(boom)
            loop.call_soon(loop.stop)
            loop.run_forever()
        return [(r.levelname, r.getMessage().split(' at ')[0], r.exc_info[0].__name__)
                for r in caplog.records]

    assert assert_same_on_both(program) == [
        ('ERROR', 'Exception in callback test_default_exception_handler_logs_like_asyncio.<locals>.program.<locals>.boom()', 'KeyError')]


def test_failing_custom_handler_is_logged(caplog):
    def program(loop):
        caplog.clear()

        def handler(lp, ctx):
            raise RuntimeError('handler broke')

        loop.set_exception_handler(handler)
        with caplog.at_level('ERROR', logger='asyncio'):
            loop.call_exception_handler({'message': 'something'})
        return [r.getMessage().splitlines()[0] for r in caplog.records]

    assert assert_same_on_both(program) == ['Unhandled error in exception handler']


def test_exception_handler_must_be_callable(loop):
    with pytest.raises(TypeError, match='A callable object or None is expected'):
        loop.set_exception_handler(42)
    loop.set_exception_handler(None)
    assert loop.get_exception_handler() is None


@pytest.mark.parametrize('exc', [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate(loop, exc):
    calls = []

    def raise_it():
        raise exc

    loop.call_soon(raise_it)
    loop.call_soon(calls.append, 'later')
    with pytest.raises(exc):
        loop.run_forever()
    assert not loop.is_running()
    # The loop is still usable, and the callback queued behind runs next.
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert calls == ['later']


def test_debug_mode_logs_slow_callbacks(loop, caplog):
    import time
    loop.set_debug(True)
    assert loop.get_debug()
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.02)

    with caplog.at_level('WARNING', logger='asyncio'):
        loop.call_soon(slow)
        loop.call_soon(loop.stop)
        loop.run_forever()
    messages = [r.getMessage() for r in caplog.records if 'Executing' in r.getMessage()]
    assert len(messages) == 1
    assert 'slow()' in messages[0] and 'took' in messages[0]


def test_debug_mode_refuses_call_soon_from_another_thread(loop):
    loop.set_debug(True)
    errors = []

    def from_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as exc:
            errors.append(str(exc))

    def start():
        t = threading.Thread(target=from_thread)
        t.start()
        t.join(10)
        loop.stop()

    loop.call_soon(start)
    loop.run_forever()
    assert errors == ['Non-thread-safe operation invoked on an event loop other than the current one']


def test_tasks_names_contexts_and_factory(loop):
    import contextvars
    var = contextvars.ContextVar('v', default=None)

    async def read_var():
        return var.get()

    ctx = contextvars.copy_context()
    ctx.run(var.set, 'from ctx')

    async def main():
        task = loop.create_task(read_var(), name='reader', context=ctx)
        assert task.get_name() == 'reader'
        return await task

    assert loop.run_until_complete(main()) == 'from ctx'

    made = []

    def factory(lp, coro, **kwargs):
        task = asyncio.Task(coro, loop=lp, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    task = loop.create_task(read_var(), name='named')
    assert made == [task] and task.get_name() == 'named'
    loop.run_until_complete(task)
    with pytest.raises(TypeError):
        loop.set_task_factory(42)


def test_patched_task_and_future_types_get_fresh_keywords(monkeypatch):
    """A replaced asyncio.tasks.Task or asyncio.futures.Future is called
    as asyncio calls it, every time: a task with loop, name and context, a
    future with loop alone; keywords one call kept and changed are not the
    next call's."""
    def program(loop):
        seen = []

        class KeepingTask(asyncio.Task):
            def __init__(self, coro, **kwargs):
                seen.append(sorted(kwargs))
                super().__init__(coro, **kwargs)
                kwargs['extra'] = 1
                self.kept = kwargs

        class KeepingFuture(asyncio.Future):
            def __init__(self, **kwargs):
                seen.append(sorted(kwargs))
                super().__init__(**kwargs)
                kwargs.clear()
                self.kept = kwargs

        async def one():
            return 1

        async def main():
            tasks = [loop.create_task(one()) for _ in range(3)]
            futures = [loop.create_future() for _ in range(3)]
            for future in futures:
                future.set_result(2)
            return [await t for t in tasks] + [await f for f in futures]

        monkeypatch.setattr(asyncio.tasks, 'Task', KeepingTask)
        monkeypatch.setattr(asyncio.futures, 'Future', KeepingFuture)
        try:
            results = loop.run_until_complete(main())
        finally:
            monkeypatch.undo()
        return results, seen

    # run_until_complete's task for main() comes first.
    assert assert_same_on_both(program) == (
        [1, 1, 1, 2, 2, 2], [['context', 'loop', 'name']] * 4 + [['loop']] * 3)


def test_a_closed_loop_is_freed_without_the_collector(loop_name):
    """Reference counting alone frees a loop that made tasks and futures
    once it is closed, as it frees asyncio's."""
    import gc
    import weakref

    from conftest import LOOP_FACTORIES

    loop = LOOP_FACTORIES[loop_name]()
    loop.run_until_complete(loop.create_task(asyncio.sleep(0)))
    future = loop.create_future()
    future.set_result(None)
    loop.run_until_complete(future)
    loop.close()
    dead = weakref.ref(loop)
    gc.disable()
    try:
        del loop, future
        assert dead() is None
    finally:
        gc.enable()


@pytest.mark.skipif(sys.version_info < (3, 12), reason='eager tasks are 3.12+')
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    steps = []

    async def eager():
        steps.append('ran eagerly')
        return 'x'

    async def main():
        task = asyncio.create_task(eager())
        steps.append('after create_task')
        return await task

    assert loop.run_until_complete(main()) == 'x'
    assert steps == ['ran eagerly', 'after create_task']


def test_run_in_executor_and_shutdown(loop):
    async def main():
        result = await loop.run_in_executor(None, sum, [1, 2, 3])
        await loop.shutdown_default_executor()
        return result

    assert loop.run_until_complete(main()) == 6
    with pytest.raises(RuntimeError, match='Executor shutdown has been called'):
        loop.run_in_executor(None, print)


def test_set_default_executor_requires_thread_pool(loop):
    import concurrent.futures
    with pytest.raises(TypeError, match='executor must be ThreadPoolExecutor instance'):
        loop.set_default_executor(object())
    executor = concurrent.futures.ThreadPoolExecutor(1)
    loop.set_default_executor(executor)
    assert loop.run_until_complete(loop.run_in_executor(None, abs, -3)) == 3
    executor.shutdown()


def test_async_generators_are_finalized():
    def program(loop):
        events = []

        async def agen():
            try:
                yield 1
                yield 2
            finally:
                events.append('closed')

        async def main():
            async for _ in agen():
                break
            await asyncio.sleep(0)

        loop.run_until_complete(main())
        loop.run_until_complete(loop.shutdown_asyncgens())
        return events

    assert assert_same_on_both(program) == ['closed']


def test_entry_points():
    async def main():
        return type(asyncio.get_running_loop()).__name__

    assert ferroloop.run(main()) == 'Loop'
    with asyncio.Runner(loop_factory=ferroloop.new_event_loop) as runner:
        assert runner.run(main()) == 'Loop'
    if sys.version_info >= (3, 12):
        assert asyncio.run(main(), loop_factory=ferroloop.new_event_loop) == 'Loop'
    old = asyncio.get_event_loop_policy()
    try:
        ferroloop.install()
        assert asyncio.run(main()) == 'Loop'
    finally:
        asyncio.set_event_loop_policy(old)
    loop = ferroloop.new_event_loop()
    assert isinstance(loop, asyncio.AbstractEventLoop)
    loop.close()


def test_isolated_async_test_case_runs_on_ferroloop():
    seen = []

    class Case(unittest.IsolatedAsyncioTestCase):
        async def test_it(self):
            await asyncio.sleep(0.01)
            seen.append(type(asyncio.get_running_loop()).__name__)

    old = asyncio.get_event_loop_policy()
    try:
        ferroloop.install()
        result = unittest.TestResult()
        unittest.defaultTestLoader.loadTestsFromTestCase(Case).run(result)
    finally:
        asyncio.set_event_loop_policy(old)
    assert result.wasSuccessful(), result.errors + result.failures
    assert seen == ['Loop']


def test_callback_observer_sees_every_callback():
    loop = ferroloop.new_event_loop()
    events = []
    loop._set_callback_observer(lambda h: events.append(('begin', h)),
                                lambda h: events.append(('end', h)))
    first = loop.call_soon(len, '')
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop._set_callback_observer(None, None)
    loop.call_soon(loop.stop)
    loop.run_forever()
    loop.close()
    assert [e for e, _ in events] == ['begin', 'end', 'begin', 'end']
    assert events[0][1] is first and events[1][1] is first


def test_pythonasynciodebug_turns_debug_mode_on():
    from conftest import run_program_on_both
    program = '''
import asyncio, sys

async def main():
    loop = asyncio.get_running_loop()
    print(loop.get_debug(), sys.get_coroutine_origin_tracking_depth() > 0)

asyncio.run(main())
'''
    runs = run_program_on_both(program, env={'PYTHONASYNCIODEBUG': '1'})
    assert runs['ferroloop'].stdout == runs['asyncio'].stdout == 'True True\n'


def test_debug_mode_tracks_coroutine_origins_while_running(loop):
    import sys
    loop.set_debug(True)

    async def depth():
        return sys.get_coroutine_origin_tracking_depth()

    assert loop.run_until_complete(depth()) > 0
    assert sys.get_coroutine_origin_tracking_depth() == 0
