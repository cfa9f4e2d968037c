"""Per-task statistics: steps, busy, scheduled and idle time, and the
slowest step with its line."""

import asyncio
import inspect
import time

import ferroloop


async def busy_then_idle():
    time.sleep(0.05)  # busy
    await asyncio.sleep(0.1)  # idle
    return 'done'


def first_line(fn):
    return inspect.getsourcelines(fn)[1]


def test_steps_busy_idle_and_the_slowest_step():
    loop = ferroloop.new_event_loop()
    try:
        loop._record_steps(False)
        task = loop.create_task(busy_then_idle(), name='worker')
        assert loop.run_until_complete(task) == 'done'
        stats = {entry['name']: entry for entry in loop.task_stats()}
    finally:
        loop.close()
    worker = stats['worker']
    assert worker['coroutine'] == 'busy_then_idle'
    assert worker['steps'] == 2
    assert worker['busy'] >= 0.05
    # Busy, scheduled and idle cover the task's life: 0.05 s + 0.1 s at least.
    assert worker['idle'] > 0
    assert worker['busy'] + worker['scheduled'] + worker['idle'] >= 0.15
    assert worker['scheduled'] >= 0
    assert worker['slowest_step'] >= 0.05
    code, line = worker['slowest_at']
    assert code.co_filename == __file__
    assert line == first_line(busy_then_idle)  # the step that began at the top
    assert worker['done'] and not worker['cancelled']


def test_a_busy_loop_shows_as_scheduled_time():
    async def hog():
        time.sleep(0.05)

    async def patient():
        await asyncio.sleep(0)

    loop = ferroloop.new_event_loop()
    try:
        loop._record_steps(False)

        async def main():
            await asyncio.gather(hog(), patient())

        loop.run_until_complete(main())
        stats = {entry['coroutine']: entry for entry in loop.task_stats()}
    finally:
        loop.close()
    name = 'test_a_busy_loop_shows_as_scheduled_time.<locals>.patient'
    assert stats[name]['scheduled'] >= 0.05


def test_task_stats_are_off_unless_asked():
    loop = ferroloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
        assert loop.task_stats() is None
    finally:
        loop.close()


def test_run_with_task_stats_prints_the_table(capsys):
    async def main():
        await asyncio.gather(busy_then_idle(), asyncio.sleep(0.01))

    ferroloop.run(main(), task_stats=True)
    table = capsys.readouterr().err.splitlines()
    assert table[0] == 'ferroloop task statistics (sorted by busy time)'
    assert table[1].split()[:4] == ['task', 'coroutine', 'steps', 'busy']
    assert table[2].split()[1] == 'busy_then_idle'
    assert table[2].split()[-1] == f'{__file__}:{first_line(busy_then_idle)}'


def test_cancelled_tasks_are_marked():
    async def forever():
        await asyncio.sleep(3600)

    loop = ferroloop.new_event_loop()
    try:
        loop._record_steps(False)

        async def main():
            task = asyncio.create_task(forever(), name='forever')
            await asyncio.sleep(0)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

        loop.run_until_complete(main())
        stats = {entry['name']: entry for entry in loop.task_stats()}
    finally:
        loop.close()
    assert stats['forever']['cancelled'] and stats['forever']['done']
