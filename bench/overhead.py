"""What ferroloop's instruments cost: the blocking detector on the
scheduling and echo benchmarks, and the timeline tracer per task step.

    python bench/overhead.py [--quick] [--repeat N] [--instructions]

Each benchmark of bench/run.py named below runs on ferroloop with the
detector off and on (threshold 0.05 s, bench/loops.py's DETECTOR_LOOP),
measurements interleaved, medians of CPU time per operation, in fresh
processes as bench/run.py makes them. The tracer's cost per task step is
traced_gather_sleep0 minus gather_sleep0, per task switch.

--instructions counts instructions instead (callgrind, the core rows and
the tracer; each a long run minus a short one, per operation, counted only
while the loop runs, so that writing the trace out is not): the figure
that does not move with the machine's load, where CPU times on a shared
virtual machine swing by tens of percent between identical runs. It
counts work, not the cost of caches missed, so it is a floor under the
time an instrument adds.
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

import net
from loops import DETECTOR_LOOP
from measure import Failure, summarise
from profile import core_run
from run import CORE_BENCHMARKS, NATIVE_BUILD_DIR, NET_SECONDS, CoreBenchmark, measure_core

CORE = ('call_soon', 'call_later', 'gather_sleep0', 'task_churn')
NET = ('proto_tcp_1k_x10', 'proto_unix_1k_x10', 'streams_tcp_1k_x10', 'udp_1k_x10')
LOOPS = ('ferroloop', DETECTOR_LOOP)
# What runs the loop (run_forever's inner loop): instructions are counted
# inside it only.
LOOP_RUN_SYMBOL = '*LoopCore*__pymethod__run__'
# The short run's size under callgrind (the long run is three times that).
INSTRUCTION_SIZES = {'call_soon': 100_000, 'call_later': 20_000, 'gather_sleep0': 1_000,
                     'task_churn': 10_000}


def interleaved(repeat, loops, measure_once):
    """Summaries by loop of ``repeat`` measurements each, interleaved."""
    outcomes = {loop: [] for loop in loops}
    for _ in range(repeat):
        for loop in loops:
            outcomes[loop].append(measure_once(loop))
    return {loop: summarise(results) for loop, results in outcomes.items()}


def overhead_row(name, summaries):
    off, on = summaries['ferroloop'], summaries[DETECTOR_LOOP]
    if isinstance(off, Failure) or isinstance(on, Failure):
        failure = off if isinstance(off, Failure) else on
        return f'| {name} | err | err | {failure.reason} |'
    change = (on.cpu_us / off.cpu_us - 1) * 100
    return f'| {name} | {off.cpu_us:.3g} | {on.cpu_us:.3g} | {change:+.1f} % |'


def total_instructions(out_path):
    """The instruction count of a callgrind output file."""
    for line in Path(out_path).read_text().splitlines():
        if line.startswith(('summary:', 'totals:')):
            return int(line.split()[1])
    raise RuntimeError(f'no instruction count in {out_path}')


def instructions_per_op(benchmark, loop_name, size, directory):
    """Instructions per operation: a run of 3 × ``size`` minus one of ``size``."""
    runs = []
    for index, scale in enumerate((1, 3)):
        out = Path(directory) / f'{loop_name}-{benchmark.name}-{index}.out'
        wrap = ['valgrind', '--tool=callgrind', f'--callgrind-out-file={out}',
                f'--toggle-collect={LOOP_RUN_SYMBOL}']
        ops = core_run(benchmark, loop_name, size * scale, wrap)
        runs.append((ops, total_instructions(out)))
    (short_ops, short), (long_ops, long) = runs
    return (long - short) / (long_ops - short_ops)


def instruction_tables():
    # String hashing is randomised per process; fixed, the counts repeat.
    os.environ['PYTHONHASHSEED'] = '0'
    by_name = {b.name: b for b in CORE_BENCHMARKS}
    lines = ['**blocking detector: ferroloop instructions per operation, off and on '
             '(callgrind)**', '',
             '| benchmark | off | on | change |', '| --- | ---: | ---: | ---: |']
    with tempfile.TemporaryDirectory(prefix='ferroloop-overhead-') as directory:
        for name in CORE:
            off, on = (instructions_per_op(by_name[name], loop, INSTRUCTION_SIZES[name],
                                           directory) for loop in LOOPS)
            lines.append(f'| {name} | {off:,.0f} | {on:,.0f} | {(on / off - 1) * 100:+.1f} % |')
            print(lines[-1], file=sys.stderr, flush=True)
        plain = by_name['gather_sleep0']
        traced = CoreBenchmark('traced_gather_sleep0', plain.size, plain.quick_size, None)
        size = INSTRUCTION_SIZES['gather_sleep0']
        untraced, traced = (instructions_per_op(b, 'ferroloop', size, directory)
                            for b in (plain, traced))
    lines += ['', '**timeline tracer: instructions per task step (callgrind)**', '',
              '| gather_sleep0 | traced | tracer per step |', '| ---: | ---: | ---: |',
              f'| {untraced:,.0f} | {traced:,.0f} | {traced - untraced:,.0f} |']
    print('\n'.join(lines))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true')
    parser.add_argument('--repeat', type=int, default=None)
    parser.add_argument('--instructions', action='store_true')
    args = parser.parse_args()
    if args.instructions:
        instruction_tables()
        return
    repeat = args.repeat or (3 if args.quick else 7)
    by_name = {b.name: b for b in CORE_BENCHMARKS}
    lines = ['**blocking detector: ferroloop CPU µs per operation, off and on '
             f'(median of {repeat})**', '',
             '| benchmark | off | on | change |', '| --- | ---: | ---: | ---: |']
    for name in CORE:
        summaries = interleaved(repeat, LOOPS,
                                lambda loop: measure_core(by_name[name], loop, args.quick))
        lines.append(overhead_row(name, summaries))
        print(lines[-1], file=sys.stderr, flush=True)
    tools = net.build_native(NATIVE_BUILD_DIR)
    placement = net.Placement.choose()
    cases = {case.name: case for case in net.net_cases()}
    for name in NET:
        summaries = interleaved(repeat, LOOPS, lambda loop: net.measure(
            cases[name], loop, NET_SECONDS[args.quick], tools, placement))
        lines.append(overhead_row(name, summaries))
        print(lines[-1], file=sys.stderr, flush=True)

    plain = by_name['gather_sleep0']
    traced = CoreBenchmark('traced_gather_sleep0', plain.size, plain.quick_size, None)
    samples = {'plain': [], 'traced': []}
    for _ in range(repeat):
        samples['plain'].append(measure_core(plain, 'ferroloop', args.quick))
        samples['traced'].append(measure_core(traced, 'ferroloop', args.quick))
    summaries = {kind: summarise(results) for kind, results in samples.items()}
    lines += ['', f'**timeline tracer: CPU µs per task step (median of {repeat})**', '',
              '| gather_sleep0 | traced | tracer per step |', '| ---: | ---: | ---: |']
    if any(isinstance(s, Failure) for s in summaries.values()):
        lines.append(f'| err | err | {summaries} |')
    else:
        lines.append(f"| {summaries['plain'].cpu_us:.3g} | {summaries['traced'].cpu_us:.3g} | "
                     f"{summaries['traced'].cpu_us - summaries['plain'].cpu_us:.3g} |")
    print('\n'.join(lines))


if __name__ == '__main__':
    main()
