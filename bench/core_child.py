"""Runs one core benchmark once, on one event loop, in a process of its own.

    python bench/core_child.py LOOP BENCHMARK SIZE
    python bench/core_child.py --alternate ROUNDS SIZE LOOP:BENCHMARK...

bench/run.py starts a fresh process for every measurement so that loops do
not disturb each other (imported modules, allocator state, leftover threads).
Prints one JSON line: {"ops": N, "cpu": SECONDS, "wall": SECONDS,
"threads": N}, timing only the workload's measured part (threads: the Python
threads it started), or {"error": "Type: message"}.

--alternate is for comparing variants of one loop (an instrument off and
on: bench/overhead.py): it measures each LOOP:BENCHMARK variant ROUNDS
times, in turn (in the opposite order every other round), in this one
process, so that they share its memory layout
and the machine's state of the moment, which between processes on a shared
virtual machine differ by more than an instrument costs. Prints
{"samples": [[SAMPLE, ...], ...]}, a list of samples per variant as given.
"""

import gc
import sys

from loops import describe, new_event_loop, print_report, stop_on_first_error
from workloads import WORKLOADS, Stopwatch


def measure(loop_name, benchmark, size):
    loop = new_event_loop(loop_name)
    errors = stop_on_first_error(loop)
    watch = Stopwatch()
    gc.collect()
    try:
        ops = WORKLOADS[benchmark](loop, size, watch)
    except Exception as exc:  # noqa: BLE001  (reported, below)
        # An error the loop only logged stops it early, and then the workload
        # fails its own checks: the logged error, first in the list, is the cause.
        errors.append(describe(exc))
    finally:
        loop.close()
    if errors:
        return {'error': errors[0]}
    return {'ops': ops, 'cpu': watch.cpu, 'wall': watch.wall, 'threads': watch.threads}


def measure_alternately(rounds, size, variants):
    samples = [[] for _ in variants]
    order = list(enumerate(variants))
    for _ in range(rounds):
        for index, (loop_name, benchmark) in order:
            sample = measure(loop_name, benchmark, size)
            if 'error' in sample:
                return sample
            samples[index].append(sample)
        # The next round the other way round (A B, B A, ...): a measurement
        # made second in a process tends to differ from the first.
        order.reverse()
    return {'samples': samples}


def main():
    if sys.argv[1] == '--alternate':
        rounds, size = int(sys.argv[2]), int(sys.argv[3])
        variants = [variant.split(':', 1) for variant in sys.argv[4:]]
        print_report(lambda: measure_alternately(rounds, size, variants))
        return
    loop_name, benchmark, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print_report(lambda: measure(loop_name, benchmark, size))


if __name__ == '__main__':
    main()
