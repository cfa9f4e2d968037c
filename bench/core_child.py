"""Runs one core benchmark once, on one event loop, in a process of its own.

    python bench/core_child.py LOOP BENCHMARK SIZE

bench/run.py starts a fresh process for every measurement so that loops do
not disturb each other (imported modules, allocator state, leftover threads).
Prints one JSON line: {"ops": N, "cpu": SECONDS, "wall": SECONDS,
"threads": N}, timing only the workload's measured part (threads: the Python
threads it started), or {"error": "Type: message"}.
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


def main():
    loop_name, benchmark, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    print_report(lambda: measure(loop_name, benchmark, size))


if __name__ == '__main__':
    main()
