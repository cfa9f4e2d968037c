"""loop.stats(): the loop's counters, its busy and poll time, and the
longest callback."""

import asyncio
import socket
import time

import ferroloop


def test_counters_of_a_small_program():
    loop = ferroloop.new_event_loop()
    try:
        calls = []
        for i in range(10):
            loop.call_soon(calls.append, i)
        timers = [loop.call_later(0.01, calls.append, 'timer') for _ in range(3)]
        timers[0].cancel()
        loop.call_later(0.05, loop.stop)
        started = time.monotonic()
        loop.run_forever()
        elapsed = time.monotonic() - started
        stats = loop.stats()
    finally:
        loop.close()
    assert len(calls) == 12
    assert stats['callbacks'] == 10 + 2 + 1
    assert stats['timers_fired'] == 3
    assert stats['timers_cancelled'] == 1
    assert stats['iterations'] >= 2
    # Waiting and running add up to no more than the run took.
    assert stats['poll_time'] >= 0 and stats['busy_time'] >= 0
    assert stats['poll_time'] + stats['busy_time'] <= elapsed
    assert (stats['poll_time'] > 0) == (stats['poll_waits'] > 0)


def test_io_events_are_counted():
    loop = ferroloop.new_event_loop()
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        b.setblocking(False)

        async def main():
            for _ in range(3):
                b.send(b'x')
                assert await loop.sock_recv(a, 1) == b'x'

        loop.run_until_complete(main())
        stats = loop.stats()
    finally:
        a.close()
        b.close()
        loop.close()
    assert stats['io_events'] >= 0
    assert set(stats) == {'iterations', 'callbacks', 'io_events', 'timers_fired',
                          'timers_cancelled', 'poll_waits', 'poll_time', 'busy_time',
                          'longest_callback'}


def test_longest_callback_is_timed_and_named():
    def slow():
        time.sleep(0.05)

    loop = ferroloop.new_event_loop()
    try:
        for _ in range(100):
            loop.call_soon(int)
        loop.call_soon(slow)
        loop.call_soon(loop.stop)
        loop.run_forever()
        loop.call_soon(slow)
        loop.call_soon(loop.stop)
        loop.run_forever()
        longest = loop.stats()['longest_callback']
    finally:
        loop.close()
    assert longest['duration'] >= 0.05
    assert longest['callback'].startswith('test_longest_callback_is_timed_and_named.<locals>.slow()')


def test_longest_task_step_names_the_task():
    async def work():
        time.sleep(0.03)

    loop = ferroloop.new_event_loop()
    try:
        loop.run_until_complete(loop.create_task(work(), name='worker'))
        longest = loop.stats()['longest_callback']
    finally:
        loop.close()
    assert longest['callback'] == "task 'worker' (coroutine test_longest_task_step_names_the_task.<locals>.work)"
    assert longest['duration'] >= 0.03


def test_a_new_loop_has_nothing_counted():
    loop = ferroloop.new_event_loop()
    try:
        stats = loop.stats()
    finally:
        loop.close()
    assert stats['callbacks'] == stats['iterations'] == 0
    assert stats['longest_callback'] is None
