"""Timer precision: how late (or early) ``asyncio.sleep(d)`` and
``loop.call_later(d, ...)`` wake up on each loop.

    python bench/lateness.py LOOP KIND COUNT

is the measuring process (bench/run.py starts one per round, as for the
core benchmarks): on the named loop it waits COUNT times in a row, with
delays cycling through DELAYS (2 to 5 ms, off the millisecond grid, so a
loop that rounds its poll timeout to whole milliseconds shows it), and prints
{"late_ms": [...]}: for each wait, the time it returned minus the time it was
asked for, in milliseconds. Negative values are early wake-ups.

KIND 'sleep_lateness' awaits asyncio.sleep(d) in a task and reads the clock
when the task resumes; 'call_later_lateness' schedules loop.call_later(d, callback) and reads
the clock in the callback, which schedules the next one. The clock is
time.monotonic() read before scheduling and after waking: real elapsed time,
not loop.time() (uvloop's is rounded to milliseconds). The first WARM_UP
waits are not reported.

LOOP 'sleep_floor' is no event loop but the floor under every one: a plain
time.sleep(d) (clock_nanosleep), with the thread's timer slack at 1 µs as
ferroloop sets it while it runs: what the kernel's wake-up costs by itself.

The harness pools the samples of all rounds and reports their median, 99th
percentile, maximum and earliest; ferroloop's targets (issue 11): median at
most 0.1 ms late, p99 at most 0.5 ms, never early. Only meaningful on an
idle machine: a busy CPU delays every wake-up.
"""

import asyncio
import ctypes
import math
import sys
import time
from dataclasses import dataclass

import report
from loops import print_report, run_on_new_loop
from measure import Failure, run_child

DELAYS = tuple(0.002 + i * 0.00037 % 0.003 for i in range(50))
WARM_UP = 5
CHILD = __file__
FLOOR = 'sleep_floor'
PR_SET_TIMERSLACK = 29
TIMER_SLACK_NS = 1000


@dataclass(frozen=True)
class LatenessBenchmark:
    name: str            # a KIND of this module
    size: int            # waits per round
    quick_size: int


BENCHMARKS = [
    LatenessBenchmark('sleep_lateness', 300, 100),
    LatenessBenchmark('call_later_lateness', 300, 100),
]


@dataclass(frozen=True)
class Limit:
    """A statistic of ferroloop's lateness, in ms, must lie in [low, high]."""
    statistic: str
    low: float
    high: float

    def describe(self):
        if self.high == math.inf:
            return f'>= {self.low}'
        return f'<= {self.high}'

    def verdict(self, value):
        if value is None:
            return 'n/a'
        return 'PASS' if self.low <= value <= self.high else 'MISS'


STATISTICS = ('median', 'p99', 'max', 'earliest')
LIMITS = {
    'median': Limit('median', -math.inf, 0.1),
    'p99': Limit('p99', -math.inf, 0.5),
    'earliest': Limit('earliest', 0.0, math.inf),
}


# ---- the measuring process ------------------------------------------------

def sleep_lateness(loop, count):
    async def waits():
        late = []
        for i in range(count + WARM_UP):
            delay = DELAYS[i % len(DELAYS)]
            started = time.monotonic()
            await asyncio.sleep(delay)
            late.append(time.monotonic() - started - delay)
        return late

    return loop.run_until_complete(waits())[WARM_UP:]


def call_later_lateness(loop, count):
    late = []
    done = loop.create_future()

    def schedule(i):
        delay = DELAYS[i % len(DELAYS)]
        loop.call_later(delay, fired, i, time.monotonic(), delay)

    def fired(i, started, delay):
        late.append(time.monotonic() - started - delay)
        if i + 1 < count + WARM_UP:
            schedule(i + 1)
        else:
            done.set_result(None)

    loop.call_soon(schedule, 0)
    loop.run_until_complete(done)
    return late[WARM_UP:]


def floor_lateness(count):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_TIMERSLACK, TIMER_SLACK_NS, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), 'prctl(PR_SET_TIMERSLACK) failed')
    late = []
    for i in range(count + WARM_UP):
        delay = DELAYS[i % len(DELAYS)]
        started = time.monotonic()
        time.sleep(delay)
        late.append(time.monotonic() - started - delay)
    return late[WARM_UP:]


KINDS = {'sleep_lateness': sleep_lateness, 'call_later_lateness': call_later_lateness}


def child_main():
    loop_name, kind, count = sys.argv[1], sys.argv[2], int(sys.argv[3])

    def late_ms(seconds):
        return [s * 1e3 for s in seconds]

    def measure():
        if loop_name == FLOOR:
            return {'late_ms': late_ms(floor_lateness(count))}
        return run_on_new_loop(loop_name, lambda loop: late_ms(KINDS[kind](loop, count)),
                               'late_ms')

    print_report(measure)


# ---- the harness side -----------------------------------------------------

@dataclass(frozen=True)
class Lateness:
    """Statistics over the pooled samples of all rounds, in ms."""
    samples: int
    median: float
    p99: float
    max: float
    earliest: float


def measure(benchmark, loop_name, quick):
    """One round: the list of lateness samples (ms), or a Failure."""
    size = benchmark.quick_size if quick else benchmark.size
    command = [sys.executable, CHILD, loop_name, benchmark.name, str(size)]
    # Each wait is at most 5 ms: a round far over that has hung.
    outcome = run_child(command, timeout=30 + size * 0.05)
    return outcome if isinstance(outcome, Failure) else outcome['late_ms']


def summarise(rounds):
    """The statistics of all rounds' samples together, or the first Failure."""
    for outcome in rounds:
        if isinstance(outcome, Failure):
            return outcome
    pooled = sorted(sample for samples in rounds for sample in samples)
    n = len(pooled)
    return Lateness(samples=n, median=pooled[n // 2],
                    p99=pooled[min(n - 1, math.ceil(0.99 * n) - 1)],
                    max=pooled[-1], earliest=pooled[0])


def table(results, loops, short_names):
    """One row per benchmark and statistic, one column per loop and one for
    the floor, with ferroloop's verdict where issue 11 sets a limit."""
    loops = (*loops, FLOOR)
    counts = {s.samples for summaries in results.values() for s in summaries.values()
              if isinstance(s, Lateness)}
    waits = f', {counts.pop()} waits per loop' if len(counts) == 1 else ''
    result = report.Table(
        f'timers: lateness in ms of waits of 2-5 ms, pooled over all rounds{waits} '
        '(negative: early)',
        ['wait', 'statistic', *(short_names[loop] for loop in loops), 'target', 'result'])
    for benchmark, summaries in results.items():
        for statistic in STATISTICS:
            cells = [summary.label if isinstance(summary, Failure)
                     else signed(getattr(summary, statistic))
                     for summary in map(summaries.get, loops)]
            limit = LIMITS.get(statistic)
            ours = summaries.get('ferroloop')
            value = getattr(ours, statistic) if isinstance(ours, Lateness) else None
            result.rows.append([
                benchmark.name, statistic, *cells,
                limit.describe() if limit else '-',
                limit.verdict(value) if limit else '-'])
    return result


def signed(value):
    return f'{value:+.3f}'


if __name__ == '__main__':
    child_main()
