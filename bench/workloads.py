"""The core benchmarks: the scheduling paths every asyncio program runs
through, one function each.

A workload is ``workload(loop, size, watch) -> operations``: it gets a fresh
loop, sets up, does the part that exercises the loop inside ``with watch:``
(so set-up such as making the loop is not timed), checks that every
operation really happened and returns how many operations it timed.

Callbacks are ``itertools.count().__next__``: a C-level callable that costs
next to nothing and counts its calls, so the numbers show the loop's own cost
per callback rather than the cost of running Python code.
"""

import asyncio
import itertools
import threading
import time

CALL_SOON_BATCH = 1000
TIMER_SPREAD = 0.05
SLEEP0_SWITCHES = 20


class Stopwatch:
    """Times one stretch of code: ``cpu`` is the CPU time of the whole process
    (all threads, from time.process_time; not that of child processes),
    ``wall`` the elapsed time, ``threads`` the Python threads started."""

    cpu = wall = threads = None

    def __enter__(self):
        self._threads = _threads_started()
        self._cpu = time.process_time()
        self._wall = time.perf_counter()
        return self

    def __exit__(self, *exc_info):
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu
        self.threads = _threads_started() - self._threads


_thread_starts = 0
_thread_start = threading.Thread.start


def _counted_start(thread):
    global _thread_starts
    _thread_starts += 1
    return _thread_start(thread)


threading.Thread.start = _counted_start


def _threads_started():
    """Python threads started so far in this process (counted by a wrapper
    of Thread.start installed at import, before any loop exists)."""
    return _thread_starts


def _counting_callback():
    """A near-free callback and a function telling how often it ran."""
    calls = itertools.count()
    return calls.__next__, lambda: next(calls)


def _expect(what, got, wanted):
    if got != wanted:
        raise AssertionError(f'{what}: {got}, expected {wanted}')


def call_soon(loop, size, watch):
    """``size`` callbacks scheduled with call_soon() and run. They are
    scheduled in batches of 1000 by a feeder callback that re-schedules itself
    after each batch, so the ready queue stays as short as in real programs.
    Operation: one callback scheduled and run."""
    callback, count = _counting_callback()
    left = size

    def feed():
        nonlocal left
        if not left:
            loop.stop()
            return
        batch = min(CALL_SOON_BATCH, left)
        left -= batch
        schedule = loop.call_soon
        for _ in range(batch):
            schedule(callback)
        schedule(feed)

    loop.call_soon(feed)
    with watch:
        loop.run_forever()
    _expect('callbacks run', count(), size)
    return size


def call_soon_threadsafe(loop, size, watch):
    """A second thread calls call_soon_threadsafe() ``size`` times while the
    loop runs, then schedules loop.stop, which runs after all of them (the
    queue is first in, first out). Operation: one callback; the CPU time is
    that of both threads."""
    callback, count = _counting_callback()

    def produce():
        schedule = loop.call_soon_threadsafe
        for _ in range(size):
            schedule(callback)
        schedule(loop.stop)

    producer = threading.Thread(target=produce)
    loop.call_soon(producer.start)
    with watch:
        loop.run_forever()
        producer.join()
    _expect('callbacks run', count(), size)
    return size


