"""Where a loop's time goes on one benchmark row: the cost per operation of
each function (and library) in the process that does the work: the core
benchmark's own process, or the net server while the C client loads it.

    python bench/profile.py ROW [--loops NAME ...] [--top N] [--by dso|sym]
                                [--callgrind] [--size N]

ROW is a core benchmark or a net case of bench/run.py (call_soon_threadsafe,
sock_tcp_100k_x10, ...). Each loop's process runs twice, a short and a long
run, and the profile is the difference between them divided by the
difference in operations: start-up, imports and set-up cancel out. A core
row's short run has the benchmark's size (--size N: N), the long one ten
times that; a net row's client runs 1 s and 4 s.

By default `perf record` samples the cpu-clock software event (the virtual
CPUs here expose no hardware counters) at 4 kHz: the table shows CPU µs per
operation by function. Under load the split stays meaningful but every
number grows. --callgrind (core rows only) counts instructions instead, which
load does not change; valgrind runs the process's threads one at a time, so
the interplay of threads (the GIL handing over, a queue filling while the
loop waits) is not the real one.
"""

import argparse
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import net
import run
from loops import installed_loops
from measure import Failure, run_child

PERF_FREQUENCY = 4000
CORE_SIZES = (1, 10)                 # the short and long run, in multiples of the size
NET_SECONDS = (1.0, 4.0)
PERF_LINE = re.compile(r'\s*[\d.]+%\s+(\d+)\s+(\S+)\s+\[.\]\s+(.*)$')


def perf_command(data_path):
    return ['perf', 'record', '-q', '-e', 'cpu-clock', '-F', str(PERF_FREQUENCY),
            '-o', str(data_path), '--']


def perf_samples(data_path, by):
    """Samples by function ('sym': 'library  function') or by library ('dso')."""
    report = subprocess.run(
        ['perf', 'report', '-i', str(data_path), '--stdio', '--no-children', '-n', '-q',
         '--sort', 'dso,sym'], capture_output=True, text=True, timeout=300).stdout
    samples = Counter()
    for line in report.splitlines():
        match = PERF_LINE.match(line)
        if match:
            count, dso, symbol = match.groups()
            samples[dso if by == 'dso' else f'{dso}  {symbol.strip()}'] += int(count)
    return samples


def callgrind_instructions(out_path):
    """Instructions by function, from a callgrind output file."""
    report = subprocess.run(
        ['callgrind_annotate', '--threshold=100', '--inclusive=no', str(out_path)],
        capture_output=True, text=True, timeout=300).stdout
    counts = Counter()
    for line in report.splitlines():
        match = re.match(r'\s*([\d,]+) \([^)]*\)\s+(.*)$', line)
        if match and 'PROGRAM TOTALS' not in match.group(2):
            counts[match.group(2)] += int(match.group(1).replace(',', ''))
    return counts


def core_run(benchmark, loop_name, size, wrap):
    """Runs a core benchmark's process under ``wrap``; its operation count."""
    command = [*wrap, sys.executable, str(run.CORE_CHILD), loop_name, benchmark.name,
               str(size)]
    outcome = run_child(command, timeout=1800)
    if isinstance(outcome, Failure):
        raise RuntimeError(f'{loop_name}: {outcome.reason}')
    return outcome['ops']


def net_run(case, loop_name, seconds, wrap, tools, placement):
    outcome = net.measure(case, loop_name, seconds, tools, placement, wrap=wrap)
    if isinstance(outcome, Failure):
        raise RuntimeError(f'{loop_name}: {outcome.reason}')
    return outcome.ops


def profile(row, loop_name, args, directory):
    """(cost by name per operation, unit): the long run minus the short one."""
    runs = []
    for index in range(2):
        output = Path(directory) / f'{loop_name}-{index}.out'
        if args.callgrind:
            wrap = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={output}']
        else:
            wrap = perf_command(output)
        if isinstance(row, run.CoreBenchmark):
            ops = core_run(row, loop_name, (args.size or row.size) * CORE_SIZES[index], wrap)
        else:
            tools = net.build_native(run.NATIVE_BUILD_DIR)
            ops = net_run(row, loop_name, NET_SECONDS[index], wrap, tools,
                          net.Placement.choose())
        costs = callgrind_instructions(output) if args.callgrind else perf_samples(output,
                                                                                  args.by)
        runs.append((ops, costs))
    (short_ops, short), (long_ops, long) = runs
    ops = long_ops - short_ops
    scale = 1 if args.callgrind else 1e6 / PERF_FREQUENCY   # samples to µs
    return {name: (long[name] - short[name]) * scale / ops
            for name in set(short) | set(long)}, ('instructions' if args.callgrind else 'µs')


def main():
    rows = {b.name: b for b in run.CORE_BENCHMARKS} | {c.name: c for c in net.net_cases()}
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('row', choices=sorted(rows))
    parser.add_argument('--loops', nargs='+', default=None)
    parser.add_argument('--top', type=int, default=20)
    parser.add_argument('--by', choices=('sym', 'dso'), default='sym')
    parser.add_argument('--callgrind', action='store_true')
    parser.add_argument('--size', type=int, help="a core row's short run (default: its size)")
    args = parser.parse_args()
    row = rows[args.row]
    if args.callgrind and not isinstance(row, run.CoreBenchmark):
        parser.error('--callgrind profiles core rows only')
    loops = args.loops or [name for name in installed_loops() if name != 'asyncio']
    with tempfile.TemporaryDirectory(prefix='ferroloop-profile-') as directory:
        for loop_name in loops:
            costs, unit = profile(row, loop_name, args, directory)
            print(f'{args.row} on {loop_name}: {sum(costs.values()):.3g} {unit} per operation')
            for name, cost in sorted(costs.items(), key=lambda item: -item[1])[:args.top]:
                print(f'  {cost:9.3g}  {name[:120]}')
            print(flush=True)


if __name__ == '__main__':
    main()