def call_later(loop, size, watch):
    """``size`` timers with distinct delays spread evenly over 50 ms, every
    other one cancelled right after it is made; a last timer, due after all of
    them, stops the loop. Operation: one timer scheduled (then fired or
    cancelled). Where scheduling them all takes longer than 50 ms, most are
    due by the time the loop first looks, as in a loop that fell behind."""
    callback, count = _counting_callback()
    step = TIMER_SPREAD / size
    with watch:
        for i in range(size):
            timer = loop.call_later(i * step, callback)
            if i % 2:
                timer.cancel()
        loop.call_later(TIMER_SPREAD + step, loop.stop)
        loop.run_forever()
    _expect('timers fired', count(), (size + 1) // 2)
    return size


def gather_sleep0(loop, size, watch):
    """gather() of ``size`` tasks, each awaiting asyncio.sleep(0) 20 times.
    Operation: one task switch (a task suspended and resumed)."""
    switches = 0

    async def sleeper():
        nonlocal switches
        for _ in range(SLEEP0_SWITCHES):
            await asyncio.sleep(0)
        switches += SLEEP0_SWITCHES

    async def main():
        await asyncio.gather(*[sleeper() for _ in range(size)])

    with watch:
        loop.run_until_complete(main())
    _expect('task switches', switches, size * SLEEP0_SWITCHES)
    return switches


def task_churn(loop, size, watch):
    """``await loop.create_task(trivial())``, ``size`` times in a row.
    Operation: one task created, run and awaited."""
    async def trivial():
        return 1

    async def churn():
        create_task = loop.create_task
        done = 0
        for _ in range(size):
            done += await create_task(trivial())
        return done

    with watch:
        done = loop.run_until_complete(churn())
    _expect('tasks awaited', done, size)
    return size


def lesson(loop, size, watch):
    """The lesson program examples/lessons/03_gather.py without its prints:
    three coroutines sleeping 0.2, 0.1 and 0.3 s, gathered. It should take
    0.3 s of wall time and almost no CPU. Runs ``size`` times in a row;
    operation: one run of the program."""
    async def work(name, delay):
        await asyncio.sleep(delay)
        return name

    async def main():
        return await asyncio.gather(work('a', 0.2), work('b', 0.1), work('c', 0.3))

    with watch:
        results = [loop.run_until_complete(main()) for _ in range(size)]
    _expect('results', results, [['a', 'b', 'c']] * size)
    return size


def spawn_true(loop, size, watch):
    """``size`` children running ``true``, started at once and waited for
    (create_subprocess_exec, then wait()). Operation: one child started and
    reaped; the CPU time is the parent's (each child's own is not counted)."""
    async def child():
        process = await asyncio.create_subprocess_exec('true')
        return await process.wait()

    async def main():
        return await asyncio.gather(*[child() for _ in range(size)])

    with watch:
        codes = loop.run_until_complete(main())
    _expect('exit codes', codes, [0] * size)
    return size


PIPE_CHUNK = 256 * 1024


def pipe_cat(loop, size, watch):
    """``size`` MiB written to ``cat`` through its stdin pipe and read back
    from its stdout pipe by a SubprocessProtocol, writing as fast as flow
    control lets it. Operation: one MiB through both pipes."""
    total = size * 1024 * 1024
    chunk = b'x' * PIPE_CHUNK

    class Pump(asyncio.SubprocessProtocol):
        def __init__(self):
            self.received = 0
            self.paused = False
            self.sent = 0
            self.done = loop.create_future()

        def connection_made(self, transport):
            self.stdin = transport.get_pipe_transport(0)
            self.fill()

        def fill(self):
            while not self.paused and self.sent < total:
                self.stdin.write(chunk)
                self.sent += len(chunk)
            if self.sent >= total and not self.stdin.is_closing():
                self.stdin.close()

        def pause_writing(self):
            self.paused = True

        def resume_writing(self):
            # Not from within the callback: stock asyncio's write pipe drops
            # what resume_writing() writes when it also closes the pipe.
            self.paused = False
            loop.call_soon(self.fill)

        def pipe_data_received(self, fd, data):
            self.received += len(data)

        def connection_lost(self, exc):
            self.done.set_result(exc)

    async def main():
        transport, pump = await loop.subprocess_exec(Pump, 'cat', stderr=None)
        await pump.done
        transport.close()
        return pump.received

    with watch:
        received = loop.run_until_complete(main())
    _expect('bytes through cat', received, total)
    return size


def traced_gather_sleep0(loop, size, watch):
    """gather_sleep0 while ferroloop's timeline tracer records every task
    step (ferroloop loops only; others are not traced). Making the timeline
    at the end is not timed. Compared with gather_sleep0, it gives the
    tracer's cost per task step (bench/overhead.py)."""
    import ferroloop
    tracer = ferroloop.trace().start()
    try:
        return gather_sleep0(loop, size, watch)
    finally:
        tracer.stop()


WORKLOADS = {
    workload.__name__: workload
    for workload in (call_soon, call_soon_threadsafe, call_later,
                     gather_sleep0, task_churn, lesson, spawn_true, pipe_cat,
                     traced_gather_sleep0)
}
